//! LZF decompression (Marc Lehmann's liblzf format), the codec of h5py's HDF5 `lzf` filter.
//!
//! Written here (about 40 lines, every access bounds-checked) because the `lzf` crate is marked
//! deprecated by its author and HDF5 needs only the decoder.

/// Why a stream could not be decompressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LzfError {
    /// The output would exceed the given limit (liblzf's `E2BIG`).
    OutputTooLarge,
    /// The stream is corrupt or truncated (liblzf's `EINVAL`).
    Corrupt,
}

/// Decompresses one LZF stream, producing at most `max_out` bytes.
///
/// The format is a sequence of control bytes: `ctrl < 32` starts a literal run of `ctrl + 1`
/// bytes; otherwise it is a back-reference of length `(ctrl >> 5) + 2` (with one extra length
/// byte when `ctrl >> 5 == 7`) to `((ctrl & 31) << 8) + next byte + 1` bytes back.
pub fn decompress(input: &[u8], max_out: usize) -> Result<Vec<u8>, LzfError> {
    let mut out: Vec<u8> = Vec::with_capacity(max_out.min(input.len().saturating_mul(4)).min(64 << 20));
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            let lit = input.get(i..i + run).ok_or(LzfError::Corrupt)?;
            if out.len() + run > max_out {
                return Err(LzfError::OutputTooLarge);
            }
            out.extend_from_slice(lit);
            i += run;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += *input.get(i).ok_or(LzfError::Corrupt)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + *input.get(i).ok_or(LzfError::Corrupt)? as usize + 1;
            i += 1;
            let len = len + 2;
            if out.len() + len > max_out {
                return Err(LzfError::OutputTooLarge);
            }
            let start = out.len().checked_sub(back).ok_or(LzfError::Corrupt)?;
            // The reference may overlap the bytes it produces (a run), so copy byte by byte.
            for k in 0..len {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_overlapping_references_decode() {
        // "abc" literal, then a reference 3 back of length 7: "abcabcabca".
        let stream = [2, b'a', b'b', b'c', (5 << 5), 2];
        assert_eq!(decompress(&stream, 100).unwrap(), b"abcabcabca");
        // A long reference (len byte): 1 literal 'x', then 7 + 10 + 2 = 19 copies of it.
        let stream = [0, b'x', 7 << 5, 10, 0];
        assert_eq!(decompress(&stream, 100).unwrap(), vec![b'x'; 20]);
    }

    #[test]
    fn bad_streams_are_errors() {
        assert_eq!(decompress(&[5, b'a'], 100), Err(LzfError::Corrupt)); // literal runs past the end
        assert_eq!(decompress(&[1 << 5, 0], 100), Err(LzfError::Corrupt)); // reference before the start
        assert_eq!(decompress(&[7 << 5], 100), Err(LzfError::Corrupt)); // missing length byte
        assert_eq!(decompress(&[2, 1, 2, 3], 2), Err(LzfError::OutputTooLarge));
        assert_eq!(decompress(&[], 0), Ok(Vec::new()));
    }
}
