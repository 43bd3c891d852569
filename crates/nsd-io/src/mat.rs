//! MATLAB MAT-files: level 5 (`save -v7` and older, `scipy.io.savemat`) with numeric and char
//! arrays, plain or inside zlib-compressed `miCOMPRESSED` elements, either byte order; and level 4
//! (`scipy.io.savemat(..., format='4')`, Octave/MATLAB `save -v4`), whose 2-D numeric and text
//! matrices are all the NSD experiment design needs (`masterordering`, `subjectim`, `sharedix`).
//!
//! Written here rather than taken from the `matfile` crate: that crate is unmaintained (last
//! release 2021) and fails the whole file when it meets a variable class it does not model (cell,
//! struct), while NSD only needs the numeric variables and must skip the rest. Numeric values are
//! returned as f64 whatever their storage type (MATLAB stores integer-valued doubles in narrower
//! types), column-major as MATLAB keeps them. What scipy.io.loadmat accepts beyond the letter of
//! the format is accepted too: dims stored as miUINT32, array names stored as miUTF8.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;

use crate::atomic::{werr, write_atomic};
use crate::error::{NsdError, Result};

const MI_INT8: u32 = 1;
const MI_UINT8: u32 = 2;
const MI_INT16: u32 = 3;
const MI_UINT16: u32 = 4;
const MI_INT32: u32 = 5;
const MI_UINT32: u32 = 6;
const MI_SINGLE: u32 = 7;
const MI_DOUBLE: u32 = 9;
const MI_INT64: u32 = 12;
const MI_UINT64: u32 = 13;
const MI_MATRIX: u32 = 14;
const MI_COMPRESSED: u32 = 15;
const MI_UTF8: u32 = 16;
const MI_UTF16: u32 = 17;
const MI_UTF32: u32 = 18;

/// Largest decompressed size accepted for one compressed element (guards against zip bombs).
const MAX_INFLATED: u64 = 1 << 34;

/// One variable of a MAT-file.
#[derive(Debug, Clone, PartialEq)]
pub enum MatValue {
    /// A real numeric (or logical) array: dims as MATLAB gives them, values column-major.
    Numeric { class: MatClass, dims: Vec<usize>, data: Vec<f64> },
    /// A char array (a string when it has one row).
    Char { dims: Vec<usize>, text: String },
    /// A variable of a class this reader does not decode (cell, struct, object, sparse, complex).
    Unsupported { class: MatClass },
}

/// MATLAB array class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatClass {
    Cell,
    Struct,
    Object,
    Char,
    Sparse,
    Double,
    Single,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    /// Any other code.
    Other(u8),
}

impl MatClass {
    fn from_code(c: u8) -> Self {
        match c {
            1 => Self::Cell,
            2 => Self::Struct,
            3 => Self::Object,
            4 => Self::Char,
            5 => Self::Sparse,
            6 => Self::Double,
            7 => Self::Single,
            8 => Self::Int8,
            9 => Self::Uint8,
            10 => Self::Int16,
            11 => Self::Uint16,
            12 => Self::Int32,
            13 => Self::Uint32,
            14 => Self::Int64,
            15 => Self::Uint64,
            o => Self::Other(o),
        }
    }
    fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::Double
                | Self::Single
                | Self::Int8
                | Self::Uint8
                | Self::Int16
                | Self::Uint16
                | Self::Int32
                | Self::Uint32
                | Self::Int64
                | Self::Uint64
        )
    }
}

/// The variables of a MAT-file, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatFile {
    pub vars: BTreeMap<String, MatValue>,
}

impl MatFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| NsdError::io(path, e, "a MATLAB v5 (or v4) .mat file"))?;
        Self::parse(&bytes, path)
    }

    /// Parses MAT-file bytes (level 5, or level 4 when one of the first four bytes is 0, the rule
    /// scipy.io.loadmat uses); `path` names them in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() >= 4 && bytes[..4].contains(&0) {
            return parse_v4(bytes, path);
        }
        if bytes.len() < 128 {
            return Err(NsdError::format(path, format!("MAT-file header needs 128 bytes, file has {}", bytes.len())));
        }
        let big = match &bytes[126..128] {
            b"IM" => false,
            b"MI" => true,
            other => {
                return Err(NsdError::format(
                    path,
                    format!("bad MAT-file endian indicator {other:?}, expected \"IM\" or \"MI\" (level-5 MAT-file)"),
                ));
            }
        };
        let version = rd_u16(&bytes[124..126], big);
        if version == 0x0200 || bytes[..116].starts_with(b"MATLAB 7.3") {
            return Err(NsdError::format(
                path,
                "MAT v7.3 (HDF5-based) files are not supported; expected a level-5 MAT-file (save -v7)",
            ));
        }
        if version != 0x0100 {
            return Err(NsdError::format(path, format!("MAT-file version {version:#06x}, expected 0x0100 (level 5)")));
        }
        let mut out = MatFile::default();
        let p = Parser { path, big };
        p.elements(&bytes[128..], &mut out, 0)?;
        Ok(out)
    }

    /// A numeric variable's dims and column-major values, or an error naming the key.
    pub fn numeric(&self, name: &str, path: &Path) -> Result<(&[usize], &[f64])> {
        match self.vars.get(name) {
            Some(MatValue::Numeric { dims, data, .. }) => Ok((dims, data)),
            Some(other) => {
                Err(NsdError::format(path, format!("variable '{name}' is {other:?}, expected a real numeric array")))
            }
            None => Err(NsdError::format(
                path,
                format!("no variable '{name}' (found: {})", self.vars.keys().cloned().collect::<Vec<_>>().join(", ")),
            )),
        }
    }
}

struct Parser<'a> {
    path: &'a Path,
    big: bool,
}

fn rd_u16(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) }
}

fn rd_u32(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }
}

/// One tagged data element: its type, its payload, and the bytes that follow it.
struct Element<'b> {
    kind: u32,
    data: &'b [u8],
    rest: &'b [u8],
}

impl Parser<'_> {
    fn err(&self, m: impl Into<String>) -> NsdError {
        NsdError::format(self.path, m)
    }

    fn element<'b>(&self, b: &'b [u8]) -> Result<Element<'b>> {
        if b.len() < 8 {
            return Err(self.err(format!("truncated data element tag ({} bytes left, need 8)", b.len())));
        }
        let first = rd_u32(&b[0..4], self.big);
        if first >> 16 != 0 {
            // Small data element: size and type packed in one word, data in the next four bytes.
            let n = (first >> 16) as usize;
            if n > 4 {
                return Err(self.err(format!("small data element claims {n} bytes, at most 4 fit")));
            }
            return Ok(Element { kind: first & 0xffff, data: &b[4..4 + n], rest: &b[8..] });
        }
        let n = rd_u32(&b[4..8], self.big) as usize;
        if n > b.len() - 8 {
            return Err(self.err(format!(
                "data element of type {first} claims {n} bytes, only {} remain (truncated file?)",
                b.len() - 8
            )));
        }
        let data = &b[8..8 + n];
        // Compressed elements are not padded; all others are padded to 8 bytes.
        let padded = if first == MI_COMPRESSED { n } else { n.div_ceil(8) * 8 };
        let rest = if 8 + padded <= b.len() { &b[8 + padded..] } else { &b[b.len()..] };
        Ok(Element { kind: first, data, rest })
    }

    fn elements(&self, mut b: &[u8], out: &mut MatFile, depth: usize) -> Result<()> {
        if depth > 2 {
            return Err(self.err("nested compressed elements are not allowed"));
        }
        while !b.is_empty() {
            let e = self.element(b)?;
            match e.kind {
                MI_COMPRESSED => {
                    let mut inflated = Vec::new();
                    ZlibDecoder::new(e.data)
                        .take(MAX_INFLATED)
                        .read_to_end(&mut inflated)
                        .map_err(|err| self.err(format!("corrupt or truncated compressed element: {err}")))?;
                    self.elements(&inflated, out, depth + 1)?;
                }
                MI_MATRIX => {
                    if !e.data.is_empty() {
                        let (name, value) = self.matrix(e.data)?;
                        out.vars.insert(name, value);
                    }
                }
                other => {
                    return Err(self.err(format!(
                        "unexpected top-level data element type {other}, expected miMATRIX (14) or miCOMPRESSED (15)"
                    )));
                }
            }
            b = e.rest;
        }
        Ok(())
    }

    fn matrix(&self, b: &[u8]) -> Result<(String, MatValue)> {
        let flags = self.element(b)?;
        if flags.kind != MI_UINT32 || flags.data.len() < 8 {
            return Err(self.err("miMATRIX must start with an 8-byte miUINT32 array-flags element"));
        }
        let flag_word = rd_u32(&flags.data[0..4], self.big);
        let class = MatClass::from_code((flag_word & 0xff) as u8);
        let complex = flag_word & 0x0800 != 0;
        let dims_el = self.element(flags.rest)?;
        // scipy accepts miUINT32 dims (as long as they fit an int32), so do we.
        let unsigned = dims_el.kind == MI_UINT32;
        if !(dims_el.kind == MI_INT32 || unsigned) || dims_el.data.len() % 4 != 0 || dims_el.data.len() < 8 {
            return Err(self.err(format!(
                "miMATRIX dimensions must be an miINT32 (or miUINT32) array of at least 2 values, found type {} \
                 with {} bytes",
                dims_el.kind,
                dims_el.data.len()
            )));
        }
        let mut dims = Vec::new();
        for c in dims_el.data.chunks_exact(4) {
            let raw = rd_u32(c, self.big);
            // As miINT32 a value above i32::MAX is negative; as miUINT32 scipy refuses it too.
            if raw > i32::MAX as u32 {
                let shown = if unsigned { i64::from(raw) } else { i64::from(raw as i32) };
                return Err(self.err(format!("dimension {shown} is out of range, expected 0..=2147483647")));
            }
            dims.push(raw as usize);
        }
        let name_el = self.element(dims_el.rest)?;
        if !matches!(name_el.kind, MI_INT8 | MI_UINT8 | MI_UTF8) {
            return Err(self.err(format!("array name must be miINT8 (or miUTF8), found type {}", name_el.kind)));
        }
        let name = String::from_utf8_lossy(name_el.data).into_owned();
        let count = dims
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| self.err(format!("variable '{name}': dims {dims:?} overflow")))?;
        if complex || !(class.is_numeric() || class == MatClass::Char) {
            return Ok((name, MatValue::Unsupported { class }));
        }
        let real = self.element(name_el.rest)?;
        if class == MatClass::Char && real.kind == MI_UTF8 {
            let text = String::from_utf8_lossy(real.data).into_owned();
            return Ok((name, MatValue::Char { dims, text }));
        }
        let values = self.numbers(real.kind, real.data, &name)?;
        if values.len() != count {
            return Err(
                self.err(format!("variable '{name}': {} values for dims {dims:?} ({count} expected)", values.len()))
            );
        }
        if class == MatClass::Char {
            let text = if real.kind == MI_UTF16 {
                // UTF-16 code units (MATLAB's own char type): pairs of surrogates make one char.
                char::decode_utf16(values.iter().map(|&v| v as u16))
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect()
            } else {
                values.iter().map(|&v| char_of(v)).collect()
            };
            return Ok((name, MatValue::Char { dims, text }));
        }
        Ok((name, MatValue::Numeric { class, dims, data: values }))
    }

    fn numbers(&self, kind: u32, b: &[u8], name: &str) -> Result<Vec<f64>> {
        let big = self.big;
        macro_rules! conv {
            ($t:ty, $n:expr) => {{
                if b.len() % $n != 0 {
                    return Err(self.err(format!(
                        "variable '{name}': {} bytes is not a whole number of {}-byte values",
                        b.len(),
                        $n
                    )));
                }
                b.chunks_exact($n)
                    .map(|c| {
                        let a: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                        (if big { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f64
                    })
                    .collect()
            }};
        }
        Ok(match kind {
            MI_INT8 => b.iter().map(|&x| x as i8 as f64).collect(),
            MI_UINT8 | MI_UTF8 => b.iter().map(|&x| x as f64).collect(),
            MI_INT16 => conv!(i16, 2),
            MI_UINT16 | MI_UTF16 => conv!(u16, 2),
            MI_INT32 => conv!(i32, 4),
            MI_UINT32 | MI_UTF32 => conv!(u32, 4),
            MI_SINGLE => conv!(f32, 4),
            MI_DOUBLE => conv!(f64, 8),
            MI_INT64 => conv!(i64, 8),
            MI_UINT64 => conv!(u64, 8),
            other => return Err(self.err(format!("variable '{name}': unsupported numeric storage type {other}"))),
        })
    }
}

/// A character code (as stored in a numeric array) as a char; invalid codes become U+FFFD.
fn char_of(v: f64) -> char {
    if v.is_finite() && (0.0..=u32::MAX as f64).contains(&v) {
        char::from_u32(v as u32).unwrap_or(char::REPLACEMENT_CHARACTER)
    } else {
        char::REPLACEMENT_CHARACTER
    }
}

/// Parses a level-4 MAT-file: a sequence of variables, each a 20-byte header of five int32
/// (`mopt`, `mrows`, `ncols`, `imagf`, `namlen`), the NUL-terminated name, then `mrows x ncols`
/// values column-major (twice when `imagf` is 1). `mopt = M*1000 + O*100 + P*10 + T`: M byte order
/// (0 little, 1 big endian), O 0, P value type (0 f64, 1 f32, 2 i32, 3 i16, 4 u16, 5 u8), T matrix
/// type (0 numeric, 1 text, 2 sparse). The byte order is found from the first `mopt` as scipy does.
fn parse_v4(bytes: &[u8], path: &Path) -> Result<MatFile> {
    let err = |m: String| NsdError::format(path, format!("MAT v4 file: {m}"));
    if bytes.len() < 20 {
        return Err(err(format!("{} bytes, a variable header needs 20 (truncated file?)", bytes.len())));
    }
    let first = i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let big = !(0..=5000).contains(&first);
    let rd = |b: &[u8]| {
        let a = [b[0], b[1], b[2], b[3]];
        if big { i32::from_be_bytes(a) } else { i32::from_le_bytes(a) }
    };
    let mut out = MatFile::default();
    let mut pos = 0usize;
    let mut index = 0usize;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < 20 {
            return Err(err(format!(
                "variable {index} at byte {pos}: {} bytes left, its header needs 20 (truncated file?)",
                rest.len()
            )));
        }
        let [mopt, mrows, ncols, imagf, namlen] = [0, 4, 8, 12, 16].map(|o| rd(&rest[o..o + 4]));
        let at = format!("variable {index} at byte {pos}");
        if !(0..=4999).contains(&mopt) {
            return Err(err(format!("{at}: type code (mopt) {mopt} is invalid, expected 0..=4999")));
        }
        let (m, o, p, t) = (mopt / 1000, mopt / 100 % 10, mopt / 10 % 10, mopt % 10);
        if m != i32::from(big) {
            return Err(err(format!(
                "{at}: byte-order digit M = {m} ({}), expected {} like the file's first variable (VAX and Cray \
                 formats are not supported)",
                match m {
                    0 => "little-endian",
                    1 => "big-endian",
                    _ => "VAX/Cray",
                },
                i32::from(big)
            )));
        }
        if o != 0 || t > 2 {
            return Err(err(format!("{at}: type code (mopt) {mopt} is invalid (O must be 0, T 0..=2)")));
        }
        let (class, size) = match p {
            0 => (MatClass::Double, 8usize),
            1 => (MatClass::Single, 4),
            2 => (MatClass::Int32, 4),
            3 => (MatClass::Int16, 2),
            4 => (MatClass::Uint16, 2),
            5 => (MatClass::Uint8, 1),
            _ => return Err(err(format!("{at}: value type P = {p} in mopt {mopt}, expected 0..=5"))),
        };
        if mrows < 0 || ncols < 0 || !(0..=1).contains(&imagf) || !(1..=65_536).contains(&namlen) {
            return Err(err(format!(
                "{at}: header (mrows {mrows}, ncols {ncols}, imagf {imagf}, namlen {namlen}) is invalid, expected \
                 mrows, ncols >= 0, imagf 0 or 1, namlen 1..=65536"
            )));
        }
        let (rows, cols, namlen) = (mrows as usize, ncols as usize, namlen as usize);
        let count = rows.checked_mul(cols);
        let data_len = count.and_then(|c| c.checked_mul(size)).and_then(|b| b.checked_mul(1 + imagf as usize));
        let need = data_len.and_then(|d| d.checked_add(20 + namlen));
        let (Some(count), Some(need)) = (count, need) else {
            return Err(err(format!("{at}: {rows} x {cols} values overflow")));
        };
        if need > rest.len() {
            return Err(err(format!(
                "{at}: {rows} x {cols} values of {size} bytes need {need} bytes, only {} remain (truncated file?)",
                rest.len()
            )));
        }
        let name_bytes = &rest[20..20 + namlen];
        let end = name_bytes.iter().rposition(|&b| b != 0).map_or(0, |e| e + 1);
        let name = String::from_utf8_lossy(&name_bytes[..end]).into_owned();
        let data = &rest[20 + namlen..20 + namlen + count * size];
        let value = if t == 2 {
            MatValue::Unsupported { class: MatClass::Sparse }
        } else if imagf == 1 {
            MatValue::Unsupported { class }
        } else {
            let values = v4_values(data, p, big);
            if t == 1 {
                MatValue::Char { dims: vec![rows, cols], text: values.iter().map(|&v| char_of(v)).collect() }
            } else {
                MatValue::Numeric { class, dims: vec![rows, cols], data: values }
            }
        };
        out.vars.insert(name, value);
        pos += need;
        index += 1;
    }
    Ok(out)
}

/// The values of a v4 matrix stored as type `p` (see [`parse_v4`]), as f64.
fn v4_values(b: &[u8], p: i32, big: bool) -> Vec<f64> {
    macro_rules! conv {
        ($t:ty, $n:expr) => {
            b.chunks_exact($n)
                .map(|c| {
                    let a: [u8; $n] = c.try_into().unwrap_or([0; $n]);
                    (if big { <$t>::from_be_bytes(a) } else { <$t>::from_le_bytes(a) }) as f64
                })
                .collect()
        };
    }
    match p {
        0 => conv!(f64, 8),
        1 => conv!(f32, 4),
        2 => conv!(i32, 4),
        3 => conv!(i16, 2),
        4 => conv!(u16, 2),
        _ => b.iter().map(|&x| f64::from(x)).collect(),
    }
}

/// One variable to write: name, class (`Double` or `Int32`), dims, column-major values.
pub type MatVar<'a> = (&'a str, MatClass, &'a [usize], &'a [f64]);

/// Writes a level-5 MAT-file of double or int32 arrays, each variable in its own
/// zlib-compressed element as MATLAB `save -v7` does. Written atomically.
pub fn write_mat(path: &Path, vars: &[MatVar<'_>]) -> Result<()> {
    write_atomic(path, |w| {
        let mut header = [b' '; 128];
        let text = b"MATLAB 5.0 MAT-file, Platform: nsd-io synthetic, Created by the nsd_io crate";
        header[..text.len()].copy_from_slice(text);
        header[116..124].fill(0);
        header[124..126].copy_from_slice(&0x0100u16.to_le_bytes());
        header[126..128].copy_from_slice(b"IM");
        w.write_all(&header).map_err(werr(path))?;
        for &(name, class, dims, data) in vars {
            let count: usize = dims.iter().product();
            if count != data.len() || dims.len() < 2 {
                return Err(NsdError::Shape {
                    message: format!(
                        "{}: variable '{name}' has {} values for dims {dims:?}",
                        path.display(),
                        data.len()
                    ),
                });
            }
            let mut m = Vec::new();
            let tag = |m: &mut Vec<u8>, kind: u32, payload: &[u8]| {
                m.extend_from_slice(&kind.to_le_bytes());
                m.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                m.extend_from_slice(payload);
                m.resize(m.len().div_ceil(8) * 8, 0);
            };
            let (code, kind, v): (u32, u32, Vec<u8>) = match class {
                MatClass::Double => (6, MI_DOUBLE, data.iter().flat_map(|x| x.to_le_bytes()).collect()),
                MatClass::Int32 => (12, MI_INT32, data.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect()),
                other => {
                    return Err(NsdError::Config(format!("write_mat writes Double or Int32 variables, not {other:?}")));
                }
            };
            tag(&mut m, MI_UINT32, &[code.to_le_bytes(), 0u32.to_le_bytes()].concat());
            let d: Vec<u8> = dims.iter().flat_map(|&x| (x as i32).to_le_bytes()).collect();
            tag(&mut m, MI_INT32, &d);
            tag(&mut m, MI_INT8, name.as_bytes());
            tag(&mut m, kind, &v);
            let mut matrix = Vec::with_capacity(m.len() + 8);
            matrix.extend_from_slice(&MI_MATRIX.to_le_bytes());
            matrix.extend_from_slice(&(m.len() as u32).to_le_bytes());
            matrix.extend_from_slice(&m);
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(&matrix).map_err(werr(path))?;
            let compressed = z.finish().map_err(werr(path))?;
            w.write_all(&MI_COMPRESSED.to_le_bytes()).map_err(werr(path))?;
            w.write_all(&(compressed.len() as u32).to_le_bytes()).map_err(werr(path))?;
            w.write_all(&compressed).map_err(werr(path))?;
        }
        Ok(())
    })
}
