//! The socket-table readers (ss, netstat, TCPView CSV) on arbitrary text: never panic; the advice
//! from what they read proposes a policy that validates, compiles and round-trips through TOML.
#![no_main]

use ipvirt::advisor::{AdviceOptions, Format, advise, parse, parse_as};
use ipvirt::{Host, Policy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    for format in Format::ALL {
        let _ = parse_as(text, format);
    }
    let Ok(snapshot) = parse(text) else {
        return;
    };
    let options = AdviceOptions {
        server_addrs: vec!["192.0.2.10".parse().unwrap()],
        ..AdviceOptions::default()
    };
    for advice in [
        advise(&snapshot, None, &AdviceOptions::default()),
        advise(&snapshot, Some(&snapshot), &options),
    ] {
        let _ = advice.to_string();
        let _ = advice.policy.validate();
        let toml = advice.policy_toml();
        assert_eq!(
            Policy::from_toml(&toml).as_ref(),
            Ok(&advice.policy),
            "{toml}"
        );
        let _ = advice
            .policy
            .compile(Host::new(options.server_addrs.clone()));
    }
});
