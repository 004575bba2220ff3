//! The manifest's data model: the serde types that `schemas/manifest.schema.json` is generated from.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::stages::command::CommandParams;

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
}

/// A dataset on disk. Its content fingerprint is part of the cache key of every stage that reads it.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// How the files under `root` are laid out.
    pub format: DatasetFormat,
    /// Directory (or file) holding the dataset, relative to the manifest's directory.
    #[schemars(length(min = 1))]
    pub root: String,
    /// What the dataset is, for readers of the manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Layouts of datasets the engine can read: `files` (any files, fingerprinted and handed over as a directory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum DatasetFormat {
    // Any files: the engine fingerprints them and hands the root to the stages that read it.
    // (Plain comments, not doc comments, keep the schema a plain `enum` whose errors read well.)
    #[serde(rename = "files")]
    Files,
}

impl DatasetFormat {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetFormat::Files => "files",
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

/// Kinds of stages this engine can run: `command` (a user's own command with declared inputs and outputs).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
pub enum StageKind {
    // A user's own command with declared inputs and outputs: the escape hatch.
    #[serde(rename = "command")]
    Command,
}

impl StageKind {
    /// Every kind, in the order they are documented.
    pub const ALL: &'static [StageKind] = &[StageKind::Command];

    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            StageKind::Command => "command",
        }
    }

    /// Version of this kind's implementation; bumping it invalidates every cached result of the kind.
    pub fn implementation_version(self) -> u32 {
        match self {
            StageKind::Command => 1,
        }
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
            StageKind::Command => Ok(StageParams::Command(serde_path_to_error::deserialize(
                value,
            )?)),
        }
    }

    /// The stages this one refers to, with whether data flows from each (`true`) or only order (`false`).
    pub fn stage_references(&self) -> Vec<Reference<'_>> {
        match self {
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

    /// Canonical JSON of the resolved parameters, defaults filled in, as hashed into the cache key.
    pub fn canonical_json(&self) -> serde_json::Value {
        crate::canonical::canonicalize(
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null),
        )
    }
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
