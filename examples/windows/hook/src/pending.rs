//! Wildcard binds held back until the socket's use is known.
//!
//! libuv (Node) and Go bind a client socket to `0.0.0.0:0` (or `[::]:0`) themselves before
//! `ConnectEx`, which needs a bound socket. Bound that way, the system picks the source of the
//! connection (`127.0.0.1` for any `127/8` destination), and the layer could not choose the
//! session's, as it does for a plain `connect` of an unbound socket (SPEC §5). So the `bind` hook
//! does not pass a wildcard bind with port 0 of a stream socket on: it records it here and
//! answers success. What the program does next decides:
//!
//! - `connect`, `WSAConnect`, `ConnectEx`: the connect's own rules choose the source, as for an
//!   unbound socket; where they choose none, the program's wildcard is bound first, as it asked;
//! - `listen` and `getsockname`: the program's bind is made then, with the bind rules
//!   (`0.0.0.0` → the VIP): a server, or a program that wants the port the system chose
//!   (`bind(0)` then `getsockname` is how programs find a free port). A client that asks for its
//!   name before it connects thus leaves from the address the system picks, as before;
//! - a second `bind`: `WSAEINVAL`, as on a bound socket;
//! - `closesocket`: the record is dropped.
//!
//! A datagram socket is never held back: it may receive before it sends.
//!
//! The records are a short list under a lock, reached only while some socket of the process is
//! held back (a count read without the lock says when none is): a program that never binds a
//! wildcard client pays one atomic load per hooked call.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::addrs::STORAGE;
use crate::sys::Socket;

/// A held-back bind: the program's address (the bytes its family needs) and their number.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Held {
    pub(crate) addr: [u8; STORAGE],
    pub(crate) len: usize,
}

/// How many sockets are held back (read without the lock).
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// The held-back sockets.
static HELD: Mutex<Vec<(Socket, Held)>> = Mutex::new(Vec::new());

fn with<R>(f: impl FnOnce(&mut Vec<(Socket, Held)>) -> R) -> R {
    let mut list = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let r = f(&mut list);
    COUNT.store(list.len(), Ordering::Release);
    r
}

/// Records `s` as bound to `held` (replacing an earlier record of the same socket).
pub(crate) fn hold(s: Socket, held: Held) {
    with(|list| {
        list.retain(|(x, _)| *x != s);
        list.push((s, held));
    });
}

/// The held-back bind of `s`, if any, left in place.
#[inline]
pub(crate) fn peek(s: Socket) -> Option<Held> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    with(|list| list.iter().find(|(x, _)| *x == s).map(|(_, h)| *h))
}

/// The held-back bind of `s`, if any, removed: the caller makes it now.
#[inline]
pub(crate) fn take(s: Socket) -> Option<Held> {
    if COUNT.load(Ordering::Acquire) == 0 {
        return None;
    }
    with(|list| {
        let i = list.iter().position(|(x, _)| *x == s)?;
        Some(list.swap_remove(i).1)
    })
}
