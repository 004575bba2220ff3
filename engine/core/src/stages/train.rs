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
    /// Weights to start from: a safetensors file (relative to the manifest's directory) with
    /// torchvision's key names for ResNet and EfficientNet, timm's for ConvNeXt, or a
    /// `model.safetensors` this stage wrote. A classification head of another size is left
    /// freshly initialised; three-channel weights are summed for grey images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub pretrained: Option<String>,
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
    /// How training images are drawn each epoch.
    #[serde(default)]
    pub sampler: Sampler,
    /// Mixup: each batch is blended with a shuffled copy of itself, labels included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixup: Option<Mixup>,
    /// Debiasing against an attribute the model must not rely on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debias: Option<Debias>,
    /// An auxiliary segmentation head on the backbone's feature map, trained on the
    /// dataset's masks (SIIM-ACR); it is training machinery, not part of the saved model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segmentation: Option<Segmentation>,
    /// An exponential moving average of the weights, validated and saved instead of the raw
    /// weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ema: Option<Ema>,
    /// Stages whose output holds `attributes.csv` (such as `model.predict` stages); their
    /// columns become attributes of the dataset's images for the sampler and debiasing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub from: Vec<String>,
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
    /// CPU threads libtorch uses; defaults to the stage's `resources.cpus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1024))]
    pub threads: Option<u32>,
}

impl TrainParams {
    /// The attributes the sampler and debiasing read, with the field naming each.
    pub fn attribute_uses(&self) -> Vec<(&str, &'static str)> {
        let mut out = Vec::new();
        if let Some(a) = &self.sampler.attribute {
            out.push((a.as_str(), "sampler/attribute"));
        }
        if let Some(d) = &self.debias {
            out.push((d.attribute.as_str(), "debias/attribute"));
        }
        out
    }
}

/// How training images are drawn: each epoch draws as many images as the training split
/// holds, without replacement for `uniform`, with replacement and per-image weights
/// otherwise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sampler {
    /// `uniform` (every image once per epoch), `class_balanced` (each class equally often),
    /// `group_balanced` (each label x attribute group equally often), or `ratio` (negatives
    /// drawn `negatives_per_positive` times as often as positives; binary tasks).
    #[serde(default)]
    pub kind: SamplerKind,
    /// The attribute `group_balanced` crosses with the label (values at or above 0.5 count
    /// as present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub attribute: Option<String>,
    /// For `ratio`: negatives drawn per positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.05, max = 100.0))]
    pub negatives_per_positive: Option<f64>,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler {
            kind: SamplerKind::Uniform,
            attribute: None,
            negatives_per_positive: None,
        }
    }
}

/// Kinds of sampler.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SamplerKind {
    // Every image once per epoch, in a seeded order.
    #[default]
    #[serde(rename = "uniform")]
    Uniform,
    // Each class drawn equally often.
    #[serde(rename = "class_balanced")]
    ClassBalanced,
    // Each label x attribute group drawn equally often.
    #[serde(rename = "group_balanced")]
    GroupBalanced,
    // A fixed negative:positive ratio (binary tasks).
    #[serde(rename = "ratio")]
    Ratio,
}

impl SamplerKind {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerKind::Uniform => "uniform",
            SamplerKind::ClassBalanced => "class_balanced",
            SamplerKind::GroupBalanced => "group_balanced",
            SamplerKind::Ratio => "ratio",
        }
    }
}

/// Mixup's strength.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mixup {
    /// The Beta(alpha, alpha) distribution the blending weight is drawn from, once per batch.
    #[schemars(range(min = 0.01, max = 10.0))]
    pub alpha: f64,
}

/// Debiasing against an attribute.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Debias {
    /// `gradient_reversal`: an adversarial head learns to predict the attribute from the
    /// pooled features, and the reversed gradient trains the network to hide it.
    pub kind: DebiasKind,
    /// The attribute to hide (0/1 or a probability per image).
    #[schemars(length(min = 1))]
    pub attribute: String,
    /// Weight of the reversed gradient.
    #[serde(default = "default_lambda")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub lambda: f64,
    /// Hidden units of the adversarial head (0: a single linear layer).
    #[serde(default = "default_adversary_hidden")]
    #[schemars(range(max = 4096))]
    pub hidden: u32,
}

/// Kinds of debiasing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum DebiasKind {
    // A gradient-reversal layer in front of an adversarial attribute head.
    #[serde(rename = "gradient_reversal")]
    GradientReversal,
}

/// The auxiliary segmentation head's share of the loss.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Segmentation {
    /// Weight of the per-pixel binary cross-entropy against the mask.
    #[serde(default = "default_segmentation_weight")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub weight: f64,
}

fn default_segmentation_weight() -> f64 {
    0.5
}

/// An exponential moving average of the weights.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ema {
    /// Share of the average kept at each step.
    #[serde(default = "default_ema_decay")]
    #[schemars(range(min = 0.5, max = 0.99999))]
    pub decay: f64,
}

fn default_lambda() -> f64 {
    0.3
}
fn default_adversary_hidden() -> u32 {
    128
}
fn default_ema_decay() -> f64 {
    0.999
}

/// Networks `classifier.train` can build.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Backbone {
    // Four convolution blocks and a linear head: fast on a CPU, for tests and small images.
    #[default]
    #[serde(rename = "small_cnn")]
    SmallCnn,
    // ResNet-18 (torchvision's layout and key names).
    #[serde(rename = "resnet18")]
    Resnet18,
    // ResNet-50 (torchvision's layout and key names).
    #[serde(rename = "resnet50")]
    Resnet50,
    // EfficientNet-B0 (torchvision's layout and key names).
    #[serde(rename = "efficientnet_b0")]
    EfficientnetB0,
    // ConvNeXt-Tiny (timm's layout and key names).
    #[serde(rename = "convnext_tiny")]
    ConvnextTiny,
}

impl Backbone {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Backbone::SmallCnn => "small_cnn",
            Backbone::Resnet18 => "resnet18",
            Backbone::Resnet50 => "resnet50",
            Backbone::EfficientnetB0 => "efficientnet_b0",
            Backbone::ConvnextTiny => "convnext_tiny",
        }
    }
}

/// The training loss.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Loss {
    /// `cross_entropy` (softmax over the classes), `bce` (binary tasks: one logit and a
    /// sigmoid), or `focal` (cross-entropy, or a sigmoid for binary tasks, with each image
    /// down-weighted by `(1 - p)^gamma` where `p` is its probability of the true class).
    #[serde(default)]
    pub kind: LossKind,
    /// The focal loss's focusing parameter.
    #[serde(default = "default_gamma")]
    #[schemars(range(min = 0.0, max = 10.0))]
    pub gamma: f64,
    /// The focal loss's weight of positives in binary tasks (negatives get `1 - alpha`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub alpha: Option<f64>,
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
            gamma: default_gamma(),
            alpha: None,
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
    // Binary cross-entropy on one logit (binary tasks).
    #[serde(rename = "bce")]
    Bce,
    // Focal loss (Lin et al. 2017).
    #[serde(rename = "focal")]
    Focal,
}

fn default_gamma() -> f64 {
    2.0
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
