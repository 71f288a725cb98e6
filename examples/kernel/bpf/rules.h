/*
 * ipvirt kernel layer: the decisions of SPEC §5, §6 and §8 on the flat tables of SPEC §7.
 *
 * Plain C with no BPF helper in it, so the same file compiles into the cgroup-BPF object
 * (clang -target bpf) and natively (gcc), where tests/kernel.rs checks it against the library's
 * `table::reference` evaluator on generated cases. Every function is `static inline`: the BPF
 * object has no function calls to verify.
 *
 * Addresses are IPv4 numbers in host byte order, as in the tables (127.0.0.1 is 0x7F000001); the
 * hooks convert the kernel's network-order fields. An IPv6 address is carried as a kind: IPv4
 * (a plain AF_INET address), IPv4-mapped (`::ffff:a.b.c.d`, carrying a.b.c.d), `::1`, `::`, or any
 * other IPv6 address (never rewritten).
 */
#ifndef IPVIRT_KERNEL_RULES_H
#define IPVIRT_KERNEL_RULES_H

#include "ipvirt.h"

#define IPV_KIND_V4 0u       /* an AF_INET address */
#define IPV_KIND_MAPPED 1u   /* ::ffff:a.b.c.d */
#define IPV_KIND_LOOP6 2u    /* ::1 */
#define IPV_KIND_ANY6 3u     /* :: */
#define IPV_KIND_OTHER6 4u   /* any other IPv6 address */

/* errno values (Linux) of the refusals, as ipvirt::Refusal::errno() */
#define IPV_EACCES 13
#define IPV_EADDRNOTAVAIL 99
#define IPV_ECONNREFUSED 111

#define IPV_LOOPBACK_BASE 0x7F000000u
#define IPV_HOST_MASK 0x00FFFFFFu

typedef struct ipv_addr {
    uint32_t kind; /* IPV_KIND_* */
    uint32_t ip;   /* the IPv4 address for V4 and MAPPED; 0 otherwise */
} ipv_addr;

typedef struct ipv_tables {
    const ipvirt_policy_table *policy;
    ipvirt_session_entry session;
    ipvirt_program_entry program;
} ipv_tables;

typedef struct ipv_scope {
    uint32_t lo;          /* L applies and the session has a loopback address: that address */
    uint32_t lo_missing;  /* L applies but the session has no loopback address */
    uint32_t v;           /* V applies */
    uint32_t vip;         /* V applies and the session has a VIP: the VIP */
    uint32_t no_conn;     /* V applies, no VIP, on_lease_failure = "no-connectivity" */
    uint32_t prefer;      /* V applies and preferred loopback lists the program */
} ipv_scope;

static inline ipv_scope ipv_scope_of(const ipv_tables *t)
{
    ipv_scope s = {0, 0, 0, 0, 0, 0};
    uint32_t on = t->session.flags & IPVIRT_SESSION_VIRTUALIZED;
    uint32_t l = on && (t->program.flags & IPVIRT_PROGRAM_LOOPBACK);
    uint32_t v = on && (t->program.flags & IPVIRT_PROGRAM_VIRTUAL_IP);
    s.lo_missing = l && (t->session.loopback == 0 || (t->session.flags & IPVIRT_SESSION_NO_LOOPBACK));
    s.lo = (l && !s.lo_missing) ? t->session.loopback : 0;
    s.v = v;
    s.vip = v ? t->session.vip : 0;
    s.no_conn = v && t->session.vip == 0 && (t->session.flags & IPVIRT_SESSION_NO_CONNECTIVITY);
    s.prefer = v && (t->program.flags & IPVIRT_PROGRAM_PREFER_LOOPBACK);
    return s;
}

static inline int ipv_port_excluded(const ipvirt_policy_table *p, uint16_t port)
{
    uint32_t word = (uint32_t)port >> 6;
    if (word >= 1024)
        return 0;
    return (int)((p->excluded_ports[word] >> (port & 63)) & 1);
}

/* Whether `ip` is one of the server's addresses: a binary search of the sorted list with a fixed
 * number of steps (64 entries: 7), so a verifier sees a bounded loop. */
static inline int ipv_is_server(const ipvirt_policy_table *p, uint32_t ip)
{
    uint32_t n = p->server_count;
    uint32_t lo = 0, hi, i;
    if (n > IPVIRT_MAX_SERVERS)
        n = IPVIRT_MAX_SERVERS;
    hi = n;
    for (i = 0; i < 7; i++) {
        uint32_t mid;
        if (lo >= hi)
            break;
        mid = lo + (hi - lo) / 2;
        if (mid >= IPVIRT_MAX_SERVERS)
            return 0;
        if (p->servers[mid] == ip)
            return 1;
        if (p->servers[mid] < ip)
            lo = mid + 1;
        else
            hi = mid;
    }
    return 0;
}

static inline int ipv_is_loopback(uint32_t ip)
{
    return (ip >> 24) == 127;
}

#define IPV_LOCALHOST 0x7F000001u /* 127.0.0.1, where a 0.0.0.0 destination goes */

#define IPV_MINE 0    /* isolation lets the process use the address */
#define IPV_OTHERS 1  /* another session's loopback address */
#define IPV_NOBODY 2  /* in 127.0.0.0/8 but no session's: 127.0.0.0 */

/* Whether isolation refuses the loopback address `ip` to this process (SPEC §12): isolation is on,
 * virtual loopback applies (with or without a loopback address of the session's own), the port is
 * not excluded, and `ip` is neither the localhost address, nor session 0's 127.0.0.1, nor the
 * session's own. IPV_MINE, IPV_OTHERS or IPV_NOBODY. */
static inline int ipv_foreign(const ipv_tables *t, const ipv_scope *s, uint32_t ip, int excluded)
{
    uint32_t host;
    if (!(t->policy->flags & IPVIRT_POLICY_ISOLATE) || (s->lo == 0 && !s->lo_missing) || excluded)
        return IPV_MINE;
    if ((ip & ~IPV_HOST_MASK) != IPV_LOOPBACK_BASE)
        return IPV_MINE;
    if (ip == t->policy->localhost || ip == s->lo)
        return IPV_MINE;
    host = ip & IPV_HOST_MASK;
    if (host == 0)
        return IPV_NOBODY;
    if (host == 1) /* 127.0.0.1 is session 0's */
        return IPV_MINE;
    return IPV_OTHERS;
}

/* Puts `ip` in place of `a`'s address, in `a`'s family (IPv4-mapped for IPv6 kinds). */
static inline void ipv_put(ipv_addr *a, uint32_t ip)
{
    a->kind = a->kind == IPV_KIND_V4 ? IPV_KIND_V4 : IPV_KIND_MAPPED;
    a->ip = ip;
}

/*
 * bind(addr) on a socket; `dual` says the socket takes IPv4-mapped addresses (an AF_INET6 socket
 * with IPV6_V6ONLY off). Rewrites *a in place. Returns 0, or the errno of a refusal.
 */
static inline int ipv_bind(const ipv_tables *t, ipv_addr *a, uint16_t port, int dual)
{
    ipv_scope s = ipv_scope_of(t);
    int excluded = ipv_port_excluded(t->policy, port);
    uint32_t ip;

    if (a->kind == IPV_KIND_LOOP6) {
        if ((t->policy->flags & IPVIRT_POLICY_IPV6_MAP) && dual && (s.lo || s.lo_missing))
            ip = t->policy->localhost;
        else
            return 0;
    } else if (a->kind == IPV_KIND_ANY6) {
        if (!dual)
            return 0;
        ip = 0;
    } else if (a->kind == IPV_KIND_OTHER6) {
        return 0;
    } else {
        ip = a->ip;
    }
    if (ip == t->policy->localhost && (s.lo || s.lo_missing) && !excluded) {
        if (!s.lo)
            return IPV_EADDRNOTAVAIL;
        ipv_put(a, s.lo);
        return 0;
    }
    if (s.v && (ip == 0 || ipv_is_server(t->policy, ip))) {
        if (s.vip) {
            ipv_put(a, s.vip);
            return 0;
        }
        return s.no_conn ? IPV_EADDRNOTAVAIL : 0;
    }
    if (ipv_foreign(t, &s, ip, excluded) != IPV_MINE)
        return IPV_EACCES;
    return 0;
}

/*
 * connect(dest) and sendto(dest), which decide alike. Rewrites *dest in place and sets *source to
 * the implicit source address (0: none; the hook binds it only on an unbound socket, port 0).
 * Returns 0, or the errno of a refusal.
 */
static inline int ipv_connect(const ipv_tables *t, ipv_addr *dest, uint16_t port, uint32_t *source)
{
    ipv_scope s = ipv_scope_of(t);
    int excluded = ipv_port_excluded(t->policy, port);
    uint32_t ip, own = 0, unspecified = 0;

    *source = 0;
    /* SPEC §12: a destination of 0.0.0.0 is this host, which Linux sends to 127.0.0.1 (and `::`
     * is `::1`): it is decided as that address. */
    if (dest->kind == IPV_KIND_LOOP6 || dest->kind == IPV_KIND_ANY6) {
        if ((t->policy->flags & IPVIRT_POLICY_IPV6_MAP) && (s.lo || s.lo_missing) && !excluded)
            ip = t->policy->localhost;
        else
            return 0;
    } else if (dest->kind == IPV_KIND_V4 || dest->kind == IPV_KIND_MAPPED) {
        ip = dest->ip;
        if (ip == 0) {
            ip = IPV_LOCALHOST;
            unspecified = 1;
        }
    } else {
        return 0;
    }
    if (!ipv_is_loopback(ip)) {
        /* Off the machine: only the source changes (V). */
        if (s.v && s.vip) {
            *source = s.vip;
            return 0;
        }
        if (s.v && s.no_conn)
            return IPV_EADDRNOTAVAIL;
        return 0;
    }
    if (!excluded) {
        if (s.lo_missing && ip == t->policy->localhost)
            return IPV_EADDRNOTAVAIL;
        if (s.lo) {
            if (ip == t->policy->localhost) {
                ipv_put(dest, s.lo);
                own = s.lo;
            } else if (ip == s.lo) {
                own = s.lo;
            }
        }
    }
    if (ipv_foreign(t, &s, ip, excluded) != IPV_MINE)
        return IPV_ECONNREFUSED;
    /* 0.0.0.0 that no rule rewrote goes where the kernel sends it, whatever source is bound
     * (only where some rule applies: a process out of every scope is never rewritten). */
    if (unspecified && dest->ip == 0 && (s.lo || s.lo_missing || s.v))
        ipv_put(dest, IPV_LOCALHOST);
    /* The VIP is the source of everything, loopback included, unless preferred loopback lists the
     * program; without a VIP, loopback traffic needs none. */
    if (s.vip && !s.prefer)
        *source = s.vip;
    else
        *source = own;
    return 0;
}

/* What getsockname, getpeername, accept and recvfrom report for *a: the session loopback becomes
 * localhost again (`::1` for an IPv6 socket when the IPv6 mapping is on). */
static inline void ipv_reported(const ipv_tables *t, ipv_addr *a, uint16_t port)
{
    ipv_scope s = ipv_scope_of(t);
    if (!s.lo || ipv_port_excluded(t->policy, port))
        return;
    if ((a->kind != IPV_KIND_V4 && a->kind != IPV_KIND_MAPPED) || a->ip != s.lo)
        return;
    if (a->kind == IPV_KIND_MAPPED && (t->policy->flags & IPVIRT_POLICY_IPV6_MAP)) {
        a->kind = IPV_KIND_LOOP6;
        a->ip = 0;
        return;
    }
    a->ip = t->policy->localhost;
}

#endif
