//! `.reg` import of inputs shaped like the worst of real exports: the reader must be linear.
//!
//! No timing here. Each input is sized so the quadratic reader (before the fix) took minutes in a
//! debug build (each of these tests was still running after 2 minutes; in release it took 47 s for
//! the continuation chain, 32 s for the deletions and 3.9 s for the binary value), while the linear
//! one parses each in under a second in debug and in about 10 ms in release. A regression shows as
//! a test that hangs, and the asserts check the import is still right.

use std::fmt::Write as _;

use ipvirt::{DiagnosticCode as C, Policy, RegError};

const CITRIX: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Wow6432Node\Citrix\VIP";
const LOCAL: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP";

fn utf16le_with_bom(text: &str) -> Vec<u8> {
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    bytes
}

/// Hex data as regedit wraps it: after a comma once a line passes 76 columns, then `\`, CRLF and
/// two spaces. Returns the text and how many physical lines it took.
fn wrapped_hex(prefix: &str, data: &[u8]) -> (String, usize) {
    let mut out = String::from(prefix);
    let (mut col, mut lines) = (prefix.len(), 1);
    for (i, b) in data.iter().enumerate() {
        if col + 3 > 77 && out.ends_with(',') {
            out.push_str("\\\r\n  ");
            col = 2;
            lines += 1;
        }
        write!(out, "{b:02x}").unwrap();
        if i + 1 < data.len() {
            out.push(',');
        }
        col += 3;
    }
    (out, lines)
}

fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("program-{i:05}.exe")).collect()
}

/// A 1 MiB chain of continuations, one byte of data per physical line (the quadratic reader copied
/// and rescanned the whole joined line at every one of its 131 072 lines).
#[test]
fn one_mebibyte_continuation_chain() {
    let mut multi = Vec::new();
    let mut n = 0;
    // "  xx,\\\r\n" is 8 bytes per byte of data: 131 072 lines make 1 MiB.
    while multi.len() < (1 << 20) / 8 {
        multi.extend_from_slice(format!("n{n}.exe").as_bytes());
        multi.push(0);
        n += 1;
    }
    multi.push(0);
    let mut text =
        format!("REGEDIT4\r\n\r\n[{CITRIX}]\r\n\"PreferLoopbackProcesses\"=hex(7):\\\r\n");
    for b in &multi[..multi.len() - 1] {
        write!(text, "  {b:02x},\\\r\n").unwrap();
    }
    write!(text, "  {:02x}\r\n", multi[multi.len() - 1]).unwrap();
    assert!(text.len() >= 1 << 20, "{}", text.len());
    // The line after the chain: its number counts every physical line of the chain.
    let after = 5 + multi.len();
    text.push_str("\"Unknown\"=dword:00000001\r\n");

    let import = Policy::from_reg(text.as_bytes()).unwrap();
    let processes = &import.policy.prefer_loopback.processes;
    assert_eq!(processes.len(), n);
    assert!(
        processes
            .iter()
            .enumerate()
            .all(|(i, p)| *p == format!("n{i}.exe"))
    );
    assert_eq!(import.diagnostics.len(), 1, "{:#?}", import.diagnostics);
    let d = &import.diagnostics[0];
    assert_eq!(d.code, C::RegUnknownValue);
    assert!(d.message.contains(&format!("line {after}:")), "{d}");
}

/// 20 000 keys, then 20 000 deletions (the quadratic reader looked each key line up among all
/// keys seen so far, and scanned all of them again for every deletion).
#[test]
fn twenty_thousand_keys_and_deletions() {
    const N: usize = 20_000;
    let mut text = String::from("Windows Registry Editor Version 5.00\r\n\r\n");
    write!(
        text,
        "[{CITRIX}]\r\n\"PreferLoopback\"=dword:00000001\r\n\r\n\
         [{LOCAL}]\r\n\"EnableVirtualIP\"=dword:00000001\r\n\"VIPAdapter\"=\"192.0.2.0/24\"\r\n\r\n"
    )
    .unwrap();
    for i in 0..N {
        write!(
            text,
            "[HKEY_LOCAL_MACHINE\\SOFTWARE\\Vendor{}\\Key{i}]\r\n\"Value\"=dword:{i:08x}\r\n\
             \"Name\"=\"key {i}\"\r\n\r\n",
            i % 100
        )
        .unwrap();
    }
    for i in 0..N {
        write!(
            text,
            "[-HKEY_LOCAL_MACHINE\\SOFTWARE\\Vendor{}\\Key{i}]\r\n\r\n",
            i % 100
        )
        .unwrap();
    }
    // A sibling whose name is a prefix of the Citrix key's is not its parent: nothing happens…
    text.push_str("[-HKLM\\SOFTWARE\\Wow6432Node\\Citrix\\VI]\r\n");
    // …while a parent of the local key clears it, whatever the spelling.
    text.push_str("[-hklm\\system\\currentcontrolset\\control\\TERMINAL SERVER\\]\r\n");
    let lines = text.matches('\n').count();

    let bytes = utf16le_with_bom(&text);
    let import = Policy::from_reg(&bytes).unwrap();
    assert!(import.policy.prefer_loopback.enabled);
    assert!(!import.policy.virtual_ip.enabled);
    assert_eq!(import.policy.virtual_ip.adapter, None);
    assert_eq!(import.origins.enabled, None);
    assert!(import.diagnostics.is_empty(), "{:#?}", import.diagnostics);

    // A value after a deleted key is malformed, and the error counts all the lines before it.
    let mut bad = text;
    bad.push_str("\"Orphan\"=dword:00000001\r\n");
    match Policy::from_reg(&utf16le_with_bom(&bad)).unwrap_err() {
        RegError::Malformed { line, .. } => assert_eq!(line, lines + 1),
        other => panic!("{other}"),
    }
}

/// A REG_MULTI_SZ of about 1 MB of text, wrapped by regedit over 13 000 lines (the quadratic
/// reader took 3.9 s in release on a value of this size).
#[test]
fn one_megabyte_binary_value() {
    let list = names(9_000);
    let mut data = Vec::new();
    for n in &list {
        for u in n.encode_utf16() {
            data.extend_from_slice(&u.to_le_bytes());
        }
        data.extend_from_slice(&[0, 0]);
    }
    data.extend_from_slice(&[0, 0]);
    let (value, wrapped) = wrapped_hex("\"PreferLoopbackProcesses\"=hex(7):", &data);
    let (blob, blob_lines) = wrapped_hex("\"Blob\"=hex:", &data[..data.len() / 2]);
    let text = format!(
        "Windows Registry Editor Version 5.00\r\n\r\n[{CITRIX}]\r\n{value}\r\n{blob}\r\n\
         \"PreferLoopback\"=dword:00000001\r\n"
    );
    assert!(text.len() >= 1_000_000, "{}", text.len());

    let import = Policy::from_reg(&utf16le_with_bom(&text)).unwrap();
    assert_eq!(import.policy.prefer_loopback.processes, list);
    assert!(import.policy.prefer_loopback.enabled);
    // The unknown binary value is reported on the line where it starts.
    let blob_line = 4 + wrapped;
    assert_eq!(import.diagnostics.len(), 1, "{:#?}", import.diagnostics);
    assert!(
        import.diagnostics[0]
            .message
            .contains(&format!("line {blob_line}: value \"Blob\"")),
        "{}",
        import.diagnostics[0]
    );
    assert!(blob_lines > 1000);

    // A bad byte at the very end of a long value is an error naming the value's first line.
    let broken = text.replacen(&value, &format!("{value},0"), 1);
    match Policy::from_reg(&utf16le_with_bom(&broken)).unwrap_err() {
        RegError::Malformed { line, text, .. } => {
            assert_eq!(line, 4);
            assert!(
                text.starts_with("\"PreferLoopbackProcesses\"=hex(7):"),
                "{text}"
            );
        }
        other => panic!("{other}"),
    }
}
