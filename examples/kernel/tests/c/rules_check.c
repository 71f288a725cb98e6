/* Runs the kernel layer's decisions (examples/kernel/rules.h) natively on cases read from stdin,
 * one answer line per case, so tests/kernel_layer.rs can compare them with the library's
 * `table::reference` evaluator. Every number is decimal.
 *
 *   P flags localhost primary n s1 .. sn m p1 .. pm   the policy table (n servers, m excluded ports)
 *   B session lo vip sflags pflags kind ip port dual  bind    -> "ok KIND IP" | "err ERRNO"
 *   C session lo vip sflags pflags kind ip port       connect -> "ok KIND IP SOURCE" | "err ERRNO"
 *   R session lo vip sflags pflags kind ip port       reported -> "ok KIND IP"
 */
#include <stdio.h>
#include <string.h>

#include "rules.h"

static ipvirt_policy_table policy;

static int read_policy(void)
{
    unsigned flags, localhost, primary, n, m, i;
    memset(&policy, 0, sizeof policy);
    policy.version = IPVIRT_TABLE_VERSION;
    if (scanf("%u %u %u %u", &flags, &localhost, &primary, &n) != 4 || n > IPVIRT_MAX_SERVERS)
        return -1;
    policy.flags = flags;
    policy.localhost = localhost;
    policy.primary_server = primary;
    policy.server_count = n;
    for (i = 0; i < n; i++)
        if (scanf("%u", &policy.servers[i]) != 1)
            return -1;
    if (scanf("%u", &m) != 1)
        return -1;
    for (i = 0; i < m; i++) {
        unsigned port;
        if (scanf("%u", &port) != 1 || port > 65535)
            return -1;
        policy.excluded_ports[port >> 6] |= 1ull << (port & 63);
    }
    return 0;
}

int main(void)
{
    char op[2];
    while (scanf("%1s", op) == 1) {
        ipv_tables t;
        ipv_addr a;
        unsigned session, lo, vip, sflags, pflags, kind, ip, port, dual = 0;
        if (op[0] == 'P') {
            if (read_policy() != 0)
                return 2;
            continue;
        }
        if (scanf("%u %u %u %u %u %u %u %u", &session, &lo, &vip, &sflags, &pflags, &kind, &ip,
                  &port) != 8)
            return 2;
        if (op[0] == 'B' && scanf("%u", &dual) != 1)
            return 2;
        t.policy = &policy;
        t.session.session = session;
        t.session.loopback = lo;
        t.session.vip = vip;
        t.session.flags = sflags;
        t.program.flags = pflags;
        a.kind = kind;
        a.ip = ip;
        if (op[0] == 'B') {
            int r = ipv_bind(&t, &a, (uint16_t)port, (int)dual);
            if (r)
                printf("err %d\n", r);
            else
                printf("ok %u %u\n", a.kind, a.ip);
        } else if (op[0] == 'C') {
            uint32_t source;
            int r = ipv_connect(&t, &a, (uint16_t)port, &source);
            if (r)
                printf("err %d\n", r);
            else
                printf("ok %u %u %u\n", a.kind, a.ip, source);
        } else if (op[0] == 'R') {
            ipv_reported(&t, &a, (uint16_t)port);
            printf("ok %u %u\n", a.kind, a.ip);
        } else {
            return 2;
        }
    }
    return 0;
}
