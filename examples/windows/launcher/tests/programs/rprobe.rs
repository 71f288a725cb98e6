//! The Rust `std::net` twin of `cprobe.c` for the Wine end-to-end tests (built with
//! `rustc --target x86_64-pc-windows-gnu`): `rprobe server PORT TAG [ADDR]`, `rprobe client PORT`,
//! `rprobe spawn HOW COMMAND...`, with the same output. Its `spawn create` starts the child with
//! `std::process::Command` and an environment of its own (cleared, `SystemRoot` and `PATH` put
//! back, `IPVIRT_SESSION=99` set: a child cannot leave its session that way); `spawn cmd` runs
//! `cmd.exe /c COMMAND`, `spawn system` the C runtime's `system()`.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;

extern "C" {
    /// The C runtime's `system()`.
    fn system(command: *const std::ffi::c_char) -> i32;
}

/// Runs `command` as a child `how` says; its exit code.
fn spawn(how: &str, command: &[String]) -> i32 {
    let status = match how {
        "create" => {
            let mut c = Command::new(&command[0]);
            c.args(&command[1..]).env_clear().env("IPVIRT_SESSION", "99");
            for keep in ["SystemRoot", "PATH"] {
                if let Some(v) = std::env::var_os(keep) {
                    c.env(keep, v);
                }
            }
            c.status()
        }
        "cmd" => Command::new("cmd.exe").arg("/c").args(command).status(),
        "system" => {
            let line = std::ffi::CString::new(command.join(" ")).expect("a command");
            // SAFETY: line is NUL-terminated.
            return unsafe { system(line.as_ptr()) };
        }
        _ => std::process::exit(2),
    };
    match status {
        Ok(s) => s.code().unwrap_or(1),
        Err(e) => {
            println!("error CreateProcess {}", e.raw_os_error().unwrap_or(0));
            1
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("spawn") && args.len() >= 4 {
        let l = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        println!("spawner {}", l.local_addr().expect("getsockname"));
        std::process::exit(spawn(&args[2], &args[3..]));
    }
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).expect("a port");
    match args.get(1).map(String::as_str) {
        Some("server") => {
            let addr = args.get(4).map_or("127.0.0.1", String::as_str);
            let l = TcpListener::bind((addr, port)).expect("bind");
            println!("bound {}", l.local_addr().expect("getsockname"));
            println!("ready");
            let (mut c, from) = l.accept().expect("accept");
            println!("accepted {from}");
            println!("peer {}", c.peer_addr().expect("getpeername"));
            c.write_all(args.get(3).expect("a tag").as_bytes()).expect("send");
            c.shutdown(Shutdown::Write).expect("shutdown");
            let _ = c.read(&mut [0u8; 16]);
        }
        Some("client") => {
            let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            println!("local {}", s.local_addr().expect("getsockname"));
            println!("peer {}", s.peer_addr().expect("getpeername"));
            let mut got = String::new();
            s.read_to_string(&mut got).expect("recv");
            println!("got {got}");
        }
        _ => std::process::exit(2),
    }
}
