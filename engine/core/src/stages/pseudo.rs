//! The `pseudo_label` stage kind's parameters. It is run by the libtorch worker
//! (`engine-worker`, crate `engine-torch`); the core declares and plans it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `pseudo_label` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &["pseudo_labels.json", "metrics.json"];

/// Parameters of a `pseudo_label` stage.
///
/// A teacher (a `detector.train` stage) predicts boxes on the training images of its
/// dataset that are positive at image level but have no boxes. Boxes scoring at least
/// `confidence` are kept, at most `max_boxes` per image; an image without a confident box
/// is left out (`unconfident: drop`) or keeps its best box at a lower loss weight
/// (`unconfident: down_weight`). A `detector.train` stage that names this one in `from`
/// trains on the boxed images, the pseudo-labelled ones and the image-level negatives
/// together (its `neg_pos_ratio` sets the mix). Another `pseudo_label` stage whose teacher is
/// that student makes a further round. Validation and test images are never labelled.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PseudoLabelParams {
    /// The `detector.train` stage whose model labels the images.
    #[schemars(length(min = 1))]
    pub teacher: String,
    /// The teacher's dataset, whose unboxed positive training images are labelled.
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// The lowest score a kept box may have.
    #[serde(default = "default_confidence")]
    #[schemars(range(min = 0.01, max = 0.99))]
    pub confidence: f64,
    /// Boxes kept per image, the best first.
    #[serde(default = "default_max_boxes")]
    #[schemars(range(min = 1, max = 100))]
    pub max_boxes: u32,
    /// What happens to a positive image without a confident box.
    #[serde(default)]
    pub unconfident: Unconfident,
    /// The loss weight of such an image's best box, with `unconfident: down_weight`.
    #[serde(default = "default_unconfident_weight")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub unconfident_weight: f64,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: u32,
    /// Where to run: `auto` (the first GPU, else the CPU), `cpu`, or `cuda:N`.
    #[serde(default = "default_device")]
    #[schemars(regex(pattern = r"^(auto|cpu|cuda|cuda:[0-9]+)$"))]
    pub device: String,
}

/// What happens to a positive image without a confident box.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Unconfident {
    /// Left out of the student's training.
    #[default]
    Drop,
    /// Kept with its best box, at `unconfident_weight`.
    DownWeight,
}

fn default_confidence() -> f64 {
    0.5
}

fn default_max_boxes() -> u32 {
    3
}

fn default_unconfident_weight() -> f64 {
    0.3
}

fn default_batch() -> u32 {
    64
}

fn default_device() -> String {
    "auto".to_owned()
}
