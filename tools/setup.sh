#!/usr/bin/env bash
# Installs the Python packages of tools/requirements.txt into the cached torch 2.11.0 environment
# that scripts/ensure-libtorch.sh manages, and prints the python to run the generators with.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$root/scripts/ensure-libtorch.sh"
venv="${BRAIN_DIFFUSER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/brain-diffuser}/torch-2.11.0"
"$venv/bin/python" -m pip install --disable-pip-version-check --progress-bar off -r "$root/tools/requirements.txt" >&2
echo "$venv/bin/python"
