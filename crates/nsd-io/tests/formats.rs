//! Format honesty: files written by the canonical writers (nibabel, scipy.io.savemat, h5py,
//! numpy; see tests/fixtures/README.md) read with our readers give the values those libraries
//! read back.

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::read_npy;
use nsd_io::mat::{MatClass, MatFile, MatValue};
use nsd_io::nifti::{NiftiDtype, NiftiReader, VoxelMask, read_nifti, read_volume};
use nsd_io::{CaptionTable, NsdError};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats")
}

#[derive(serde::Deserialize)]
struct NiftiMeta {
    file: String,
    dtype: String,
    shape: Vec<usize>,
    slope: f64,
    inter: f64,
}

#[test]
fn nifti_values_match_nibabel_get_fdata() {
    let dir = fixtures().join("nifti");
    let meta: Vec<NiftiMeta> = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta.len(), 9);
    for m in meta {
        let (header, ours) = read_nifti(&dir.join(&m.file)).unwrap();
        let stem = m.file.split('.').next().unwrap();
        let expected: ArrayD<f64> = read_npy(dir.join(format!("{stem}.expected.npy"))).unwrap();
        assert_eq!(header.dims, m.shape, "{}", m.file);
        assert_eq!(ours.shape(), expected.shape(), "{}", m.file);
        let want_dtype = match m.dtype.trim_start_matches(['<', '>', '|', '=']) {
            "int16" | "i2" => NiftiDtype::I16,
            "float32" | "f4" => NiftiDtype::F32,
            "uint8" | "u1" => NiftiDtype::U8,
            "int8" | "i1" => NiftiDtype::I8,
            "uint16" | "u2" => NiftiDtype::U16,
            "int32" | "i4" => NiftiDtype::I32,
            "float64" | "f8" => NiftiDtype::F64,
            other => panic!("fixture dtype {other} not covered"),
        };
        assert_eq!(header.dtype, want_dtype, "{}", m.file);
        assert_eq!(header.big_endian, m.dtype.starts_with('>'), "{}", m.file);
        let (s, i) = header.scaling().map_or((1.0, 0.0), |(s, i)| (s as f64, i as f64));
        // (serde_json may round the last digit of the recorded f64; the values below are exact.)
        assert!(
            (s - m.slope).abs() <= 1e-12 * m.slope.abs() && (i - m.inter).abs() <= 1e-12 * m.inter.abs().max(1.0),
            "{}: scaling",
            m.file
        );
        // Exact equality: same storage, same scaling arithmetic as nibabel.
        for (a, b) in ours.iter().zip(expected.iter()) {
            assert_eq!(a.to_bits(), b.to_bits(), "{}: {a} vs nibabel {b}", m.file);
        }
    }
}

#[test]
fn mask_order_and_masked_betas_match_numpy() {
    let dir = fixtures().join("nifti");
    let roi = read_volume(&dir.join("roi.nii.gz")).unwrap();
    let mask = VoxelMask::positive(&roi);
    let offsets: ndarray::Array1<i64> = read_npy(dir.join("mask_offsets.npy")).unwrap();
    let want: Vec<usize> = offsets.iter().map(|&o| o as usize).collect();
    assert_eq!(mask.offsets(), want.as_slice());
    // ROI values at the mask voxels, in mask order (what the ROI analysis indexes with).
    let labels = mask.select(&roi).unwrap();
    assert_eq!(labels.len(), want.len());
    assert!(labels.iter().all(|&v| v > 0.0));
    assert!(want.iter().zip(&labels).all(|(&o, &v)| roi.data[o] == v));
    let expected: Array2<f32> = read_npy(dir.join("betas_masked.npy")).unwrap();
    let mut reader = NiftiReader::open(&dir.join("betas.nii.gz")).unwrap();
    assert_eq!(reader.header().n_volumes(), expected.nrows());
    let mut row = vec![0f32; mask.len()];
    for t in 0..expected.nrows() {
        reader.next_masked(&mask, &mut row).unwrap();
        assert_eq!(row, expected.row(t).iter().copied().collect::<Vec<_>>(), "trial {t}");
    }
}

#[derive(serde::Deserialize)]
struct MatMeta {
    compressed: std::collections::BTreeMap<String, serde_json::Value>,
}

#[test]
fn mat_values_match_scipy_loadmat() {
    let dir = fixtures().join("mat");
    let meta: MatMeta = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    for kind in ["compressed", "plain"] {
        let file = MatFile::read(&dir.join(format!("{kind}.mat"))).unwrap();
        let mut checked = 0;
        for (name, shape) in &meta.compressed {
            if name == "label" {
                match &file.vars["label"] {
                    MatValue::Char { text, .. } => assert_eq!(text, shape.as_str().unwrap()),
                    other => panic!("label read as {other:?}"),
                }
                continue;
            }
            let expected: ArrayD<f64> = read_npy(dir.join(format!("{kind}.{name}.npy"))).unwrap();
            let (dims, data) = file.numeric(name, Path::new(kind)).unwrap();
            assert_eq!(dims, expected.shape(), "{kind}.{name}");
            let ours = ArrayD::from_shape_vec(IxDyn(dims).f(), data.to_vec()).unwrap();
            assert_eq!(ours, expected, "{kind}.{name}");
            checked += 1;
        }
        assert_eq!(checked, 9, "{kind}");
        // Cells and structs are reported, not decoded, and do not stop the rest of the file.
        assert_eq!(file.vars["cellvar"], MatValue::Unsupported { class: MatClass::Cell });
        assert_eq!(file.vars["structvar"], MatValue::Unsupported { class: MatClass::Struct });
    }
    assert!(
        std::fs::metadata(dir.join("compressed.mat")).unwrap().len()
            < std::fs::metadata(dir.join("plain.mat")).unwrap().len()
    );
}

#[derive(serde::Deserialize)]
struct CaptionMeta {
    #[serde(rename = "U")]
    u: Vec<Vec<String>>,
    #[serde(rename = "1d")]
    one_d: Vec<String>,
    #[serde(rename = "S")]
    s: Vec<Vec<String>>,
}

#[test]
fn caption_arrays_match_numpy() {
    let dir = fixtures().join("npy");
    let meta: CaptionMeta = serde_json::from_str(&std::fs::read_to_string(dir.join("captions.json")).unwrap()).unwrap();
    assert_eq!(CaptionTable::read_npy(&dir.join("captions_U.npy")).unwrap().rows, meta.u);
    let one_d = CaptionTable::read_npy(&dir.join("captions_1d.npy")).unwrap();
    assert_eq!(one_d.rows, meta.one_d.iter().map(|s| vec![s.clone()]).collect::<Vec<_>>());
    assert_eq!(CaptionTable::read_npy(&dir.join("captions_S.npy")).unwrap().rows, meta.s);
    match CaptionTable::read_npy(&dir.join("captions_object.npy")) {
        Err(NsdError::Format { message, .. }) => assert!(message.contains("'|O'"), "{message}"),
        other => panic!("object array must be refused, got {other:?}"),
    }
}

#[test]
fn our_caption_writer_round_trips_numpy_strings() {
    let dir = fixtures().join("npy");
    let table = CaptionTable::read_npy(&dir.join("captions_U.npy")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("caps.npy");
    table.write_npy(&path).unwrap();
    assert_eq!(CaptionTable::read_npy(&path).unwrap(), table);
}

#[cfg(feature = "hdf5")]
mod hdf5 {
    use super::*;
    use ndarray::{Array4, s};
    use nsd_io::hdf5::{Hdf5Betas, StimulusBrick};

    #[test]
    fn h5py_stimulus_brick_reads_by_index() {
        let dir = fixtures().join("hdf5");
        let expected: Array4<u8> = read_npy(dir.join("stimuli.expected.npy")).unwrap();
        let brick = StimulusBrick::open(&dir.join("stimuli.hdf5")).unwrap();
        assert_eq!(brick.len(), 7);
        assert_eq!(brick.image_size(), (9, 11));
        let ids = [6, 0, 3, 3];
        let got = brick.read(&ids).unwrap();
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(got.slice(s![slot, .., .., ..]), expected.slice(s![id, .., .., ..]));
        }
        assert!(matches!(brick.read(&[7]), Err(NsdError::OutOfRange { .. })));
    }

    #[test]
    fn hdf5_bad_inputs_are_named_errors() {
        let dir = fixtures().join("hdf5");
        let missing = dir.join("nope.hdf5");
        let err = StimulusBrick::open(&missing).err().unwrap();
        assert!(matches!(err, NsdError::Missing { ref path, .. } if *path == missing), "{err}");
        let err = StimulusBrick::open(&dir.join("betas.hdf5")).err().unwrap();
        assert!(err.to_string().contains("no dataset 'imgBrick'"), "{err}");
        // betas.hdf5 is i16 4-D; opened as betas it works, the brick is u8 and is refused.
        let err = Hdf5Betas::open(&dir.join("stimuli.hdf5")).err().unwrap();
        assert!(err.to_string().contains("no dataset 'betas'"), "{err}");
        let err = StimulusBrick::open(&dir.join("betas.expected.npy")).err().unwrap();
        assert!(matches!(err, NsdError::Hdf5 { .. }), "{err}");
    }

    #[test]
    fn h5py_betas_masked_match_numpy() {
        let dir = fixtures().join("hdf5");
        let expected: Array4<i16> = read_npy(dir.join("betas.expected.npy")).unwrap();
        let betas = Hdf5Betas::open(&dir.join("betas.hdf5")).unwrap();
        let (nt, nz, ny, nx) = expected.dim();
        assert_eq!(betas.volume_dims(), [nx, ny, nz]);
        // A mask over every other voxel, in C order over [i, j, k].
        let vol = nsd_io::Volume {
            path: "m".into(),
            dims: [nx, ny, nz],
            data: (0..nx * ny * nz).map(|f| (f % 2) as f64).collect(),
        };
        let mask = VoxelMask::positive(&vol);
        let mut out = vec![0f32; nt * mask.len()];
        betas.read_masked(&mask, &mut out, 4).unwrap();
        let mut n = 0;
        for t in 0..nt {
            for i in 0..nx {
                for j in 0..ny {
                    for k in 0..nz {
                        if (i + nx * (j + ny * k)) % 2 == 1 {
                            assert_eq!(out[n], expected[[t, k, j, i]] as f32);
                            n += 1;
                        }
                    }
                }
            }
        }
        assert_eq!(n, out.len());
    }
}
