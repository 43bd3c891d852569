//! Grouped bar charts with error bars as SVG, drawn with `plotters` (its SVG backend): the report
//! page's Figure 7. The SVG's text names a font family and is laid out by the browser, so drawing it
//! needs no font files.

use plotters::element::ErrorBar;
use plotters::prelude::*;

use super::{BarSeries, ReportError};

/// Colour of the error bars (no bar colour uses it).
const WHISKER: RGBColor = RGBColor(60, 60, 60);

/// Width and height of [`bar_chart_svg`]'s picture, in SVG pixels.
pub const SVG_SIZE: (u32, u32) = (960, 480);

fn chart_error(e: impl std::fmt::Display) -> ReportError {
    ReportError::Chart { message: e.to_string() }
}

/// The y range of the chart: zero and every finite `value +- error`, padded by a tenth of the span
/// (`-1..1` when there is no finite value).
fn y_range(series: &[BarSeries], groups: usize) -> (f64, f64) {
    let (mut lo, mut hi) = (0.0f64, 0.0f64);
    for s in series {
        for g in 0..groups {
            let Some(v) = s.values.get(g).copied().filter(|v| v.is_finite()) else { continue };
            let e = s.errors.as_ref().and_then(|e| e.get(g)).copied().filter(|e| e.is_finite()).map_or(0.0, f64::abs);
            lo = lo.min(v - e);
            hi = hi.max(v + e);
        }
    }
    let span = hi - lo;
    if !(span > 0.0 && span.is_finite()) {
        return (-1.0, 1.0);
    }
    (lo - span / 10.0, hi + span / 10.0)
}

/// Draws a grouped vertical bar chart as an SVG document of [`SVG_SIZE`]: one group per label (left
/// to right, the label under it), one bar per series in each group (series order, the series'
/// colour), bars from zero to the value, error bars from `value - error` to `value + error` (a
/// negative error counts as its magnitude), a legend of the series, `title` on top and `y_label`
/// along the y axis. Non-finite values draw no bar and non-finite errors no error bar. The same inputs
/// give the same bytes.
pub fn bar_chart_svg(
    title: &str,
    labels: &[String],
    series: &[BarSeries],
    y_label: &str,
) -> Result<String, ReportError> {
    let groups = series.iter().map(|s| s.values.len()).max().unwrap_or(0).max(labels.len()).max(1);
    let (y_lo, y_hi) = y_range(series, groups);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SVG_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-0.5f64..(groups as f64 - 0.5), y_lo..y_hi)
            .map_err(chart_error)?;
        let label_of = |x: &f64| {
            let k = x.round();
            match labels.get(k as usize) {
                Some(l) if (x - k).abs() < 1e-6 && k >= 0.0 => l.clone(),
                _ => String::new(),
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(groups)
            .x_label_formatter(&label_of)
            .y_desc(y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(chart_error)?;

        // Bars share 80% of a group's width.
        let width = 0.8 / series.len().max(1) as f64;
        for (j, s) in series.iter().enumerate() {
            let color = RGBColor(s.color[0], s.color[1], s.color[2]);
            let left = |g: usize| g as f64 - 0.4 + j as f64 * width;
            let bars = (0..groups).filter_map(|g| {
                let v = s.values.get(g).copied().filter(|v| v.is_finite())?;
                Some(Rectangle::new([(left(g), 0.0), (left(g) + width, v)], color.filled()))
            });
            chart
                .draw_series(bars)
                .map_err(chart_error)?
                .label(s.name.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
            let whiskers = (0..groups).filter_map(|g| {
                let v = s.values.get(g).copied().filter(|v| v.is_finite())?;
                let e = s.errors.as_ref()?.get(g).copied().filter(|e| e.is_finite())?.abs();
                let centre = left(g) + width / 2.0;
                Some(ErrorBar::new_vertical(centre, v - e, v, v + e, WHISKER.stroke_width(1), 8))
            });
            chart.draw_series(whiskers).map_err(chart_error)?;
        }
        // The zero line.
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(-0.5, 0.0), (groups as f64 - 0.5, 0.0)], BLACK)))
            .map_err(chart_error)?;
        if !series.is_empty() {
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .label_font(("sans-serif", 14))
                .draw()
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::test_series::{TEXT, VISION, series};
    use image::Rgb;

    /// The value of attribute `name` in an SVG element's text.
    fn attr(element: &str, name: &str) -> Option<f64> {
        let start = element.find(&format!(" {name}=\""))? + name.len() + 3;
        element[start..].split('"').next()?.parse().ok()
    }

    /// `(x, y, width, height)` of every `<rect>` filled with `color` (the legend swatch included).
    fn rects(svg: &str, color: Rgb<u8>) -> Vec<(f64, f64, f64, f64)> {
        let fill = format!("fill=\"#{:02X}{:02X}{:02X}\"", color[0], color[1], color[2]);
        svg.split('<')
            .filter(|e| e.starts_with("rect") && e.contains(&fill))
            .map(|e| {
                let a = |n| attr(e, n).unwrap_or_else(|| panic!("{n} in {e}"));
                (a("x"), a("y"), a("width"), a("height"))
            })
            .collect()
    }

    #[test]
    fn bars_are_proportional_to_their_values_and_signed_about_zero() {
        let labels: Vec<String> = ["V1", "V2", "V3", "V4"].map(String::from).to_vec();
        let svg = bar_chart_svg(
            "Figure 7",
            &labels,
            &[
                series("CLIP-Vision", &[0.2, 0.4, -0.2, f64::NAN], None, VISION),
                series("CLIP-Text", &[0.1; 4], None, TEXT),
            ],
            "percentile difference",
        )
        .unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "an SVG document");
        // Three finite values: three bars and one legend swatch (12 x 12, the smallest).
        let mut bars = rects(&svg, VISION);
        assert_eq!(bars.len(), 4, "{bars:?}");
        bars.sort_by(|a, b| (a.2 * a.3).total_cmp(&(b.2 * b.3)));
        let bars = &bars[1..];
        let by_x = |k: usize| {
            let mut b = bars.to_vec();
            b.sort_by(|p, q| p.0.total_cmp(&q.0));
            b[k]
        };
        let (b0, b1, b2) = (by_x(0), by_x(1), by_x(2));
        assert!((b1.3 - 2.0 * b0.3).abs() <= 1.5, "0.4 is twice 0.2: {b0:?} {b1:?}");
        assert!((b2.3 - b0.3).abs() <= 1.5, "|-0.2| = |0.2|: {b0:?} {b2:?}");
        // Positive bars end at the zero line from above, the negative one starts there.
        assert!((b0.1 + b0.3 - (b1.1 + b1.3)).abs() <= 1.0 && (b2.1 - (b0.1 + b0.3)).abs() <= 1.0);
        // The labels and the title are text in the SVG.
        for text in ["Figure 7", "V1", "V4", "CLIP-Vision", "CLIP-Text", "percentile difference"] {
            assert!(svg.contains(&format!(">{text}<")) || svg.contains(&format!(">\n{text}\n<")), "{text}");
        }
    }

    #[test]
    fn error_bars_are_drawn_only_for_finite_errors_and_the_chart_is_deterministic() {
        let labels: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let with = |errors: Option<&[f64]>| {
            bar_chart_svg("", &labels, &[series("s", &[0.3, -0.1], errors, VISION)], "").unwrap()
        };
        let none = with(None);
        let one = with(Some(&[0.05, f64::NAN]));
        let two = with(Some(&[0.05, -0.02]));
        let whiskers = |svg: &str| svg.matches("stroke=\"#3C3C3C\"").count();
        assert_eq!(whiskers(&none), 0);
        assert!(whiskers(&one) > 0, "{one}");
        assert_eq!(whiskers(&two), 2 * whiskers(&one), "one error bar per finite error");
        assert_eq!(two, with(Some(&[0.05, -0.02])));
        // Degenerate inputs draw a chart.
        for svg in [
            bar_chart_svg("", &[], &[], "").unwrap(),
            bar_chart_svg("nan", &labels, &[series("s", &[f64::NAN; 2], Some(&[f64::NAN; 2]), VISION)], "y").unwrap(),
        ] {
            assert!(svg.starts_with("<svg"));
        }
    }
}
