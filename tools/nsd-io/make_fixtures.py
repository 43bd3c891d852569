#!/usr/bin/env python
"""Format-honesty fixtures for crates/nsd-io: small files written by the canonical writers
(nibabel, scipy.io.savemat, h5py, numpy) with the values those libraries read back, so the Rust
readers are compared with the reference readers, not with our own writer.

usage: make_fixtures.py OUT_DIR [--seed 0] [--vol 5 4 3] [--trials 6]

Writes into OUT_DIR:
  nifti/<name>.nii[.gz] + nifti/<name>.expected.npy   (nibabel get_fdata(), float64)
  nifti/roi.nii.gz, nifti/betas.nii.gz, nifti/mask_offsets.npy, nifti/betas_masked.npy
  mat/<name>.mat + mat/<name>.<var>.npy                (scipy.io.loadmat values, float64, Fortran dims)
  npy/captions_U.npy, npy/captions_S.npy + .json with the expected strings
  hdf5/stimuli.hdf5 (imgBrick u8, chunked + gzip), hdf5/betas.hdf5 (betas i16) + expected .npy
"""
import argparse
import json
import os

import h5py
import nibabel as nib
import numpy as np
import scipy.io as sio


def nifti_fixtures(out, rng, vol, trials):
    d = os.path.join(out, "nifti")
    os.makedirs(d, exist_ok=True)
    aff = np.diag([1.8, 1.8, 1.8, 1.0])

    def save(name, arr, dtype=None, endian=None, ext=".nii.gz"):
        hdr = nib.Nifti1Header(endianness=endian) if endian else None
        img = nib.Nifti1Image(arr, aff, header=hdr)
        if dtype is not None:
            img.set_data_dtype(dtype)
        path = os.path.join(d, name + ext)
        img.to_filename(path)
        back = nib.load(path)
        np.save(os.path.join(d, name + ".expected.npy"), np.asarray(back.get_fdata(), dtype=np.float64))
        # nibabel moves the scaling from the loaded header to the array proxy.
        return {"file": name + ext, "dtype": str(back.get_data_dtype()), "shape": list(back.shape),
                "slope": float(back.dataobj.slope), "inter": float(back.dataobj.inter)}

    meta = []
    x, y, z = vol
    meta.append(save("int16_4d", rng.integers(-3000, 3000, size=(x, y, z, trials)).astype(np.int16)))
    meta.append(save("float32_3d", rng.standard_normal((x + 2, y + 1, z)).astype(np.float32), ext=".nii"))
    meta.append(save("uint8_3d", rng.integers(0, 255, size=(x, y, z)).astype(np.uint8)))
    meta.append(save("int8_2d", rng.integers(-100, 100, size=(x, y)).astype(np.int8), ext=".nii"))
    meta.append(save("uint16_3d", rng.integers(0, 60000, size=(x, y, z)).astype(np.uint16)))
    meta.append(save("int32_3d", rng.integers(-10**6, 10**6, size=(x, y, z)).astype(np.int32)))
    meta.append(save("float64_be", rng.standard_normal((x, y, z)), dtype=np.float64, endian=">", ext=".nii"))
    # nibabel picks scl_slope/scl_inter itself when float data is stored as an integer type.
    meta.append(save("scaled_int16", (rng.standard_normal((x, y, z, 2)) * 3.7 + 1.25).astype(np.float32), dtype=np.int16))
    meta.append(save("scaled_uint8", (rng.uniform(-2.0, 5.0, size=(x, y, z))).astype(np.float32), dtype=np.uint8))

    # An ROI volume and betas: the reference's masking, beta[mask > 0] -> (nvox, T), transposed.
    roi = rng.integers(-1, 3, size=(x, y, z)).astype(np.int16)
    nib.Nifti1Image(roi, aff).to_filename(os.path.join(d, "roi.nii.gz"))
    betas = rng.integers(-2000, 2000, size=(x, y, z, trials)).astype(np.int16)
    nib.Nifti1Image(betas, aff).to_filename(os.path.join(d, "betas.nii.gz"))
    mask = nib.load(os.path.join(d, "roi.nii.gz")).get_fdata()
    beta = nib.load(os.path.join(d, "betas.nii.gz")).get_fdata().astype(np.float32)
    np.save(os.path.join(d, "betas_masked.npy"), beta[mask > 0].transpose().astype(np.float32))
    idx = np.nonzero(mask > 0)
    np.save(os.path.join(d, "mask_offsets.npy"), np.ravel_multi_index(idx, mask.shape, order="F").astype(np.int64))
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


def mat_fixtures(out, rng):
    d = os.path.join(out, "mat")
    os.makedirs(d, exist_ok=True)
    variables = {
        "masterordering": rng.integers(1, 13, size=(1, 30)).astype(np.float64),
        "subjectim": rng.integers(1, 400, size=(8, 12)).astype(np.int32),
        "sharedix": np.arange(1, 5, dtype=np.uint16).reshape(1, 4),
        "cube": rng.integers(-500, 500, size=(2, 3, 4)).astype(np.int16),
        "bytes": rng.integers(0, 255, size=(3, 5)).astype(np.uint8),
        "single": rng.standard_normal((4, 2)).astype(np.float32),
        "big": rng.integers(-2**40, 2**40, size=(2, 2)).astype(np.int64),
        "scalar": np.float64(3.5),
        "empty": np.zeros((0, 0)),
    }
    extra = {"label": "hello nsd", "cellvar": np.array([1, "a"], dtype=object),
             "structvar": {"a": 1.0, "b": np.arange(3.0)}}
    expected = {}
    for compress in (True, False):
        name = "compressed" if compress else "plain"
        path = os.path.join(d, name + ".mat")
        sio.savemat(path, {**variables, **extra}, do_compression=compress)
        back = sio.loadmat(path)  # no squeeze: MATLAB dims, as our reader reports them
        for k in variables:
            np.save(os.path.join(d, f"{name}.{k}.npy"), np.asarray(back[k], dtype=np.float64))
        expected[name] = {k: list(back[k].shape) for k in variables}
        expected[name]["label"] = str(back["label"][0])
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(expected, f, indent=1)


def npy_fixtures(out):
    d = os.path.join(out, "npy")
    os.makedirs(d, exist_ok=True)
    caps = np.array([["a cat on a mat", "", "chat sur un tapis", "ünïcödé ✓ 猫", "x"],
                     ["two dogs", "dogs playing", "", "", "the end"],
                     ["", "", "", "", ""]])
    np.save(os.path.join(d, "captions_U.npy"), caps)
    np.save(os.path.join(d, "captions_1d.npy"), caps[:, 0])
    np.save(os.path.join(d, "captions_S.npy"), np.array([[b"ascii only", b""], [b"bytes", b"ok"]]))
    np.save(os.path.join(d, "captions_object.npy"), caps.astype(object), allow_pickle=True)
    with open(os.path.join(d, "captions.json"), "w", encoding="utf-8") as f:
        json.dump({"U": caps.tolist(), "1d": caps[:, 0].tolist(), "S": [["ascii only", ""], ["bytes", "ok"]]},
                  f, ensure_ascii=False, indent=1)


def hdf5_fixtures(out, rng, vol, trials):
    d = os.path.join(out, "hdf5")
    os.makedirs(d, exist_ok=True)
    brick = rng.integers(0, 255, size=(7, 9, 11, 3)).astype(np.uint8)
    with h5py.File(os.path.join(d, "stimuli.hdf5"), "w") as f:
        f.create_dataset("imgBrick", data=brick, chunks=(1, 9, 11, 3), compression="gzip", compression_opts=4)
    np.save(os.path.join(d, "stimuli.expected.npy"), brick)
    x, y, z = vol
    betas = rng.integers(-3000, 3000, size=(trials, z, y, x)).astype(np.int16)
    with h5py.File(os.path.join(d, "betas.hdf5"), "w") as f:
        f.create_dataset("betas", data=betas, chunks=(1, z, y, x), compression="gzip")
    np.save(os.path.join(d, "betas.expected.npy"), betas)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vol", type=int, nargs=3, default=[5, 4, 3])
    ap.add_argument("--trials", type=int, default=6)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    nifti_fixtures(a.out, rng, a.vol, a.trials)
    mat_fixtures(a.out, rng)
    npy_fixtures(a.out)
    hdf5_fixtures(a.out, rng, a.vol, a.trials)
    print(f"fixtures written to {a.out}")


if __name__ == "__main__":
    main()
