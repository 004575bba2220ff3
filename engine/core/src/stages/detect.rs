//! The `detector.train` stage kind's parameters. It is run by the libtorch worker
//! (`engine-worker`, crate `engine-torch`); the core declares and plans it.
//!
//! As for `classifier.train`, every parameter is declared with its allowed values and range,
//! which is also the developer loop's action space.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `detector.train` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &[
    "model.safetensors",
    "config.json",
    "ground_truth.json",
    "detections.json",
    "curve.jsonl",
    "metrics.json",
];

/// Parameters of a `detector.train` stage.
///
/// Trains a single-stage, anchor-free detector (a small convolutional backbone, a feature
/// pyramid over strides 8, 16 and 32, and a shared head predicting objectness, class and box
/// at every cell) on the boxed images of a YOLO dataset's training split, with image-level
/// negatives as background. Images are letterboxed to `image_size`. The epoch with the best
/// validation mAP@50 is kept: `model.safetensors` and `config.json`, the validation ground
/// truth and detections in COCO format (`ground_truth.json`, `detections.json`), the curve
/// and the metrics. The test split is never read.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DetectorParams {
    /// The dataset (format `yolo`) to train on.
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// Width and height of the letterboxed images, in pixels (a multiple of 32).
    #[serde(default = "default_image_size")]
    #[schemars(range(min = 32, max = 2048), extend("multipleOf" = 32))]
    pub image_size: u32,
    /// Channels of the backbone's first stage; later stages double it (up to 8 times).
    #[serde(default = "default_width")]
    #[schemars(range(min = 8, max = 256))]
    pub width: u32,
    /// Passes over the training images (the time budget may end training sooner).
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
    #[schemars(range(min = 1, max = 1024))]
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
    /// Strength of the box-aware augmentation (horizontal flip, zoom, shift, brightness
    /// and contrast; boxes move with the image), from 0 (none) to 1 (the strongest).
    #[serde(default = "default_augment")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub augment: f64,
    /// Background images drawn per image with boxes, each epoch (such as 2 for a 2:1
    /// negative:positive ratio); without it, every image is drawn once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub neg_pos_ratio: Option<f64>,
    /// Whether images whose image-level label is negative (and that have no box file)
    /// train as background; images that are positive without boxes are never used.
    #[serde(default = "default_true")]
    pub unboxed_negatives: bool,
    /// Label smoothing of the objectness and class targets (0 none).
    #[serde(default, skip_serializing_if = "is_zero")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub label_smoothing: f64,
    /// Weight of the box (GIoU) loss against the objectness and class losses.
    #[serde(default = "default_box_weight")]
    #[schemars(range(min = 0.0, max = 100.0))]
    pub box_weight: f64,
    /// Target assignment: a cell is responsible for a box when its centre lies inside the
    /// box and within this many strides of the box's centre.
    #[serde(default = "default_center_radius")]
    #[schemars(range(min = 0.5, max = 10.0))]
    pub center_radius: f64,
    /// Non-maximum suppression: a box overlapping a higher-scoring one of its class by more
    /// than this IoU is dropped.
    #[serde(default = "default_nms_iou")]
    #[schemars(range(min = 0.1, max = 0.95))]
    pub nms_iou: f64,
    /// Detections kept per image after suppression.
    #[serde(default = "default_max_detections")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_detections: u32,
    /// `pseudo_label` stages whose boxes are added to the dataset's unboxed positive
    /// training images (the pseudo-labelled student of a teacher-student round).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub from: Vec<String>,
    /// Stop when the validation mAP@50 has not improved for this many epochs (counted from
    /// the first epoch whose mAP@50 is above 0).
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

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn default_image_size() -> u32 {
    128
}

fn default_width() -> u32 {
    16
}

fn default_epochs() -> u32 {
    30
}

fn default_batch() -> u32 {
    16
}

fn default_lr() -> f64 {
    2e-3
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

fn default_true() -> bool {
    true
}

fn default_box_weight() -> f64 {
    2.0
}

fn default_center_radius() -> f64 {
    2.5
}

fn default_nms_iou() -> f64 {
    0.5
}

fn default_max_detections() -> u32 {
    100
}

fn default_device() -> String {
    "auto".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_unknown_fields_are_refused() {
        let p: DetectorParams =
            serde_json::from_value(serde_json::json!({"dataset": "wrist"})).unwrap();
        assert_eq!(p.image_size, 128);
        assert!(p.unboxed_negatives);
        assert_eq!(p.neg_pos_ratio, None);
        let back = serde_json::to_value(&p).unwrap();
        assert!(back.get("label_smoothing").is_none(), "{back}");
        assert!(
            serde_json::from_value::<DetectorParams>(
                serde_json::json!({"dataset": "w", "anchors": 3})
            )
            .is_err()
        );
    }
}
