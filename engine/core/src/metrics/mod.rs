//! Evaluation metrics with bootstrap confidence intervals: binary, multiclass and
//! detection (COCO), exact intervals for proportions, probability calibration, DeLong's test, the confound analysis for an attribute, and the
//! readers of prediction files.

pub mod binary;
pub mod bootstrap;
pub mod calibration;
pub mod coco;
pub mod confound;
pub mod csv;
pub mod delong;
pub mod detection;
pub mod error;
pub mod exact;
pub mod multiclass;
pub mod predictions;
pub mod rng;

pub use binary::{
    BinaryData, BinaryMetrics, BinaryOptions, Confusion, OperatingPoint, OperatingRule, roc_auc,
};
pub use bootstrap::{Bootstrap, DEFAULT_RESAMPLES, Estimate, PairedTest, Units};
pub use calibration::Calibration;
pub use confound::{CONFOUND_NAMES, ConfoundData, Subgroup};
pub use delong::{DeLong, delong_test};
pub use detection::{DetectionData, DetectionMetrics, DetectionOptions, GroundTruth};
pub use error::{InputError, MetricsError};
pub use exact::{Proportion, clopper_pearson};
pub use multiclass::{MulticlassData, MulticlassMetrics};
