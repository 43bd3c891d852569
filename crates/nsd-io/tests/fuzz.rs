//! Property tests: the NIfTI, MAT (v5 and v4), npy and LZF parsers never panic (nor allocate what
//! the input only claims) on arbitrary bytes, on valid files with random bytes overwritten, or on
//! headers with arbitrary (and boundary) field values. Every input must give either a value or a
//! typed error. Each property runs `cases()` generated cases and checks that every one reached
//! the parser; with `--nocapture` each prints its count.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::read::MultiGzDecoder;
use nsd_io::CaptionTable;
use nsd_io::mat::MatFile;
use nsd_io::nifti::{NiftiHeader, NiftiReader, write_nifti};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Cases per property; `NSD_IO_FUZZ_CASES` raises it for a longer local run.
fn cases() -> u32 {
    std::env::var("NSD_IO_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
}

fn edge_fixture(rel: &str) -> Vec<u8> {
    fixture(&format!("edge/{rel}"))
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/formats").join(rel)).unwrap()
}

fn valid_nifti() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.nii");
    let data: Vec<f32> = (0..4 * 3 * 2 * 2).map(|i| i as f32 * 0.5).collect();
    write_nifti(&p, &[4, 3, 2, 2], &data, [1.0; 3], (2.0, 1.0)).unwrap();
    std::fs::read(p).unwrap()
}

fn read_nifti_bytes<R: std::io::Read>(source: R) {
    if let Ok(reader) = NiftiReader::new(source, Path::new("fuzz.nii")) {
        let _ = reader.read_array();
    }
}

fn parse_mat(bytes: &[u8]) {
    let _ = MatFile::parse(bytes, Path::new("fuzz.mat"));
}

fn mutate(mut base: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    let n = base.len();
    for &(pos, val) in edits {
        base[pos % n] = val;
    }
    base
}

/// Runs `cases()` inputs from `strategy` through `check` (which makes `calls` parser calls each),
/// and asserts that every call happened. The generator is seeded (a fixed seed, or
/// `NSD_IO_FUZZ_SEED` to explore others), so a failure reproduces.
fn fuzz<S: Strategy>(name: &str, strategy: S, calls: usize, check: impl Fn(S::Value)) {
    let count = AtomicUsize::new(0);
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let seed: u64 = std::env::var("NSD_IO_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(20_261_127);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    runner
        .run(&strategy, |input| {
            check(input);
            count.fetch_add(calls, Ordering::Relaxed);
            Ok(())
        })
        .unwrap();
    let n = count.load(Ordering::Relaxed);
    assert_eq!(n, cases() as usize * calls, "{name}");
    eprintln!("fuzz {name}: {n} parser inputs, no panic");
}

#[test]
fn nifti_arbitrary_bytes() {
    fuzz("nifti arbitrary bytes (raw and as gzip)", proptest::collection::vec(any::<u8>(), 0..1200), 2, |bytes| {
        read_nifti_bytes(Cursor::new(bytes.clone()));
        read_nifti_bytes(MultiGzDecoder::new(Cursor::new(bytes)));
    });
}

#[test]
fn nifti_mutated_header_and_data() {
    let base = valid_nifti();
    fuzz("nifti mutated .nii", proptest::collection::vec((0usize..700, any::<u8>()), 1..8), 1, |edits| {
        read_nifti_bytes(Cursor::new(mutate(base.clone(), &edits)));
    });
}

#[test]
fn nifti_mutated_gzip() {
    let base = fixture("nifti/int16_4d.nii.gz");
    fuzz(
        "nifti mutated .nii.gz (nibabel-written)",
        proptest::collection::vec((0usize..4000, any::<u8>()), 1..4),
        1,
        |edits| {
            read_nifti_bytes(MultiGzDecoder::new(Cursor::new(mutate(base.clone(), &edits))));
        },
    );
}

#[test]
fn mat_arbitrary_bytes() {
    let header = fixture("mat/plain.mat")[..128].to_vec();
    fuzz(
        "mat arbitrary bytes (with and without a valid header)",
        proptest::collection::vec(any::<u8>(), 0..600),
        2,
        |tail| {
            let mut with_header = header.clone();
            with_header.extend_from_slice(&tail);
            parse_mat(&with_header);
            parse_mat(&tail);
        },
    );
}

#[test]
fn mat_mutated_files() {
    let (plain, compressed) = (fixture("mat/plain.mat"), fixture("mat/compressed.mat"));
    fuzz("mat mutated scipy-written files", proptest::collection::vec((0usize..5000, any::<u8>()), 1..6), 2, |edits| {
        parse_mat(&mutate(plain.clone(), &edits));
        parse_mat(&mutate(compressed.clone(), &edits));
    });
}

#[test]
fn npy_mutated_captions() {
    let base = fixture("npy/captions_U.npy");
    fuzz("npy mutated caption array", proptest::collection::vec((0usize..400, any::<u8>()), 1..6), 1, |edits| {
        let _ = CaptionTable::parse_npy(&mutate(base.clone(), &edits), Path::new("fuzz.npy"));
    });
}

/// An f32 header field: boundary values (0, the NIfTI minimum offset, NaN, infinities) or any.
fn f32_field() -> impl Strategy<Value = f32> {
    prop_oneof![
        Just(0.0f32),
        Just(352.0),
        Just(f32::NAN),
        Just(f32::INFINITY),
        Just(f32::NEG_INFINITY),
        -1000.0f32..5000.0,
        any::<f32>(),
    ]
}

/// An i16 header field: small values, the extremes, or any.
fn i16_field() -> impl Strategy<Value = i16> {
    prop_oneof![-3i16..10, Just(i16::MAX), Just(i16::MIN), any::<i16>()]
}

#[test]
fn nifti_header_fields() {
    let base = valid_nifti();
    let datatype = prop_oneof![
        Just(2i16),
        Just(4),
        Just(8),
        Just(16),
        Just(64),
        Just(256),
        Just(512),
        Just(768),
        Just(1024),
        Just(1280),
        any::<i16>()
    ];
    let strategy = (
        (-1i16..9, proptest::collection::vec(i16_field(), 7)),
        (datatype, i16_field()),
        (f32_field(), f32_field(), f32_field()),
        any::<bool>(),
    );
    let parsed = AtomicUsize::new(0);
    fuzz("nifti header field values", strategy, 1, |((dim0, dims), (dtype, bitpix), (vox, slope, inter), ext)| {
        let mut b = base.clone();
        b[40..42].copy_from_slice(&dim0.to_le_bytes());
        for (d, v) in dims.iter().enumerate() {
            b[42 + 2 * d..44 + 2 * d].copy_from_slice(&v.to_le_bytes());
        }
        b[70..72].copy_from_slice(&dtype.to_le_bytes());
        b[72..74].copy_from_slice(&bitpix.to_le_bytes());
        b[108..112].copy_from_slice(&vox.to_le_bytes());
        b[112..116].copy_from_slice(&slope.to_le_bytes());
        b[116..120].copy_from_slice(&inter.to_le_bytes());
        b[348] = u8::from(ext);
        if let Ok(h) = NiftiHeader::parse(&b, Path::new("fuzz.nii")) {
            // What a parsed header promises: positive dims whose data size fits, data after the
            // header, and a finite intercept wherever the slope applies.
            assert!(h.dims.iter().all(|&d| d >= 1) && (1..=7).contains(&h.dims.len()));
            let size = h.dims.iter().try_fold(h.dtype.size(), |a, &d| a.checked_mul(d));
            assert!(size.is_some());
            assert!(h.vox_offset >= 352);
            if h.scl_slope != 0.0 && h.scl_slope.is_finite() {
                assert!(h.scl_inter.is_finite());
            }
            assert_eq!(h.volume_len().checked_mul(h.n_volumes()), Some(h.dims.iter().product()));
            parsed.fetch_add(1, Ordering::Relaxed);
        }
        read_nifti_bytes(Cursor::new(b));
    });
    // The properties above were checked on a fair share of accepted headers, not vacuously.
    let parsed = parsed.load(Ordering::Relaxed);
    assert!(parsed * 50 > cases() as usize, "only {parsed} of {} headers parsed", cases());
}

#[test]
fn mat_v4_mutated_files() {
    let (little, big) = (edge_fixture("mat/v4.mat"), edge_fixture("mat/v4_big_endian.mat"));
    fuzz(
        "mat v4 mutated files (scipy-written, big-endian)",
        proptest::collection::vec((0usize..3000, any::<u8>()), 1..6),
        2,
        |edits| {
            parse_mat(&mutate(little.clone(), &edits));
            parse_mat(&mutate(big.clone(), &edits));
        },
    );
}

#[test]
fn mat_v5_uint32_dims_utf8_names_mutated() {
    let base = edge_fixture("mat/uint32_dims_utf8_names_compressed.mat");
    fuzz(
        "mat v5 miUINT32 dims + miUTF8 names, mutated",
        proptest::collection::vec((0usize..3000, any::<u8>()), 1..6),
        1,
        |edits| {
            parse_mat(&mutate(base.clone(), &edits));
        },
    );
}

#[test]
fn lzf_arbitrary_streams() {
    fuzz("lzf arbitrary streams", (proptest::collection::vec(any::<u8>(), 0..400), 0usize..5000), 1, |(bytes, max)| {
        if let Ok(out) = nsd_io::lzf::decompress(&bytes, max) {
            assert!(out.len() <= max);
        }
    });
}
