#!/usr/bin/env bash
# Times the demo's `reconstruct` on a quiet machine, then under a concurrent 2-thread CPU load that
# this script starts and stops itself, and prints quiet s, loaded s and their ratio (the thread
# policy of docs/ARCHITECTURE.md, "Threads", keeps the ratio near what the lost CPU share explains).
#
#   scripts/load-check.sh [--reps N] [--load-threads N] [--keep DIR] [--bin PATH]
#
# It builds the release binary once, writes the demo, runs prepare, extract, fit and predict once,
# then each timed `reconstruct` runs in a fresh copy of that run folder. Environment variables pass
# through to the binary (e.g. BRAIN_DIFFUSER_THREADS=1, OMP_WAIT_POLICY=ACTIVE), so the same script
# compares policies. --keep DIR keeps the demo and its prepared run there (and reuses them next
# time); --bin PATH times that binary instead of building one. The quiet figure is only meaningful on an otherwise idle machine: the script
# prints the load average first and warns when it is 0.5 or more.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

reps=1
load_threads=2
keep=""
bin=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --reps) reps="$2"; shift 2 ;;
        --load-threads) load_threads="$2"; shift 2 ;;
        --keep) keep="$2"; shift 2 ;;
        --bin) bin="$2"; shift 2 ;;
        *) echo "usage: $0 [--reps N] [--load-threads N] [--keep DIR] [--bin PATH]" >&2; exit 2 ;;
    esac
done

if [[ -z "$bin" ]]; then
    scripts/ensure-libtorch.sh
    cargo build --release -p brain-diffuser --bin brain-diffuser
    bin="${CARGO_TARGET_DIR:-$PWD/target}/release/brain-diffuser"
fi

if [[ -n "$keep" ]]; then
    work="$keep"
    mkdir -p "$work"
else
    work="$(mktemp -d)"
fi
load_pids=()
stop_load() {
    for pid in "${load_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    load_pids=()
}
cleanup() {
    stop_load
    if [[ -z "$keep" ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT

bd() {
    "$bin" --config "$work/demo/config.toml" --nsd "$work/demo/nsd" --models "$work/demo/models" --device cpu "$@"
}

if [[ ! -f "$work/demo/config.toml" ]]; then
    "$bin" demo --out "$work/demo" > /dev/null
fi
if [[ ! -d "$work/base/subj01/predicted" ]]; then
    for step in prepare extract fit predict; do
        echo "demo: $step" >&2
        RUST_LOG=warn bd --run "$work/base" "$step"
    done
fi

# Seconds of one `reconstruct` in a fresh copy of the prepared run folder.
run_id=0
time_reconstruct() {
    run_id=$((run_id + 1))
    local run="$work/run-$run_id"
    rm -rf "$run"
    cp -a "$work/base" "$run"
    local start end
    start=$(date +%s.%N)
    RUST_LOG=warn bd --run "$run" reconstruct > /dev/null
    end=$(date +%s.%N)
    rm -rf "$run"
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }'
}

# The busy loops of the load: each runs at most 30 minutes even if this script is killed -9.
start_load() {
    for _ in $(seq "$load_threads"); do
        timeout 1800 sh -c 'while :; do :; done' &
        load_pids+=("$!")
    done
    sleep 1
}

echo "load average before measuring: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
if awk '{ exit !($1 >= 0.5) }' /proc/loadavg; then
    echo "warning: the machine is not quiet (1-minute load average >= 0.5); the quiet figure is inflated" >&2
fi

printf '%-4s %10s %10s %7s\n' rep quiet_s loaded_s ratio
for rep in $(seq "$reps"); do
    quiet=$(time_reconstruct)
    start_load
    loaded=$(time_reconstruct)
    stop_load
    ratio=$(awk -v q="$quiet" -v l="$loaded" 'BEGIN { printf "%.2f", l / q }')
    printf '%-4s %10s %10s %7s\n' "$rep" "$quiet" "$loaded" "$ratio"
done
echo "(demo reconstruct; load: $load_threads busy threads; cores: $(nproc);" \
    "BRAIN_DIFFUSER_THREADS=${BRAIN_DIFFUSER_THREADS:-unset} OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset}" \
    "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-unset})"
