//! The one hook table: every detoured function, once — the module that exports it, its export
//! name, the hook that replaces it and its signature (Detours' `ATTACH(x)`, one line per hook).
//!
//! The [`hooks!`] macro turns the table into the enum [`F`] that indexes the trampolines, their
//! [`COUNT`], one function-pointer type per hook (named like its variant: `hooks::Bind`), and
//! [`table`], the list [`crate::sys::install`] detours. `table` casts each hook to its type, so a
//! hook whose signature differs from the table's does not compile.

use std::ffi::c_void;

use windows_sys::Win32::Networking::WinSock::{ADDRINFOA, HOSTENT};

use windows_sys::Win32::Foundation::HANDLE;
use windows_sys::Win32::System::Threading::PROCESS_INFORMATION;

use crate::calls::{connect, datagram, ext, names, process, resolve};
use crate::sys::{Group, Hook, KERNEL, MSWSOCK, Socket, WS2_32};

/// The hook table: `Name: group modules "export" => hook as fn(args) -> ret;`, one entry per
/// detoured function. `group` says when the hook is installed ([`Group`]); `modules` are tried in
/// order, the first that exports the function is patched.
macro_rules! hooks {
    ($($name:ident: $group:ident $modules:ident $export:literal => $hook:path
        as fn($($arg:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        /// The detoured functions, in table order. The value indexes [`crate::sys::REAL`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(usize)]
        pub(crate) enum F {
            $(#[doc = $export] $name,)*
        }

        /// How many functions the table detours.
        pub(crate) const COUNT: usize = [$(F::$name),*].len();

        $(
            #[doc = concat!("The signature of `", $export, "`.")]
            pub(crate) type $name = unsafe extern "system" fn($($arg),*) $(-> $ret)?;
        )*

        /// The table, as [`crate::sys::install`] reads it.
        pub(crate) fn table() -> [Hook; COUNT] {
            [$(Hook {
                f: F::$name,
                group: Group::$group,
                modules: $modules,
                export: $export,
                hook: $hook as $name as usize,
            },)*]
        }
    };
}

hooks! {
    Bind: Sockets WS2_32 "bind" => connect::bind as fn(Socket, *const u8, i32) -> i32;
    Listen: Sockets WS2_32 "listen" => connect::listen as fn(Socket, i32) -> i32;
    CloseSocket: Sockets WS2_32 "closesocket" => connect::closesocket as fn(Socket) -> i32;
    Connect: Sockets WS2_32 "connect" => connect::connect as fn(Socket, *const u8, i32) -> i32;
    WsaConnect: Sockets WS2_32 "WSAConnect" => connect::wsa_connect
        as fn(Socket, *const u8, i32, *const c_void, *mut c_void, *const c_void, *const c_void) -> i32;
    SendTo: Sockets WS2_32 "sendto" => datagram::sendto
        as fn(Socket, *const u8, i32, i32, *const u8, i32) -> i32;
    WsaSendTo: Sockets WS2_32 "WSASendTo" => datagram::wsa_send_to
        as fn(Socket, *const c_void, u32, *mut u32, u32, *const u8, i32, *mut c_void, *const c_void) -> i32;
    GetSockName: Sockets WS2_32 "getsockname" => names::getsockname
        as fn(Socket, *mut u8, *mut i32) -> i32;
    GetPeerName: Sockets WS2_32 "getpeername" => names::getpeername
        as fn(Socket, *mut u8, *mut i32) -> i32;
    Accept: Sockets WS2_32 "accept" => names::accept as fn(Socket, *mut u8, *mut i32) -> Socket;
    WsaAccept: Sockets WS2_32 "WSAAccept" => names::wsa_accept
        as fn(Socket, *mut u8, *mut i32, *const c_void, usize) -> Socket;
    RecvFrom: Sockets WS2_32 "recvfrom" => datagram::recvfrom
        as fn(Socket, *mut u8, i32, i32, *mut u8, *mut i32) -> i32;
    WsaRecvFrom: Sockets WS2_32 "WSARecvFrom" => datagram::wsa_recv_from
        as fn(Socket, *const c_void, u32, *mut u32, *mut u32, *mut u8, *mut i32, *mut c_void, *const c_void) -> i32;
    GetAddrInfo: Sockets WS2_32 "getaddrinfo" => resolve::getaddrinfo
        as fn(*const u8, *const u8, *const c_void, *mut *mut ADDRINFOA) -> i32;
    GetAddrInfoW: Sockets WS2_32 "GetAddrInfoW" => resolve::get_addr_info_w
        as fn(*const u16, *const u16, *const c_void, *mut *mut ADDRINFOA) -> i32;
    GetHostByName: Sockets WS2_32 "gethostbyname" => resolve::gethostbyname
        as fn(*const u8) -> *mut HOSTENT;
    WsaIoctl: Sockets WS2_32 "WSAIoctl" => ext::wsa_ioctl
        as fn(Socket, u32, *const c_void, u32, *mut c_void, u32, *mut u32, *mut c_void, *const c_void) -> i32;
    GetAcceptExSockaddrs: Sockets MSWSOCK "GetAcceptExSockaddrs" => ext::get_accept_ex_sockaddrs
        as fn(*const c_void, u32, u32, u32, *mut *mut u8, *mut i32, *mut *mut u8, *mut i32);
    CreateProcessW: Processes KERNEL "CreateProcessW" => process::create_process_w
        as fn(*const u16, *mut u16, *const c_void, *const c_void, i32, u32, *const c_void, *const u16, *const c_void, *mut PROCESS_INFORMATION) -> i32;
    CreateProcessA: Processes KERNEL "CreateProcessA" => process::create_process_a
        as fn(*const u8, *mut u8, *const c_void, *const c_void, i32, u32, *const c_void, *const u8, *const c_void, *mut PROCESS_INFORMATION) -> i32;
    CreateProcessAsUserW: Processes KERNEL "CreateProcessAsUserW" => process::create_process_as_user_w
        as fn(HANDLE, *const u16, *mut u16, *const c_void, *const c_void, i32, u32, *const c_void, *const u16, *const c_void, *mut PROCESS_INFORMATION) -> i32;
    CreateProcessAsUserA: Processes KERNEL "CreateProcessAsUserA" => process::create_process_as_user_a
        as fn(HANDLE, *const u8, *mut u8, *const c_void, *const c_void, i32, u32, *const c_void, *const u8, *const c_void, *mut PROCESS_INFORMATION) -> i32;
}

/// The real function (the trampoline) of the hook named `$name` in [`hooks!`], as its type.
macro_rules! real {
    ($name:ident) => {{
        let p = $crate::sys::REAL[$crate::hooks::F::$name as usize]
            .load(::std::sync::atomic::Ordering::Acquire);
        // SAFETY: a detour is enabled only after its trampoline was stored here, and the hooks
        // run only through an enabled detour; the trampoline has the signature the table gives
        // the export, which is the type of the same name.
        unsafe { ::std::mem::transmute::<usize, $crate::hooks::$name>(p) }
    }};
}
