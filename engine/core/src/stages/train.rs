//! The `classifier.train` stage kind's parameters. It is run by the libtorch worker
//! (`engine-worker`, crate `engine-torch`); the core declares and plans it.
//!
//! Every parameter is declared with its allowed values and range: that declaration is also
//! the action space of the developer loop. Only what the worker implements is declared.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `classifier.train` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &[
    "model.safetensors",
    "config.json",
    "predictions.csv",
    "curve.jsonl",
    "metrics.json",
];

/// Parameters of a `classifier.train` stage.
///
/// Trains on the dataset's training split, selects the epoch with the best validation
/// metric (AUC; macro AUC with more than two classes), and writes that checkpoint
/// (`model.safetensors`, `config.json`), the validation predictions (`predictions.csv`), the
/// training curve (`curve.jsonl`) and the validation metrics (`metrics.json`). The test split
/// is never read.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainParams {
    /// The dataset to train on (its training split; model selection on its validation split).
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// The network.
    #[serde(default)]
    pub backbone: Backbone,
    /// Width and height the images are resized to, in pixels.
    #[serde(default = "default_image_size")]
    #[schemars(range(min = 16, max = 1024))]
    pub image_size: u32,
    /// Colour channels the network sees (1 grey, 3 colour); defaults to the dataset's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3))]
    pub channels: Option<u8>,
    /// Passes over the training split (the time budget may end training sooner).
    #[serde(default = "default_epochs")]
    #[schemars(range(min = 1, max = 1000))]
    pub epochs: u32,
    /// Wall-clock budget for training in minutes; training stops after the epoch that
    /// crosses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.01, max = 10080))]
    pub budget_minutes: Option<f64>,
    /// Images per optimiser step.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 4096))]
    pub batch_size: u32,
    /// AdamW's peak learning rate.
    #[serde(default = "default_lr")]
    #[schemars(range(min = 1e-7, max = 1.0))]
    pub lr: f64,
    /// AdamW's decoupled weight decay.
    #[serde(default = "default_weight_decay")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub weight_decay: f64,
    /// Epochs of linear warm-up before the cosine decay.
    #[serde(default = "default_warmup")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub warmup_epochs: f64,
    /// The loss.
    #[serde(default)]
    pub loss: Loss,
    /// Strength of the augmentation (flips, rotation, shift, zoom, brightness, contrast),
    /// from 0 (none) to 1 (the strongest).
    #[serde(default = "default_augment")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub augment: f64,
    /// Stop when the validation metric has not improved for this many epochs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub early_stopping: Option<u32>,
    /// Where to train: `auto` (the first GPU, else the CPU), `cpu`, or `cuda:N`.
    #[serde(default = "default_device")]
    #[schemars(regex(pattern = r"^(auto|cpu|cuda|cuda:[0-9]+)$"))]
    pub device: String,
}

/// Networks `classifier.train` can build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Backbone {
    // Four convolution blocks and a linear head: fast on a CPU, for tests and small images.
    #[default]
    #[serde(rename = "small_cnn")]
    SmallCnn,
}

/// The training loss.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// `cross_entropy` (softmax over the classes; with two classes the same as a logistic loss).
    #[serde(default)]
    pub kind: LossKind,
    /// Share of each target spread evenly over the classes.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub label_smoothing: f64,
    /// Weight each class by the inverse of its training frequency.
    #[serde(default)]
    pub class_weighted: bool,
}

impl Default for Loss {
    fn default() -> Self {
        Loss {
            kind: LossKind::CrossEntropy,
            label_smoothing: 0.0,
            class_weighted: false,
        }
    }
}

/// Kinds of loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum LossKind {
    // Softmax cross-entropy.
    #[default]
    #[serde(rename = "cross_entropy")]
    CrossEntropy,
}

fn default_image_size() -> u32 {
    64
}
fn default_epochs() -> u32 {
    10
}
fn default_batch() -> u32 {
    32
}
fn default_lr() -> f64 {
    1e-3
}
fn default_weight_decay() -> f64 {
    0.05
}
fn default_warmup() -> f64 {
    1.0
}
fn default_augment() -> f64 {
    0.5
}
fn default_device() -> String {
    "auto".into()
}
