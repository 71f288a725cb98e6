//! `.reg` import: `Policy::from_reg` on a realistic regedit export of 64 KiB, 1 MiB and 16 MiB,
//! against a baseline in the same group (decoding the same UTF-16LE bytes into a `String`: the least
//! work any reader of the file does). Throughput is in input bytes: a linear reader shows the same
//! MB/s at every size.
//!
//! Run: `cargo bench --bench reg` (then `python3 benches/report.py from_reg` for the ratios).
//!
//! The export is generated deterministically and looks like what `regedit` writes for a large
//! subtree: UTF-16LE with a byte-order mark, CRLF, many keys each with a few values of every type
//! (strings with escapes, `dword:`, `hex:` binary and `hex(2)`/`hex(7)`/`hex(b)` data wrapped
//! after 76 columns with `\` continuations, `@` defaults, deleted values), deleted keys and comments;
//! the two VirtualIP keys and the Citrix key are in it, so the import has something to find.

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use ipvirt::Policy;

const GP: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Policies\Microsoft\Windows NT\Terminal Services\TSAppSrv\VirtualIP";
const LOCAL: &str =
    r"HKEY_LOCAL_MACHINE\SYSTEM\CurrentControlSet\Control\Terminal Server\TSAppSrv\VirtualIP";
const CITRIX: &str = r"HKEY_LOCAL_MACHINE\SOFTWARE\Wow6432Node\Citrix\VIP";

/// A small deterministic generator (xorshift64), so every run parses the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `prefix` followed by `data` as regedit writes hex data: two-digit bytes separated by commas,
/// wrapped after a comma once a line passes 76 columns, the next line indented by two spaces.
fn hex_value(out: &mut String, prefix: &str, data: &[u8]) {
    let mut col = prefix.len();
    out.push_str(prefix);
    for (i, b) in data.iter().enumerate() {
        let last = i + 1 == data.len();
        let piece = if last { 2 } else { 3 };
        if col + piece > 77 && out.ends_with(',') {
            out.push_str("\\\r\n  ");
            col = 2;
        }
        write!(out, "{b:02x}").unwrap();
        if !last {
            out.push(',');
        }
        col += piece;
    }
    out.push_str("\r\n");
}

fn utf16(names: &[&str]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in names {
        for u in n.encode_utf16() {
            v.extend_from_slice(&u.to_le_bytes());
        }
        v.extend_from_slice(&[0, 0]);
    }
    v.extend_from_slice(&[0, 0]);
    v
}

/// A regedit export of about `size` bytes (UTF-16LE with a BOM).
fn export(size: usize) -> Vec<u8> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut text = String::from("Windows Registry Editor Version 5.00\r\n\r\n");
    write!(
        text,
        "[{LOCAL}]\r\n\"EnableVirtualIP\"=dword:00000001\r\n\"VirtualMode\"=dword:00000001\r\n\
         \"VIPAdapter\"=\"192.0.2.96/24\"\r\n"
    )
    .unwrap();
    hex_value(
        &mut text,
        "\"PerApp\"=hex(7):",
        &utf16(&["crm.exe", r"C:\Program Files\Contoso\CTI\cti.exe"]),
    );
    write!(text, "\r\n[{GP}]\r\n\"VirtualMode\"=dword:00000000\r\n\r\n").unwrap();
    write!(text, "[{CITRIX}]\r\n\"PreferLoopback\"=dword:00000001\r\n").unwrap();
    hex_value(
        &mut text,
        "\"PreferLoopbackProcesses\"=hex(7):",
        &utf16(&["crm.exe", "cti.exe"]),
    );
    text.push_str("\r\n");

    let mut key = 0u64;
    // Each character is two bytes in UTF-16LE.
    while text.len() * 2 < size {
        key += 1;
        let path = format!(
            r"HKEY_LOCAL_MACHINE\SOFTWARE\Vendor{}\Product{}\Settings{key}",
            rng.below(50),
            rng.below(20)
        );
        if rng.below(8) == 0 {
            writeln!(text, "; exported subtree {key}\r").unwrap();
        }
        writeln!(text, "[{path}]\r").unwrap();
        for v in 0..rng.below(6) + 1 {
            match rng.below(8) {
                0 => writeln!(text, "@=\"default of {key}\"\r").unwrap(),
                1 => writeln!(
                    text,
                    "\"InstallDir{v}\"=\"C:\\\\Program Files\\\\Vendor\\\\\\\"App {key}\\\"\"\r"
                )
                .unwrap(),
                2 => writeln!(text, "\"Count{v}\"=dword:{:08x}\r", rng.next() as u32).unwrap(),
                3 => {
                    let len = rng.below(200) as usize + 1;
                    let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                    hex_value(&mut text, &format!("\"Blob{v}\"=hex:"), &data);
                }
                4 => {
                    let data = utf16(&["%SystemRoot%\\system32\\svc.dll"]);
                    hex_value(
                        &mut text,
                        &format!("\"Path{v}\"=hex(2):"),
                        &data[..data.len() - 2],
                    );
                }
                5 => hex_value(
                    &mut text,
                    &format!("\"List{v}\"=hex(7):"),
                    &utf16(&["first", "second entry", "third"]),
                ),
                6 => hex_value(
                    &mut text,
                    &format!("\"Stamp{v}\"=hex(b):"),
                    &rng.next().to_le_bytes(),
                ),
                _ => writeln!(text, "\"Obsolete{v}\"=-\r").unwrap(),
            }
        }
        text.push_str("\r\n");
        if rng.below(10) == 0 {
            writeln!(text, "[-{path}]\r\n\r").unwrap();
        }
    }
    let mut bytes = vec![0xFF, 0xFE];
    for u in text.encode_utf16() {
        bytes.extend_from_slice(&u.to_le_bytes());
    }
    bytes
}

/// The baseline: decode the UTF-16LE body into a `String`, nothing else.
fn decode_only(bytes: &[u8]) -> String {
    let units = bytes
        .get(2..)
        .unwrap_or_default()
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]));
    char::decode_utf16(units)
        .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

fn bench(c: &mut Criterion) {
    for (label, size) in [("64KiB", 64 << 10), ("1MiB", 1 << 20), ("16MiB", 16 << 20)] {
        let bytes = export(size);
        // The import finds the three keys in the noise.
        let import = Policy::from_reg(&bytes).unwrap();
        assert!(import.policy.virtual_ip.enabled);
        assert!(import.policy.prefer_loopback.enabled);
        // One group a size, so `benches/report.py` reads each against its own baseline.
        let mut g = c.benchmark_group(format!("from_reg_{label}"));
        g.sample_size(10);
        g.sampling_mode(SamplingMode::Flat);
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("baseline_decode", |b| {
            b.iter(|| decode_only(black_box(&bytes)))
        });
        g.bench_function("from_reg", |b| {
            b.iter(|| Policy::from_reg(black_box(&bytes)))
        });
        g.finish();
    }
}

criterion_group!(reg, bench);
criterion_main!(reg);
