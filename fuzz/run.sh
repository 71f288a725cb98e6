#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS seconds (default 60), one after the other,
# then prints the executions per target. New inputs go to fuzz/work/corpus/<target> (the committed
# seeds in fuzz/corpus/<target> are only read); crashes go to fuzz/artifacts/<target>.
#
#   fuzz/run.sh 600            # ten minutes each
#   fuzz/run.sh 5 sockaddr     # some targets only
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain; without nightly it
# falls back to the stable toolchain with RUSTC_BOOTSTRAP=1. Exits non-zero when a target crashed.
set -euo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  targets=(policy_reg policy_toml policy_json sockaddr capi advisor pool_snapshot)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz --locked)" >&2
  exit 2
fi
if cargo +nightly --version >/dev/null 2>&1; then
  fuzz=(cargo +nightly fuzz)
else
  echo "fuzz/run.sh: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1"
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

echo "building the fuzz targets..."
"${fuzz[@]}" build

failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/corpus/$t" "corpus/$t" "artifacts/$t"
  log="work/$t.log"
  start=$(date +%s)
  if "${fuzz[@]}" run "$t" "work/corpus/$t" "corpus/$t" -- \
      -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status="CRASH (see $log and artifacts/$t/)"
    failed=1
  fi
  took=$(( $(date +%s) - start ))
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' | tail -n 1 || true)
  summary+=("$(printf '%-14s %12s execs %6ss  %s' "$t" "${execs:-?}" "$took" "$status")")
  echo "${summary[-1]}"
done

echo
echo "fuzz/run.sh: $seconds s per target"
printf '%s\n' "${summary[@]}"
exit "$failed"
