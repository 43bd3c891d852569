//! Target groups: what one encoder makes, one regression predicts and a generator consumes.
//!
//! A group is data, a name and (once extracted) a feature shape: the paper's three groups are
//! constants ([`TargetGroup::PAPER`]), and a downstream encoder adds a fourth group by giving a new
//! name (`Session::with_image_encoder`). The name keys the group's folders and records in a run
//! folder; the shape is the encoder's [`crate::Encoder::feature_shape`], recorded with the
//! features by `extract`, and reaches the generators with the predicted rows
//! ([`GroupFeatures`]), so that no stage reads another stage's shapes from the configuration.

use std::fmt;

use image::RgbImage;
use ndarray::{Array3, ArrayView2};

use crate::StageError;

/// The name of a group of regression targets (`vdvae`, `clip-vision`, `clip-text`, or a
/// downstream group's): lower-case ASCII letters, digits and `-`, so that it is a safe folder
/// name and TOML key.
///
/// The paper's groups are constants that can be matched on (`match group { TargetGroup::VDVAE => ..,
/// _ => .. }`); [`TargetGroup::new`] returns them for their names, so equal names are equal groups.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetGroup(Name);

/// A paper group's name (a constant) or a downstream group's: [`TargetGroup::new`] never makes an
/// `Own` of a paper group's name, so the derived equality is equality of names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Name {
    Paper(&'static str),
    Own(String),
}

impl TargetGroup {
    /// VDVAE latents of the first decoder blocks (stage 1's condition).
    pub const VDVAE: TargetGroup = TargetGroup(Name::Paper("vdvae"));
    /// CLIP-Vision token embeddings of the stimuli (stage 2's image guidance).
    pub const CLIP_VISION: TargetGroup = TargetGroup(Name::Paper("clip-vision"));
    /// CLIP-Text token embeddings of the stimuli's captions (stage 2's text guidance).
    pub const CLIP_TEXT: TargetGroup = TargetGroup(Name::Paper("clip-text"));
    /// The paper's three groups, in the reference's order.
    pub const PAPER: [TargetGroup; 3] = [TargetGroup::VDVAE, TargetGroup::CLIP_VISION, TargetGroup::CLIP_TEXT];

    /// A group called `name`; a name that is empty, longer than 64 characters, or holds anything
    /// but lower-case ASCII letters, digits and inner `-` is refused, naming the rule.
    pub fn new(name: &str) -> Result<Self, StageError> {
        let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if name.is_empty() || name.len() > 64 || !valid_chars || name.starts_with('-') || name.ends_with('-') {
            return Err(StageError::new(
                "target groups",
                format!(
                    "group name {name:?}: expected 1 to 64 lower-case ASCII letters, digits and inner '-' (it names \
                     folders and record keys)"
                ),
            ));
        }
        Ok(match TargetGroup::PAPER.iter().find(|g| g.name() == name) {
            Some(paper) => paper.clone(),
            None => TargetGroup(Name::Own(name.to_owned())),
        })
    }

    /// The group's name, as in folder names and records.
    pub fn name(&self) -> &str {
        match &self.0 {
            Name::Paper(name) => name,
            Name::Own(name) => name,
        }
    }

    /// The name as a TOML key (`clip_vision`).
    pub fn key(&self) -> String {
        self.name().replace('-', "_")
    }
}

impl fmt::Display for TargetGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The predicted features of one group for a batch of items: one row per item, each the
/// group's `shape` flattened in row-major order.
#[derive(Debug, Clone)]
pub struct GroupFeatures<'a> {
    pub group: TargetGroup,
    /// The shape of one item's features, as the group's encoder declared it.
    pub shape: Vec<usize>,
    pub rows: ArrayView2<'a, f32>,
}

impl GroupFeatures<'_> {
    /// The rows as `[items, tokens, width]` token embeddings, for a group whose shape is 2-D;
    /// another shape is an error of `generator` naming the group and both shapes.
    pub fn tokens(&self, generator: &str) -> Result<Array3<f32>, StageError> {
        let &[tokens, width] = self.shape.as_slice() else {
            return Err(StageError::new(
                generator,
                format!(
                    "group '{}' has feature shape {:?}; token embeddings [tokens, width] expected",
                    self.group, self.shape
                ),
            ));
        };
        let rows = self.rows.as_standard_layout();
        rows.to_shape((rows.nrows(), tokens, width)).map(|v| v.to_owned()).map_err(|e| {
            StageError::new(
                generator,
                format!(
                    "group '{}': {} rows of {} values cannot be read as [{tokens}, {width}] tokens ({e})",
                    self.group,
                    rows.nrows(),
                    rows.ncols()
                ),
            )
        })
    }
}

/// What a generator builds its condition from, for a batch of items: the predicted features of
/// the groups it consumes ([`crate::Generator::consumes`]) and, for a generator that refines, the
/// start images (stage 1's output, or grey images for the ablation without VDVAE).
#[derive(Debug, Clone, Default)]
pub struct ConditionInputs<'a> {
    /// One entry per consumed group, in the order the generator declared them.
    pub features: Vec<GroupFeatures<'a>>,
    /// One start image per item; empty for a generator that starts from features alone.
    pub init_images: Vec<RgbImage>,
}

impl<'a> ConditionInputs<'a> {
    /// The features of `group`; a group the caller did not supply is an error of `generator`
    /// naming the groups that were supplied.
    pub fn group(&self, generator: &str, group: &TargetGroup) -> Result<&GroupFeatures<'a>, StageError> {
        self.features.iter().find(|f| f.group == *group).ok_or_else(|| {
            let supplied: Vec<&str> = self.features.iter().map(|f| f.group.name()).collect();
            StageError::new(generator, format!("no predicted features of group '{group}' (supplied: {supplied:?})"))
        })
    }

    /// The number of items: the row count shared by every group (and the start images, if any).
    pub fn items(&self) -> usize {
        self.features.first().map_or(self.init_images.len(), |f| f.rows.nrows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_paper_names_give_the_constants() {
        assert_eq!(TargetGroup::new("clip-vision").unwrap(), TargetGroup::CLIP_VISION);
        assert_eq!(TargetGroup::new("colour-histogram").unwrap().key(), "colour_histogram");
        for bad in ["", "Clip", "a b", "-x", "x-", "a/b", &"x".repeat(65)] {
            let err = TargetGroup::new(bad).unwrap_err().to_string();
            assert!(err.contains("lower-case ASCII"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn token_rows_follow_the_recorded_shape_and_other_shapes_are_named() {
        let rows = ndarray::Array2::from_shape_fn((2, 6), |(i, j)| (10 * i + j) as f32);
        let f = GroupFeatures { group: TargetGroup::CLIP_TEXT, shape: vec![3, 2], rows: rows.view() };
        let t = f.tokens("g").unwrap();
        assert_eq!((t.dim(), t[[1, 2, 1]]), ((2, 3, 2), 15.0));
        let flat = GroupFeatures { shape: vec![6], ..f.clone() };
        assert!(flat.tokens("g").unwrap_err().to_string().contains("feature shape [6]"));
        let wrong = GroupFeatures { shape: vec![4, 2], ..f };
        let err = wrong.tokens("g").unwrap_err().to_string();
        assert!(err.contains("2 rows of 6 values cannot be read as [4, 2]"), "{err}");
        let inputs = ConditionInputs { features: vec![], init_images: vec![] };
        let err = inputs.group("g", &TargetGroup::VDVAE).unwrap_err().to_string();
        assert!(err.contains("no predicted features of group 'vdvae'"), "{err}");
    }
}
