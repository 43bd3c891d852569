//! Captions: the curated caption array `COCO_73k_annots_curated.npy` (a numpy unicode array,
//! `n_images x 5`, indexed by 0-based NSD id; some entries are ''), and as an alternative the
//! COCO caption JSON files plus `nsd_stim_info_merged.csv` (nsdId -> cocoId).
//!
//! The npy reader is written here because ndarray-npy reads only numeric dtypes; it handles the
//! fixed-width `<U`/`>U` (UTF-32) and `|S` (bytes) dtypes numpy uses for string arrays.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use crate::atomic::{werr, write_atomic};
use crate::error::{NsdError, Result};

/// Rows of captions, one row per image (or per trial-averaged stimulus).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CaptionTable {
    /// `rows[i]` are the captions of image `i`; in the curated file every row has 5 entries,
    /// some of them empty.
    pub rows: Vec<Vec<String>>,
}

impl CaptionTable {
    /// The rows for `ids` in that order; an id out of range is an error.
    pub fn select(&self, ids: &[usize]) -> Result<CaptionTable> {
        let rows = ids
            .iter()
            .map(|&id| {
                self.rows.get(id).cloned().ok_or_else(|| NsdError::OutOfRange {
                    message: format!("caption row {id} requested, the table has {} rows", self.rows.len()),
                })
            })
            .collect::<Result<_>>()?;
        Ok(CaptionTable { rows })
    }

    /// Reads a numpy string array (`<U*`, `>U*` or `|S*`, 1-D or 2-D, C order) from `path`.
    pub fn read_npy(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| NsdError::io(path, e, "a numpy .npy caption array (COCO_73k_annots_curated.npy)"))?;
        Self::parse_npy(&bytes, path)
    }

    /// Parses the bytes of a numpy string array; `path` names them in errors.
    pub fn parse_npy(bytes: &[u8], path: &Path) -> Result<Self> {
        let (header, body) = npy_header(bytes, path)?;
        let descr = dict_value(&header, "descr").ok_or_else(|| NsdError::format(path, "npy header has no 'descr'"))?;
        let descr = descr.trim_matches(|c| c == '\'' || c == '"');
        let fortran = dict_value(&header, "fortran_order").map(|v| v.starts_with("True")).unwrap_or(false);
        if fortran {
            return Err(NsdError::format(path, "Fortran-ordered string arrays are not supported; expected C order"));
        }
        let shape = parse_shape(&header)
            .ok_or_else(|| NsdError::format(path, format!("cannot parse the shape in npy header {header:?}")))?;
        let (rows, cols) = match shape.as_slice() {
            [n] => (*n, 1),
            [n, m] => (*n, *m),
            other => {
                return Err(NsdError::format(
                    path,
                    format!("caption array has shape {other:?}, expected (n,) or (n, k)"),
                ));
            }
        };
        if !descr.is_ascii() || descr.len() < 3 {
            return Err(NsdError::format(
                path,
                format!("unsupported dtype '{descr}', expected a fixed-width string dtype like '<U57'"),
            ));
        }
        let (kind, width) = descr.split_at(2);
        let width: usize = width.parse().map_err(|_| NsdError::format(path, format!("unsupported dtype '{descr}', expected a fixed-width string dtype like '<U57' or '|S57' (object arrays cannot be read without Python)")))?;
        let (unit, big) = match kind {
            "<U" => (4, false),
            ">U" => (4, true),
            "|S" | "<S" | ">S" => (1, false),
            _ => {
                return Err(NsdError::format(
                    path,
                    format!(
                        "unsupported dtype '{descr}', expected a fixed-width string dtype like '<U57' or '|S57' (object arrays cannot be read without Python)"
                    ),
                ));
            }
        };
        let item = width * unit;
        let need = rows
            .checked_mul(cols)
            .and_then(|c| c.checked_mul(item))
            .ok_or_else(|| NsdError::format(path, "shape overflows"))?;
        if body.len() < need {
            return Err(NsdError::format(
                path,
                format!("truncated: {rows}x{cols} '{descr}' needs {need} data bytes, file has {}", body.len()),
            ));
        }
        let mut out = Vec::with_capacity(rows);
        for r in 0..rows {
            let mut row = Vec::with_capacity(cols);
            for c in 0..cols {
                let cell = &body[(r * cols + c) * item..(r * cols + c + 1) * item];
                // numpy strips only the trailing NUL padding of a fixed-width string; NULs inside
                // (or at the start) are part of the value.
                let s = if unit == 4 {
                    let units: Vec<u32> = cell
                        .chunks_exact(4)
                        .map(|b| {
                            let a = [b[0], b[1], b[2], b[3]];
                            if big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) }
                        })
                        .collect();
                    let end = units.iter().rposition(|&u| u != 0).map_or(0, |e| e + 1);
                    units[..end].iter().map(|&u| char::from_u32(u).unwrap_or('\u{fffd}')).collect()
                } else {
                    let end = cell.iter().rposition(|&b| b != 0).map_or(0, |e| e + 1);
                    String::from_utf8_lossy(&cell[..end]).into_owned()
                };
                row.push(s);
            }
            out.push(row);
        }
        Ok(CaptionTable { rows: out })
    }

    /// Writes the table as a numpy `<U{w}` array of shape `(rows, k)` (k = longest row; shorter
    /// rows are padded with ''), `w` the longest caption in characters. Written atomically.
    pub fn write_npy(&self, path: &Path) -> Result<()> {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let width = self.rows.iter().flatten().map(|s| s.chars().count()).max().unwrap_or(0).max(1);
        let header =
            format!("{{'descr': '<U{width}', 'fortran_order': False, 'shape': ({}, {cols}), }}", self.rows.len());
        write_atomic(path, |w| {
            write_npy_header(w, &header, path)?;
            let mut buf = Vec::with_capacity(cols * width * 4);
            for row in &self.rows {
                buf.clear();
                for c in 0..cols {
                    let s = row.get(c).map(String::as_str).unwrap_or("");
                    let mut n = 0;
                    for ch in s.chars() {
                        buf.extend_from_slice(&(ch as u32).to_le_bytes());
                        n += 1;
                    }
                    buf.resize(buf.len() + (width - n) * 4, 0);
                }
                w.write_all(&buf).map_err(werr(path))?;
            }
            Ok(())
        })
    }

    /// Builds the table from COCO caption JSON files (`captions_train2017.json`,
    /// `captions_val2017.json`, ...) and `nsd_stim_info_merged.csv`: row `nsdId` holds every COCO
    /// caption of that image, in file order. `n_images` rows are produced.
    pub fn from_coco(stim_info_csv: &Path, coco_json: &[&Path], n_images: usize) -> Result<Self> {
        let coco_of_nsd = read_stim_info(stim_info_csv, n_images)?;
        let mut by_coco: HashMap<u64, Vec<String>> = HashMap::new();
        for &json in coco_json {
            let file = std::fs::File::open(json)
                .map_err(|e| NsdError::io(json, e, "a COCO captions JSON file (captions_*.json)"))?;
            let doc: CocoCaptions = serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
                NsdError::format(
                    json,
                    format!(
                        "not a COCO captions file (expected {{\"annotations\": [{{\"image_id\", \"caption\"}}]}}): {e}"
                    ),
                )
            })?;
            for a in doc.annotations {
                by_coco.entry(a.image_id).or_default().push(a.caption.trim().to_string());
            }
        }
        let rows = coco_of_nsd
            .iter()
            .enumerate()
            .map(|(nsd, coco)| {
                coco.and_then(|c| by_coco.get(&c).cloned()).ok_or_else(|| {
                    NsdError::format(
                        coco_json.first().copied().unwrap_or(stim_info_csv),
                        format!("no caption for nsdId {nsd} (cocoId {coco:?})"),
                    )
                })
            })
            .collect::<Result<_>>()?;
        Ok(CaptionTable { rows })
    }
}

#[derive(serde::Deserialize)]
struct CocoCaptions {
    annotations: Vec<CocoAnnotation>,
}

#[derive(serde::Deserialize)]
struct CocoAnnotation {
    image_id: u64,
    caption: String,
}

/// Reads `nsd_stim_info_merged.csv`: for each nsdId (0-based) in `0..n_images`, its cocoId.
pub fn read_stim_info(path: &Path, n_images: usize) -> Result<Vec<Option<u64>>> {
    let mut rdr = csv::Reader::from_path(path).map_err(|e| match e.into_kind() {
        csv::ErrorKind::Io(io) => NsdError::io(path, io, "nsd_stim_info_merged.csv (nsdId -> cocoId)"),
        other => NsdError::format(path, format!("{other:?}")),
    })?;
    let headers = rdr.headers().map_err(|e| NsdError::format(path, e.to_string()))?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            NsdError::format(
                path,
                format!("no column '{name}' (columns: {})", headers.iter().collect::<Vec<_>>().join(",")),
            )
        })
    };
    let (ci, ni) = (col("cocoId")?, col("nsdId")?);
    let mut out = vec![None; n_images];
    for (line, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| NsdError::format(path, e.to_string()))?;
        let parse = |i: usize| {
            rec.get(i)
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or_else(|| NsdError::format(path, format!("row {}: column {i} is not an integer", line + 2)))
        };
        let (coco, nsd) = (parse(ci)?, parse(ni)? as usize);
        if nsd >= n_images {
            return Err(NsdError::OutOfRange {
                message: format!("{}: row {}: nsdId {nsd} >= {n_images}", path.display(), line + 2),
            });
        }
        out[nsd] = Some(coco);
    }
    Ok(out)
}

/// Splits an npy file into its header dict text and its data bytes.
fn npy_header<'a>(bytes: &'a [u8], path: &Path) -> Result<(String, &'a [u8])> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(NsdError::format(path, "not an npy file (missing \\x93NUMPY magic)"));
    }
    let (len, start): (usize, usize) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(NsdError::format(path, format!("unsupported npy format version {v}"))),
    };
    let end = start
        .checked_add(len)
        .filter(|&e| e <= bytes.len())
        .ok_or_else(|| NsdError::format(path, "npy header is truncated"))?;
    let header = String::from_utf8_lossy(&bytes[start..end]).into_owned();
    Ok((header, &bytes[end..]))
}

fn dict_value(header: &str, key: &str) -> Option<String> {
    let k = header.find(&format!("'{key}'"))?;
    let rest = &header[k + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim().to_string())
}

fn parse_shape(header: &str) -> Option<Vec<usize>> {
    let k = header.find("'shape'")?;
    let rest = &header[k..];
    let open = rest.find('(')?;
    let close = open + rest[open..].find(')')?;
    rest[open + 1..close].split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse().ok()).collect()
}

/// Writes an npy v1 header (magic, version, padded dict) so the data starts 64-byte aligned.
fn write_npy_header(w: &mut dyn Write, dict: &str, path: &Path) -> Result<()> {
    let mut h = dict.to_string();
    let total = 10 + h.len() + 1;
    h.push_str(&" ".repeat(total.div_ceil(64) * 64 - total));
    h.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00").map_err(werr(path))?;
    w.write_all(&(h.len() as u16).to_le_bytes()).map_err(werr(path))?;
    w.write_all(h.as_bytes()).map_err(werr(path))?;
    Ok(())
}
