//! The launcher's DHCP source (`virtual_ip.source = "dhcp"`, feature `dhcp`): the session's VIP is
//! leased from a DHCP server through [`ipvirt::dhcp::DhcpDriver`], renewed while the command runs,
//! and released when it ends.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvirt::dhcp::{self, DhcpConfig, DhcpDriver, DhcpEvent, DhcpSnapshot};
use ipvirt::{Policy, SessionId, StateFile};

use crate::say;

/// A running DHCP client for one session.
pub(crate) struct Client {
    driver: DhcpDriver,
    session: SessionId,
}

/// The interface the policy names, or the one `virtual_ip.adapter` selects.
fn interface(policy: &Policy) -> Result<String, String> {
    match (&policy.virtual_ip.dhcp.interface, policy.virtual_ip.adapter) {
        (Some(i), _) => Ok(i.clone()),
        (None, Some(a)) => dhcp::interface_for(a).map_err(|e| e.to_string()),
        (None, None) => {
            Err("virtual_ip.source is \"dhcp\" but neither virtual_ip.dhcp.interface nor virtual_ip.adapter is set".into())
        }
    }
}

/// The clock: the wall clock, or (for tests of renewal) one that runs `IPVIRT_TEST_DHCP_CLOCK_SCALE`
/// times faster from now on.
fn clock() -> Result<Option<dhcp::Clock>, String> {
    let Some(v) = std::env::var_os("IPVIRT_TEST_DHCP_CLOCK_SCALE") else {
        return Ok(None);
    };
    let scale: u32 = v
        .to_str()
        .and_then(|s| s.parse().ok())
        .filter(|&s| s >= 1)
        .ok_or_else(|| {
            format!("IPVIRT_TEST_DHCP_CLOCK_SCALE = {v:?} is not a whole number >= 1")
        })?;
    let start = Instant::now();
    let epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(Some(Arc::new(move || epoch + start.elapsed() * scale)))
}

impl Client {
    /// Opens the client on the policy's interface, with the lease file `state`.
    pub(crate) fn open(
        policy: &Policy,
        state: &Path,
        session: SessionId,
    ) -> Result<Client, String> {
        let interface = interface(policy)?;
        let prefix = policy
            .virtual_ip
            .dhcp
            .client_id_prefix
            .clone()
            .unwrap_or_else(dhcp::default_client_id_prefix);
        let mut driver = DhcpDriver::open(
            &interface,
            DhcpConfig::new(prefix.into_bytes(), [0; 6]),
            Some(StateFile::new(state)),
            policy.virtual_ip.dhcp.configure_addresses,
        )
        .map_err(|e| e.to_string())?;
        if let Some(c) = clock()? {
            driver.set_clock(c);
        }
        Ok(Client { driver, session })
    }

    /// Asks for the session's address and waits up to `wait` for it.
    pub(crate) fn lease(&mut self, wait: Duration) -> Option<std::net::Ipv4Addr> {
        let end = Instant::now() + wait;
        loop {
            if let Ok(v) = self.driver.lease(self.session) {
                self.notes();
                return Some(v.addr());
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.notes();
                return None;
            }
            self.driver.step(left.min(Duration::from_millis(250)));
        }
    }

    fn notes(&mut self) {
        for n in self.driver.take_notes() {
            say(&format!("dhcp: {n}"));
        }
    }

    /// Keeps the lease (renewing, rebinding) until `stop` is set, then releases it. Runs on its
    /// own thread while the command runs.
    pub(crate) fn keep_until(mut self, stop: &AtomicBool) {
        let id = self.session;
        while !stop.load(Ordering::SeqCst) {
            for e in self.driver.step(Duration::from_millis(200)) {
                match e {
                    DhcpEvent::Renewed {
                        previous, lease, ..
                    } if previous == lease.addr => say(&format!(
                        "session {id}: DHCP lease of {} renewed from {}",
                        lease.addr, lease.server
                    )),
                    DhcpEvent::Renewed {
                        previous, lease, ..
                    } => say(&format!(
                        "session {id}: the DHCP server moved the lease from {previous} to {}; the command keeps {previous}, now off the interface",
                        lease.addr
                    )),
                    DhcpEvent::Lost { addr, .. } => say(&format!(
                        "session {id}: DHCP lease of {addr} lost (expired or refused); it is off the interface, so the command's binds to it fail"
                    )),
                    DhcpEvent::Bound { lease, .. } => say(&format!(
                        "session {id}: DHCP lease of {} again (the command keeps the address it started with)",
                        lease.addr
                    )),
                    _ => {}
                }
            }
            self.notes();
        }
        self.release();
    }

    /// Releases the session's lease (RELEASE, address off the interface, lease file updated).
    pub(crate) fn release(mut self) {
        if let Some(v) = self.driver.release(self.session) {
            say(&format!(
                "session {}: DHCP lease of {v} released",
                self.session
            ));
        }
        self.notes();
    }
}

/// The leases in the DHCP lease file, as `--status` prints them.
pub(crate) fn status(state: &Path) -> Result<Vec<String>, String> {
    let snap: Option<DhcpSnapshot> = StateFile::new(state).read().map_err(|e| e.to_string())?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Ok(snap
        .map(|s| {
            s.leases
                .iter()
                .map(|(id, l)| {
                    format!(
                        "session {id} {} server={} expires_in={}s",
                        l.addr,
                        l.server,
                        l.expiry.saturating_sub(now).as_secs()
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}
