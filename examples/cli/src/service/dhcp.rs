//! The service's one DHCP client for every session (SPEC §11): a thread that owns the
//! `ipvirt_host::dhcp_driver::DhcpDriver` (one socket on port 68, one client identifier per
//! session), renews every lease at T1, and claims each address in the host's lease book, so an
//! offer of an address another live session holds is declined and never used.
//!
//! The service asks it for a session's lease ([`Dhcp::lease`], waiting up to the login's
//! deadline) and to release it when the session ends ([`Dhcp::release`]). Its leases' timers are
//! in the driver's own state file beside the lease book, so a restarted service takes every
//! unexpired lease back and renews it rather than starting over.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipvirt::dhcp::DhcpEvent;
use ipvirt::{Policy, SessionId};
use ipvirt_host::dhcp_driver::DhcpDriver;
use ipvirt_host::lease_book::{Holder, LeaseBook, LeaseBookError};

use super::log::Log;

/// What the service asks of the thread.
enum Command {
    Lease {
        session: SessionId,
        holders: Vec<Holder>,
        deadline: Instant,
        reply: Sender<Option<(Ipv4Addr, u64)>>,
    },
    Release {
        session: SessionId,
    },
    Expiry {
        session: SessionId,
        reply: Sender<Option<u64>>,
    },
    Stop,
}

/// A handle on the DHCP thread.
#[derive(Debug)]
pub(crate) struct Dhcp {
    tx: Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Dhcp {
    /// Starts the client on the policy's interface (`virtual_ip.dhcp.interface`, or the one
    /// `virtual_ip.adapter` selects), with its timers in `state` and its claims in `book`.
    pub(crate) fn start(
        policy: &Policy,
        state: &Path,
        book: &Path,
        log: Arc<Log>,
    ) -> Result<Dhcp, String> {
        let driver = crate::run_dhcp::open_driver(policy, state)?;
        let (tx, rx) = channel();
        let book = LeaseBook::new(book);
        let thread = std::thread::Builder::new()
            .name("ipvirt-dhcp".into())
            .spawn(move || run(driver, &book, &rx, &log))
            .map_err(|e| format!("starting the DHCP thread: {e}"))?;
        Ok(Dhcp {
            tx,
            thread: Some(thread),
        })
    }

    /// The session's address and its expiry (seconds since the epoch), waiting until `deadline`;
    /// `None` when there is none by then.
    pub(crate) fn lease(
        &self,
        session: SessionId,
        holders: Vec<Holder>,
        deadline: Instant,
    ) -> Option<(Ipv4Addr, u64)> {
        let (reply, rx) = channel();
        self.tx
            .send(Command::Lease {
                session,
                holders,
                deadline,
                reply,
            })
            .ok()?;
        rx.recv().ok().flatten()
    }

    /// Releases the session's lease (RELEASE, address off the interface, claim ended).
    pub(crate) fn release(&self, session: SessionId) {
        let _ = self.tx.send(Command::Release { session });
    }

    /// When the session's lease expires (seconds since the epoch).
    pub(crate) fn expiry(&self, session: SessionId) -> Option<u64> {
        let (reply, rx) = channel();
        self.tx.send(Command::Expiry { session, reply }).ok()?;
        rx.recv_timeout(Duration::from_secs(2)).ok().flatten()
    }
}

impl Drop for Dhcp {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A lease a login waits for.
struct Pending {
    session: SessionId,
    holders: Vec<Holder>,
    deadline: Instant,
    reply: Sender<Option<(Ipv4Addr, u64)>>,
}

fn run(mut driver: DhcpDriver, book: &LeaseBook, rx: &Receiver<Command>, log: &Log) {
    let mut pending: Vec<Pending> = Vec::new();
    loop {
        // Wait for a command only briefly while the driver has work (timers, answers).
        let wait = if pending.is_empty() {
            Duration::from_millis(250)
        } else {
            Duration::from_millis(20)
        };
        match rx.recv_timeout(wait) {
            Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            Ok(Command::Lease {
                session,
                holders,
                deadline,
                reply,
            }) => {
                // Starts the exchange (or takes a restored lease back).
                let _ = driver.lease(session);
                pending.push(Pending {
                    session,
                    holders,
                    deadline,
                    reply,
                });
            }
            Ok(Command::Release { session }) => {
                pending.retain(|p| p.session != session);
                if let Some(v) = driver.release(session) {
                    log.info(&format!("session {session}: DHCP lease of {v} released"));
                }
                if let Err(e) = book.unclaim(session) {
                    log.warn(&format!("session {session}: {e}"));
                }
            }
            Ok(Command::Expiry { session, reply }) => {
                let _ = reply.send(
                    driver
                        .machine()
                        .lease_of(session)
                        .map(|l| l.expiry.as_secs()),
                );
            }
            Err(RecvTimeoutError::Timeout) => {}
        }
        for e in driver.step(Duration::from_millis(1)) {
            match e {
                DhcpEvent::Renewed {
                    session,
                    previous,
                    lease,
                } if previous == lease.addr => log.info(&format!(
                    "session {session}: DHCP lease of {} renewed from {}",
                    lease.addr, lease.server
                )),
                DhcpEvent::Renewed {
                    session,
                    previous,
                    lease,
                } => log.warn(&format!(
                    "session {session}: the DHCP server moved the lease from {previous} to {}; the session keeps {previous}",
                    lease.addr
                )),
                DhcpEvent::Lost { session, addr } => log.error(&format!(
                    "session {session}: DHCP lease of {addr} lost (expired or refused)"
                )),
                _ => {}
            }
        }
        for n in driver.take_notes() {
            log.warn(&format!("dhcp: {n}"));
        }
        let now = Instant::now();
        let mut still = Vec::new();
        for p in pending.drain(..) {
            match driver.lease(p.session) {
                Ok(v) => match book.claim(None, p.session, v.addr(), "dhcp", &p.holders) {
                    Ok(notes) => {
                        notes.iter().for_each(|n| log.info(n));
                        let expiry = driver
                            .machine()
                            .lease_of(p.session)
                            .map_or(0, |l| l.expiry.as_secs());
                        let _ = p.reply.send(Some((v.addr(), expiry)));
                    }
                    Err(e @ LeaseBookError::Taken { .. }) => {
                        log.warn(&format!("dhcp: declining the offer: {e}"));
                        driver.decline(p.session);
                        still.push(p);
                    }
                    Err(e) => {
                        log.error(&format!(
                            "session {}: {e}; the lease is not used",
                            p.session
                        ));
                        let _ = driver.release(p.session);
                        let _ = p.reply.send(None);
                    }
                },
                Err(_) if now >= p.deadline => {
                    // The login proceeds without a VIP for its whole life: stop asking.
                    let _ = driver.release(p.session);
                    let _ = p.reply.send(None);
                }
                Err(_) => still.push(p),
            }
        }
        pending = still;
    }
}
