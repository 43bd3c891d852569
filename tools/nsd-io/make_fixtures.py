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
  edge/...                                             (edge_fixtures below: variants other tools write)

With --only edge, only OUT_DIR/edge is (re)written (the other folders are left as they are).
"""
import gzip
import struct
import zlib
import argparse
import json
import os

import h5py
import nibabel as nib
import numpy as np
import scipy.io as sio
import scipy.sparse


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


def _v5_elements(b, big=False):
    """Top-level (tag type, payload) pairs of an uncompressed level-5 MAT body."""
    e = ">" if big else "<"
    out, i = [], 0
    while i < len(b):
        kind, n = struct.unpack(e + "II", b[i:i + 8])
        if kind >> 16:  # small data element: size and type in one word, data in the next 4 bytes
            out.append((kind & 0xFFFF, b[i + 4:i + 4 + (kind >> 16)]))
            i += 8
            continue
        out.append((kind, b[i + 8:i + 8 + n]))
        i += 8 + (n + 7) // 8 * 8
    return out


def _v5_tag(kind, payload):
    """One padded data element (never the small-element form, as MATLAB's own writer does for these)."""
    pad = (len(payload) + 7) // 8 * 8 - len(payload)
    return struct.pack("<II", kind, len(payload)) + payload + b"\0" * pad


def _rewrite_v5(src, dst, dims_type=None, name_type=None, rename=None, compress=False):
    """Copies a scipy-written uncompressed MAT file, changing in every miMATRIX the storage type of
    the dims (miINT32 -> miUINT32, as some writers store them) and of the array name (miINT8 ->
    miUTF8), renaming variables, and optionally zlib-compressing each variable. Only the tags
    change; scipy.io.loadmat then reads the result (the canonical reader's values are what the
    tests compare with)."""
    raw = open(src, "rb").read()
    head, body = raw[:128], raw[128:]
    out = bytearray(head)
    for kind, payload in _v5_elements(body):
        assert kind == 14, kind
        sub = _v5_elements(payload)
        (fk, flags), (dk, dims), (nk, name) = sub[:3]
        name = name.decode("utf-8")
        name = (rename or {}).get(name, name).encode("utf-8")
        m = _v5_tag(fk, flags) + _v5_tag(dims_type or dk, dims) + _v5_tag(name_type or nk, name)
        for k, p in sub[3:]:
            m += _v5_tag(k, p)
        matrix = _v5_tag(14, m)
        if compress:
            z = zlib.compress(matrix)
            out += struct.pack("<II", 15, len(z)) + z
        else:
            out += matrix
    open(dst, "wb").write(bytes(out))


def _write_v4_big_endian(path, variables):
    """A big-endian MAT v4 file (MOPT M=1), which scipy reads but does not write: per variable a
    20-byte header (mopt, mrows, ncols, imagf, namlen), the NUL-terminated name, then the values
    column-major in the type P of mopt (0 f8, 1 f4, 2 i4, 3 i2, 4 u2, 5 u1)."""
    codes = {np.dtype("f8"): 0, np.dtype("f4"): 1, np.dtype("i4"): 2, np.dtype("i2"): 3,
             np.dtype("u2"): 4, np.dtype("u1"): 5}
    with open(path, "wb") as f:
        for name, arr in variables.items():
            arr = np.atleast_2d(arr)
            mopt = 1000 + 10 * codes[arr.dtype]
            nm = name.encode() + b"\0"
            f.write(struct.pack(">iiiii", mopt, arr.shape[0], arr.shape[1], 0, len(nm)))
            f.write(nm)
            f.write(arr.astype(arr.dtype.newbyteorder(">")).tobytes(order="F"))


def edge_fixtures(out):
    """Files in forms other tools write and the canonical readers accept (issue 13), each with the
    values (or the refusal) of the canonical reader."""
    rng = np.random.default_rng(13)
    d = os.path.join(out, "edge")
    for sub in ("mat", "nifti", "npy", "hdf5"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)

    # --- MAT: v5 variants, and v4 -------------------------------------------------------------
    md = os.path.join(d, "mat")
    design = {
        "masterordering": rng.integers(1, 13, size=(1, 30)).astype(np.float64),
        "subjectim": rng.integers(1, 400, size=(8, 12)).astype(np.int32),
        "sharedix": np.arange(1, 5, dtype=np.uint16).reshape(1, 4),
    }
    extra = {"single": rng.standard_normal((4, 2)).astype(np.float32),
             "cube": rng.integers(-500, 500, size=(2, 3, 4)).astype(np.int16),
             "label": "hello nsd"}
    base = os.path.join(md, "_base.mat")
    sio.savemat(base, {**design, **extra}, do_compression=False)
    meta = {}
    variants = {
        "uint32_dims.mat": dict(dims_type=6),
        # (scipy refuses non-ASCII names: "Non ascii int8 string"; MATLAB names are ASCII.)
        "utf8_names.mat": dict(name_type=16, rename={"single": "single_utf8"}),
        "uint32_dims_utf8_names_compressed.mat": dict(dims_type=6, name_type=16, compress=True),
    }
    for name, kw in variants.items():
        path = os.path.join(md, name)
        _rewrite_v5(base, path, **kw)
        back = sio.loadmat(path)
        meta[name] = _mat_expected(md, name, back)
    os.remove(base)
    # MAT v4: scipy's writer (little-endian) and a big-endian file scipy reads.
    # (complex and sparse variables are skipped by our reader: reported, not decoded)
    v4 = {**design, "single": extra["single"], "label": "hello nsd",
          "cplx": np.array([[1 + 2j, 3 - 1j]]), "sparse": scipy.sparse.csc_matrix(np.eye(3))}
    sio.savemat(os.path.join(md, "v4.mat"), v4, format="4")
    meta["v4.mat"] = _mat_expected(md, "v4.mat", sio.loadmat(os.path.join(md, "v4.mat")))
    _write_v4_big_endian(os.path.join(md, "v4_big_endian.mat"),
                         {**design, "single": extra["single"],
                          "bytes": rng.integers(0, 255, size=(3, 5)).astype(np.uint8)})
    meta["v4_big_endian.mat"] = _mat_expected(md, "v4_big_endian.mat",
                                              sio.loadmat(os.path.join(md, "v4_big_endian.mat")))
    with open(os.path.join(md, "meta.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=1)

    # --- NIfTI: header fields nibabel reads (or refuses) differently from the strict rules --------
    nd = os.path.join(d, "nifti")
    arr = rng.integers(-3000, 3000, size=(5, 4, 3)).astype(np.int16)
    src = os.path.join(nd, "_base.nii")
    nib.Nifti1Image(arr, np.diag([1.8, 1.8, 1.8, 1.0])).to_filename(src)
    base = open(src, "rb").read()
    os.remove(src)
    cases = {
        # vox_offset 0 ("unset"): the NIfTI-1 standard says it is equivalent to 352 in a .nii, and
        # nibabel's writer treats 0 as unset; nibabel 5.4's *reader* starts the data at byte 0
        # (header bytes as voxels), so the expected values are what nibabel wrote (see meta).
        "vox_offset_0.nii": [(108, "<f", 0.0)],
        "vox_offset_0.nii.gz": [(108, "<f", 0.0)],
        "bitpix_0.nii": [(72, "<h", 0)],
        "bitpix_mismatch.nii": [(72, "<h", 8)],
        "vox_offset_fraction.nii": [(108, "<f", 352.75)],
        "slope_nan_inter_3.nii": [(112, "<f", float("nan")), (116, "<f", 3.0)],
        "slope_inf_inter_3.nii": [(112, "<f", float("inf")), (116, "<f", 3.0)],
        "slope_0_inter_nan.nii": [(112, "<f", 0.0), (116, "<f", float("nan"))],
        "slope_2_inter_nan.nii": [(112, "<f", 2.0), (116, "<f", float("nan"))],
        "slope_2_inter_inf.nii": [(112, "<f", 2.0), (116, "<f", float("inf"))],
        "slope_1_inter_minf.nii": [(112, "<f", 1.0), (116, "<f", float("-inf"))],
        "vox_offset_100.nii": [(108, "<f", 100.0)],
        "vox_offset_negative.nii": [(108, "<f", -5.0)],
        "vox_offset_nan.nii": [(108, "<f", float("nan"))],
    }
    nmeta = []
    for name, patches in cases.items():
        b = bytearray(base)
        for off, fmt, val in patches:
            b[off:off + struct.calcsize(fmt)] = struct.pack(fmt, val)
        path = os.path.join(nd, name)
        data = bytes(b)
        open(path, "wb").write(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
        entry = {"file": name}
        try:
            img = nib.load(path)
            got = np.asarray(img.get_fdata(), dtype=np.float64)
            entry["nibabel"] = "reads"
            if name.startswith("vox_offset_0"):
                entry["nibabel_reads_from_byte"] = int(img.dataobj.offset)
                got = arr.astype(np.float64)  # the values nibabel wrote (vox_offset 352)
            stem = name.split(".")[0]
            np.save(os.path.join(nd, stem + ".expected.npy"), got)
            entry["expected"] = stem + ".expected.npy"
        except Exception as e:  # nibabel refuses the header
            entry["nibabel"] = "refuses"
            entry["error"] = f"{type(e).__name__}: {e}"
        nmeta.append(entry)
    with open(os.path.join(nd, "meta.json"), "w") as f:
        json.dump(nmeta, f, indent=1)

    # --- npy: NUL characters inside captions (numpy strips only trailing NULs) ------------------
    pd = os.path.join(d, "npy")
    caps = np.array([["a\0b", "\0leading", "trailing\0\0", "in\0\0side and end\0"],
                     ["plain", "", "x\0y\0z", "\u00fcn\0\u732b"]])
    np.save(os.path.join(pd, "captions_nul_U.npy"), caps)
    bcaps = np.array([[b"a\0b", b"trailing\0"], [b"\0lead", b"ok"]])
    np.save(os.path.join(pd, "captions_nul_S.npy"), bcaps)
    back_u = np.load(os.path.join(pd, "captions_nul_U.npy")).tolist()
    back_s = [[x.decode("utf-8") for x in row] for row in np.load(os.path.join(pd, "captions_nul_S.npy")).tolist()]
    with open(os.path.join(pd, "captions_nul.json"), "w", encoding="utf-8") as f:
        json.dump({"U": back_u, "S": back_s}, f, ensure_ascii=False, indent=1)

    # --- HDF5: h5py's LZF filter (id 32000) ------------------------------------------------------
    hd = os.path.join(d, "hdf5")
    # Blocky images (8x8 blocks of a few colours) that LZF shrinks, so their chunks are compressed.
    blocks = rng.integers(0, 4, size=(6, 4, 4, 3)) * 60
    brick = np.repeat(np.repeat(blocks, 8, axis=1), 8, axis=2).astype(np.uint8)
    # One image of noise: LZF cannot shrink it, so h5py stores that chunk unfiltered.
    brick = np.concatenate([brick, rng.integers(0, 256, size=(1, 32, 32, 3)).astype(np.uint8)])
    with h5py.File(os.path.join(hd, "stimuli_lzf.hdf5"), "w") as f:
        f.create_dataset("imgBrick", data=brick, chunks=(1, 32, 32, 3), compression="lzf")
    with h5py.File(os.path.join(hd, "stimuli_lzf.hdf5"), "r") as f:
        np.save(os.path.join(hd, "stimuli_lzf.expected.npy"), f["imgBrick"][()])
        assert f["imgBrick"].compression == "lzf"
        masks = [f["imgBrick"].id.get_chunk_info(i).filter_mask for i in range(len(brick))]
        assert masks == [0] * 6 + [1], masks  # six LZF-compressed chunks, the noise chunk stored raw
    # The same images gzip-compressed (each chunk really compressed), for damaged-chunk tests.
    with h5py.File(os.path.join(hd, "stimuli_gzip.hdf5"), "w") as f:
        f.create_dataset("imgBrick", data=brick[:6], chunks=(1, 32, 32, 3), compression="gzip", compression_opts=4)
    with h5py.File(os.path.join(hd, "stimuli_gzip.hdf5"), "r") as f:
        assert all(f["imgBrick"].id.get_chunk_info(i).filter_mask == 0 for i in range(6))
    # The same file with the filter id and name patched to an unregistered filter (32123 "xyz"),
    # as a stand-in for filters neither h5py nor we decode (blosc, bitshuffle, ...).
    raw = bytearray(open(os.path.join(hd, "stimuli_lzf.hdf5"), "rb").read())
    k = raw.find(b"lzf\0")
    assert k > 8 and struct.unpack("<H", raw[k - 8:k - 6])[0] == 32000, "filter message not found"
    raw[k - 8:k - 6] = struct.pack("<H", 32123)
    raw[k:k + 3] = b"xyz"
    open(os.path.join(hd, "stimuli_unknown_filter.hdf5"), "wb").write(bytes(raw))
    try:
        with h5py.File(os.path.join(hd, "stimuli_unknown_filter.hdf5"), "r") as f:
            f["imgBrick"][0]
        unknown = "h5py reads it"
    except Exception as e:
        unknown = f"h5py refuses: {type(e).__name__}: {e}"
    with open(os.path.join(hd, "meta.json"), "w") as f:
        json.dump({"stimuli_unknown_filter.hdf5": unknown}, f, indent=1)
    betas = (np.round(np.sin(np.arange(6 * 3 * 4 * 5) / 7.0) * 1000)).astype(np.int16).reshape(6, 3, 4, 5)
    with h5py.File(os.path.join(hd, "betas_lzf_shuffle.hdf5"), "w") as f:
        f.create_dataset("betas", data=betas, chunks=(2, 3, 4, 5), compression="lzf", shuffle=True)
    with h5py.File(os.path.join(hd, "betas_lzf_shuffle.hdf5"), "r") as f:
        assert all(f["betas"].id.get_chunk_info(i).filter_mask == 0 for i in range(3))
        np.save(os.path.join(hd, "betas_lzf_shuffle.expected.npy"), f["betas"][()])


def _mat_expected(d, name, back):
    """Saves scipy.io.loadmat's values of each numeric variable as NAME.VAR.npy (float64, MATLAB
    dims) and returns {var: shape} plus the text of char variables."""
    stem = name[:-4]
    out = {}
    for k, v in back.items():
        if k.startswith("__"):
            continue
        if scipy.sparse.issparse(v):
            out[k] = {"unsupported": "sparse"}
            continue
        if v.dtype.kind == "U":
            out[k] = {"text": str(v[0])}
            continue
        if v.dtype.kind == "c":
            out[k] = {"unsupported": "complex"}
            continue
        np.save(os.path.join(d, f"{stem}.{k}.npy"), np.asarray(v, dtype=np.float64))
        out[k] = {"shape": list(v.shape), "dtype": str(v.dtype)}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vol", type=int, nargs=3, default=[5, 4, 3])
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--only", choices=["edge"], help="write only this group of fixtures")
    a = ap.parse_args()
    if a.only == "edge":
        edge_fixtures(a.out)
        print(f"edge fixtures written to {a.out}/edge")
        return
    rng = np.random.default_rng(a.seed)
    nifti_fixtures(a.out, rng, a.vol, a.trials)
    mat_fixtures(a.out, rng)
    npy_fixtures(a.out)
    hdf5_fixtures(a.out, rng, a.vol, a.trials)
    edge_fixtures(a.out)
    print(f"fixtures written to {a.out}")


if __name__ == "__main__":
    main()
