#!/usr/bin/env bash
# GPU check of the versatile-diffusion crate (see docs/gpu-check.md).
#
#   scripts/gpu-check.sh --prepare            on the x86-64 build machine (has cargo): build the test and
#                                             bench binaries and put them, stripped, in target/gpu-check/
#   scripts/gpu-check.sh                      on the CUDA machine (PyTorch 2.11, no Rust): run the parity
#                                             tests on CUDA, time one U-Net step and the workflow's whole
#                                             extract + reconstruct step (f16, bf16) against diffusers and
#                                             the reference loops on the same card; print the tables
#   scripts/gpu-check.sh --dry-run            the same on the CPU at a tiny size, to check the script itself
#
# Environment: PYTHON (default python3) is the Python whose torch provides libtorch (and diffusers for the
# reference timings); BUNDLE (default target/gpu-check) is where --prepare puts the binaries; BENCH_PROFILE
# (default bench) is the cargo profile of the two benches (dev reuses a test build, for a dry run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUNDLE="${BUNDLE:-$ROOT/target/gpu-check}"
PYTHON="${PYTHON:-python3}"
BENCH_PROFILE="${BENCH_PROFILE:-bench}"
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
  # `built NAME CARGO-ARGS...` runs cargo with JSON messages and copies the executable of target NAME
  # to the bundle under that name.
  built() {
    local name="$1"; shift
    cargo "$@" --message-format=json 2>/dev/null \
      | "$PYTHON" -c 'import json,sys
for l in sys.stdin:
    m=json.loads(l)
    if m.get("reason")=="compiler-artifact" and m["target"]["name"]==sys.argv[1] and m.get("executable"): print(m["executable"])' "$name" \
      | while read -r exe; do cp "$exe" "$BUNDLE/$name"; done
  }
  built vd_speed bench -p versatile-diffusion --bench vd_speed --profile "$BENCH_PROFILE" --no-run
  built vd-convert build -p versatile-diffusion --bin vd-convert
  built whole_step bench -p brain-diffuser --bench whole_step --profile "$BENCH_PROFILE" --no-run
  # The CUDA machine has transformers but no diffusers: its wheel (pure Python) travels in the bundle.
  mkdir -p "$BUNDLE/wheels"
  "$PYTHON" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: --dest "$BUNDLE/wheels" diffusers==0.42.1 >&2
  # The reference VDVAE loop needs openai/vdvae's model code (VDVAE_REPO, a checkout; not part of this repository).
  if [[ -n "${VDVAE_REPO:-}" ]]; then mkdir -p "$BUNDLE/vdvae-ref" && cp "$VDVAE_REPO"/*.py "$BUNDLE/vdvae-ref/"; fi
  strip --strip-all "$BUNDLE"/tests/* "$BUNDLE/vd_speed" "$BUNDLE/vd-convert" "$BUNDLE/whole_step" 2>/dev/null || true
  ls -la "$BUNDLE" "$BUNDLE/tests"
  du -sh "$BUNDLE"
  echo "prepared $BUNDLE: carry it (with the repository: tools/ and crates/versatile-diffusion/tests/fixtures) to the CUDA machine"
  exit 0
fi

[[ -x "$BUNDLE/vd_speed" && -x "$BUNDLE/vd-convert" && -x "$BUNDLE/whole_step" && -d "$BUNDLE/tests" ]] || { echo "no binaries in $BUNDLE: run $0 --prepare on the build machine" >&2; exit 1; }
TORCH_LIB="$("$PYTHON" -c 'import os,torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export VD_FIXTURES="$ROOT/crates/versatile-diffusion/tests/fixtures"
export VD_BENCH_SCRIPT="$ROOT/tools/versatile-diffusion/bench.py"
export VD_CONVERT_BIN="$BUNDLE/vd-convert"
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| CUDA:", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
if ! "$PYTHON" -c 'import diffusers' 2>/dev/null && compgen -G "$BUNDLE/wheels/diffusers-*.whl" >/dev/null; then
  "$PYTHON" -m pip install --disable-pip-version-check --no-deps --no-index --quiet --target /tmp/gpu-check-site "$BUNDLE"/wheels/*.whl
  export PYTHONPATH="/tmp/gpu-check-site${PYTHONPATH:+:$PYTHONPATH}"
fi
HAVE_DIFFUSERS=1
"$PYTHON" -c 'import diffusers' 2>/dev/null || HAVE_DIFFUSERS=0
VDVAE_ARGS=()
[[ -f "$BUNDLE/vdvae-ref/vae.py" ]] && VDVAE_ARGS=(--vdvae-repo "$BUNDLE/vdvae-ref")

if [[ "$MODE" == "dry-run" ]]; then
  DEVICE=cpu DTYPE=f32 TEST_DEVICE=cpu
  UNET_ARGS=(--channels 32,64,128,128 --latent 16 --iters 1)
  I2I_ARGS=(--channels 32,64,128,128 --vae-channels 32,32,64,64 --latent 16 --steps 10 --iters 1)
  I2I_LABEL="img2img tiny 64x64, 7 of 10 steps" UNET_LABEL="one tiny U-Net step, batch 2"
  # The whole step at full size on the CPU: 1 test image, 1 of 50 denoising steps.
  WHOLE_F16=(--precision f32 --images 1 --stimuli 3 --strength 0.02) WHOLE_BF16=()
else
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || { echo "no CUDA device visible to torch" >&2; exit 1; }
  DEVICE=cuda DTYPE=f16 TEST_DEVICE=cuda
  UNET_ARGS=(--iters 5)
  I2I_ARGS=(--iters 2)
  I2I_LABEL="img2img 512x512, 37 of 50 steps" UNET_LABEL="one U-Net step, 64x64, batch 2"
  # Issue 16: reconstruct 32 images (37 of 50 steps) in f16 with extract of 256 stimuli, then in bf16.
  WHOLE_F16=(--precision f16 --images 32 --stimuli 256 --strength 0.75)
  WHOLE_BF16=(--precision bf16 --images 32 --stimuli 40 --strength 0.75)
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
# The dry run keeps the tiny img2img timing; on the GPU the whole step below times img2img as users run it.
[[ "$MODE" == "dry-run" ]] && bench "$I2I_LABEL, $DTYPE" --mode img2img "${I2I_ARGS[@]}"
bench "$UNET_LABEL, $DTYPE" --mode unet-step "${UNET_ARGS[@]}"

# The workflow's extract and reconstruct at full size with random weights (benches/whole_step.rs), ours at
# batch 1 and at the default batch, then the reference loops on the same inputs. nvidia-smi is sampled every
# 0.2 s meanwhile; each phase's peak comes from the samples between the bench's phase marks.
declare -a WHOLE_TABLES=() MEMORY_ROWS=()
whole_step() {  # $1 = label, rest = arguments of whole_step
  local label="$1"; shift
  local py_args=() poller="" memlog="/tmp/gpu-check-memory-$label.log" err="/tmp/gpu-check-whole-$label.err"
  [[ "$HAVE_DIFFUSERS" == 1 ]] && py_args=(--python "$PYTHON")
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PYTHON" - "$memlog" <<'PY' &
import subprocess, sys, time
with open(sys.argv[1], "w") as log:
    while True:
        used = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                              capture_output=True, text=True).stdout.split()
        if used:
            log.write(f"{time.time():.3f} {used[0]}\n")
            log.flush()
        time.sleep(0.2)
PY
    poller=$!
    sleep 1
  fi
  local out
  if out="$(timeout 420 "$BUNDLE/whole_step" --device "$DEVICE" --work "/tmp/bd-whole-step-$label" \
      "${py_args[@]}" "${VDVAE_ARGS[@]}" "$@" 2>"$err")"; then
    echo "$out"
    WHOLE_TABLES+=("### $label" "$out")
  else
    FAILED=1
    WHOLE_TABLES+=("### $label: FAIL: $(tail -1 "$err")")
    tail -20 "$err"
  fi
  if [[ -n "$poller" ]]; then
    kill "$poller" 2>/dev/null || true
    MEMORY_ROWS+=("$("$PYTHON" - "$err" "$memlog" "$label" <<'PY'
import sys
marks, samples = {}, [tuple(map(float, l.split())) for l in open(sys.argv[2]) if len(l.split()) == 2]
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 4 and f[0] == "phase":
        marks.setdefault(f[1], {})[f[2]] = float(f[3])
# Ours: above the card's use before the bench started (libtorch's caching allocator keeps what an
# earlier phase reserved, so a phase's figure bounds its own peak from above). The reference runs
# in a child process while ours idles: above the use at its start.
idle = samples[0][1] if samples else 0.0
for phase, m in marks.items():
    used = [v for t, v in samples if m.get("start", 0) <= t <= m.get("end", 0)]
    before = [v for t, v in samples if t <= m.get("start", 0)]
    base = before[-1] if phase.startswith("reference") and before else idle
    peak = f"{(max(used) - base) / 1024:.2f}" if used else "no sample"
    print(f"| {sys.argv[3]} | {phase} | {peak} |")
PY
)")
  fi
}
whole_step "whole-step-$DTYPE" "${WHOLE_F16[@]}"
[[ ${#WHOLE_BF16[@]} -gt 0 ]] && whole_step "whole-step-bf16" "${WHOLE_BF16[@]}"

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
echo
echo "## whole step (benches/whole_step.rs; reference / this: the diffusers or reference loop's seconds over ours)"
printf '%s\n' "${WHOLE_TABLES[@]}"
if [[ ${#MEMORY_ROWS[@]} -gt 0 ]]; then
  echo
  echo "| run | phase | peak GPU memory above idle, GiB (nvidia-smi, 0.2 s samples) |"
  echo "|---|---|---|"
  printf '%s\n' "${MEMORY_ROWS[@]}"
fi
exit "$FAILED"
