//! The `command` stage kind: a user's own command with declared inputs and outputs.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::process::Command;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::job::StageJob;

/// Parameters of a `command` stage.
///
/// The command runs with `sh -e -c` in the manifest's directory, so the first
/// failing line fails the stage. It finds what it
/// reads and where to write through environment variables: `ENGINE_OUT` (the
/// directory its declared outputs go to), `ENGINE_IN_<stage>` (the outputs of
/// each stage named in `from`), `ENGINE_DATASET_<name>` (the root of each
/// dataset named in `datasets`), `ENGINE_SEED`, `ENGINE_THREADS` and
/// `ENGINE_STAGE`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandParams {
    /// Shell command, run with `sh -e -c` in the manifest's directory: the first failing line fails the stage.
    #[schemars(length(min = 1))]
    pub run: String,
    /// Workspace files, directories or glob patterns the command reads, relative to the
    /// manifest's directory; their contents are part of the cache key.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true, "items" = {"type": "string", "minLength": 1}))]
    pub inputs: Vec<String>,
    /// Stages whose outputs the command reads, through `$ENGINE_IN_<stage>`.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub from: Vec<String>,
    /// Datasets the command reads, through `$ENGINE_DATASET_<name>`.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true))]
    pub datasets: Vec<String>,
    /// Files or directories the command writes under `$ENGINE_OUT`; each must exist when it ends.
    #[serde(default)]
    #[schemars(extend("uniqueItems" = true, "items" = {"type": "string", "minLength": 1}))]
    pub outputs: Vec<String>,
    /// Extra environment variables for the command.
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub env: BTreeMap<String, String>,
}

/// Why a declared output path is not acceptable, if it is not.
pub fn output_path_problem(path: &str) -> Option<&'static str> {
    let p = Path::new(path);
    if p.is_absolute() {
        return Some("is absolute; outputs are paths under $ENGINE_OUT");
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Some("leaves $ENGINE_OUT through `..`");
    }
    if p.components().all(|c| matches!(c, Component::CurDir)) {
        return Some("names $ENGINE_OUT itself; name the files or directories inside it");
    }
    None
}

/// Runs a `command` stage in this process's child and checks its declared outputs.
pub fn run(job: &StageJob, params: &CommandParams) -> Result<(), String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-e")
        .arg("-c")
        .arg(&params.run)
        .current_dir(&job.workspace);
    for (k, v) in &params.env {
        cmd.env(k, v);
    }
    cmd.env("ENGINE_OUT", &job.out_dir)
        .env("ENGINE_STAGE", &job.stage)
        .env("ENGINE_SEED", job.seed.to_string())
        .env("ENGINE_THREADS", job.cpus.to_string())
        .env("ENGINE_WORKSPACE", &job.workspace);
    for (stage, dir) in &job.upstream {
        cmd.env(format!("ENGINE_IN_{stage}"), dir);
    }
    for (name, root) in &job.datasets {
        cmd.env(format!("ENGINE_DATASET_{name}"), root);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("could not start `sh`: {e}"))?;
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("the command exited with status {code}"),
            None => {
                use std::os::unix::process::ExitStatusExt;
                format!(
                    "the command was killed by signal {}",
                    status.signal().unwrap_or(0)
                )
            }
        });
    }
    let missing: Vec<&str> = params
        .outputs
        .iter()
        .map(String::as_str)
        .filter(|o| !job.out_dir.join(o).exists())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the command succeeded but did not write the declared output{} {} (hint: write them under $ENGINE_OUT)",
            if missing.len() == 1 { "" } else { "s" },
            missing
                .iter()
                .map(|m| format!("`{m}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_must_stay_inside_the_output_directory() {
        assert!(output_path_problem("model.bin").is_none());
        assert!(output_path_problem("sub/dir").is_none());
        assert!(output_path_problem("/etc/passwd").is_some());
        assert!(output_path_problem("../escape").is_some());
        assert!(output_path_problem("a/../../b").is_some());
        assert!(output_path_problem(".").is_some());
    }
}
