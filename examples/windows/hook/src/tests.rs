//! Unit tests of the hooks, run on Windows or under Wine (`cargo test --target
//! x86_64-pc-windows-gnu -p ipvirt-winhook --lib`, Wine as the runner): the detours are installed
//! in the test process itself, with one state for every test (session 7, virtual loopback with
//! isolation and an excluded port, a VIP, preferred loopback), and the tests call Winsock.
//!
//! UDP is tested here rather than end to end: Wine 8.0 widens a UDP bind to `127.0.0.8` into
//! `0.0.0.0` on the host (see the crate documentation), so two sessions' UDP services cannot be
//! told apart under Wine; what the hooks decide and do is visible in the process.

use std::ffi::c_void;
use std::net::{IpAddr, SocketAddr};
use std::ptr;
use std::sync::Once;

use ipvirt::{Host, Policy, Session, SessionId, read_sockaddr, write_sockaddr};
use windows_sys::Win32::Networking::WinSock::{
    ADDRINFOA, AF_INET, AF_INET6, INVALID_SOCKET, IPPROTO_TCP, IPPROTO_UDP, SOCK_DGRAM,
    SOCK_STREAM, SOCKET_ERROR, SOL_SOCKET, WSADATA, WSAEACCES, WSAEADDRNOTAVAIL, WSAECONNREFUSED,
    WSAEINVAL, WSAStartup, closesocket, freeaddrinfo, gethostbyname, socket,
};

use crate::addrs::{LAYOUT, STORAGE, fix_reported, is_bound};
use crate::calls::ext::{ConnectExFn, connect_ex, provided_get_accept_ex_sockaddrs};
use crate::config::{STATE, State, state};
use crate::hooks;
use crate::hooks::GetAcceptExSockaddrs;
use crate::sys::{Depth, Group, Socket, install, last_error, set_last_error};

const PORT_EXCLUDED: u16 = 27001;
const SERVER: &str = "192.0.2.10";
const VIP: &str = "192.0.2.107";

/// Installs the detours in this process once, with the tests' state.
fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: data is a valid out structure.
        let mut data: WSADATA = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        assert_eq!(unsafe { WSAStartup(0x0202, &mut data) }, 0);
        let policy = Policy::from_toml(&format!(
            "[virtual_loopback]\nenabled = true\nprograms = [\"probe.exe\"]\n\
             excluded_ports = [{PORT_EXCLUDED}]\nisolate = true\n\
             [virtual_ip]\nenabled = true\nmode = \"per-session\"\nadapter = \"192.0.2.0/24\"\n\
             [prefer_loopback]\nenabled = true\nprocesses = [\"probe.exe\"]\n"
        ))
        .unwrap();
        let engine = policy
            .compile(Host::new([SERVER.parse().unwrap()]))
            .unwrap();
        let plan = engine.process(r"C:\Apps\probe.exe");
        let rw = engine.rewriter(
            Session::remote(SessionId::new(7)),
            &plan,
            Some(VIP.parse().unwrap()),
        );
        assert!(STATE.set(State { rw, debug: false }).is_ok());
        // Every hook of the table, the process-creation ones too (no session to pass on is
        // set here: they let CreateProcess through).
        assert_eq!(
            install(&hooks::table(), &[Group::Sockets, Group::Processes]),
            Vec::<String>::new()
        );
    });
}

fn udp() -> Socket {
    // SAFETY: no memory preconditions.
    let s = unsafe { socket(i32::from(AF_INET), SOCK_DGRAM, IPPROTO_UDP) };
    assert_ne!(s, INVALID_SOCKET);
    s
}

fn sin(addr: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    write_sockaddr(addr.parse().unwrap(), &mut b, LAYOUT).unwrap();
    b
}

/// The socket's address as the system has it (the real `getsockname`, not the hook).
fn real_name(s: Socket) -> SocketAddr {
    let mut b = [0u8; STORAGE];
    let mut len = STORAGE as i32;
    let f = real!(GetSockName);
    // SAFETY: b holds len bytes.
    assert_eq!(unsafe { f(s, b.as_mut_ptr(), &mut len) }, 0);
    read_sockaddr(&b[..len as usize], LAYOUT).unwrap()
}

/// The socket's address as the program sees it (through the hook).
fn seen_name(s: Socket) -> SocketAddr {
    let mut b = [0u8; STORAGE];
    let mut len = STORAGE as i32;
    // SAFETY: b holds len bytes; the call goes through the detour.
    let r = unsafe {
        windows_sys::Win32::Networking::WinSock::getsockname(s, b.as_mut_ptr().cast(), &mut len)
    };
    assert_eq!(r, 0);
    read_sockaddr(&b[..len as usize], LAYOUT).unwrap()
}

/// `addr` as a `sockaddr_in` or `sockaddr_in6`, and its length.
fn sa(addr: &str) -> ([u8; 28], i32) {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut b = [0u8; 28];
    let n = if addr.is_ipv4() { 16 } else { 28 };
    write_sockaddr(addr, &mut b[..n], LAYOUT).unwrap();
    (b, n as i32)
}

fn hooked_bind(s: Socket, addr: &str) -> Result<(), i32> {
    let (a, n) = sa(addr);
    // SAFETY: a holds n bytes; the call goes through the detour.
    let r = unsafe { windows_sys::Win32::Networking::WinSock::bind(s, a.as_ptr().cast(), n) };
    if r == 0 { Ok(()) } else { Err(last_error()) }
}

fn hooked_sendto(s: Socket, to: &str, data: &[u8]) -> Result<i32, i32> {
    let a = sin(to);
    // SAFETY: data and a are valid for their lengths; the call goes through the detour.
    let r = unsafe {
        windows_sys::Win32::Networking::WinSock::sendto(
            s,
            data.as_ptr(),
            data.len() as i32,
            0,
            a.as_ptr().cast(),
            16,
        )
    };
    if r == SOCKET_ERROR {
        Err(last_error())
    } else {
        Ok(r)
    }
}

fn close(s: Socket) {
    // SAFETY: s is ours.
    unsafe { closesocket(s) };
}

#[test]
fn a_udp_bind_of_localhost_goes_to_the_session_loopback_and_is_reported_back() {
    setup();
    let s = udp();
    hooked_bind(s, "127.0.0.1:0").unwrap();
    let real = real_name(s);
    // Wine 8.0 may widen it to 0.0.0.0 on the host; Windows keeps 127.0.0.8.
    assert!(
        real.ip() == "127.0.0.8".parse::<IpAddr>().unwrap() || real.ip().is_unspecified(),
        "{real}"
    );
    if real.ip() == "127.0.0.8".parse::<IpAddr>().unwrap() {
        assert_eq!(seen_name(s).ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
    close(s);
}

#[test]
fn an_address_given_with_a_longer_length_is_rewritten_too() {
    setup();
    // Winsock reads only what the family needs: a sockaddr_in in a 256-byte buffer binds.
    let mut big = [0u8; 256];
    big[..16].copy_from_slice(&sin("127.0.0.1:0"));
    let s = udp();
    // SAFETY: big holds 256 bytes; through the detour.
    let r = unsafe { windows_sys::Win32::Networking::WinSock::bind(s, big.as_ptr().cast(), 256) };
    assert_eq!(r, 0, "{}", last_error());
    let real = real_name(s);
    assert!(
        real.ip() == "127.0.0.8".parse::<IpAddr>().unwrap() || real.ip().is_unspecified(),
        "{real}"
    );
    close(s);
    // TCP is not widened by Wine: the rewrite is visible.
    let t = tcp();
    // SAFETY: as above.
    let r = unsafe { windows_sys::Win32::Networking::WinSock::bind(t, big.as_ptr().cast(), 256) };
    assert_eq!(r, 0, "{}", last_error());
    assert_eq!(real_name(t).ip(), "127.0.0.8".parse::<IpAddr>().unwrap());
    close(t);
}

#[test]
fn a_udp_bind_of_an_excluded_port_is_left_alone() {
    setup();
    let s = udp();
    hooked_bind(s, &format!("127.0.0.1:{PORT_EXCLUDED}")).unwrap();
    assert_eq!(
        real_name(s),
        format!("127.0.0.1:{PORT_EXCLUDED}").parse().unwrap()
    );
    close(s);
}

#[test]
fn a_bind_of_the_wildcard_goes_to_the_vip() {
    setup();
    // 192.0.2.107 is on no interface here: the bind of the rewritten address fails as the system
    // fails it, which shows the rewrite happened (0.0.0.0 itself always binds). On a TCP socket:
    // Wine 8.0 lets a UDP bind of an address the host lacks through (widened to 0.0.0.0).
    // SAFETY: no memory preconditions.
    let s = unsafe { socket(i32::from(AF_INET), SOCK_STREAM, IPPROTO_TCP) };
    assert_ne!(s, INVALID_SOCKET);
    assert_eq!(hooked_bind(s, "0.0.0.0:47001"), Err(WSAEADDRNOTAVAIL));
    close(s);
}

#[test]
fn a_wildcard_bind_with_port_0_of_a_stream_socket_is_held_back() {
    setup();
    let s = tcp();
    assert_eq!(hooked_bind(s, "0.0.0.0:0"), Ok(()));
    // Not bound on the system; a second bind fails as on a bound socket.
    assert!(!is_bound(s));
    assert_eq!(hooked_bind(s, "127.0.0.1:0"), Err(WSAEINVAL));
    // closesocket forgets it (the handle value is reused).
    close(s);
    assert!(crate::pending::peek(s).is_none());
    // getsockname makes the bind (bind(0) then getsockname finds a free port): on a v6-only
    // socket `::` stays `::` (no VIP there), and the system chose a port.
    // SAFETY: no memory preconditions.
    let v6 = unsafe { socket(i32::from(AF_INET6), SOCK_STREAM, IPPROTO_TCP) };
    assert_ne!(v6, INVALID_SOCKET);
    assert_eq!(hooked_bind(v6, "[::]:0"), Ok(()));
    assert!(!is_bound(v6));
    let name = seen_name(v6);
    assert!(name.ip().is_unspecified() && name.port() != 0, "{name}");
    assert!(is_bound(v6));
    close(v6);
    // A datagram socket is bound at once (it may receive before it sends): 0.0.0.0 is the VIP
    // here, which Wine 8.0 widens back to 0.0.0.0 for UDP; bound either way.
    let u = udp();
    hooked_bind(u, "0.0.0.0:0").unwrap();
    assert!(is_bound(u));
    close(u);
}

#[test]
fn listen_makes_a_held_back_bind_with_the_bind_rules() {
    use windows_sys::Win32::Networking::WinSock::listen;
    setup();
    let s = tcp();
    assert_eq!(hooked_bind(s, "0.0.0.0:0"), Ok(()));
    // A server on the wildcard gets the VIP, which is on no interface here: the bind fails then.
    // SAFETY: s is ours; through the detour.
    assert_eq!(unsafe { listen(s, 1) }, SOCKET_ERROR);
    assert_eq!(last_error(), WSAEADDRNOTAVAIL);
    close(s);
}

#[test]
fn a_connect_after_a_wildcard_bind_leaves_from_the_session_loopback() {
    use windows_sys::Win32::Networking::WinSock::{connect, listen};
    setup();
    let l = tcp();
    hooked_bind(l, "127.0.0.1:0").unwrap();
    let port = real_name(l).port();
    // SAFETY: l is bound.
    assert_eq!(unsafe { listen(l, 1) }, 0);
    let c = tcp();
    hooked_bind(c, "0.0.0.0:0").unwrap();
    // Another session's loopback is refused (isolation), and the socket stays as it was.
    let other = sin(&format!("127.0.0.9:{port}"));
    // SAFETY: other holds 16 bytes; through the detour.
    let r = unsafe { connect(c, other.as_ptr().cast(), 16) };
    assert_eq!(r, SOCKET_ERROR);
    assert_eq!(last_error(), WSAECONNREFUSED);
    assert!(crate::pending::peek(c).is_some());
    let dest = sin(&format!("127.0.0.1:{port}"));
    // SAFETY: dest holds 16 bytes; through the detour.
    let r = unsafe { connect(c, dest.as_ptr().cast(), 16) };
    assert_eq!(r, 0, "{}", last_error());
    assert_eq!(real_name(c).ip(), "127.0.0.8".parse::<IpAddr>().unwrap());
    let seen = seen_name(c);
    assert_eq!(seen.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(seen.port(), real_name(c).port());
    for s in [c, l] {
        close(s);
    }
}

#[test]
fn a_connect_the_layer_chooses_no_source_for_makes_the_programs_own_wildcard_bind() {
    use windows_sys::Win32::Networking::WinSock::{connect, listen};
    setup();
    // [::1] is left alone here (ipv6 = "unchanged"): no source is chosen, and the program's
    // [::]:0 is bound as it asked before the connect.
    // SAFETY: no memory preconditions.
    let (l, c) = unsafe {
        (
            socket(i32::from(AF_INET6), SOCK_STREAM, IPPROTO_TCP),
            socket(i32::from(AF_INET6), SOCK_STREAM, IPPROTO_TCP),
        )
    };
    assert!(l != INVALID_SOCKET && c != INVALID_SOCKET);
    hooked_bind(l, "[::1]:0").unwrap();
    let port = real_name(l).port();
    // SAFETY: l is bound.
    assert_eq!(unsafe { listen(l, 1) }, 0);
    hooked_bind(c, "[::]:0").unwrap();
    let (dest, n) = sa(&format!("[::1]:{port}"));
    // SAFETY: dest holds n bytes; through the detour.
    let r = unsafe { connect(c, dest.as_ptr().cast(), n) };
    assert_eq!(r, 0, "{}", last_error());
    assert_eq!(real_name(c).ip(), "::1".parse::<IpAddr>().unwrap());
    for s in [c, l] {
        close(s);
    }
}

#[test]
fn connect_ex_after_a_wildcard_bind_leaves_from_the_session_loopback() {
    use windows_sys::Win32::Networking::WinSock::{WSAID_ACCEPTEX, WSAID_GETACCEPTEXSOCKADDRS};
    setup();
    let s = tcp();
    // SAFETY: the functions WSAIoctl handed out for these GUIDs.
    let (accept_ex, addrs) = unsafe {
        (
            std::mem::transmute::<usize, AcceptExFn>(extension(s, WSAID_ACCEPTEX)),
            std::mem::transmute::<usize, GetAcceptExSockaddrs>(extension(
                s,
                WSAID_GETACCEPTEXSOCKADDRS,
            )),
        )
    };
    close(s);
    // libuv and Go: bind 0.0.0.0:0, then ConnectEx.
    let r = accept_ex_round(accept_ex, addrs, "0.0.0.0:0");
    // On the wire the client is the session's; the server and the client see 127.0.0.1, as
    // they would natively.
    assert_eq!(r.client_real.ip(), "127.0.0.8".parse::<IpAddr>().unwrap());
    assert_eq!(
        r.client_seen,
        SocketAddr::from(([127, 0, 0, 1], r.client_real.port()))
    );
    assert_eq!(r.remote, r.client_seen);
    assert_eq!(r.local, format!("127.0.0.1:{}", r.port).parse().unwrap());
}

#[test]
fn a_udp_bind_of_another_sessions_loopback_is_refused_with_isolation() {
    setup();
    let s = udp();
    assert_eq!(hooked_bind(s, "127.0.0.9:0"), Err(WSAEACCES));
    close(s);
}

#[test]
fn an_unbound_udp_send_to_localhost_binds_the_session_loopback_first() {
    setup();
    let s = udp();
    assert!(!is_bound(s));
    assert_eq!(hooked_sendto(s, "127.0.0.1:9", b"x"), Ok(1));
    // The hook bound the source (preferred loopback: the session loopback, not the VIP).
    let real = real_name(s);
    assert!(
        real.ip() == "127.0.0.8".parse::<IpAddr>().unwrap() || real.ip().is_unspecified(),
        "{real}"
    );
    close(s);
}

#[test]
fn a_udp_send_to_another_sessions_loopback_is_refused_with_isolation() {
    setup();
    let s = udp();
    assert_eq!(hooked_sendto(s, "127.0.0.9:9", b"x"), Err(WSAECONNREFUSED));
    // Refused before anything happened: the socket is still unbound.
    assert!(!is_bound(s));
    close(s);
}

#[test]
fn wsa_send_to_is_decided_like_sendto() {
    setup();
    let s = udp();
    let a = sin("127.0.0.9:9");
    let data = *b"x";
    let buf = windows_sys::Win32::Networking::WinSock::WSABUF {
        len: 1,
        buf: data.as_ptr().cast_mut(),
    };
    let mut sent = 0u32;
    // SAFETY: the buffers are valid; no overlapped I/O; the call goes through the detour.
    let r = unsafe {
        windows_sys::Win32::Networking::WinSock::WSASendTo(
            s,
            &buf,
            1,
            &mut sent,
            0,
            a.as_ptr().cast(),
            16,
            ptr::null_mut(),
            None,
        )
    };
    assert_eq!((r, last_error()), (SOCKET_ERROR, WSAECONNREFUSED));
    close(s);
}

#[test]
fn a_datagram_from_the_session_loopback_is_reported_as_localhost() {
    setup();
    let rx = udp();
    hooked_bind(rx, "127.0.0.1:0").unwrap();
    let port = real_name(rx).port();
    let tx = udp();
    assert_eq!(
        hooked_sendto(tx, &format!("127.0.0.1:{port}"), b"ping"),
        Ok(4)
    );
    let mut data = [0u8; 16];
    let mut from = [0u8; STORAGE];
    let mut len = STORAGE as i32;
    // SAFETY: the buffers hold the lengths given; the call goes through the detour.
    let n = unsafe {
        windows_sys::Win32::Networking::WinSock::recvfrom(
            rx,
            data.as_mut_ptr(),
            16,
            0,
            from.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(&data[..n as usize], b"ping");
    let from = read_sockaddr(&from[..len as usize], LAYOUT).unwrap();
    assert_eq!(from.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    close(rx);
    close(tx);
}

#[test]
fn the_reported_address_rewrite_respects_the_programs_buffer_length() {
    setup();
    let st = state().unwrap();
    let mut b = sin("127.0.0.8:80");
    // A buffer of 6 bytes: the address bytes are past it and must not be written.
    let before = b;
    // SAFETY: b holds 16 bytes; only 6 are given.
    unsafe { fix_reported(st, b.as_mut_ptr(), 6, 16) };
    assert_eq!(b, before);
    // SAFETY: as above, with all 16.
    unsafe { fix_reported(st, b.as_mut_ptr(), 16, 16) };
    assert_eq!(
        read_sockaddr(&b, LAYOUT).unwrap(),
        "127.0.0.1:80".parse().unwrap()
    );
}

#[test]
fn getaddrinfo_and_gethostbyname_resolve_the_servers_address_as_the_vip() {
    setup();
    let mut res: *mut ADDRINFOA = ptr::null_mut();
    let node = std::ffi::CString::new(SERVER).unwrap();
    // SAFETY: node is NUL-terminated; res is a valid out pointer; through the detour.
    let r = unsafe {
        windows_sys::Win32::Networking::WinSock::getaddrinfo(
            node.as_ptr().cast(),
            ptr::null(),
            ptr::null(),
            &mut res,
        )
    };
    assert_eq!(r, 0);
    // SAFETY: res is Winsock's list.
    let ai = unsafe { &*res };
    // SAFETY: ai_addr holds ai_addrlen bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ai.ai_addr.cast::<u8>(), ai.ai_addrlen) };
    assert_eq!(
        read_sockaddr(bytes, LAYOUT).unwrap().ip(),
        VIP.parse::<IpAddr>().unwrap()
    );
    // SAFETY: res came from getaddrinfo.
    unsafe { freeaddrinfo(res) };

    // SAFETY: node is NUL-terminated; through the detour.
    let h = unsafe { gethostbyname(node.as_ptr().cast()) };
    assert!(!h.is_null());
    // SAFETY: a hostent with one IPv4 address.
    let first = unsafe { *(*h).h_addr_list };
    let mut octets = [0u8; 4];
    // SAFETY: first points at 4 bytes.
    unsafe { ptr::copy_nonoverlapping(first.cast::<u8>(), octets.as_mut_ptr(), 4) };
    assert_eq!(IpAddr::from(octets), VIP.parse::<IpAddr>().unwrap());

    // Another address passes through.
    let other = std::ffi::CString::new("198.51.100.1").unwrap();
    // SAFETY: as above.
    let r = unsafe {
        windows_sys::Win32::Networking::WinSock::getaddrinfo(
            other.as_ptr().cast(),
            ptr::null(),
            ptr::null(),
            &mut res,
        )
    };
    assert_eq!(r, 0);
    // SAFETY: as above.
    let ai = unsafe { &*res };
    // SAFETY: as above.
    let bytes = unsafe { std::slice::from_raw_parts(ai.ai_addr.cast::<u8>(), ai.ai_addrlen) };
    assert_eq!(
        read_sockaddr(bytes, LAYOUT).unwrap().ip(),
        "198.51.100.1".parse::<IpAddr>().unwrap()
    );
    // SAFETY: res came from getaddrinfo.
    unsafe { freeaddrinfo(res) };
}

#[test]
fn the_depth_guard_lets_only_the_outermost_hook_rewrite() {
    let outer = Depth::enter();
    assert!(outer.outermost());
    {
        let inner = Depth::enter();
        assert!(!inner.outermost());
    }
    drop(outer);
    assert!(Depth::enter().outermost());
}

#[test]
fn the_depth_guard_keeps_the_last_error() {
    set_last_error(WSAECONNREFUSED);
    let d = Depth::enter();
    assert_eq!(last_error(), WSAECONNREFUSED);
    set_last_error(WSAEACCES);
    drop(d);
    assert_eq!(last_error(), WSAEACCES);
}

#[test]
fn the_hosts_addresses_are_read_without_loopback_ones() {
    // The real adapter table of this machine (or Wine's view of the Linux host's).
    let addrs = crate::config::host_addresses().unwrap();
    assert!(addrs.iter().all(|a| !a.is_loopback()), "{addrs:?}");
}

#[test]
fn a_policy_without_virtual_ips_never_reads_the_adapter_table() {
    // The tests never set IPVIRT_SERVER_ADDRS: without virtual IPs no address is needed.
    assert_eq!(std::env::var_os("IPVIRT_SERVER_ADDRS"), None);
    assert_eq!(crate::config::servers(false).unwrap(), Vec::<IpAddr>::new());
}

/// The extension function `guid` of `s`'s provider, through the (hooked) `WSAIoctl`.
fn extension(s: Socket, guid: windows_sys::core::GUID) -> usize {
    use windows_sys::Win32::Networking::WinSock::{SIO_GET_EXTENSION_FUNCTION_POINTER, WSAIoctl};
    let mut f = 0usize;
    let mut n = 0u32;
    // SAFETY: the buffers hold the sizes given; no overlapped I/O; through the detour.
    let r = unsafe {
        WSAIoctl(
            s,
            SIO_GET_EXTENSION_FUNCTION_POINTER,
            (&raw const guid).cast(),
            std::mem::size_of_val(&guid) as u32,
            (&raw mut f).cast(),
            std::mem::size_of::<usize>() as u32,
            &mut n,
            ptr::null_mut(),
            None,
        )
    };
    assert_eq!(r, 0, "WSAIoctl: {}", last_error());
    assert_ne!(f, 0);
    f
}

fn tcp() -> Socket {
    // SAFETY: no memory preconditions.
    let s = unsafe { socket(i32::from(AF_INET), SOCK_STREAM, IPPROTO_TCP) };
    assert_ne!(s, INVALID_SOCKET);
    s
}

/// An OVERLAPPED with a manual-reset event of its own.
fn overlapped() -> windows_sys::Win32::System::IO::OVERLAPPED {
    // SAFETY: a zeroed OVERLAPPED is valid; CreateEventW has no memory preconditions.
    let mut ov: windows_sys::Win32::System::IO::OVERLAPPED = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    ov.hEvent = unsafe {
        windows_sys::Win32::System::Threading::CreateEventW(ptr::null(), 1, 0, ptr::null())
    };
    assert!(!ov.hEvent.is_null());
    ov
}

/// Waits (30 s at most) for an overlapped operation on `s`; whether it succeeded.
fn completed(s: Socket, ov: &windows_sys::Win32::System::IO::OVERLAPPED) -> bool {
    use windows_sys::Win32::Foundation::WAIT_OBJECT_0;
    use windows_sys::Win32::Networking::WinSock::WSAGetOverlappedResult;
    use windows_sys::Win32::System::Threading::WaitForSingleObject;
    // SAFETY: the event is ours.
    let waited = unsafe { WaitForSingleObject(ov.hEvent, 30_000) };
    assert_eq!(waited, WAIT_OBJECT_0);
    let (mut n, mut flags) = (0u32, 0u32);
    // SAFETY: ov is the operation's OVERLAPPED; it completed.
    unsafe { WSAGetOverlappedResult(s, ov, &mut n, 0, &mut flags) != 0 }
}

type AcceptExFn = unsafe extern "system" fn(
    Socket,
    Socket,
    *mut c_void,
    u32,
    u32,
    u32,
    *mut u32,
    *mut windows_sys::Win32::System::IO::OVERLAPPED,
) -> i32;

/// What one [`accept_ex_round`] saw.
struct Round {
    /// The listener's port.
    port: u16,
    /// The accepted connection's local and remote addresses, as `GetAcceptExSockaddrs` reported.
    local: SocketAddr,
    remote: SocketAddr,
    /// The client's address as the system has it, and as the client sees it (`getsockname`).
    client_real: SocketAddr,
    client_seen: SocketAddr,
}

/// A listener of the session on `127.0.0.1:0` accepts with `accept_ex` a client that binds
/// `client_bind` and connects to `127.0.0.1:PORT` with `ConnectEx` (from `WSAIoctl`); `addrs`
/// reads the accepted connection's addresses.
fn accept_ex_round(accept_ex: AcceptExFn, addrs: GetAcceptExSockaddrs, client_bind: &str) -> Round {
    use windows_sys::Win32::Networking::WinSock::{
        SO_UPDATE_CONNECT_CONTEXT, WSA_IO_PENDING, WSAID_CONNECTEX, listen, setsockopt,
    };
    let l = tcp();
    hooked_bind(l, "127.0.0.1:0").unwrap();
    let port = real_name(l).port();
    assert_eq!(real_name(l), format!("127.0.0.8:{port}").parse().unwrap());
    // SAFETY: l is a bound socket.
    assert_eq!(unsafe { listen(l, 1) }, 0);

    let a = tcp();
    const ROOM: u32 = (STORAGE + 16) as u32;
    let mut buf = vec![0u8; 2 * ROOM as usize];
    let mut ov_a = overlapped();
    let mut got = 0u32;
    // SAFETY: buf holds 2 * ROOM bytes; ov_a outlives the operation (waited for below).
    let r = unsafe {
        accept_ex(
            l,
            a,
            buf.as_mut_ptr().cast(),
            0,
            ROOM,
            ROOM,
            &mut got,
            &mut ov_a,
        )
    };
    assert!(
        r != 0 || last_error() == WSA_IO_PENDING,
        "AcceptEx: {}",
        last_error()
    );

    // ConnectEx needs a bound socket: the program binds it itself.
    let c = tcp();
    hooked_bind(c, client_bind).unwrap();
    let dest = sin(&format!("127.0.0.1:{port}"));
    let mut ov_c = overlapped();
    // SAFETY: the function WSAIoctl handed out for WSAID_CONNECTEX.
    let connect =
        unsafe { std::mem::transmute::<usize, ConnectExFn>(extension(c, WSAID_CONNECTEX)) };
    // SAFETY: dest holds 16 bytes; no data; ov_c outlives the operation.
    let r = unsafe {
        connect(
            c,
            dest.as_ptr(),
            16,
            ptr::null(),
            0,
            ptr::null_mut(),
            (&raw mut ov_c).cast(),
        )
    };
    assert!(
        r != 0 || last_error() == WSA_IO_PENDING,
        "ConnectEx: {}",
        last_error()
    );
    // Nothing listens on 127.0.0.1:PORT: it connects only because the wrapper sent it to
    // 127.0.0.8.
    assert!(completed(c, &ov_c), "ConnectEx failed: {}", last_error());
    assert!(completed(l, &ov_a), "AcceptEx failed: {}", last_error());
    // SAFETY: no option value; c is connected (what programs do after ConnectEx).
    let r = unsafe { setsockopt(c, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, ptr::null(), 0) };
    assert_eq!(r, 0, "SO_UPDATE_CONNECT_CONTEXT: {}", last_error());

    let (mut lp, mut ll, mut rp, mut rl) = (ptr::null_mut(), 0i32, ptr::null_mut(), 0i32);
    // SAFETY: buf is AcceptEx's completed output buffer with the sizes given to it.
    unsafe {
        addrs(
            buf.as_ptr().cast(),
            0,
            ROOM,
            ROOM,
            &mut lp,
            &mut ll,
            &mut rp,
            &mut rl,
        )
    };
    // SAFETY: the provider pointed them at ll and rl bytes inside buf.
    let (local, remote) = unsafe {
        (
            std::slice::from_raw_parts(lp.cast_const(), ll as usize),
            std::slice::from_raw_parts(rp.cast_const(), rl as usize),
        )
    };
    let round = Round {
        port,
        local: read_sockaddr(local, LAYOUT).unwrap(),
        remote: read_sockaddr(remote, LAYOUT).unwrap(),
        client_real: real_name(c),
        client_seen: seen_name(c),
    };
    for s in [a, c, l] {
        close(s);
    }
    round
}

#[test]
fn connect_ex_and_get_accept_ex_sockaddrs_from_wsaioctl_are_wrapped() {
    use windows_sys::Win32::Networking::WinSock::{
        WSAID_ACCEPTEX, WSAID_CONNECTEX, WSAID_GETACCEPTEXSOCKADDRS,
    };
    setup();
    let s = tcp();
    assert_eq!(
        extension(s, WSAID_CONNECTEX),
        connect_ex as ConnectExFn as usize
    );
    let addrs = extension(s, WSAID_GETACCEPTEXSOCKADDRS);
    assert_eq!(
        addrs,
        provided_get_accept_ex_sockaddrs as GetAcceptExSockaddrs as usize
    );
    // SAFETY: the functions WSAIoctl handed out for these GUIDs (AcceptEx is the provider's
    // own, not wrapped: its addresses are read through GetAcceptExSockaddrs).
    let (accept_ex, addrs) = unsafe {
        (
            std::mem::transmute::<usize, AcceptExFn>(extension(s, WSAID_ACCEPTEX)),
            std::mem::transmute::<usize, GetAcceptExSockaddrs>(addrs),
        )
    };
    close(s);
    let r = accept_ex_round(accept_ex, addrs, "127.0.0.1:0");
    assert_eq!(r.local, format!("127.0.0.1:{}", r.port).parse().unwrap());
    assert_eq!(r.remote.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(r.client_real.ip(), "127.0.0.8".parse::<IpAddr>().unwrap());
    assert_eq!(r.client_seen.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
}

/// `name` as `mswsock.dll` exports it (the detoured entry, if the table detours it).
fn mswsock(name: &std::ffi::CStr) -> usize {
    use windows_sys::Win32::System::LibraryLoader::{GetProcAddress, LoadLibraryW};
    let m = crate::sys::wide("mswsock.dll");
    // SAFETY: m is NUL-terminated; mswsock is a system library.
    let h = unsafe { LoadLibraryW(m.as_ptr()) };
    assert!(!h.is_null());
    // SAFETY: h is loaded; name is NUL-terminated.
    unsafe { GetProcAddress(h, name.as_ptr().cast()) }.unwrap() as usize
}

#[test]
fn mswsocks_own_accept_ex_and_get_accept_ex_sockaddrs_report_localhost() {
    setup();
    // The export is detoured (under Wine, mswsock's function asks WSAIoctl for the provider's and
    // would meet the WSAIoctl wrapper too; on Windows it is the provider's own code).
    let f = crate::hooks::F::GetAcceptExSockaddrs as usize;
    assert_ne!(
        crate::sys::REAL[f].load(std::sync::atomic::Ordering::Acquire),
        0
    );
    // SAFETY: mswsock's exports of these names have these signatures.
    let (accept_ex, addrs) = unsafe {
        (
            std::mem::transmute::<usize, AcceptExFn>(mswsock(c"AcceptEx")),
            std::mem::transmute::<usize, GetAcceptExSockaddrs>(mswsock(c"GetAcceptExSockaddrs")),
        )
    };
    let r = accept_ex_round(accept_ex, addrs, "127.0.0.1:0");
    assert_eq!(r.local, format!("127.0.0.1:{}", r.port).parse().unwrap());
    assert_eq!(r.remote.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
}

#[test]
fn get_addr_info_w_resolves_the_servers_address_as_the_vip() {
    use windows_sys::Win32::Networking::WinSock::{ADDRINFOW, FreeAddrInfoW, GetAddrInfoW};
    setup();
    let node: Vec<u16> = SERVER.encode_utf16().chain(Some(0)).collect();
    let mut res: *mut ADDRINFOW = ptr::null_mut();
    // SAFETY: node is NUL-terminated; res is a valid out pointer; through the detour.
    let r = unsafe { GetAddrInfoW(node.as_ptr(), ptr::null(), ptr::null(), &mut res) };
    assert_eq!(r, 0);
    // SAFETY: res is Winsock's list.
    let ai = unsafe { &*res };
    // SAFETY: ai_addr holds ai_addrlen bytes.
    let bytes = unsafe { std::slice::from_raw_parts(ai.ai_addr.cast::<u8>(), ai.ai_addrlen) };
    assert_eq!(
        read_sockaddr(bytes, LAYOUT).unwrap().ip(),
        VIP.parse::<IpAddr>().unwrap()
    );
    // SAFETY: res came from GetAddrInfoW.
    unsafe { FreeAddrInfoW(res) };
}

mod registry_values {
    use ipvirt::Policy;
    use ipvirt_host::registry::{self, KEYS, Value, merge};
    use windows_sys::Win32::System::Registry::{REG_DWORD, REG_MULTI_SZ, REG_SZ};

    fn dword(name: &str, v: u32) -> Value {
        (name.into(), REG_DWORD, v.to_le_bytes().to_vec())
    }
    fn sz(name: &str, v: &str) -> Value {
        let mut b: Vec<u8> = v.encode_utf16().flat_map(u16::to_le_bytes).collect();
        b.extend([0, 0]);
        (name.into(), REG_SZ, b)
    }
    fn multi(name: &str, v: &[&str]) -> Value {
        let mut b = Vec::new();
        for s in v {
            b.extend(s.encode_utf16().flat_map(u16::to_le_bytes));
            b.extend([0, 0]);
        }
        b.extend([0, 0]);
        (name.into(), REG_MULTI_SZ, b)
    }

    #[test]
    fn registry_values_replace_the_toml_policys_as_from_reg_maps_them() {
        let mut policy = Policy::from_toml(
            "[virtual_loopback]\nenabled = true\nprograms = [\"a.exe\"]\n\
             [virtual_ip]\npool = [\"192.0.2.100-192.0.2.110\"]\nprograms = [\"toml.exe\"]\n",
        )
        .unwrap();
        let keys = [
            (KEYS[0], vec![dword("VirtualMode", 1)]),
            (
                KEYS[1],
                vec![
                    dword("EnableVirtualIP", 1),
                    dword("VirtualMode", 0),
                    sz("VIPAdapter", "192.0.2.0/24"),
                    multi("PerApp", &[r#"C:\Apps\"q"\crm.exe"#, "cti.exe"]),
                ],
            ),
            (
                KEYS[2],
                vec![
                    dword("PreferLoopback", 1),
                    multi("PreferLoopbackProcesses", &["crm.exe"]),
                ],
            ),
        ];
        let notes = merge(&mut policy, &keys).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        assert!(policy.virtual_ip.enabled);
        // The group-policy key wins over the local one.
        assert_eq!(policy.virtual_ip.mode, ipvirt::VipMode::PerProgram);
        assert_eq!(
            policy.virtual_ip.adapter,
            Some("192.0.2.0/24".parse().unwrap())
        );
        // Quotes and backslashes survive the export.
        assert_eq!(
            policy.virtual_ip.programs,
            [r#"C:\Apps\"q"\crm.exe"#, "cti.exe"]
        );
        assert!(policy.prefer_loopback.enabled);
        assert_eq!(policy.prefer_loopback.processes, ["crm.exe"]);
        // What the registry does not hold stays as the TOML said.
        assert!(policy.virtual_loopback.enabled);
        assert_eq!(policy.virtual_ip.pool.len(), 1);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_reported_without_a_line_and_leaves_the_toml_value() {
        let mut policy =
            Policy::from_toml("[virtual_ip]\nadapter = \"198.51.100.0/24\"\n").unwrap();
        let keys = [(KEYS[1], vec![dword("VIPAdapter", 5), sz("Bogus", "x")])];
        let notes = merge(&mut policy, &keys).unwrap();
        assert_eq!(
            policy.virtual_ip.adapter,
            Some("198.51.100.0/24".parse().unwrap())
        );
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes.iter().all(|n| !n.contains("line ")), "{notes:?}");
        assert!(
            notes
                .iter()
                .any(|n| n.contains("VIPAdapter") && n.contains("REG_DWORD")),
            "{notes:?}"
        );
        assert!(notes.iter().any(|n| n.contains("Bogus")), "{notes:?}");
    }

    #[test]
    fn no_registry_values_leave_the_policy_alone() {
        let mut policy = Policy::from_toml("[virtual_ip]\nenabled = true\n").unwrap();
        let before = policy.clone();
        assert!(
            merge(&mut policy, &[(KEYS[0], Vec::new())])
                .unwrap()
                .is_empty()
        );
        assert_eq!(policy, before);
    }

    #[test]
    fn the_registry_of_this_machine_reads() {
        // A fresh Wine prefix (or a Windows machine without the settings) has none of the keys;
        // wherever they are, reading them must work.
        let mut policy = Policy::default();
        registry::apply(&mut policy).unwrap();
    }
}

mod children {
    use std::ffi::OsString;
    use std::path::PathBuf;

    use crate::calls::process::{child_environment, own_dll, with_session};
    use crate::config::Carry;
    use crate::inject::Target;

    fn entries(block: &[u16]) -> Vec<String> {
        block
            .split(|&c| c == 0)
            .filter(|e| !e.is_empty())
            .map(String::from_utf16_lossy)
            .collect()
    }

    fn carry() -> Carry {
        Carry {
            vars: vec![
                ("IPVIRT_SESSION", Some(OsString::from("7"))),
                ("IPVIRT_VIP", None),
            ],
            dll: PathBuf::from(r"C:\ipvirt\ipvirt_winhook.dll"),
            init_offset: 0,
            job: false,
            debug: false,
        }
    }

    #[test]
    fn a_childs_environment_carries_the_sessions_variables_whatever_the_program_passes() {
        let wide = |s: &str| s.encode_utf16().collect::<Vec<u16>>();
        let given = vec![
            wide("Path=C:\\bin"),
            wide("ipvirt_session=99"),
            wide("IPVIRT_VIP=198.51.100.1"),
            wide("=C:=C:\\"),
            wide("ALPHA=1"),
        ];
        let block = with_session(given, &carry());
        // Two NULs at the end, sorted by name without case, the session's values only.
        assert_eq!(&block[block.len() - 2..], &[0, 0]);
        assert_eq!(
            entries(&block),
            ["=C:=C:\\", "ALPHA=1", "IPVIRT_SESSION=7", "Path=C:\\bin"]
        );
        // An empty environment still gets the session's.
        assert_eq!(
            entries(&with_session(Vec::new(), &carry())),
            ["IPVIRT_SESSION=7"]
        );
    }

    #[test]
    fn an_ansi_or_a_unicode_block_is_read_and_a_null_one_is_this_processs() {
        let ansi = b"A=1\0B=two\0\0";
        // SAFETY: a block of NUL-terminated strings ended by an empty one.
        let got = unsafe { child_environment(ansi.as_ptr().cast(), false) };
        assert_eq!(
            got,
            [
                "A=1".encode_utf16().collect::<Vec<_>>(),
                "B=two".encode_utf16().collect()
            ]
        );
        let w: Vec<u16> = "A=1\0B=two\0\0".encode_utf16().collect();
        // SAFETY: as above, in UTF-16.
        let got = unsafe { child_environment(w.as_ptr().cast(), true) };
        assert_eq!(got.len(), 2);
        // SAFETY: NULL: this process's environment.
        let own = unsafe { child_environment(std::ptr::null(), false) };
        assert!(own.iter().any(|e| {
            String::from_utf16_lossy(e)
                .to_uppercase()
                .starts_with("PATH=")
        }));
    }

    /// `CreateProcessW` of `cmd.exe /c exit 0` through the detour, with `flags`; its result and
    /// error.
    fn create(flags: u32) -> (i32, u32) {
        use windows_sys::Win32::Foundation::{CloseHandle, GetLastError};
        use windows_sys::Win32::System::Threading::{
            CreateProcessW, PROCESS_INFORMATION, STARTUPINFOW,
        };
        let mut line: Vec<u16> = "cmd.exe /c exit 0\0".encode_utf16().collect();
        // SAFETY: zeroed structures are valid initial values.
        let mut si: STARTUPINFOW = unsafe { std::mem::zeroed() };
        si.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
        // SAFETY: as above.
        let mut pi: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: line is writable and NUL-terminated; the structures are valid.
        let r = unsafe {
            CreateProcessW(
                std::ptr::null(),
                line.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                flags,
                std::ptr::null(),
                std::ptr::null(),
                &si,
                &mut pi,
            )
        };
        // SAFETY: no preconditions.
        let e = unsafe { GetLastError() };
        if r != 0 {
            // SAFETY: the handles the call returned.
            unsafe {
                CloseHandle(pi.hThread);
                CloseHandle(pi.hProcess);
            }
        }
        assert!(
            r != 0 || pi.hProcess.is_null(),
            "a failed call returns no handles"
        );
        (r, e)
    }

    #[test]
    fn a_child_that_cannot_be_virtualized_is_not_started() {
        use windows_sys::Win32::Foundation::{ERROR_DLL_INIT_FAILED, ERROR_NOT_SUPPORTED};
        use windows_sys::Win32::System::Threading::DEBUG_ONLY_THIS_PROCESS;
        super::setup();
        // A session to pass on whose DLL does not exist: every child fails closed. (No other test
        // creates a process.)
        let mut c = carry();
        c.dll = PathBuf::from(r"C:\nowhere\ipvirt_winhook.dll");
        assert!(crate::config::CARRY.set(c).is_ok());
        assert_eq!(create(0), (0, ERROR_DLL_INIT_FAILED));
        // A child its creator is to debug is refused before it is created.
        assert_eq!(create(DEBUG_ONLY_THIS_PROCESS), (0, ERROR_NOT_SUPPORTED));
    }

    #[test]
    fn this_process_is_64_bit_and_knows_its_own_module() {
        use windows_sys::Win32::System::Threading::GetCurrentProcess;
        // SAFETY: the pseudo handle of this process, which has every right.
        let me = unsafe { Target::new(GetCurrentProcess()) };
        assert_eq!(me.is_32bit(), Ok(false));
        let (path, offset) = own_dll().unwrap();
        assert!(path.is_file(), "{}", path.display());
        assert!(offset > 0);
    }
}
