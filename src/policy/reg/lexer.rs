//! The lexer of a registry export: bytes to text (UTF-16 with a mark, UTF-8, ANSI), physical lines
//! to logical ones (`\` continuations), and each logical line to a key line or a value with its
//! data ([`Entry`]). It knows the syntax of `regedit` files and nothing of the policy; a line it
//! cannot read is a [`RegError`] naming the line.

use alloc::borrow::{Cow, ToOwned};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// One key line or value line of an export, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    /// `[name]`, or `[-name]` (`deleted`): the key, lower-cased, `HKLM` spelled out.
    Key {
        /// The key's canonical name.
        name: String,
        /// Whether the line deletes the key.
        deleted: bool,
    },
    /// `"name"=data` (or `@=data`, the default value: an empty name) under the last key line.
    Value {
        /// The line (the first line of a continued line).
        line: usize,
        /// The value's name.
        name: String,
        /// Its data.
        data: Data,
    },
}

/// The entries of an export after its header line: see [`Export::new`].
#[derive(Debug)]
pub(super) struct Export<'t> {
    /// Whether the header is `REGEDIT4` (ANSI strings) rather than version 5.00 (UTF-16LE).
    pub(super) regedit4: bool,
    lines: LogicalLines<'t>,
    /// Whether a value may come now: after a key line that does not delete its key.
    in_key: bool,
}

impl<'t> Export<'t> {
    /// Reads the header of `text` (the file, as [`decode`] gives it).
    ///
    /// # Errors
    ///
    /// [`RegError::Header`] when the first non-empty line is no known header.
    pub(super) fn new(text: &'t str) -> Result<Export<'t>, RegError> {
        let mut lines = logical_lines(text);
        let first = lines.by_ref().find(|(_, l)| !l.trim().is_empty());
        let (hline, header) = first
            .as_ref()
            .map(|(n, l)| (*n, l.trim()))
            .unwrap_or((1, ""));
        let regedit4 = match header {
            "Windows Registry Editor Version 5.00" => false,
            "REGEDIT4" => true,
            other => {
                return Err(RegError::Header {
                    line: hline,
                    found: other.chars().take(60).collect(),
                });
            }
        };
        Ok(Export {
            regedit4,
            lines,
            in_key: false,
        })
    }
}

impl Iterator for Export<'_> {
    type Item = Result<Entry, RegError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let (line, raw) = self.lines.next()?;
            let t = raw.trim();
            if t.is_empty() || t.starts_with(';') {
                continue;
            }
            return Some(self.entry(line, t));
        }
    }
}

impl Export<'_> {
    fn entry(&mut self, line: usize, t: &str) -> Result<Entry, RegError> {
        if let Some(inner) = t.strip_prefix('[') {
            let Some(inner) = inner.strip_suffix(']') else {
                return Err(malformed(line, t, "a key line must end with ']'"));
            };
            let (deleted, name) = match inner.strip_prefix('-') {
                Some(n) => (true, n),
                None => (false, inner),
            };
            let name = canonical_key(name);
            if name.is_empty() {
                return Err(malformed(line, t, "the key name is empty"));
            }
            // A value after a deleted key has no key to go to.
            self.in_key = !deleted;
            return Ok(Entry::Key { name, deleted });
        }
        if t.starts_with('"') || t.starts_with('@') {
            let (name, data) = parse_value(line, t)?;
            if !self.in_key {
                return Err(malformed(line, t, "a value must follow a key line [..]"));
            }
            return Ok(Entry::Value { line, name, data });
        }
        Err(malformed(
            line,
            t,
            "expected a key [..], a value \"name\"=data, or a ; comment",
        ))
    }
}

/// A value's data, as the file wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Data {
    Sz(String),
    Dword(u32),
    /// `hex(N):` bytes (`hex:` is type 3, REG_BINARY).
    Hex(u32, Vec<u8>),
    Deleted,
}

impl Data {
    pub(super) fn type_name(&self) -> String {
        match self {
            Data::Sz(_) => "REG_SZ".into(),
            Data::Dword(_) => "REG_DWORD".into(),
            Data::Hex(2, _) => "REG_EXPAND_SZ".into(),
            Data::Hex(3, _) => "REG_BINARY".into(),
            Data::Hex(7, _) => "REG_MULTI_SZ".into(),
            Data::Hex(11, _) => "REG_QWORD".into(),
            Data::Hex(n, _) => format!("hex({n:x})"),
            Data::Deleted => "a deletion".into(),
        }
    }
}

fn malformed(line: usize, text: &str, reason: &'static str) -> RegError {
    RegError::Malformed {
        line,
        text: text.chars().take(80).collect(),
        reason,
    }
}

/// Lower-cased key path with `HKLM` spelled out and no trailing separator.
fn canonical_key(name: &str) -> String {
    let lower = name.trim().trim_end_matches('\\').to_lowercase();
    match lower.strip_prefix("hklm\\") {
        Some(rest) => format!("hkey_local_machine\\{rest}"),
        None if lower == "hklm" => "hkey_local_machine".to_owned(),
        None => lower,
    }
}

/// The text of the file (borrowed when it is UTF-8 without a byte-order mark).
pub(super) fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, RegError> {
    let utf16 = |body: &[u8], le: bool| -> Result<String, RegError> {
        if !body.len().is_multiple_of(2) {
            return Err(RegError::Utf16 {
                offset: bytes.len() - 1,
            });
        }
        let units = body.chunks_exact(2).map(|c| match *c {
            [a, b] if le => u16::from_le_bytes([a, b]),
            [a, b] => u16::from_be_bytes([a, b]),
            _ => 0,
        });
        let mut out = String::with_capacity(body.len() / 2);
        // Code units read so far: a character after the basic plane takes two.
        let mut read = 0usize;
        for ch in core::char::decode_utf16(units) {
            let ch = ch.map_err(|_| RegError::Utf16 {
                offset: 2 + 2 * read,
            })?;
            read += ch.len_utf16();
            out.push(ch);
        }
        Ok(out)
    };
    match bytes {
        [0xFF, 0xFE, rest @ ..] => utf16(rest, true).map(Cow::Owned),
        [0xFE, 0xFF, rest @ ..] => utf16(rest, false).map(Cow::Owned),
        [0xEF, 0xBB, 0xBF, rest @ ..] => Ok(String::from_utf8_lossy(rest)),
        _ => match core::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(_) => Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect())),
        },
    }
}

/// Physical lines joined at `\` continuations, each with its first line's number.
///
/// A line that does not continue is borrowed from `text`; a continued one is built once, in one
/// buffer, so the whole pass is linear in the text.
fn logical_lines(text: &str) -> LogicalLines<'_> {
    LogicalLines {
        physical: text.split('\n').enumerate(),
    }
}

/// The iterator of [`logical_lines`].
#[derive(Debug)]
struct LogicalLines<'a> {
    physical: core::iter::Enumerate<core::str::Split<'a, char>>,
}

impl<'a> Iterator for LogicalLines<'a> {
    type Item = (usize, Cow<'a, str>);

    fn next(&mut self) -> Option<Self::Item> {
        let (i, raw) = self.physical.next()?;
        let first = raw.strip_suffix('\r').unwrap_or(raw);
        if !continues(first, first) {
            return Some((i + 1, Cow::Borrowed(first)));
        }
        let mut acc = String::from(without_continuation(first));
        for (_, raw) in self.physical.by_ref() {
            let next = raw.strip_suffix('\r').unwrap_or(raw).trim_start();
            acc.push_str(next);
            // `acc` before `next` ended outside any string: it had a continuation, so its end was
            // outside one, and the backslashes and blanks taken off it open or close none. So
            // whether `acc` ends inside a string depends on `next` alone (scanning all of `acc`
            // again, line after line, made a long continued value quadratic).
            if !continues(&acc, next) {
                return Some((i + 1, Cow::Owned(acc)));
            }
            let keep = without_continuation(&acc).len();
            acc.truncate(keep);
        }
        Some((i + 1, Cow::Owned(acc)))
    }
}

/// Whether a line continues on the next one: a trailing backslash outside a quoted string (hex data
/// lines). Whether the line ends inside a string is the same as whether `tail`, its part after the
/// last continuation, does; it is scanned only for a line that ends with a backslash.
fn continues(line: &str, tail: &str) -> bool {
    line.trim_end().ends_with('\\') && !in_string_at_end(tail)
}

/// A continued line without its trailing blanks and backslashes.
fn without_continuation(line: &str) -> &str {
    line.trim_end().trim_end_matches('\\')
}

/// Whether the end of `t` is inside a quoted string (so a trailing `\` is an escape, not a
/// continuation).
fn in_string_at_end(t: &str) -> bool {
    let mut inside = false;
    let mut escaped = false;
    for c in t.chars() {
        match c {
            '\\' if inside && !escaped => escaped = true,
            '"' if !escaped => inside = !inside,
            _ => escaped = false,
        }
    }
    inside
}

/// Parses `"name"=data` or `@=data`.
fn parse_value(line: usize, t: &str) -> Result<(String, Data), RegError> {
    let (name, rest) = if let Some(r) = t.strip_prefix('@') {
        (String::new(), r)
    } else {
        let (s, r) = parse_quoted(t)
            .ok_or_else(|| malformed(line, t, "the value name's closing quote is missing"))?;
        (s, r)
    };
    let rest = rest.trim_start();
    let Some(data) = rest.strip_prefix('=') else {
        return Err(malformed(line, t, "expected '=' after the value name"));
    };
    let data = data.trim();
    if data == "-" {
        return Ok((name, Data::Deleted));
    }
    if data.starts_with('"') {
        let (s, after) = parse_quoted(data)
            .ok_or_else(|| malformed(line, t, "the string's closing quote is missing"))?;
        if !after.trim().is_empty() {
            return Err(malformed(line, t, "unexpected text after the string"));
        }
        return Ok((name, Data::Sz(s)));
    }
    if let Some(hex) = strip_prefix_ignore_case(data, "dword:") {
        let hex = hex.trim();
        if hex.is_empty() || hex.len() > 8 {
            return Err(malformed(line, t, "dword: needs 1 to 8 hex digits"));
        }
        let v = u32::from_str_radix(hex, 16)
            .map_err(|_| malformed(line, t, "dword: needs 1 to 8 hex digits"))?;
        return Ok((name, Data::Dword(v)));
    }
    let (kind, bytes) = if let Some(b) = strip_prefix_ignore_case(data, "hex:") {
        (3, b)
    } else if let Some(r) = strip_prefix_ignore_case(data, "hex(") {
        let (n, b) = r
            .split_once("):")
            .ok_or_else(|| malformed(line, t, "expected hex(N): with a hex type number"))?;
        let n = u32::from_str_radix(n.trim(), 16)
            .map_err(|_| malformed(line, t, "expected hex(N): with a hex type number"))?;
        (n, b)
    } else {
        return Err(malformed(
            line,
            t,
            "expected \"string\", dword:, hex: or hex(N): data, or - to delete",
        ));
    };
    // Two digits and a comma a byte.
    let mut out = Vec::with_capacity(bytes.len() / 3 + 1);
    for part in bytes.split(',') {
        let p = part.trim();
        if p.is_empty() {
            continue; // a trailing comma, or the comma before a continuation
        }
        if p.len() != 2 {
            return Err(malformed(
                line,
                t,
                "hex data must be two-digit bytes separated by commas",
            ));
        }
        out.push(u8::from_str_radix(p, 16).map_err(|_| {
            malformed(
                line,
                t,
                "hex data must be two-digit bytes separated by commas",
            )
        })?);
    }
    Ok((name, Data::Hex(kind, out)))
}

/// `s` without `prefix` (ASCII) at its start, in any case: the data of a long value is not copied
/// to lower case to find its type.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// A quoted string at the start of `s` with `\\` and `\"` escapes, and the rest after it.
fn parse_quoted(s: &str) -> Option<(String, &str)> {
    let body = s.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('\\' | '"'))) => out.push(e),
                Some((_, other)) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            '"' => return Some((out, body.get(i + 1..).unwrap_or(""))),
            c => out.push(c),
        }
    }
    None
}

/// REG_MULTI_SZ bytes: UTF-16LE strings (ANSI under `REGEDIT4`), each NUL-terminated, the list
/// ended by an empty string. Empty strings are dropped.
pub(super) fn multi_sz(bytes: &[u8], regedit4: bool) -> Vec<String> {
    let text: String = if regedit4 {
        bytes.iter().map(|&b| char::from(b)).collect()
    } else {
        let units = bytes.chunks(2).map(|c| match *c {
            [a, b] => u16::from_le_bytes([a, b]),
            [a] => u16::from(a),
            _ => 0,
        });
        core::char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    };
    text.split('\0')
        .filter(|s| !s.is_empty())
        .map(ToString::to_string)
        .collect()
}

/// An error reading a registry export ([`Policy::from_reg`](crate::Policy::from_reg)): the file is
/// not a registry export, or a line of it is malformed. Every variant names the line (1-based) or
/// the byte offset.
///
/// # Examples
///
/// ```
/// use ipvirt::{Policy, RegError};
///
/// let err = Policy::from_reg(b"REGEDIT4\n[HKLM\\X]\n\"A\"=dword:xyz\n").unwrap_err();
/// assert!(matches!(err, RegError::Malformed { line: 3, .. }));
/// assert_eq!(
///     err.to_string(),
///     "registry file line 3: \"\\\"A\\\"=dword:xyz\" is malformed: dword: needs 1 to 8 hex digits"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegError {
    /// The first non-empty line is not `Windows Registry Editor Version 5.00` or `REGEDIT4`.
    #[error(
        "registry file line {line}: expected the header \"Windows Registry Editor Version 5.00\" or \"REGEDIT4\", found {found:?}"
    )]
    Header {
        /// The line where the header should be.
        line: usize,
        /// What is there instead (at most 60 characters).
        found: String,
    },
    /// A line is neither a key, a value, a comment nor blank, or its data is malformed.
    #[error("registry file line {line}: {text:?} is malformed: {reason}")]
    Malformed {
        /// The line (the first line of a continued line).
        line: usize,
        /// The line's text (at most 80 characters).
        text: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A UTF-16 file has an odd number of bytes or an unpaired surrogate.
    #[error("registry file is not valid UTF-16 at byte {offset}")]
    Utf16 {
        /// The byte offset of the bad code unit.
        offset: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuations_and_escapes() {
        let lines: Vec<_> =
            logical_lines("a\r\n\"x\"=hex(7):41,00,\\\r\n  42,00\r\n\"p\"=\"C:\\\\dir\\\\\"\r\n")
                .collect();
        assert_eq!(lines[1], (2, Cow::from("\"x\"=hex(7):41,00,42,00")));
        assert_eq!(lines[2].0, 4);
        let (name, data) = parse_value(4, &lines[2].1).unwrap();
        assert_eq!((name.as_str(), data), ("p", Data::Sz("C:\\dir\\".into())));
    }

    #[test]
    fn value_types_in_any_case() {
        let value = |t: &str| parse_value(1, t).map(|(_, d)| d);
        assert_eq!(value("\"a\"=DWORD:0000000A"), Ok(Data::Dword(10)));
        assert_eq!(
            value("\"a\"=HEX(7):41,00"),
            Ok(Data::Hex(7, alloc::vec![0x41, 0]))
        );
        assert_eq!(
            value("\"a\"=Hex:AB,cd,"),
            Ok(Data::Hex(3, alloc::vec![0xab, 0xcd]))
        );
        assert_eq!(value("\"a\"=hEx(B):01"), Ok(Data::Hex(11, alloc::vec![1])));
        for bad in [
            "\"a\"=dwor\u{e9}:1",
            "\"a\"=h\u{e9}x:00",
            "\"a\"=\u{e9}",
            "\"a\"=hex(\u{e9}):00",
        ] {
            assert!(
                matches!(value(bad), Err(RegError::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn multi_sz_both_encodings() {
        assert_eq!(
            multi_sz(&[0x61, 0, 0, 0, 0x62, 0, 0, 0, 0, 0], false),
            ["a", "b"]
        );
        assert_eq!(multi_sz(b"a\0bc\0\0", true), ["a", "bc"]);
    }

    /// The joining as it was first written (rescanning and copying the whole line at every
    /// continuation, so quadratic): the linear one must give the same lines.
    fn logical_lines_quadratic(text: &str) -> Vec<(usize, String)> {
        let mut out: Vec<(usize, String)> = Vec::new();
        let mut pending: Option<(usize, String)> = None;
        for (i, raw) in text.split('\n').enumerate() {
            let line = raw.strip_suffix('\r').unwrap_or(raw);
            let (start, mut acc) = match pending.take() {
                Some((n, mut acc)) => {
                    acc.push_str(line.trim_start());
                    (n, acc)
                }
                None => (i + 1, line.to_owned()),
            };
            let t = acc.trim_end();
            if t.ends_with('\\') && !in_string_at_end(t) {
                acc = t.trim_end_matches('\\').to_owned();
                pending = Some((start, acc));
            } else {
                out.push((start, acc));
            }
        }
        out.extend(pending);
        out
    }

    #[test]
    fn continuation_corner_cases() {
        for text in [
            "a \\\\\n\n",
            "a\\ \\\n\nb",
            "\"x\\\"\\\n\"y\\\n z\\",
            "\\\n\\\n\\\n",
            "\"a\\\\\"=hex:00,\\\r\n  \"b\\\r\n  c\"\\\r\n",
            "x\\\r\n\r\n \t\\ \r\ny",
        ] {
            let got: Vec<(usize, String)> = logical_lines(text)
                .map(|(n, l)| (n, l.into_owned()))
                .collect();
            assert_eq!(got, logical_lines_quadratic(text), "{text:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2_000))]

        #[test]
        fn linear_joining_is_the_quadratic_one(text in "[a\"\\\\ \t\r\n]{0,60}") {
            let got: Vec<(usize, String)> = logical_lines(&text)
                .map(|(n, l)| (n, l.into_owned()))
                .collect();
            proptest::prop_assert_eq!(got, logical_lines_quadratic(&text));
        }
    }
}
