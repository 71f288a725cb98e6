//! `ipvirt kernel stats|detach`: the kernel layer's upkeep (crate `ipvirt-kernel`).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use ipvirt_kernel::{Layer, cgroup2_mount, lock, sys};

use crate::args::{KernelAction, KernelArgs};
use crate::{Outcome, say};

pub(crate) fn kernel(args: KernelArgs) -> Outcome {
    match args.action {
        KernelAction::Stats { window } => stats(&args.root, window),
        KernelAction::Detach => detach(&args.root),
    }
}

/// Whether the per-task cache is on, and each program's run statistics; with a window, only the
/// runs during it.
fn stats(root: &str, window: Option<Duration>) -> Outcome {
    let Some(layer) = Layer::find(root)? else {
        return Err(format!(
            "no kernel layer is attached at {}",
            cgroup2_mount()?.join(root).display()
        )
        .into());
    };
    let mut out = io::stdout().lock();
    let cache = match layer.task_cache_on() {
        Some(true) => "on",
        Some(false) => {
            "off (the kernel refused task storage in sock_addr programs, or IPVIRT_KERNEL_TASK_CACHE=off)"
        }
        None => "unknown (the kernel does not show the programs' .rodata)",
    };
    writeln!(
        out,
        "kernel layer {}: per-task cache {cache}",
        layer.root().display()
    )?;
    let mut counted = layer.run_stats()?;
    if let Some(w) = window {
        let _on = sys::enable_stats()
            .map_err(|e| format!("turning BPF statistics on (BPF_ENABLE_STATS): {e}"))?;
        let before = layer.run_stats()?;
        std::thread::sleep(w);
        counted = layer
            .run_stats()?
            .into_iter()
            .map(|(name, ns, runs)| {
                let (ns0, runs0) = before
                    .iter()
                    .find(|(n, _, _)| *n == name)
                    .map_or((0, 0), |(_, a, b)| (*a, *b));
                (name, ns.saturating_sub(ns0), runs.saturating_sub(runs0))
            })
            .collect();
    }
    for (name, ns, runs) in counted {
        let avg = if runs == 0 {
            "-".to_string()
        } else {
            format!("{:.1}", ns as f64 / runs as f64)
        };
        writeln!(
            out,
            "program {name} runs={runs} run_time_ns={ns} ns_per_run={avg}"
        )?;
    }
    let enabled = std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled")
        .is_ok_and(|v| v.trim() == "1");
    if !enabled && window.is_none() {
        say(
            "runs are counted only while kernel.bpf_stats_enabled = 1 (sysctl -w \
             kernel.bpf_stats_enabled=1; counting costs a few tens of ns per run itself) or a \
             BPF_ENABLE_STATS descriptor is open (ipvirt kernel stats --for SECS)",
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Detaches the kernel layer at the root and removes its cgroups.
fn detach(root: &str) -> Outcome {
    let _lock = lock()?;
    match Layer::find(root)? {
        Some(layer) => {
            let dir = layer.root().to_path_buf();
            layer.detach()?;
            say(&format!("kernel layer detached from {}", dir.display()));
        }
        None => {
            // Nothing attached: remove an empty root left behind, if any.
            let dir = cgroup2_mount()?.join(root);
            if dir.exists() {
                std::fs::remove_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            say(&format!("no kernel layer is attached at {}", dir.display()));
        }
    }
    Ok(ExitCode::SUCCESS)
}
