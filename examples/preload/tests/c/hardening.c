/* A small socket program for tests/preload_hardening.rs, run natively or under the ipvirt
 * LD_PRELOAD layer. Where the test needs the kernel's truth rather than what the layer shows the
 * program, it asks with a raw system call (syscall(SYS_getsockname)), which the layer cannot see.
 *
 * usage:
 *   hardening quiet                 print SIGPIPE's disposition; bind 127.0.0.1:0, print the
 *                                   kernel's address; exit 0
 *   hardening bind IP PORT [hold]   bind + listen; print "bound" or "errno N"; hold: wait for EOF on stdin
 *   hardening serve IP PORT TEXT    bind + listen, print "listening", answer TEXT to each client
 *                                   until stdin reaches EOF
 *   hardening get IP PORT           connect, print what the server sent, or "errno N"
 *   hardening twoports P1 P2 P3     listen on 127.0.0.1:P1, :P2 and :P3, connect to P1 and P2 from
 *                                   fresh sockets; print each result, the kernel's local ports and
 *                                   IP_BIND_ADDRESS_NO_PORT as the program reads it; then connect
 *                                   to P3 from a socket that set the option itself
 *   hardening fds PORT              descriptor-number reuse the layer does not create itself
 *                                   (close_range, F_DUPFD, dup2, dup3): print the kernel's source
 *                                   address of each connection
 *   hardening stderrsock            close fd 2, make a socket pair whose one end takes number 2,
 *                                   bind 127.0.0.1:0 (a rewrite the layer explains with
 *                                   IPVIRT_DEBUG=1); print how many bytes reached the other end
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

static struct sockaddr_in v4(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

/* The kernel's local address of fd, bypassing the layer: "IP:PORT". */
static const char *kname(int fd, char *out, size_t n) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (syscall(SYS_getsockname, fd, (struct sockaddr *)&a, &len) != 0) {
        snprintf(out, n, "errno %d", errno);
        return out;
    }
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(out, n, "%s:%d", ip, ntohs(a.sin_port));
    return out;
}

/* The local address as the program sees it (through the layer's getsockname). */
static const char *name(int fd, char *out, size_t n) {
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        snprintf(out, n, "errno %d", errno);
        return out;
    }
    char ip[INET_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &a.sin_addr, ip, sizeof ip);
    snprintf(out, n, "%s:%d", ip, ntohs(a.sin_port));
    return out;
}

static int listener(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = v4(ip, port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 64) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

static int connect_to(const char *ip, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4(ip, port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        int e = errno;
        close(s);
        errno = e;
        return -1;
    }
    return s;
}

static void wait_eof(void) {
    char b[64];
    while (read(0, b, sizeof b) > 0) {
    }
}

static int cmd_stderrsock(void) {
    int sv[2], peer, fd, r;
    char buf[512];
    ssize_t n;
    struct sockaddr_in a = v4("127.0.0.1", 0);
    close(2);
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || (sv[0] != 2 && sv[1] != 2)) {
        printf("setup failed\n");
        return 1;
    }
    peer = sv[0] == 2 ? sv[1] : sv[0];
    fd = socket(AF_INET, SOCK_STREAM, 0);
    r = bind(fd, (struct sockaddr *)&a, sizeof a);
    n = recv(peer, buf, sizeof buf, MSG_DONTWAIT);
    printf("bind %d; the program's socket got %zd bytes\n", r, n < 0 ? (ssize_t)0 : n);
    return 0;
}

static int cmd_quiet(void) {
    struct sigaction old;
    sigaction(SIGPIPE, NULL, &old);
    printf("sigpipe %s\n", old.sa_handler == SIG_IGN ? "ignored" : "default");
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", 0);
    char k[64];
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        printf("errno %d\n", errno);
    } else {
        char *colon;
        kname(s, k, sizeof k);
        colon = strchr(k, ':');
        if (colon) *colon = 0;
        printf("bound %s\n", k);
    }
    close(s);
    return 0;
}

static int cmd_bind(int argc, char **argv) {
    int s = listener(argv[2], atoi(argv[3]));
    if (s < 0) {
        printf("errno %d\n", errno);
        fflush(stdout);
        return 0;
    }
    printf("bound\n");
    fflush(stdout);
    if (argc > 4 && strcmp(argv[4], "hold") == 0) wait_eof();
    close(s);
    return 0;
}

static int cmd_serve(char **argv) {
    int l = listener(argv[2], atoi(argv[3]));
    if (l < 0) {
        printf("errno %d\n", errno);
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    for (;;) {
        struct pollfd p[2] = {{.fd = l, .events = POLLIN}, {.fd = 0, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        if (p[1].revents) {
            char b[64];
            if (read(0, b, sizeof b) <= 0) return 0;
        }
        if (p[0].revents & POLLIN) {
            int c = accept(l, NULL, NULL);
            if (c >= 0) {
                ssize_t w = write(c, argv[4], strlen(argv[4]));
                (void)w;
                close(c);
            }
        }
    }
}

static int cmd_get(char **argv) {
    int s = connect_to(argv[2], atoi(argv[3]));
    if (s < 0) {
        printf("errno %d\n", errno);
        return 0;
    }
    char b[256];
    ssize_t n, total = 0;
    while ((n = read(s, b + total, sizeof b - 1 - (size_t)total)) > 0) total += n;
    b[total] = 0;
    printf("%s\n", b);
    close(s);
    return 0;
}

static int cmd_twoports(char **argv) {
    int p1 = atoi(argv[2]), p2 = atoi(argv[3]), p3 = atoi(argv[4]);
    int l1 = listener("127.0.0.1", p1), l2 = listener("127.0.0.1", p2), l3 = listener("127.0.0.1", p3);
    if (l1 < 0 || l2 < 0 || l3 < 0) {
        printf("listen errno %d\n", errno);
        return 1;
    }
    int c1 = connect_to("127.0.0.1", p1);
    printf("connect1 %s\n", c1 < 0 ? strerror(errno) : "ok");
    int c2 = connect_to("127.0.0.1", p2);
    printf("connect2 %s\n", c2 < 0 ? strerror(errno) : "ok");
    char k1[64] = "-", k2[64] = "-";
    if (c1 >= 0) kname(c1, k1, sizeof k1);
    if (c2 >= 0) kname(c2, k2, sizeof k2);
    printf("local1 %s\nlocal2 %s\n", k1, k2);
    int v = -1;
    socklen_t len = sizeof v;
    if (c1 >= 0 && getsockopt(c1, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &v, &len) != 0) v = -errno;
    printf("no_port %d\n", v);
    /* A program that set the option itself keeps it. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    struct sockaddr_in a = v4("127.0.0.1", p3);
    int r = connect(s, (struct sockaddr *)&a, sizeof a);
    v = -1;
    len = sizeof v;
    getsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &v, &len);
    printf("connect3 %s no_port %d\n", r == 0 ? "ok" : strerror(errno), v);
    return 0;
}

/* A socket bound explicitly (the layer knows it bound), then its number is freed behind the
 * layer's back or replaced, and a fresh socket lands on it. */
static int bound_socket(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = v4("127.0.0.1", 0);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0) return -1;
    return s;
}

static void report(const char *label, int fd, int port) {
    struct sockaddr_in a = v4("127.0.0.1", port);
    char k[64];
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        printf("%-24s connect errno %d\n", label, errno);
    else {
        char *colon;
        kname(fd, k, sizeof k);
        colon = strchr(k, ':');
        if (colon) *colon = 0;
        printf("%-24s source %s\n", label, k);
    }
    close(fd);
}

static int cmd_fds(char **argv) {
    int port = atoi(argv[2]);
    int l = listener("127.0.0.1", port);
    if (l < 0) {
        printf("listen errno %d\n", errno);
        return 1;
    }
    static const int cmds[2] = {F_DUPFD, F_DUPFD_CLOEXEC};
    static const char *labels[2] = {"close_range+F_DUPFD", "close_range+F_DUPFD_CLOEXEC"};
    for (int i = 0; i < 2; i++) {
        int n = bound_socket();
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (close_range((unsigned)n, (unsigned)n, 0) != 0) printf("close_range errno %d\n", errno);
        int d = fcntl(s, cmds[i], n);
        close(s);
        if (d != n) printf("%s landed on %d, not %d\n", labels[i], d, n);
        report(labels[i], d, port);
    }
    {
        int n = bound_socket();
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int d = dup2(s, n);
        close(s);
        report("dup2", d, port);
    }
    {
        int n = bound_socket();
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int d = dup3(s, n, O_CLOEXEC);
        close(s);
        report("dup3", d, port);
    }
    {
        /* A datagram socket the layer bound implicitly (it then shows 0.0.0.0, as the kernel's own
         * implicit bind would), replaced by a connected stream socket: that one's name is shown. */
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = v4("127.0.0.1", port);
        sendto(u, "x", 1, 0, (struct sockaddr *)&a, sizeof a);
        int t = connect_to("127.0.0.1", port);
        char want[64], got[64];
        name(t, want, sizeof want);
        dup2(t, u);
        name(u, got, sizeof got);
        printf("%-24s %s\n", "dup2 over implicit", strcmp(want, got) == 0 ? "same name" : got);
        close(t);
        close(u);
    }
    {
        /* fcntl's other commands still work through the layer. */
        int s = socket(AF_INET, SOCK_STREAM, 0);
        int fl = fcntl(s, F_GETFL);
        int r = fcntl(s, F_SETFL, fl | O_NONBLOCK);
        printf("%-24s %s\n", "fcntl F_SETFL", r == 0 && (fcntl(s, F_GETFL) & O_NONBLOCK) ? "ok" : "broken");
        close(s);
    }
    close(l);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    if (strcmp(argv[1], "quiet") == 0) return cmd_quiet();
    if (strcmp(argv[1], "bind") == 0 && argc >= 4) return cmd_bind(argc, argv);
    if (strcmp(argv[1], "serve") == 0 && argc >= 5) return cmd_serve(argv);
    if (strcmp(argv[1], "get") == 0 && argc >= 4) return cmd_get(argv);
    if (strcmp(argv[1], "twoports") == 0 && argc >= 5) return cmd_twoports(argv);
    if (strcmp(argv[1], "fds") == 0 && argc >= 3) return cmd_fds(argv);
    if (strcmp(argv[1], "stderrsock") == 0) return cmd_stderrsock();
    return 2;
}
