//! `ipvirt run`'s DHCP source (`virtual_ip.source = "dhcp"`): the session's VIP is leased from
//! a DHCP server through `ipvirt_host::dhcp_driver::DhcpDriver`, claimed in the host's lease book
//! (an address another live session holds is declined, never used), renewed while the command
//! runs, and released when it ends.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipvirt::dhcp::{DhcpConfig, DhcpEvent};
use ipvirt::{Policy, SessionId};
use ipvirt_host::StateFile;
use ipvirt_host::dhcp_driver::{self as dhcp, DhcpDriver};
use ipvirt_host::lease_book::{Holder, LeaseBook, LeaseBookError};

use crate::say;

/// A running DHCP client for one session.
pub(crate) struct Client {
    driver: DhcpDriver,
    session: SessionId,
    book: LeaseBook,
}

/// A client renewing its lease on a thread of its own until [`Keeper::stop`].
pub(crate) struct Keeper {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Keeper {
    /// Stops renewing and releases the lease (RELEASE, address off the interface, claim ended).
    pub(crate) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if self.thread.join().is_err() {
            say("the DHCP thread panicked; the lease ends when it expires");
        }
    }
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

/// The clock: the wall clock, or (for tests of renewal) one that runs
/// `IPVIRT_TEST_DHCP_CLOCK_SCALE` times faster than the wall clock from an origin:
/// `IPVIRT_TEST_DHCP_CLOCK_ORIGIN` (seconds since the UNIX epoch; several processes given the same
/// one share one fast timeline, as a restarted service must), or now.
pub(crate) fn clock() -> Result<Option<dhcp::Clock>, String> {
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
    let wall = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
    };
    let origin = match std::env::var_os("IPVIRT_TEST_DHCP_CLOCK_ORIGIN") {
        Some(o) => {
            Duration::from_secs(o.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| {
                format!("IPVIRT_TEST_DHCP_CLOCK_ORIGIN = {o:?} is not a number of seconds")
            })?)
        }
        None => wall(),
    };
    Ok(Some(Arc::new(move || {
        origin + wall().saturating_sub(origin) * scale
    })))
}

/// The policy's DHCP driver: on `virtual_ip.dhcp.interface` (or the interface `VIPAdapter`
/// selects), with the policy's client identifier prefix, refusing offers outside `VIPAdapter`'s
/// network, its timers in `state`, on the test clock when one is set. `ipvirt run` and the
/// service both open theirs here.
pub(crate) fn open_driver(policy: &Policy, state: &Path) -> Result<DhcpDriver, String> {
    let interface = interface(policy)?;
    let prefix = policy
        .virtual_ip
        .dhcp
        .client_id_prefix
        .clone()
        .unwrap_or_else(dhcp::default_client_id_prefix);
    let mut config = DhcpConfig::new(prefix.into_bytes(), [0; 6]);
    config.adapter = policy.virtual_ip.adapter;
    let mut driver = DhcpDriver::open(
        &interface,
        config,
        Some(StateFile::new(state)),
        policy.virtual_ip.dhcp.configure_addresses,
    )
    .map_err(|e| e.to_string())?;
    if let Some(c) = clock()? {
        driver.set_clock(c);
    }
    Ok(driver)
}

impl Client {
    /// Opens the client on the policy's interface, with its own state in `state`, claiming its
    /// addresses in the lease book `book`.
    pub(crate) fn open(
        policy: &Policy,
        state: &Path,
        book: &LeaseBook,
        session: SessionId,
    ) -> Result<Client, String> {
        let driver = open_driver(policy, state)?;
        Ok(Client {
            driver,
            session,
            book: LeaseBook::new(book.path()),
        })
    }

    /// Asks for the session's address and waits up to `wait` for it; the address is claimed in
    /// the lease book for `holders`. An address another live session holds is declined.
    pub(crate) fn lease(
        &mut self,
        wait: Duration,
        holders: &[Holder],
    ) -> Option<std::net::Ipv4Addr> {
        let end = Instant::now() + wait;
        loop {
            if let Ok(v) = self.driver.lease(self.session) {
                match self
                    .book
                    .claim(None, self.session, v.addr(), "dhcp", holders)
                {
                    Ok(notes) => {
                        notes.iter().for_each(|n| say(n));
                        self.notes();
                        return Some(v.addr());
                    }
                    Err(e @ LeaseBookError::Taken { .. }) => {
                        say(&format!("dhcp: declining the offer: {e}"));
                        self.driver.decline(self.session);
                    }
                    Err(e) => {
                        say(&format!("dhcp: {e}; the lease is not used"));
                        self.release();
                        return None;
                    }
                }
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

    /// Keeps the lease on a thread of its own while the command runs.
    pub(crate) fn keep_in_background(self) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || self.keep_until(&flag));
        Keeper { stop, thread }
    }

    /// Keeps the lease (renewing, rebinding) until `stop` is set, then releases it.
    fn keep_until(mut self, stop: &AtomicBool) {
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

    /// Releases the session's lease (RELEASE, address off the interface, its state and the
    /// lease book updated).
    pub(crate) fn release(&mut self) {
        if let Some(v) = self.driver.release(self.session) {
            say(&format!(
                "session {}: DHCP lease of {v} released",
                self.session
            ));
        }
        if let Err(e) = self.book.unclaim(self.session) {
            say(&format!("dhcp: {e}"));
        }
        self.notes();
    }
}
