//! A DHCP server for tests: `dnsmasq` in a network namespace of the test's own, joined by a veth
//! pair to the test's namespace ([`DhcpNet`]). Needs root, `ip` and `dnsmasq` (`.ci/run`
//! installs `dnsmasq-base`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a test waits for a condition before it fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Runs a command; its stderr in the error when it fails.
pub fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A server namespace with dnsmasq, joined by a veth pair to the test's namespace. Everything is
/// removed on drop, also when the test fails.
#[derive(Debug)]
pub struct DhcpNet {
    /// The server's namespace.
    pub ns: String,
    /// The client side of the veth pair (in the test's namespace).
    pub client_if: String,
    /// The server side of the veth pair.
    pub server_if: String,
    /// The network's third octet.
    pub net: u8,
    /// The scratch directory.
    pub dir: PathBuf,
    /// The server process.
    pub dnsmasq: Option<Child>,
}

impl DhcpNet {
    /// Network `10.231.<net>.0/24`: the server is `.1`, the client side `.2`, the pool
    /// `.100`-`.<last>`. `net` is unique per test (tests run in parallel).
    pub fn new(net: u8, last: u8, ping: bool) -> DhcpNet {
        DhcpNet::with_range(net, 100, last, ping)
    }

    /// As [`DhcpNet::new`], with the pool `.<first>`-`.<last>` (a pool that holds the client
    /// side's own address `.2` plays a misconfigured server).
    pub fn with_range(net: u8, first: u8, last: u8, ping: bool) -> DhcpNet {
        let tag = format!("{}{net}", std::process::id() % 10_000);
        let ns = format!("ipvirt-dhcp-{tag}");
        let client_if = format!("ivd{tag}c");
        let server_if = format!("ivd{tag}s");
        let dir = std::env::temp_dir().join(format!("ipvirt-dhcp-{tag}"));
        // Leftovers of an earlier run that was killed.
        let _ = run(&["ip", "netns", "del", &ns]);
        let _ = run(&["ip", "link", "del", &client_if]);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut n = DhcpNet {
            ns: ns.clone(),
            client_if: client_if.clone(),
            server_if: server_if.clone(),
            net,
            dir: dir.clone(),
            dnsmasq: None,
        };
        let server = format!("10.231.{net}.1/24");
        let client = format!("10.231.{net}.2/24");
        for cmd in [
            vec!["ip", "netns", "add", &ns],
            vec![
                "ip", "link", "add", &client_if, "type", "veth", "peer", "name", &server_if,
                "netns", &ns,
            ],
            vec!["ip", "addr", "add", &client, "dev", &client_if],
            vec!["ip", "link", "set", &client_if, "up"],
            vec!["ip", "-n", &ns, "addr", "add", &server, "dev", &server_if],
            vec!["ip", "-n", &ns, "link", "set", &server_if, "up"],
            vec!["ip", "-n", &ns, "link", "set", "lo", "up"],
        ] {
            run(&cmd).unwrap();
        }
        n.start_server_range(first, last, ping);
        n
    }

    /// dnsmasq's lease file.
    pub fn leases_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }

    /// dnsmasq's log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    /// Starts dnsmasq with the range `.100`-`.<last>`; `ping`: check an address before offering it.
    pub fn start_server(&mut self, last: u8, ping: bool) {
        self.start_server_range(100, last, ping);
    }

    /// Starts dnsmasq with the range `.<first>`-`.<last>`; `ping` as in [`start_server`](Self::start_server).
    pub fn start_server_range(&mut self, first: u8, last: u8, ping: bool) {
        let server_if = &self.server_if;
        let range = format!(
            "--dhcp-range=10.231.{0}.{first},10.231.{0}.{last},255.255.255.0,2m",
            self.net
        );
        let log = std::fs::File::create(self.log_path()).unwrap();
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &self.ns,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
        ])
        .arg(format!("--interface={server_if}"))
        .arg("--bind-interfaces")
        .arg(range)
        .arg(format!("--dhcp-leasefile={}", self.leases_path().display()))
        .arg(format!(
            "--pid-file={}",
            self.dir.join("dnsmasq.pid").display()
        ))
        .arg("--log-dhcp")
        .arg("--conf-file=/dev/null");
        if !ping {
            cmd.arg("--no-ping");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.dnsmasq = Some(child);
        // Ready when it says so.
        wait_for(
            || log_has(&self.log_path(), "DHCP, IP range"),
            "dnsmasq to start",
        );
    }

    /// Stops dnsmasq.
    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The leases in dnsmasq's lease file: (address, client id in hex) per complete line.
    pub fn server_leases(&self) -> Vec<(Ipv4Addr, String)> {
        let text = std::fs::read_to_string(self.leases_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 5).then(|| (f[2].parse().ok(), f[4].to_owned()))
            })
            .filter_map(|(a, c)| a.map(|a| (a, c)))
            .collect()
    }
}

impl Drop for DhcpNet {
    fn drop(&mut self) {
        self.kill_server();
        let _ = run(&["ip", "link", "del", &self.client_if]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether the file at `path` contains `what`.
pub fn log_has(path: &Path, what: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(what))
}

/// Waits until `cond` holds, failing the test after [`DEADLINE`].
pub fn wait_for(cond: impl FnMut() -> bool, what: &str) {
    wait_for_else(cond, || what.to_owned());
}

/// As [`wait_for`], with the failure's words computed when it fails.
pub fn wait_for_else(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {}", what());
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(20));
    }
}
