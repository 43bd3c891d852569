//! Files in the forms other tools write (issue 13), read as the canonical readers read them:
//! MAT v5 with miUINT32 dims or miUTF8 names and MAT v4 (scipy.io.loadmat), NIfTI headers with
//! unset or redundant fields (nibabel), numpy strings with NULs inside, h5py's LZF filter; and
//! the headers the canonical readers refuse, refused with the file and the field named. The
//! fixtures come from `tools/nsd-io/make_fixtures.py --only edge` (tests/fixtures/README.md).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use ndarray_npy::read_npy;
use nsd_io::mat::{MatClass, MatFile, MatValue};
use nsd_io::nifti::{NiftiReader, read_nifti};
use nsd_io::{CaptionTable, ExpDesign, NsdError};

fn edge() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats/edge")
}

/// scipy's record of one variable: numeric (shape and dtype), text, or not decoded.
#[derive(serde::Deserialize)]
struct MatVarMeta {
    shape: Option<Vec<usize>>,
    dtype: Option<String>,
    text: Option<String>,
    unsupported: Option<String>,
}

fn mat_meta() -> BTreeMap<String, BTreeMap<String, MatVarMeta>> {
    serde_json::from_str(&std::fs::read_to_string(edge().join("mat/meta.json")).unwrap()).unwrap()
}

fn class_of(dtype: &str) -> MatClass {
    match dtype.trim_start_matches(['<', '>', '|', '=']) {
        "float64" | "f8" => MatClass::Double,
        "float32" | "f4" => MatClass::Single,
        "int32" | "i4" => MatClass::Int32,
        "int16" | "i2" => MatClass::Int16,
        "uint16" | "u2" => MatClass::Uint16,
        "uint8" | "u1" => MatClass::Uint8,
        other => panic!("dtype {other} not covered"),
    }
}

/// Every variable scipy.io.loadmat found in `file`, compared with ours: values bit for bit,
/// MATLAB dims, and for v4 files the storage class too.
fn check_mat_against_scipy(file: &str, vars: &BTreeMap<String, MatVarMeta>, check_class: bool) {
    let dir = edge().join("mat");
    let ours = MatFile::read(&dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let stem = file.trim_end_matches(".mat");
    let ours_names: Vec<&String> = ours.vars.keys().collect();
    let scipy_names: Vec<&String> = vars.keys().collect();
    assert_eq!(ours_names, scipy_names, "{file}: variable names");
    for (name, m) in vars {
        match (&ours.vars[name], m) {
            (MatValue::Char { text, .. }, MatVarMeta { text: Some(want), .. }) => {
                assert_eq!(text, want, "{file}.{name}")
            }
            (MatValue::Unsupported { class }, MatVarMeta { unsupported: Some(kind), .. }) => {
                if kind == "sparse" {
                    assert_eq!(*class, MatClass::Sparse, "{file}.{name}");
                }
            }
            (MatValue::Numeric { class, dims, data }, MatVarMeta { shape: Some(shape), dtype: Some(dtype), .. }) => {
                let expected: ArrayD<f64> = read_npy(dir.join(format!("{stem}.{name}.npy"))).unwrap();
                assert_eq!(dims, shape, "{file}.{name}: dims");
                let got = ArrayD::from_shape_vec(IxDyn(dims).f(), data.clone()).unwrap();
                assert_eq!(got.shape(), expected.shape());
                assert!(
                    got.iter().zip(expected.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{file}.{name}: values differ from scipy.io.loadmat"
                );
                if check_class {
                    assert_eq!(*class, class_of(dtype), "{file}.{name}: class");
                }
            }
            (got, _) => panic!("{file}.{name}: read as {got:?}, scipy read something else"),
        }
    }
}

#[test]
fn mat_v5_uint32_dims_and_utf8_names_match_scipy() {
    let meta = mat_meta();
    for file in ["uint32_dims.mat", "utf8_names.mat", "uint32_dims_utf8_names_compressed.mat"] {
        check_mat_against_scipy(file, &meta[file], true);
    }
    // The design reads from such a file as from a plain one.
    let d = ExpDesign::read(&edge().join("mat/uint32_dims_utf8_names_compressed.mat")).unwrap();
    assert_eq!(d.masterordering.len(), 30);
    assert_eq!(d.subjectim.len(), 8);
}

#[test]
fn mat_v4_files_match_scipy_and_hold_a_design() {
    let meta = mat_meta();
    for file in ["v4.mat", "v4_big_endian.mat"] {
        check_mat_against_scipy(file, &meta[file], true);
        // The three design variables are 2-D numeric matrices, which v4 holds: the design reads.
        let path = edge().join("mat").join(file);
        let design = ExpDesign::read(&path).unwrap();
        let mo: ArrayD<f64> =
            read_npy(edge().join(format!("mat/{}.masterordering.npy", &file[..file.len() - 4]))).unwrap();
        assert_eq!(design.masterordering, mo.iter().map(|&v| v as usize).collect::<Vec<_>>(), "{file}");
        let si: ArrayD<f64> = read_npy(edge().join(format!("mat/{}.subjectim.npy", &file[..file.len() - 4]))).unwrap();
        for (s, row) in design.subjectim.iter().enumerate() {
            for (m, &id) in row.iter().enumerate() {
                assert_eq!(id as f64, si[[s, m]], "{file}: subjectim[{s}][{m}]");
            }
        }
        assert_eq!(design.sharedix, vec![1, 2, 3, 4]);
    }
}

#[test]
fn damaged_mat_v4_files_are_named_errors() {
    let bytes = std::fs::read(edge().join("mat/v4.mat")).unwrap();
    let path = Path::new("v4.mat");
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (bytes[..bytes.len() - 5].to_vec(), "truncated"),
        (bytes[..10].to_vec(), "truncated"),
        (
            {
                let mut b = bytes.clone();
                b[0..4].copy_from_slice(&70i32.to_le_bytes()); // P = 7
                b
            },
            "value type P = 7",
        ),
        (
            {
                let mut b = bytes.clone();
                b[0..4].copy_from_slice(&2000i32.to_le_bytes()); // VAX D
                b
            },
            "VAX",
        ),
        (
            {
                let mut b = bytes.clone();
                b[4..8].copy_from_slice(&(-3i32).to_le_bytes()); // mrows
                b
            },
            "mrows -3",
        ),
        (
            {
                let mut b = bytes.clone();
                b[4..8].copy_from_slice(&i32::MAX.to_le_bytes());
                b[8..12].copy_from_slice(&1i32.to_le_bytes());
                b
            },
            "need",
        ),
        (
            {
                let mut b = bytes.clone();
                b[4..8].copy_from_slice(&i32::MAX.to_le_bytes());
                b[8..12].copy_from_slice(&i32::MAX.to_le_bytes());
                b
            },
            "overflow",
        ),
    ];
    for (b, words) in cases {
        let err = MatFile::parse(&b, path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NsdError::Format { .. }), "{msg}");
        assert!(msg.contains("v4.mat") && msg.contains("MAT v4") && msg.contains(words), "{msg} (want {words})");
    }
}

#[test]
fn mat_v5_dims_out_of_int32_range_are_refused() {
    // The first variable of uint32_dims.mat with a dimension of 2^31 (scipy refuses it too).
    let mut b = std::fs::read(edge().join("mat/uint32_dims.mat")).unwrap();
    // 128-byte header, miMATRIX tag (8), array flags element (16), dims tag (8): first dim at 160.
    assert_eq!(u32::from_le_bytes(b[152..156].try_into().unwrap()), 6, "dims stored as miUINT32");
    b[160..164].copy_from_slice(&(1u32 << 31).to_le_bytes());
    let msg = MatFile::parse(&b, Path::new("x.mat")).unwrap_err().to_string();
    assert!(msg.contains("dimension 2147483648 is out of range"), "{msg}");
}

#[derive(serde::Deserialize)]
struct NiftiCase {
    file: String,
    nibabel: String,
    expected: Option<String>,
    error: Option<String>,
}

#[test]
fn nifti_header_variants_read_or_refused_as_nibabel_does() {
    let dir = edge().join("nifti");
    let cases: Vec<NiftiCase> = serde_json::from_str(&std::fs::read_to_string(dir.join("meta.json")).unwrap()).unwrap();
    let (mut read, mut refused) = (0, 0);
    for c in cases {
        let path = dir.join(&c.file);
        match c.nibabel.as_str() {
            "reads" => {
                let (_, ours) = read_nifti(&path).unwrap_or_else(|e| panic!("{}: {e}", c.file));
                let expected: ArrayD<f64> = read_npy(dir.join(c.expected.as_deref().unwrap())).unwrap();
                assert_eq!(ours.shape(), expected.shape(), "{}", c.file);
                assert!(
                    ours.iter().zip(expected.iter()).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{}: values differ from nibabel's",
                    c.file
                );
                read += 1;
            }
            _ => {
                let err = read_nifti(&path).unwrap_err();
                let msg = err.to_string();
                let field = if c.file.starts_with("slope") { "scl_inter" } else { "vox_offset" };
                assert!(matches!(err, NsdError::Format { .. }), "{msg}");
                assert!(msg.contains(&c.file) && msg.contains(field), "{}: {msg} (nibabel: {:?})", c.file, c.error);
                refused += 1;
            }
        }
    }
    assert_eq!((read, refused), (8, 6));
}

#[test]
fn unset_vox_offset_with_extensions_is_refused() {
    let mut b = std::fs::read(edge().join("nifti/vox_offset_0.nii")).unwrap();
    b[348] = 1; // the extension flag: extensions follow, their end is unknown
    let err = NiftiReader::new(std::io::Cursor::new(b), Path::new("ext.nii")).err().unwrap();
    assert!(err.to_string().contains("vox_offset is 0 (unset) but the extension flag"), "{err}");
}

#[derive(serde::Deserialize)]
struct NulCaptions {
    #[serde(rename = "U")]
    u: Vec<Vec<String>>,
    #[serde(rename = "S")]
    s: Vec<Vec<String>>,
}

#[test]
fn captions_keep_interior_nuls_as_numpy_does() {
    let dir = edge().join("npy");
    let want: NulCaptions =
        serde_json::from_str(&std::fs::read_to_string(dir.join("captions_nul.json")).unwrap()).unwrap();
    assert!(want.u[0][0].contains('\0'), "the fixture has an interior NUL");
    assert_eq!(CaptionTable::read_npy(&dir.join("captions_nul_U.npy")).unwrap().rows, want.u);
    assert_eq!(CaptionTable::read_npy(&dir.join("captions_nul_S.npy")).unwrap().rows, want.s);
}

#[cfg(feature = "hdf5")]
mod hdf5 {
    use super::*;
    use ndarray::{Array4, s};
    use nsd_io::hdf5::{Hdf5Betas, StimulusBrick};

    #[test]
    fn h5py_lzf_brick_and_betas_read_as_h5py_reads_them() {
        let dir = edge().join("hdf5");
        let expected: Array4<u8> = read_npy(dir.join("stimuli_lzf.expected.npy")).unwrap();
        let brick = StimulusBrick::open(&dir.join("stimuli_lzf.hdf5")).unwrap();
        let ids: Vec<usize> = (0..brick.len()).rev().collect();
        let got = brick.read(&ids).unwrap();
        for (slot, &id) in ids.iter().enumerate() {
            assert_eq!(got.slice(s![slot, .., .., ..]), expected.slice(s![id, .., .., ..]), "image {id}");
        }
        // LZF + shuffle betas, read in blocks that cut across the 2-trial chunks.
        let expected: Array4<i16> = read_npy(dir.join("betas_lzf_shuffle.expected.npy")).unwrap();
        let betas = Hdf5Betas::open(&dir.join("betas_lzf_shuffle.hdf5")).unwrap();
        let (nt, nz, ny, nx) = expected.dim();
        let all = nsd_io::Volume { path: "m".into(), dims: [nx, ny, nz], data: vec![1.0; nx * ny * nz] };
        let mask = nsd_io::VoxelMask::positive(&all);
        let mut out = vec![0f32; nt * mask.len()];
        betas.read_masked(&mask, &mut out, 3).unwrap();
        let mut n = 0;
        for t in 0..nt {
            for i in 0..nx {
                for j in 0..ny {
                    for k in 0..nz {
                        assert_eq!(out[n], expected[[t, k, j, i]] as f32);
                        n += 1;
                    }
                }
            }
        }
    }

    #[test]
    fn unknown_filters_are_named_with_a_repack_command() {
        let path = edge().join("hdf5/stimuli_unknown_filter.hdf5");
        let err = match StimulusBrick::open(&path) {
            Err(e) => e,
            Ok(b) => b.read(&[0]).unwrap_err(),
        };
        let msg = err.to_string();
        assert!(msg.contains("dataset imgBrick of") && msg.contains("stimuli_unknown_filter.hdf5"), "{msg}");
        assert!(msg.contains("filter 32123") && msg.contains("h5repack -f imgBrick:GZIP=4"), "{msg}");
    }

    #[test]
    fn truncated_and_garbage_stimulus_files_are_explained() {
        let src = std::fs::read(edge().join("../hdf5/stimuli.hdf5")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes, words) in [
            ("truncated.hdf5", src[..src.len() / 2].to_vec(), vec!["truncated", "superblock records"]),
            ("cut_header.hdf5", src[..40].to_vec(), vec!["not a readable HDF5 file"]),
            ("garbage.hdf5", (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(), vec!["no HDF5 signature"]),
            ("empty.hdf5", Vec::new(), vec!["0 bytes", "no HDF5 signature"]),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &bytes).unwrap();
            let err = StimulusBrick::open(&path).err().unwrap_or_else(|| panic!("{name} opened"));
            let msg = err.to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains(&format!("{} bytes", bytes.len())), "{msg}");
            assert!(msg.contains("imgBrick [N, 425, 425, 3] u8"), "{msg}");
            for w in words {
                assert!(msg.contains(w), "{name}: {msg} (want {w})");
            }
        }
    }

    #[test]
    fn corrupt_chunks_name_the_dataset_and_the_image() {
        // Damage the deflate stream of the last image (h5py writes its chunks after the metadata;
        // the last chunk of stimuli_gzip.hdf5 is its last ~100 bytes).
        let src = std::fs::read(edge().join("hdf5/stimuli_gzip.hdf5")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.hdf5");
        let mut b = src.clone();
        let n = b.len();
        for x in &mut b[n - 80..n - 10] {
            *x ^= 0x5a;
        }
        std::fs::write(&path, &b).unwrap();
        let brick = StimulusBrick::open(&path).unwrap();
        let err = (0..brick.len()).try_for_each(|id| brick.read(&[id]).map(|_| ())).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NsdError::Hdf5 { .. }), "{msg}");
        assert!(msg.contains("damaged.hdf5") && msg.contains("image 5 of dataset imgBrick"), "{msg}");
    }
}
