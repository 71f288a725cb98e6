/* An IOCP Winsock program as libuv (Node) and Go write them, for the Wine end-to-end test
 * (tests/wine.rs):
 *   iocp server PORT TAG   bind 127.0.0.1:PORT, listen, print "bound A:P" and "ready"; accept one
 *                          client with mswsock.dll's exported AcceptEx on a completion port, read
 *                          its addresses with mswsock's exported GetAcceptExSockaddrs and print
 *                          "accepted A:P" (remote) and "local A:P"; send TAG, exit 0
 *   iocp client PORT [hold]  bind 0.0.0.0:0 (as libuv and Go do before ConnectEx); ConnectEx
 *                          (from WSAIoctl) to
 *                          127.0.0.1:PORT on a completion port; print "local A:P" and "peer A:P",
 *                          read to the end, print "got TEXT"; with `hold`, print "holding" and
 *                          keep the connection open until stdin ends; exit 0
 *   iocp server6 PORT TAG, iocp client6 PORT [hold]  the same on dual-stack IPv6 sockets
 *                          (IPV6_V6ONLY off, as libuv makes them): the server on [::1]:PORT, the
 *                          client bound to [::]:0 and connecting to [::1]:PORT
 * Any failure prints "error WHAT CODE" and exits 1. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show(const char *what, const struct sockaddr *sa)
{
    char text[64];
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
        printf("%s [%s]:%u\n", what, text, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        printf("%s %s:%u\n", what, inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    }
    fflush(stdout);
}

/* The loopback (or, with any, the wildcard) address of the family with the port. */
static int address(int family, int any, unsigned short port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        if (!any)
            a->sin6_addr = in6addr_loopback;
        return sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = any ? INADDR_ANY : inet_addr("127.0.0.1");
        return sizeof *a;
    }
}

static int fail(const char *what)
{
    printf("error %s %d\n", what, WSAGetLastError());
    fflush(stdout);
    return 1;
}

/* Waits (60 s at most) for the one operation started on the port. */
static int wait_port(HANDLE port, const char *what)
{
    DWORD n;
    ULONG_PTR key;
    OVERLAPPED *ov;
    if (!GetQueuedCompletionStatus(port, &n, &key, &ov, 60000)) {
        printf("error %s %lu\n", what, GetLastError());
        fflush(stdout);
        return 1;
    }
    return 0;
}

static SOCKET overlapped_socket(int family)
{
    DWORD off = 0;
    SOCKET s = WSASocketW(family, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
    if (s != INVALID_SOCKET && family == AF_INET6)
        setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, (char *)&off, sizeof off);
    return s;
}

static int server(int family, unsigned short port, const char *tag)
{
    struct sockaddr_storage a;
    struct sockaddr *local, *remote;
    int len, llen, rlen;
    char buf[2 * (sizeof(struct sockaddr_storage) + 16)], tmp[16];
    DWORD got = 0;
    OVERLAPPED ov;
    HANDLE cp;
    SOCKET l = overlapped_socket(family), c = overlapped_socket(family);
    if (l == INVALID_SOCKET || c == INVALID_SOCKET)
        return fail("socket");
    len = address(family, 0, port, &a);
    if (bind(l, (struct sockaddr *)&a, len) != 0)
        return fail("bind");
    if (listen(l, 4) != 0)
        return fail("listen");
    len = sizeof a;
    if (getsockname(l, (struct sockaddr *)&a, &len) != 0)
        return fail("getsockname");
    show("bound", (struct sockaddr *)&a);
    cp = CreateIoCompletionPort((HANDLE)l, NULL, 1, 0);
    if (!cp)
        return fail("CreateIoCompletionPort");
    memset(&ov, 0, sizeof ov);
    /* mswsock.dll's own export, not the pointer WSAIoctl hands out. */
    if (!AcceptEx(l, c, buf, 0, sizeof buf / 2, sizeof buf / 2, &got, &ov)
        && WSAGetLastError() != ERROR_IO_PENDING)
        return fail("AcceptEx");
    printf("ready\n");
    fflush(stdout);
    if (wait_port(cp, "AcceptEx"))
        return 1;
    if (setsockopt(c, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (char *)&l, sizeof l) != 0)
        return fail("SO_UPDATE_ACCEPT_CONTEXT");
    GetAcceptExSockaddrs(buf, 0, sizeof buf / 2, sizeof buf / 2, &local, &llen, &remote, &rlen);
    show("accepted", remote);
    show("local", local);
    send(c, tag, (int)strlen(tag), 0);
    shutdown(c, SD_SEND);
    recv(c, tmp, sizeof tmp, 0);
    closesocket(c);
    return 0;
}

static int client(int family, unsigned short port, int hold)
{
    struct sockaddr_storage a, b;
    GUID guid = WSAID_CONNECTEX;
    LPFN_CONNECTEX connect_ex = NULL;
    DWORD n = 0;
    OVERLAPPED ov;
    HANDLE cp;
    int len, got, total = 0;
    char buf[256];
    SOCKET s = overlapped_socket(family);
    if (s == INVALID_SOCKET)
        return fail("socket");
    /* What libuv's uv__tcp_try_connect and Go's fd.connect do: bind the wildcard first. */
    len = address(family, 1, 0, &b);
    if (bind(s, (struct sockaddr *)&b, len) != 0)
        return fail("bind");
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &connect_ex,
                 sizeof connect_ex, &n, NULL, NULL) != 0)
        return fail("WSAIoctl");
    cp = CreateIoCompletionPort((HANDLE)s, NULL, 1, 0);
    if (!cp)
        return fail("CreateIoCompletionPort");
    len = address(family, 0, port, &a);
    memset(&ov, 0, sizeof ov);
    if (!connect_ex(s, (struct sockaddr *)&a, len, NULL, 0, NULL, &ov)
        && WSAGetLastError() != ERROR_IO_PENDING)
        return fail("ConnectEx");
    if (wait_port(cp, "ConnectEx"))
        return 1;
    if (setsockopt(s, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) != 0)
        return fail("SO_UPDATE_CONNECT_CONTEXT");
    len = sizeof b;
    if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
        return fail("getsockname");
    show("local", (struct sockaddr *)&b);
    len = sizeof b;
    if (getpeername(s, (struct sockaddr *)&b, &len) != 0)
        return fail("getpeername");
    show("peer", (struct sockaddr *)&b);
    while ((got = recv(s, buf + total, (int)sizeof buf - 1 - total, 0)) > 0)
        total += got;
    buf[total] = 0;
    printf("got %s\n", buf);
    fflush(stdout);
    if (hold) {
        printf("holding\n");
        fflush(stdout);
        while (fgets(buf, sizeof buf, stdin))
            ;
    }
    closesocket(s);
    return 0;
}

int main(int argc, char **argv)
{
    WSADATA wsa;
    if (argc < 3 || WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 2;
    if (strcmp(argv[1], "server") == 0 && argc >= 4)
        return server(AF_INET, (unsigned short)atoi(argv[2]), argv[3]);
    if (strcmp(argv[1], "server6") == 0 && argc >= 4)
        return server(AF_INET6, (unsigned short)atoi(argv[2]), argv[3]);
    if (strcmp(argv[1], "client") == 0)
        return client(AF_INET, (unsigned short)atoi(argv[2]),
                      argc >= 4 && strcmp(argv[3], "hold") == 0);
    if (strcmp(argv[1], "client6") == 0)
        return client(AF_INET6, (unsigned short)atoi(argv[2]),
                      argc >= 4 && strcmp(argv[3], "hold") == 0);
    return 2;
}
