//! Checks of what a step would reuse: a cached file is validated before it is skipped (so that a
//! truncated or damaged file left by a crash, a full disk or a bad copy is recomputed rather than
//! trusted), and the settings records of earlier steps are fingerprinted into later records (so
//! that outputs made from other inputs are refused).

use std::io::Seek;
use std::path::Path;

use super::WorkflowError;

use stable_hash::{FNV_OFFSET, fnv1a64_continue as fnv1a64};

/// A stable 64-bit fingerprint of `text` (FNV-1a; the same on every platform and release), as it
/// appears in settings records: `fnv1a64:0123456789abcdef`.
pub fn fingerprint(text: &str) -> String {
    format!("fnv1a64:{:016x}", fnv1a64(FNV_OFFSET, text.as_bytes()))
}

/// Bytes hashed whole at the start of a weight file (a safetensors header, a zip directory's
/// first entries), and the size and number of the samples taken from the rest.
const HEAD_BYTES: u64 = 1 << 16;
const SAMPLE_BYTES: u64 = 1 << 12;
const SAMPLES: u64 = 64;

/// A cheap fingerprint of the model weights at `paths` (files, or folders walked recursively in
/// name order; names starting with `.` skipped), for the names that key cached features and
/// images: every file's relative name and size, its first 64 KiB (a safetensors header, a pickle's
/// opening) and 64 samples of 4 KiB spread over the rest, with the last 4 KiB. A replaced
/// checkpoint (another download, a fine-tuned copy with the same shapes) changes it; reading costs
/// at most ~320 KiB per file, however large. A missing path is an error naming it.
pub fn weights_fingerprint(paths: &[&Path]) -> Result<String, WorkflowError> {
    let mut hash = FNV_OFFSET;
    for &root in paths {
        let mut files = Vec::new();
        collect_files(root, root, &mut files)?;
        for (name, path) in files {
            hash = fnv1a64(hash, name.as_bytes());
            hash = hash_file_samples(hash, &path)?;
        }
    }
    Ok(format!("fnv1a64:{hash:016x}"))
}

/// The regular files under `path` (itself when it is a file), with their names relative to `root`.
fn collect_files(root: &Path, path: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> Result<(), WorkflowError> {
    let meta = std::fs::metadata(path).map_err(|e| WorkflowError::io(path, e))?;
    if meta.is_file() {
        let name = path.strip_prefix(root).unwrap_or(path).to_string_lossy().replace('\\', "/");
        out.push((name, path.to_owned()));
        return Ok(());
    }
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| WorkflowError::io(path, e))?
        .map(|entry| entry.map(|e| e.path()).map_err(|e| WorkflowError::io(path, e)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for entry in entries {
        if entry.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')) {
            continue;
        }
        collect_files(root, &entry, out)?;
    }
    Ok(())
}

/// Hashes `path`'s size, head and spread samples (see [`weights_fingerprint`]) into `hash`.
fn hash_file_samples(mut hash: u64, path: &Path) -> Result<u64, WorkflowError> {
    use std::io::{Read, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| WorkflowError::io(path, e))?;
    let size = file.metadata().map_err(|e| WorkflowError::io(path, e))?.len();
    hash = fnv1a64(hash, &size.to_le_bytes());
    let mut offsets = vec![0];
    if size > HEAD_BYTES {
        let rest = size - HEAD_BYTES;
        offsets.extend((0..SAMPLES).map(|k| HEAD_BYTES + k * rest / SAMPLES));
        offsets.push(size.saturating_sub(SAMPLE_BYTES));
    }
    let mut buffer = vec![0u8; HEAD_BYTES as usize];
    for (k, &offset) in offsets.iter().enumerate() {
        let len = if k == 0 { HEAD_BYTES } else { SAMPLE_BYTES }.min(size - offset.min(size));
        let chunk = &mut buffer[..len as usize];
        file.seek(SeekFrom::Start(offset))
            .and_then(|_| file.read_exact(chunk))
            .map_err(|e| WorkflowError::io(path, e))?;
        hash = fnv1a64(hash, chunk);
    }
    Ok(hash)
}

/// The fingerprint of a list of NSD ids, with its length: `"982 ids, fnv1a64:..."`.
pub fn ids_fingerprint(ids: &[usize]) -> String {
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    format!("{} ids, {}", ids.len(), fingerprint(&text))
}

/// Reads the settings record (`settings.toml`) of an earlier step's folder; a missing record is
/// [`WorkflowError::Missing`] naming `step`.
pub fn read_record(dir: &Path, what: &str, step: &'static str) -> Result<String, WorkflowError> {
    let path = dir.join("settings.toml");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(WorkflowError::missing(what, &path, step)),
        Err(e) => Err(WorkflowError::io(&path, e)),
    }
}

/// The fingerprint of the settings record of an earlier step's folder (see [`read_record`]).
pub fn record_fingerprint(dir: &Path, what: &str, step: &'static str) -> Result<String, WorkflowError> {
    Ok(fingerprint(&read_record(dir, what, step)?))
}

/// Checks that `path` is a complete `.npy` file of dtype `descr` (`"<f4"`, `"<f8"`, `"<i8"`), in C
/// order, of exactly `shape` (`None` accepts any length on that axis), whose length is exactly
/// its header plus its data. Returns the shape found, or what is wrong with the file.
pub fn check_npy(path: &Path, descr: &str, shape: &[Option<usize>]) -> Result<Vec<usize>, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let header =
        ndarray_npy::npy::header::Header::from_reader(&mut file).map_err(|e| format!("not a .npy file: {e}"))?;
    let found = header.type_descriptor.as_string().cloned().unwrap_or_else(|| format!("{:?}", header.type_descriptor));
    if found != descr {
        return Err(format!("dtype {found:?}, expected {descr:?}"));
    }
    if header.layout.is_fortran() {
        return Err("Fortran order, expected C order".into());
    }
    let matches =
        header.shape.len() == shape.len() && header.shape.iter().zip(shape).all(|(&n, e)| e.is_none_or(|e| e == n));
    if !matches {
        let expected: Vec<String> = shape.iter().map(|e| e.map_or("any".into(), |n| n.to_string())).collect();
        return Err(format!("shape {:?}, expected ({})", header.shape, expected.join(", ")));
    }
    let data_start = file.stream_position().map_err(|e| format!("cannot read: {e}"))?;
    let item = descr.get(2..).and_then(|s| s.parse::<u64>().ok()).unwrap_or(1);
    let values = header.shape.iter().try_fold(1u64, |acc, &n| acc.checked_mul(n as u64));
    let expected_len = values.and_then(|v| v.checked_mul(item)).and_then(|b| b.checked_add(data_start));
    let len = file.metadata().map_err(|e| format!("cannot read: {e}"))?.len();
    match expected_len {
        Some(expected) if expected == len => Ok(header.shape),
        Some(expected) => Err(format!("{len} bytes, its header promises {expected} (truncated or damaged)")),
        None => Err(format!("shape {:?} overflows", header.shape)),
    }
}

/// Checks that `path` decodes completely as an image (a truncated or corrupt PNG does not).
pub fn check_png(path: &Path) -> Result<(), String> {
    let reader = image::ImageReader::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let reader = reader.with_guessed_format().map_err(|e| format!("cannot read: {e}"))?;
    reader.decode().map(|_| ()).map_err(|e| format!("does not decode: {e}"))
}

/// Whether an existing output can be reused: `true` when `check` accepts it; a file that exists
/// but fails `check` is reported (a warning naming the file and the problem) and `false` is
/// returned so that the caller recomputes it; an absent file is simply `false`.
pub fn reusable(path: &Path, check: impl FnOnce(&Path) -> Result<(), String>) -> bool {
    if !path.exists() {
        return false;
    }
    match check(path) {
        Ok(()) => true,
        Err(problem) => {
            tracing::warn!(file = %path.display(), %problem, "damaged output: recomputing it");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    #[test]
    fn weight_fingerprints_change_with_any_sampled_byte_name_or_size() {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(model.join("sub/weights.bin"), &big).unwrap();
        std::fs::write(model.join("config.json"), b"{}").unwrap();
        std::fs::write(model.join(".lock"), b"ignored").unwrap();
        let fp = || weights_fingerprint(&[model.as_path()]).unwrap();
        let first = fp();
        assert_eq!(fp(), first, "stable");
        std::fs::write(model.join(".lock"), b"still ignored").unwrap();
        assert_eq!(fp(), first, "hidden files do not count");
        // A byte in the header, a byte in the last 4 KiB, a byte inside a sample: each changes it.
        let sample = HEAD_BYTES + 5 * (big.len() as u64 - HEAD_BYTES) / SAMPLES + 7;
        for offset in [10, big.len() as u64 - 1, sample] {
            let mut changed = big.clone();
            changed[offset as usize] ^= 1;
            std::fs::write(model.join("sub/weights.bin"), &changed).unwrap();
            assert_ne!(fp(), first, "byte {offset}");
        }
        std::fs::write(model.join("sub/weights.bin"), &big).unwrap();
        assert_eq!(fp(), first);
        std::fs::write(model.join("sub/weights.bin"), &big[..big.len() - 1]).unwrap();
        assert_ne!(fp(), first, "size");
        std::fs::write(model.join("sub/weights.bin"), &big).unwrap();
        std::fs::rename(model.join("config.json"), model.join("config2.json")).unwrap();
        assert_ne!(fp(), first, "name");
        let err = weights_fingerprint(&[dir.path().join("missing").as_path()]).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn fingerprints_are_stable_and_tell_texts_apart() {
        // FNV-1a 64 of "" and "a" (published test vectors).
        assert_eq!(fingerprint(""), "fnv1a64:cbf29ce484222325");
        assert_eq!(fingerprint("a"), "fnv1a64:af63dc4c8601ec8c");
        assert_ne!(ids_fingerprint(&[1, 2, 3]), ids_fingerprint(&[2, 3, 1]));
        assert!(ids_fingerprint(&[1, 2, 3]).starts_with("3 ids, "));
    }

    #[test]
    fn npy_checks_find_truncation_shape_and_dtype_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.npy");
        let m = Array2::from_shape_fn((5, 3), |(i, j)| (i + j) as f32);
        nsd_io::subject::save_npy(&path, &m).unwrap();
        assert_eq!(check_npy(&path, "<f4", &[Some(5), Some(3)]).unwrap(), vec![5, 3]);
        assert_eq!(check_npy(&path, "<f4", &[None, Some(3)]).unwrap(), vec![5, 3]);
        let err = check_npy(&path, "<f4", &[Some(6), Some(3)]).unwrap_err();
        assert!(err.contains("shape [5, 3]"), "{err}");
        let err = check_npy(&path, "<f8", &[Some(5), Some(3)]).unwrap_err();
        assert!(err.contains("dtype \"<f4\""), "{err}");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 4]).unwrap();
        let err = check_npy(&path, "<f4", &[Some(5), Some(3)]).unwrap_err();
        assert!(err.contains("truncated"), "{err}");
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(check_npy(&path, "<f4", &[Some(5), Some(3)]).is_err());
        assert!(!reusable(&path, |p| check_npy(p, "<f4", &[Some(5), Some(3)]).map(|_| ())));
        assert!(!reusable(&dir.path().join("absent.npy"), |_| Ok(())));
    }

    #[test]
    fn png_checks_find_truncated_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.png");
        let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 3]));
        super::super::save_png(&path, &img).unwrap();
        check_png(&path).unwrap();
        assert!(reusable(&path, check_png));
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(check_png(&path).is_err());
        std::fs::write(&path, b"").unwrap();
        assert!(check_png(&path).is_err());
    }
}
