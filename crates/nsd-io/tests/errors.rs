//! Bad input gets a clear, typed error that names the file, and nothing is left half-written.

use std::path::Path;

use nsd_io::expdesign::ExpDesign;
use nsd_io::nifti::{NiftiReader, NiftiWriter, VoxelMask, read_volume, write_nifti};
use nsd_io::synth::{SynthConfig, write_synthetic_nsd};
use nsd_io::{AssemblyOptions, CaptionTable, NsdError, NsdLayout, assemble_subject, write_atomic};

fn mini() -> (tempfile::TempDir, NsdLayout, AssemblyOptions) {
    let dir = tempfile::tempdir().unwrap();
    let config = SynthConfig { sessions: 1, ..SynthConfig::default() };
    let nsd = write_synthetic_nsd(dir.path(), &config).unwrap();
    (dir, nsd.layout, config.assembly_options())
}

fn message(e: NsdError) -> String {
    e.to_string()
}

#[test]
fn missing_files_name_the_expected_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = assemble_subject(&NsdLayout::new(dir.path()), 1, &AssemblyOptions::default()).unwrap_err();
    assert!(
        matches!(err, NsdError::Missing { ref path, .. } if path.ends_with("nsddata/experiments/nsd/nsd_expdesign.mat")),
        "{err}"
    );
    let (_d, layout, opts) = mini();
    let session = layout.betas_session(1, 1);
    std::fs::remove_file(&session).unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(matches!(err, NsdError::Missing { ref path, .. } if *path == session), "{err}");
    assert!(message(err).contains("betas_session01.nii.gz"));
    std::fs::remove_file(&layout.captions).unwrap();
    let err = CaptionTable::read_npy(&layout.captions).unwrap_err();
    assert!(message(err).contains("COCO_73k_annots_curated.npy"));
}

#[test]
fn truncated_gzip_is_an_error() {
    let (_d, layout, _) = mini();
    let path = layout.betas_session(1, 1);
    let bytes = std::fs::read(&path).unwrap();
    let roi = read_volume(&layout.roi(1, "nsdgeneral")).unwrap();
    let mask = VoxelMask::positive(&roi);
    // Cut in the middle of the data, and cut only the gzip trailer (CRC + length).
    for cut in [bytes.len() / 2, bytes.len() - 4] {
        let damaged = path.with_file_name(format!("cut{cut}.nii.gz"));
        std::fs::write(&damaged, &bytes[..cut]).unwrap();
        let mut reader = NiftiReader::open(&damaged).unwrap();
        let mut row = vec![0f32; mask.len()];
        let err = (0..reader.header().n_volumes()).try_for_each(|_| reader.next_masked(&mask, &mut row)).unwrap_err();
        assert!(matches!(err, NsdError::Format { ref path, .. } if *path == damaged), "{err}");
    }
    // A gzip stream with a flipped byte in the compressed data fails the same way.
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 3;
    flipped[mid] ^= 0xff;
    let damaged = path.with_file_name("flipped.nii.gz");
    std::fs::write(&damaged, &flipped).unwrap();
    let reader = NiftiReader::open(&damaged);
    let failed = match reader {
        Err(_) => true,
        Ok(r) => r.read_array().is_err(),
    };
    assert!(failed);
}

fn patched_header(patch: impl Fn(&mut Vec<u8>)) -> Result<NiftiReader<std::io::Cursor<Vec<u8>>>, NsdError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.nii");
    write_nifti(&path, &[4, 3, 2], &[7i16; 24], [1.0; 3], (1.0, 0.0)).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    patch(&mut bytes);
    NiftiReader::new(std::io::Cursor::new(bytes), Path::new("v.nii"))
}

#[test]
fn wrong_headers_dims_and_dtypes_are_errors() {
    assert!(patched_header(|_| {}).is_ok());
    type Patch = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Patch, &str)> = vec![
        (Box::new(|b| b[344..348].copy_from_slice(b"abc\0")), "magic"),
        (Box::new(|b| b[344..348].copy_from_slice(b"ni1\0")), ".hdr/.img"),
        (Box::new(|b| b[0..4].copy_from_slice(&100i32.to_le_bytes())), "sizeof_hdr"),
        (Box::new(|b| b[0..4].copy_from_slice(&540i32.to_le_bytes())), "NIfTI-2"),
        (Box::new(|b| b[40..42].copy_from_slice(&9i16.to_le_bytes())), "dim[0]"),
        (Box::new(|b| b[44..46].copy_from_slice(&0i16.to_le_bytes())), "dim[2]"),
        (Box::new(|b| b[70..72].copy_from_slice(&32i16.to_le_bytes())), "datatype"),
        (Box::new(|b| b[42..44].copy_from_slice(&(-2i16).to_le_bytes())), "dim[1] is -2"),
        (Box::new(|b| b[40..42].copy_from_slice(&0i16.to_le_bytes())), "dim[0] is 0"),
        (Box::new(|b| b[108..112].copy_from_slice(&10f32.to_le_bytes())), "vox_offset"),
        (Box::new(|b| b[108..112].copy_from_slice(&f32::INFINITY.to_le_bytes())), "vox_offset"),
        (
            Box::new(|b| {
                b[112..116].copy_from_slice(&0.5f32.to_le_bytes());
                b[116..120].copy_from_slice(&f32::NAN.to_le_bytes());
            }),
            "scl_inter is NaN",
        ),
        (
            Box::new(|b| {
                // 7 dims of 32767: the data size overflows 64 bits.
                b[40..42].copy_from_slice(&7i16.to_le_bytes());
                for d in 1..=7 {
                    b[40 + 2 * d..42 + 2 * d].copy_from_slice(&i16::MAX.to_le_bytes());
                }
            }),
            "too large",
        ),
        (Box::new(|b| b.truncate(200)), "348-byte"),
    ];
    for (patch, words) in cases {
        let err = patched_header(patch).err().unwrap_or_else(|| panic!("accepted a bad header ({words})"));
        assert!(matches!(err, NsdError::Format { .. }), "{err}");
        assert!(message(err).contains(words), "message should mention {words}");
    }
    // Dims that claim more data than the file holds: truncated, not a crash or a huge allocation.
    let mut r = patched_header(|b| b[46..48].copy_from_slice(&30000i16.to_le_bytes())).unwrap();
    assert!(message(r.next_volume().unwrap_err()).contains("truncated"));
}

#[test]
fn mask_and_betas_shape_mismatch_is_an_error() {
    let (_d, layout, opts) = mini();
    let [nx, ny, nz] = SynthConfig::default().volume;
    write_nifti(&layout.roi(1, "nsdgeneral"), &[nx, ny, nz + 1], &vec![1i16; nx * ny * (nz + 1)], [1.8; 3], (1.0, 0.0))
        .unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(matches!(err, NsdError::Shape { .. }), "{err}");
    assert!(message(err).contains("betas_session01.nii.gz"));
    // A session with the wrong number of trials.
    let (_d, layout, opts) = mini();
    write_nifti(&layout.betas_session(1, 1), &[nx, ny, nz, 5], &vec![0i16; nx * ny * nz * 5], [1.8; 3], (1.0, 0.0))
        .unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(message(err).contains("expected (x, y, z, 60)"));
}

#[test]
fn ids_out_of_range_are_errors() {
    let (_d, layout, opts) = mini();
    assert!(matches!(assemble_subject(&layout, 9, &opts), Err(NsdError::OutOfRange { .. })));
    let err = assemble_subject(&layout, 1, &AssemblyOptions { n_images: 10, ..opts.clone() }).unwrap_err();
    assert!(matches!(err, NsdError::OutOfRange { .. }), "{err}");
    let err = assemble_subject(&layout, 1, &AssemblyOptions { sessions: 50, ..opts.clone() }).unwrap_err();
    assert!(message(err).contains("masterordering has"));
    let mut design = ExpDesign::read(&layout.expdesign()).unwrap();
    design.masterordering[3] = 10_000;
    design.write(&layout.expdesign()).unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(message(err).contains("masterordering value 10000"));
    let table = CaptionTable { rows: vec![vec!["a".into()]] };
    assert!(matches!(table.select(&[1]), Err(NsdError::OutOfRange { .. })));
}

#[test]
fn nan_betas_are_an_error() {
    let (_d, layout, opts) = mini();
    let [nx, ny, nz] = SynthConfig::default().volume;
    let roi = read_volume(&layout.roi(1, "nsdgeneral")).unwrap();
    let mask = VoxelMask::positive(&roi);
    let mut data = vec![0.5f32; nx * ny * nz * 60];
    data[5 * nx * ny * nz + mask.offsets()[3]] = f32::NAN;
    write_nifti(&layout.betas_session(1, 1), &[nx, ny, nz, 60], &data, [1.8; 3], (1.0, 0.0)).unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(matches!(err, NsdError::NonFinite { .. }), "{err}");
    assert!(message(err).contains("masked voxel 3 of volume 5"));
}

#[test]
fn nothing_is_left_half_written() {
    let dir = tempfile::tempdir().unwrap();
    // A writer dropped before finish leaves no file.
    let path = dir.path().join("partial.nii.gz");
    let mut w = NiftiWriter::create::<i16>(&path, &[2, 2, 2, 3], [1.0; 3], (1.0, 0.0), 1).unwrap();
    w.write_volume(&[1i16; 8]).unwrap();
    assert!(w.finish().is_err(), "two volumes were never written");
    assert!(!path.exists());
    // A failing atomic write leaves neither the file nor a temporary beside it.
    let target = dir.path().join("x.bin");
    let err = write_atomic(&target, |w| {
        w.write_all(b"half").unwrap();
        Err(NsdError::Config("stop".into()))
    });
    assert!(err.is_err() && !target.exists());
    // An invalid synthetic configuration writes nothing.
    let root = dir.path().join("synth");
    let bad = SynthConfig { n_shared: 0, ..SynthConfig::default() };
    assert!(matches!(write_synthetic_nsd(&root, &bad), Err(NsdError::Config(_))));
    assert!(!root.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn mat_errors_name_the_problem() {
    let (_d, layout, opts) = mini();
    let bytes = std::fs::read(layout.expdesign()).unwrap();
    std::fs::write(layout.expdesign(), &bytes[..bytes.len() - 10]).unwrap();
    let err = assemble_subject(&layout, 1, &opts).unwrap_err();
    assert!(message(err).contains("truncated"), "truncated .mat");
    let mut v73 = bytes.clone();
    v73[124..126].copy_from_slice(&0x0200u16.to_le_bytes());
    std::fs::write(layout.expdesign(), &v73).unwrap();
    assert!(message(assemble_subject(&layout, 1, &opts).unwrap_err()).contains("v7.3"));
    nsd_io::mat::write_mat(&layout.expdesign(), &[("other", nsd_io::mat::MatClass::Double, &[1, 1], &[1.0])]).unwrap();
    assert!(message(assemble_subject(&layout, 1, &opts).unwrap_err()).contains("no variable 'masterordering'"));
}
