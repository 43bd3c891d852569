//! Grouped vertical bar charts with error bars as PNG, e.g. the paper's Figure 7 (`weights-roi/figure7.png`):
//! for each ROI, one bar per CLIP feature space (vision, text), error bars the SEM across subjects.
//!
//! The report page draws its charts with `plotters` as SVG ([`super::bar_chart_svg`]). This PNG chart
//! stays because `plotters`' bitmap backend cannot draw text without a TrueType font: with neither its
//! `ttf` feature (font-kit, reading the machine's system fonts) nor `ab_glyph` (a font file compiled in)
//! it panics on the first label, and either would make the picture depend on a font outside this crate.
//! Here the text is the built-in bitmap font's, the same pixels on every machine.

use super::font::{GLYPH_ADVANCE, draw_text, text_height, text_width};
use super::{INK, WHITE, wrap_words};
use image::{Rgb, RgbImage};

/// One series of a [`bar_chart`]: one value per label, drawn as one bar in each label's group.
#[derive(Clone, Debug, PartialEq)]
pub struct BarSeries {
    /// Name shown in the legend.
    pub name: String,
    /// One value per label (may be negative); a missing or non-finite value draws no bar.
    pub values: Vec<f64>,
    /// Half-lengths of the error bars (drawn from `value - error` to `value + error`), one per value; a
    /// missing or non-finite error draws no error bar, a negative one counts as its magnitude.
    pub errors: Option<Vec<f64>>,
    /// Colour of the bars and of the legend swatch.
    pub color: Rgb<u8>,
}

/// Text scale of every label in the chart.
const SCALE: u32 = 2;
const MARGIN: u32 = 16;
/// Height of the plot area (the y-axis), in pixels.
const PLOT_HEIGHT: u32 = 320;
/// Horizontal pitch of the bars of a group; each bar is `BAR_PITCH - BAR_GAP` pixels wide.
const BAR_PITCH: u32 = 22;
const BAR_GAP: u32 = 2;
/// White space on each side of the bars of a group, at least.
const GROUP_PAD: u32 = 12;
/// Length of the tick marks left of the y-axis.
const TICK: u32 = 5;
/// Half-width of the caps of the error bars.
const CAP: u32 = 6;
/// Aim for about this many intervals between y ticks.
const TARGET_INTERVALS: f64 = 5.0;
const GRID: Rgb<u8> = Rgb([225, 225, 225]);
const WHISKER: Rgb<u8> = Rgb([60, 60, 60]);

/// The y-axis: ticks at `i * step` for `i` in `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Axis {
    step: f64,
    lo: i64,
    hi: i64,
}

impl Axis {
    /// A 1-2-5 step and the tick range covering `min..=max` (the caller includes zero).
    fn covering(min: f64, max: f64) -> Self {
        let (min, max) = if max - min > 0.0 && (max - min).is_finite() { (min, max) } else { (0.0, 1.0) };
        let raw = (max - min) / TARGET_INTERVALS;
        let magnitude = 10f64.powf(raw.log10().floor());
        let norm = raw / magnitude;
        let nice = if norm <= 1.0 {
            1.0
        } else if norm <= 2.0 {
            2.0
        } else if norm <= 5.0 {
            5.0
        } else {
            10.0
        };
        let step = nice * magnitude;
        // The tolerance keeps a bound that is a multiple of the step (up to rounding) from adding a tick.
        let lo = (min / step + 1e-9).floor() as i64;
        let hi = ((max / step - 1e-9).ceil() as i64).max(lo + 1);
        Self { step, lo, hi }
    }

    /// Tick label for tick `i`, with as many decimals as the step needs.
    fn label(&self, i: i64) -> String {
        let value = i as f64 * self.step;
        if (1e-4..1e6).contains(&self.step) {
            let decimals = (-self.step.log10().floor()).max(0.0) as usize;
            format!("{value:.decimals$}")
        } else {
            format!("{value:.1e}")
        }
    }
}

fn fill(img: &mut RgbImage, x0: i64, y0: i64, x1: i64, y1: i64, color: Rgb<u8>) {
    let (w, h) = (i64::from(img.width()), i64::from(img.height()));
    for y in y0.max(0)..y1.min(h) {
        for x in x0.max(0)..x1.min(w) {
            img.put_pixel(x as u32, y as u32, color);
        }
    }
}

/// Draws a grouped vertical bar chart: one group per label (left to right, the label under it, wrapped at
/// spaces), one bar per series in each group (in series order), optional error bars (`value +- error`,
/// with caps), `title` centred on top, a legend of the series under it, and a y-axis with 1-2-5 ticks,
/// light grid lines, numbers and the rotated `y_label`. Bars grow up from the zero line for positive
/// values and down for negative ones; the axis always includes zero and every `value +- error`, and bar
/// lengths are `|value|` times one pixels-per-unit factor (rounded). Non-finite values and errors are
/// skipped. Text is black on white at scale 2; the picture is 320 pixels of plot plus text and margins
/// tall, and as wide as the groups need (each at least as wide as its longest word).
pub fn bar_chart(title: &str, labels: &[String], series: &[BarSeries], y_label: &str) -> RgbImage {
    let groups = series.iter().map(|s| s.values.len()).max().unwrap_or(0).max(labels.len());
    let error = |s: &BarSeries, g: usize| {
        s.errors.as_ref().and_then(|e| e.get(g)).copied().filter(|e| e.is_finite()).map(f64::abs)
    };
    let value = |s: &BarSeries, g: usize| s.values.get(g).copied().filter(|v| v.is_finite());
    let (mut min, mut max) = (0.0f64, 0.0f64);
    for s in series {
        for g in 0..groups {
            if let Some(v) = value(s, g) {
                let e = error(s, g).unwrap_or(0.0);
                min = min.min(v - e);
                max = max.max(v + e);
            }
        }
    }
    let axis = Axis::covering(min, max);

    let s = SCALE;
    let line = text_height(s);
    let char_w = GLYPH_ADVANCE * s;
    let cap_height = 7 * s; // ink above the baseline

    // Horizontal layout: y label, tick labels, axis, groups.
    let bars_w = series.len() as u32 * BAR_PITCH;
    let longest_word = labels.iter().flat_map(|l| l.split_whitespace()).map(|w| text_width(w, s)).max().unwrap_or(0);
    let group_w = (bars_w + 2 * GROUP_PAD).max(longest_word + 2 * char_w).max(3 * char_w);
    let label_lines: Vec<Vec<String>> = labels.iter().map(|l| wrap_words(l, group_w - char_w, s)).collect();
    let label_rows = label_lines.iter().map(Vec::len).max().unwrap_or(0) as u32;
    let ticks: Vec<(i64, String)> = (axis.lo..=axis.hi).map(|i| (i, axis.label(i))).collect();
    let tick_w = ticks.iter().map(|(_, t)| text_width(t, s)).max().unwrap_or(0);
    let y_label_w = if y_label.is_empty() { 0 } else { line + 2 * s };
    let axis_x = MARGIN + y_label_w + tick_w + 2 * s + TICK;
    let plot_left = axis_x + 1;
    let plot_right = plot_left + groups as u32 * group_w;
    let legend: Vec<(u32, &BarSeries)> = series
        .iter()
        .scan(plot_left, |x, s_| {
            let at = *x;
            *x += cap_height + char_w + text_width(&s_.name, s) + 2 * char_w;
            Some((at, s_))
        })
        .collect();
    let legend_right = legend.last().map_or(0, |(x, s_)| x + cap_height + char_w + text_width(&s_.name, s));
    let width = (plot_right + MARGIN).max(text_width(title, s) + 2 * MARGIN).max(legend_right + MARGIN);

    // Vertical layout: title, legend, plot (half a line of room above and below for tick labels), labels.
    let mut y = MARGIN;
    let title_y = y;
    if !title.is_empty() {
        y += line + 2 * s;
    }
    let legend_y = y;
    if !series.is_empty() {
        y += line + 2 * s;
    }
    let plot_top = y + line / 2;
    let plot_bottom = plot_top + PLOT_HEIGHT;
    let labels_y = plot_bottom + line / 2 + 2 * s;
    let height = labels_y + label_rows * line + MARGIN;
    let mut img = RgbImage::from_pixel(width, height, WHITE);

    let intervals = (axis.hi - axis.lo) as f64;
    let px_per_unit = f64::from(PLOT_HEIGHT) / (intervals * axis.step);
    let zero_y = i64::from(plot_top) + (f64::from(PLOT_HEIGHT) * axis.hi as f64 / intervals).round() as i64;
    let (top, bottom) = (i64::from(plot_top), i64::from(plot_bottom));
    // Pixel row of `v`, measured from the zero line so that equal values give equal bar lengths.
    // Clamped in floating point, so that huge values cannot overflow.
    let row_of = |v: f64| (zero_y as f64 - (v * px_per_unit).round()).clamp(top as f64, bottom as f64) as i64;
    let (left, right) = (i64::from(plot_left), i64::from(plot_right));

    // Grid lines, ticks and tick labels.
    for (i, label) in &ticks {
        let ty = row_of(*i as f64 * axis.step);
        fill(&mut img, left, ty, right, ty + 1, GRID);
        fill(&mut img, i64::from(axis_x - TICK), ty, i64::from(axis_x), ty + 1, INK);
        let tx = i64::from(axis_x - TICK - 2 * s) - i64::from(text_width(label, s) - s);
        draw_text(&mut img, tx, ty - i64::from(cap_height / 2), label, s, INK);
    }

    // Bars, then the zero line and the axis over them, then the error bars over everything.
    let bar_x = |g: usize, j: usize| {
        i64::from(plot_left + g as u32 * group_w + (group_w - bars_w) / 2 + j as u32 * BAR_PITCH + BAR_GAP / 2)
    };
    let bar_w = i64::from(BAR_PITCH - BAR_GAP);
    for g in 0..groups {
        for (j, sr) in series.iter().enumerate() {
            if let Some(v) = value(sr, g) {
                let end = row_of(v);
                let (y0, y1) = if v >= 0.0 { (end, zero_y) } else { (zero_y + 1, end + 1) };
                fill(&mut img, bar_x(g, j), y0, bar_x(g, j) + bar_w, y1, sr.color);
            }
        }
    }
    fill(&mut img, left, zero_y, right, zero_y + 1, INK);
    fill(&mut img, i64::from(axis_x), top, i64::from(axis_x) + 1, bottom + 1, INK);
    for g in 0..groups {
        for (j, sr) in series.iter().enumerate() {
            if let (Some(v), Some(e)) = (value(sr, g), error(sr, g)) {
                let (hi, lo) = (row_of(v + e), row_of(v - e));
                let cx = bar_x(g, j) + bar_w / 2;
                fill(&mut img, cx - 1, hi, cx + 1, lo + 1, WHISKER);
                let cap = i64::from(CAP);
                fill(&mut img, cx - cap, hi, cx + cap, hi + 1, WHISKER);
                fill(&mut img, cx - cap, lo, cx + cap, lo + 1, WHISKER);
            }
        }
    }

    // Group labels, title, legend, y label.
    for (g, lines) in label_lines.iter().enumerate() {
        let centre = plot_left + g as u32 * group_w + group_w / 2;
        for (k, text) in lines.iter().enumerate() {
            let x = i64::from(centre) - i64::from(text_width(text, s).saturating_sub(s) / 2);
            draw_text(&mut img, x, i64::from(labels_y + k as u32 * line), text, s, INK);
        }
    }
    let title_x = (width - text_width(title, s).saturating_sub(s)) / 2;
    draw_text(&mut img, i64::from(title_x), i64::from(title_y), title, s, INK);
    for (x, sr) in &legend {
        let (x, ly) = (i64::from(*x), i64::from(legend_y));
        fill(&mut img, x, ly, x + i64::from(cap_height), ly + i64::from(cap_height), sr.color);
        draw_text(&mut img, x + i64::from(cap_height + char_w), ly, &sr.name, s, INK);
    }
    if !y_label.is_empty() {
        let mut text = RgbImage::from_pixel(text_width(y_label, s), line, WHITE);
        draw_text(&mut text, 0, 0, y_label, s, INK);
        let rotated = image::imageops::rotate270(&text); // reads bottom to top
        let y = i64::from(plot_top) + (i64::from(PLOT_HEIGHT) - i64::from(rotated.height())) / 2;
        image::imageops::replace(&mut img, &rotated, i64::from(MARGIN), y);
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_series::{TEXT, VISION, series};

    fn labels(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("ROI {i}")).collect()
    }

    /// The zero line: the row with a horizontal run of black longer than any text could make.
    fn zero_line(img: &RgbImage) -> u32 {
        let rows: Vec<u32> = (0..img.height())
            .filter(|&y| {
                let mut run = 0;
                (0..img.width()).any(|x| {
                    run = if *img.get_pixel(x, y) == INK { run + 1 } else { 0 };
                    run > 60
                })
            })
            .collect();
        assert_eq!(rows.len(), 1, "exactly one zero line");
        rows[0]
    }

    /// A bar touching the zero line: first column, last column and length (negative: below the line),
    /// measured in its leftmost column (away from the error bar).
    fn bars(img: &RgbImage, color: Rgb<u8>) -> Vec<(u32, u32, i64)> {
        let zero = zero_line(img);
        let run = |x: u32, dir: i64| {
            let mut n = 0i64;
            while *img.get_pixel(x, (i64::from(zero) + dir * (n + 1)) as u32) == color {
                n += 1;
            }
            n
        };
        let mut out: Vec<(u32, u32, i64)> = Vec::new();
        for x in 0..img.width() {
            let length = match (run(x, -1), run(x, 1)) {
                (0, 0) => continue,
                (up, 0) => up,
                (0, down) => -down,
                _ => panic!("bar on both sides of the zero line at x = {x}"),
            };
            match out.last_mut() {
                Some(bar) if bar.1 + 1 == x => bar.1 = x,
                _ => out.push((x, x, length)),
            }
        }
        out
    }

    /// Rows spanned by the error-bar pixels within columns `x0..=x1`.
    fn whisker_rows(img: &RgbImage, x0: u32, x1: u32) -> Option<(u32, u32)> {
        let rows: Vec<u32> =
            (0..img.height()).filter(|&y| (x0..=x1).any(|x| *img.get_pixel(x, y) == WHISKER)).collect();
        Some((*rows.first()?, *rows.last()?))
    }

    #[test]
    fn positive_bars_rise_above_the_zero_line_and_negative_ones_hang_below() {
        let img = bar_chart(
            "signed",
            &labels(3),
            &[series("vision", &[0.3, -0.2, 0.1], None, VISION), series("text", &[-0.1, 0.6, 0.0], None, TEXT)],
            "diff",
        );
        let vision = bars(&img, VISION);
        let text = bars(&img, TEXT);
        assert_eq!(vision.iter().map(|b| b.2.signum()).collect::<Vec<_>>(), [1, -1, 1]);
        assert_eq!(text.iter().map(|b| b.2.signum()).collect::<Vec<_>>(), [-1, 1]); // 0.0 draws nothing
        // Groups left to right, each series in order inside its group.
        assert!(vision[0].1 < text[0].0 && text[0].1 < vision[1].0 && vision[1].1 < text[1].0);
        // No bar colour anywhere else on the wrong side: every pixel of a positive bar's columns is above.
        let zero = zero_line(&img);
        for y in zero..img.height() {
            for x in vision[0].0..=vision[0].1 {
                assert_ne!(*img.get_pixel(x, y), VISION);
            }
        }
    }

    #[test]
    fn bar_lengths_are_proportional_to_values() {
        let img = bar_chart("", &labels(4), &[series("a", &[0.2, 0.4, -0.2, -0.1], None, VISION)], "");
        let b = bars(&img, VISION);
        assert_eq!(b.len(), 4);
        assert!((b[1].2 - 2 * b[0].2).abs() <= 1, "{b:?}");
        assert!((b[2].2 + b[0].2).abs() <= 1, "{b:?}");
        assert!((b[2].2 - 2 * b[3].2).abs() <= 1, "{b:?}");
        assert!(b[0].2 > 20, "bars are tall enough to see");
    }

    #[test]
    fn error_bars_extend_value_plus_minus_error() {
        let img = bar_chart(
            "",
            &labels(2),
            &[series("a", &[0.4, -0.4], Some(&[0.1, 0.2]), VISION), series("b", &[0.2, 0.1], None, TEXT)],
            "",
        );
        let zero = i64::from(zero_line(&img));
        let b = bars(&img, VISION);
        assert_eq!(b.len(), 2);
        let px_per_unit = b[0].2 as f64 / 0.4;
        for (bar, (v, e)) in b.iter().zip([(0.4, 0.1), (-0.4, 0.2)]) {
            let (top, bottom) = whisker_rows(&img, bar.0, bar.1).expect("an error bar");
            let expect = |value: f64| zero as f64 - value * px_per_unit;
            assert!((top as f64 - expect(v + e)).abs() <= 1.0, "top {top} vs {}", expect(v + e));
            assert!((bottom as f64 - expect(v - e)).abs() <= 1.0, "bottom {bottom} vs {}", expect(v - e));
            // Symmetric about the bar's end.
            let end = zero - bar.2;
            assert!(((i64::from(top) - end) + (i64::from(bottom) - end)).abs() <= 1);
        }
        let t = bars(&img, TEXT);
        assert!(whisker_rows(&img, t[0].0, t[0].1).is_none(), "no error bars without errors");
    }

    #[test]
    fn non_finite_values_and_errors_are_skipped() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let img = bar_chart(
            "t",
            &labels(2),
            &[series("a", &[nan, inf, 0.3, -inf, 0.2], Some(&[0.1, 0.1, nan, 0.1]), VISION)],
            "y",
        );
        let b = bars(&img, VISION);
        assert_eq!(b.len(), 2, "only the finite values draw bars");
        assert!(!img.pixels().any(|p| *p == WHISKER), "no error bar without a finite value and error");
        // Degenerate inputs draw an empty chart without panicking.
        for chart in [
            bar_chart("", &[], &[], ""),
            bar_chart("all nan", &labels(3), &[series("a", &[nan; 3], Some(&[nan; 3]), VISION)], "y"),
            bar_chart("huge", &labels(2), &[series("a", &[f64::MAX, -f64::MAX], Some(&[f64::MAX; 2]), VISION)], ""),
            bar_chart("tiny", &labels(1), &[series("a", &[1e-300], None, VISION)], ""),
        ] {
            assert!(chart.width() > 0 && chart.height() > 0);
        }
    }

    #[test]
    fn axis_ticks_are_round_and_cover_the_data() {
        let a = Axis::covering(-0.3, 0.6);
        assert_eq!((a.lo, a.hi), (-2, 3));
        assert!((a.step - 0.2).abs() < 1e-12);
        assert_eq!((a.lo..=a.hi).map(|i| a.label(i)).collect::<Vec<_>>(), ["-0.4", "-0.2", "0.0", "0.2", "0.4", "0.6"]);
        let b = Axis::covering(0.0, 0.4);
        assert_eq!((b.lo, b.hi), (0, 4));
        assert_eq!(b.label(4), "0.4");
        let c = Axis::covering(0.0, 37.0);
        assert_eq!((c.step, c.lo, c.hi), (10.0, 0, 4));
        assert_eq!(c.label(3), "30");
        assert_eq!(Axis::covering(0.0, 0.0), Axis::covering(0.0, 1.0));
    }

    #[test]
    fn the_chart_is_deterministic_and_grows_with_the_groups() {
        let make = |n| bar_chart("Fig 7", &labels(n), &[series("a", &vec![0.1; n], None, VISION)], "y");
        assert_eq!(make(3), make(3));
        assert!(make(5).width() > make(3).width());
    }
}
