//! The C ABI called from Rust with arbitrary policies, plans, sessions, buffers and lengths,
//! including NULL pointers, buffers shorter than an address, lengths above `isize::MAX` (with a
//! real, small buffer behind them) and one buffer passed as both `dest` and `source`: every call
//! returns a status (no panic reaches the fuzzer: a caught one would be IPVIRT_PANIC, which fails
//! here), outputs are written only on IPVIRT_OK, nothing is written past a buffer's length, a huge
//! length is never OK, and overlapping buffers are refused untouched.
#![no_main]

use std::ptr;

use arbitrary::Arbitrary;
use ipvirt::capi::*;
use libfuzzer_sys::fuzz_target;

const GOOD_POLICY: &str = r#"
[virtual_loopback]
enabled = true
programs = ["crm.exe", "lo.exe"]
excluded_ports = [27000]
isolate = true

[virtual_ip]
enabled = true
programs = ["crm.exe"]
adapter = "192.0.2.0/24"
pool = ["192.0.2.100-192.0.2.199"]
on_lease_failure = "no-connectivity"
"#;

/// A buffer argument: NULL with a length, a real buffer passed with a length up to its size, or a
/// real buffer passed with a length above `isize::MAX` (which ipvirt must refuse unread).
#[derive(Debug, Arbitrary)]
enum Buf {
    Null(u8),
    Some { bytes: Vec<u8>, short_by: u8 },
    Huge { bytes: Vec<u8>, extra: u8 },
}

const HUGE: usize = isize::MAX as usize + 1;

impl Buf {
    /// Pointer and the length passed to ipvirt.
    fn parts(&mut self) -> (*mut u8, usize) {
        match self {
            Buf::Null(n) => (ptr::null_mut(), usize::from(*n % 4)),
            Buf::Some { bytes, short_by } => {
                let len = bytes.len().saturating_sub(usize::from(*short_by));
                (bytes.as_mut_ptr(), len)
            }
            Buf::Huge { bytes, extra } => (bytes.as_mut_ptr(), HUGE + usize::from(*extra)),
        }
    }

    /// The bytes really there (to check that nothing changed).
    fn real(&self) -> Vec<u8> {
        match self {
            Buf::Null(_) => vec![],
            Buf::Some { bytes, .. } | Buf::Huge { bytes, .. } => bytes.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Call {
    Bind { dual_stack: u32 },
    Connect,
    SendTo,
    Reported,
}

#[derive(Debug, Arbitrary)]
struct Input {
    policy: Option<String>,
    servers: Buf,
    err: Buf,
    status: u32,
    image: Buf,
    use_plan: bool,
    plan: [u8; 6],
    entries: [u32; 3],
    session_id: u32,
    session_kind: u32,
    vip: Buf,
    calls: Vec<(Call, u32, Buf, Buf, bool, Option<u8>)>,
}

fn ok_or_untouched(st: ipvirt_status, before: &[u8], after: &[u8]) {
    assert_ne!(st, ipvirt_status::IPVIRT_PANIC);
    if st != ipvirt_status::IPVIRT_OK {
        assert_eq!(before, after, "{st:?} wrote");
    }
}

fuzz_target!(|input: Input| {
    let mut input = input;
    // ipvirt_status_message: any status, any buffer.
    let (p, l) = input.err.parts();
    let mut needed = usize::MAX;
    // SAFETY: p is NULL or valid for l bytes.
    let st = unsafe { ipvirt_status_message(input.status, p.cast(), l, &mut needed) };
    assert_ne!(st, ipvirt_status::IPVIRT_PANIC);
    if l >= HUGE {
        assert_eq!(st, ipvirt_status::IPVIRT_INVALID_ARGUMENT);
    } else if !p.is_null() && l > 0 {
        // SAFETY: p is valid for l bytes.
        let s = unsafe { std::slice::from_raw_parts(p, l) };
        assert!(s.contains(&0), "the message is NUL-terminated");
    }

    let text = input.policy.as_deref().unwrap_or(GOOD_POLICY);
    let (sp, sl) = input.servers.parts();
    let (ep, el) = input.err.parts();
    let mut engine: *mut ipvirt_engine = ptr::null_mut();
    let mut err_needed = 0usize;
    // SAFETY: every pointer is NULL or valid for its length.
    let st = unsafe {
        ipvirt_engine_new(
            text.as_ptr(),
            text.len(),
            sp,
            sl,
            &mut engine,
            ep.cast(),
            el,
            &mut err_needed,
        )
    };
    assert_ne!(st, ipvirt_status::IPVIRT_PANIC);
    if sl >= HUGE || el >= HUGE {
        assert_ne!(st, ipvirt_status::IPVIRT_OK);
    }
    if st != ipvirt_status::IPVIRT_OK {
        assert!(engine.is_null());
        return;
    }

    let (ip, il) = input.image.parts();
    let mut plan = ipvirt_plan {
        loopback: input.plan[0],
        virtual_ip: input.plan[1],
        prefer_loopback: input.plan[2],
        loopback_reason: input.plan[3],
        virtual_ip_reason: input.plan[4],
        prefer_loopback_reason: input.plan[5],
        loopback_entry: input.entries[0],
        virtual_ip_entry: input.entries[1],
        prefer_loopback_entry: input.entries[2],
    };
    if input.use_plan {
        let before = plan;
        // SAFETY: engine is live; ip is NULL or valid for il bytes; plan is valid.
        let st = unsafe { ipvirt_engine_process(engine, ip, il, &mut plan) };
        assert_ne!(st, ipvirt_status::IPVIRT_PANIC);
        if il >= HUGE {
            assert_eq!(st, ipvirt_status::IPVIRT_INVALID_ARGUMENT);
        }
        if st != ipvirt_status::IPVIRT_OK {
            assert_eq!(plan, before, "{st:?} wrote the plan");
        }
    }
    let (vp, vl) = input.vip.parts();
    let mut rw: *mut ipvirt_rewriter = ptr::null_mut();
    // SAFETY: engine is live; vp NULL or valid for vl bytes.
    let st = unsafe {
        ipvirt_rewriter_new(
            engine,
            input.session_id,
            input.session_kind,
            &plan,
            vp,
            vl,
            &mut rw,
        )
    };
    assert_ne!(st, ipvirt_status::IPVIRT_PANIC);
    // The rewriter keeps the engine alive.
    // SAFETY: engine is live and freed once.
    unsafe { ipvirt_engine_free(engine) };
    if st != ipvirt_status::IPVIRT_OK {
        assert!(rw.is_null());
        return;
    }

    for (call, layout, mut dest, mut source, null_out, overlap) in input.calls {
        let (dp, dl) = dest.parts();
        let (mut sp, mut sl) = source.parts();
        let real_dest = dest.real();
        let real_source = source.real();
        // One buffer as both: the source is a part of the destination's real bytes.
        let overlapping = match overlap {
            Some(off) if !dp.is_null() && !real_dest.is_empty() && dl < HUGE => {
                let off = usize::from(off) % real_dest.len();
                // SAFETY: off < the real length of dest.
                sp = unsafe { dp.add(off) };
                sl = (real_dest.len() - off).min(sl.max(1));
                true
            }
            _ => false,
        };
        let mut changed = 7u32;
        let mut written = 7usize;
        let out_changed: *mut u32 = if null_out {
            ptr::null_mut()
        } else {
            &mut changed
        };
        // SAFETY: rw is live; every buffer NULL, or valid for its length, or given a length above
        // isize::MAX (refused before use).
        let st = unsafe {
            match call {
                Call::Bind { dual_stack } => {
                    ipvirt_rewriter_bind(rw, dp, dl, layout, dual_stack, out_changed)
                }
                Call::Connect => {
                    ipvirt_rewriter_connect(rw, dp, dl, layout, sp, sl, &mut written, out_changed)
                }
                Call::SendTo => {
                    ipvirt_rewriter_sendto(rw, dp, dl, layout, sp, sl, &mut written, out_changed)
                }
                Call::Reported => ipvirt_rewriter_reported(rw, dp, dl, layout, out_changed),
            }
        };
        ok_or_untouched(st, &real_dest, &dest.real());
        ok_or_untouched(st, &real_source, &source.real());
        let two_buffers = matches!(call, Call::Connect | Call::SendTo);
        if dl >= HUGE || (two_buffers && sl >= HUGE) {
            assert_ne!(st, ipvirt_status::IPVIRT_OK, "a huge length was accepted");
        }
        if two_buffers && overlapping {
            assert_ne!(
                st,
                ipvirt_status::IPVIRT_OK,
                "overlapping dest and source were accepted"
            );
        }
        if st == ipvirt_status::IPVIRT_OK {
            assert!(changed <= 1);
            if two_buffers {
                assert!(written == 0 || written == 16 || written == 28);
                assert!(written <= sl);
            }
        } else {
            assert_eq!((changed, written), (7, 7), "{st:?} wrote an output");
        }
    }
    // SAFETY: rw is live and freed once.
    unsafe { ipvirt_rewriter_free(rw) };
});
