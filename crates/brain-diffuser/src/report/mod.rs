//! Pictures for reports: image grids (ground truth | stage 1 | final, one row per image), labelled grids,
//! text tables, vertical stacks and grouped bar charts (PNG, and SVG through `plotters` for the report
//! page), and the published results the report page shows next to a run's.
//!
//! Text is drawn with a small built-in bitmap font (5x7 glyphs plus descenders, printable ASCII, integer
//! scales; see [`draw_text`]): the `image` crate draws no text, and a system font would make the pictures
//! depend on the machine that drew them. Everything here is deterministic: the same inputs give the same
//! pixels everywhere.

mod chart;
mod font;
pub mod published;
mod svg_chart;

pub use chart::{BarSeries, bar_chart};
pub use font::{GLYPH_ADVANCE, LINE_HEIGHT, draw_text, text_height, text_width};
pub use svg_chart::{SVG_SIZE, bar_chart_svg};

use image::imageops::{FilterType, resize};
use image::{Rgb, RgbImage};

const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const INK: Rgb<u8> = Rgb([0, 0, 0]);

/// Two series colours and a [`BarSeries`] maker for the chart tests.
#[cfg(test)]
mod test_series {
    use super::BarSeries;
    use image::Rgb;

    pub const VISION: Rgb<u8> = Rgb([31, 119, 180]);
    pub const TEXT: Rgb<u8> = Rgb([255, 127, 14]);

    pub fn series(name: &str, values: &[f64], errors: Option<&[f64]>, color: Rgb<u8>) -> BarSeries {
        BarSeries { name: name.into(), values: values.to_vec(), errors: errors.map(<[f64]>::to_vec), color }
    }
}

/// Padding around the titles and labels of [`labelled_grid`], in font pixels (times the text scale).
const LABEL_PAD: u32 = 3;
/// Text scale of [`table_image`].
const TABLE_SCALE: u32 = 2;
/// Margin around a [`table_image`], in font pixels (times [`TABLE_SCALE`]).
const TABLE_MARGIN: u32 = 4;
/// Blank characters between the columns of a [`table_image`].
const TABLE_GAP_CHARS: u32 = 2;
/// Background of every other body row of a [`table_image`].
const TABLE_STRIPE: Rgb<u8> = Rgb([238, 238, 238]);

/// The most pixels a picture drawn here may have: 2^28 (268 megapixels, 805 MB as RGB). Every
/// function that draws checks its size against this before allocating.
pub const MAX_PIXELS: u64 = 1 << 28;
/// The smallest cell side of a report grid: below it the labels do not fit.
pub const MIN_CELL: u32 = 16;
/// The largest cell side of a report grid.
pub const MAX_CELL: u32 = 1024;

/// A picture that cannot be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The picture would be larger than [`MAX_PIXELS`] (or a side would not fit in 32 bits).
    #[error(
        "{what} would be {width} x {height} pixels, more than the {MAX_PIXELS} pixels (about 268 megapixels) a \
         picture may have; show fewer images or use smaller cells"
    )]
    TooLarge { what: &'static str, width: u64, height: u64 },
    /// A cell side outside [`MIN_CELL`]..=[`MAX_CELL`].
    #[error("a cell side of {cell} pixels: expected {MIN_CELL} to {MAX_CELL} pixels")]
    Cell { cell: u32 },
    /// A report of no image.
    #[error("a report of 0 images: expected at least 1")]
    NoImages,
    /// The chart library refused to draw a chart.
    #[error("the chart could not be drawn: {message}")]
    Chart { message: String },
}

/// Checks that a `width` x `height` picture can be drawn: sides in 32 bits, at most [`MAX_PIXELS`].
pub fn check_canvas(what: &'static str, width: u64, height: u64) -> Result<(u32, u32), ReportError> {
    let too_large = ReportError::TooLarge { what, width, height };
    let (Ok(w), Ok(h)) = (u32::try_from(width), u32::try_from(height)) else { return Err(too_large) };
    match width.checked_mul(height) {
        Some(pixels) if pixels <= MAX_PIXELS => Ok((w, h)),
        _ => Err(too_large),
    }
}

/// A white picture of `width` x `height`, checked by [`check_canvas`] first.
fn canvas(what: &'static str, width: u64, height: u64) -> Result<RgbImage, ReportError> {
    let (w, h) = check_canvas(what, width, height)?;
    Ok(RgbImage::from_pixel(w, h, WHITE))
}

/// The length of `count` cells of `cell` pixels separated by `gutter` pixels (saturating: an
/// impossible length fails [`check_canvas`]).
fn grid_side(count: usize, cell: u32, gutter: u32) -> u64 {
    let count = count as u64;
    count.saturating_mul(u64::from(cell)).saturating_add(count.saturating_sub(1).saturating_mul(u64::from(gutter)))
}

/// Refuses a cell and gutter whose sum (the step from one tile to the next) does not fit in 32 bits.
fn check_step(what: &'static str, cell: u32, gutter: u32) -> Result<(), ReportError> {
    match cell.checked_add(gutter) {
        Some(_) => Ok(()),
        None => {
            Err(ReportError::TooLarge { what, width: u64::from(cell) + u64::from(gutter), height: u64::from(cell) })
        }
    }
}

/// The size of an [`image_grid`] of `rows` x `columns` cells (or of the tiles of a
/// [`labelled_grid`]), checked by [`check_canvas`]: to refuse a grid before loading its images.
pub fn check_grid(rows: usize, columns: usize, cell: u32, gutter: u32) -> Result<(u32, u32), ReportError> {
    check_canvas("the image grid", grid_side(columns, cell, gutter), grid_side(rows, cell, gutter))
}

/// Lays out `rows` of images in a grid of `cell` x `cell` squares separated by `gutter` white
/// pixels. Images are resized to the cell with a bicubic (Catmull-Rom) filter; a row shorter than
/// the longest leaves its last cells white. A grid larger than [`MAX_PIXELS`] is refused.
pub fn image_grid(rows: &[Vec<RgbImage>], cell: u32, gutter: u32) -> Result<RgbImage, ReportError> {
    check_step("the image grid", cell, gutter)?;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut grid = canvas("the image grid", grid_side(columns, cell, gutter), grid_side(rows.len(), cell, gutter))?;
    paste_tiles(&mut grid, (0, 0), rows.iter().map(Vec::as_slice), cell, gutter);
    Ok(grid)
}

/// Pastes each row of images as `cell` x `cell` tiles, the first tile's top-left corner at `origin`.
fn paste_tiles<'a>(
    canvas: &mut RgbImage,
    origin: (u32, u32),
    rows: impl Iterator<Item = &'a [RgbImage]>,
    cell: u32,
    gutter: u32,
) {
    for (r, row) in rows.enumerate() {
        for (c, img) in row.iter().enumerate() {
            let tile = if img.dimensions() == (cell, cell) {
                img.clone()
            } else {
                resize(img, cell, cell, FilterType::CatmullRom)
            };
            let (x, y) = (origin.0 + c as u32 * (cell + gutter), origin.1 + r as u32 * (cell + gutter));
            image::imageops::replace(canvas, &tile, i64::from(x), i64::from(y));
        }
    }
}

/// Like [`image_grid`], with `column_titles` centred above the columns and each row's label left of it
/// (e.g. columns "ground truth | stage 1 | final" and one row per subject, or one column per ROI).
///
/// Text is black on white, at scale `cell / 64` clamped to 1..=3 and lowered until every word of every title
/// fits in `cell` pixels. Titles wrap at spaces to the cell width (a word still too wide at scale 1 is cut
/// and ends in `.`) and sit on the bottom of the title row, which is `lines * text_height(scale) + 2 * 3 *
/// scale` pixels tall (`lines` of the longest title) and present only if some title has text. The label
/// column is as wide as the widest label plus `2 * 3 * scale` pixels and present only if some label is
/// non-empty. Tiles start right of the label column and below the title row; the grid has as many columns
/// as the longest row or the title list, whichever is longer. A grid larger than [`MAX_PIXELS`] is refused.
pub fn labelled_grid(
    column_titles: &[String],
    rows: &[(String, Vec<RgbImage>)],
    cell: u32,
    gutter: u32,
) -> Result<RgbImage, ReportError> {
    check_step("the labelled grid", cell, gutter)?;
    let widest_word =
        |scale| column_titles.iter().flat_map(|t| t.split_whitespace()).map(|w| text_width(w, scale)).max();
    let mut scale = (cell / 64).clamp(1, 3);
    while scale > 1 && widest_word(scale) > Some(cell) {
        scale -= 1;
    }
    let pad = LABEL_PAD * scale;
    let line = text_height(scale);
    let titles: Vec<Vec<String>> = column_titles
        .iter()
        .map(|t| wrap_words(t, cell, scale).iter().map(|l| fit_text(l, cell, scale)).collect())
        .collect();
    let title_lines = titles.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let title_h = if title_lines > 0 { title_lines * line + 2 * pad } else { 0 };
    let widest_label = rows.iter().map(|(label, _)| text_width(label, scale)).max().unwrap_or(0);
    let label_w = if widest_label > 0 { widest_label + 2 * pad } else { 0 };

    let columns = rows.iter().map(|(_, row)| row.len()).max().unwrap_or(0).max(column_titles.len());
    let width = u64::from(label_w).saturating_add(grid_side(columns, cell, gutter));
    let height = u64::from(title_h).saturating_add(grid_side(rows.len(), cell, gutter));
    let mut grid = canvas("the labelled grid", width, height)?;
    paste_tiles(&mut grid, (label_w, title_h), rows.iter().map(|(_, row)| row.as_slice()), cell, gutter);

    // Visible ink is one font pixel narrower/shorter than the advance box (its spacing).
    let ink_w = |text: &str| text_width(text, scale).saturating_sub(scale);
    for (c, lines) in titles.iter().enumerate() {
        let first = title_lines - lines.len() as u32;
        for (k, text) in lines.iter().enumerate() {
            let x = label_w + c as u32 * (cell + gutter) + (cell - ink_w(text)) / 2;
            let y = pad + (first + k as u32) * line;
            draw_text(&mut grid, i64::from(x), i64::from(y), text, scale, INK);
        }
    }
    let ink_h = line - scale;
    for (r, (label, _)) in rows.iter().enumerate() {
        let y = title_h + r as u32 * (cell + gutter) + cell.saturating_sub(ink_h) / 2;
        draw_text(&mut grid, i64::from(pad), i64::from(y), label, scale, INK);
    }
    Ok(grid)
}

/// Splits `text` at spaces into lines no wider than `max_width` pixels at `scale` (a single word wider than
/// that keeps a line of its own).
fn wrap_words(text: &str, max_width: u32, scale: u32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && text_width(&format!("{line} {word}"), scale) > max_width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}

/// `text` if it fits in `max_width` pixels at `scale`, else its longest prefix that fits with a final `.`.
fn fit_text(text: &str, max_width: u32, scale: u32) -> String {
    if text_width(text, scale) <= max_width {
        return text.to_string();
    }
    let fits = (max_width / (GLYPH_ADVANCE * scale)) as usize;
    if fits == 0 { String::new() } else { text.chars().take(fits - 1).chain(std::iter::once('.')).collect() }
}

/// Renders a text table in monospace columns: `header`, a rule under it, then `rows` (every other one on a
/// light grey stripe), black on white at text scale 2 with two blank characters between columns. A column
/// whose non-empty body cells all read as numbers (an optional trailing `%` allowed) is right-aligned,
/// header included; other columns are left-aligned. Rows may have different lengths (missing cells are
/// blank). The width is `2 * 8` margin pixels plus the text width of the widest cell of each column and
/// the gaps between them. A table larger than [`MAX_PIXELS`] is refused.
pub fn table_image(header: &[String], rows: &[Vec<String>]) -> Result<RgbImage, ReportError> {
    let s = TABLE_SCALE;
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0).max(header.len());
    fn cell(row: &[String], c: usize) -> &str {
        row.get(c).map_or("", String::as_str)
    }
    let all_rows = || std::iter::once(header).chain(rows.iter().map(Vec::as_slice));
    let widths: Vec<u32> =
        (0..columns).map(|c| all_rows().map(|row| cell(row, c).chars().count() as u32).max().unwrap_or(0)).collect();
    let numeric: Vec<bool> = (0..columns)
        .map(|c| {
            let body: Vec<&str> = rows.iter().map(|row| cell(row, c).trim()).filter(|t| !t.is_empty()).collect();
            !body.is_empty() && body.iter().all(|t| t.strip_suffix('%').unwrap_or(t).trim().parse::<f64>().is_ok())
        })
        .collect();

    let char_w = GLYPH_ADVANCE * s;
    let margin = TABLE_MARGIN * s;
    let line = text_height(s);
    let total_chars = widths
        .iter()
        .map(|&w| u64::from(w))
        .sum::<u64>()
        .saturating_add(u64::from(TABLE_GAP_CHARS).saturating_mul((columns as u64).saturating_sub(1)));
    let rule_y = margin + line + s;
    let body_y = rule_y + 3 * s;
    let (width, height) = check_canvas(
        "the metrics table",
        u64::from(2 * margin).saturating_add(total_chars.saturating_mul(u64::from(char_w))),
        u64::from(body_y + margin).saturating_add((rows.len() as u64).saturating_mul(u64::from(line))),
    )?;
    let mut img = RgbImage::from_pixel(width, height, WHITE);

    for x in margin..width - margin {
        for y in rule_y..rule_y + s {
            img.put_pixel(x, y, INK);
        }
    }
    let draw_row = |img: &mut RgbImage, row: &[String], y: u32| {
        let mut x = margin;
        for c in 0..columns {
            let text = cell(row, c);
            let slack = widths[c] - text.chars().count() as u32;
            let dx = if numeric[c] { slack * char_w } else { 0 };
            draw_text(img, i64::from(x + dx), i64::from(y), text, s, INK);
            x += (widths[c] + TABLE_GAP_CHARS) * char_w;
        }
    };
    draw_row(&mut img, header, margin);
    for (r, row) in rows.iter().enumerate() {
        let y = body_y + r as u32 * line;
        if r % 2 == 1 {
            for yy in y.saturating_sub(s)..(y + line - s).min(height) {
                for xx in margin / 2..width - margin / 2 {
                    img.put_pixel(xx, yy, TABLE_STRIPE);
                }
            }
        }
        draw_row(&mut img, row, y);
    }
    Ok(img)
}

/// Stacks `images` top to bottom, left-aligned on a white background, `gutter` pixels apart; the result is
/// as wide as the widest image. A stack larger than [`MAX_PIXELS`] is refused.
pub fn stack_vertical(images: &[RgbImage], gutter: u32) -> Result<RgbImage, ReportError> {
    let width = images.iter().map(RgbImage::width).max().unwrap_or(0);
    let height = images
        .iter()
        .map(|img| u64::from(img.height()))
        .sum::<u64>()
        .saturating_add(u64::from(gutter).saturating_mul((images.len() as u64).saturating_sub(1)));
    let mut out = canvas("the stacked picture", u64::from(width), height)?;
    let mut y = 0i64;
    for img in images {
        image::imageops::replace(&mut out, img, 0, y);
        y += i64::from(img.height()) + i64::from(gutter);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const RED: Rgb<u8> = Rgb([255, 0, 0]);
    const GREEN: Rgb<u8> = Rgb([0, 255, 0]);
    const BLUE: Rgb<u8> = Rgb([0, 0, 255]);

    /// Bounding box (x0, y0, x1, y1), inclusive, of the pixels of `color`.
    fn bbox(img: &RgbImage, color: Rgb<u8>) -> Option<(u32, u32, u32, u32)> {
        img.enumerate_pixels().filter(|(_, _, p)| **p == color).fold(None, |b, (x, y, _)| {
            Some(b.map_or((x, y, x, y), |(x0, y0, x1, y1)| (x0.min(x), y0.min(y), x1.max(x), y1.max(y))))
        })
    }

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tiles_land_in_their_cells_with_white_gutters() {
        let red = RgbImage::from_pixel(8, 8, Rgb([255, 0, 0]));
        let blue = RgbImage::from_pixel(16, 16, Rgb([0, 0, 255]));
        let grid = image_grid(&[vec![red.clone(), blue.clone()], vec![blue]], 8, 2).unwrap();
        assert_eq!(grid.dimensions(), (18, 18));
        assert_eq!(grid.get_pixel(0, 0), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(7, 7), &Rgb([255, 0, 0]));
        assert_eq!(grid.get_pixel(8, 3), &Rgb([255, 255, 255])); // gutter
        assert_eq!(grid.get_pixel(10, 0), &Rgb([0, 0, 255])); // resized 16 -> 8, still blue
        assert_eq!(grid.get_pixel(0, 10), &Rgb([0, 0, 255]));
        assert_eq!(grid.get_pixel(12, 12), &Rgb([255, 255, 255])); // missing cell stays white
    }

    #[test]
    fn labelled_grid_places_tiles_below_the_titles_and_right_of_the_labels() {
        let (cell, gutter) = (64, 4); // text scale 1
        let tile = |c| RgbImage::from_pixel(cell, cell, c);
        let grid = labelled_grid(
            &strings(&["ground truth", "final"]), // 72 px at scale 1: wraps onto two lines
            &[("subject 01".into(), vec![tile(RED), tile(BLUE)]), ("s7".into(), vec![tile(GREEN)])],
            cell,
            gutter,
        )
        .unwrap();
        let pad = LABEL_PAD;
        let label_w = text_width("subject 01", 1) + 2 * pad;
        let title_h = 2 * text_height(1) + 2 * pad;
        assert_eq!(grid.dimensions(), (label_w + 2 * cell + gutter, title_h + 2 * cell + gutter));
        let (x1, y1) = (label_w + cell + gutter, title_h + cell + gutter);
        assert_eq!(bbox(&grid, RED), Some((label_w, title_h, label_w + cell - 1, title_h + cell - 1)));
        assert_eq!(bbox(&grid, BLUE), Some((x1, title_h, x1 + cell - 1, title_h + cell - 1)));
        assert_eq!(bbox(&grid, GREEN), Some((label_w, y1, label_w + cell - 1, y1 + cell - 1)));
        // The titles are drawn in the title row, over their column; the labels in the label column.
        let (tx0, ty0, tx1, ty1) = bbox(&grid, INK).unwrap();
        assert!(tx0 < label_w && ty0 < title_h && tx1 >= x1 && ty1 >= y1, "text in all three places");
        for (x, y, p) in grid.enumerate_pixels() {
            if *p == INK {
                assert!(x < label_w || y < title_h, "text at ({x}, {y}) inside the tiles");
            }
        }
        let ink_in = |x0: u32, x1: u32, y0: u32, y1: u32| {
            grid.enumerate_pixels().any(|(x, y, p)| *p == INK && (x0..x1).contains(&x) && (y0..y1).contains(&y))
        };
        assert!(ink_in(0, label_w, title_h, title_h + cell) && ink_in(0, label_w, y1, y1 + cell));
        // "ground" on the first title line, "truth" on the second; "final" (one line) only on the second.
        let line = |k: u32| (pad + k * text_height(1), pad + (k + 1) * text_height(1));
        assert!(ink_in(label_w, label_w + cell, line(0).0, line(0).1));
        assert!(ink_in(label_w, label_w + cell, line(1).0, line(1).1));
        assert!(!ink_in(x1, x1 + cell, line(0).0, line(0).1));
        assert!(ink_in(x1, x1 + cell, line(1).0, line(1).1));
    }

    #[test]
    fn labelled_grid_without_text_is_the_plain_grid_and_long_titles_are_cut() {
        let tile = RgbImage::from_pixel(8, 8, RED);
        let rows = vec![(String::new(), vec![tile.clone(), tile.clone()])];
        let plain = image_grid(&[vec![tile.clone(), tile]], 8, 2).unwrap();
        assert_eq!(labelled_grid(&[], &rows, 8, 2).unwrap(), plain);
        assert_eq!(labelled_grid(&strings(&["", " "]), &rows, 8, 2).unwrap(), plain);
        assert_eq!(fit_text("occipitotemporal", 64, 1), "occipitot.");
        assert_eq!(text_width(&fit_text("occipitotemporal", 64, 1), 1), 60);
        assert_eq!(fit_text("final", 64, 1), "final");
        assert_eq!(fit_text("final", 5, 1), "");
        // A too-long title never spills into the next column.
        let grid = labelled_grid(&strings(&["occipitotemporal", "b"]), &rows, 64, 4).unwrap();
        let title_h = text_height(1) + 2 * LABEL_PAD;
        assert_eq!(grid.height(), title_h + 64);
        let spill = grid.enumerate_pixels().any(|(x, y, p)| *p == INK && y < title_h && (64..68).contains(&x));
        assert!(!spill);
        // Cells of 128 pixels take text at scale 2 when every word fits.
        let big = RgbImage::from_pixel(128, 128, RED);
        let grid = labelled_grid(&strings(&["ground truth"]), &[(String::new(), vec![big])], 128, 4).unwrap();
        assert_eq!(grid.height(), 2 * text_height(2) + 2 * 2 * LABEL_PAD + 128);
    }

    #[test]
    fn words_wrap_at_spaces_within_the_width() {
        assert_eq!(wrap_words("early visual cortex", text_width("early visual", 1), 1), ["early visual", "cortex"]);
        assert_eq!(wrap_words("faces", 1, 1), ["faces"]);
        assert!(wrap_words("  ", 100, 1).is_empty());
    }

    #[test]
    fn table_width_grows_with_the_longest_cell() {
        let header = strings(&["ROI", "value"]);
        let short = table_image(&header, &[strings(&["V1", "0.1"])]).unwrap();
        let long = table_image(&header, &[strings(&["V1 and friends", "0.1"])]).unwrap();
        assert_eq!(long.height(), short.height());
        assert_eq!(
            long.width() - short.width(),
            text_width("V1 and friends", TABLE_SCALE) - text_width("ROI", TABLE_SCALE)
        );
        let margin = TABLE_MARGIN * TABLE_SCALE;
        let chars = 3 + TABLE_GAP_CHARS + 5;
        assert_eq!(short.width(), 2 * margin + chars * GLYPH_ADVANCE * TABLE_SCALE);
    }

    #[test]
    fn table_has_a_rule_under_the_header_and_right_aligns_numbers() {
        let header = strings(&["method", "SSIM"]);
        let img = table_image(&header, &[strings(&["a", "1.5"]), strings(&["bb", "10.25"]), strings(&["c"])]).unwrap();
        let margin = TABLE_MARGIN * TABLE_SCALE;
        let full_rule = |y: u32| (margin..img.width() - margin).all(|x| *img.get_pixel(x, y) == INK);
        let rules: Vec<u32> = (0..img.height()).filter(|&y| full_rule(y)).collect();
        assert_eq!(rules.len() as u32, TABLE_SCALE);
        let header_ink = bbox(&img, INK).unwrap().1;
        assert!(header_ink < rules[0]);
        // The right edge of the ink of each body row's number is the same: right-aligned column.
        let line = text_height(TABLE_SCALE);
        let right_ink = |row: u32| {
            let y0 = rules[0] + 3 * TABLE_SCALE + row * line;
            (0..img.width()).filter(|&x| (y0..y0 + line).any(|y| *img.get_pixel(x, y) == INK)).max()
        };
        assert_eq!(right_ink(0), right_ink(1));
        assert!(right_ink(2) < right_ink(0)); // "c" only, left-aligned text column
    }

    #[test]
    fn stack_vertical_left_aligns_on_white() {
        let a = RgbImage::from_pixel(10, 4, RED);
        let b = RgbImage::from_pixel(6, 3, BLUE);
        let out = stack_vertical(&[a, b], 2).unwrap();
        assert_eq!(out.dimensions(), (10, 9));
        assert_eq!(bbox(&out, RED), Some((0, 0, 9, 3)));
        assert_eq!(bbox(&out, BLUE), Some((0, 6, 5, 8)));
        assert_eq!(out.get_pixel(0, 4), &WHITE);
        assert_eq!(out.get_pixel(8, 7), &WHITE);
        assert_eq!(stack_vertical(&[], 5).unwrap().dimensions(), (0, 0));
    }

    #[test]
    fn pictures_too_large_to_draw_are_refused_before_allocating() {
        let tile = RgbImage::from_pixel(1, 1, RED);
        // 100,000-pixel cells: one cell alone is 10^10 pixels.
        let err = image_grid(&[vec![tile.clone()]], 100_000, 4).unwrap_err();
        assert_eq!(err, ReportError::TooLarge { what: "the image grid", width: 100_000, height: 100_000 });
        assert!(err.to_string().contains("100000 x 100000 pixels"), "{err}");
        let rows = vec![(String::from("nsd 1"), vec![tile.clone(); 3])];
        assert!(matches!(labelled_grid(&[], &rows, 100_000, 4), Err(ReportError::TooLarge { .. })));
        // Sides that do not fit in 32 bits, and a cell plus gutter that overflows.
        assert!(check_grid(usize::MAX, usize::MAX, u32::MAX, u32::MAX).is_err());
        assert!(check_grid(1, 1, u32::MAX, 0).is_err());
        assert!(image_grid(&[vec![]], u32::MAX, u32::MAX).is_err());
        assert!(labelled_grid(&[], &[(String::new(), vec![])], u32::MAX, 1).is_err());
        // The limit itself: 2^14 x 2^14 = 2^28 pixels fits, one more row does not.
        assert_eq!(check_canvas("x", 1 << 14, 1 << 14), Ok((1 << 14, 1 << 14)));
        assert!(check_canvas("x", 1 << 14, (1 << 14) + 1).is_err());
        assert_eq!(check_grid(8, 11, 128, 4), Ok((11 * 128 + 10 * 4, 8 * 128 + 7 * 4)));
        // A stack whose heights overflow 32 bits.
        let tall = RgbImage::new(0, u32::MAX);
        assert!(stack_vertical(&[tall.clone(), tall], 1).is_err());
    }
}
