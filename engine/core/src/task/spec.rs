//! The TaskSpec: what a clinician asked for, as typed, reviewable data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What the model must do, parsed from a clinician's request. Everything the initialiser and
/// the development loop need to know about intent; nothing about data or training.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Engine task specification")]
pub struct TaskSpec {
    /// The kind of task.
    pub task: TaskKind,
    /// The kind of images the model sees.
    pub modality: Modality,
    /// What the model predicts: a finding (binary), a group of classes (multiclass), or
    /// what is marked (detection); absent when the request does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub target: Option<String>,
    /// The classes, for multiclass classification and detection.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true), inner(regex(pattern = r"^[a-z][a-z0-9_]*$")))]
    pub classes: Vec<String>,
    /// The class a positive prediction means (binary classification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub positive_class: Option<String>,
    /// The class a negative prediction means, when the request names it (binary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub negative_class: Option<String>,
    /// The class whose errors matter most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub priority_class: Option<String>,
    /// Which error is worse.
    #[serde(default)]
    pub error_preference: ErrorPreference,
    /// The figure that decides which model is better, on validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// Hard limits a model must meet to be acceptable at all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Things in the images the model must not rely on (e.g. `chest_drain`, `ruler`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true), inner(regex(pattern = r"^[a-z][a-z0-9_]*$")))]
    pub confounders: Vec<String>,
    /// Questions for the clinician where the request leaves something open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clarifications: Vec<String>,
}

/// The kinds of task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// One finding: present or absent.
    BinaryClassification,
    /// One of several classes per image.
    MulticlassClassification,
    /// Boxes around findings.
    Detection,
}

impl TaskKind {
    /// The name used in the TaskSpec.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::BinaryClassification => "binary_classification",
            TaskKind::MulticlassClassification => "multiclass_classification",
            TaskKind::Detection => "detection",
        }
    }
}

/// The kinds of images.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    /// Dermoscopic (or close-up) photographs of skin lesions.
    Dermoscopy,
    /// Chest radiographs.
    ChestXray,
    /// Wrist radiographs.
    WristXray,
    /// Computed tomography.
    Ct,
    /// Magnetic resonance imaging.
    Mri,
    /// Mammograms.
    Mammography,
    /// Retinal fundus photographs.
    Fundus,
    /// Histopathology slides.
    Histopathology,
    /// Ultrasound.
    Ultrasound,
    /// Anything else, or not stated.
    Other,
}

impl Modality {
    /// The name used in the TaskSpec.
    pub fn as_str(self) -> &'static str {
        match self {
            Modality::Dermoscopy => "dermoscopy",
            Modality::ChestXray => "chest_xray",
            Modality::WristXray => "wrist_xray",
            Modality::Ct => "ct",
            Modality::Mri => "mri",
            Modality::Mammography => "mammography",
            Modality::Fundus => "fundus",
            Modality::Histopathology => "histopathology",
            Modality::Ultrasound => "ultrasound",
            Modality::Other => "other",
        }
    }
}

/// Which error the clinician would rather avoid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPreference {
    /// A missed finding is worse than a false alarm.
    MinimizeFalseNegatives,
    /// A false alarm is worse than a missed finding.
    MinimizeFalsePositives,
    /// Both errors cost about the same.
    #[default]
    Balanced,
}

impl ErrorPreference {
    /// The name used in the TaskSpec.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorPreference::MinimizeFalseNegatives => "minimize_false_negatives",
            ErrorPreference::MinimizeFalsePositives => "minimize_false_positives",
            ErrorPreference::Balanced => "balanced",
        }
    }
}

/// The figures an objective or constraint can name.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Area under the ROC curve (binary).
    Auc,
    /// Mean of the per-class AUCs (multiclass).
    MacroAuc,
    /// Sensitivity at a fixed specificity (`at_specificity`).
    SensitivityAtSpecificity,
    /// Specificity at a fixed sensitivity (`at_sensitivity`).
    SpecificityAtSensitivity,
    /// Sensitivity (recall) at the chosen threshold.
    Sensitivity,
    /// Specificity at the chosen threshold.
    Specificity,
    /// Positive predictive value (precision).
    Ppv,
    /// Negative predictive value.
    Npv,
    /// F1 score.
    F1,
    /// Macro-averaged F1 (multiclass).
    MacroF1,
    /// Accuracy.
    Accuracy,
    /// Mean of the per-class sensitivities.
    BalancedAccuracy,
    /// COCO mean average precision at IoU 0.5 (detection).
    Map50,
    /// COCO mean average precision over IoU 0.5 to 0.95 (detection).
    Map50_95,
}

impl Metric {
    /// The name used in the TaskSpec.
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Auc => "auc",
            Metric::MacroAuc => "macro_auc",
            Metric::SensitivityAtSpecificity => "sensitivity_at_specificity",
            Metric::SpecificityAtSensitivity => "specificity_at_sensitivity",
            Metric::Sensitivity => "sensitivity",
            Metric::Specificity => "specificity",
            Metric::Ppv => "ppv",
            Metric::Npv => "npv",
            Metric::F1 => "f1",
            Metric::MacroF1 => "macro_f1",
            Metric::Accuracy => "accuracy",
            Metric::BalancedAccuracy => "balanced_accuracy",
            Metric::Map50 => "map50",
            Metric::Map50_95 => "map50_95",
        }
    }
}

/// The figure to maximise.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objective {
    /// The metric.
    pub metric: Metric,
    /// The class the metric is computed for, when it is one class of several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z][a-z0-9_]*$"))]
    pub class: Option<String>,
    /// The fixed specificity for `sensitivity_at_specificity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_specificity: Option<f64>,
    /// The fixed sensitivity for `specificity_at_sensitivity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub at_sensitivity: Option<f64>,
}

impl Objective {
    /// An objective on a metric alone.
    pub fn metric(metric: Metric) -> Objective {
        Objective {
            metric,
            class: None,
            at_specificity: None,
            at_sensitivity: None,
        }
    }
}

/// A hard limit: `metric op value`, e.g. sensitivity >= 0.9.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Constraint {
    /// The metric.
    pub metric: Metric,
    /// The comparison.
    pub op: Comparison,
    /// The bound, as a fraction (0.9, not 90).
    #[schemars(range(min = 0.0, max = 1.0))]
    pub value: f64,
}

/// Comparisons in constraints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Comparison {
    /// At least.
    #[serde(rename = ">=")]
    AtLeast,
    /// At most.
    #[serde(rename = "<=")]
    AtMost,
}

impl Comparison {
    /// The symbol used in the TaskSpec.
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::AtMost => "<=",
        }
    }
}
