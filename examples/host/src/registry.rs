//! The registry keys of SPEC §3, read with the registry API and mapped by ipvirt's one mapping,
//! [`Policy::from_reg`].
//!
//! The values of the three keys are written out as the registry export `regedit` would produce
//! (the same text model `from_reg` reads: `dword:`, quoted strings, `hex(N):` bytes), so a value
//! means exactly what it means in a `.reg` file given to `ipvirt explain`. Each value the registry
//! holds then replaces the TOML policy's: the Microsoft values by [`ipvirt::RegImport::origins`],
//! the Citrix ones by name. Virtual loopback itself and the VIP pool are not registry values (a
//! Citrix policy and the pool plug-in's configuration): they come from the TOML policy.
//!
//! The launcher reads the same keys through this file (to know whether to lease a VIP).

// The registry API: FFI.
#![allow(unsafe_code)]

use std::fmt::Write as _;
use std::ptr;

use ipvirt::Policy;

use windows_sys::Win32::Foundation::{ERROR_MORE_DATA, ERROR_NO_MORE_ITEMS, ERROR_SUCCESS};
use windows_sys::Win32::System::Registry::{
    HKEY, HKEY_LOCAL_MACHINE, KEY_READ, KEY_WOW64_64KEY, REG_DWORD, REG_SZ, RegCloseKey,
    RegEnumValueW, RegOpenKeyExW,
};

/// The keys under `HKEY_LOCAL_MACHINE`, in SPEC §3's order (group policy, local, Citrix).
pub const KEYS: [&str; 3] = [
    r"SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\TSAppSrv\VirtualIP",
    r"SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP",
    r"SOFTWARE\Wow6432Node\Citrix\VIP",
];

/// One registry value: its name, type and data.
pub type Value = (String, u32, Vec<u8>);

/// The values of `HKLM\key` (none when the key does not exist).
fn read_key(key: &str) -> Result<Vec<Value>, String> {
    let name: Vec<u16> = key.encode_utf16().chain(Some(0)).collect();
    let mut h: HKEY = ptr::null_mut();
    // SAFETY: name is NUL-terminated; h is a valid out pointer.
    let r = unsafe {
        RegOpenKeyExW(
            HKEY_LOCAL_MACHINE,
            name.as_ptr(),
            0,
            KEY_READ | KEY_WOW64_64KEY,
            &mut h,
        )
    };
    if r != ERROR_SUCCESS {
        // Missing (or unreadable): the key sets nothing.
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut name_buf = vec![0u16; 256];
    let mut data = vec![0u8; 1024];
    let mut index = 0u32;
    let result = loop {
        let mut name_len = u32::try_from(name_buf.len()).unwrap_or(u32::MAX);
        let mut data_len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let mut ty = 0u32;
        // SAFETY: the buffers hold the lengths passed; h is an open key.
        let r = unsafe {
            RegEnumValueW(
                h,
                index,
                name_buf.as_mut_ptr(),
                &mut name_len,
                ptr::null(),
                &mut ty,
                data.as_mut_ptr(),
                &mut data_len,
            )
        };
        match r {
            ERROR_SUCCESS => {
                let n = String::from_utf16_lossy(name_buf.get(..name_len as usize).unwrap_or(&[]));
                out.push((n, ty, data.get(..data_len as usize).unwrap_or(&[]).to_vec()));
                index += 1;
            }
            ERROR_MORE_DATA if data.len() < (1 << 20) && name_buf.len() < 32 * 1024 => {
                // Retry the same index with larger buffers.
                data.resize(data.len() * 4, 0);
                name_buf.resize(name_buf.len() * 4, 0);
            }
            ERROR_NO_MORE_ITEMS => break Ok(out),
            other => break Err(format!("reading HKLM\\{key}: error {other}")),
        }
    };
    // SAFETY: h is open and closed once.
    unsafe { RegCloseKey(h) };
    result
}

/// A string as a `.reg` file quotes it.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '\\' || c == '"' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// The registry export of `keys` (each with its values), as `regedit` writes it.
pub fn export(keys: &[(&str, Vec<Value>)]) -> String {
    let mut text = String::from("Windows Registry Editor Version 5.00\r\n");
    for (key, values) in keys {
        if values.is_empty() {
            continue;
        }
        let _ = write!(text, "\r\n[HKEY_LOCAL_MACHINE\\{key}]\r\n");
        for (name, ty, data) in values {
            let shown = if name.is_empty() {
                "@".to_owned()
            } else {
                quoted(name)
            };
            let _ = write!(text, "{shown}=");
            let sz = (*ty == REG_SZ)
                .then(|| {
                    let units: Vec<u16> = data
                        .chunks_exact(2)
                        .map(|c| u16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    let end = units.iter().position(|&u| u == 0).unwrap_or(units.len());
                    String::from_utf16(units.get(..end).unwrap_or(&[])).ok()
                })
                .flatten()
                // A string that a quoted .reg line cannot hold stays bytes (reported as such).
                .filter(|s| !s.contains(['\r', '\n']));
            match (*ty, data.as_slice(), sz) {
                (REG_DWORD, &[a, b, c, d], _) => {
                    let _ = write!(text, "dword:{:08x}", u32::from_le_bytes([a, b, c, d]));
                }
                (REG_SZ, _, Some(s)) => text.push_str(&quoted(&s)),
                (ty, bytes, _) => {
                    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
                    let _ = write!(text, "hex({ty:x}):{}", hex.join(","));
                }
            }
            text.push_str("\r\n");
        }
    }
    text
}

/// Whether `values` holds `name` (registry names are case-insensitive).
fn has(values: &[Value], name: &str) -> bool {
    values.iter().any(|(n, _, _)| n.eq_ignore_ascii_case(name))
}

/// Replaces `policy`'s settings by those the registry holds; returns what the import had to
/// ignore, in words.
pub fn apply(policy: &mut Policy) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    for key in KEYS {
        keys.push((key, read_key(key)?));
    }
    merge(policy, &keys)
}

/// [`apply`] on values already read (the part the unit tests drive).
pub fn merge(policy: &mut Policy, keys: &[(&str, Vec<Value>)]) -> Result<Vec<String>, String> {
    if keys.iter().all(|(_, v)| v.is_empty()) {
        return Ok(Vec::new());
    }
    let import = Policy::from_reg(export(keys).as_bytes())
        .map_err(|e| format!("the registry values do not read as a policy: {e}"))?;
    let notes = import
        .diagnostics
        .iter()
        .map(|d| {
            // Line numbers name lines of the generated export: leave them out.
            let s = d.to_string();
            match s.split_once(": line ") {
                Some((head, rest)) => match rest.split_once(": ") {
                    Some((_, tail)) => format!("{head}: {tail}"),
                    None => s,
                },
                None => s,
            }
        })
        .collect();
    let o = import.origins;
    let vip = &import.policy.virtual_ip;
    if o.enabled.is_some() {
        policy.virtual_ip.enabled = vip.enabled;
    }
    if o.mode.is_some() {
        policy.virtual_ip.mode = vip.mode;
    }
    if o.programs.is_some() {
        policy.virtual_ip.programs.clone_from(&vip.programs);
    }
    if o.adapter.is_some() {
        policy.virtual_ip.adapter = vip.adapter;
    }
    if o.on_lease_failure.is_some() {
        policy.virtual_ip.on_lease_failure = vip.on_lease_failure;
    }
    let citrix = keys
        .iter()
        .find(|(k, _)| *k == KEYS[2])
        .map(|(_, v)| v.as_slice())
        .unwrap_or(&[]);
    if has(citrix, "PreferLoopback") {
        policy.prefer_loopback.enabled = import.policy.prefer_loopback.enabled;
    }
    if has(citrix, "PreferLoopbackProcesses") {
        policy
            .prefer_loopback
            .processes
            .clone_from(&import.policy.prefer_loopback.processes);
    }
    if has(citrix, "IpvirtIpv6Loopback") {
        policy.virtual_loopback.ipv6 = import.policy.virtual_loopback.ipv6;
    }
    Ok(notes)
}
