//! Reading a policy file the way every product must: bounded, regular files only, never blocking.
//!
//! A policy lists programs and ports: a few KiB. [`read`] refuses what is not a regular file (a
//! FIFO would block, `/dev/zero` would never end, a directory is a mistake) and anything larger
//! than [`MAX_BYTES`], and opens the file with `O_NONBLOCK` (Unix) so that opening a FIFO cannot
//! block either. [`load`] then reads it as TOML or, when it looks like one, a `regedit` export.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use ipvirt::{Policy, PolicyError, RegError};

/// The largest policy file read: 1 MiB.
pub const MAX_BYTES: u64 = 1 << 20;

/// Why a policy file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Not a regular file.
    #[error("{} is not a regular file (FIFOs, devices and directories are not read)", path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// Larger than the limit ([`MAX_BYTES`] for a policy).
    #[error("{} is larger than the {} a file of its kind may have ({len} bytes or more)", path.display(), size(*max))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length, or how much was read before giving up.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A TOML policy that is not UTF-8.
    #[error("{} is not UTF-8 text", path.display())]
    NotText {
        /// The file.
        path: PathBuf,
    },
    /// The TOML policy does not parse.
    #[error("{}: {source}", path.display())]
    Toml {
        /// The file.
        path: PathBuf,
        /// Why.
        source: PolicyError,
    },
    /// The registry export does not parse.
    #[error("{}: {source}", path.display())]
    Reg {
        /// The file.
        path: PathBuf,
        /// Why.
        source: RegError,
    },
}

/// `max` bytes in words (`1 MiB`).
fn size(max: u64) -> String {
    match max {
        m if m >= 1 << 20 && m % (1 << 20) == 0 => format!("{} MiB", m >> 20),
        m if m >= 1 << 10 && m % (1 << 10) == 0 => format!("{} KiB", m >> 10),
        m => format!("{m} bytes"),
    }
}

/// The formats a policy file can have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// TOML (DESIGN.md's policy file).
    Toml,
    /// A `regedit` export of the Microsoft and Citrix keys.
    Reg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Reg => "registry export",
        })
    }
}

/// A policy read from a file.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The policy.
    pub policy: Policy,
    /// The format it was read as.
    pub format: Format,
    /// What the reading found worth saying: ignored registry values, where each Microsoft value
    /// came from.
    pub notes: Vec<String>,
}

/// Reads the bytes of the policy file at `path`: a regular file of at most [`MAX_BYTES`].
///
/// # Errors
///
/// [`PolicyFileError::Io`], [`PolicyFileError::NotAFile`], [`PolicyFileError::TooLarge`].
pub fn read(path: &Path) -> Result<Vec<u8>, PolicyFileError> {
    read_regular(path, MAX_BYTES)
}

/// Reads the bytes of the regular file at `path`, of at most `max` bytes (any input a tool
/// reads whole: a policy, a socket-table snapshot), without blocking on a FIFO.
///
/// # Errors
///
/// As [`read`] ([`PolicyFileError::TooLarge`] past `max`).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, PolicyFileError> {
    let io = |source| PolicyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = match options.open(path) {
        Ok(f) => f,
        // Windows refuses to open a directory as a file: say what it is.
        Err(_) if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) => {
            return Err(PolicyFileError::NotAFile {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(PolicyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_big = |len| PolicyFileError::TooLarge {
        path: path.to_path_buf(),
        len,
        max,
    };
    if meta.len() > max {
        return Err(too_big(meta.len()));
    }
    // The file may grow between fstat and read: never read more than the cap (+1 to notice).
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Whether `bytes` (named `path`) look like a registry export: a `.reg` name, a UTF-16 byte-order
/// mark, or a `regedit` header.
pub fn looks_like_reg(path: &Path, bytes: &[u8]) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("reg"))
        || bytes.starts_with(&[0xFF, 0xFE])
        || bytes.starts_with(b"REGEDIT4")
        || bytes.starts_with(b"Windows Registry Editor")
}

/// Reads and parses the policy at `path`, as TOML or as a registry export.
///
/// # Errors
///
/// As [`read`], and [`PolicyFileError::NotText`], [`PolicyFileError::Toml`],
/// [`PolicyFileError::Reg`] for content that does not parse.
pub fn load(path: &Path) -> Result<Loaded, PolicyFileError> {
    let bytes = read(path)?;
    parse(path, &bytes)
}

/// Parses `bytes`, the content of `path` (which only names it in errors and tells a `.reg`).
///
/// # Errors
///
/// As [`load`].
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Loaded, PolicyFileError> {
    if looks_like_reg(path, bytes) {
        let import = Policy::from_reg(bytes).map_err(|source| PolicyFileError::Reg {
            path: path.to_path_buf(),
            source,
        })?;
        let mut notes: Vec<String> = import.diagnostics.iter().map(ToString::to_string).collect();
        let o = import.origins;
        for (name, origin) in [
            ("EnableVirtualIP", o.enabled),
            ("VirtualMode", o.mode),
            ("PerApp", o.programs),
            ("VIPAdapter", o.adapter),
            ("PromptOnIPLeaseFail", o.on_lease_failure),
        ] {
            if let Some(origin) = origin {
                notes.push(format!("{name} comes from the {origin:?} key"));
            }
        }
        return Ok(Loaded {
            policy: import.policy,
            format: Format::Reg,
            notes,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| PolicyFileError::NotText {
        path: path.to_path_buf(),
    })?;
    let policy = Policy::from_toml(text).map_err(|source| PolicyFileError::Toml {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Loaded {
        policy,
        format: Format::Toml,
        notes: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_big_files_are_refused() {
        assert!(matches!(
            read(Path::new("/")),
            Err(PolicyFileError::NotAFile { .. })
        ));
        #[cfg(unix)]
        assert!(matches!(
            read(Path::new("/dev/zero")),
            Err(PolicyFileError::NotAFile { .. })
        ));
        let dir = std::env::temp_dir().join(format!("ipvirt-policy-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.toml");
        std::fs::write(&big, vec![b'#'; (MAX_BYTES + 1) as usize]).unwrap();
        let e = read(&big).unwrap_err();
        assert!(e.to_string().contains("larger than the 1 MiB"), "{e}");
        assert!(
            matches!(read_regular(&big, 1 << 30), Ok(b) if b.len() == (MAX_BYTES + 1) as usize)
        );
        let ok = dir.join("ok.toml");
        std::fs::write(&ok, "[virtual_loopback]\nenabled = true\n").unwrap();
        let l = load(&ok).unwrap();
        assert!(l.policy.virtual_loopback.enabled);
        assert_eq!(l.format, Format::Toml);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "[virtual_loopback]\nenabld = true\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("bad.toml") && e.contains("enabld"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
