//! The manifest's data model: the serde types that `schemas/manifest.schema.json` is generated from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stages::audit::AuditParams;
use crate::stages::command::CommandParams;
use crate::stages::evaluate::EvaluateParams;
use crate::stages::predict::PredictParams;
use crate::stages::train::TrainParams;

/// The manifest format version this engine writes and validates against.
pub const MANIFEST_VERSION: u32 = 1;

/// Pattern every stage id and dataset name must match: they become environment
/// variable suffixes and file names, so they stay plain snake_case.
pub const ID_PATTERN: &str = "^[a-z][a-z0-9_]*$";

/// A pipeline: datasets, and stages that form a directed acyclic graph.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Engine manifest")]
pub struct Manifest {
    /// Format version of this file; older versions are upgraded before validation.
    #[schemars(range(min = 1))]
    pub version: u32,
    /// Short name of the pipeline, shown in plans, runs and reports.
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// What the pipeline is for, in a sentence or two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The clinician's request, verbatim, that this manifest was made from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// The TaskSpec the request was parsed into (`engine parse`), embedded verbatim: what
    /// the model must do, which errors matter most, and what it must not rely on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::task::TaskSpec>,
    /// Default seed of every stage that does not set its own.
    #[serde(default)]
    pub seed: u64,
    /// Datasets the stages read, keyed by name.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": ID_PATTERN, "maxLength": 64}))]
    pub datasets: BTreeMap<String, Dataset>,
    /// The stages of the pipeline, keyed by id.
    #[schemars(extend("propertyNames" = {"pattern": ID_PATTERN, "maxLength": 64}, "minProperties" = 1))]
    pub stages: BTreeMap<String, Stage>,
    /// What `engine develop` may change in this file, and what counts as better. Without
    /// it, a round may change the parameters of training and pseudo-labelling stages and
    /// insert catalogue stages. Never, whatever the policy says: change the policy, the
    /// datasets, the task or the request; add, edit or remove a `command` stage; or touch
    /// what scores a round (the `evaluate` stages, the stages they name as `baseline`, the
    /// scored model's dataset, a `model.predict` on a scored dataset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Policy>,
}

/// The clinician's limits on the developer loop (`engine develop`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// JSON pointers a round may change, as patterns: `*` stands for one path segment (or
    /// part of one), `**` for any number of segments. For example
    /// `/stages/train/with/**` lets every parameter of `train` change, and
    /// `/stages/*/with/lr` only learning rates. Without it: the parameters (`with`) of
    /// `classifier.train`, `detector.train`, `pseudo_label` and `evaluate` stages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Stage kinds a round may insert as new stages (and remove again). Without it: every
    /// kind but `command`, which can never be inserted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insert: Option<Vec<StageKind>>,
    /// The `evaluate` stage whose validation metrics score each round. Without it: the
    /// manifest's only `evaluate` stage without a `baseline`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub score: Option<String>,
    /// The one-sided significance level of the acceptance rule: a round is kept only when
    /// the paired test of its validation predictions against the best round's shows its gain
    /// at this level (DeLong's test for an AUC, else the paired bootstrap).
    #[serde(default = "default_alpha")]
    #[schemars(range(min = 0.0001, max = 0.5))]
    pub alpha: f64,
    /// The smallest gain in the objective that counts as better, however significant (a
    /// gain of 0.001 AUC on a large split is real and worth nothing).
    #[serde(default = "default_min_improvement")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_improvement: f64,
    /// For tasks with confounders: how much the estimated reliance on the confounder (the
    /// absolute partial correlation of the model's output with it, label held fixed) may
    /// rise over the best round's before a round is refused, however much its objective
    /// gains. A rise that is significant at `alpha` is refused whatever its size.
    #[serde(default = "default_confound_tolerance")]
    #[schemars(range(min = 0.0, max = 2.0))]
    pub confound_tolerance: f64,
}

fn default_alpha() -> f64 {
    0.05
}

fn default_min_improvement() -> f64 {
    0.005
}

fn default_confound_tolerance() -> f64 {
    0.05
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            allow: None,
            insert: None,
            score: None,
            alpha: default_alpha(),
            min_improvement: default_min_improvement(),
            confound_tolerance: default_confound_tolerance(),
        }
    }
}

/// A dataset on disk. Its declaration and its files' content are part of the cache key of
/// every stage that reads it. Every file it names lies under `root`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// How the files under `root` are laid out.
    pub format: DatasetFormat,
    /// Directory holding the dataset, relative to the manifest's directory.
    #[schemars(length(min = 1))]
    pub root: String,
    /// What the dataset is, for readers of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The labels CSV, relative to `root` (`csv-images`: required; `isic2019`: defaults to
    /// `ISIC_2019_Training_GroundTruth.csv`; `siim-acr`: defaults to `train-rle.csv`; `yolo`:
    /// the image-level labels of unboxed images, defaults to `image_labels.csv` when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub labels: Option<String>,
    /// `isic2019`: the metadata CSV with `lesion_id`, relative to `root` (defaults to
    /// `ISIC_2019_Training_Metadata.csv` when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub metadata: Option<String>,
    /// `csv-images`: the column naming each image (a path under `root`, with or without its
    /// extension); defaults to `image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image_column: Option<String>,
    /// Keep only the images of these classes, in this order (with two, the second is the
    /// positive one); the others are left out. For layouts whose labels are classes:
    /// `folder-per-class`, `csv-images`, `isic2019`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2), extend("uniqueItems" = true))]
    pub classes: Option<Vec<String>>,
    /// `csv-images`: the label column; its distinct values are the classes. `yolo`: the box
    /// class whose boxes make an image positive (default `fracture` when the class map has
    /// it, else its first class).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub target: Option<String>,
    /// The labels CSV's column of patient ids; defaults to `patient_id` when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub patient_column: Option<String>,
    /// Attributes of the images, such as chest drains, read from CSVs under `root`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ID_PATTERN, "maxLength": 64}))]
    pub attributes: BTreeMap<String, AttributeSource>,
    /// How the images are split into training, validation and the sealed test set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<SplitSpec>,
}

impl Dataset {
    /// A dataset of this format at `root`, everything else at its defaults.
    pub fn new(format: DatasetFormat, root: impl Into<String>) -> Dataset {
        Dataset {
            format,
            root: root.into(),
            description: None,
            labels: None,
            metadata: None,
            image_column: None,
            classes: None,
            target: None,
            patient_column: None,
            attributes: BTreeMap::new(),
            split: None,
        }
    }
}

/// Layouts of datasets the engine can read: `files` (any files, handed over as a directory),
/// `folder-per-class`, `csv-images`, `isic2019`, `yolo` and `siim-acr`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum DatasetFormat {
    // Any files: the engine fingerprints them and hands the root to the stages that read it.
    // (Plain comments, not doc comments, keep the schema a plain `enum` whose errors read well.)
    #[serde(rename = "files")]
    Files,
    // One directory per class, holding that class's images.
    #[serde(rename = "folder-per-class")]
    FolderPerClass,
    // A CSV with one row per image: its path and its label.
    #[serde(rename = "csv-images")]
    CsvImages,
    // ISIC 2019: ground-truth CSV with one-hot class columns, metadata CSV with lesion ids.
    #[serde(rename = "isic2019")]
    Isic2019,
    // YOLO boxes (GRAZPEDWRI-DX): images/, labels/*.txt, a class map, image-level labels.
    #[serde(rename = "yolo")]
    Yolo,
    // SIIM-ACR: DICOM files and a run-length-encoded mask CSV.
    #[serde(rename = "siim-acr")]
    SiimAcr,
}

impl DatasetFormat {
    /// Every format, in the order they are documented.
    pub const ALL: &'static [DatasetFormat] = &[
        DatasetFormat::Files,
        DatasetFormat::FolderPerClass,
        DatasetFormat::CsvImages,
        DatasetFormat::Isic2019,
        DatasetFormat::Yolo,
        DatasetFormat::SiimAcr,
    ];

    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Files => "files",
            DatasetFormat::FolderPerClass => "folder-per-class",
            DatasetFormat::CsvImages => "csv-images",
            DatasetFormat::Isic2019 => "isic2019",
            DatasetFormat::Yolo => "yolo",
            DatasetFormat::SiimAcr => "siim-acr",
        }
    }

    /// The format called `name` in manifests.
    pub fn from_name(name: &str) -> Option<DatasetFormat> {
        Self::ALL.iter().copied().find(|f| f.as_str() == name)
    }

    /// Whether the engine reads images and labels from this layout (every format but `files`).
    pub fn has_images(self) -> bool {
        self != DatasetFormat::Files
    }
}

/// An attribute of each image (for example a chest drain), read from a CSV under the dataset's root.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttributeSource {
    /// The CSV, relative to the dataset's root.
    #[schemars(length(min = 1))]
    pub file: String,
    /// The column naming the image (its id: the file name without extension).
    #[serde(default = "default_id_column")]
    #[schemars(length(min = 1))]
    pub id_column: String,
    /// The column holding the value, a number (0/1 or a probability); defaults to the attribute's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub column: Option<String>,
}

fn default_id_column() -> String {
    "image_id".into()
}

/// How a dataset is split. Groups (patients, lesions) never straddle splits; the split is
/// stratified by label and by the attributes named in `stratify`, and is the same for a
/// given seed whatever the order of the files.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    /// What stays together: `patient`, `lesion` or `image`; defaults to the finest grouping
    /// the dataset knows (patient, else lesion, else image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<SplitBy>,
    /// Share of groups in the validation split.
    #[serde(default = "default_val")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub val: f64,
    /// Share of groups in the sealed test split.
    #[serde(default = "default_test")]
    #[schemars(range(min = 0.0, max = 0.5))]
    pub test: f64,
    /// Seed of the assignment.
    #[serde(default)]
    pub seed: u64,
    /// Attributes to stratify by, besides the label.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub stratify: Vec<String>,
    /// A CSV under the root with columns `image_id,split` (`train`, `val` or `test`) that fixes
    /// the split of the images it lists, for example an official test set; the others are
    /// assigned as above (only to `train` and `val` when it names a test set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub file: Option<String>,
}

impl Default for SplitSpec {
    fn default() -> Self {
        SplitSpec {
            by: None,
            val: default_val(),
            test: default_test(),
            seed: 0,
            stratify: Vec::new(),
            file: None,
        }
    }
}

fn default_val() -> f64 {
    0.15
}

fn default_test() -> f64 {
    0.15
}

/// What stays together in one split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum SplitBy {
    // All images of a patient go to one split.
    #[serde(rename = "patient")]
    Patient,
    // All images of a lesion go to one split (ISIC's `lesion_id`).
    #[serde(rename = "lesion")]
    Lesion,
    // Images are assigned one by one.
    #[serde(rename = "image")]
    Image,
}

impl SplitBy {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            SplitBy::Patient => "patient",
            SplitBy::Lesion => "lesion",
            SplitBy::Image => "image",
        }
    }
}

/// One node of the pipeline.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// The kind of stage; it decides which parameters `with` takes.
    pub uses: StageKind,
    /// Parameters of the stage; their shape depends on `uses`.
    #[serde(default)]
    pub with: serde_json::Map<String, serde_json::Value>,
    /// Stages that must finish first although no data flows from them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub needs: Vec<String>,
    /// What the stage needs to run; not part of its cache key.
    #[serde(default)]
    pub resources: Resources,
    /// Seed of this stage; defaults to the manifest's `seed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// What the stage does, for readers of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Kinds of stages this engine can run: `data.audit` (the data audit) and `command` (a user's
/// own command with declared inputs and outputs).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum StageKind {
    // The data audit: counts, splits, duplicates, supervision and attribute cross-tabs.
    #[serde(rename = "data.audit")]
    DataAudit,
    // Trains an image classifier (run by the libtorch worker).
    #[serde(rename = "classifier.train")]
    ClassifierTrain,
    // Labels a dataset's images with a trained binary model's predictions, as an attribute
    // (run by the libtorch worker).
    #[serde(rename = "model.predict")]
    ModelPredict,
    // Trains a single-stage object detector on a YOLO dataset (run by the libtorch worker).
    #[serde(rename = "detector.train")]
    DetectorTrain,
    // Boxes a teacher detector predicts on image-level positives, for a student to train on
    // (run by the libtorch worker).
    #[serde(rename = "pseudo_label")]
    PseudoLabel,
    // Metrics with bootstrap intervals, confound analysis and paired tests on a model's
    // validation predictions.
    #[serde(rename = "evaluate")]
    Evaluate,
    // A user's own command with declared inputs and outputs: the escape hatch.
    #[serde(rename = "command")]
    Command,
}

impl StageKind {
    /// Every kind, in the order they are documented.
    pub const ALL: &'static [StageKind] = &[
        StageKind::DataAudit,
        StageKind::ClassifierTrain,
        StageKind::ModelPredict,
        StageKind::DetectorTrain,
        StageKind::PseudoLabel,
        StageKind::Evaluate,
        StageKind::Command,
    ];

    /// Whether the libtorch worker (`engine-worker`) runs this kind.
    pub fn needs_libtorch(self) -> bool {
        matches!(
            self,
            StageKind::ClassifierTrain
                | StageKind::ModelPredict
                | StageKind::DetectorTrain
                | StageKind::PseudoLabel
        )
    }

    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::DataAudit => "data.audit",
            StageKind::ClassifierTrain => "classifier.train",
            StageKind::ModelPredict => "model.predict",
            StageKind::DetectorTrain => "detector.train",
            StageKind::PseudoLabel => "pseudo_label",
            StageKind::Evaluate => "evaluate",
            StageKind::Command => "command",
        }
    }

    /// Version of this kind's implementation; bumping it invalidates every cached result of the kind.
    pub fn implementation_version(self) -> u32 {
        match self {
            StageKind::DataAudit => 1,
            StageKind::ClassifierTrain => 4,
            StageKind::ModelPredict => 2,
            StageKind::DetectorTrain => 2,
            StageKind::PseudoLabel => 1,
            StageKind::Evaluate => 2,
            StageKind::Command => 1,
        }
    }

    /// Whether the kind's results depend on the manifest's TaskSpec (its job carries the
    /// task, and its cache key holds it): an evaluation locks its threshold and checks the
    /// requirements the request states.
    pub fn reads_task(self) -> bool {
        matches!(self, StageKind::Evaluate)
    }

    /// Whether the kind reads the TaskSpec's objective alone (its job carries it, and its
    /// cache key holds it): a training stage keeps the epoch that is best by it.
    pub fn reads_objective(self) -> bool {
        matches!(self, StageKind::ClassifierTrain | StageKind::DetectorTrain)
    }
}

/// Resources a stage asks for. They decide where and when it runs, never what it computes.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU threads the stage uses.
    #[serde(default = "default_cpus")]
    #[schemars(range(min = 1, max = 1024))]
    pub cpus: u32,
    /// GPUs the stage uses (handed over through `CUDA_VISIBLE_DEVICES`).
    #[serde(default)]
    #[schemars(range(max = 64))]
    pub gpus: u32,
    /// Memory the stage needs, in GiB (used by cluster executors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub memory_gb: Option<f64>,
    /// Wall-clock limit; a stage still running after it is stopped and fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.001))]
    pub timeout_minutes: Option<f64>,
}

fn default_cpus() -> u32 {
    1
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: default_cpus(),
            gpus: 0,
            memory_gb: None,
            timeout_minutes: None,
        }
    }
}

/// A stage's parameters, parsed for its kind.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum StageParams {
    /// Parameters of a `data.audit` stage.
    DataAudit(AuditParams),
    /// Parameters of a `classifier.train` stage.
    ClassifierTrain(Box<TrainParams>),
    /// Parameters of a `model.predict` stage.
    ModelPredict(PredictParams),
    /// Parameters of a `detector.train` stage.
    DetectorTrain(Box<crate::stages::detect::DetectorParams>),
    /// Parameters of a `pseudo_label` stage.
    PseudoLabel(crate::stages::pseudo::PseudoLabelParams),
    /// Parameters of an `evaluate` stage.
    Evaluate(EvaluateParams),
    /// Parameters of a `command` stage.
    Command(CommandParams),
}

impl StageParams {
    /// Parses the `with` map of a stage of the given kind.
    pub fn parse(
        kind: StageKind,
        with: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, serde_path_to_error::Error<serde_json::Error>> {
        let value = serde_json::Value::Object(with.clone());
        match kind {
            StageKind::DataAudit => Ok(StageParams::DataAudit(serde_path_to_error::deserialize(
                value,
            )?)),
            StageKind::ClassifierTrain => Ok(StageParams::ClassifierTrain(
                serde_path_to_error::deserialize(value)?,
            )),
            StageKind::ModelPredict => Ok(StageParams::ModelPredict(
                serde_path_to_error::deserialize(value)?,
            )),
            StageKind::DetectorTrain => Ok(StageParams::DetectorTrain(
                serde_path_to_error::deserialize(value)?,
            )),
            StageKind::PseudoLabel => Ok(StageParams::PseudoLabel(
                serde_path_to_error::deserialize(value)?,
            )),
            StageKind::Evaluate => Ok(StageParams::Evaluate(serde_path_to_error::deserialize(
                value,
            )?)),
            StageKind::Command => Ok(StageParams::Command(serde_path_to_error::deserialize(
                value,
            )?)),
        }
    }

    /// The stages this one refers to, with whether data flows from each (`true`) or only order (`false`).
    pub fn stage_references(&self) -> Vec<Reference<'_>> {
        match self {
            StageParams::DataAudit(p) => data_refs(&p.from, "with.from"),
            StageParams::ClassifierTrain(p) => data_refs(&p.from, "with.from"),
            StageParams::ModelPredict(p) => vec![Reference {
                target: &p.model,
                field: "with.model".into(),
                data: true,
            }],
            StageParams::DetectorTrain(p) => data_refs(&p.from, "with.from"),
            StageParams::PseudoLabel(p) => vec![Reference {
                target: &p.teacher,
                field: "with.teacher".into(),
                data: true,
            }],
            StageParams::Evaluate(p) => {
                let mut refs = vec![Reference {
                    target: &p.model,
                    field: "with.model".into(),
                    data: true,
                }];
                if let Some(b) = &p.baseline {
                    refs.push(Reference {
                        target: b,
                        field: "with.baseline".into(),
                        data: true,
                    });
                }
                refs
            }
            StageParams::Command(p) => p
                .from
                .iter()
                .enumerate()
                .map(|(i, s)| Reference {
                    target: s,
                    field: format!("with.from.{i}"),
                    data: true,
                })
                .collect(),
        }
    }

    /// The datasets this stage reads.
    pub fn dataset_references(&self) -> Vec<Reference<'_>> {
        match self {
            StageParams::DataAudit(p) => vec![Reference {
                target: &p.dataset,
                field: "with.dataset".into(),
                data: true,
            }],
            StageParams::ClassifierTrain(p) => vec![Reference {
                target: &p.dataset,
                field: "with.dataset".into(),
                data: true,
            }],
            StageParams::ModelPredict(p) => vec![Reference {
                target: &p.dataset,
                field: "with.dataset".into(),
                data: true,
            }],
            StageParams::DetectorTrain(p) => vec![Reference {
                target: &p.dataset,
                field: "with.dataset".into(),
                data: true,
            }],
            StageParams::PseudoLabel(p) => vec![Reference {
                target: &p.dataset,
                field: "with.dataset".into(),
                data: true,
            }],
            StageParams::Evaluate(_) => Vec::new(),
            StageParams::Command(p) => p
                .datasets
                .iter()
                .enumerate()
                .map(|(i, s)| Reference {
                    target: s,
                    field: format!("with.datasets.{i}"),
                    data: true,
                })
                .collect(),
        }
    }

    /// The files or directories the stage leaves in its output directory, hashed into the lock file.
    pub fn declared_outputs(&self) -> Vec<String> {
        match self {
            StageParams::DataAudit(_) => crate::stages::audit::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::ClassifierTrain(_) => crate::stages::train::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::ModelPredict(_) => crate::stages::predict::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::DetectorTrain(_) => crate::stages::detect::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::PseudoLabel(_) => crate::stages::pseudo::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::Evaluate(_) => crate::stages::evaluate::OUTPUTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            StageParams::Command(p) => p.outputs.clone(),
        }
    }

    /// Files the stage reads from the workspace (glob patterns relative to the manifest's
    /// directory), with the field naming each; their content enters the cache key.
    pub fn input_files(&self) -> Vec<(&str, String)> {
        match self {
            StageParams::ClassifierTrain(p) => p
                .pretrained
                .iter()
                .map(|f| (f.as_str(), "with/pretrained".to_owned()))
                .collect(),
            StageParams::Command(p) => p
                .inputs
                .iter()
                .enumerate()
                .map(|(i, f)| (f.as_str(), format!("with/inputs/{i}")))
                .collect(),
            StageParams::DataAudit(_)
            | StageParams::ModelPredict(_)
            | StageParams::DetectorTrain(_)
            | StageParams::PseudoLabel(_)
            | StageParams::Evaluate(_) => Vec::new(),
        }
    }

    /// Canonical JSON of the resolved parameters, defaults filled in, as hashed into the cache key.
    pub fn canonical_json(&self) -> serde_json::Value {
        crate::canonical::canonicalize(
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        )
    }
}

fn data_refs<'a>(targets: &'a [String], field: &str) -> Vec<Reference<'a>> {
    targets
        .iter()
        .enumerate()
        .map(|(i, s)| Reference {
            target: s,
            field: format!("{field}.{i}"),
            data: true,
        })
        .collect()
}

/// A reference from a stage's params to another stage or a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference<'a> {
    /// The id of the stage or dataset referred to.
    pub target: &'a str,
    /// Dotted path of the field holding the reference, relative to the stage.
    pub field: String,
    /// Whether data flows along the reference (it then enters the cache key).
    pub data: bool,
}
