//! The advisor on fixtures captured from real programs on Linux (tests/fixtures/advisor/capture.sh)
//! and written to Windows' documented formats.

use ipvirt::advisor::{AdviceOptions, FindingKind as K, Format, Protocol, advise, parse};
use ipvirt::{AdvisorError, Policy, Severity};

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/advisor/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// (process, kind) pairs of the findings, sorted.
fn pairs(advice: &ipvirt::advisor::Advice) -> Vec<(String, K)> {
    let mut v: Vec<(String, K)> = advice
        .findings
        .iter()
        .map(|f| (f.process.clone(), f.kind))
        .collect();
    v.sort_by(|a, b| {
        (a.0.as_str(), format!("{:?}", a.1)).cmp(&(b.0.as_str(), format!("{:?}", b.1)))
    });
    v.dedup();
    v
}

fn assert_valid(advice: &ipvirt::advisor::Advice) {
    let toml = advice.policy_toml();
    let policy = Policy::from_toml(&toml).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert_eq!(policy, advice.policy);
    let errors: Vec<_> = policy
        .validate()
        .into_iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{toml}");
}

#[test]
fn ss_captured_two_snapshots() {
    let first = parse(&fixture("ss-first.txt")).unwrap();
    let second = parse(&fixture("ss-second-noheader.txt")).unwrap();
    assert_eq!((first.format, second.format), (Format::Ss, Format::Ss));
    assert_eq!((first.records.len(), second.records.len()), (6, 6));
    assert!(
        first.skipped.is_empty() && second.skipped.is_empty(),
        "{:?}",
        first.skipped
    );
    let udp = first
        .records
        .iter()
        .find(|r| r.protocol == Protocol::Udp)
        .unwrap();
    assert_eq!(
        (udp.local, udp.process.as_deref(), udp.pid),
        ("0.0.0.0:18084".parse().unwrap(), Some("socat"), Some(15233))
    );

    let advice = advise(&first, Some(&second), &AdviceOptions::default());
    assert_eq!(
        pairs(&advice),
        [
            ("python3".into(), K::EphemeralPort),
            ("python3".into(), K::HardCodedPort),
            ("python3".into(), K::Ipv6LoopbackOnly),
            ("python3".into(), K::NeedsVirtualIp),
            ("python3".into(), K::NeedsVirtualLoopback),
            ("socat".into(), K::HardCodedPort),
            ("socat".into(), K::NeedsVirtualIp),
        ]
    );
    let hard: Vec<&str> = advice
        .findings
        .iter()
        .filter(|f| f.kind == K::HardCodedPort)
        .map(|f| f.message.as_str())
        .collect();
    assert!(
        hard.iter().any(|m| m.contains("127.0.0.1:18081")),
        "{hard:?}"
    );
    assert!(hard.iter().any(|m| m.contains("0.0.0.0:18082")), "{hard:?}");
    assert!(
        hard.iter().any(|m| m.contains("udp 0.0.0.0:18084")),
        "{hard:?}"
    );
    let eph = advice
        .findings
        .iter()
        .find(|f| f.kind == K::EphemeralPort)
        .unwrap();
    assert!(
        eph.message.contains("127.0.0.1:42317") && eph.evidence[0].starts_with("first:3:"),
        "{eph}"
    );
    // Evidence names both snapshots' lines.
    let f = advice
        .findings
        .iter()
        .find(|f| f.kind == K::HardCodedPort && f.message.contains("18082"))
        .unwrap();
    assert_eq!(
        f.evidence,
        [
            "first:4: tcp 0.0.0.0:18082 LISTEN pid 15231",
            "second:2: tcp 0.0.0.0:18082 LISTEN pid 15399"
        ]
    );
    // The unnamed listener is noted, not proposed.
    assert!(
        advice
            .notes
            .iter()
            .any(|n| n.contains("0.0.0.0:2024") && n.contains("no process name"))
    );
    assert_eq!(advice.policy.virtual_loopback.programs, ["python3"]);
    assert!(advice.policy.virtual_loopback.enabled);
    assert_eq!(advice.policy.virtual_ip.programs, ["python3", "socat"]);
    assert!(
        !advice.policy.virtual_ip.enabled,
        "no adapter given: proposed disabled"
    );
    assert!(advice.notes.iter().any(|n| n.contains("--adapter")));
    assert_valid(&advice);
}

#[test]
fn ss_with_adapter_and_pool_enables_virtual_ip() {
    let first = parse(&fixture("ss-first.txt")).unwrap();
    let options = AdviceOptions {
        adapter: Some("192.0.2.0/24".parse().unwrap()),
        pool: vec!["192.0.2.100-192.0.2.199".parse().unwrap()],
        only: vec!["SOCAT".into()],
        ..AdviceOptions::default()
    };
    let advice = advise(&first, None, &options);
    assert_eq!(pairs(&advice), [("socat".into(), K::NeedsVirtualIp)]);
    assert!(advice.policy.virtual_ip.enabled);
    assert!(!advice.policy.virtual_loopback.enabled);
    assert!(advice.notes.iter().any(|n| n.contains("second snapshot")));
    assert_valid(&advice);
}

#[test]
fn netstat_anob_owner_lines_and_server_addresses() {
    let snap = parse(&fixture("netstat-anob.txt")).unwrap();
    assert_eq!(snap.format, Format::Netstat);
    assert_eq!(snap.records.len(), 9);
    assert_eq!(snap.skipped.len(), 1);
    assert_eq!(snap.skipped[0].line, 25);
    assert!(snap.skipped[0].text.contains("garbage"));
    let rdp = snap
        .records
        .iter()
        .find(|r| r.local.port() == 3389)
        .unwrap();
    assert_eq!(
        (rdp.process.as_deref(), rdp.pid),
        (Some("svchost.exe"), Some(1160))
    );
    let smb = snap.records.iter().find(|r| r.local.port() == 445).unwrap();
    assert_eq!(smb.process, None, "Can not obtain ownership information");

    let options = AdviceOptions {
        server_addrs: vec!["192.0.2.10".parse().unwrap()],
        ..AdviceOptions::default()
    };
    let advice = advise(&snap, None, &options);
    assert_eq!(
        pairs(&advice),
        [
            ("crm.exe".into(), K::NeedsVirtualIp),
            ("crm.exe".into(), K::NeedsVirtualLoopback),
            ("cti.exe".into(), K::Ipv6LoopbackOnly),
            ("cti.exe".into(), K::NeedsVirtualLoopback),
            // 0.0.0.0:445 "Can not obtain ownership information": known only by its PID.
            ("pid 4".into(), K::NeedsVirtualIp),
            ("svchost.exe".into(), K::NeedsVirtualIp),
        ]
    );
    // 3389 on the server's own address counts as needing virtual IP; without the address it does not.
    let svc = advice
        .findings
        .iter()
        .find(|f| f.process == "svchost.exe")
        .unwrap();
    assert!(svc.message.contains("192.0.2.10:3389"), "{svc}");
    let no_server = advise(&snap, None, &AdviceOptions::default());
    let svc = no_server
        .findings
        .iter()
        .find(|f| f.process == "svchost.exe")
        .unwrap();
    assert!(!svc.message.contains("3389"), "{svc}");
    // The established connection is not evidence of anything.
    assert!(advice.findings.iter().all(|f| !f.message.contains("49811")));
    assert_valid(&advice);
}

#[test]
fn netstat_ano_pid_only() {
    let snap = parse(&fixture("netstat-ano.txt")).unwrap();
    assert_eq!(
        (snap.format, snap.records.len(), snap.skipped.len()),
        (Format::Netstat, 10, 0)
    );
    let advice = advise(&snap, None, &AdviceOptions::default());
    assert!(pairs(&advice).contains(&("pid 4412".into(), K::NeedsVirtualIp)));
    assert!(pairs(&advice).contains(&("pid 5120".into(), K::NeedsVirtualLoopback)));
    // No names: nothing goes into the policy, and the notes say how to find the names.
    assert!(
        advice.policy.virtual_ip.programs.is_empty()
            && advice.policy.virtual_loopback.programs.is_empty()
    );
    assert!(
        advice
            .notes
            .iter()
            .any(|n| n.contains("tasklist /FI \"PID eq 4412\""))
    );
    assert_valid(&advice);
}

#[test]
fn tcpview_both_column_sets() {
    let new = parse(&fixture("tcpview-new.csv")).unwrap();
    assert_eq!(
        (new.format, new.records.len(), new.skipped.len()),
        (Format::TcpView, 7, 0)
    );
    let lic = new
        .records
        .iter()
        .find(|r| r.process.as_deref() == Some("lic.exe"))
        .unwrap();
    assert_eq!(lic.local, "[::]:27000".parse().unwrap());
    let advice = advise(&new, None, &AdviceOptions::default());
    assert_eq!(
        pairs(&advice),
        [
            ("crm.exe".into(), K::NeedsVirtualIp),
            ("cti.exe".into(), K::Ipv6LoopbackOnly),
            ("cti.exe".into(), K::NeedsVirtualLoopback),
            ("lic.exe".into(), K::NeedsVirtualIp),
        ]
    );
    assert_valid(&advice);

    let old = parse(&fixture("tcpview-old.csv")).unwrap();
    assert_eq!((old.format, old.records.len()), (Format::TcpView, 3));
    let a = advise(&old, Some(&new), &AdviceOptions::default());
    // crm.exe's 0.0.0.0:9000 is in both exports, but held by the same process (pid 6032 in both):
    // it was not restarted, so no evidence yet; lic.exe's UDP 27000 is not in the new one.
    assert!(a.findings.iter().any(|f| f.process == "crm.exe"
        && f.kind == K::NoEvidenceYet
        && f.message.contains("same process (pid 6032)")));
    assert!(!a.findings.iter().any(|f| f.kind == K::HardCodedPort));
    assert!(
        a.findings
            .iter()
            .any(|f| f.process == "lic.exe" && f.kind == K::EphemeralPort)
    );
}

#[test]
fn nothing_parses_names_the_formats() {
    let err = parse("Get-NetTCPConnection output\nis not supported\n").unwrap_err();
    assert_eq!(
        err,
        AdvisorError::NothingParsed {
            lines: 2,
            tried: "ss -tulpn, netstat -ano[b], TCPView CSV".into()
        }
    );
    assert!(parse("").is_err());
}

#[test]
fn bad_lines_are_reported_and_skipped() {
    let text = "Netid State Recv-Q Send-Q Local Address:Port Peer Address:Port Process\n\
                tcp LISTEN 0 5 127.0.0.1:9000 0.0.0.0:* users:((\"crm\",pid=42,fd=3))\n\
                tcp LISTEN x 5 127.0.0.1:9001 0.0.0.0:*\n\
                tcp LISTEN 0 5 127.0.0.1:notaport 0.0.0.0:*\n\
                some noise\n";
    let snap = parse(text).unwrap();
    assert_eq!(snap.records.len(), 1);
    let lines: Vec<usize> = snap.skipped.iter().map(|s| s.line).collect();
    assert_eq!(lines, [3, 4, 5]);
    assert!(
        snap.skipped[0].reason.contains("Recv-Q"),
        "{:?}",
        snap.skipped[0]
    );
}

#[test]
fn ss_edge_addresses() {
    let text = "udp UNCONN 0 0 127.0.0.53%lo:53 0.0.0.0:* users:((\"systemd-resolve\",pid=5,fd=12))\n\
                tcp LISTEN 0 128 *:80 *:* users:((\"nginx\",pid=7,fd=6),(\"nginx\",pid=8,fd=6))\n\
                tcp LISTEN 0 128 [::ffff:127.0.0.1]:8080 [::]:* users:((\"java\",pid=9,fd=6))\n\
                LISTEN 0 128 0.0.0.0:22 0.0.0.0:* users:((\"sshd\",pid=1,fd=3))\n";
    let snap = parse(text).unwrap();
    assert_eq!(snap.records.len(), 4, "{:?}", snap.skipped);
    let advice = advise(&snap, None, &AdviceOptions::default());
    let p = pairs(&advice);
    assert!(p.contains(&("nginx".into(), K::NeedsVirtualIp)));
    assert!(
        p.contains(&("java".into(), K::NeedsVirtualLoopback)),
        "::ffff:127.0.0.1 is the localhost address"
    );
    assert!(p.contains(&("sshd".into(), K::NeedsVirtualIp)));
    assert!(
        !p.iter().any(|(n, _)| n == "systemd-resolve"),
        "127.0.0.53 is not the localhost address"
    );
}

/// `ss` prints the kernel's command name (`nc` for `/usr/bin/nc.openbsd`): the finding says the
/// name is unverified and the proposed policy marks it with a comment above the list.
#[test]
fn names_from_ss_are_marked_unverified() {
    let first = parse(
        "tcp LISTEN 0 5 0.0.0.0:7001 0.0.0.0:* users:((\"nc\",pid=40,fd=3))\n\
         tcp LISTEN 0 5 127.0.0.1:7002 0.0.0.0:* users:((\"socat\",pid=41,fd=5))\n",
    )
    .unwrap();
    let advice = advise(&first, None, &AdviceOptions::default());
    let nc = advice
        .findings
        .iter()
        .find(|f| f.process == "nc" && f.kind == K::NeedsVirtualIp)
        .unwrap();
    assert!(
        nc.message
            .contains("\"nc\" is the command name (comm) ss printed"),
        "{}",
        nc.message
    );
    assert!(
        nc.message.contains("readlink /proc/40/exe"),
        "{}",
        nc.message
    );
    let toml = advice.policy_toml();
    let lines: Vec<&str> = toml.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("programs = [\"nc\"]"))
        .unwrap_or_else(|| panic!("{toml}"));
    assert!(
        lines[at - 1].starts_with("# UNVERIFIED: \"nc\" is the command name"),
        "{toml}"
    );
    let at = lines
        .iter()
        .position(|l| l.starts_with("programs = [\"socat\"]"))
        .unwrap();
    assert!(
        lines[at - 1].starts_with("# UNVERIFIED: \"socat\""),
        "{toml}"
    );
    assert_eq!(advice.unverified.len(), 2);
    assert_valid(&advice);

    // A Windows image name (netstat -b, TCPView) is the executable's: nothing is marked.
    let tv = parse(&fixture("tcpview-new.csv")).unwrap();
    let advice = advise(&tv, None, &AdviceOptions::default());
    assert!(advice.unverified.is_empty());
    assert!(!advice.policy_toml().contains("UNVERIFIED"));
}

/// The same pid in both `ss` snapshots: the program was not restarted, so the port it holds in
/// both is no evidence of a hard-coded port; a different pid is.
#[test]
fn the_same_pid_in_both_snapshots_is_no_evidence_yet() {
    let first =
        parse("tcp LISTEN 0 5 0.0.0.0:7001 0.0.0.0:* users:((\"srv\",pid=40,fd=3))\n").unwrap();
    let same =
        parse("tcp LISTEN 0 5 0.0.0.0:7001 0.0.0.0:* users:((\"srv\",pid=40,fd=3))\n").unwrap();
    let restarted =
        parse("tcp LISTEN 0 5 0.0.0.0:7001 0.0.0.0:* users:((\"srv\",pid=97,fd=3))\n").unwrap();
    let advice = advise(&first, Some(&same), &AdviceOptions::default());
    let f = advice
        .findings
        .iter()
        .find(|f| f.kind == K::NoEvidenceYet)
        .unwrap();
    assert!(f.message.contains("same process (pid 40)"), "{}", f.message);
    assert!(!advice.findings.iter().any(|f| f.kind == K::HardCodedPort));
    let advice = advise(&first, Some(&restarted), &AdviceOptions::default());
    assert!(advice.findings.iter().any(|f| f.kind == K::HardCodedPort));
    assert!(!advice.findings.iter().any(|f| f.kind == K::NoEvidenceYet));
}
