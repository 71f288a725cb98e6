//! The command line, defined once: parsing, `--help`, the man pages and the shell completions
//! all come from these types ([`Cli::command`](clap::CommandFactory::command)).

use std::ffi::OsString;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipvirt::{SessionId, Vip};

/// Per-session loopback addresses and virtual IPs for multi-user servers.
///
/// Every session of a server gets its own network identity: session 7 binds 127.0.0.1:9000 and
/// really gets 127.0.0.8:9000; with virtual IPs, 0.0.0.0:9000 becomes the session's VIP:9000.
/// The same policy drives both Linux layers (LD_PRELOAD and cgroup-BPF) and the Windows hook.
#[derive(Debug, Parser)]
#[command(
    name = "ipvirt",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a command as a session, under the LD_PRELOAD or the kernel layer.
    Run(RunArgs),
    /// List the live sessions and leases (the service's, when it runs).
    Status(StatusArgs),
    /// Run the service that makes every login a session (in the foreground; systemd runs it as
    /// ipvirt.service).
    Daemon(DaemonArgs),
    /// Make the running service re-read its policy (as SIGHUP does).
    Reload(ReloadArgs),
    /// Explain a policy: which features apply to a session's processes, why, and what each kind
    /// of socket call becomes.
    Explain(ExplainArgs),
    /// Check a policy file and print its diagnostics (exit status 1 when it has errors).
    Validate(ValidateArgs),
    /// Propose a policy from socket-table snapshots (ss, netstat, TCPView) or the live table.
    Advise(AdviseArgs),
    /// The kernel layer: its programs' statistics, or detach it.
    Kernel(KernelArgs),
    /// Write the man pages or a shell's completions (what the package installs).
    Generate(GenerateArgs),
}

/// Which Linux layer virtualizes a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Layer {
    /// The LD_PRELOAD library: dynamically linked programs, no privileges.
    Preload,
    /// cgroup-BPF programs: every process of the session, static and Go programs included; root.
    Kernel,
}

/// `ipvirt run`.
#[derive(Debug, Args)]
#[command(
    after_help = "The session's VIP is leased from the policy's pool, or from DHCP with \
virtual_ip.source = \"dhcp\", and given up when the session's processes are gone. Leases are \
kept in one lease book per host: /var/lib/ipvirt/leases.json for root, \
$XDG_STATE_HOME/ipvirt/leases.json (~/.local/state/ipvirt/) for other users. As root, when the \
ipvirt service runs, it makes the session instead: its policy, layer and lease book apply, and \
the command replaces this process in the session's cgroup.",
    override_usage = "ipvirt run --id ID --policy FILE [OPTIONS] -- COMMAND [ARGS]..."
)]
pub(crate) struct RunArgs {
    /// The session id (1 to 16777214; session 7's loopback is 127.0.0.8).
    #[arg(long, value_name = "ID", allow_negative_numbers = true)]
    pub(crate) id: SessionId,
    /// The TOML policy.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: PathBuf,
    /// Which layer virtualizes the session.
    #[arg(long, value_enum, default_value_t = Layer::Preload)]
    pub(crate) layer: Layer,
    /// The lease book (default: see below); FILE.lock beside it is its lock.
    #[arg(long, value_name = "FILE")]
    pub(crate) lease_book: Option<PathBuf>,
    /// One of the server's own addresses, never leased (repeatable).
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
    /// The LD_PRELOAD library (default: IPVIRT_PRELOAD, else libipvirt_preload.so beside this
    /// program or in its ../lib/ipvirt/).
    #[arg(long, value_name = "FILE", env = "IPVIRT_PRELOAD")]
    pub(crate) preload: Option<PathBuf>,
    /// Run as a console session (never virtualized).
    #[arg(long)]
    pub(crate) console: bool,
    /// With virtual_ip.source = "dhcp": how long to wait for the lease before the command runs
    /// without one.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub(crate) dhcp_wait: Duration,
    /// The kernel layer's root cgroup, below the cgroup2 mount (one policy per root).
    #[arg(long, value_name = "NAME", default_value = "ipvirt", value_parser = cgroup_name)]
    pub(crate) kernel_root: String,
    /// The service's control socket: as root, when a service listens there, it makes the
    /// session (its policy, layer and lease book apply).
    #[arg(long, value_name = "PATH", env = "IPVIRT_CONTROL", default_value = ipvirt_host::control::DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<OsString>,
}

/// `ipvirt status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The policy whose pool the static leases come from (without it, only DHCP claims and
    /// kernel sessions are listed).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// The lease book (default: as `ipvirt run`).
    #[arg(long, value_name = "FILE")]
    pub(crate) lease_book: Option<PathBuf>,
    /// One of the server's own addresses (repeatable), as given to `ipvirt run`.
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
    /// The kernel layer's root cgroup.
    #[arg(long, value_name = "NAME", default_value = "ipvirt", value_parser = cgroup_name)]
    pub(crate) kernel_root: String,
    /// The service's control socket.
    #[arg(long, value_name = "PATH", env = "IPVIRT_CONTROL", default_value = ipvirt_host::control::DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
}

/// `ipvirt daemon`.
#[derive(Debug, Args)]
#[command(
    after_help = "The service owns the host's sessions: the policy, the kernel layer's \
attachment, every lease (the static pool and one DHCP client for all sessions), the session \
numbers, and the clean-up when a session's last process ends. The PAM module pam_ipvirt.so asks \
it to make each login a session. SIGHUP re-reads the policy; SIGTERM or SIGINT stop the service \
(sessions keep running and are found again at the next start)."
)]
pub(crate) struct DaemonArgs {
    /// The policy.
    #[arg(long, value_name = "FILE", default_value = "/etc/ipvirt/policy.toml")]
    pub(crate) policy: PathBuf,
    /// Where the service keeps its state (made with mode 0700, root's).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/ipvirt")]
    pub(crate) state_dir: PathBuf,
    /// The control socket (its directory is made root's, mode 0755).
    #[arg(long, value_name = "PATH", default_value = ipvirt_host::control::DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
    /// The kernel layer's root cgroup, below the cgroup2 mount, and where sessions without a
    /// session manager get their cgroups (NAME/session-N).
    #[arg(long, value_name = "NAME", default_value = "ipvirt", value_parser = cgroup_name)]
    pub(crate) kernel_root: String,
    /// The LD_PRELOAD library, for sessions.layer = "preload" (default: as `ipvirt run`).
    #[arg(long, value_name = "FILE")]
    pub(crate) preload: Option<PathBuf>,
    /// How long a login waits for its DHCP lease before it proceeds without a VIP.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds, allow_negative_numbers = true)]
    pub(crate) dhcp_wait: Duration,
    /// One of the server's own addresses, never leased (repeatable).
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
    /// Log to syslog (/dev/log) as well as to stderr (default: when /dev/log exists and the
    /// service does not run under systemd, whose journal keeps stderr).
    #[arg(long, value_enum, default_value_t = LogTo::Auto)]
    pub(crate) log: LogTo,
}

/// Where the service logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogTo {
    /// stderr, and syslog unless systemd's journal reads stderr.
    Auto,
    /// stderr only.
    Stderr,
    /// stderr and syslog.
    Syslog,
}

/// `ipvirt reload`.
#[derive(Debug, Args)]
pub(crate) struct ReloadArgs {
    /// The service's control socket.
    #[arg(long, value_name = "PATH", env = "IPVIRT_CONTROL", default_value = ipvirt_host::control::DEFAULT_SOCKET)]
    pub(crate) socket: PathBuf,
}

/// `ipvirt explain`.
#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// A TOML policy or a regedit export (.reg) (default: the built-in CRM/CTI example policy).
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// A remote session to explain (repeatable; default 7).
    #[arg(
        long = "session",
        short = 's',
        value_name = "ID",
        allow_negative_numbers = true
    )]
    pub(crate) sessions: Vec<SessionId>,
    /// A console or administrative session to explain (repeatable).
    #[arg(long = "console", value_name = "ID", allow_negative_numbers = true)]
    pub(crate) consoles: Vec<SessionId>,
    /// An executable, by path or name (repeatable; default: the policy's programs and one
    /// unlisted program).
    #[arg(long = "process", short = 'p', value_name = "IMAGE")]
    pub(crate) processes: Vec<String>,
    /// The session's virtual IP (default: the pool's address for the session).
    #[arg(long, value_name = "IP", conflicts_with = "no_vip")]
    pub(crate) vip: Option<Vip>,
    /// The session has no VIP (shows the lease-failure behaviour).
    #[arg(long)]
    pub(crate) no_vip: bool,
    /// One of the server's own addresses (repeatable; default 192.0.2.10).
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
    /// The port of the sample calls.
    #[arg(
        long,
        value_name = "PORT",
        default_value_t = 9000,
        allow_negative_numbers = true
    )]
    pub(crate) port: u16,
    /// Also say what a Linux layer cannot do with this policy.
    #[arg(long, value_enum)]
    pub(crate) layer: Option<Layer>,
}

/// `ipvirt validate`.
#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// The policy: TOML or a regedit export (.reg).
    #[arg(value_name = "FILE")]
    pub(crate) policy: PathBuf,
    /// One of the server's own addresses (repeatable): pools that overlap them are errors.
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
}

/// `ipvirt advise`.
#[derive(Debug, Args)]
#[command(
    after_help = "A snapshot is the output of `ss -tulpn` (Linux), `netstat -ano` or \
`netstat -anob` (Windows), or a TCPView CSV export, taken while the application runs. A second \
snapshot, taken after starting the application again, tells hard-coded ports from ephemeral \
ones. Without --adapter, virtual IP is proposed disabled, with a note of what to fill in."
)]
pub(crate) struct AdviseArgs {
    /// The first snapshot and, optionally, the second.
    #[arg(value_name = "SNAPSHOT", num_args = 0..=2, required_unless_present = "live")]
    pub(crate) snapshots: Vec<PathBuf>,
    /// Sample this machine's socket table instead (Linux), naming each process by its
    /// executable; as root, every user's processes.
    #[arg(long, conflicts_with = "snapshots")]
    pub(crate) live: bool,
    /// With --live: take a second sample when Enter is pressed (restart the application first).
    #[arg(long, conflicts_with = "interval")]
    pub(crate) twice: bool,
    /// With --live: take a second sample SECS seconds later (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = fractional_seconds, allow_negative_numbers = true)]
    pub(crate) interval: Option<Duration>,
    /// One of the server's own addresses (repeatable).
    #[arg(long = "server-addr", value_name = "IP")]
    pub(crate) servers: Vec<IpAddr>,
    /// The VIP adapter's network (VIPAdapter), e.g. 192.0.2.0/24.
    #[arg(long, value_name = "CIDR")]
    pub(crate) adapter: Option<ipnet::Ipv4Net>,
    /// A range or network of the VIP pool (repeatable).
    #[arg(long = "pool", value_name = "RANGE")]
    pub(crate) pool: Vec<ipvirt::PoolEntry>,
    /// Only these processes (repeatable).
    #[arg(long = "process", value_name = "NAME")]
    pub(crate) processes: Vec<String>,
}

/// `ipvirt kernel`.
#[derive(Debug, Args)]
pub(crate) struct KernelArgs {
    /// What to do with the kernel layer.
    #[command(subcommand)]
    pub(crate) action: KernelAction,
    /// The kernel layer's root cgroup, below the cgroup2 mount.
    #[arg(long, value_name = "NAME", default_value = "ipvirt", global = true, value_parser = cgroup_name)]
    pub(crate) root: String,
}

/// `ipvirt kernel …`.
#[derive(Debug, Subcommand)]
pub(crate) enum KernelAction {
    /// Whether the programs run with the per-task cache, and each program's runs and average run
    /// time (counted while kernel.bpf_stats_enabled = 1, or during --for).
    Stats {
        /// Count only during the next SECS seconds (statistics turned on for that window, no
        /// sysctl changed).
        #[arg(long = "for", value_name = "SECS", value_parser = seconds_upto_a_day, allow_negative_numbers = true)]
        window: Option<Duration>,
    },
    /// Detach the programs and remove the layer's cgroups, restoring the host (refused while a
    /// session's processes run).
    Detach,
}

/// `ipvirt generate`.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// What to write.
    #[arg(value_enum)]
    pub(crate) what: Generated,
    /// The directory to write into (man pages: one file per command; completions: one file).
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,
}

/// What `ipvirt generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Generated {
    /// The man pages: ipvirt.1 and ipvirt-COMMAND.1.
    Man,
    /// bash completions.
    Bash,
    /// zsh completions.
    Zsh,
    /// fish completions.
    Fish,
}

/// A whole number of seconds.
fn seconds(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .map(Duration::from_secs)
        .map_err(|_| format!("{v:?} is not a whole number of seconds"))
}

/// A whole number of seconds from 1 to 86 400.
fn seconds_upto_a_day(v: &str) -> Result<Duration, String> {
    v.parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .map(Duration::from_secs)
        .ok_or_else(|| format!("{v:?} is not a number of seconds from 1 to 86400"))
}

/// A number of seconds from 0 to 86 400, fractions allowed.
fn fractional_seconds(v: &str) -> Result<Duration, String> {
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.0..=86_400.0).contains(s))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{v:?} is not a number of seconds from 0 to 86400"))
}

/// A cgroup's name: one path component.
fn cgroup_name(v: &str) -> Result<String, String> {
    if v.is_empty() || v.contains('/') || v == "." || v == ".." || v.contains('\0') {
        return Err(format!("{v:?} is not a cgroup name"));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bad_values_are_named() {
        let e = Cli::try_parse_from(["ipvirt", "explain", "--vip", "300.1.1.1"]).unwrap_err();
        assert!(e.to_string().contains("300.1.1.1"), "{e}");
        let e = Cli::try_parse_from(["ipvirt", "run", "--id", "x", "--policy", "p", "--", "sh"])
            .unwrap_err();
        assert!(e.to_string().contains("'x'"), "{e}");
        let e = Cli::try_parse_from(["ipvirt", "kernel", "--root", "a/b", "detach"]).unwrap_err();
        assert!(e.to_string().contains("\"a/b\""), "{e}");
        let e = Cli::try_parse_from(["ipvirt", "explain", "--session", "-3"]).unwrap_err();
        assert!(e.to_string().contains("'-3'"), "{e}");
    }
}
