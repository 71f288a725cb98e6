//! Importing the policy from a registry export (`.reg`), as `regedit` writes it.
//!
//! Three keys carry the settings that live in the registry (SPEC §3):
//!
//! | key | values |
//! |---|---|
//! | `HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\TSAppSrv\VirtualIP` (group policy) | `EnableVirtualIP`, `VirtualMode`, `PerApp`, `VIPAdapter`, `PromptOnIPLeaseFail` |
//! | `HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP` (local) | the same |
//! | `HKEY_LOCAL_MACHINE\SOFTWARE\Wow6432Node\Citrix\VIP` | `PreferLoopback`, `PreferLoopbackProcesses`, and the ipvirt extension `IpvirtIpv6Loopback` (DWORD: 1 = `virtual_loopback.ipv6 = "map"`, SPEC §8) |
//!
//! Each Microsoft value is read from the group-policy key first, then the local key, then defaults;
//! [`RegImport::origins`] says where each came from. Citrix *virtual loopback* itself is a Citrix
//! policy, not a registry value, and the static VIP pool is the pool plug-in's configuration: a
//! `.reg` import leaves `virtual_loopback` and `virtual_ip.pool` at their defaults (merge them from a
//! TOML policy). No value names where the VIPs come from: Microsoft leases them from DHCP unless a
//! static-pool plug-in is installed, so an import sets `virtual_ip.source = "dhcp"` (the DHCP
//! interface is then the one `VIPAdapter` selects); set it back to `"static"` when merging a pool.
//!
//! The reader takes the file's bytes: UTF-16LE with a byte-order mark (what `regedit` writes),
//! UTF-16BE with a mark, UTF-8 with or without one; bytes of a file without a mark that are not UTF-8
//! are read as Windows-1252/Latin-1 (`REGEDIT4` files are ANSI). CRLF or LF; the headers
//! `Windows Registry Editor Version 5.00` and `REGEDIT4`; `;` comments; `\` line continuations;
//! quoted names and strings with `\\` and `\"`; `@` for a key's default value; `dword:`, `hex:` and
//! `hex(N):` data (`hex(7)` REG_MULTI_SZ in UTF-16LE, or in ANSI under `REGEDIT4`); deleted keys
//! `[-…]` and deleted values `"name"=-`. Key names match case-insensitively, and `HKLM` stands for
//! `HKEY_LOCAL_MACHINE`.
//!
//! A line that is not well formed is a [`RegError`] naming its line. A well-formed value the
//! import cannot use — an unknown name under one of the three keys, a wrong type, a `VirtualMode`
//! other than 0 or 1, a `VIPAdapter` that is not a CIDR — is a [`Diagnostic`] in
//! [`RegImport::diagnostics`], and the value is ignored; keys other than the three are ignored.
//!
//! Why not the `regashii` crate, which reads regedit exports: tried against our fixtures (0.4), it
//! silently skips a malformed line together with every value after it in the file, silently drops
//! `dword:`/`hex` data it cannot parse, and reports no line numbers, so it cannot tell an
//! administrator which line of a policy file is wrong.
//!
//! ## Files
//!
//! `lexer.rs` reads the file's syntax (encodings, continuations, key lines, values and their data;
//! [`RegError`]); `import.rs` applies the three keys' values to a [`Policy`](crate::Policy)
//! ([`Policy::from_reg`](crate::Policy::from_reg), [`RegImport`]).

mod import;
mod lexer;

pub use import::{Origin, RegImport, VipOrigins};
pub use lexer::RegError;
