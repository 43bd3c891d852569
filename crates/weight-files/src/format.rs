use std::io::Read;
use std::path::Path;

use crate::WeightFileError;

/// The on-disk format of a checkpoint, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Zip archive written by `torch.save` (the default since PyTorch 1.6).
    TorchZip,
    /// Legacy `torch.save` pickle stream (before PyTorch 1.6, or `_use_new_zipfile_serialization=False`).
    LegacyPickle,
    /// safetensors: a little-endian header length, then a JSON header.
    Safetensors,
}

/// Whether `head` starts like a legacy `torch.save` file: the PROTO opcode, then for protocol 2
/// or 3 a 10-byte LONG1 (the magic number, which [`crate::legacy`] checks), for protocol 4 or 5 a
/// FRAME around it.
fn is_torch_pickle(head: &[u8]) -> bool {
    matches!(head, [0x80, 2 | 3, 0x8a, 0x0a, ..] | [0x80, 4 | 5, 0x95, ..])
}

/// Recognises the format of `path` from its first bytes, so that a `.th`, `.pth`, `.bin` or
/// `.tar` file is read by what it holds rather than by its name.
pub fn detect_format(path: &Path) -> Result<WeightFormat, WeightFileError> {
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(WeightFileError::io(path))?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).map_err(WeightFileError::io(path))? {
            0 => break,
            k => n += k,
        }
    }
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        return Ok(WeightFormat::TorchZip);
    }
    // safetensors first: its header length's low bytes may look like PROTO (0x80 0x02 is a
    // 640-byte header), while a torch pickle never has `{` at byte 8.
    if n == 9 && head[8] == b'{' {
        return Ok(WeightFormat::Safetensors);
    }
    if is_torch_pickle(&head[..n]) {
        return Ok(WeightFormat::LegacyPickle);
    }
    Err(WeightFileError::format(
        path,
        format!(
            "unknown format (first bytes {:02x?}); expected a torch.save file (zip or legacy pickle) or safetensors",
            &head[..n]
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_first_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let cases: [(&str, &[u8], Option<WeightFormat>); 7] = [
            // A 640-byte safetensors header: the length starts like a pickle's PROTO 2.
            ("f.safetensors", b"\x80\x02\0\0\0\0\0\0{", Some(WeightFormat::Safetensors)),
            ("g.pt", b"\x80\x04\x95\x0d\0\0\0\0\0\0\0\x8a\x0a", Some(WeightFormat::LegacyPickle)),
            ("a.th", b"PK\x03\x04rest", Some(WeightFormat::TorchZip)),
            ("b.th", &[0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc], Some(WeightFormat::LegacyPickle)),
            ("c.bin", b"\x02\0\0\0\0\0\0\0{}", Some(WeightFormat::Safetensors)),
            ("d.th", b"hello world", None),
            ("e.th", b"", None),
        ];
        for (name, bytes, expected) in cases {
            let path = dir.join(name);
            std::fs::write(&path, bytes).unwrap();
            match expected {
                Some(f) => assert_eq!(detect_format(&path).unwrap(), f, "{name}"),
                None => {
                    let text = detect_format(&path).unwrap_err().to_string();
                    assert!(text.contains("unknown format") && text.contains(name), "{text}");
                }
            }
        }
        assert!(matches!(detect_format(&dir.join("absent.th")), Err(WeightFileError::Io { .. })));
    }
}
