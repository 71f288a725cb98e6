/* One socket call per argument triple, on a fresh socket each, printing what the program sees and
 * where the socket really is (read from /proc/net/tcp and tcp6 by the socket's inode). tests/layers_agree.rs
 * runs it under the LD_PRELOAD layer and in a kernel-layer session, and compares both with the
 * Rewriter's and the C ABI's answers.
 *
 *   probe OP ADDR PORT [OP ADDR PORT]...
 *   OP: bind4 | bind6 | connect4 | connect6
 *     | udp4 (sendto an echo server that answers with the source it saw; print the reply's source
 *       and that)
 *     | udp4src=SRC (the same with sendmsg, the source chosen with IP_PKTINFO)
 *     | udp6src=SRC (an AF_INET6 socket, the source chosen with IPV6_PKTINFO)
 *     | udp4unspec (sendto with sin_family = AF_UNSPEC, which Linux reads as AF_INET)
 *     | udp4disc=OFF (a UDP socket connected to ADDR:PORT, then disconnected with
 *       connect(AF_UNSPEC): its address, the result of a send to OFF:9 and its address after;
 *       a second such socket connected to OFF:9 instead, and its address)
 *
 * Lines: "OP ADDR PORT ok real=IP reported=IP"                     (bind)
 *        "OP ADDR PORT ok peer=IP peer_reported=IP local=IP local_reported=IP" (connect)
 *        "OP ADDR PORT ok from=IP src=IP"                           (udp*)
 *        "OP ADDR PORT ok local=IP:PORT send=R after=IP reconnected=IP" (udp4disc)
 *        "OP ADDR PORT err ERRNO"
 * Built static in the test, so the kernel layer sees a static program and LD_PRELOAD a dynamic one
 * built from the same source.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static void show(const struct sockaddr_storage *ss, char *out, size_t n)
{
    if (ss->ss_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)n);
    else if (ss->ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)n);
    else
        snprintf(out, n, "family%d", ss->ss_family);
}

/* The local (column 1) or remote (column 2) address of the socket with inode `ino` in `table`. */
static int real(const char *table, unsigned long ino, int remote, char *out, size_t n)
{
    char line[512];
    FILE *f = fopen(table, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char local[64], rem[64];
        unsigned long inode;
        if (sscanf(line, " %*s %63s %63s %*s %*s %*s %*s %*s %*s %lu", local, rem, &inode) != 3)
            continue;
        if (inode != ino)
            continue;
        fclose(f);
        char *hex = remote ? rem : local;
        *strchr(hex, ':') = 0;
        if (strlen(hex) == 8) {
            struct in_addr a;
            a.s_addr = (in_addr_t)strtoul(hex, NULL, 16);
            inet_ntop(AF_INET, &a, out, (socklen_t)n);
        } else {
            struct in6_addr a;
            for (int w = 0; w < 4; w++) {
                char word[9];
                memcpy(word, hex + 8 * w, 8);
                word[8] = 0;
                uint32_t v = (uint32_t)strtoul(word, NULL, 16);
                memcpy(&a.s6_addr[4 * w], &v, 4);
            }
            inet_ntop(AF_INET6, &a, out, (socklen_t)n);
        }
        return 0;
    }
    fclose(f);
    return -1;
}

static unsigned long inode_of(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 ? (unsigned long)st.st_ino : 0;
}

static socklen_t make(int six, const char *ip, int port, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (six) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((unsigned short)port);
        if (inet_pton(AF_INET6, ip, &a->sin6_addr) != 1)
            exit(2);
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &a->sin_addr) != 1)
        exit(2);
    return sizeof *a;
}

/* A UDP send to the echo server at ss, printing the reply's source and the source the server saw.
 * `src`: the source to choose in IP_PKTINFO / IPV6_PKTINFO (NULL: none); `unspec`: send with the
 * family field AF_UNSPEC. */
static void udp(int six, const struct sockaddr_storage *ss, socklen_t len, const char *src, int unspec)
{
    struct timeval tv = {10, 0};
    struct sockaddr_storage to = *ss, got;
    socklen_t glen = sizeof got;
    char buf[64], a[64];
    union {
        char buf[CMSG_SPACE(sizeof(struct in6_pktinfo))];
        struct cmsghdr align;
    } control;
    struct iovec iov = {"ping", 4};
    struct msghdr m;
    ssize_t n;
    int fd = socket(six ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (unspec)
        to.ss_family = AF_UNSPEC;
    memset(&m, 0, sizeof m);
    memset(&control, 0, sizeof control);
    m.msg_name = &to;
    m.msg_namelen = len;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    if (src) {
        struct cmsghdr *c;
        m.msg_control = control.buf;
        if (six) {
            struct in6_pktinfo pi;
            memset(&pi, 0, sizeof pi);
            if (inet_pton(AF_INET6, src, &pi.ipi6_addr) != 1)
                exit(2);
            m.msg_controllen = CMSG_SPACE(sizeof pi);
            c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = IPPROTO_IPV6;
            c->cmsg_type = IPV6_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            memcpy(CMSG_DATA(c), &pi, sizeof pi);
        } else {
            struct in_pktinfo pi;
            memset(&pi, 0, sizeof pi);
            if (inet_pton(AF_INET, src, &pi.ipi_spec_dst) != 1)
                exit(2);
            m.msg_controllen = CMSG_SPACE(sizeof pi);
            c = CMSG_FIRSTHDR(&m);
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_PKTINFO;
            c->cmsg_len = CMSG_LEN(sizeof pi);
            memcpy(CMSG_DATA(c), &pi, sizeof pi);
        }
    }
    if (sendmsg(fd, &m, 0) < 0) {
        printf("err %d\n", errno);
    } else if ((n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&got, &glen)) < 0) {
        printf("err %d\n", errno);
    } else {
        buf[n] = 0;
        show(&got, a, sizeof a);
        printf("ok from=%s src=%s\n", a, buf);
    }
    close(fd);
}

/* The local address of fd as the program sees it: "IP:PORT" or "IP" (with_port 0). */
static void local_of(int fd, char *out, size_t n, int with_port)
{
    struct sockaddr_storage got;
    socklen_t glen = sizeof got;
    char ip[64];
    memset(&got, 0, sizeof got);
    if (getsockname(fd, (struct sockaddr *)&got, &glen) != 0) {
        snprintf(out, n, "errno%d", errno);
        return;
    }
    show(&got, ip, sizeof ip);
    if (with_port)
        snprintf(out, n, "%s:%d", ip, ntohs(((struct sockaddr_in *)&got)->sin_port));
    else
        snprintf(out, n, "%s", ip);
}

/* udp4disc: see the top. */
static void dissolved(const struct sockaddr_storage *ss, socklen_t len, const char *off_ip)
{
    struct sockaddr_in un, off;
    char local[80], after[80], again[80], sent[32];
    int fd = socket(AF_INET, SOCK_DGRAM, 0), fd2 = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&un, 0, sizeof un);
    un.sin_family = AF_UNSPEC;
    memset(&off, 0, sizeof off);
    off.sin_family = AF_INET;
    off.sin_port = htons(9);
    if (inet_pton(AF_INET, off_ip, &off.sin_addr) != 1)
        exit(2);
    if (connect(fd, (const struct sockaddr *)ss, len) < 0 ||
        connect(fd, (struct sockaddr *)&un, sizeof un) < 0 ||
        connect(fd2, (const struct sockaddr *)ss, len) < 0 ||
        connect(fd2, (struct sockaddr *)&un, sizeof un) < 0) {
        printf("err %d\n", errno);
        exit(0);
    }
    local_of(fd, local, sizeof local, 1);
    if (sendto(fd, "x", 1, 0, (struct sockaddr *)&off, sizeof off) < 0)
        snprintf(sent, sizeof sent, "errno%d", errno);
    else
        snprintf(sent, sizeof sent, "ok");
    local_of(fd, after, sizeof after, 0);
    if (connect(fd2, (struct sockaddr *)&off, sizeof off) < 0)
        snprintf(again, sizeof again, "errno%d", errno);
    else
        local_of(fd2, again, sizeof again, 0);
    printf("ok local=%s send=%s after=%s reconnected=%s\n", local, sent, after, again);
    close(fd);
    close(fd2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 2 < argc; i += 3) {
        char op[64];
        const char *ip = argv[i + 1], *arg;
        int port = atoi(argv[i + 2]);
        snprintf(op, sizeof op, "%s", argv[i]);
        arg = strchr(op, '=');
        if (arg)
            *(char *)arg++ = 0;
        int six = strchr(op, '6') != NULL;
        const char *tcp_table = six ? "/proc/net/tcp6" : "/proc/net/tcp";
        struct sockaddr_storage ss, got;
        socklen_t len = make(six, ip, port, &ss), glen;
        char a[64], b[64], c[64], d[64];
        printf("%s %s %d ", argv[i], ip, port);
        if (strncmp(op, "udp", 3) == 0) {
            if (strcmp(op, "udp4unspec") == 0) {
                /* sendto, as the attack did */
                struct timeval tv = {10, 0};
                struct sockaddr_storage to = ss;
                char buf[64];
                ssize_t n;
                int fd = socket(AF_INET, SOCK_DGRAM, 0);
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                to.ss_family = AF_UNSPEC;
                glen = sizeof got;
                if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&to, len) < 0)
                    printf("err %d\n", errno);
                else if ((n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&got, &glen)) < 0)
                    printf("err %d\n", errno);
                else {
                    buf[n] = 0;
                    show(&got, a, sizeof a);
                    printf("ok from=%s src=%s\n", a, buf);
                }
                close(fd);
            } else if (strcmp(op, "udp4disc") == 0 && arg) {
                dissolved(&ss, len, arg);
            } else if (strcmp(op, "udp4") == 0) {
                struct timeval tv = {10, 0};
                char buf[64];
                ssize_t n;
                int fd = socket(AF_INET, SOCK_DGRAM, 0);
                setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
                glen = sizeof got;
                if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&ss, len) < 0)
                    printf("err %d\n", errno);
                else if ((n = recvfrom(fd, buf, sizeof buf - 1, 0, (struct sockaddr *)&got, &glen)) < 0)
                    printf("err %d\n", errno);
                else {
                    buf[n] = 0;
                    show(&got, a, sizeof a);
                    printf("ok from=%s src=%s\n", a, buf);
                }
                close(fd);
            } else {
                udp(six, &ss, len, arg, 0);
            }
            continue;
        }
        int fd = socket(six ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (strncmp(op, "bind", 4) == 0) {
            if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
                printf("err %d\n", errno);
            } else {
                glen = sizeof got;
                getsockname(fd, (struct sockaddr *)&got, &glen);
                show(&got, b, sizeof b);
                /* /proc/net lists a bound socket once it listens. */
                listen(fd, 1);
                if (real(tcp_table, inode_of(fd), 0, a, sizeof a) != 0)
                    strcpy(a, "?");
                printf("ok real=%s reported=%s\n", a, b);
            }
        } else {
            if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
                printf("err %d\n", errno);
            } else {
                glen = sizeof got;
                getpeername(fd, (struct sockaddr *)&got, &glen);
                show(&got, b, sizeof b);
                glen = sizeof got;
                getsockname(fd, (struct sockaddr *)&got, &glen);
                show(&got, d, sizeof d);
                if (real(tcp_table, inode_of(fd), 1, a, sizeof a) != 0)
                    strcpy(a, "?");
                if (real(tcp_table, inode_of(fd), 0, c, sizeof c) != 0)
                    strcpy(c, "?");
                printf("ok peer=%s peer_reported=%s local=%s local_reported=%s\n", a, b, c, d);
            }
        }
        close(fd);
    }
    return 0;
}
