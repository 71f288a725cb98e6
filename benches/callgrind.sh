#!/usr/bin/env bash
# Instructions per call (valgrind --tool=callgrind), for each call of benches/instructions.rs:
# (instructions with ROUNDS rounds - instructions with none) / (ROUNDS * 4096).
# usage: benches/callgrind.sh [ROUNDS]    (needs valgrind: apt-get install valgrind)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
cargo bench --bench instructions --no-run 2>/dev/null
bin=$(ls -t target/release/deps/instructions-* | grep -v '\.d$' | head -n 1)
ir() {
  local out
  out=$(mktemp)
  CALL=$1 ROUNDS=$2 valgrind --tool=callgrind --callgrind-out-file="$out" "$bin" >/dev/null 2>&1
  awk '/^summary:/ {print $2}' "$out"
  rm -f "$out"
}
base=$(ir none 0)
printf '%-16s %s\n' call instructions/call
for call in bind connect send_to reported resolved reverse_lookup raw_bind raw_connect; do
  n=$(ir "$call" "$rounds")
  awk -v n="$n" -v b="$base" -v r="$rounds" -v c="$call" 'BEGIN { printf "%-16s %.1f\n", c, (n - b) / (r * 4096) }'
done
