/* A Winsock TCP program for the Wine end-to-end tests (tests/windows_wine.rs).
 *   cprobe server PORT TAG [ADDR]  bind ADDR:PORT (default 127.0.0.1), listen, print "bound A:P"
 *                                  and "ready"; accept one client, print "accepted A:P" (accept's
 *                                  address) and "peer A:P" (getpeername), send TAG, exit 0
 *   cprobe client PORT [getproc|ADDR]  connect to 127.0.0.1:PORT (with `getproc`, through a
 *                                  connect resolved with GetProcAddress; to ADDR:PORT when an
 *                                  address is given), print "local A:P", "peer A:P" and
 *                                  "got TEXT", exit 0
 * Any failure prints "error WHAT CODE" and exits 1. */
#include <winsock2.h>
#include <ws2tcpip.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void show(const char *what, const struct sockaddr_in *a)
{
    printf("%s %s:%u\n", what, inet_ntoa(a->sin_addr), ntohs(a->sin_port));
    fflush(stdout);
}

static int fail(const char *what)
{
    printf("error %s %d\n", what, WSAGetLastError());
    fflush(stdout);
    return 1;
}

typedef int (WSAAPI *connect_fn)(SOCKET, const struct sockaddr *, int);

int main(int argc, char **argv)
{
    WSADATA wsa;
    struct sockaddr_in a, b;
    int len;
    char buf[256];
    SOCKET s;
    if (argc < 3 || WSAStartup(MAKEWORD(2, 2), &wsa) != 0)
        return 2;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((u_short)atoi(argv[2]));
    a.sin_addr.s_addr = inet_addr("127.0.0.1");
    s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (s == INVALID_SOCKET)
        return fail("socket");
    if (strcmp(argv[1], "server") == 0 && argc >= 4) {
        SOCKET c;
        if (argc >= 5)
            a.sin_addr.s_addr = inet_addr(argv[4]);
        if (bind(s, (struct sockaddr *)&a, sizeof a) != 0)
            return fail("bind");
        if (listen(s, 4) != 0)
            return fail("listen");
        len = sizeof b;
        if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getsockname");
        show("bound", &b);
        printf("ready\n");
        fflush(stdout);
        len = sizeof b;
        c = accept(s, (struct sockaddr *)&b, &len);
        if (c == INVALID_SOCKET)
            return fail("accept");
        show("accepted", &b);
        len = sizeof b;
        if (getpeername(c, (struct sockaddr *)&b, &len) != 0)
            return fail("getpeername");
        show("peer", &b);
        send(c, argv[3], (int)strlen(argv[3]), 0);
        shutdown(c, SD_SEND);
        recv(c, buf, sizeof buf, 0);
        closesocket(c);
        return 0;
    }
    if (strcmp(argv[1], "client") == 0) {
        int n, total = 0;
        if (argc >= 4 && strcmp(argv[3], "getproc") == 0) {
            HMODULE ws2 = GetModuleHandleA("ws2_32.dll");
            connect_fn f = (connect_fn)(void (*)(void))GetProcAddress(ws2, "connect");
            if (!f || f(s, (struct sockaddr *)&a, sizeof a) != 0)
                return fail("connect");
        } else {
            if (argc >= 4)
                a.sin_addr.s_addr = inet_addr(argv[3]);
            if (connect(s, (struct sockaddr *)&a, sizeof a) != 0)
                return fail("connect");
        }
        len = sizeof b;
        if (getsockname(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getsockname");
        show("local", &b);
        len = sizeof b;
        if (getpeername(s, (struct sockaddr *)&b, &len) != 0)
            return fail("getpeername");
        show("peer", &b);
        while ((n = recv(s, buf + total, (int)sizeof buf - 1 - total, 0)) > 0)
            total += n;
        buf[total] = 0;
        printf("got %s\n", buf);
        fflush(stdout);
        closesocket(s);
        return 0;
    }
    return 2;
}
