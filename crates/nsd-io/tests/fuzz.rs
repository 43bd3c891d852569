//! Property tests: the NIfTI, MAT and npy parsers never panic (nor allocate what the input only
//! claims) on arbitrary bytes, or on valid files with random bytes overwritten. Every input must
//! give either a value or a typed error. Each property runs `cases()` generated cases and checks
//! that every one reached the parser; with `--nocapture` each prints its count.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::read::MultiGzDecoder;
use nsd_io::CaptionTable;
use nsd_io::mat::MatFile;
use nsd_io::nifti::{NiftiReader, write_nifti};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Cases per property; `NSD_IO_FUZZ_CASES` raises it for a longer local run.
fn cases() -> u32 {
    std::env::var("NSD_IO_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000)
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
