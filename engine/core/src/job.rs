//! A stage job: everything a child process needs to run one stage, written as JSON by the executor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::manifest::{Dataset, StageKind, StageParams};

/// One stage, resolved and ready to run in a child process (locally or on a cluster node).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StageJob {
    /// Id of the run this job belongs to.
    pub run_id: String,
    /// Id of the stage.
    pub stage: String,
    /// Kind of the stage.
    pub kind: StageKind,
    /// The stage's resolved parameters (`with`, defaults filled in).
    pub params: serde_json::Value,
    /// The manifest's directory; commands run there.
    pub workspace: PathBuf,
    /// Directory the stage writes its outputs to.
    pub out_dir: PathBuf,
    /// Output directories of the stages this one reads from, by stage id.
    pub upstream: BTreeMap<String, PathBuf>,
    /// Roots of the datasets this stage reads, by name.
    pub datasets: BTreeMap<String, PathBuf>,
    /// Declarations of the datasets this stage reads, by name.
    #[serde(default)]
    pub dataset_specs: BTreeMap<String, Dataset>,
    /// Content fingerprints of the datasets this stage reads, by name.
    #[serde(default)]
    pub dataset_fingerprints: BTreeMap<String, String>,
    /// The stage's seed.
    pub seed: u64,
    /// CPU threads granted to the stage.
    pub cpus: u32,
    /// The manifest's TaskSpec, for kinds that read it (`StageKind::reads_task`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::task::TaskSpec>,
    /// The TaskSpec's objective, for kinds that pick their best epoch by it
    /// (`StageKind::reads_objective`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<crate::task::Objective>,
}

impl StageJob {
    /// Reads a job file written by the executor.
    pub fn read(path: &Path) -> Result<StageJob, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("could not read the job file {}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("the job file {} is not valid: {e}", path.display()))
    }
}

impl StageJob {
    /// The job's parameters, parsed for its kind.
    pub fn stage_params(&self) -> Result<StageParams, String> {
        let params = self
            .params
            .as_object()
            .ok_or("the job's params are not an object")?;
        StageParams::parse(self.kind, params)
            .map_err(|e| format!("the job's params do not fit `{}`: {e}", self.kind.as_str()))
    }

    /// The declaration and root of dataset `name`, which the job must carry.
    pub fn dataset(&self, name: &str) -> Result<(&Dataset, &Path), String> {
        let spec = self
            .dataset_specs
            .get(name)
            .ok_or_else(|| format!("the job does not declare dataset `{name}`"))?;
        let root = self
            .datasets
            .get(name)
            .ok_or_else(|| format!("the job has no root for dataset `{name}`"))?;
        Ok((spec, root))
    }

    /// The content fingerprint of dataset `name` (empty when the job carries none), which
    /// keys the image caches made from it.
    pub fn fingerprint(&self, name: &str) -> &str {
        self.dataset_fingerprints
            .get(name)
            .map_or("", String::as_str)
    }
}

/// Runs a job of a kind the core implements.
pub fn run_core_job(job: &StageJob) -> Result<(), String> {
    match job.stage_params()? {
        StageParams::Command(p) => crate::stages::command::run(job, &p),
        StageParams::ClassifierTrain(_)
        | StageParams::ModelPredict(_)
        | StageParams::DetectorTrain(_)
        | StageParams::PseudoLabel(_) => Err(format!(
            "`{}` needs libtorch: it is run by `engine-worker stage-exec`",
            job.kind.as_str()
        )),
        StageParams::Evaluate(_) => {
            Err("`evaluate` is run by the `engine` binary: run it with `engine stage-exec`".into())
        }
        StageParams::DataAudit(_) => Err(
            "`data.audit` reads images, which the core does not: run it with `engine stage-exec`"
                .into(),
        ),
    }
}
