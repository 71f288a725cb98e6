//! The DHCP driver against a real `dnsmasq`, in a network namespace each test creates: a veth pair
//! joins the test (the client side, in the test's own namespace) to the server's namespace.
//! Needs root, `ip` and `dnsmasq` (`.ci/run` installs `dnsmasq-base`); skips with a printed reason
//! elsewhere.
#![cfg(all(feature = "dhcp", target_os = "linux"))]

#[macro_use]
mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvirt::dhcp::{DhcpConfig, DhcpDriver, DhcpEvent, DhcpState};
use ipvirt::{Host, LeaseError, Policy, Refusal, Session, SessionId, StateFile};

/// How long a test waits for a condition before it fails.
const DEADLINE: Duration = Duration::from_secs(60);

fn root() -> bool {
    // SAFETY-free check: only root may create namespaces here.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

macro_rules! require_root {
    () => {
        require!("ip", "dnsmasq");
        if !root() {
            eprintln!("skipped: creating network namespaces needs root");
            return;
        }
    };
}

fn run(args: &[&str]) -> Result<(), String> {
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
struct Net {
    ns: String,
    client_if: String,
    server_if: String,
    net: u8,
    dir: PathBuf,
    dnsmasq: Option<Child>,
}

impl Net {
    /// Network `10.231.<net>.0/24`: the server is `.1`, the client side `.2`, the pool
    /// `.100`-`.<last>`. `net` is unique per test (tests run in parallel).
    fn new(net: u8, last: u8, ping: bool) -> Net {
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
        let mut n = Net {
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
        n.start_server(last, ping);
        n
    }

    fn leases_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.leases")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("dnsmasq.log")
    }

    fn start_server(&mut self, last: u8, ping: bool) {
        let server_if = &self.server_if;
        let range = format!(
            "--dhcp-range=10.231.{0}.100,10.231.{0}.{last},255.255.255.0,2m",
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

    fn kill_server(&mut self) {
        if let Some(mut c) = self.dnsmasq.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The leases in dnsmasq's lease file: (address, client id in hex) per complete line.
    fn server_leases(&self) -> Vec<(Ipv4Addr, String)> {
        let text = std::fs::read_to_string(self.leases_path()).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 5).then(|| (f[2].parse().ok(), f[4].to_owned()))
            })
            .filter_map(|(a, c)| a.map(|a| (a, c)))
            .collect()
    }

    fn driver(&self, prefix: &str, state: Option<StateFile>) -> DhcpDriver {
        DhcpDriver::open(
            &self.client_if,
            DhcpConfig::new(prefix.as_bytes().to_vec(), [0; 6]),
            state,
            true,
        )
        .unwrap()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.kill_server();
        let _ = run(&["ip", "link", "del", &self.client_if]);
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn log_has(path: &Path, what: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|t| t.contains(what))
}

fn wait_for(cond: impl FnMut() -> bool, what: &str) {
    wait_for_else(cond, || what.to_owned());
}

fn wait_for_else(mut cond: impl FnMut() -> bool, what: impl Fn() -> String) {
    let end = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {}", what());
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Steps the driver until `cond` holds (deadline: [`DEADLINE`]).
fn drive(d: &mut DhcpDriver, what: &str, mut cond: impl FnMut(&mut DhcpDriver) -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond(d) {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}; notes: {:?}; stats: {:?}",
            d.take_notes(),
            d.machine().stats()
        );
        d.step(Duration::from_millis(100));
    }
}

fn sid(n: u32) -> SessionId {
    SessionId::new(n)
}

/// A clock that is the wall clock plus an offset the test moves.
fn jumping_clock(d: &mut DhcpDriver) -> Arc<AtomicU64> {
    let offset = Arc::new(AtomicU64::new(0));
    let o = Arc::clone(&offset);
    d.set_clock(Arc::new(move || {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
            + Duration::from_secs(o.load(Ordering::SeqCst))
    }));
    offset
}

#[test]
fn three_sessions_three_addresses_and_a_returning_session_gets_its_own() {
    require_root!();
    // dnsmasq pings each address before its first offer: the default 4 s retransmission copes.
    let net = Net::new(1, 150, true);
    let mut d = net.driver("ipvirt-t1-", None);
    for s in 1..=3 {
        assert_eq!(
            d.lease(sid(s)),
            Err(LeaseError::Pending { session: sid(s) })
        );
    }
    drive(&mut d, "three leases", |d| {
        (1..=3).all(|s| d.lease(sid(s)).is_ok())
    });
    let addrs: Vec<Ipv4Addr> = (1..=3).map(|s| d.lease(sid(s)).unwrap().addr()).collect();
    let mut distinct = addrs.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{addrs:?}");
    for a in &addrs {
        assert_eq!(a.octets()[..3], [10, 231, 1]);
    }
    // Each session is its own client of the server.
    wait_for(
        || {
            let l = net.server_leases();
            addrs.iter().all(|a| l.iter().any(|(b, _)| b == a))
        },
        "the server's lease file to list the three",
    );

    // Session 2 logs off and comes back: its old address.
    assert_eq!(d.release(sid(2)).unwrap().addr(), addrs[1]);
    assert_eq!(d.machine().state(sid(2)), None);
    wait_for(
        || {
            let l = net.server_leases();
            !l.iter().any(|(a, _)| *a == addrs[1]) && l.iter().any(|(a, _)| *a == addrs[0])
        },
        "the RELEASE to free the address in the server's lease file",
    );
    assert_eq!(
        d.lease(sid(2)),
        Err(LeaseError::Pending { session: sid(2) })
    );
    drive(&mut d, "session 2 back", |d| d.lease(sid(2)).is_ok());
    assert_eq!(d.lease(sid(2)).unwrap().addr(), addrs[1]);
    for s in 1..=3 {
        d.release(sid(s));
    }
    wait_for(|| net.server_leases().is_empty(), "every lease released");
    assert!(d.take_notes().is_empty());
}

#[test]
fn renewal_keeps_the_address_and_a_restarted_driver_renews_rather_than_rediscovers() {
    require_root!();
    let net = Net::new(2, 150, false);
    let state = net.dir.join("leases.json");
    let addr;
    {
        let mut d = net.driver("ipvirt-t2-", Some(StateFile::new(&state)));
        let offset = jumping_clock(&mut d);
        d.lease(sid(7)).unwrap_err();
        drive(&mut d, "a lease", |d| d.lease(sid(7)).is_ok());
        addr = d.lease(sid(7)).unwrap().addr();
        let lease = d.machine().lease_of(sid(7)).unwrap();
        assert_eq!(lease.expiry - lease.acquired, Duration::from_secs(120));
        // Jump to T1 (60 s): the renewal goes unicast to the server; its ACK comes back to the
        // address, configured on the adapter.
        offset.store(61, Ordering::SeqCst);
        let mut renewed = false;
        drive(&mut d, "the renewal", |d| {
            renewed |= d.step(Duration::from_millis(100)).iter().any(
                |e| matches!(e, DhcpEvent::Renewed { previous, lease, .. } if *previous == addr && lease.addr == addr),
            );
            renewed
        });
        assert_eq!(d.machine().state(sid(7)), Some(DhcpState::Bound));
        assert_eq!(d.lease(sid(7)).unwrap().addr(), addr);
        // The driver ends without releasing (a launcher that restarts).
    }
    let mut d = net.driver("ipvirt-t2-", Some(StateFile::new(&state)));
    let offset = jumping_clock(&mut d);
    // The lease is back at once, without a DISCOVER.
    assert_eq!(d.lease(sid(7)).unwrap().addr(), addr);
    assert_eq!(d.machine().state(sid(7)), Some(DhcpState::Bound));
    offset.store(70, Ordering::SeqCst);
    let mut renewed = false;
    drive(&mut d, "the restarted driver's renewal", |d| {
        renewed |= d
            .step(Duration::from_millis(100))
            .iter()
            .any(|e| matches!(e, DhcpEvent::Renewed { lease, .. } if lease.addr == addr));
        renewed
    });
    d.release(sid(7));
    wait_for(|| net.server_leases().is_empty(), "the lease released");
    // The file remembers the address for when the session comes back.
    let snap: ipvirt::dhcp::DhcpSnapshot = StateFile::new(&state).read().unwrap().unwrap();
    assert!(snap.leases.is_empty());
    assert_eq!(snap.remembered, [(sid(7), addr)]);
}

fn policy(failure: &str) -> Policy {
    Policy::from_toml(&format!(
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"10.231.0.0/16\"\n\
         source = \"dhcp\"\non_lease_failure = \"{failure}\"\n\
         [virtual_ip.dhcp]\ninterface = \"ivd0\"\n"
    ))
    .unwrap()
}

#[test]
fn a_pool_of_two_with_three_sessions_applies_on_lease_failure() {
    require_root!();
    let net = Net::new(3, 101, false);
    let mut d = net.driver("ipvirt-t3-", None);
    for s in 1..=3 {
        d.lease(sid(s)).unwrap_err();
    }
    drive(&mut d, "two leases and the server out of addresses", |d| {
        (1..=3).filter(|&s| d.lease(sid(s)).is_ok()).count() == 2
            && log_has(&net.log_path(), "no address available")
    });
    let left: Vec<u32> = (1..=3).filter(|&s| d.lease(sid(s)).is_err()).collect();
    let [s] = left[..] else { panic!("{left:?}") };
    assert_eq!(
        d.lease(sid(s)),
        Err(LeaseError::Pending { session: sid(s) })
    );
    assert_eq!(d.machine().state(sid(s)), Some(DhcpState::Selecting));
    for (failure, expect) in [("no-connectivity", true), ("use-server-address", false)] {
        let policy = policy(failure);
        let engine = policy
            .compile(Host::new(["10.231.3.2".parse().unwrap()]))
            .unwrap();
        let plan = engine.process("app");
        let rw = engine.rewriter(Session::remote(sid(s)), &plan, d.lease(sid(s)).ok());
        let got = rw.bind("0.0.0.0:80".parse().unwrap());
        if expect {
            assert_eq!(got, Err(Refusal::NoConnectivity));
        } else {
            assert_eq!(got, Ok("0.0.0.0:80".parse().unwrap()));
        }
        let other = (1..=3).find(|&o| o != s).unwrap();
        let rw = engine.rewriter(Session::remote(sid(other)), &plan, d.lease(sid(other)).ok());
        assert_eq!(
            rw.bind("0.0.0.0:80".parse().unwrap()).unwrap().ip(),
            d.lease(sid(other)).unwrap().addr()
        );
    }
    // One session logs off: the waiting one gets its address.
    let other = (1..=3).find(|&o| o != s).unwrap();
    let freed = d.release(sid(other)).unwrap().addr();
    drive(&mut d, "the waiting session's lease", |d| {
        d.lease(sid(s)).is_ok()
    });
    assert_eq!(d.lease(sid(s)).unwrap().addr(), freed);
}

#[test]
fn a_dead_server_makes_renewals_fail_and_the_session_follows_on_lease_failure() {
    require_root!();
    let mut net = Net::new(4, 150, false);
    let mut d = net.driver("ipvirt-t4-", None);
    let offset = jumping_clock(&mut d);
    d.lease(sid(5)).unwrap_err();
    drive(&mut d, "a lease", |d| d.lease(sid(5)).is_ok());
    let addr = d.lease(sid(5)).unwrap().addr();
    net.kill_server();
    // Past T1: renewing, still holding the address.
    offset.store(61, Ordering::SeqCst);
    drive(&mut d, "renewing", |d| {
        d.machine().state(sid(5)) == Some(DhcpState::Renewing)
    });
    assert_eq!(d.lease(sid(5)).unwrap().addr(), addr);
    // Past T2: rebinding, still holding it.
    offset.store(106, Ordering::SeqCst);
    drive(&mut d, "rebinding", |d| {
        d.machine().state(sid(5)) == Some(DhcpState::Rebinding)
    });
    assert_eq!(d.lease(sid(5)).unwrap().addr(), addr);
    // Past expiry: lost.
    offset.store(121, Ordering::SeqCst);
    let mut lost = false;
    drive(&mut d, "the loss", |d| {
        lost |= d.step(Duration::from_millis(100)).iter().any(|e| {
            *e == DhcpEvent::Lost {
                session: sid(5),
                addr,
            }
        });
        lost
    });
    assert_eq!(
        d.lease(sid(5)),
        Err(LeaseError::Lost {
            session: sid(5),
            addr
        })
    );
    let policy = policy("no-connectivity");
    let engine = policy
        .compile(Host::new(["10.231.4.2".parse().unwrap()]))
        .unwrap();
    let plan = engine.process("app");
    let rw = engine.rewriter(Session::remote(sid(5)), &plan, d.lease(sid(5)).ok());
    assert_eq!(
        rw.bind("0.0.0.0:80".parse().unwrap()),
        Err(Refusal::NoConnectivity)
    );
    // The address is off the adapter.
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", &net.client_if])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&format!("{addr}/32")));
}

/// How many DHCPACKs of `addr` dnsmasq has logged.
fn acks(net: &Net, addr: &str) -> usize {
    std::fs::read_to_string(net.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DHCPACK(") && l.contains(&format!(" {addr} ")))
        .count()
}

#[test]
fn the_launcher_leases_renews_while_the_command_runs_and_releases_at_the_end() {
    require_root!();
    require!("sh");
    let Some(launcher) = common::examples::launcher() else {
        eprintln!("skipped: the session launcher could not be built");
        return;
    };
    let net = Net::new(5, 150, false);
    let policy = net.dir.join("policy.toml");
    // No interface named: the adapter network selects it (its route).
    std::fs::write(
        &policy,
        "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"10.231.5.0/24\"\n\
         source = \"dhcp\"\n[virtual_ip.dhcp]\nclient_id_prefix = \"ipvirt-t5-\"\n",
    )
    .unwrap();
    let state = net.dir.join("leases.json");
    let stop = net.dir.join("stop");
    let mut children = Vec::new();
    for id in [11, 12] {
        let out = net.dir.join(format!("vip-{id}"));
        let script = format!(
            "echo \"$IPVIRT_VIP\" > {0}.tmp && mv {0}.tmp {0}; while [ ! -e {1} ]; do sleep 0.1; done",
            out.display(),
            stop.display()
        );
        let child = Command::new(&launcher)
            .args(["--id", &id.to_string(), "--policy"])
            .arg(&policy)
            .arg("--pool-state")
            .arg(&state)
            .args(["--", "sh", "-c", &script])
            // Thirty times faster: T1 of the 120 s lease comes after 2 s.
            .env("IPVIRT_TEST_DHCP_CLOCK_SCALE", "30")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(net.dir.join(format!("launcher-{id}.err"))).unwrap())
            .spawn()
            .unwrap();
        children.push(common::examples::Guard(child));
    }
    let vips: Vec<String> = [11, 12]
        .iter()
        .map(|id| {
            let f = net.dir.join(format!("vip-{id}"));
            let err = net.dir.join(format!("launcher-{id}.err"));
            wait_for_else(
                || f.exists(),
                || {
                    format!(
                        "the command to publish its VIP; launcher said: {}",
                        std::fs::read_to_string(&err).unwrap_or_default()
                    )
                },
            );
            std::fs::read_to_string(&f).unwrap().trim().to_owned()
        })
        .collect();
    assert_ne!(vips[0], vips[1]);
    for v in &vips {
        assert!(v.starts_with("10.231.5."), "{vips:?}");
    }
    // The leases are renewed while the commands run (a first ACK, then renewals).
    wait_for(
        || vips.iter().all(|v| acks(&net, v) >= 3),
        "two renewals of each lease",
    );
    std::fs::write(&stop, "").unwrap();
    for c in &mut children {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = c.0.try_wait().unwrap() {
                assert!(status.success(), "{status}");
                break;
            }
            assert!(Instant::now() < end, "the launcher did not end");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    wait_for(|| net.server_leases().is_empty(), "both leases released");
    for id in [11, 12] {
        let err = std::fs::read_to_string(net.dir.join(format!("launcher-{id}.err"))).unwrap();
        eprintln!("--- launcher {id}:\n{err}");
        assert!(err.contains("leased from DHCP"), "{err}");
        assert!(err.contains("renewed from 10.231.5.1"), "{err}");
        assert!(err.contains("released"), "{err}");
    }
    let out = Command::new(&launcher)
        .args(["--policy"])
        .arg(&policy)
        .arg("--pool-state")
        .arg(&state)
        .arg("--status")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn the_launcher_runs_the_command_without_a_vip_when_the_server_has_none_left() {
    require_root!();
    require!("sh");
    let Some(launcher) = common::examples::launcher() else {
        eprintln!("skipped: the session launcher could not be built");
        return;
    };
    // A pool of one, held by the test's own client.
    let net = Net::new(6, 100, false);
    let mut d = net.driver("ipvirt-t6-", None);
    d.lease(sid(1)).unwrap_err();
    drive(&mut d, "the only lease", |d| d.lease(sid(1)).is_ok());
    let policy = net.dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"10.231.6.0/24\"\n\
             source = \"dhcp\"\non_lease_failure = \"no-connectivity\"\n\
             [virtual_ip.dhcp]\ninterface = \"{}\"\nclient_id_prefix = \"ipvirt-t6-\"\n",
            net.client_if
        ),
    )
    .unwrap();
    let out = Command::new(&launcher)
        .args(["--id", "2", "--dhcp-wait", "2", "--policy"])
        .arg(&policy)
        .arg("--pool-state")
        .arg(net.dir.join("leases.json"))
        .args(["--", "sh", "-c", "echo \"VIP=[$IPVIRT_VIP]\""])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "VIP=[]\n");
    assert!(
        err.contains("session 2: no DHCP lease within 2 s; virtual_ip.on_lease_failure = no-connectivity applies"),
        "{err}"
    );
    d.release(sid(1));
}

#[test]
fn a_missing_interface_is_a_typed_error() {
    // No root needed: the interface is looked up before any socket is made.
    let err = DhcpDriver::open(
        "ipvirt-nope0",
        DhcpConfig::new(b"x-".to_vec(), [0; 6]),
        None,
        false,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ipvirt::dhcp::DriverError::Interface { interface, .. } if interface == "ipvirt-nope0"),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("DHCP interface \"ipvirt-nope0\": no such interface"),
        "{err}"
    );
    for bad in ["", "../lo", "a/b"] {
        assert!(
            DhcpDriver::open(bad, DhcpConfig::new(b"x-".to_vec(), [0; 6]), None, false).is_err()
        );
    }
    let err = ipvirt::dhcp::interface_for("203.0.113.0/24".parse().unwrap()).unwrap_err();
    assert!(
        err.to_string()
            .contains("no interface has a directly connected route"),
        "{err}"
    );
}
