#!/usr/bin/env bash
# GPU check of the versatile-diffusion crate (see docs/gpu-check.md).
#
#   scripts/gpu-check.sh --prepare            on the x86-64 build machine (has cargo): build the test and
#                                             bench binaries and put them, stripped, in target/gpu-check/
#   scripts/gpu-check.sh                      on the CUDA machine (PyTorch 2.11, no Rust): run the parity
#                                             tests on CUDA, then time a 37-step 512x512 f16 img2img and one
#                                             U-Net step against diffusers on the same card; print a table
#   scripts/gpu-check.sh --dry-run            the same on the CPU at a tiny size, to check the script itself
#
# Environment: PYTHON (default python3) is the Python whose torch provides libtorch (and diffusers for the
# reference timings); BUNDLE (default target/gpu-check) is where --prepare puts the binaries.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${BUNDLE:-$ROOT/target/gpu-check}"
PYTHON="${PYTHON:-python3}"
MODE="run"
case "${1:-}" in
  --prepare) MODE="prepare" ;;
  --dry-run) MODE="dry-run" ;;
  "") ;;
  *) echo "usage: $0 [--prepare | --dry-run]" >&2; exit 2 ;;
esac

if [[ "$MODE" == "prepare" ]]; then
  cd "$ROOT"
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/tests"
  # Test binaries (dev profile) and the speed bench (bench profile); cargo prints their paths as JSON.
  cargo test -p versatile-diffusion --no-run --message-format=json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["kind"][0] in ("test","lib") and m["profile"]["test"] and m.get("executable"): print(m["executable"])' \
    | while read -r exe; do cp "$exe" "$BUNDLE/tests/$(basename "$exe" | sed 's/-[0-9a-f]*$//')"; done
  cargo bench -p versatile-diffusion --bench vd_speed --no-run --message-format=json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="vd_speed" and m.get("executable"): print(m["executable"])' \
    | while read -r exe; do cp "$exe" "$BUNDLE/vd_speed"; done
  cargo build -p versatile-diffusion --bin vd-convert --message-format=json 2>/dev/null \
    | "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]=="vd-convert" and m.get("executable"): print(m["executable"])' \
    | while read -r exe; do cp "$exe" "$BUNDLE/vd-convert"; done
  strip --strip-debug "$BUNDLE"/tests/* "$BUNDLE/vd_speed" "$BUNDLE/vd-convert" 2>/dev/null || true
  ls -la "$BUNDLE" "$BUNDLE/tests"
  du -sh "$BUNDLE"
  echo "prepared $BUNDLE: carry it (with the repository: tools/ and crates/versatile-diffusion/tests/fixtures) to the CUDA machine"
  exit 0
fi

[[ -x "$BUNDLE/vd_speed" && -x "$BUNDLE/vd-convert" && -d "$BUNDLE/tests" ]] || { echo "no binaries in $BUNDLE: run $0 --prepare on the build machine" >&2; exit 1; }
TORCH_LIB="$("$PYTHON" -c 'import os,torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VD_FIXTURES="$ROOT/crates/versatile-diffusion/tests/fixtures"
export VD_BENCH_SCRIPT="$ROOT/tools/versatile-diffusion/bench.py"
export VD_CONVERT_BIN="$BUNDLE/vd-convert"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| CUDA:", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
HAVE_DIFFUSERS=1
"$PYTHON" -c 'import diffusers' 2>/dev/null || HAVE_DIFFUSERS=0

if [[ "$MODE" == "dry-run" ]]; then
  DEVICE=cpu DTYPE=f32 TEST_DEVICE=cpu
  UNET_ARGS=(--channels 32,64,128,128 --latent 16 --iters 1)
  I2I_ARGS=(--channels 32,64,128,128 --vae-channels 32,32,64,64 --latent 16 --steps 10 --iters 1)
  I2I_LABEL="img2img tiny 64x64, 7 of 10 steps" UNET_LABEL="one tiny U-Net step, batch 2"
else
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || { echo "no CUDA device visible to torch" >&2; exit 1; }
  DEVICE=cuda DTYPE=f16 TEST_DEVICE=cuda
  UNET_ARGS=(--iters 5)
  I2I_ARGS=(--iters 2)
  I2I_LABEL="img2img 512x512, 37 of 50 steps" UNET_LABEL="one U-Net step, 64x64, batch 2"
fi

declare -a ROWS=() BENCH_ROWS=()
FAILED=0
START=$SECONDS
for t in "$BUNDLE"/tests/*; do
  name="$(basename "$t")"
  t0=$SECONDS
  if VD_TEST_DEVICE="$TEST_DEVICE" timeout 180 "$t" --test-threads=1 >"/tmp/gpu-check-$name.log" 2>&1; then
    ROWS+=("| test $name ($TEST_DEVICE) | pass | $(grep -o '[0-9]* passed' "/tmp/gpu-check-$name.log" | head -1), $((SECONDS - t0)) s |")
  else
    FAILED=1
    ROWS+=("| test $name ($TEST_DEVICE) | FAIL | see /tmp/gpu-check-$name.log |")
    tail -20 "/tmp/gpu-check-$name.log"
  fi
done

bench() {  # $1 = label, rest = arguments of vd_speed
  local label="$1"; shift
  local py_args=()
  [[ "$HAVE_DIFFUSERS" == 1 ]] && py_args=(--python "$PYTHON")
  if out="$(timeout 300 "$BUNDLE/vd_speed" --device "$DEVICE" --dtype "$DTYPE" "${py_args[@]}" "$@" 2>/tmp/gpu-check-bench.err)"; then
    echo "$out"
    while IFS= read -r line; do
      if [[ "$line" == "| ours"* || "$line" == "| diffusers"* ]]; then BENCH_ROWS+=("| $label ${line}"); fi
    done <<<"$out"
  else
    FAILED=1
    BENCH_ROWS+=("| $label | FAIL: $(tail -1 /tmp/gpu-check-bench.err) | | | |")
    tail -20 /tmp/gpu-check-bench.err
  fi
}
bench "$I2I_LABEL, $DTYPE" --mode img2img "${I2I_ARGS[@]}"
bench "$UNET_LABEL, $DTYPE" --mode unet-step "${UNET_ARGS[@]}"

echo
echo "## versatile-diffusion GPU check ($MODE, $((SECONDS - START)) s)"
[[ "$HAVE_DIFFUSERS" == 1 ]] || echo "diffusers is not importable by $PYTHON: reference timings were not run"
echo "| test binary | result | detail |"
echo "|---|---|---|"
printf '%s\n' "${ROWS[@]}"
echo
echo "| run ($DEVICE) | implementation | median s | min s | vs diffusers |"
echo "|---|---|---|---|---|"
printf '%s\n' "${BENCH_ROWS[@]}"
exit "$FAILED"
