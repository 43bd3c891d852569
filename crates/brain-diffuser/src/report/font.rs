//! A built-in 5x7 bitmap font (with two-row descenders) for printable ASCII, drawn at an integer scale.
//!
//! The `image` crate draws no text, and rendering with a system font would make report pictures depend
//! on the machine that made them; this font is compiled in, so the same call gives the same pixels
//! everywhere.

use image::{Rgb, RgbImage};

/// Horizontal advance of one character at scale 1, in pixels: 5 glyph columns and 1 column of spacing.
pub const GLYPH_ADVANCE: u32 = 6;

/// Height of one line of text at scale 1, in pixels: 7 rows above the baseline, 2 descender rows below it
/// and 1 row of spacing.
pub const LINE_HEIGHT: u32 = 10;

/// Glyph columns and rows actually drawn (the rest of the advance box is spacing).
const GLYPH_W: usize = 5;
const GLYPH_H: usize = 9;
/// First and last code points with a glyph; anything else is drawn as `?`.
const FIRST: u8 = b' ';
const LAST: u8 = b'~';
const COUNT: usize = (LAST - FIRST + 1) as usize;
const PER_BLOCK: usize = 16;

/// The glyphs of ' ' to '~' in code-point order, 16 per block. Each block is a header line naming the
/// characters (column 2 of each 6-wide slot) and 9 rows of pixels ('#' on, '.' off); rows 0-6 stand on the
/// baseline, rows 7-8 are descenders. Parsed, and checked, at compile time.
const SHEET: &str = r#"
        !     "     #     $     %     &     '     (     )     *     +     ,     -     .     /
..... ..#.. .#.#. .#.#. ..#.. ##... .##.. ..#.. ...#. .#... ..... ..... ..... ..... ..... ....#
..... ..#.. .#.#. .#.#. .#### ##..# #..#. ..#.. ..#.. ..#.. ..#.. ..#.. ..... ..... ..... ....#
..... ..#.. .#.#. ##### #.#.. ...#. #.#.. .#... .#... ...#. #.#.# ..#.. ..... ..... ..... ...#.
..... ..#.. ..... .#.#. .###. ..#.. .#... ..... .#... ...#. .###. ##### ..... ##### ..... ..#..
..... ..#.. ..... ##### ..#.# .#... #.#.# ..... .#... ...#. #.#.# ..#.. ..... ..... ..... .#...
..... ..... ..... .#.#. ####. #..## #..#. ..... ..#.. ..#.. ..#.. ..#.. ..##. ..... .##.. #....
..... ..#.. ..... .#.#. ..#.. ...## .##.# ..... ...#. .#... ..... ..... ..##. ..... .##.. #....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ...#. ..... ..... .....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..#.. ..... ..... .....

  0     1     2     3     4     5     6     7     8     9     :     ;     <     =     >     ?
.###. ..#.. .###. ##### ...#. ##### ..##. ##### .###. .###. ..... ..... ...#. ..... .#... .###.
#...# .##.. #...# ...#. ..##. #.... .#... ....# #...# #...# .##.. .##.. ..#.. ..... ..#.. #...#
#..## ..#.. ....# ..#.. .#.#. ####. #.... ...#. #...# #...# .##.. .##.. .#... ##### ...#. ....#
#.#.# ..#.. ...#. ...#. #..#. ....# ####. ..#.. .###. .#### ..... ..... #.... ..... ....# ...#.
##..# ..#.. ..#.. ....# ##### ....# #...# .#... #...# ....# .##.. .##.. .#... ##### ...#. ..#..
#...# ..#.. .#... #...# ...#. #...# #...# .#... #...# ...#. .##.. .##.. ..#.. ..... ..#.. .....
.###. .###. ##### .###. ...#. .###. .###. .#... .###. .##.. ..... ..#.. ...#. ..... .#... ..#..
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .#... ..... ..... ..... .....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

  @     A     B     C     D     E     F     G     H     I     J     K     L     M     N     O
.###. .###. ####. .###. ###.. ##### ##### .###. #...# .###. ..### #...# #.... #...# #...# .###.
#...# #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. ...#. #..#. #.... ##.## #...# #...#
....# #...# #...# #.... #...# #.... #.... #.... #...# ..#.. ...#. #.#.. #.... #.#.# ##..# #...#
.##.# ##### ####. #.... #...# ####. ####. #.### ##### ..#.. ...#. ##... #.... #.#.# #.#.# #...#
#.#.# #...# #...# #.... #...# #.... #.... #...# #...# ..#.. ...#. #.#.. #.... #...# #..## #...#
#.#.# #...# #...# #...# #..#. #.... #.... #...# #...# ..#.. #..#. #..#. #.... #...# #...# #...#
.###. #...# ####. .###. ###.. ##### #.... .#### #...# .###. .##.. #...# ##### #...# #...# .###.
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

  P     Q     R     S     T     U     V     W     X     Y     Z     [     \     ]     ^     _
####. .###. ####. .#### ##### #...# #...# #...# #...# #...# ##### .###. #.... .###. ..#.. .....
#...# #...# #...# #.... ..#.. #...# #...# #...# #...# #...# ....# .#... #.... ...#. .#.#. .....
#...# #...# #...# #.... ..#.. #...# #...# #...# .#.#. .#.#. ...#. .#... .#... ...#. #...# .....
####. #...# ####. .###. ..#.. #...# #...# #.#.# ..#.. ..#.. ..#.. .#... ..#.. ...#. ..... .....
#.... #.#.# #.#.. ....# ..#.. #...# #...# #.#.# .#.#. ..#.. .#... .#... ...#. ...#. ..... .....
#.... #..#. #..#. ....# ..#.. #...# .#.#. #.#.# #...# ..#.. #.... .#... ....# ...#. ..... .....
#.... .##.# #...# ####. ..#.. .###. ..#.. .#.#. #...# ..#.. ##### .###. ....# .###. ..... .....
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... #####
..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... ..... .....

  `     a     b     c     d     e     f     g     h     i     j     k     l     m     n     o
.#... ..... #.... ..... ....# ..... ..##. ..... #.... ..#.. ...#. #.... .##.. ..... ..... .....
..#.. ..... #.... ..... ....# ..... .#..# ..... #.... ..... ..... #.... ..#.. ..... ..... .....
...#. .###. #.##. .###. .##.# .###. .#... .#### #.##. .##.. ..##. #..#. ..#.. ##.#. #.##. .###.
..... ....# ##..# #.... #..## #...# ###.. #...# ##..# ..#.. ...#. #.#.. ..#.. #.#.# ##..# #...#
..... .#### #...# #.... #...# ##### .#... #...# #...# ..#.. ...#. ##... ..#.. #.#.# #...# #...#
..... #...# #...# #...# #...# #.... .#... #...# #...# ..#.. ...#. #.#.. ..#.. #...# #...# #...#
..... .#### ####. .###. .#### .###. .#... .#### #...# .###. ...#. #..#. .###. #...# #...# .###.
..... ..... ..... ..... ..... ..... ..... ....# ..... ..... #..#. ..... ..... ..... ..... .....
..... ..... ..... ..... ..... ..... ..... .###. ..... ..... .##.. ..... ..... ..... ..... .....

  p     q     r     s     t     u     v     w     x     y     z     {     |     }     ~
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... ...## ..#.. ##... .....
..... ..... ..... ..... .#... ..... ..... ..... ..... ..... ..... ..#.. ..#.. ..#.. .....
####. .#### #.##. .#### ###.. #...# #...# #...# #...# #...# ##### ..#.. ..#.. ..#.. .#...
#...# #...# ##..# #.... .#... #...# #...# #...# .#.#. #...# ...#. .#... ..#.. ...#. #.#.#
#...# #...# #.... .###. .#... #...# #...# #.#.# ..#.. #...# ..#.. ..#.. ..#.. ..#.. ...#.
#...# #...# #.... ....# .#..# #..## .#.#. #.#.# .#.#. #...# .#... ..#.. ..#.. ..#.. .....
####. .#### #.... ####. ..##. .##.# ..#.. .#.#. #...# .#### ##### ...## ..#.. ##... .....
#.... ....# ..... ..... ..... ..... ..... ..... ..... ....# ..... ..... ..#.. ..... .....
#.... ....# ..... ..... ..... ..... ..... ..... ..... .###. ..... ..... ..#.. ..... .....
"#;

/// Row bit masks per glyph, bit 4 = leftmost column.
const GLYPHS: [[u8; GLYPH_H]; COUNT] = parse_sheet(SHEET);

const fn parse_sheet(sheet: &str) -> [[u8; GLYPH_H]; COUNT] {
    let bytes = sheet.as_bytes();
    let mut glyphs = [[0u8; GLYPH_H]; COUNT];
    let (mut pos, mut line) = (0, 0);
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos] != b'\n' {
            pos += 1;
        }
        let end = pos;
        pos += 1;
        if end == start {
            continue;
        }
        let (block, row) = (line / (GLYPH_H + 1), line % (GLYPH_H + 1));
        let mut slot = 0;
        while slot < PER_BLOCK && block * PER_BLOCK + slot < COUNT {
            let index = block * PER_BLOCK + slot;
            let at = start + slot * (GLYPH_W + 1);
            if row == 0 {
                let named = if at + 2 < end { bytes[at + 2] } else { b' ' };
                assert!(named as usize == FIRST as usize + index, "font sheet header out of order");
            } else {
                assert!(at + GLYPH_W <= end, "font sheet row too short");
                let mut col = 0;
                while col < GLYPH_W {
                    match bytes[at + col] {
                        b'#' => glyphs[index][row - 1] |= 1 << (GLYPH_W - 1 - col),
                        b'.' => {}
                        _ => panic!("font sheet pixels must be '#' or '.'"),
                    }
                    col += 1;
                }
            }
            slot += 1;
        }
        line += 1;
    }
    assert!(line == COUNT.div_ceil(PER_BLOCK) * (GLYPH_H + 1), "font sheet has the wrong number of lines");
    glyphs
}

fn glyph(c: char) -> &'static [u8; GLYPH_H] {
    let code = if (FIRST as char..=LAST as char).contains(&c) { c as u8 } else { b'?' };
    &GLYPHS[usize::from(code - FIRST)]
}

/// Width in pixels of `text` drawn at `scale`: one [`GLYPH_ADVANCE`] per character (trailing spacing
/// included), times `scale`.
pub fn text_width(text: &str, scale: u32) -> u32 {
    text.chars().count() as u32 * GLYPH_ADVANCE * scale
}

/// Height in pixels of one line of text drawn at `scale` ([`LINE_HEIGHT`] times `scale`).
pub fn text_height(scale: u32) -> u32 {
    LINE_HEIGHT * scale
}

/// Draws one line of `text` with its top-left corner at (`x`, `y`), each font pixel a `scale` x `scale`
/// square of `color`; only set pixels are painted (the background shows through). Characters outside
/// printable ASCII are drawn as `?`; pixels falling outside `img` are skipped.
pub fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, scale: u32, color: Rgb<u8>) {
    let s = i64::from(scale);
    let (width, height) = (i64::from(img.width()), i64::from(img.height()));
    for (i, c) in text.chars().enumerate() {
        let left = x + i as i64 * i64::from(GLYPH_ADVANCE) * s;
        for (row, bits) in glyph(c).iter().enumerate() {
            for col in 0..GLYPH_W {
                if bits & (1 << (GLYPH_W - 1 - col)) == 0 {
                    continue;
                }
                let (px, py) = (left + col as i64 * s, y + row as i64 * s);
                for yy in py.max(0)..(py + s).min(height) {
                    for xx in px.max(0)..(px + s).min(width) {
                        img.put_pixel(xx as u32, yy as u32, color);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
    const INK: Rgb<u8> = Rgb([0, 0, 0]);

    /// Renders `c` at `scale` in the middle of a white canvas three advance boxes wide and tall; returns
    /// the set pixels relative to the advance box drawn at (box_w, box_h).
    fn rendered(c: char, scale: u32) -> Vec<(i64, i64)> {
        let (bw, bh) = (GLYPH_ADVANCE * scale, LINE_HEIGHT * scale);
        let mut img = RgbImage::from_pixel(3 * bw, 3 * bh, WHITE);
        draw_text(&mut img, i64::from(bw), i64::from(bh), &c.to_string(), scale, INK);
        img.enumerate_pixels()
            .filter(|(_, _, p)| **p == INK)
            .map(|(x, y, _)| (i64::from(x) - i64::from(bw), i64::from(y) - i64::from(bh)))
            .collect()
    }

    #[test]
    fn one_and_eight_differ_and_stay_inside_their_advance_box() {
        for scale in [1, 3] {
            let (one, eight) = (rendered('1', scale), rendered('8', scale));
            assert!(!one.is_empty() && !eight.is_empty());
            assert_ne!(one, eight);
            for &(x, y) in one.iter().chain(&eight) {
                assert!((0..i64::from(GLYPH_ADVANCE * scale)).contains(&x), "x {x} outside the box");
                assert!((0..i64::from(LINE_HEIGHT * scale)).contains(&y), "y {y} outside the box");
            }
        }
    }

    #[test]
    fn every_printable_glyph_is_distinct_and_leaves_its_spacing_blank() {
        let glyphs: Vec<_> = (' '..='~').map(|c| rendered(c, 1)).collect();
        assert!(glyphs[0].is_empty(), "space draws nothing");
        for (i, a) in glyphs.iter().enumerate() {
            let c = char::from(FIRST + i as u8);
            assert!(c == ' ' || !a.is_empty(), "{c:?} draws nothing");
            // The last column and the last row of the advance box are spacing.
            assert!(a.iter().all(|&(x, y)| x < GLYPH_W as i64 && y < GLYPH_H as i64), "{c:?} touches its spacing");
            for (j, b) in glyphs.iter().enumerate().skip(i + 1) {
                assert_ne!(a, b, "{c:?} and {:?} look the same", char::from(FIRST + j as u8));
            }
        }
    }

    #[test]
    fn scaled_glyph_is_the_unit_glyph_blown_up() {
        let unit = rendered('%', 1);
        let mut blown: Vec<_> = unit
            .iter()
            .flat_map(|&(x, y)| (0..4).flat_map(move |dy| (0..4).map(move |dx| (4 * x + dx, 4 * y + dy))))
            .collect();
        blown.sort_by_key(|&(x, y)| (y, x));
        assert_eq!(rendered('%', 4), blown);
    }

    #[test]
    fn text_width_is_advance_times_length_times_scale() {
        for (text, scale) in [("", 2), ("V1", 1), ("CLIP-Vision 12.5%", 3), ("ünï", 2)] {
            assert_eq!(text_width(text, scale), GLYPH_ADVANCE * text.chars().count() as u32 * scale);
        }
        assert_eq!(text_height(3), 3 * LINE_HEIGHT);
    }

    #[test]
    fn characters_advance_and_unknown_ones_draw_a_question_mark() {
        let mut img = RgbImage::from_pixel(text_width("a?é", 2), text_height(2), WHITE);
        draw_text(&mut img, 0, 0, "a?é", 2, INK);
        let advance = GLYPH_ADVANCE * 2;
        let cell = |i: u32| image::imageops::crop_imm(&img, i * advance, 0, advance, text_height(2)).to_image();
        assert_eq!(cell(1), cell(2));
        assert_ne!(cell(0), cell(1));
    }

    #[test]
    fn drawing_past_the_edges_clips_without_panicking() {
        let mut img = RgbImage::from_pixel(10, 10, WHITE);
        draw_text(&mut img, -7, -5, "W8|", 3, INK);
        draw_text(&mut img, 8, 8, "W8|", 3, INK);
        draw_text(&mut img, i64::MIN / 4, i64::MAX / 4, "x", 1, INK);
        assert!(img.pixels().any(|p| *p == INK));
    }
}
