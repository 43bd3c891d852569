#!/usr/bin/env bash
# Peak RSS and wall time of the brain-diffuser steps that need no models, at NSD subject-1 size
# (see docs/fullsize-steps.md).
#
#   scripts/fullsize-steps.sh [DIR]        DIR defaults to /tmp/bd-fullsize (needs ~19 GB free)
#
# Builds the CLI and the fullsize_steps example in release, writes synthetic subject-1 data into
# DIR (what prepare and extract would have written: fMRI 8,859 + 982 x 15,724, features of the three
# groups, ROI patterns; ~14.3 GB), then runs each step under /usr/bin/time -v and prints a table.
# Environment: STEPS (default "fit predict weights-roi average") picks the steps, in order.
# `average` reconstructs after averaging, which needs models: it is run with an empty models folder,
# so it writes the average predictions and then stops with an error at model loading (expected).
# Nothing is deleted: remove DIR when done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-/tmp/bd-fullsize}"
STEPS="${STEPS:-fit predict weights-roi average}"
BIN="$ROOT/target/release/brain-diffuser"
GEN="$ROOT/target/release/examples/fullsize_steps"

if [[ ! -x /usr/bin/time ]]; then
  echo "installing GNU time (/usr/bin/time)" >&2
  apt-get install -y time >/dev/null
fi

cd "$ROOT"
cargo build --release -p brain-diffuser --bin brain-diffuser --example fullsize_steps
mkdir -p "$DIR/logs"
LOGS="$DIR/logs"

# timed NAME CMD...: runs CMD under /usr/bin/time -v, stderr to logs/NAME.log, resources to
# logs/NAME.time; records the load average before the step and the exit status.
timed() {
  local name="$1"
  shift
  echo "== $name: $* ($(date +%T), load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  cut -d' ' -f1-3 /proc/loadavg >"$LOGS/$name.load"
  local rc=0
  /usr/bin/time -v -o "$LOGS/$name.time" "$@" 2> >(tee "$LOGS/$name.log" >&2) || rc=$?
  echo "$rc" >"$LOGS/$name.rc"
  echo "   exit $rc, $(grep 'Elapsed' "$LOGS/$name.time" | sed 's/.*: //') wall," \
    "$(awk '/Maximum resident/ {printf "%.2f GiB", $NF / 1048576}' "$LOGS/$name.time") peak RSS" >&2
  return 0
}

timed generate "$GEN" "$DIR"
if [[ "$(cat "$LOGS/generate.rc")" != 0 ]]; then
  echo "data generation failed (see $LOGS/generate.log)" >&2
  exit 1
fi

CLI=("$BIN" --run "$DIR/run" --config "$DIR/config.toml" --subjects 1 --device cpu --models "$DIR/no-models")
for step in $STEPS; do
  timed "$step" "${CLI[@]}" "$step"
done

held() {
  case "$1" in
    generate) echo "X train+test f32; one 64-row feature chunk + loadings (16 x d)" ;;
    fit) echo "X f32 + centred X f64 + Gram f64; 8,192-column target blocks; test/ROI predictions 996 x d" ;;
    predict) echo "the subject cache (for the test ids); one group's raw test predictions (982 x d) and their renormalised copy" ;;
    weights-roi) echo "X f32 + centred X f64 + Gram + Cholesky factor; one 4,096-target weight block" ;;
    average) echo "predictions of the 3 groups (982 x 347,680), their f64 mean per group; then fails: no models" ;;
    *) echo "" ;;
  esac
}

echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"
printf '| %-11s | %8s | %8s | %8s | %14s | %4s | %-14s | %s |\n' step "wall s" "user s" "sys s" "peak RSS (GiB)" exit "load before" "what it held"
echo '|---|---:|---:|---:|---:|---:|---|---|'
for name in generate $STEPS; do
  t="$LOGS/$name.time"
  [[ -f "$t" ]] || continue
  wall=$(awk -F': ' '/Elapsed/ {n = split($2, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; printf "%.0f", s}' "$t")
  user=$(awk -F': ' '/User time/ {printf "%.0f", $2}' "$t")
  sys=$(awk -F': ' '/System time/ {printf "%.0f", $2}' "$t")
  rss=$(awk '/Maximum resident/ {printf "%.2f", $NF / 1048576}' "$t")
  printf '| %-11s | %8s | %8s | %8s | %14s | %4s | %-14s | %s |\n' \
    "$name" "$wall" "$user" "$sys" "$rss" "$(cat "$LOGS/$name.rc")" "$(cat "$LOGS/$name.load")" "$(held "$name")"
done
echo
echo "disk: $(du -sh "$DIR" | cut -f1) in $DIR (features $(du -sh "$DIR/run/subj01/features" | cut -f1))"
