//! The `evaluate` stage kind's parameters. It is run by the `engine` binary (the metrics
//! and their bootstrap live in the core; the report assembly in the CLI).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What an `evaluate` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &["metrics.json", "summary.md"];

/// Parameters of an `evaluate` stage.
///
/// Evaluates a `classifier.train` stage's validation predictions: every metric of
/// `engine metrics` with its 95% interval (exact for proportions, bootstrap resampled by
/// patient otherwise) at the decision threshold the manifest's `task` implies, chosen here
/// on validation (a sensitivity or specificity floor, an operating point, else Youden's);
/// the calibration; the confound analysis for an attribute; against a baseline stage,
/// paired bootstrap tests (and DeLong's test for the AUC) on the same validation images;
/// and each requirement of the `task` with its verdict (met, not met, undetermined). It
/// writes `metrics.json` (the JSON of `engine metrics` with `requirements`, and
/// `comparison` when a baseline is named) and `summary.md`. The sealed test split is never
/// read here: only `engine test` opens it.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateParams {
    /// The `classifier.train` stage whose validation predictions are evaluated.
    #[schemars(length(min = 1))]
    pub model: String,
    /// The split evaluated: `val` (the test split is only for `engine test`).
    #[serde(default)]
    pub split: EvalSplit,
    /// Another `classifier.train` stage, trained on the same dataset and split, to compare
    /// against with paired tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub baseline: Option<String>,
    /// An attribute column of the predictions (a declared attribute or one from `from:`) to
    /// analyse as a confounder (binary tasks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub confound: Option<String>,
    /// Bootstrap resamples (0: no intervals).
    #[serde(default = "default_bootstrap")]
    #[schemars(range(max = 100000))]
    pub bootstrap: u32,
    /// The specificity at which the sensitivity is reported (binary tasks).
    #[serde(default = "default_at_specificity")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_specificity: f64,
    /// The sensitivity at which the specificity is reported (binary tasks).
    #[serde(default = "default_at_sensitivity")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_sensitivity: f64,
}

/// Splits an `evaluate` stage may read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum EvalSplit {
    // The validation split.
    #[default]
    #[serde(rename = "val")]
    Val,
}

fn default_bootstrap() -> u32 {
    2000
}
fn default_at_specificity() -> f64 {
    0.8
}
fn default_at_sensitivity() -> f64 {
    0.9
}
