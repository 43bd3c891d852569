//! Published results to show next to a run's metrics: the Brain-Diffuser paper's Table 1 (mean of
//! subjects 1, 2, 5, 7, and subject 1) and Table 2 (subject 1 ablations), under the paper's own
//! protocol, and MindEye2's Table 1 row for Brain-Diffuser, under MindEye's protocol. The numbers are
//! those of the README's Results table and of MindEye2 (Scotti et al. 2024, Table 1), typed in once.
//!
//! Values are fractions, as `metrics.json` stores them (identification and retrieval too: 94.2% is
//! `0.942`), so that one formatter shows ours and theirs alike.

/// One published row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishedRow {
    /// Where the numbers come from, e.g. `"Brain-Diffuser paper, Table 1"`.
    pub source: &'static str,
    /// The evaluation protocol they were measured under (`metrics::Protocol` names).
    pub protocol: &'static str,
    /// What was measured, e.g. `"mean of subjects 1, 2, 5, 7"`.
    pub what: &'static str,
    /// The variant (folder name, e.g. `"brain-diffuser"`, `"only-vdvae"`).
    pub variant: &'static str,
    /// `(metric column, value)`, values as fractions.
    pub values: &'static [(&'static str, f64)],
}

const BD_TABLE1: &str = "Brain-Diffuser paper, Table 1";
const BD_TABLE2: &str = "Brain-Diffuser paper, Table 2";
const BD_COLUMNS: [&str; 8] = ["PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "Inception", "CLIP", "EffNet-B", "SwAV"];

macro_rules! bd_row {
    ($source:expr, $what:expr, $variant:expr, [$($v:expr),* $(,)?]) => {{
        const V: [f64; 8] = [$($v),*];
        PublishedRow {
            source: $source,
            protocol: "brain-diffuser",
            what: $what,
            variant: $variant,
            values: &[
                (BD_COLUMNS[0], V[0]), (BD_COLUMNS[1], V[1]), (BD_COLUMNS[2], V[2]), (BD_COLUMNS[3], V[3]),
                (BD_COLUMNS[4], V[4]), (BD_COLUMNS[5], V[5]), (BD_COLUMNS[6], V[6]), (BD_COLUMNS[7], V[7]),
            ],
        }
    }};
}

/// The Brain-Diffuser paper's full-model rows (Table 1): mean of subjects 1, 2, 5, 7, and subject 1.
pub const BRAIN_DIFFUSER_TABLE1: [PublishedRow; 2] = [
    bd_row!(
        BD_TABLE1,
        "mean of subjects 1, 2, 5, 7",
        "brain-diffuser",
        [0.254, 0.356, 0.942, 0.962, 0.872, 0.915, 0.775, 0.423]
    ),
    bd_row!(BD_TABLE1, "subject 1", "brain-diffuser", [0.305, 0.367, 0.967, 0.974, 0.878, 0.925, 0.768, 0.415]),
];

/// The Brain-Diffuser paper's ablations of subject 1 (Table 2).
pub const BRAIN_DIFFUSER_TABLE2: [PublishedRow; 4] = [
    bd_row!(BD_TABLE2, "subject 1", "only-vdvae", [0.358, 0.437, 0.977, 0.976, 0.770, 0.711, 0.906, 0.581]),
    bd_row!(BD_TABLE2, "subject 1", "no-vdvae", [0.143, 0.302, 0.856, 0.930, 0.873, 0.926, 0.775, 0.414]),
    bd_row!(BD_TABLE2, "subject 1", "no-clip-text", [0.279, 0.333, 0.956, 0.970, 0.879, 0.912, 0.796, 0.436]),
    bd_row!(BD_TABLE2, "subject 1", "no-clip-vision", [0.327, 0.433, 0.939, 0.941, 0.847, 0.845, 0.821, 0.509]),
];

/// MindEye2's Table 1 row for Brain-Diffuser (mean of subjects 1, 2, 5, 7, under MindEye's protocol),
/// with its image and brain retrieval columns.
pub const MINDEYE2_BRAIN_DIFFUSER: PublishedRow = PublishedRow {
    source: "MindEye2 paper, Table 1",
    protocol: "mindeye",
    what: "Brain-Diffuser, mean of subjects 1, 2, 5, 7",
    variant: "brain-diffuser",
    values: &[
        ("PixCorr", 0.273),
        ("SSIM", 0.365),
        ("AlexNet(2)", 0.944),
        ("AlexNet(5)", 0.966),
        ("Inception", 0.913),
        ("CLIP", 0.909),
        ("EffNet-B", 0.728),
        ("SwAV", 0.421),
        ("Image retrieval", 0.188),
        ("Brain retrieval", 0.263),
    ],
};

/// Every published row, in the order a report shows them.
pub fn published_rows() -> Vec<PublishedRow> {
    let mut rows = BRAIN_DIFFUSER_TABLE1.to_vec();
    rows.extend(BRAIN_DIFFUSER_TABLE2);
    rows.push(MINDEYE2_BRAIN_DIFFUSER);
    rows
}

/// A metric name reduced to its lower-case letters and digits, so that columns named slightly
/// differently (`"Image retrieval"`, `"image_retrieval"`, `"ImageRetrieval"`) share one column.
pub fn metric_key(name: &str) -> String {
    name.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect()
}

/// Whether a metric is a fraction shown as a percentage: two-way identification (AlexNet, Inception,
/// CLIP) and retrieval, as in the papers' tables.
pub fn shown_as_percent(metric: &str) -> bool {
    let key = metric_key(metric);
    key.starts_with("alexnet") || key == "inception" || key == "clip" || key.contains("retrieval")
}

/// A value as the papers print it: a percentage with one decimal for [`shown_as_percent`] metrics,
/// else three decimals.
pub fn format_value(metric: &str, value: f64) -> String {
    if !value.is_finite() {
        return "-".into();
    }
    if shown_as_percent(metric) { format!("{:.1}%", 100.0 * value) } else { format!("{value:.3}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_rows_print_as_the_papers_print_them() {
        // The README's Results table, first row, and MindEye2's row, cell by cell.
        let mean = &BRAIN_DIFFUSER_TABLE1[0];
        let shown: Vec<String> = mean.values.iter().map(|&(m, v)| format_value(m, v)).collect();
        assert_eq!(shown, ["0.254", "0.356", "94.2%", "96.2%", "87.2%", "91.5%", "0.775", "0.423"]);
        let me: Vec<String> = MINDEYE2_BRAIN_DIFFUSER.values.iter().map(|&(m, v)| format_value(m, v)).collect();
        assert_eq!(me, ["0.273", "0.365", "94.4%", "96.6%", "91.3%", "90.9%", "0.728", "0.421", "18.8%", "26.3%"]);
        assert_eq!(published_rows().len(), 7);
        assert!(published_rows().iter().all(|r| r.protocol == "brain-diffuser" || r.protocol == "mindeye"));
    }

    #[test]
    fn metric_keys_ignore_case_and_punctuation() {
        assert_eq!(metric_key("Image retrieval"), metric_key("image_retrieval"));
        assert_eq!(metric_key("ImageRetrieval"), "imageretrieval");
        assert_ne!(metric_key("AlexNet(2)"), metric_key("AlexNet(5)"));
        assert!(shown_as_percent("AlexNet(5)") && shown_as_percent("brain retrieval") && shown_as_percent("CLIP"));
        assert!(!shown_as_percent("PixCorr") && !shown_as_percent("EffNet-B") && !shown_as_percent("SwAV"));
        assert_eq!(format_value("SSIM", f64::NAN), "-");
    }
}
