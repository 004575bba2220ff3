//! Run events: what the executor reports while it works, written to `runs/<id>/events.jsonl`
//! and handed to whoever shows progress.

use serde::{Deserialize, Serialize};

/// How one stage ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Its result was already in the cache.
    Cached,
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It ran past its time limit and was stopped.
    TimedOut,
    /// The run was interrupted while it ran.
    Cancelled,
    /// It did not run because a stage it depends on did not succeed.
    Skipped,
}

impl Outcome {
    /// Whether the stage's result is available.
    pub fn is_ok(self) -> bool {
        matches!(self, Outcome::Cached | Outcome::Succeeded)
    }
}

/// How a whole run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every stage is cached or succeeded.
    Succeeded,
    /// At least one stage failed or timed out.
    Failed,
    /// The run was interrupted.
    Cancelled,
}

/// Something that happened during a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Manifest path.
        manifest: String,
        /// Stage ids in the order they may run.
        stages: Vec<String>,
        /// How many must run.
        to_run: usize,
    },
    /// A stage's result came from the cache.
    StageCached {
        /// Stage id.
        stage: String,
        /// Key digest.
        key: String,
    },
    /// A stage started.
    StageStarted {
        /// Stage id.
        stage: String,
        /// Key digest.
        key: String,
        /// CPU threads granted.
        cpus: u32,
        /// GPU ids granted.
        gpus: Vec<u32>,
    },
    /// A running stage reported progress.
    StageProgress {
        /// Stage id.
        stage: String,
        /// Share done, from 0 to 1, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fraction: Option<f64>,
        /// What it is doing.
        #[serde(default)]
        message: String,
    },
    /// A stage ended (after running, or without running).
    StageFinished {
        /// Stage id.
        stage: String,
        /// How it ended.
        outcome: Outcome,
        /// Seconds it ran.
        duration_s: f64,
        /// Why it failed or was skipped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The run ended.
    RunFinished {
        /// Run id.
        run_id: String,
        /// How it ended.
        status: RunStatus,
        /// Seconds it took.
        duration_s: f64,
    },
}

/// An event with the time it happened.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Stamped {
    /// RFC 3339, UTC.
    pub ts: String,
    /// The event.
    #[serde(flatten)]
    pub event: Event,
}

/// Receives events as they happen (progress bars, plain lines, or nothing).
pub trait Reporter: Send + Sync {
    /// Called once per event, in order.
    fn on_event(&self, event: &Event);
}

/// A reporter that shows nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Silent;

impl Reporter for Silent {
    fn on_event(&self, _event: &Event) {}
}

/// Prefix of a line a stage prints to report progress, followed by a JSON object with
/// optional `fraction` (0 to 1) and `message`.
pub const PROGRESS_PREFIX: &str = "::engine-progress::";

/// Parses a progress line printed by a stage.
pub fn parse_progress(stage: &str, line: &str) -> Option<Event> {
    #[derive(Deserialize)]
    struct Line {
        #[serde(default)]
        fraction: Option<f64>,
        #[serde(default)]
        message: String,
    }
    let rest = line.trim_start().strip_prefix(PROGRESS_PREFIX)?;
    let parsed: Line = serde_json::from_str(rest.trim()).ok()?;
    let fraction = parsed
        .fraction
        .filter(|f| f.is_finite())
        .map(|f| f.clamp(0.0, 1.0));
    Some(Event::StageProgress {
        stage: stage.to_owned(),
        fraction,
        message: parsed.message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse_and_other_lines_do_not() {
        assert_eq!(
            parse_progress(
                "t",
                r#"::engine-progress:: {"fraction": 1.5, "message": "epoch 2/3"}"#
            ),
            Some(Event::StageProgress {
                stage: "t".into(),
                fraction: Some(1.0),
                message: "epoch 2/3".into()
            })
        );
        assert_eq!(parse_progress("t", "epoch 2/3"), None);
        assert_eq!(parse_progress("t", "::engine-progress:: not json"), None);
    }

    #[test]
    fn events_serialise_with_their_name() {
        let e = Stamped {
            ts: "t".into(),
            event: Event::StageCached {
                stage: "a".into(),
                key: "k".into(),
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"ts":"t","event":"stage_cached","stage":"a","key":"k"}"#
        );
    }
}
