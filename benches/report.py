#!/usr/bin/env python3
"""Summarise criterion results as a table of ns/op and ratios to each group's baseline.

Usage: cargo bench --bench NAME; python3 benches/report.py [GROUP_PREFIX...]
Reads target/criterion/<group>/<bench>/new/estimates.json (CARGO_TARGET_DIR respected); the
baseline of a group is the bench whose name starts with "baseline", its floor (a hand-written
version of the same rule) the one starting with "floor". A bench with a throughput of N elements
(a batch) is reported per element.
"""
import json, os, sys
from pathlib import Path

root = Path(os.environ.get("CARGO_TARGET_DIR", "target")) / "criterion"
prefixes = sys.argv[1:]
rows = []
for group in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "report"):
    if prefixes and not any(group.name.startswith(x) for x in prefixes):
        continue
    est = {}
    for f in group.rglob("new/estimates.json"):
        name = str(f.parent.parent.relative_to(group))
        ns = json.loads(f.read_text())["median"]["point_estimate"]
        # Per element when the bench declares a throughput of N elements (a batch).
        bench = f.parent / "benchmark.json"
        if bench.exists():
            tp = json.loads(bench.read_text()).get("throughput") or {}
            n = tp.get("Elements")
            if n:
                ns /= n
        est[name] = ns
    base = next((v for k, v in est.items() if k.startswith("baseline")), None)
    floor = next((v for k, v in est.items() if k.startswith("floor")), None)
    for name, ns in sorted(est.items(), key=lambda kv: (not kv[0].startswith("baseline"), kv[0])):
        ratio = f"{ns / base:.2f}x" if base else "-"
        vs_floor = f"{ns / floor:.2f}x" if floor else "-"
        rows.append((group.name, name, f"{ns:.2f}", ratio, vs_floor))
head = ("group", "bench", "ns/op (per element in a batch)", "vs baseline", "vs floor")
w = [max(len(r[i]) for r in rows + [head]) for i in range(5)]
print(" | ".join(h.ljust(w[i]) for i, h in enumerate(head)))
for r in rows:
    print(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)))
