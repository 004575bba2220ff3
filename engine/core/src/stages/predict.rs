//! The `model.predict` stage kind's parameters. It is run by the libtorch worker
//! (`engine-worker`, crate `engine-torch`); the core declares and plans it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `model.predict` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &["attributes.csv", "threshold.json"];

/// Parameters of a `model.predict` stage.
///
/// Applies a binary model trained by a `classifier.train` stage to every image of a dataset
/// and writes `attributes.csv`: `image_id`, the thresholded label in a column named
/// `as_attribute` (0 or 1) and the probability in `<as_attribute>_prob`. The threshold is
/// chosen on the model's own validation predictions. Other stages read these columns as
/// attributes (`from:`). No label of the dataset is read.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PredictParams {
    /// The `classifier.train` stage whose model is applied (a binary classifier).
    #[schemars(length(min = 1))]
    pub model: String,
    /// The dataset whose images are labelled (all of them, every split).
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// The attribute's name, such as `chest_drain` (snake_case).
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub as_attribute: String,
    /// How the threshold is chosen on the model's validation predictions: `youden` (the
    /// point maximising sensitivity + specificity - 1), or a fixed probability.
    #[serde(default)]
    pub threshold: Threshold,
    /// Images per forward pass.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: u32,
    /// Where to run: `auto` (the first GPU, else the CPU), `cpu`, or `cuda:N`.
    #[serde(default = "default_device")]
    #[schemars(regex(pattern = r"^(auto|cpu|cuda|cuda:[0-9]+)$"))]
    pub device: String,
}

/// A decision threshold.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum Threshold {
    /// `youden`.
    Rule(ThresholdRule),
    /// A probability.
    Fixed(#[schemars(range(min = 0.0, max = 1.0))] f64),
}

impl Default for Threshold {
    fn default() -> Self {
        Threshold::Rule(ThresholdRule::Youden)
    }
}

/// Rules for choosing a threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum ThresholdRule {
    // Maximises sensitivity + specificity - 1 on the model's validation predictions.
    #[serde(rename = "youden")]
    Youden,
}

fn default_batch() -> u32 {
    64
}

fn default_device() -> String {
    "auto".to_owned()
}
