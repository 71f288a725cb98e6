/*
 * ipvirt.h — the C ABI of ipvirt (Rust crate, feature "capi").
 *
 * ipvirt decides where a socket call's addresses go for per-session virtual loopback (Citrix) and
 * virtual IP (Microsoft RD IP Virtualization); the hooking layer calling it does the call.
 *
 * Conventions
 *   - Every function returns an ipvirt_status (IPVIRT_OK is 0), except the _free functions and
 *     ipvirt_version.
 *   - Version: IPVIRT_VERSION_MAJOR/_MINOR/_PATCH/_STRING (this header), ipvirt_version() (the
 *     library linked).
 *   - Inputs come before outputs; every buffer is followed by its length in bytes.
 *   - Outputs are written only when the call returns IPVIRT_OK, except the error-message buffer of
 *     ipvirt_engine_new* and ipvirt_policy_validate and the text of ipvirt_status_message, which explain failures. Strings are
 *     NUL-terminated and truncated to fit.
 *   - Pointers are checked for NULL (IPVIRT_NULL_ARGUMENT); an optional buffer may be NULL with
 *     length 0.
 *   - Lengths are checked before any buffer is touched: a length above PTRDIFF_MAX (no object is
 *     that large) is IPVIRT_INVALID_ARGUMENT, and nothing is read or written.
 *   - Overlap: the buffers a call writes (addr, dest, source, err, buf) must not overlap each other
 *     nor the buffers it reads, and the scalar outputs (changed, dest_changed, source_written,
 *     needed, err_needed, out, count) must not point into any of them. An overlap is refused with
 *     IPVIRT_INVALID_ARGUMENT before anything is written (so passing one buffer as both dest and
 *     source of ipvirt_rewriter_connect fails and changes nothing). Buffers that are only read
 *     (policy, servers, image, vip, plan) may overlap each other.
 *   - No panic crosses the boundary: it becomes IPVIRT_PANIC and nothing is written; the library
 *     stays usable.
 *   - Handles are immutable once made and may be used from any thread. A rewriter keeps its engine
 *     alive: the engine may be freed first. Free each handle exactly once.
 *   - Socket addresses are the platform's struct sockaddr_in / sockaddr_in6 bytes, with the layout
 *     given by an ipvirt_layout value.
 *
 * Building and linking: `cargo cinstall --release --prefix=/usr/local` (cargo-c) installs
 * libipvirt.so, libipvirt.a, this header and ipvirt.pc; then `cc app.c $(pkg-config --cflags
 * --libs ipvirt)` (add --static for the static library and its system libraries). By hand:
 * link libipvirt.a with the system libraries `rustc --print native-static-libs` lists (on Linux:
 * -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc).
 */
#ifndef IPVIRT_H
#define IPVIRT_H

#include <stddef.h>
#include <stdint.h>

/* The version of ipvirt this header belongs to (the crate's version; ipvirt_version() returns the
 * library's at run time). */
#define IPVIRT_VERSION_MAJOR 0
#define IPVIRT_VERSION_MINOR 3
#define IPVIRT_VERSION_PATCH 0
#define IPVIRT_VERSION_STRING "0.3.0"

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. The values are frozen. */
typedef enum ipvirt_status {
    IPVIRT_OK = 0,
    IPVIRT_NULL_ARGUMENT = 1,      /* a required pointer was NULL */
    IPVIRT_INVALID_UTF8 = 2,       /* a string argument is not UTF-8 */
    IPVIRT_POLICY_ERROR = 3,       /* the policy text could not be read (message: line and key) */
    IPVIRT_COMPILE_ERROR = 4,      /* the policy could not be compiled (message says why) */
    IPVIRT_BUFFER_TOO_SHORT = 5,   /* a buffer is shorter than what it must hold */
    IPVIRT_BUFFER_TOO_LONG = 6,    /* a socket-address buffer is longer than 128 bytes */
    IPVIRT_UNSUPPORTED_FAMILY = 7, /* not AF_INET/AF_INET6: pass the call through untouched */
    IPVIRT_NO_CONNECTIVITY = 8,    /* fail the call with EADDRNOTAVAIL / WSAEADDRNOTAVAIL */
    IPVIRT_ISOLATED = 9,           /* connect/send to another session's loopback, isolation on:
                                      fail with ECONNREFUSED / WSAECONNREFUSED */
    IPVIRT_INVALID_SESSION = 10,   /* the session kind is unknown */
    IPVIRT_INVALID_VIP = 11,       /* the VIP is not a usable unicast IPv4 address */
    IPVIRT_INVALID_ARGUMENT = 12,  /* another argument is out of range (a layout, a plan field, a
                                      length above PTRDIFF_MAX) or buffers overlap */
    IPVIRT_PANIC = 13,             /* ipvirt panicked (a bug); nothing was written */
    IPVIRT_OTHER_SESSION = 14,     /* bind of another session's loopback, isolation on: EACCES */
    IPVIRT_NO_LOOPBACK = 15        /* the session (id past 16777214) has no loopback address:
                                      fail with EADDRNOTAVAIL / WSAEADDRNOTAVAIL */
} ipvirt_status;

/* Socket-address layouts. */
typedef enum ipvirt_layout {
    IPVIRT_LAYOUT_NATIVE = 0,           /* the platform ipvirt was compiled for */
    IPVIRT_LAYOUT_LINUX = 1,            /* AF_INET6 = 10, 16-bit little-endian family */
    IPVIRT_LAYOUT_LINUX_BIG_ENDIAN = 2, /* AF_INET6 = 10, 16-bit big-endian family */
    IPVIRT_LAYOUT_WINDOWS = 3,          /* AF_INET6 = 23 */
    IPVIRT_LAYOUT_MACOS = 4,            /* sa_len byte, AF_INET6 = 30 */
    IPVIRT_LAYOUT_FREEBSD = 5           /* sa_len byte, AF_INET6 = 28 */
} ipvirt_layout;

/* Opaque handles. */
typedef struct ipvirt_engine ipvirt_engine;
typedef struct ipvirt_rewriter ipvirt_rewriter;

/* Why a feature applies to a process or not: the *_reason fields of ipvirt_plan. Frozen values. */
typedef enum ipvirt_reason {
    IPVIRT_REASON_FEATURE_OFF = 0, /* the feature's enabled setting is off */
    IPVIRT_REASON_NO_ADAPTER = 1,  /* virtual IP without virtual_ip.adapter (VIPAdapter): off */
    IPVIRT_REASON_PER_SESSION = 2, /* virtual IP per session: every process of the session */
    IPVIRT_REASON_LISTED = 3,      /* listed: the *_entry field is the 0-based index of the entry */
    IPVIRT_REASON_NOT_LISTED = 4   /* the feature is on, the process is not in its list */
} ipvirt_reason;

/*
 * Which features apply to a process, and why (the *_reason fields hold IPVIRT_REASON_* values).
 * Pass it back unchanged to ipvirt_rewriter_new.
 */
typedef struct ipvirt_plan {
    uint8_t loopback;        /* 1: virtual loopback applies */
    uint8_t virtual_ip;      /* 1: virtual IP applies */
    uint8_t prefer_loopback; /* 1: preferred loopback lists the process */
    uint8_t loopback_reason;        /* IPVIRT_REASON_* */
    uint8_t virtual_ip_reason;      /* IPVIRT_REASON_* */
    uint8_t prefer_loopback_reason; /* IPVIRT_REASON_* */
    uint32_t loopback_entry;
    uint32_t virtual_ip_entry;
    uint32_t prefer_loopback_entry;
} ipvirt_plan;

/* The rule tables of SPEC §7: the compiled policy as data, for layers that cannot call ipvirt
 * (a cgroup-BPF program, a WFP callout driver). Every IPv4 address is a uint32_t holding the
 * address's numeric value in HOST byte order (127.0.0.1 is 0x7F000001): convert a sockaddr_in's
 * sin_addr with ntohl. Ports are numbers in host byte order. Sizes and offsets are fixed (the C test
 * checks them with _Static_assert). Fill them with ipvirt_engine_policy_table,
 * ipvirt_engine_session_entry and ipvirt_plan_entry. */
#define IPVIRT_TABLE_VERSION 1u
#define IPVIRT_MAX_SERVERS 64
#define IPVIRT_POLICY_ISOLATE 1u          /* virtual_loopback.isolate */
#define IPVIRT_POLICY_IPV6_MAP 2u         /* virtual_loopback.ipv6 = "map" */
#define IPVIRT_SESSION_VIRTUALIZED 1u     /* a remote session other than session 0 */
#define IPVIRT_SESSION_NO_CONNECTIVITY 2u /* no VIP and on_lease_failure = "no-connectivity" */
#define IPVIRT_SESSION_NO_LOOPBACK 4u     /* virtualized, but the id has no loopback address */
#define IPVIRT_PROGRAM_LOOPBACK 1u        /* virtual loopback applies ("L") */
#define IPVIRT_PROGRAM_VIRTUAL_IP 2u      /* virtual IP applies ("V") */
#define IPVIRT_PROGRAM_PREFER_LOOPBACK 4u /* preferred loopback lists the program */

typedef struct ipvirt_policy_table {    /* 8472 bytes, 8-byte aligned */
    uint32_t version;                   /* IPVIRT_TABLE_VERSION */
    uint32_t flags;                     /* IPVIRT_POLICY_* */
    uint32_t localhost;                 /* the address that is replaced (127.0.0.1) */
    uint32_t primary_server;            /* what a reverse lookup of a VIP looks up; 0: none */
    uint32_t server_count;              /* entries of servers in use */
    uint32_t reserved;                  /* zero */
    uint32_t servers[IPVIRT_MAX_SERVERS]; /* the server's addresses, sorted ascending */
    uint64_t excluded_ports[1024];      /* bit (port % 64) of word (port / 64) */
} ipvirt_policy_table;

typedef struct ipvirt_session_entry {   /* 16 bytes */
    uint32_t session;                   /* the session id */
    uint32_t loopback;                  /* its loopback address; 0 when not virtualized or none */
    uint32_t vip;                       /* its VIP; 0 for none */
    uint32_t flags;                     /* IPVIRT_SESSION_* */
} ipvirt_session_entry;

typedef struct ipvirt_program_entry {   /* 4 bytes */
    uint32_t flags;                     /* IPVIRT_PROGRAM_* */
} ipvirt_program_entry;

/* The version of the library linked, a static NUL-terminated string ("0.2.0"). */
const char *ipvirt_version(void);

/*
 * Writes the description of `status` into buf (NUL-terminated, truncated to fit) and its full
 * length (without the NUL) to *needed when needed is not NULL. Returns IPVIRT_OK,
 * IPVIRT_BUFFER_TOO_SHORT when truncated, IPVIRT_INVALID_ARGUMENT for an unknown status.
 */
ipvirt_status ipvirt_status_message(uint32_t status, char *buf, size_t buf_len, size_t *needed);

/*
 * Builds an engine from a TOML policy (policy_len bytes of UTF-8) and the server's own IPv4
 * addresses (servers_len bytes, 4 per address, network byte order; NULL with 0 for none). On
 * success writes the handle to *out. On failure writes the reason (a policy error names the line
 * and key) into err when err is not NULL, and its full length to *err_needed when not NULL.
 */
ipvirt_status ipvirt_engine_new(const uint8_t *policy, size_t policy_len,
                                const uint8_t *servers, size_t servers_len,
                                ipvirt_engine **out,
                                char *err, size_t err_len, size_t *err_needed);

/* As ipvirt_engine_new, from a policy in JSON (UTF-8): the same keys as the TOML file, e.g.
 * {"virtual_loopback": {"enabled": true, "programs": ["crm.exe"]}}. */
ipvirt_status ipvirt_engine_new_json(const uint8_t *policy, size_t policy_len,
                                     const uint8_t *servers, size_t servers_len,
                                     ipvirt_engine **out,
                                     char *err, size_t err_len, size_t *err_needed);

/* As ipvirt_engine_new, from a registry export (the bytes of a .reg file, UTF-16 with its byte-order
 * mark as regedit writes it, or UTF-8). Values the import had to ignore do not fail the call:
 * ipvirt_policy_validate with IPVIRT_FORMAT_REG lists them. */
ipvirt_status ipvirt_engine_new_reg(const uint8_t *policy, size_t policy_len,
                                    const uint8_t *servers, size_t servers_len,
                                    ipvirt_engine **out,
                                    char *err, size_t err_len, size_t *err_needed);

/* Frees an engine (NULL is a no-op). Its rewriters stay valid. */
void ipvirt_engine_free(ipvirt_engine *engine);

/* The plan for a process, from its executable image (a path or a name, image_len bytes of UTF-8). */
ipvirt_status ipvirt_engine_process(const ipvirt_engine *engine,
                                    const uint8_t *image, size_t image_len,
                                    ipvirt_plan *out);

/*
 * A rewriter for the process `plan` describes in session `session_id` of kind `session_kind`
 * (0 remote, 1 console/administrative), whose VIP is `vip` (4 bytes, network order; NULL with 0 for
 * none, and the policy's lease-failure setting applies).
 */
ipvirt_status ipvirt_rewriter_new(const ipvirt_engine *engine,
                                  uint32_t session_id, uint32_t session_kind,
                                  const ipvirt_plan *plan,
                                  const uint8_t *vip, size_t vip_len,
                                  ipvirt_rewriter **out);

/* Frees a rewriter (NULL is a no-op). */
void ipvirt_rewriter_free(ipvirt_rewriter *rewriter);

/*
 * bind: rewrites the socket address in addr (addr_len bytes) in place; *changed is 1 if it changed.
 * dual_stack is 1 for an AF_INET6 socket with IPV6_V6ONLY off, else 0.
 */
ipvirt_status ipvirt_rewriter_bind(const ipvirt_rewriter *rw,
                                   uint8_t *addr, size_t addr_len,
                                   uint32_t layout, uint32_t dual_stack,
                                   uint32_t *changed);

/*
 * connect: rewrites the destination in dest (dest_len bytes) in place; when the socket should be
 * bound first (if it is not bound yet), writes that source address into source (give it 28 bytes
 * or more) and its length to *source_written (0: no bind). *dest_changed is 1 if dest changed.
 * dest and source are two separate buffers: overlapping ones are IPVIRT_INVALID_ARGUMENT.
 */
ipvirt_status ipvirt_rewriter_connect(const ipvirt_rewriter *rw,
                                      uint8_t *dest, size_t dest_len,
                                      uint32_t layout,
                                      uint8_t *source, size_t source_len,
                                      size_t *source_written, uint32_t *dest_changed);

/* sendto / sendmsg: as ipvirt_rewriter_connect. */
ipvirt_status ipvirt_rewriter_sendto(const ipvirt_rewriter *rw,
                                     uint8_t *dest, size_t dest_len,
                                     uint32_t layout,
                                     uint8_t *source, size_t source_len,
                                     size_t *source_written, uint32_t *dest_changed);

/*
 * getsockname, getpeername, accept, recvfrom: rewrites the complete address the system returned
 * (addr_len bytes) in place to what the application should see; *changed is 1 if it changed.
 */
ipvirt_status ipvirt_rewriter_reported(const ipvirt_rewriter *rw,
                                       uint8_t *addr, size_t addr_len,
                                       uint32_t layout, uint32_t *changed);

/* resolved (getaddrinfo / gethostbyname results) and reverse_lookup (gethostbyaddr / getnameinfo
 * input): rewrite one address in place; *changed is 1 if it changed. IPVIRT_UNSUPPORTED_FAMILY:
 * not AF_INET/AF_INET6, leave it alone. */
ipvirt_status ipvirt_rewriter_resolved(const ipvirt_rewriter *rw, uint8_t *addr, size_t addr_len,
                                       uint32_t layout, uint32_t *changed);
ipvirt_status ipvirt_rewriter_reverse_lookup(const ipvirt_rewriter *rw, uint8_t *addr,
                                             size_t addr_len, uint32_t layout, uint32_t *changed);

/* The error codes to fail a call with when ipvirt refused it with `status` (one table for every
 * layer): the Linux errno to *posix and the Winsock error to *winsock (either may be NULL).
 * IPVIRT_INVALID_ARGUMENT for a status that is no refusal. */
ipvirt_status ipvirt_status_errno(uint32_t status, int32_t *posix, int32_t *winsock);

/* The rule tables: copy the engine's policy table, make a session's entry (VIP: 4 bytes, network
 * order, NULL with 0 for none), or a plan's program entry. */
ipvirt_status ipvirt_engine_policy_table(const ipvirt_engine *engine, ipvirt_policy_table *out);
ipvirt_status ipvirt_engine_session_entry(const ipvirt_engine *engine, uint32_t session_id,
                                          uint32_t session_kind, const uint8_t *vip,
                                          size_t vip_len, ipvirt_session_entry *out);
ipvirt_status ipvirt_plan_entry(const ipvirt_plan *plan, ipvirt_program_entry *out);

/* A rewriter from tables the caller holds, checked once: IPVIRT_INVALID_ARGUMENT when a field breaks
 * a rule (localhost or the session loopback outside 127.0.0.0/8, an unusable VIP, unsorted or too
 * many servers). Free it with ipvirt_rewriter_free. */
ipvirt_status ipvirt_rewriter_from_tables(const ipvirt_policy_table *policy,
                                          const ipvirt_session_entry *session,
                                          const ipvirt_program_entry *program,
                                          ipvirt_rewriter **out);

/*
 * Validation: whether a policy's settings make sense together (SPEC §3, §4). The result is a list
 * (an opaque handle) read by index:
 *
 *     ipvirt_diagnostics *list;
 *     size_t n, i;
 *     if (ipvirt_policy_validate(IPVIRT_FORMAT_TOML, text, len, NULL, 0, &list,
 *                                err, sizeof err, NULL) != IPVIRT_OK) { ... err says why ... }
 *     ipvirt_diagnostics_count(list, &n);
 *     for (i = 0; i < n; i++) {
 *         ipvirt_diagnostic d;
 *         ipvirt_diagnostics_get(list, i, &d);
 *         printf("%s[%s]: %s\n", d.severity == IPVIRT_SEVERITY_ERROR ? "error" : "...",
 *                d.code_name, d.message);
 *     }
 *     ipvirt_diagnostics_free(list);
 */
typedef enum ipvirt_format {
    IPVIRT_FORMAT_TOML = 0, /* the policy file */
    IPVIRT_FORMAT_JSON = 1, /* the same keys in JSON */
    IPVIRT_FORMAT_REG = 2   /* a registry export (.reg) */
} ipvirt_format;

typedef enum ipvirt_severity {
    IPVIRT_SEVERITY_INFO = 0,    /* worth knowing; nothing is wrong */
    IPVIRT_SEVERITY_WARNING = 1, /* works, probably not as intended */
    IPVIRT_SEVERITY_ERROR = 2    /* cannot work as written */
} ipvirt_severity;

/* Diagnostic codes (frozen numbers; code_name is the stable text form, the crate's
 * DiagnosticCode::as_str, documented in the crate's `policy` validation table). */
typedef enum ipvirt_diagnostic_code {
    IPVIRT_DIAG_PLATFORM_UNSUPPORTED = 1,
    IPVIRT_DIAG_PLATFORM_DESKTOP = 2,
    IPVIRT_DIAG_PLATFORM_VIP_LSP_FIX = 3,
    IPVIRT_DIAG_PLATFORM_NOT_STATED = 4,
    IPVIRT_DIAG_PREFER_LOOPBACK_UNEXPECTED = 5,
    IPVIRT_DIAG_PREFER_LOOPBACK_NOT_LISTED = 6,
    IPVIRT_DIAG_VIP_PROGRAMS_IGNORED = 7,
    IPVIRT_DIAG_VIP_NO_ADAPTER = 8,
    IPVIRT_DIAG_VIP_NO_POOL = 9,
    IPVIRT_DIAG_VIP_NO_PROGRAMS = 10,
    IPVIRT_DIAG_POOL_OUTSIDE_ADAPTER = 11,
    IPVIRT_DIAG_POOL_ADAPTER_EDGE = 12,
    IPVIRT_DIAG_POOL_NOT_UNICAST = 13,
    IPVIRT_DIAG_POOL_OVERLAP = 14,
    IPVIRT_DIAG_POOL_SERVER_ADDRESS = 15,
    IPVIRT_DIAG_LOOPBACK_NO_PROGRAMS = 16,
    IPVIRT_DIAG_LOCALHOST_NOT_LOOPBACK = 17,
    IPVIRT_DIAG_EXCLUDED_PORT_ZERO = 18,
    IPVIRT_DIAG_DUPLICATE_PORT = 19,
    IPVIRT_DIAG_DUPLICATE_PROGRAM = 20,
    IPVIRT_DIAG_PROGRAM_WILDCARD = 21,
    IPVIRT_DIAG_PROGRAM_EMPTY = 22,
    IPVIRT_DIAG_ISOLATE_WITHOUT_LOOPBACK = 23,
    IPVIRT_DIAG_IPV6_LOOPBACK_UNCHANGED = 24,
    IPVIRT_DIAG_REG_UNKNOWN_VALUE = 25,
    IPVIRT_DIAG_REG_WRONG_TYPE = 26,
    IPVIRT_DIAG_REG_BAD_VALUE = 27,
    IPVIRT_DIAG_VIP_DHCP_NO_INTERFACE = 28,
    IPVIRT_DIAG_VIP_DHCP_BAD_INTERFACE = 29,
    IPVIRT_DIAG_VIP_DHCP_BAD_PREFIX = 30,
    IPVIRT_DIAG_VIP_DHCP_POOL_IGNORED = 31,
    IPVIRT_DIAG_VIP_DHCP_SETTINGS_IGNORED = 32,
} ipvirt_diagnostic_code;

/* A list of diagnostics (opaque). */
typedef struct ipvirt_diagnostics ipvirt_diagnostics;

/* One diagnostic, as ipvirt_diagnostics_get writes it. */
typedef struct ipvirt_diagnostic {
    uint32_t severity;     /* IPVIRT_SEVERITY_* */
    uint32_t code;         /* IPVIRT_DIAG_* */
    const char *code_name; /* the stable code, "vip-no-adapter": a static string */
    const char *message;   /* the sentence (names the setting and the value), NUL-terminated;
                              owned by the list, valid until ipvirt_diagnostics_free */
    size_t message_len;    /* its length in bytes, without the NUL */
} ipvirt_diagnostic;

/*
 * Reads a policy in `format` (an ipvirt_format) and checks it; with the server's own addresses
 * (servers: 4 bytes each, network order; NULL with 0 for none) the checks that need them run too.
 * For a .reg export the list starts with the values the import had to ignore. On success writes a
 * list (possibly empty) to *out. A policy that cannot be read fails as ipvirt_engine_new does
 * (IPVIRT_POLICY_ERROR, IPVIRT_INVALID_UTF8; the reason in err); an unknown format is
 * IPVIRT_INVALID_ARGUMENT.
 */
ipvirt_status ipvirt_policy_validate(uint32_t format, const uint8_t *policy, size_t policy_len,
                                     const uint8_t *servers, size_t servers_len,
                                     ipvirt_diagnostics **out,
                                     char *err, size_t err_len, size_t *err_needed);

/* The number of diagnostics in a list. */
ipvirt_status ipvirt_diagnostics_count(const ipvirt_diagnostics *list, size_t *count);

/* Diagnostic `index` (0-based) into *out; IPVIRT_INVALID_ARGUMENT when index >= the count. */
ipvirt_status ipvirt_diagnostics_get(const ipvirt_diagnostics *list, size_t index,
                                     ipvirt_diagnostic *out);

/* Frees a list (NULL is a no-op); the message pointers read from it die with it. */
void ipvirt_diagnostics_free(ipvirt_diagnostics *list);

#ifdef IPVIRT_TEST_PANIC
/*
 * Tests only: exists only in a library built with the cargo feature "capi-test-panic" (never ship
 * one). The next call on the calling thread that returns an ipvirt_status panics inside ipvirt and
 * returns IPVIRT_PANIC, writing nothing; later calls work normally.
 */
void ipvirt_test_arm_panic(void);
#endif

#ifdef __cplusplus
}
#endif

#endif /* IPVIRT_H */
