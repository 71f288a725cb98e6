//! The Rust `std::net` twin of `cprobe.c` for the Wine end-to-end tests (built with
//! `rustc --target x86_64-pc-windows-gnu`): `rprobe server PORT TAG [ADDR]`, `rprobe client PORT`,
//! with the same output.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};

fn main() {
    let args: Vec<String> = std::env::args().collect();
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
