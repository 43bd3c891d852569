#!/usr/bin/env bash
# Makes sure libtorch 2.11.0 is available to tch 0.24, then links it at ./.libtorch; also makes sure
# a cmake is linked at ./.tools/bin/cmake (nsd-io builds HDF5 and netCDF-C from source with it).
#
# libtorch comes from the PyPI wheel torch==2.11.0 (the exact version tch 0.24 expects, and the one
# the CUDA machines we validate on carry). The wheel is installed once into a virtual environment in
# a user cache and reused by every clone. `.cargo/config.toml` points LIBTORCH at ./.libtorch, so
# plain `cargo build/test/run` work afterwards without exporting anything.
#
# Environment:
#   LIBTORCH                 your own libtorch (or a torch package dir): used as is, nothing installed
#   BRAIN_DIFFUSER_CACHE     where the virtual environment lives (default ~/.cache/brain-diffuser)
#   BRAIN_DIFFUSER_PYTHON    the Python 3 used to create it (default python3)
#   BRAIN_DIFFUSER_TORCH_INDEX  an extra pip index, e.g. a CPU-only or other CUDA build of 2.11.0
#   cmake on PATH            used when present; otherwise the PyPI `cmake` is installed in the cache
set -euo pipefail

TORCH_VERSION=2.11.0
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
link="$root/.libtorch"

say() { printf '[libtorch] %s\n' "$*" >&2; }
fail() { printf '[libtorch] error: %s\n' "$*" >&2; exit 1; }

cache="${BRAIN_DIFFUSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/brain-diffuser}"
venv="$cache/torch-$TORCH_VERSION"
python="${BRAIN_DIFFUSER_PYTHON:-python3}"
stamp="$venv/.complete"

# cmake: the system's if there is one, else PyPI's in its own small environment of the cache.
ensure_cmake() {
  local found tools="$root/.tools/bin" cmake_env="$cache/cmake"
  found=$(command -v cmake || true)
  if [ -z "$found" ]; then
    if [ ! -x "$cmake_env/bin/cmake" ]; then
      say "no cmake on PATH: installing PyPI's cmake into $cmake_env (once)"
      rm -rf "$cmake_env"
      "$python" -m venv "$cmake_env" && "$cmake_env/bin/python" -m pip install --disable-pip-version-check \
          --progress-bar off cmake >&2 \
        || fail "could not install cmake from PyPI: install cmake (e.g. apt-get install cmake) and run again"
    fi
    found="$cmake_env/bin/cmake"
  fi
  mkdir -p "$tools"
  [ "$(readlink "$tools/cmake" 2>/dev/null || true)" = "$found" ] || ln -sfn "$found" "$tools/cmake"
}
ensure_cmake

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] && [ -d "$LIBTORCH/include" ] \
    || fail "LIBTORCH=$LIBTORCH has no lib/ and include/ folders (expected a libtorch or torch package dir)"
  say "using LIBTORCH=$LIBTORCH (not managed by this script)"
  exit 0
fi

torch_dir() { "$venv/bin/python" -c 'import pathlib, torch; print(pathlib.Path(torch.__file__).parent)' 2>/dev/null; }

if [ ! -f "$stamp" ]; then
  command -v "$python" >/dev/null || fail "no '$python' found: install Python 3 (3.10 to 3.14), or set BRAIN_DIFFUSER_PYTHON"
  say "installing torch==$TORCH_VERSION into $venv (once; about 4.5 GB with its CUDA libraries)"
  rm -rf "$venv"
  mkdir -p "$cache"
  "$python" -m venv "$venv" \
    || fail "'$python -m venv' failed: on Debian/Ubuntu install python3-venv (apt-get install python3-venv)"
  extra=()
  [ -n "${BRAIN_DIFFUSER_TORCH_INDEX:-}" ] && extra=(--extra-index-url "$BRAIN_DIFFUSER_TORCH_INDEX")
  "$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off "${extra[@]}" \
      "torch==$TORCH_VERSION" >&2 \
    || fail "pip could not install torch==$TORCH_VERSION (no network to PyPI, or no wheel for this Python/platform). Fix that, or set LIBTORCH to an existing libtorch $TORCH_VERSION."
  got=$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])') \
    || fail "torch was installed but does not import"
  [ "$got" = "$TORCH_VERSION" ] || fail "installed torch $got, expected $TORCH_VERSION"
  touch "$stamp"
fi

target=$(torch_dir) || fail "the cached environment $venv is broken: delete it and run again"
if [ "$(readlink "$link" 2>/dev/null || true)" != "$target" ]; then
  ln -sfn "$target" "$link"
  say "linked $link -> $target"
fi
