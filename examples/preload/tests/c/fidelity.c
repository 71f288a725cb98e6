/* Runs socket calls at their edges and prints every return value, errno, length and buffer byte
 * that a program could observe. tests/preload_e2e.rs runs it natively and under the ipvirt
 * LD_PRELOAD layer (session 7, this program in the virtual loopback list) and requires the two
 * outputs to be identical: apart from where addresses really live, the layer must be invisible.
 *
 * usage: fidelity PORT   (a free TCP/UDP port on 127.0.0.1 and 127.0.0.8)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int port;

#define SHOW(label, expr)                                                                          \
    do {                                                                                           \
        errno = 4242;                                                                              \
        long r_ = (long)(expr);                                                                    \
        printf("%-44s -> %ld errno=%d\n", label, r_, r_ < 0 ? errno : errno);                      \
    } while (0)

static struct sockaddr_in v4(const char *ip, int p) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)p);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static void dump(const char *label, const unsigned char *b, size_t n, socklen_t len) {
    printf("%-44s len=%u bytes=", label, (unsigned)len);
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    printf("\n");
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    port = atoi(argv[1]);
    struct sockaddr_in lo = v4("127.0.0.1", port);

    /* bind: bad pointers, lengths and families reach the kernel unchanged. */
    int s = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("bind NULL len 16", bind(s, NULL, 16));
    SHOW("bind len 0", bind(s, (struct sockaddr *)&lo, 0));
    SHOW("bind len 1", bind(s, (struct sockaddr *)&lo, 1));
    SHOW("bind len 15", bind(s, (struct sockaddr *)&lo, 15));
    unsigned char big[200];
    memset(big, 0, sizeof big);
    memcpy(big, &lo, sizeof lo);
    SHOW("bind len 200", bind(s, (struct sockaddr *)big, 200));
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    SHOW("bind AF_UNIX address on AF_INET socket", bind(s, (struct sockaddr *)&un, sizeof un));
    struct sockaddr_in6 six;
    memset(&six, 0, sizeof six);
    six.sin6_family = AF_INET6;
    SHOW("bind AF_INET6 address on AF_INET socket", bind(s, (struct sockaddr *)&six, sizeof six));

    /* A successful bind leaves errno alone, and the program sees the address it asked for. */
    SHOW("bind 127.0.0.1:PORT", bind(s, (struct sockaddr *)&lo, sizeof lo));
    SHOW("listen", listen(s, 4));
    unsigned char name[32];
    socklen_t len;
    memset(name, 0xAA, sizeof name);
    len = sizeof name;
    SHOW("getsockname full", getsockname(s, (struct sockaddr *)name, &len));
    dump("  ", name, sizeof name, len);
    memset(name, 0xAA, sizeof name);
    len = 6; /* shorter than the address: only 6 bytes may be written */
    SHOW("getsockname len 6", getsockname(s, (struct sockaddr *)name, &len));
    dump("  ", name, sizeof name, len);
    memset(name, 0xAA, sizeof name);
    len = 0;
    SHOW("getsockname len 0", getsockname(s, (struct sockaddr *)name, &len));
    dump("  ", name, sizeof name, len);
    SHOW("getsockname NULL len", getsockname(s, (struct sockaddr *)name, NULL));
    SHOW("getpeername unconnected", getpeername(s, (struct sockaddr *)name, &len));

    /* connect and accept on loopback. */
    int c = socket(AF_INET, SOCK_STREAM, 0);
    SHOW("connect NULL", connect(c, NULL, 16));
    SHOW("connect len 3", connect(c, (struct sockaddr *)&lo, 3));
    SHOW("connect 127.0.0.1:PORT", connect(c, (struct sockaddr *)&lo, sizeof lo));
    memset(name, 0xAA, sizeof name);
    len = sizeof name;
    SHOW("getpeername connected", getpeername(c, (struct sockaddr *)name, &len));
    dump("  ", name, sizeof name, len);
    memset(name, 0xAA, sizeof name);
    len = sizeof name;
    SHOW("getsockname connected (address only)", getsockname(c, (struct sockaddr *)name, &len));
    dump("  ", name + 4, 4, len);
    memset(name, 0xAA, sizeof name);
    len = 8; /* family, port and address, but not sin_zero */
    int a = accept(s, (struct sockaddr *)name, &len);
    printf("%-44s -> %s\n", "accept", a >= 0 ? "fd" : "error");
    dump("  (address and bytes past 8)", name + 4, 12, len);
    close(a);
    close(c);
    close(s);

    /* UDP: NULL destinations, short source buffers, and the implicit bind. */
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in ulo = v4("127.0.0.1", port);
    SHOW("udp bind 127.0.0.1:PORT", bind(u, (struct sockaddr *)&ulo, sizeof ulo));
    int k = socket(AF_INET, SOCK_DGRAM, 0);
    SHOW("sendto NULL dest unconnected", sendto(k, "x", 1, 0, NULL, 0));
    SHOW("sendto len 7", sendto(k, "x", 1, 0, (struct sockaddr *)&ulo, 7));
    SHOW("sendto 127.0.0.1:PORT", sendto(k, "hello", 5, 0, (struct sockaddr *)&ulo, sizeof ulo));
    memset(name, 0xAA, sizeof name);
    len = sizeof name;
    SHOW("getsockname after implicit bind", getsockname(k, (struct sockaddr *)name, &len));
    dump("  (family and address)", name, 2, len);
    dump("  ", name + 4, 4, len);
    char buf[16];
    memset(name, 0xAA, sizeof name);
    len = 5;
    SHOW("recvfrom source len 5", recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)name, &len));
    /* (the sender's port is ephemeral: everything but bytes 2-3) */
    dump("  family", name, 2, len);
    dump("  address byte and bytes past 5", name + 4, 28, len);
    SHOW("sendto again", sendto(k, "again", 5, 0, (struct sockaddr *)&ulo, sizeof ulo));
    struct msghdr m;
    struct iovec io = {buf, sizeof buf};
    memset(&m, 0, sizeof m);
    memset(name, 0xAA, sizeof name);
    m.msg_name = name;
    m.msg_namelen = sizeof name;
    m.msg_iov = &io;
    m.msg_iovlen = 1;
    SHOW("recvmsg", recvmsg(u, &m, 0));
    dump("  family", name, 2, m.msg_namelen);
    dump("  address and bytes past it", name + 4, 28, m.msg_namelen);
    printf("%-44s %s\n", "  msg_name pointer kept", m.msg_name == (void *)name ? "yes" : "no");
    close(u);
    close(k);

    /* Other families pass through. */
    int x = socket(AF_UNIX, SOCK_DGRAM, 0);
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof un.sun_path, "/tmp/ipvirt-fidelity-%d", port);
    unlink(un.sun_path);
    SHOW("AF_UNIX bind", bind(x, (struct sockaddr *)&un, sizeof un));
    unlink(un.sun_path);
    close(x);
    int v6 = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 l6;
    memset(&l6, 0, sizeof l6);
    l6.sin6_family = AF_INET6;
    l6.sin6_port = htons((unsigned short)port);
    l6.sin6_addr = in6addr_loopback;
    int r6 = bind(v6, (struct sockaddr *)&l6, sizeof l6);
    printf("%-44s -> %s\n", "bind [::1]:PORT", r6 == 0 || errno == EADDRNOTAVAIL ? "same" : "other");
    close(v6);
    SHOW("close(-1)", close(-1));
    return 0;
}
