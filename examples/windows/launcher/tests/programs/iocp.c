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
 * Any failure prints "error WHAT CODE" and exits 1. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show(const char *what, const struct sockaddr *sa)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    printf("%s %s:%u\n", what, inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    fflush(stdout);
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

static SOCKET overlapped_socket(void)
{
    return WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
}

static int server(unsigned short port, const char *tag)
{
    struct sockaddr_in a;
    struct sockaddr *local, *remote;
    int len, llen, rlen;
    char buf[2 * (sizeof(struct sockaddr_storage) + 16)], tmp[16];
    DWORD got = 0;
    OVERLAPPED ov;
    HANDLE cp;
    SOCKET l = overlapped_socket(), c = overlapped_socket();
    if (l == INVALID_SOCKET || c == INVALID_SOCKET)
        return fail("socket");
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = inet_addr("127.0.0.1");
    if (bind(l, (struct sockaddr *)&a, sizeof a) != 0)
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

static int client(unsigned short port, int hold)
{
    struct sockaddr_in a, b;
    GUID guid = WSAID_CONNECTEX;
    LPFN_CONNECTEX connect_ex = NULL;
    DWORD n = 0;
    OVERLAPPED ov;
    HANDLE cp;
    int len, got, total = 0;
    char buf[256];
    SOCKET s = overlapped_socket();
    if (s == INVALID_SOCKET)
        return fail("socket");
    /* What libuv's uv__tcp_try_connect and Go's fd.connect do: bind the wildcard first. */
    memset(&b, 0, sizeof b);
    b.sin_family = AF_INET;
    if (bind(s, (struct sockaddr *)&b, sizeof b) != 0)
        return fail("bind");
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &connect_ex,
                 sizeof connect_ex, &n, NULL, NULL) != 0)
        return fail("WSAIoctl");
    cp = CreateIoCompletionPort((HANDLE)s, NULL, 1, 0);
    if (!cp)
        return fail("CreateIoCompletionPort");
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = inet_addr("127.0.0.1");
    memset(&ov, 0, sizeof ov);
    if (!connect_ex(s, (struct sockaddr *)&a, sizeof a, NULL, 0, NULL, &ov)
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
        return server((unsigned short)atoi(argv[2]), argv[3]);
    if (strcmp(argv[1], "client") == 0)
        return client((unsigned short)atoi(argv[2]), argc >= 4 && strcmp(argv[3], "hold") == 0);
    return 2;
}
