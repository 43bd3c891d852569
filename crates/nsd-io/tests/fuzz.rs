//! Property tests: the NIfTI, MAT and npy parsers never panic (nor allocate what the input only
//! claims) on arbitrary bytes, or on valid files with random bytes overwritten. Every input must
//! give either a value or a typed error.

use std::io::Cursor;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::read::MultiGzDecoder;
use nsd_io::CaptionTable;
use nsd_io::mat::MatFile;
use nsd_io::nifti::{NiftiReader, write_nifti};
use proptest::prelude::*;

const CASES: u32 = 4000;
static RUN: AtomicUsize = AtomicUsize::new(0);

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
    RUN.fetch_add(1, Ordering::Relaxed);
    if let Ok(reader) = NiftiReader::new(source, Path::new("fuzz.nii")) {
        let _ = reader.read_array();
    }
}

fn parse_mat(bytes: &[u8]) {
    RUN.fetch_add(1, Ordering::Relaxed);
    let _ = MatFile::parse(bytes, Path::new("fuzz.mat"));
}

fn mutate(mut base: Vec<u8>, edits: &[(usize, u8)]) -> Vec<u8> {
    let n = base.len();
    for &(pos, val) in edits {
        base[pos % n] = val;
    }
    base
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn nifti_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
        read_nifti_bytes(Cursor::new(bytes.clone()));
        read_nifti_bytes(MultiGzDecoder::new(Cursor::new(bytes)));
    }

    #[test]
    fn nifti_mutated_header_and_data(edits in proptest::collection::vec((0usize..700, any::<u8>()), 1..8)) {
        read_nifti_bytes(Cursor::new(mutate(valid_nifti(), &edits)));
    }

    #[test]
    fn nifti_mutated_gzip(edits in proptest::collection::vec((0usize..4000, any::<u8>()), 1..4)) {
        read_nifti_bytes(MultiGzDecoder::new(Cursor::new(mutate(fixture("nifti/int16_4d.nii.gz"), &edits))));
    }

    #[test]
    fn mat_arbitrary_bytes(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
        // With and without a valid 128-byte header in front, so the element parser is reached.
        let mut with_header = fixture("mat/plain.mat")[..128].to_vec();
        with_header.extend_from_slice(&tail);
        parse_mat(&with_header);
        parse_mat(&tail);
    }

    #[test]
    fn mat_mutated_files(edits in proptest::collection::vec((0usize..5000, any::<u8>()), 1..6)) {
        parse_mat(&mutate(fixture("mat/plain.mat"), &edits));
        parse_mat(&mutate(fixture("mat/compressed.mat"), &edits));
    }

    #[test]
    fn npy_mutated_captions(edits in proptest::collection::vec((0usize..400, any::<u8>()), 1..6)) {
        RUN.fetch_add(1, Ordering::Relaxed);
        let _ = CaptionTable::parse_npy(&mutate(fixture("npy/captions_U.npy"), &edits), Path::new("fuzz.npy"));
    }
}

#[test]
fn zz_report_fuzz_count() {
    // Printed with --nocapture; the properties may still be running in parallel, so this is a
    // lower bound. In all, each of the CASES cases makes 9 parser calls (2+1+1+2+2+1).
    eprintln!("fuzz: {} parser inputs so far (of {} in all)", RUN.load(Ordering::Relaxed), 9 * CASES);
}
