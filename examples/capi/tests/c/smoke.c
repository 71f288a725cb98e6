/* Exercises every function of ipvirt.h, NULLs and short buffers included. Exits 0 when every
 * check passes; prints each failing check. Built and run by tests/capi.rs. */
#include "ipvirt.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* The rule tables' layout is the one the Rust side has (tests/tables.rs checks the same numbers). */
_Static_assert(sizeof(ipvirt_policy_table) == 8472, "policy table size");
_Static_assert(offsetof(ipvirt_policy_table, flags) == 4, "flags");
_Static_assert(offsetof(ipvirt_policy_table, localhost) == 8, "localhost");
_Static_assert(offsetof(ipvirt_policy_table, primary_server) == 12, "primary_server");
_Static_assert(offsetof(ipvirt_policy_table, server_count) == 16, "server_count");
_Static_assert(offsetof(ipvirt_policy_table, servers) == 24, "servers");
_Static_assert(offsetof(ipvirt_policy_table, excluded_ports) == 280, "excluded_ports");
_Static_assert(sizeof(ipvirt_session_entry) == 16, "session entry size");
_Static_assert(offsetof(ipvirt_session_entry, loopback) == 4, "loopback");
_Static_assert(offsetof(ipvirt_session_entry, vip) == 8, "vip");
_Static_assert(offsetof(ipvirt_session_entry, flags) == 12, "session flags");
_Static_assert(sizeof(ipvirt_program_entry) == 4, "program entry size");

static int failures = 0;
#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            printf("FAIL line %d: %s\n", __LINE__, #cond);                       \
            failures++;                                                          \
        }                                                                        \
    } while (0)

static const char POLICY[] =
    "[virtual_loopback]\n"
    "enabled = true\n"
    "programs = [\"crm.exe\"]\n"
    "excluded_ports = [27000]\n"
    "isolate = true\n"
    "[virtual_ip]\n"
    "enabled = true\n"
    "programs = [\"crm.exe\", \"lone.exe\"]\n"
    "adapter = \"192.0.2.0/24\"\n"
    "on_lease_failure = \"no-connectivity\"\n";

static struct sockaddr_in v4(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static int is(const struct sockaddr_in *a, const char *ip, int port) {
    char buf[32];
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof buf);
    return strcmp(buf, ip) == 0 && ntohs(a->sin_port) == port && a->sin_family == AF_INET;
}

/* Lengths no buffer can have: refused before ipvirt looks at the bytes (real, small buffers are
 * passed, and must come back unchanged). */
static const size_t HUGE_LENS[] = {(size_t)PTRDIFF_MAX + 1, SIZE_MAX};

static void huge_lengths_and_overlap(ipvirt_rewriter *rw) {
    struct sockaddr_in a, b, keep;
    uint8_t source[28];
    uint32_t changed = 9;
    size_t written = 99;
    unsigned i;
    for (i = 0; i < sizeof HUGE_LENS / sizeof HUGE_LENS[0]; i++) {
        size_t n = HUGE_LENS[i];
        a = v4("127.0.0.1", 9000);
        keep = a;
        memset(source, 0x77, sizeof source);
        CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, n, 1, 0, &changed) == IPVIRT_INVALID_ARGUMENT);
        CHECK(ipvirt_rewriter_reported(rw, (uint8_t *)&a, n, 1, &changed) == IPVIRT_INVALID_ARGUMENT);
        CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, n, 1, source, sizeof source, &written, &changed) == IPVIRT_INVALID_ARGUMENT);
        CHECK(ipvirt_rewriter_sendto(rw, (uint8_t *)&a, sizeof a, 1, source, n, &written, &changed) == IPVIRT_INVALID_ARGUMENT);
        CHECK(memcmp(&a, &keep, sizeof a) == 0 && source[0] == 0x77 && source[27] == 0x77);
        CHECK(changed == 9 && written == 99);
    }

    /* One buffer as both dest and source: refused, nothing changed (it used to zero the port). */
    a = v4("127.0.0.1", 9000);
    keep = a;
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, (uint8_t *)&a, sizeof a, &written, &changed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_rewriter_sendto(rw, (uint8_t *)&a, sizeof a, 1, (uint8_t *)&a + 8, 8, &written, &changed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(memcmp(&a, &keep, sizeof a) == 0 && changed == 9 && written == 99);
    /* A scalar output inside the address it reports on: refused too. */
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, 1, 0, (uint32_t *)((uint8_t *)&a + 4)) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, (uint32_t *)(source + 4)) == IPVIRT_INVALID_ARGUMENT);
    CHECK(memcmp(&a, &keep, sizeof a) == 0);
    /* Separate buffers, even adjacent ones, are fine. */
    struct {
        struct sockaddr_in dest;
        uint8_t source[28];
    } adjacent;
    adjacent.dest = v4("127.0.0.1", 9000);
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&adjacent.dest, sizeof adjacent.dest, 1, adjacent.source, sizeof adjacent.source, &written, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&adjacent.dest, "127.0.0.8", 9000) && written == 16);
    b = v4("127.0.0.1", 9000);
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&b, sizeof b, 1, source, sizeof source, &written, &changed) == IPVIRT_OK);
    CHECK(is(&b, "127.0.0.8", 9000));
}

/* Finds a diagnostic with `code` in list; its index, or -1. */
static long find_code(const ipvirt_diagnostics *list, uint32_t code, ipvirt_diagnostic *found) {
    size_t n = 0, i;
    CHECK(ipvirt_diagnostics_count(list, &n) == IPVIRT_OK);
    for (i = 0; i < n; i++) {
        ipvirt_diagnostic d;
        CHECK(ipvirt_diagnostics_get(list, i, &d) == IPVIRT_OK);
        CHECK(d.code_name != NULL && d.message != NULL && strlen(d.message) == d.message_len);
        if (d.code == code) {
            *found = d;
            return (long)i;
        }
    }
    return -1;
}

/* JSON and .reg input, and validation. */
static void formats_and_validation(void) {
    static const char JSON[] =
        "{\"virtual_loopback\": {\"enabled\": true, \"programs\": [\"crm.exe\"]}}";
    static const char REG[] =
        "Windows Registry Editor Version 5.00\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n"
        "\"EnableVirtualIP\"=dword:00000001\r\n"
        "\"VirtualMode\"=dword:00000000\r\n"
        "\"VIPAdapter\"=\"192.0.2.0/24\"\r\n";
    static const char REG_BAD[] =
        "Windows Registry Editor Version 5.00\r\n\r\n"
        "[HKEY_LOCAL_MACHINE\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\TSAppSrv\\VirtualIP]\r\n"
        "\"EnableVirtualIP\"=dword:00000001\r\n"
        "\"VirtualMode\"=dword:00000005\r\n";
    static const char VALIDATE[] =
        "[virtual_ip]\nenabled = true\n"
        "[virtual_loopback]\nenabled = true\nprograms = [\"crm.exe\", \"CRM.EXE\"]\n";
    char msg[256];
    size_t needed = 0;
    ipvirt_engine *engine = NULL;
    ipvirt_plan plan;
    ipvirt_diagnostics *list = NULL;
    ipvirt_diagnostic d;
    size_t n = 99;

    CHECK(ipvirt_engine_new_json((const uint8_t *)JSON, strlen(JSON), NULL, 0, &engine, msg, sizeof msg, NULL) == IPVIRT_OK);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)"crm.exe", 7, &plan) == IPVIRT_OK);
    CHECK(plan.loopback == 1 && plan.loopback_reason == 3);
    ipvirt_engine_free(engine);
    engine = NULL;
    CHECK(ipvirt_engine_new_json((const uint8_t *)"{\"virtual_loopback\": {\"enable\": true}}", 38, NULL, 0, &engine, msg, sizeof msg, &needed) == IPVIRT_POLICY_ERROR);
    CHECK(engine == NULL && strstr(msg, "enable") != NULL && needed == strlen(msg));
    CHECK(ipvirt_engine_new_json(NULL, 0, NULL, 0, &engine, NULL, 0, NULL) == IPVIRT_NULL_ARGUMENT);

    CHECK(ipvirt_engine_new_reg((const uint8_t *)REG, strlen(REG), NULL, 0, &engine, msg, sizeof msg, NULL) == IPVIRT_OK);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)"any.exe", 7, &plan) == IPVIRT_OK);
    CHECK(plan.virtual_ip == 1 && plan.virtual_ip_reason == 2); /* per-session, from the export */
    ipvirt_engine_free(engine);
    engine = NULL;
    CHECK(ipvirt_engine_new_reg((const uint8_t *)"not a registry export", 21, NULL, 0, &engine, msg, sizeof msg, NULL) == IPVIRT_POLICY_ERROR);
    CHECK(engine == NULL && strlen(msg) > 0);

    /* validate: TOML, with the codes and the words */
    CHECK(ipvirt_policy_validate(IPVIRT_FORMAT_TOML, (const uint8_t *)VALIDATE, strlen(VALIDATE), NULL, 0, &list, msg, sizeof msg, NULL) == IPVIRT_OK);
    CHECK(find_code(list, IPVIRT_DIAG_VIP_NO_ADAPTER, &d) >= 0);
    CHECK(d.severity == IPVIRT_SEVERITY_ERROR && strcmp(d.code_name, "vip-no-adapter") == 0);
    CHECK(strstr(d.message, "virtual_ip.adapter") != NULL);
    CHECK(find_code(list, IPVIRT_DIAG_DUPLICATE_PROGRAM, &d) >= 0);
    CHECK(d.severity == IPVIRT_SEVERITY_WARNING && strcmp(d.code_name, "duplicate-program") == 0);
    CHECK(ipvirt_diagnostics_count(list, &n) == IPVIRT_OK && n >= 2);
    CHECK(ipvirt_diagnostics_get(list, n, &d) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_diagnostics_get(list, 0, NULL) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_diagnostics_count(NULL, &n) == IPVIRT_NULL_ARGUMENT);
    ipvirt_diagnostics_free(list);
    ipvirt_diagnostics_free(NULL);
    /* .reg: the import's own diagnostics come too */
    CHECK(ipvirt_policy_validate(IPVIRT_FORMAT_REG, (const uint8_t *)REG_BAD, strlen(REG_BAD), NULL, 0, &list, msg, sizeof msg, NULL) == IPVIRT_OK);
    CHECK(find_code(list, IPVIRT_DIAG_REG_BAD_VALUE, &d) == 0 && strstr(d.message, "VirtualMode") != NULL);
    ipvirt_diagnostics_free(list);
    /* JSON, a clean policy: an empty list */
    list = NULL;
    CHECK(ipvirt_policy_validate(IPVIRT_FORMAT_JSON, (const uint8_t *)JSON, strlen(JSON), NULL, 0, &list, msg, sizeof msg, NULL) == IPVIRT_OK);
    CHECK(find_code(list, IPVIRT_DIAG_VIP_NO_ADAPTER, &d) == -1);
    ipvirt_diagnostics_free(list);
    /* errors: an unknown format, an unreadable policy, NULL out */
    list = NULL;
    CHECK(ipvirt_policy_validate(7, (const uint8_t *)JSON, strlen(JSON), NULL, 0, &list, msg, sizeof msg, &needed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(list == NULL && strstr(msg, "format 7") != NULL);
    CHECK(ipvirt_policy_validate(IPVIRT_FORMAT_TOML, (const uint8_t *)"[x", 2, NULL, 0, &list, msg, sizeof msg, NULL) == IPVIRT_POLICY_ERROR);
    CHECK(list == NULL && strstr(msg, "line 1") != NULL);
    CHECK(ipvirt_policy_validate(IPVIRT_FORMAT_TOML, (const uint8_t *)VALIDATE, strlen(VALIDATE), NULL, 0, NULL, msg, sizeof msg, NULL) == IPVIRT_NULL_ARGUMENT);
}

int main(void) {
    char msg[256];
    size_t needed = 0;

    /* version and status messages */
    CHECK(ipvirt_version() != NULL && strcmp(ipvirt_version(), IPVIRT_VERSION_STRING) == 0);
    CHECK(ipvirt_status_message(IPVIRT_NO_CONNECTIVITY, msg, sizeof msg, &needed) == IPVIRT_OK);
    CHECK(strstr(msg, "EADDRNOTAVAIL") != NULL && needed == strlen(msg));
    char tiny[5];
    CHECK(ipvirt_status_message(IPVIRT_ISOLATED, tiny, sizeof tiny, &needed) == IPVIRT_BUFFER_TOO_SHORT);
    CHECK(strlen(tiny) == 4 && needed > 4);
    CHECK(ipvirt_status_message(999, msg, sizeof msg, NULL) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_status_message(0, NULL, 0, &needed) == IPVIRT_BUFFER_TOO_SHORT && needed == 7);
    needed = 99;
    msg[0] = 'x';
    CHECK(ipvirt_status_message(0, msg, SIZE_MAX, &needed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(needed == 99 && msg[0] == 'x');
    CHECK(ipvirt_status_message(0, msg, sizeof msg, (size_t *)(msg + 8)) == IPVIRT_INVALID_ARGUMENT);

    /* engine_new: NULLs, a policy error with its message (also truncated), success */
    ipvirt_engine *engine = NULL;
    CHECK(ipvirt_engine_new(NULL, 0, NULL, 0, &engine, NULL, 0, NULL) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), NULL, 0, NULL, NULL, 0, NULL) == IPVIRT_NULL_ARGUMENT);
    const char bad[] = "[virtual_ip]\nenabled = \"yes\"\n";
    CHECK(ipvirt_engine_new((const uint8_t *)bad, strlen(bad), NULL, 0, &engine, msg, sizeof msg, &needed) == IPVIRT_POLICY_ERROR);
    CHECK(engine == NULL);
    CHECK(strstr(msg, "line 2") != NULL && strstr(msg, "virtual_ip.enabled") != NULL);
    CHECK(ipvirt_engine_new((const uint8_t *)bad, strlen(bad), NULL, 0, &engine, tiny, sizeof tiny, &needed) == IPVIRT_POLICY_ERROR);
    CHECK(strlen(tiny) == 4 && needed > 10);
    const char nonloop[] = "[virtual_loopback]\nlocalhost = \"10.0.0.1\"\n";
    CHECK(ipvirt_engine_new((const uint8_t *)nonloop, strlen(nonloop), NULL, 0, &engine, msg, sizeof msg, NULL) == IPVIRT_COMPILE_ERROR);
    const uint8_t badutf8[] = {0xff, 0xfe, 0};
    CHECK(ipvirt_engine_new(badutf8, 2, NULL, 0, &engine, NULL, 0, NULL) == IPVIRT_INVALID_UTF8);
    const uint8_t servers[] = {192, 0, 2, 10};
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), servers, 3, &engine, NULL, 0, NULL) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), NULL, 4, &engine, NULL, 0, NULL) == IPVIRT_NULL_ARGUMENT);
    /* lengths no buffer can have: the message says which; a huge err_len writes nothing */
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, (size_t)PTRDIFF_MAX + 1, NULL, 0, &engine, msg, sizeof msg, NULL) == IPVIRT_INVALID_ARGUMENT);
    CHECK(strstr(msg, "policy_len") != NULL && engine == NULL);
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), servers, SIZE_MAX, &engine, msg, sizeof msg, NULL) == IPVIRT_INVALID_ARGUMENT);
    CHECK(strstr(msg, "servers_len") != NULL && engine == NULL);
    needed = 99;
    msg[0] = 'x';
    CHECK(ipvirt_engine_new((const uint8_t *)bad, strlen(bad), NULL, 0, &engine, msg, SIZE_MAX, &needed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(needed == 99 && msg[0] == 'x' && engine == NULL);
    CHECK(ipvirt_engine_new((const uint8_t *)POLICY, strlen(POLICY), servers, sizeof servers, &engine, NULL, 0, NULL) == IPVIRT_OK);
    CHECK(engine != NULL);

    /* engine_process */
    ipvirt_plan plan, other;
    const char image[] = "C:\\Apps\\CRM.EXE";
    CHECK(ipvirt_engine_process(NULL, (const uint8_t *)image, strlen(image), &plan) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_engine_process(engine, NULL, 0, &plan) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)image, strlen(image), NULL) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_engine_process(engine, badutf8, 2, &plan) == IPVIRT_INVALID_UTF8);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)image, SIZE_MAX, &plan) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)image, strlen(image), &plan) == IPVIRT_OK);
    CHECK(plan.loopback == 1 && plan.virtual_ip == 1 && plan.prefer_loopback == 0);
    CHECK(plan.loopback_reason == 3 && plan.loopback_entry == 0);
    CHECK(ipvirt_engine_process(engine, (const uint8_t *)"notepad.exe", 11, &other) == IPVIRT_OK);
    CHECK(other.loopback == 0 && other.loopback_reason == 4);

    /* rewriter_new: session 7, VIP 192.0.2.107 */
    ipvirt_rewriter *rw = NULL, *novip = NULL, *console = NULL, *x = NULL;
    const uint8_t vip[] = {192, 0, 2, 107};
    CHECK(ipvirt_rewriter_new(NULL, 7, 0, &plan, vip, 4, &rw) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, NULL, vip, 4, &rw) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_new(engine, 7, 2, &plan, vip, 4, &x) == IPVIRT_INVALID_SESSION);
    /* A session past 16777214 builds; its loopback calls are refused (it has no loopback). */
    ipvirt_rewriter *huge = NULL;
    CHECK(ipvirt_rewriter_new(engine, 20000000, 0, &plan, vip, 4, &huge) == IPVIRT_OK);
    {
        struct sockaddr_in h = v4("127.0.0.1", 9000);
        uint32_t hc = 9;
        CHECK(ipvirt_rewriter_bind(huge, (uint8_t *)&h, sizeof h, IPVIRT_LAYOUT_LINUX, 0, &hc) == IPVIRT_NO_LOOPBACK);
        CHECK(hc == 9 && is(&h, "127.0.0.1", 9000));
        int32_t posix = 0, winsock = 0;
        CHECK(ipvirt_status_errno(IPVIRT_NO_LOOPBACK, &posix, &winsock) == IPVIRT_OK);
        CHECK(posix == EADDRNOTAVAIL && winsock == 10049);
    }
    ipvirt_rewriter_free(huge);
    const uint8_t loopvip[] = {127, 0, 0, 5};
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, loopvip, 4, &x) == IPVIRT_INVALID_VIP);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, vip, 3, &x) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, NULL, 4, &x) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, vip, (size_t)PTRDIFF_MAX + 1, &x) == IPVIRT_INVALID_ARGUMENT);
    ipvirt_plan broken = plan;
    broken.loopback_reason = 9;
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &broken, vip, 4, &x) == IPVIRT_INVALID_ARGUMENT);
    CHECK(x == NULL);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, vip, 4, &rw) == IPVIRT_OK);
    CHECK(ipvirt_rewriter_new(engine, 7, 0, &plan, NULL, 0, &novip) == IPVIRT_OK);
    CHECK(ipvirt_rewriter_new(engine, 7, 1, &plan, vip, 4, &console) == IPVIRT_OK);

    /* The rule tables of SPEC §7, and a rewriter built from them that decides as the engine's. */
    {
        static ipvirt_policy_table table;
        ipvirt_session_entry entry;
        ipvirt_program_entry program;
        CHECK(ipvirt_engine_policy_table(engine, &table) == IPVIRT_OK);
        CHECK(table.version == IPVIRT_TABLE_VERSION);
        CHECK(table.localhost == 0x7F000001u && (table.flags & IPVIRT_POLICY_ISOLATE));
        CHECK(table.server_count == 1 && table.servers[0] == 0xC000020Au && table.primary_server == 0xC000020Au);
        CHECK((table.excluded_ports[27000 / 64] >> (27000 % 64)) & 1);
        CHECK(ipvirt_engine_session_entry(engine, 7, 0, vip, 4, &entry) == IPVIRT_OK);
        CHECK(entry.session == 7 && entry.loopback == 0x7F000008u && entry.vip == 0xC000026Bu);
        CHECK(entry.flags == IPVIRT_SESSION_VIRTUALIZED);
        CHECK(ipvirt_engine_session_entry(engine, 7, 0, loopvip, 4, &entry) == IPVIRT_INVALID_VIP);
        CHECK(ipvirt_engine_session_entry(engine, 7, 5, vip, 4, &entry) == IPVIRT_INVALID_SESSION);
        CHECK(ipvirt_plan_entry(&plan, &program) == IPVIRT_OK);
        CHECK(program.flags == (IPVIRT_PROGRAM_LOOPBACK | IPVIRT_PROGRAM_VIRTUAL_IP));
        CHECK(ipvirt_plan_entry(&broken, &program) == IPVIRT_INVALID_ARGUMENT);
        ipvirt_rewriter *t = NULL;
        CHECK(ipvirt_rewriter_from_tables(&table, &entry, &program, &t) == IPVIRT_OK);
        struct sockaddr_in b = v4("127.0.0.1", 9000);
        uint32_t tc = 9;
        CHECK(ipvirt_rewriter_bind(t, (uint8_t *)&b, sizeof b, IPVIRT_LAYOUT_LINUX, 0, &tc) == IPVIRT_OK);
        CHECK(tc == 1 && is(&b, "127.0.0.8", 9000));
        ipvirt_rewriter_free(t);
        ipvirt_session_entry bad = entry;
        bad.loopback = 0xC0000201u; /* not a loopback address */
        t = NULL;
        CHECK(ipvirt_rewriter_from_tables(&table, &bad, &program, &t) == IPVIRT_INVALID_ARGUMENT && t == NULL);
        CHECK(ipvirt_rewriter_from_tables(NULL, &entry, &program, &t) == IPVIRT_NULL_ARGUMENT);
        CHECK(ipvirt_engine_policy_table(NULL, &table) == IPVIRT_NULL_ARGUMENT);
    }

    /* The engine may go first: the rewriters keep it alive. */
    ipvirt_engine_free(engine);
    ipvirt_engine_free(NULL);

    uint32_t changed = 9;
    struct sockaddr_in a;

    /* bind rows */
    a = v4("127.0.0.1", 9000);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "127.0.0.8", 9000));
    a = v4("0.0.0.0", 9000);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_NATIVE, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "192.0.2.107", 9000));
    a = v4("192.0.2.10", 80);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "192.0.2.107", 80));
    a = v4("127.0.0.1", 27000);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 0 && is(&a, "127.0.0.1", 27000));
    a = v4("127.0.0.1", 9000);
    CHECK(ipvirt_rewriter_bind(console, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 0 && is(&a, "127.0.0.1", 9000));
    a = v4("0.0.0.0", 9000);
    changed = 9;
    CHECK(ipvirt_rewriter_bind(novip, (uint8_t *)&a, sizeof a, IPVIRT_LAYOUT_LINUX, 0, &changed) == IPVIRT_NO_CONNECTIVITY);
    CHECK(changed == 9 && is(&a, "0.0.0.0", 9000)); /* nothing written on failure */
    struct sockaddr_in6 six;
    memset(&six, 0, sizeof six);
    six.sin6_family = AF_INET6;
    six.sin6_port = htons(9000);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&six, sizeof six, IPVIRT_LAYOUT_LINUX, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && six.sin6_addr.s6_addr[10] == 0xff && six.sin6_addr.s6_addr[12] == 192 && six.sin6_addr.s6_addr[15] == 107);
    /* bad arguments: NULLs, short, long, other families, bad layout and flags */
    CHECK(ipvirt_rewriter_bind(NULL, (uint8_t *)&a, sizeof a, 1, 0, &changed) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_bind(rw, NULL, 16, 1, 0, &changed) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, 1, 0, NULL) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, 15, 1, 0, &changed) == IPVIRT_BUFFER_TOO_SHORT);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, 1, 1, 0, &changed) == IPVIRT_BUFFER_TOO_SHORT);
    uint8_t big[200] = {2, 0};
    CHECK(ipvirt_rewriter_bind(rw, big, sizeof big, 1, 0, &changed) == IPVIRT_BUFFER_TOO_LONG);
    uint8_t unix_addr[16] = {AF_UNIX, 0, '/', 't', 'm', 'p'};
    CHECK(ipvirt_rewriter_bind(rw, unix_addr, sizeof unix_addr, 1, 0, &changed) == IPVIRT_UNSUPPORTED_FAMILY);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, 42, 0, &changed) == IPVIRT_INVALID_ARGUMENT);
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, 1, 2, &changed) == IPVIRT_INVALID_ARGUMENT);

    /* connect and sendto */
    uint8_t source[128];
    size_t written = 99;
    uint32_t dchanged = 9;
    a = v4("127.0.0.1", 9000);
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, &dchanged) == IPVIRT_OK);
    CHECK(dchanged == 1 && is(&a, "127.0.0.8", 9000));
    CHECK(written == 16 && is((struct sockaddr_in *)source, "192.0.2.107", 0));
    a = v4("198.51.100.1", 53);
    CHECK(ipvirt_rewriter_sendto(rw, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, &dchanged) == IPVIRT_OK);
    CHECK(dchanged == 0 && written == 16 && is((struct sockaddr_in *)source, "192.0.2.107", 0));
    a = v4("127.0.0.9", 9000); /* session 8's loopback, isolation on */
    written = 99;
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, &dchanged) == IPVIRT_ISOLATED);
    CHECK(written == 99);
    a = v4("198.51.100.1", 443);
    CHECK(ipvirt_rewriter_connect(novip, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, &dchanged) == IPVIRT_NO_CONNECTIVITY);
    a = v4("127.0.0.1", 9000);
    uint8_t small[8];
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, small, sizeof small, &written, &dchanged) == IPVIRT_BUFFER_TOO_SHORT);
    CHECK(is(&a, "127.0.0.1", 9000)); /* nothing changed */
    CHECK(ipvirt_rewriter_connect(rw, (uint8_t *)&a, sizeof a, 1, NULL, 0, &written, &dchanged) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_sendto(rw, (uint8_t *)&a, sizeof a, 1, source, sizeof source, NULL, &dchanged) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_connect(console, (uint8_t *)&a, sizeof a, 1, source, sizeof source, &written, &dchanged) == IPVIRT_OK);
    CHECK(written == 0 && dchanged == 0);

    /* reported */
    a = v4("127.0.0.8", 5353);
    CHECK(ipvirt_rewriter_reported(rw, (uint8_t *)&a, sizeof a, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "127.0.0.1", 5353));
    a = v4("192.0.2.107", 80);
    CHECK(ipvirt_rewriter_reported(rw, (uint8_t *)&a, sizeof a, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 0 && is(&a, "192.0.2.107", 80));
    CHECK(ipvirt_rewriter_reported(rw, NULL, 16, 1, &changed) == IPVIRT_NULL_ARGUMENT);
    CHECK(ipvirt_rewriter_reported(rw, (uint8_t *)&a, 3, 1, &changed) == IPVIRT_BUFFER_TOO_SHORT);

    huge_lengths_and_overlap(rw);

    /* resolved and reverse_lookup, on raw addresses too */
    a = v4("192.0.2.10", 0);
    CHECK(ipvirt_rewriter_resolved(rw, (uint8_t *)&a, sizeof a, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "192.0.2.107", 0));
    CHECK(ipvirt_rewriter_reverse_lookup(rw, (uint8_t *)&a, sizeof a, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "192.0.2.10", 0));
    a = v4("127.0.0.8", 0);
    CHECK(ipvirt_rewriter_reverse_lookup(rw, (uint8_t *)&a, sizeof a, 1, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && is(&a, "127.0.0.1", 0));
    CHECK(ipvirt_rewriter_resolved(rw, unix_addr, sizeof unix_addr, 1, &changed) == IPVIRT_UNSUPPORTED_FAMILY);
    CHECK(ipvirt_rewriter_reverse_lookup(rw, (uint8_t *)&a, sizeof a, 1, NULL) == IPVIRT_NULL_ARGUMENT);

    /* The error codes of the refusals: one table. */
    int32_t posix = 0, winsock = 0;
    CHECK(ipvirt_status_errno(IPVIRT_ISOLATED, &posix, &winsock) == IPVIRT_OK);
    CHECK(posix == ECONNREFUSED && winsock == 10061);
    CHECK(ipvirt_status_errno(IPVIRT_OTHER_SESSION, &posix, NULL) == IPVIRT_OK && posix == EACCES);
    CHECK(ipvirt_status_errno(IPVIRT_NO_CONNECTIVITY, NULL, &winsock) == IPVIRT_OK && winsock == 10049);
    posix = 7;
    CHECK(ipvirt_status_errno(IPVIRT_OK, &posix, &winsock) == IPVIRT_INVALID_ARGUMENT && posix == 7);
    CHECK(ipvirt_status_errno(99, &posix, &winsock) == IPVIRT_INVALID_ARGUMENT);
    a = v4("127.0.0.9", 9000); /* isolation also holds for a bind */
    CHECK(ipvirt_rewriter_bind(rw, (uint8_t *)&a, sizeof a, 1, 0, &changed) == IPVIRT_OTHER_SESSION);

    /* Windows layout: same rows, other family numbers. */
    uint8_t win[16] = {2, 0, 0x23, 0x28, 127, 0, 0, 1};
    CHECK(ipvirt_rewriter_bind(rw, win, sizeof win, IPVIRT_LAYOUT_WINDOWS, 0, &changed) == IPVIRT_OK);
    CHECK(changed == 1 && win[7] == 8);

    ipvirt_rewriter_free(rw);
    ipvirt_rewriter_free(novip);
    ipvirt_rewriter_free(console);
    ipvirt_rewriter_free(NULL);
    formats_and_validation();
    printf("%d failures\n", failures);
    return failures == 0 ? 0 : 1;
}
