//! HDF5 files as h5py writes them (issue 13): bricks compressed with h5py's LZF filter (alone and
//! after the shuffle filter) read to the values h5py reads; a filter this reader lacks, a
//! truncated download and a file of another format are errors naming the file and what is wrong.
//! The fixtures and their expected arrays come from `tools/nsd-io/make_fixtures.py --only edge`
//! (tests/fixtures/README.md): the `.expected.npy` files hold what h5py read back.

use std::path::{Path, PathBuf};

use ndarray::{Array4, Axis};
use ndarray_npy::read_npy;
use nsd_io::hdf5::{Hdf5Betas, StimulusBrick};
use nsd_io::{Volume, VoxelMask};

fn hdf5_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/edge/hdf5").join(name)
}

#[test]
fn lzf_bricks_read_as_h5py_reads_them() {
    let brick = StimulusBrick::open(&hdf5_fixture("stimuli_lzf.hdf5")).unwrap();
    let expected: Array4<u8> = read_npy(hdf5_fixture("stimuli_lzf.expected.npy")).unwrap();
    assert_eq!(brick.len(), expected.len_of(Axis(0)));
    assert_eq!(brick.image_size(), (expected.len_of(Axis(1)), expected.len_of(Axis(2))));
    // Every image, in another order than stored, so that each chunk is decoded on its own.
    let ids: Vec<usize> = (0..brick.len()).rev().collect();
    let got = brick.read(&ids).unwrap();
    for (slot, &id) in ids.iter().enumerate() {
        assert_eq!(got.index_axis(Axis(0), slot), expected.index_axis(Axis(0), id), "image {id}");
    }
}

#[test]
fn shuffled_lzf_betas_read_as_h5py_reads_them() {
    let betas = Hdf5Betas::open(&hdf5_fixture("betas_lzf_shuffle.hdf5")).unwrap();
    // h5py's (trials, z, y, x) array.
    let expected: Array4<i16> = read_npy(hdf5_fixture("betas_lzf_shuffle.expected.npy")).unwrap();
    let (nt, nz, ny, nx) = expected.dim();
    assert_eq!((betas.n_trials(), betas.volume_dims()), (nt, [nx, ny, nz]));
    // Every voxel: the mask's C order over [x, y, z] is x slowest.
    let all = Volume { path: PathBuf::from("all"), dims: [nx, ny, nz], data: vec![1.0; nx * ny * nz] };
    let mask = VoxelMask::positive(&all);
    for block in [1, 4, nt] {
        let mut out = vec![0f32; nt * mask.len()];
        betas.read_masked(&mask, &mut out, block).unwrap();
        let mut want = Vec::with_capacity(out.len());
        for t in 0..nt {
            for x in 0..nx {
                for y in 0..ny {
                    for z in 0..nz {
                        want.push(f32::from(expected[[t, z, y, x]]));
                    }
                }
            }
        }
        assert_eq!(out, want, "block of {block} trials");
    }
}

#[test]
fn a_filter_this_reader_lacks_is_named_with_a_repack_command() {
    // h5py itself refuses this file (meta.json records its error): filter 32123 is registered nowhere.
    let path = hdf5_fixture("stimuli_unknown_filter.hdf5");
    let message = match StimulusBrick::open(&path).and_then(|b| b.read(&[0])) {
        Ok(_) => panic!("a dataset with an unknown filter was read"),
        Err(e) => e.to_string(),
    };
    for part in ["stimuli_unknown_filter.hdf5", "imgBrick", "32123", "h5repack"] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
}

#[test]
fn truncated_and_foreign_files_are_named_with_their_size() {
    let dir = tempfile::tempdir().unwrap();
    let whole = std::fs::read(hdf5_fixture("stimuli_gzip.hdf5")).unwrap();
    // A download cut at half its size.
    let truncated = dir.path().join("nsd_stimuli.hdf5");
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let message = StimulusBrick::open(&truncated).err().expect("a truncated file opened").to_string();
    for part in ["nsd_stimuli.hdf5", "truncated", &format!("{} bytes", whole.len() / 2), "imgBrick"] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
    // Not HDF5 at all (an HTML error page saved under the name).
    let foreign = dir.path().join("page.hdf5");
    std::fs::write(&foreign, b"<html><body>403 Forbidden</body></html>").unwrap();
    let message = StimulusBrick::open(&foreign).err().expect("a foreign file opened").to_string();
    for part in ["page.hdf5", "no HDF5 signature", "imgBrick"] {
        assert!(message.contains(part), "{part} missing from: {message}");
    }
    // The same bytes, whole, still open: the truncation is what the message is about.
    let copy = dir.path().join("whole.hdf5");
    std::fs::write(&copy, &whole).unwrap();
    assert_eq!(StimulusBrick::open(&copy).unwrap().len(), 6);
}
