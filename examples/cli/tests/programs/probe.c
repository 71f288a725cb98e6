/* One socket call per argument triple, on a fresh socket each, printing what the program sees and
 * where the socket really is (read from /proc/net/tcp and tcp6 by the socket's inode). tests/layers_agree.rs
 * runs it under the LD_PRELOAD layer and in a kernel-layer session, and compares both with the
 * Rewriter's and the C ABI's answers.
 *
 *   probe OP ADDR PORT [OP ADDR PORT]...
 *   OP: bind4 | bind6 | connect4 | connect6 | udp4 (send to an echo server, print the reply's source)
 *
 * Lines: "OP ADDR PORT ok real=IP reported=IP"                     (bind)
 *        "OP ADDR PORT ok peer=IP peer_reported=IP local=IP local_reported=IP" (connect)
 *        "OP ADDR PORT ok from=IP"                                  (udp4)
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

int main(int argc, char **argv)
{
    for (int i = 1; i + 2 < argc; i += 3) {
        const char *op = argv[i], *ip = argv[i + 1];
        int port = atoi(argv[i + 2]);
        int six = strchr(op, '6') != NULL;
        const char *tcp_table = six ? "/proc/net/tcp6" : "/proc/net/tcp";
        struct sockaddr_storage ss, got;
        socklen_t len = make(six, ip, port, &ss), glen;
        char a[64], b[64], c[64], d[64];
        printf("%s %s %d ", op, ip, port);
        if (strncmp(op, "udp", 3) == 0) {
            struct timeval tv = {10, 0};
            int fd = socket(AF_INET, SOCK_DGRAM, 0);
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            char buf[64];
            if (sendto(fd, "ping", 4, 0, (struct sockaddr *)&ss, len) < 0) {
                printf("err %d\n", errno);
            } else {
                glen = sizeof got;
                if (recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&got, &glen) < 0) {
                    printf("err %d\n", errno);
                } else {
                    show(&got, a, sizeof a);
                    printf("ok from=%s\n", a);
                }
            }
            close(fd);
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
