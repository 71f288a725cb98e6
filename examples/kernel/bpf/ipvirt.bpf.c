// SPDX-License-Identifier: MIT OR Apache-2.0 OR GPL-2.0-only
// (GPL-2.0 too so the kernel lets it use GPL-only helpers: bpf_probe_read_kernel_str, task BTF.)
/*
 * ipvirt's kernel layer: cgroup-BPF `sock_addr` programs that apply SPEC §5, §6 and §8 to every
 * socket call of every process of a session (SPEC §9).
 *
 * A session is a cgroup below the attachment root. Its entry (`ipvirt_session_entry`, §7) is in
 * `ipv_sessions`, keyed by the cgroup's id; a process in a nested cgroup finds its session through
 * its ancestors. The policy table is the one entry of `ipv_policy`; the program entries are keyed
 * by executable identity: the file (device and inode, for full paths in the policy) or the
 * ASCII-lowercased basename of the task's `mm->exe_file` (read with BTF and CO-RE; `comm` is not
 * an identity). A process of the tree whose session has no entry fails closed: its IPv4/IPv6
 * binds, connects and sends are refused with EPERM rather than left on the shared 127.0.0.1.
 *
 * A task keeps what the tables said for it in task storage (ipv_task_cache), so its next call
 * skips the cgroup walk, the executable's identity and the hash lookups; see struct
 * ipv_task_cache for when an entry holds. The loader turns the cache off (ipv_task_cache_on = 0,
 * pruned by the verifier) on kernels that refuse task storage here.
 *
 * The decisions are in rules.h, which is also compiled natively and checked against the library's
 * reference evaluator. Build: clang -O2 -g -target bpf -mcpu=v3 -I src -c ipvirt.bpf.c
 * (build.sh).
 */
#include <linux/bpf.h>
#include "rules.h"

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
#define INLINE static inline __attribute__((always_inline))

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOCK_DGRAM 2
#define EPERM 1

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)BPF_FUNC_get_current_cgroup_id;
static __u64 (*bpf_get_current_ancestor_cgroup_id)(int level) =
    (void *)BPF_FUNC_get_current_ancestor_cgroup_id;
static long (*bpf_bind)(struct bpf_sock_addr *ctx, void *addr, int addr_len) = (void *)BPF_FUNC_bind;
static void *(*bpf_get_current_task_btf)(void) = (void *)BPF_FUNC_get_current_task_btf;
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_kernel_str;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) =
    (void *)BPF_FUNC_probe_read_kernel;
static long (*bpf_set_retval)(int retval) = (void *)BPF_FUNC_set_retval;
static void *(*bpf_skc_to_tcp6_sock)(void *sk) = (void *)BPF_FUNC_skc_to_tcp6_sock;
static void *(*bpf_skc_to_udp6_sock)(void *sk) = (void *)BPF_FUNC_skc_to_udp6_sock;
static void *(*bpf_task_storage_get)(void *map, void *task, void *value, __u64 flags) =
    (void *)BPF_FUNC_task_storage_get;
static void *(*bpf_sk_storage_get)(void *map, void *sk, void *value, __u64 flags) =
    (void *)BPF_FUNC_sk_storage_get;
static long (*bpf_sk_storage_delete)(void *map, void *sk) = (void *)BPF_FUNC_sk_storage_delete;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) =
    (void *)BPF_FUNC_ringbuf_output;

#define bswap32(x) __builtin_bswap32(x)
#define bswap16(x) __builtin_bswap16(x)

/* ---- the kernel structures read through BTF (CO-RE: only the fields used, by name) ---- */
struct qstr {
    const unsigned char *name;
} __attribute__((preserve_access_index));
struct super_block {
    unsigned int s_dev;
} __attribute__((preserve_access_index));
struct inode {
    unsigned long i_ino;
    struct super_block *i_sb;
} __attribute__((preserve_access_index));
struct dentry {
    struct qstr d_name;
} __attribute__((preserve_access_index));
struct path {
    struct dentry *dentry;
} __attribute__((preserve_access_index));
struct file {
    struct path f_path;
    struct inode *f_inode;
} __attribute__((preserve_access_index));
struct mm_struct {
    struct file *exe_file;
} __attribute__((preserve_access_index));
struct kernfs_node {
    __u64 id;
} __attribute__((preserve_access_index));
struct cgroup {
    struct kernfs_node *kn;
} __attribute__((preserve_access_index));
struct css_set {
    struct cgroup *dfl_cgrp;
} __attribute__((preserve_access_index));
struct task_struct {
    struct mm_struct *mm;
    struct css_set *cgroups;
    __u64 self_exec_id;
    int tgid;
    char comm[16];
} __attribute__((preserve_access_index));
struct sock_common {
    unsigned char skc_ipv6only : 1;
} __attribute__((preserve_access_index));
struct sock {
    struct sock_common __sk_common;
} __attribute__((preserve_access_index));

/* ---- maps (the loader fills them from the library's tables) ---- */
#define IPV_NAME_LEN 64

struct ipv_file_key {
    __u64 ino;
    __u32 dev; /* the kernel's encoding: major << 20 | minor */
    __u32 pad;
};

struct ipv_name_key {
    char name[IPV_NAME_LEN]; /* folded basename, NUL-padded */
};

/* Loader-owned settings beside the policy table. */
struct ipv_config {
    ipvirt_program_entry unlisted; /* the entry of an executable no list names */
    __u32 version;                 /* IPV_CONFIG_VERSION */
    __u32 generation;              /* bumped by the loader after every write to a table */
    __u32 pad;
};
#define IPV_CONFIG_VERSION 3u

/* What the tables said for one task, kept in the task's own storage so that the next call of
 * the same task skips the cgroup walk, the executable's identity and three hash lookups. It holds
 * while the task runs the same executable (`self_exec_id` grows at every execve; `mm->exe_file`
 * also changes with prctl(PR_SET_MM_EXE_FILE)), stays in the same cgroup, and the loader has
 * written no table since (`generation`). A task is the only writer and reader of its own entry. */
struct ipv_task_cache {
    __u64 exec_id;
    __u64 exe; /* the executable's struct file, as a number: compared, never followed */
    __u64 cgroup;
    __u32 generation;
    __u32 valid;
    ipvirt_session_entry session;
    ipvirt_program_entry program;
    __u32 pad;
    __u64 refused; /* the last refusal this task reported (ipv_refusals): a fingerprint, 0 none */
};

/* Set by the loader (aya's set_global) before the programs are verified: 1 where the kernel
 * offers task storage to cgroup sock_addr programs. With 0 the verifier prunes the cache as dead
 * code, so the same object loads on kernels without it. */
const volatile __u32 ipv_task_cache_on = 0;

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, ipvirt_policy_table);
} ipv_policy SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct ipv_config);
} ipv_config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, ipvirt_session_entry);
} ipv_sessions SEC(".maps");

/* The cgroups the programs are attached at (the layer's root, and each cgroup the service
 * attached them at, e.g. a logind scope), by id: a task below one of them is in the layer's tree. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);
    __type(value, __u32);
} ipv_anchors SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct ipv_file_key);
    __type(value, ipvirt_program_entry);
} ipv_prog_files SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, struct ipv_name_key);
    __type(value, ipvirt_program_entry);
} ipv_prog_names SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct ipv_task_cache);
} ipv_task_cache SEC(".maps");

/* The UDP sockets whose address the layer bound itself (the implicit source of a connect). The
 * kernel keeps that address after the socket is disconnected (connect(AF_UNSPEC)), because a bind
 * locks it; so while such a socket is not connected the layer shows and uses it as the unbound
 * socket it would be natively (see bind_source, report4/6, ipv_sendmsg4). */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u32);
} ipv_sk_implicit SEC(".maps");

/* A refused call, for the service's log (SPEC §11: every refusal is logged once with the session
 * and the program). The programs write one to ipv_refusals at each refusal; a task reports a
 * refusal only when it differs from the last one it reported (ipv_task_cache.refused), so a
 * program that retries in a loop costs the reader one event. The reader (the `ipvirt` service)
 * keeps the first of each kind per session. The layout is read by the loader (RefusalEvent). */
struct ipv_refusal {
    __u64 cgroup;  /* the calling task's cgroup id */
    __u32 session; /* the session's number; 0: the task's cgroup has no session entry */
    __u32 err;     /* the errno the call got */
    __u32 pid;     /* the calling process (thread group) */
    __u16 call;    /* IPV_CALL_* */
    __u16 port;    /* the address's port, host order */
    __u32 addr[4]; /* the address the program gave, network order; IPv4 in addr[0] */
    char comm[16]; /* the task's name (as the kernel keeps it; informational) */
    char exe[32];  /* the basename of the task's executable (mm->exe_file), cut at 31 bytes */
};
#define IPV_CALL_BIND4 1
#define IPV_CALL_BIND6 2
#define IPV_CALL_CONNECT4 3
#define IPV_CALL_CONNECT6 4
#define IPV_CALL_SENDMSG4 5
#define IPV_CALL_SENDMSG4_SOURCE 6 /* the source chosen in IP_PKTINFO / IPV6_PKTINFO */
#define IPV_CALL_SENDMSG6 7

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 64 * 1024);
} ipv_refusals SEC(".maps");

/* ---- looking the tables up ---- */
#define IPV_FOUND 0
#define IPV_OUTSIDE 1 /* no policy loaded: leave the call alone */
#define IPV_UNKNOWN 2 /* in the tree, but the session has no entry: fail closed */

#define IPV_MAX_LEVEL 16

INLINE const ipvirt_session_entry *session_entry(__u64 id)
{
    const ipvirt_session_entry *e = bpf_map_lookup_elem(&ipv_sessions, &id);
    int level;
    if (e)
        return e;
    /* A nested cgroup inherits its session: look at the ancestors, root side first. */
    for (level = 1; level < IPV_MAX_LEVEL; level++) {
        id = bpf_get_current_ancestor_cgroup_id(level);
        if (id == 0)
            break;
        e = bpf_map_lookup_elem(&ipv_sessions, &id);
        if (e)
            return e;
    }
    return 0;
}

INLINE ipvirt_program_entry program_entry(const struct ipv_config *cfg, struct file *exe)
{
    struct ipv_file_key fk = {0, 0, 0};
    struct ipv_name_key nk;
    const ipvirt_program_entry *p;
    struct inode *inode;
    const unsigned char *name;
    int i;

    if (!exe)
        return cfg->unlisted;
    inode = exe->f_inode;
    if (inode) {
        fk.ino = inode->i_ino;
        fk.dev = inode->i_sb ? inode->i_sb->s_dev : 0;
        p = bpf_map_lookup_elem(&ipv_prog_files, &fk);
        if (p)
            return *p;
    }
    __builtin_memset(&nk, 0, sizeof(nk));
    name = exe->f_path.dentry ? exe->f_path.dentry->d_name.name : 0;
    if (!name || bpf_probe_read_kernel_str(nk.name, sizeof(nk.name), name) < 0)
        return cfg->unlisted;
    for (i = 0; i < IPV_NAME_LEN; i++) {
        char c = nk.name[i];
        if (c >= 'A' && c <= 'Z')
            nk.name[i] = c + ('a' - 'A');
    }
    p = bpf_map_lookup_elem(&ipv_prog_names, &nk);
    return p ? *p : cfg->unlisted;
}

/* Whether the calling task is in a cgroup below one the programs are attached at. */
INLINE int in_tree(void)
{
    __u64 id;
    int level;
    for (level = 0; level < IPV_MAX_LEVEL; level++) {
        id = bpf_get_current_ancestor_cgroup_id(level);
        if (id == 0)
            break;
        if (bpf_map_lookup_elem(&ipv_anchors, &id))
            return 1;
    }
    return 0;
}

/* Fills *t; IPV_FOUND, IPV_OUTSIDE or IPV_UNKNOWN. */
INLINE int tables(ipv_tables *t)
{
    __u32 zero = 0, generation;
    const ipvirt_policy_table *policy = bpf_map_lookup_elem(&ipv_policy, &zero);
    struct ipv_config *cfg = bpf_map_lookup_elem(&ipv_config, &zero);
    const ipvirt_session_entry *s;
    struct task_struct *task;
    struct ipv_task_cache *c = 0;
    struct file *exe;
    __u64 cgroup;

    if (!policy || !cfg || cfg->version != IPV_CONFIG_VERSION ||
        policy->version != IPVIRT_TABLE_VERSION)
        return IPV_OUTSIDE;
    t->policy = policy;
    task = bpf_get_current_task_btf();
    exe = task->mm ? task->mm->exe_file : 0;
    if (ipv_task_cache_on) {
        /* The same id as bpf_get_current_cgroup_id: the task's cgroup2 cgroup's kernfs id. */
        cgroup = task->cgroups->dfl_cgrp->kn->id;
        c = bpf_task_storage_get(&ipv_task_cache, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
        if (c && c->valid && c->generation == cfg->generation && c->cgroup == cgroup &&
            c->exec_id == task->self_exec_id && c->exe == (__u64)exe) {
            t->session = c->session;
            t->program = c->program;
            return IPV_FOUND;
        }
        /* A miss: the generation is read (an atomic, so a full barrier) before the tables. An
         * entry computed while the loader writes is stored under the old generation, which the
         * loader's bump after its write makes stale at the next call. */
        generation = __sync_fetch_and_add(&cfg->generation, 0);
    } else {
        cgroup = bpf_get_current_cgroup_id();
    }
    s = session_entry(cgroup);
    if (!s) {
        /* The programs of the socket's cgroup run, and a socket keeps the cgroup it was made in:
         * a task outside the layer's tree (ipv_anchors) that uses a socket a session passed to it
         * (SCM_RIGHTS) lands here. It is in no session, so it is left alone (SPEC §12); only a
         * task of the tree without a session entry fails closed. */
        if (!in_tree())
            return IPV_OUTSIDE;
        return IPV_UNKNOWN;
    }
    t->session = *s;
    t->program = program_entry(cfg, exe);
    if (c) {
        c->valid = 0;
        c->exec_id = task->self_exec_id;
        c->exe = (__u64)exe;
        c->cgroup = cgroup;
        c->generation = generation;
        c->session = t->session;
        c->program = t->program;
        c->valid = 1;
    }
    return IPV_FOUND;
}

/* Refuses the call with `err` (positive errno). */
INLINE int refuse(int err)
{
    bpf_set_retval(-err);
    return 0;
}

/* Refuses the call with `err` and reports it (ipv_refusals): `session` 0 when the task's cgroup
 * has no session entry; the address as the program gave it (a0..a3, network order). */
INLINE int refused(__u32 session, __u32 call, int err, __u32 a0, __u32 a1, __u32 a2, __u32 a3,
                   __u16 port)
{
    struct ipv_refusal ev;
    struct task_struct *task = bpf_get_current_task_btf();
    struct ipv_task_cache *c;
    __u64 key = (__u64)call | (__u64)(__u8)err << 8 | (__u64)port << 16 |
                (__u64)(a0 ^ a1 ^ a2 ^ a3 ^ session) << 32;
    if (ipv_task_cache_on) {
        c = bpf_task_storage_get(&ipv_task_cache, task, 0, 0);
        if (c) {
            if (c->refused == key)
                return refuse(err);
            c->refused = key;
        }
    }
    __builtin_memset(&ev, 0, sizeof(ev));
    ev.cgroup = bpf_get_current_cgroup_id();
    ev.session = session;
    ev.err = err;
    ev.pid = task->tgid;
    ev.call = call;
    ev.port = port;
    ev.addr[0] = a0;
    ev.addr[1] = a1;
    ev.addr[2] = a2;
    ev.addr[3] = a3;
    bpf_probe_read_kernel_str(ev.comm, sizeof(ev.comm), task->comm);
    if (task->mm && task->mm->exe_file && task->mm->exe_file->f_path.dentry)
        bpf_probe_read_kernel_str(ev.exe, sizeof(ev.exe),
                                  task->mm->exe_file->f_path.dentry->d_name.name);
    bpf_ringbuf_output(&ipv_refusals, &ev, sizeof(ev), 0);
    return refuse(err);
}
#define REFUSED4(session, call, err, ctx)                                                        \
    refused(session, call, err, (ctx)->user_ip4, 0, 0, 0, bswap16((__u16)(ctx)->user_port))
#define REFUSED6(session, call, err, ip6, ctx)                                                   \
    refused(session, call, err, (ip6)[0], (ip6)[1], (ip6)[2], (ip6)[3],                          \
            bswap16((__u16)(ctx)->user_port))

/* ---- IPv6 addresses as kinds ---- */
INLINE ipv_addr addr6_of(const __u32 ip6[4])
{
    ipv_addr a = {IPV_KIND_OTHER6, 0};
    if (ip6[0] != 0 || ip6[1] != 0)
        return a;
    if (ip6[2] == bswap32(0xffff)) {
        a.kind = IPV_KIND_MAPPED;
        a.ip = bswap32(ip6[3]);
    } else if (ip6[2] == 0 && ip6[3] == bswap32(1)) {
        a.kind = IPV_KIND_LOOP6;
    } else if (ip6[2] == 0 && ip6[3] == 0) {
        a.kind = IPV_KIND_ANY6;
    }
    return a;
}

INLINE void put_user6(struct bpf_sock_addr *ctx, ipv_addr a)
{
    if (a.kind == IPV_KIND_MAPPED) {
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = bswap32(0xffff);
        ctx->user_ip6[3] = bswap32(a.ip);
    } else if (a.kind == IPV_KIND_LOOP6) {
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = 0;
        ctx->user_ip6[3] = bswap32(1);
    }
}

INLINE int same(ipv_addr a, ipv_addr b)
{
    return a.kind == b.kind && a.ip == b.ip;
}

/* Whether an AF_INET6 socket takes IPv4-mapped addresses (IPV6_V6ONLY off). bpf_getsockopt does
 * not offer IPV6_V6ONLY to these hooks, so the bit is read from the socket itself: the TCP or UDP
 * socket as BTF (bpf_skc_to_tcp6_sock / _udp6_sock), its `struct sock` first, and the
 * `skc_ipv6only` bit-field located by CO-RE. Another kind of socket (none reaches these hooks
 * today) counts as v6-only: nothing is mapped. */
INLINE int dual_stack(struct bpf_sock_addr *ctx)
{
    struct sock *sk = 0;
    unsigned long long v = 0;
    unsigned int off, size, lshift, rshift;
    if (!ctx->sk)
        return 0;
    if (ctx->protocol == 6 /* IPPROTO_TCP */)
        sk = bpf_skc_to_tcp6_sock(ctx->sk);
    else if (ctx->protocol == 17 /* IPPROTO_UDP */)
        sk = bpf_skc_to_udp6_sock(ctx->sk);
    if (!sk)
        return 0;
    off = __builtin_preserve_field_info(sk->__sk_common.skc_ipv6only, 0 /* byte offset */);
    size = __builtin_preserve_field_info(sk->__sk_common.skc_ipv6only, 1 /* byte size */);
    lshift = __builtin_preserve_field_info(sk->__sk_common.skc_ipv6only, 4 /* lshift u64 */);
    rshift = __builtin_preserve_field_info(sk->__sk_common.skc_ipv6only, 5 /* rshift u64 */);
    if (size > 8 || bpf_probe_read_kernel(&v, size & 15, (char *)sk + off) < 0)
        return 0;
    v <<= lshift;
    v >>= rshift;
    return v == 0;
}

/* ---- sockets the layer bound itself ---- */
/* Whether the layer bound this UDP socket's address (ipv_sk_implicit). */
INLINE int implicit(struct bpf_sock_addr *ctx)
{
    __u32 *mark;
    if (!ctx->sk || ctx->type != SOCK_DGRAM)
        return 0;
    mark = bpf_sk_storage_get(&ipv_sk_implicit, ctx->sk, 0, 0);
    return mark && *mark;
}

/* Whether the socket is connected (it has a peer). */
INLINE int connected(struct bpf_sock_addr *ctx)
{
    return ctx->sk && ctx->sk->dst_port != 0;
}

/* The program binds the socket itself: the address is its own from now on. */
INLINE void forget_implicit(struct bpf_sock_addr *ctx)
{
    if (ctx->sk && ctx->type == SOCK_DGRAM)
        bpf_sk_storage_delete(&ipv_sk_implicit, ctx->sk);
}

/* ---- the hooks ---- */
SEC("cgroup/bind4")
int ipv_bind4(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    ipv_addr a;
    int r = tables(&t);
    if (r == IPV_OUTSIDE)
        return 1;
    if (r == IPV_UNKNOWN)
        return REFUSED4(0, IPV_CALL_BIND4, EPERM, ctx);
    a.kind = IPV_KIND_V4;
    a.ip = bswap32(ctx->user_ip4);
    r = ipv_bind(&t, &a, bswap16((__u16)ctx->user_port), 0);
    if (r)
        return REFUSED4(t.session.session, IPV_CALL_BIND4, r, ctx);
    ctx->user_ip4 = bswap32(a.ip);
    forget_implicit(ctx);
    return 1;
}

SEC("cgroup/bind6")
int ipv_bind6(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    ipv_addr a, before;
    __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    int r = tables(&t);
    if (r == IPV_OUTSIDE)
        return 1;
    if (r == IPV_UNKNOWN)
        return REFUSED6(0, IPV_CALL_BIND6, EPERM, ip6, ctx);
    a = addr6_of(ip6);
    before = a;
    r = ipv_bind(&t, &a, bswap16((__u16)ctx->user_port), dual_stack(ctx));
    if (r)
        return REFUSED6(t.session.session, IPV_CALL_BIND6, r, ip6, ctx);
    if (!same(a, before))
        put_user6(ctx, a);
    forget_implicit(ctx);
    return 1;
}

struct ipv_sockaddr_in {
    __u16 family;
    __u16 port;
    __u32 addr;
    __u8 zero[8];
};

struct ipv_sockaddr_in6 {
    __u16 family;
    __u16 port;
    __u32 flowinfo;
    __u32 addr[4];
    __u32 scope_id;
};

/* Binds an unbound socket to `source` (port 0: the port is chosen at connect time, as with
 * IP_BIND_ADDRESS_NO_PORT). Returns 0, or the errno that refuses the connect: a source that cannot
 * be bound must not silently become the shared address.
 *
 * A UDP socket whose address the layer bound at an earlier connect, since dissolved with
 * connect(AF_UNSPEC), still has that address (the kernel locks a bound address): it is the
 * layer's to set again, to this connect's source or to none (0.0.0.0 / ::), as if it were
 * unbound. Such a socket is remembered in ipv_sk_implicit. */
INLINE int bind_source(struct bpf_sock_addr *ctx, __u32 source, int six)
{
    struct bpf_sock *sk = ctx->sk;
    __u32 *mark;
    int ours;
    long err;
    if (!sk)
        return 0;
    if (sk->src_port != 0)
        return 0; /* bound already: an explicit bind decided (or a send took a port) */
    ours = implicit(ctx);
    if (!source && !ours)
        return 0;
    if (six) {
        if (!ours && (sk->src_ip6[0] | sk->src_ip6[1] | sk->src_ip6[2] | sk->src_ip6[3]))
            return 0;
        struct ipv_sockaddr_in6 sa = {AF_INET6, 0, 0, {0, 0, 0, 0}, 0};
        if (source) {
            sa.addr[2] = bswap32(0xffff);
            sa.addr[3] = bswap32(source);
        }
        err = bpf_bind(ctx, &sa, sizeof(sa));
    } else {
        if (!ours && sk->src_ip4 != 0)
            return 0;
        struct ipv_sockaddr_in sa = {AF_INET, 0, bswap32(source), {0}};
        err = bpf_bind(ctx, &sa, sizeof(sa));
    }
    if (err)
        return IPV_EADDRNOTAVAIL;
    if (source && !ours && ctx->type == SOCK_DGRAM) {
        mark = bpf_sk_storage_get(&ipv_sk_implicit, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
        if (mark)
            *mark = 1;
    }
    return 0;
}

SEC("cgroup/connect4")
int ipv_connect4(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    ipv_addr a;
    __u32 source;
    int r = tables(&t);
    if (r == IPV_OUTSIDE)
        return 1;
    __u32 given = ctx->user_ip4;
    if (r == IPV_UNKNOWN)
        return REFUSED4(0, IPV_CALL_CONNECT4, EPERM, ctx);
    a.kind = IPV_KIND_V4;
    a.ip = bswap32(given);
    r = ipv_connect(&t, &a, bswap16((__u16)ctx->user_port), &source);
    if (r)
        return REFUSED4(t.session.session, IPV_CALL_CONNECT4, r, ctx);
    ctx->user_ip4 = bswap32(a.ip);
    r = bind_source(ctx, source, 0);
    if (r)
        return refused(t.session.session, IPV_CALL_CONNECT4, r, given, 0, 0, 0,
                       bswap16((__u16)ctx->user_port));
    return 1;
}

SEC("cgroup/connect6")
int ipv_connect6(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    ipv_addr a, before;
    __u32 source;
    __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    int r = tables(&t);
    if (r == IPV_OUTSIDE)
        return 1;
    if (r == IPV_UNKNOWN)
        return REFUSED6(0, IPV_CALL_CONNECT6, EPERM, ip6, ctx);
    a = addr6_of(ip6);
    before = a;
    r = ipv_connect(&t, &a, bswap16((__u16)ctx->user_port), &source);
    if (r)
        return REFUSED6(t.session.session, IPV_CALL_CONNECT6, r, ip6, ctx);
    if (!same(a, before))
        put_user6(ctx, a);
    r = bind_source(ctx, source, 1);
    if (r)
        return REFUSED6(t.session.session, IPV_CALL_CONNECT6, r, ip6, ctx);
    return 1;
}

/* A UDP send with a destination, or with control messages. An AF_INET6 socket sending to an
 * IPv4-mapped address runs this hook too (the kernel converts first).
 *
 * - The destination (`user_ip4`, `user_port`) is decided as a connect. A port of 0 means there is
 *   none: a connected socket's send with control messages, which the kernel also runs through
 *   here (the destination it shows is then 0.0.0.0:0, and ignored).
 * - The datagram's source (`msg_src_ip4`) is the socket's bound address or the one chosen in
 *   IP_PKTINFO / IPV6_PKTINFO: a source the program chose, decided as a bind of it on the
 *   socket's port (SPEC §12: another session's loopback is refused, 127.0.0.1 becomes the
 *   session's). When the socket is unbound (0), the implicit source is this datagram's source.
 * - A socket the layer bound itself at a connect since dissolved (ipv_sk_implicit) is unbound as
 *   far as the rules go: its address is replaced by the implicit source, or by none. */
SEC("cgroup/sendmsg4")
int ipv_sendmsg4(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    ipv_addr a, b;
    __u32 source = 0, src, lport;
    int r = tables(&t);
    if (r == IPV_OUTSIDE)
        return 1;
    if (r == IPV_UNKNOWN)
        return REFUSED4(0, IPV_CALL_SENDMSG4, EPERM, ctx);
    if (ctx->user_port != 0) {
        a.kind = IPV_KIND_V4;
        a.ip = bswap32(ctx->user_ip4);
        r = ipv_connect(&t, &a, bswap16((__u16)ctx->user_port), &source);
        if (r)
            return REFUSED4(t.session.session, IPV_CALL_SENDMSG4, r, ctx);
        ctx->user_ip4 = bswap32(a.ip);
    }
    src = bswap32(ctx->msg_src_ip4);
    lport = ctx->sk ? ctx->sk->src_port : 0;
    if (src != 0 && ctx->sk && src == bswap32(ctx->sk->src_ip4) && !connected(ctx) &&
        implicit(ctx)) {
        ctx->msg_src_ip4 = bswap32(source);
        return 1;
    }
    if (src != 0) {
        b.kind = IPV_KIND_V4;
        b.ip = src;
        r = ipv_bind(&t, &b, (__u16)lport, 0);
        if (r)
            return refused(t.session.session, IPV_CALL_SENDMSG4_SOURCE, r, bswap32(src), 0, 0, 0,
                           (__u16)lport);
        if (b.ip != src)
            ctx->msg_src_ip4 = bswap32(b.ip);
        return 1;
    }
    if (source)
        ctx->msg_src_ip4 = bswap32(source);
    return 1;
}

/* An unconnected UDP send on an AF_INET6 socket to an IPv6 address. Only `::1` could be
 * rewritten, and a sendmsg6 program may not turn it into an IPv4-mapped address (-ENOTSUPP): it is
 * left alone (documented); the program exists to fail closed. */
SEC("cgroup/sendmsg6")
int ipv_sendmsg6(struct bpf_sock_addr *ctx)
{
    ipv_tables t;
    int r = tables(&t);
    __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    if (r == IPV_UNKNOWN)
        return REFUSED6(0, IPV_CALL_SENDMSG6, EPERM, ip6, ctx);
    return 1;
}

/* The results: `own` is true for getsockname, where a UDP socket the layer bound itself at a
 * connect since dissolved shows the unspecified address it would have natively. */
INLINE void report4(struct bpf_sock_addr *ctx, int own)
{
    ipv_tables t;
    ipv_addr a;
    if (tables(&t) != IPV_FOUND)
        return;
    if (own && !connected(ctx) && implicit(ctx)) {
        ctx->user_ip4 = 0;
        return;
    }
    a.kind = IPV_KIND_V4;
    a.ip = bswap32(ctx->user_ip4);
    ipv_reported(&t, &a, bswap16((__u16)ctx->user_port));
    ctx->user_ip4 = bswap32(a.ip);
}

INLINE void report6(struct bpf_sock_addr *ctx, int own)
{
    ipv_tables t;
    ipv_addr a, before;
    __u32 ip6[4] = {ctx->user_ip6[0], ctx->user_ip6[1], ctx->user_ip6[2], ctx->user_ip6[3]};
    if (tables(&t) != IPV_FOUND)
        return;
    if (own && !connected(ctx) && implicit(ctx)) {
        ctx->user_ip6[0] = 0;
        ctx->user_ip6[1] = 0;
        ctx->user_ip6[2] = 0;
        ctx->user_ip6[3] = 0;
        return;
    }
    a = addr6_of(ip6);
    before = a;
    ipv_reported(&t, &a, bswap16((__u16)ctx->user_port));
    if (!same(a, before))
        put_user6(ctx, a);
}

SEC("cgroup/recvmsg4")
int ipv_recvmsg4(struct bpf_sock_addr *ctx)
{
    report4(ctx, 0);
    return 1;
}

SEC("cgroup/recvmsg6")
int ipv_recvmsg6(struct bpf_sock_addr *ctx)
{
    report6(ctx, 0);
    return 1;
}

SEC("cgroup/getsockname4")
int ipv_sockname4(struct bpf_sock_addr *ctx)
{
    report4(ctx, 1);
    return 1;
}

SEC("cgroup/getsockname6")
int ipv_sockname6(struct bpf_sock_addr *ctx)
{
    report6(ctx, 1);
    return 1;
}

SEC("cgroup/getpeername4")
int ipv_peername4(struct bpf_sock_addr *ctx)
{
    report4(ctx, 0);
    return 1;
}

SEC("cgroup/getpeername6")
int ipv_peername6(struct bpf_sock_addr *ctx)
{
    report6(ctx, 0);
    return 1;
}

char _license[] SEC("license") = "Dual MIT/GPL";
