//! `ipvirt run` with `virtual_ip.source = "dhcp"` against a real `dnsmasq` in a network
//! namespace of the test's own (`ipvirt_testkit::dhcp::DhcpNet`): leases, renewals, releases, and
//! a session that gets no address. Needs root, `ip` and `dnsmasq`; skips with a printed reason
//! elsewhere.
#![cfg(target_os = "linux")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipvirt::SessionId;
use ipvirt::dhcp::DhcpConfig;
use ipvirt_host::dhcp_driver::DhcpDriver;
use ipvirt_testkit::dhcp::{DEADLINE, DhcpNet as Net, wait_for, wait_for_else};
use ipvirt_testkit::{require, require_root};

fn sid(n: u32) -> SessionId {
    SessionId::new(n)
}

fn acks(net: &Net, addr: &str) -> usize {
    std::fs::read_to_string(net.log_path())
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("DHCPACK(") && l.contains(&format!(" {addr} ")))
        .count()
}

/// Steps the driver until `cond` holds (deadline: [`DEADLINE`]).
fn drive(d: &mut DhcpDriver, what: &str, mut cond: impl FnMut(&mut DhcpDriver) -> bool) {
    let end = Instant::now() + DEADLINE;
    while !cond(d) {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        d.step(Duration::from_millis(100));
    }
}

#[test]
fn the_launcher_leases_renews_while_the_command_runs_and_releases_at_the_end() {
    require_root!();
    require!("sh");
    let launcher = env!("CARGO_BIN_EXE_ipvirt");
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
        let child = Command::new(launcher)
            .args(["run", "--id", &id.to_string(), "--policy"])
            .arg(&policy)
            .arg("--lease-book")
            .arg(&state)
            .args(["--", "sh", "-c", &script])
            // Thirty times faster: T1 of the 120 s lease comes after 2 s.
            .env("IPVIRT_TEST_DHCP_CLOCK_SCALE", "30")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(net.dir.join(format!("launcher-{id}.err"))).unwrap())
            .spawn()
            .unwrap();
        children.push(ipvirt_testkit::Guard(child));
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
    let out = Command::new(launcher)
        .args(["status", "--policy"])
        .arg(&policy)
        .arg("--lease-book")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

#[test]
fn the_launcher_runs_the_command_without_a_vip_when_the_server_has_none_left() {
    require_root!();
    require!("sh");
    let launcher = env!("CARGO_BIN_EXE_ipvirt");
    // A pool of one, held by the test's own client.
    let net = Net::new(6, 100, false);
    let mut d = DhcpDriver::open(
        &net.client_if,
        DhcpConfig::new(b"ipvirt-t6-".to_vec(), [0; 6]),
        None,
        true,
    )
    .unwrap();
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
    let out = Command::new(launcher)
        .args(["run", "--id", "2", "--dhcp-wait", "2", "--policy"])
        .arg(&policy)
        .arg("--lease-book")
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
