#!/usr/bin/env bash
# Rebuilds the kernel layer's BPF object from its source:
#   examples/kernel/bpf/ipvirt.bpf.c + rules.h + src/ipvirt.h  ->  examples/kernel/bpf/ipvirt.bpf.o
# The object is committed (ipvirt-kernel embeds it, so users need no clang); CI rebuilds it and
# fails when it differs from the committed one (examples/kernel/tests/rules.rs,
# `committed_object_matches_its_source`).
# Needs clang (Debian's clang 14 built the committed object). The output is reproducible: paths in
# the debug information are relative (-fdebug-compilation-dir=.).
#
#   examples/kernel/bpf/build.sh [OUTPUT]     (default: examples/kernel/bpf/ipvirt.bpf.o)
set -euo pipefail
cd "$(dirname "$0")"
out="${1:-ipvirt.bpf.o}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
multiarch="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
exec clang -O2 -g -target bpf -mcpu=v3 -ffreestanding -fdebug-compilation-dir=. \
  -Wall -Werror \
  -I ../../../src -I "/usr/include/$multiarch" \
  -c ipvirt.bpf.c -o "$out"
