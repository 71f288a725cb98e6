//! The `bpf(2)` commands the kernel layer needs beyond loading (which `aya` does): the classic
//! cgroup attachment (it outlives the loader), queries, and map access by id, so a second launcher
//! finds the programs and maps the first one attached without any pinning or bpffs.

#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_ENABLE_STATS: libc::c_long = 32;

/// `BPF_F_ALLOW_MULTI`: other tools may attach programs of the same type beside ours.
pub const BPF_F_ALLOW_MULTI: u32 = 2;

/// `union bpf_attr` as bytes (144 on Linux 6.x; the kernel accepts a shorter, zero-tailed one).
#[repr(C, align(8))]
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }
    fn u32(mut self, at: usize, v: u32) -> Attr {
        self.0[at..at + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(mut self, at: usize, v: u64) -> Attr {
        self.0[at..at + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn get_u32(&self, at: usize) -> u32 {
        u32::from_ne_bytes(self.0[at..at + 4].try_into().unwrap_or([0; 4]))
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<libc::c_long> {
    // SAFETY: attr is a valid, writable bpf_attr of the size passed; the kernel reads and writes
    // within it, and pointers stored inside it point to live buffers of the caller.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut Attr as *mut libc::c_void,
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd_of(r: libc::c_long) -> OwnedFd {
    // SAFETY: r is a file descriptor the kernel just returned to us, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

/// `BPF_PROG_ATTACH`: attaches `prog` to the cgroup `cgroup` for `attach_type`.
pub fn prog_attach(cgroup: RawFd, prog: RawFd, attach_type: u32, flags: u32) -> io::Result<()> {
    let mut a = Attr::new()
        .u32(0, cgroup as u32)
        .u32(4, prog as u32)
        .u32(8, attach_type)
        .u32(12, flags);
    bpf(BPF_PROG_ATTACH, &mut a).map(drop)
}

/// `BPF_PROG_DETACH` of one program.
pub fn prog_detach(cgroup: RawFd, prog: RawFd, attach_type: u32) -> io::Result<()> {
    let mut a = Attr::new()
        .u32(0, cgroup as u32)
        .u32(4, prog as u32)
        .u32(8, attach_type);
    bpf(BPF_PROG_DETACH, &mut a).map(drop)
}

/// `BPF_PROG_QUERY`: the ids of the programs attached to the cgroup itself for `attach_type`.
pub fn prog_query(cgroup: RawFd, attach_type: u32) -> io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    let mut a = Attr::new()
        .u32(0, cgroup as u32)
        .u32(4, attach_type)
        .u64(16, ids.as_mut_ptr() as u64)
        .u32(24, ids.len() as u32);
    bpf(BPF_PROG_QUERY, &mut a)?;
    let n = (a.get_u32(24) as usize).min(ids.len());
    ids.truncate(n);
    Ok(ids)
}

/// `BPF_PROG_GET_FD_BY_ID`.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new().u32(0, id);
    bpf(BPF_PROG_GET_FD_BY_ID, &mut a).map(fd_of)
}

/// `BPF_MAP_GET_FD_BY_ID`.
pub fn map_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut a = Attr::new().u32(0, id);
    bpf(BPF_MAP_GET_FD_BY_ID, &mut a).map(fd_of)
}

fn info(fd: RawFd, buf: &mut [u8]) -> io::Result<()> {
    let mut a = Attr::new()
        .u32(0, fd as u32)
        .u32(4, buf.len() as u32)
        .u64(8, buf.as_mut_ptr() as u64);
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a).map(drop)
}

fn name_of(bytes: &[u8]) -> String {
    CStr::from_bytes_until_nul(bytes)
        .map(|c| c.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// A program's name (`bpf_prog_info.name`, at most 15 bytes) and the ids of the maps it uses.
pub fn prog_info(fd: RawFd) -> io::Result<(String, Vec<u32>)> {
    let mut map_ids = vec![0u32; 16];
    // struct bpf_prog_info: nr_map_ids at 52, map_ids at 56, name[16] at 64 (232 bytes).
    let mut buf = [0u8; 232];
    buf[52..56].copy_from_slice(&(map_ids.len() as u32).to_ne_bytes());
    buf[56..64].copy_from_slice(&(map_ids.as_mut_ptr() as u64).to_ne_bytes());
    info(fd, &mut buf)?;
    let n = u32::from_ne_bytes(buf[52..56].try_into().unwrap_or([0; 4])) as usize;
    map_ids.truncate(n.min(16));
    Ok((name_of(&buf[64..80]), map_ids))
}

/// A program's run statistics: (`run_time_ns`, `run_cnt`) of `bpf_prog_info`. They grow only
/// while statistics are enabled ([`enable_stats`] or `kernel.bpf_stats_enabled = 1`).
pub fn prog_run_stats(fd: RawFd) -> io::Result<(u64, u64)> {
    // struct bpf_prog_info: run_time_ns at 192, run_cnt at 200 (232 bytes).
    let mut buf = [0u8; 232];
    info(fd, &mut buf)?;
    let at = |o: usize| u64::from_ne_bytes(buf[o..o + 8].try_into().unwrap_or([0; 8]));
    Ok((at(192), at(200)))
}

/// Loads the smallest `sock_addr` program there is for `attach_type`: `r0 = 1; exit` (allow the
/// call, change nothing). The `preload` bench attaches it to measure what the kernel's cgroup-BPF
/// hook costs by itself, the floor under any program.
#[allow(dead_code)] // the launcher does not use it; the bench does
pub fn load_pass_program(attach_type: u32) -> io::Result<OwnedFd> {
    const BPF_PROG_TYPE_CGROUP_SOCK_ADDR: u32 = 18;
    // mov64 r0, 1 ; exit
    let insns: [u8; 16] = [0xb7, 0, 0, 0, 1, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0];
    let license = c"GPL";
    // union bpf_attr for BPF_PROG_LOAD: prog_type 0, insn_cnt 4, insns 8, license 16,
    // expected_attach_type 68.
    let mut a = Attr::new()
        .u32(0, BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
        .u32(4, 2)
        .u64(8, insns.as_ptr() as u64)
        .u64(16, license.as_ptr() as u64)
        .u32(68, attach_type);
    bpf(BPF_PROG_LOAD, &mut a).map(fd_of)
}

/// `BPF_ENABLE_STATS` (`BPF_STATS_RUN_TIME`): every program's run time and count are kept while
/// the returned descriptor is open.
pub fn enable_stats() -> io::Result<OwnedFd> {
    let mut a = Attr::new().u32(0, 0);
    bpf(BPF_ENABLE_STATS, &mut a).map(fd_of)
}

/// A map's name (`bpf_map_info.name`) and its value size.
pub fn map_info(fd: RawFd) -> io::Result<(String, u32)> {
    // struct bpf_map_info: value_size at 12, name[16] at 24 (88 bytes).
    let mut buf = [0u8; 88];
    info(fd, &mut buf)?;
    let value_size = u32::from_ne_bytes(buf[12..16].try_into().unwrap_or([0; 4]));
    Ok((name_of(&buf[24..40]), value_size))
}

/// A map opened by id, with typed element access (keys and values as plain bytes).
#[derive(Debug)]
pub struct Map {
    fd: OwnedFd,
}

impl Map {
    /// The map behind `fd`.
    pub fn new(fd: OwnedFd) -> Map {
        Map { fd }
    }

    /// Writes `value` at `key` (`BPF_MAP_UPDATE_ELEM`, any flags).
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut a = Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_ptr() as u64);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a).map(drop)
    }

    /// The value of `key`, into `value`; `Ok(false)` when the key is absent.
    pub fn lookup(&self, key: &[u8], value: &mut [u8]) -> io::Result<bool> {
        let mut a = Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, key.as_ptr() as u64)
            .u64(16, value.as_mut_ptr() as u64);
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut a) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// A second descriptor of the map (`dup`), for a reader that owns it.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// The map's descriptor.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Deletes `key`; `Ok(false)` when it was absent.
    pub fn delete(&self, key: &[u8]) -> io::Result<bool> {
        let mut a = Attr::new()
            .u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, key.as_ptr() as u64);
        match bpf(BPF_MAP_DELETE_ELEM, &mut a) {
            Ok(_) => Ok(true),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key of a hash map (`key_len` bytes each).
    pub fn keys(&self, key_len: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut next = vec![0u8; key_len];
            let prev = out.last().cloned();
            let mut a = Attr::new()
                .u32(0, self.fd.as_raw_fd() as u32)
                .u64(8, prev.as_ref().map_or(0, |k| k.as_ptr() as u64))
                .u64(16, next.as_mut_ptr() as u64);
            match bpf(BPF_MAP_GET_NEXT_KEY, &mut a) {
                Ok(_) => out.push(next),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
                Err(e) => return Err(e),
            }
            if out.len() > 1_000_000 {
                return Err(io::Error::other("map iteration does not end"));
            }
        }
    }
}
