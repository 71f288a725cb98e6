//! A Linux `LD_PRELOAD` layer that gives the processes of a session their own loopback address and
//! virtual IP, by doing what `ipvirt` says in front of the socket calls.
//!
//! ```text
//! cargo build -p ipvirt-preload                 # target/debug/libipvirt_preload.so
//! IPVIRT_SESSION=7 IPVIRT_POLICY=examples/policies/linux-ld-preload.toml \
//!   LD_PRELOAD=target/debug/libipvirt_preload.so python3 -m http.server --bind 127.0.0.1 8000
//! ```
//!
//! (`ipvirt run --id 7 --policy FILE -- COMMAND…` sets all of this up; the `ipvirt` service does
//! for every login with `sessions.layer = "preload"`.)
//!
//! ## Configuration (read once, when the library is loaded)
//!
//! | variable | meaning |
//! |---|---|
//! | `IPVIRT_SESSION` | the session id (required) |
//! | `IPVIRT_POLICY` | path of the TOML policy file (required): a regular file of at most 1 MiB; any path the OS accepts, UTF-8 or not |
//! | `IPVIRT_VIP` | the session's IPv4 virtual IP (optional: without it the policy's `on_lease_failure` applies) |
//! | `IPVIRT_SERVER_ADDRS` | the server's own addresses, comma-separated (optional: default, the host's non-loopback interface addresses, read only when the policy enables virtual IPs) |
//! | `IPVIRT_SESSION_KIND` | `remote` (default) or `console` |
//! | `IPVIRT_CONTROL` | the `ipvirt` service's control socket (set by the service for its sessions): each kind of refusal is reported there once per process, for the service's log (see `report`) |
//! | `IPVIRT_DEBUG` | `1`: print each rewrite and its reason to stderr (and, when unconfigured, why nothing happens) |
//!
//! The process is identified, like a Windows image name, by the basename of `/proc/self/exe`.
//!
//! - **Unconfigured** (neither `IPVIRT_SESSION` nor `IPVIRT_POLICY` set, e.g. `LD_PRELOAD` exported
//!   in a shell whose helper processes are not in a session): silent, every call unchanged.
//! - **Configured but wrong** (one of the two missing, a bad number, an unreadable or invalid
//!   policy): one line on stderr per process, then every call unchanged.
//! - The policy file is opened with `O_NONBLOCK` and read only if it is a regular file (a FIFO
//!   would block every program before `main`, `/dev/zero` would never end) of at most 1 MiB (a
//!   policy lists programs and ports: a few KiB; the cap keeps the read before `main` negligible).
//!
//! Diagnostics are written with `write(2)` on fd 2, errors ignored, with `SIGPIPE` blocked around
//! the write and the one it raised consumed: a closed or broken stderr never kills the program (see
//! `write_stderr`). The layer sets no environment variable of its own, so the program sees its
//! environment exactly as it was given.
//!
//! ## What is intercepted
//!
//! `bind`, `connect`, `sendto`, `sendmsg`, `sendmmsg` (destinations, and an implicit bind of the
//! source, port 0, on a socket that is not bound yet), `getsockname`, `getpeername`, `accept`,
//! `accept4`, `recvfrom`, `recvmsg`, `recvmmsg` (addresses handed back), `getaddrinfo` (results), and
//! `socket`, `close`, `dup`, `dup2`, `dup3`, `fcntl`/`fcntl64` (`F_DUPFD`, `F_DUPFD_CLOEXEC`),
//! `close_range`, `closefrom` (to keep what it knows about descriptor numbers right). Other address
//! families pass through untouched.
//!
//! The implicit source bind before a `connect` sets `IP_BIND_ADDRESS_NO_PORT` (Linux ≥ 4.2) for the
//! bind and turns it back off if the program had it off: the bind takes the address only and the
//! kernel chooses the port at connect time, per destination, as it does natively. (A bind that took
//! the port itself made connection churn 30× slower with many `TIME_WAIT` sockets, and each port
//! served one connection whatever the destination.)
//!
//! ## Fidelity
//!
//! Apart from where addresses are placed, a program sees what it would natively: return values and
//! `errno`s come from the real calls (the layer's own helper calls never leak their `errno`), bad
//! lengths and NULL pointers reach the real call unchanged, result buffers are written only up to the
//! length the program gave, and `getsockname` on a UDP socket the layer bound implicitly (an
//! unconnected `sendto`) reports the unspecified address, as the kernel would have. A call the policy
//! refuses fails with `EADDRNOTAVAIL` ("no connectivity"), `ECONNREFUSED` (a connect or send refused
//! by isolation) or `EACCES` (a bind of another session's loopback address refused by isolation:
//! POSIX's error for an address the caller may not bind).
//!
//! Limits: whether a socket is bound is asked of the kernel (`getsockname`) unless the layer saw it
//! created and not bound since, so a descriptor number that changes hands unseen cannot leave a
//! socket without its source; but the "implicitly bound" mark of an unconnected UDP socket can go
//! stale when its number is reused by means the layer does not see (`fclose` of an `fdopen`ed
//! socket, raw system calls, `posix_spawn` file actions, `SCM_RIGHTS`), and `getsockname` on the new
//! socket then shows the unspecified address. Descriptors above 65 535 are not tracked. `fcntl` is
//! variadic in C: the layer takes its third argument as one register-sized integer (see
//! `fcntl_with`), which holds on x86-64 and AArch64 Linux. Like the kernel, the layer reads only as
//! many bytes of an address as its family needs; a pointer that is not NULL but invalid crashes the
//! program where the kernel would return `EFAULT`.

//!
//! ## Files
//!
//! Every file imports what it uses by name (no prelude). `config.rs` reads the configuration and
//! builds the state (the policy file through `ipvirt_host::policy_file`); `diag.rs` writes
//! diagnostics;
//! `sys.rs` has `errno` and the real functions; `fds.rs` what is known about descriptors;
//! `addrs.rs` copies addresses in and out; `calls/` the interposed functions, one file per call
//! family. Every address goes through ipvirt's sockaddr layer ([`ipvirt::Rewriter::raw`],
//! [`ipvirt::read_sockaddr`], [`ipvirt::write_sockaddr`]): no offsets are hard-coded here.

// This is an FFI shim: every exported function is unsafe by nature.
#![allow(unsafe_code)]

#[macro_use]
mod sys;
mod addrs;
pub mod calls;
mod config;
mod diag;
mod fds;
mod report;
