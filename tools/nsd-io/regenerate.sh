#!/usr/bin/env bash
# Regenerates every fixture of crates/nsd-io/tests/fixtures (needs tools/setup.sh's Python, or
# PYTHON=/path/to/python with its packages):
#   formats/        canonical writers (nibabel, scipy.io.savemat, h5py, numpy) -> make_fixtures.py
#   mini_nsd/       our own synthetic writer (seed 0, default SynthConfig)    -> write_mini_nsd example
#   mini_nsd_ref/   the reference's prepare_nsddata.py logic over mini_nsd    -> reference_assembly.py
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
python=${PYTHON:-$("$root/tools/setup.sh")}
fx="$root/crates/nsd-io/tests/fixtures"
rm -rf "$fx/formats" "$fx/mini_nsd" "$fx/mini_nsd_ref"
"$python" "$root/tools/nsd-io/make_fixtures.py" "$fx/formats" --seed 0 --vol 5 4 3 --trials 6
(cd "$root" && cargo run -q -p nsd-io --features hdf5 --example write_mini_nsd -- "$fx/mini_nsd" 0)
"$python" "$root/tools/nsd-io/reference_assembly.py" "$fx/mini_nsd" "$fx/mini_nsd_ref" \
    --subject 1 --sessions 2 --trials 60 --threshold 12
du -sh "$fx"
