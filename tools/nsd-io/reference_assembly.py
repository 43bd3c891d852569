#!/usr/bin/env python
"""Assembles a subject from an NSD-layout folder exactly as the reference's
data/prepare_nsddata.py does (scipy.io.loadmat, nibabel get_fdata, numpy boolean mask, dict
first-appearance order, mean over sorted trials), then the regression scripts' /300 and train
z-scoring, and reads the test stimuli with h5py. Writes the results as .npy files into OUT.

Used to make the parity fixture of crates/nsd-io/tests/fixtures/mini_nsd (a mini-NSD written by
our own writer, so this also checks that nibabel, scipy, h5py and numpy read what we write).

usage: reference_assembly.py NSD_ROOT OUT --subject 1 --sessions 2 --trials 60 --threshold 12
"""
import argparse
import os

import h5py
import nibabel as nib
import numpy as np
import scipy.io as sio


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("out")
    ap.add_argument("--subject", type=int, default=1)
    ap.add_argument("--sessions", type=int, default=37)
    ap.add_argument("--trials", type=int, default=750)
    ap.add_argument("--threshold", type=int, default=1000)
    a = ap.parse_args()
    sub, root = a.subject, a.root
    os.makedirs(a.out, exist_ok=True)

    expdesign = sio.loadmat(os.path.join(root, "nsddata/experiments/nsd/nsd_expdesign.mat"),
                            struct_as_record=False, squeeze_me=True)
    master = expdesign["masterordering"]
    subjectim = expdesign["subjectim"]
    num_trials = a.sessions * a.trials

    train_im_idx, test_im_idx = {}, {}
    for idx in range(num_trials):
        nsd_id = subjectim[sub - 1, master[idx] - 1] - 1
        target = test_im_idx if master[idx] <= a.threshold else train_im_idx
        target.setdefault(int(nsd_id), []).append(idx)

    roi_dir = os.path.join(root, f"nsddata/ppdata/subj{sub:02d}/func1pt8mm/roi")
    mask = nib.load(os.path.join(roi_dir, "nsdgeneral.nii.gz")).get_fdata()
    num_voxel = mask[mask > 0].shape[0]
    fmri = np.zeros((num_trials, num_voxel)).astype(np.float32)
    beta_dir = os.path.join(root, f"nsddata_betas/ppdata/subj{sub:02d}/func1pt8mm/betas_fithrf_GLMdenoise_RR")
    for i in range(a.sessions):
        beta = nib.load(os.path.join(beta_dir, f"betas_session{i + 1:02d}.nii.gz")).get_fdata().astype(np.float32)
        fmri[i * a.trials:(i + 1) * a.trials] = beta[mask > 0].transpose()
        h5 = os.path.join(beta_dir, f"betas_session{i + 1:02d}.hdf5")
        if os.path.exists(h5):
            with h5py.File(h5, "r") as f:
                hb = f["betas"][:]
            # (trials, z, y, x) in C order is the NIfTI volume: the same masked values.
            assert np.array_equal(hb.transpose(3, 2, 1, 0)[mask > 0].T.astype(np.float32),
                                  fmri[i * a.trials:(i + 1) * a.trials]), "hdf5 betas differ from NIfTI"

    def average(idx_dict):
        out = np.zeros((len(idx_dict), num_voxel))
        for i, (_, trials) in enumerate(idx_dict.items()):
            out[i] = fmri[np.sort(trials)].mean(0)
        return out

    fmri_train, fmri_test = average(train_im_idx), average(test_im_idx)
    train_ids = np.array(list(train_im_idx.keys()), dtype=np.int64)
    test_ids = np.array(list(test_im_idx.keys()), dtype=np.int64)
    annots = np.load(os.path.join(root, "annots/COCO_73k_annots_curated.npy"))

    # The regression scripts' preprocessing.
    tr, te = fmri_train / 300, fmri_test / 300
    mu, sd = np.mean(tr, axis=0), np.std(tr, axis=0, ddof=1)
    tr_z, te_z = (tr - mu) / sd, (te - mu) / sd

    with h5py.File(os.path.join(root, "nsddata_stimuli/stimuli/nsd/nsd_stimuli.hdf5"), "r") as f:
        test_stim = np.stack([f["imgBrick"][i] for i in test_ids])

    np.save(os.path.join(a.out, "train_fmri.npy"), fmri_train)
    np.save(os.path.join(a.out, "test_fmri.npy"), fmri_test)
    np.save(os.path.join(a.out, "train_ids.npy"), train_ids)
    np.save(os.path.join(a.out, "test_ids.npy"), test_ids)
    np.save(os.path.join(a.out, "train_cap.npy"), annots[train_ids])
    np.save(os.path.join(a.out, "test_cap.npy"), annots[test_ids])
    np.save(os.path.join(a.out, "train_fmri_z.npy"), tr_z)
    np.save(os.path.join(a.out, "test_fmri_z.npy"), te_z)
    np.save(os.path.join(a.out, "test_stim.npy"), test_stim)
    print(f"subject {sub}: {num_voxel} voxels, train {fmri_train.shape}, test {fmri_test.shape}")


if __name__ == "__main__":
    main()
