#!/usr/bin/env python
"""The reference's way to read and mask one betas session (nibabel get_fdata -> float32 ->
beta[mask > 0].T), timed. Called by `cargo bench -p nsd-io --bench session_read`, which runs
ours on the same file and prints both side by side.

usage: bench_session.py BETAS.nii.gz NSDGENERAL.nii.gz RUNS   -> one JSON line on stdout
"""
import json
import resource
import sys
import time

import nibabel as nib
import numpy as np


def main():
    betas, roi, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
    mask = nib.load(roi).get_fdata()
    times, checksum, shape = [], None, None
    for _ in range(runs):
        t = time.perf_counter()
        beta = nib.load(betas).get_fdata().astype(np.float32)
        rows = beta[mask > 0].transpose()
        times.append(time.perf_counter() - t)
        checksum, shape = float(rows.astype(np.float64).sum()), list(rows.shape)
        del beta, rows
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"seconds": times, "peak_rss_mib": peak_mib, "checksum": checksum, "shape": shape,
                      "nibabel": nib.__version__, "numpy": np.__version__}))


if __name__ == "__main__":
    main()
