//! The executors: walk the sealed graph with tokio, launch each ready stage, and store
//! each result atomically. A failure stops the stages that depend on it while independent
//! stages finish; a cancellation stops every stage and stores nothing partial.
//!
//! This file holds what every executor shares (the scheduling loop, failure propagation,
//! commits, the lock file and run records). How one stage is launched and awaited is a
//! [`Launcher`]: a child process on this machine (`local`) or a batch job (`slurm`).

mod local;
pub mod slurm;

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::future::Future;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::{new_run_id, now_rfc3339};
use crate::events::{Event, Outcome, Reporter, RunStatus, Stamped, parse_progress};
use crate::fingerprint::{FingerprintDb, hex};
use crate::job::StageJob;
use crate::load::LoadedManifest;
use crate::manifest::Resources;
use crate::plan::{Plan, Status};
use crate::record::{LockRecord, LockedStage};
use crate::store::{EntryMeta, Pending, Store};

/// How the local executor launches stages and what the machine offers.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// The program that runs one stage job (the engine binary itself).
    pub program: PathBuf,
    /// Arguments before the job file (for the engine: `stage-exec`).
    pub program_args: Vec<OsString>,
    /// CPU threads available to all stages together.
    pub cpus: u32,
    /// GPU ids available.
    pub gpus: Vec<u32>,
    /// Time between asking a stage to stop (SIGTERM) and forcing it (SIGKILL).
    pub grace: Duration,
}

/// How one stage of a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct StageSummary {
    /// How it ended.
    pub outcome: Outcome,
    /// Its key digest.
    pub key: String,
    /// Seconds it ran (0 when cached or skipped).
    pub duration_s: f64,
    /// Why it failed, timed out or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Where its outputs are, when it has them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<PathBuf>,
    /// Its log, when it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
}

/// How a run ended.
#[derive(Clone, Debug, Serialize)]
pub struct RunSummary {
    /// Run id.
    pub run_id: String,
    /// Overall status.
    pub status: RunStatus,
    /// Seconds it took.
    pub duration_s: f64,
    /// Where its records are.
    pub run_dir: PathBuf,
    /// Every stage, by id.
    pub stages: BTreeMap<String, StageSummary>,
}

/// Where a run's events go: its `events.jsonl` and the reporter.
pub(crate) struct Sink {
    file: Mutex<File>,
    reporter: Arc<dyn Reporter>,
}

impl Sink {
    pub(crate) fn emit(&self, event: Event) {
        let stamped = Stamped {
            ts: now_rfc3339(),
            event,
        };
        if let Ok(mut line) = serde_json::to_string(&stamped) {
            line.push('\n');
            if let Ok(mut f) = self.file.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        self.reporter.on_event(&stamped.event);
    }
}

enum State {
    Waiting,
    Running,
    Done(Outcome),
}

struct Finished {
    id: String,
    outcome: Outcome,
    duration: Duration,
    message: Option<String>,
    pending: Pending,
    cpus: u32,
    gpus: Vec<u32>,
}

/// CPU threads and GPU ids an executor hands out itself.
#[derive(Clone, Debug)]
pub(crate) struct Budget {
    pub cpus: u32,
    pub gpus: Vec<u32>,
}

/// Everything a launcher needs to run one stage whose job file is written.
pub(crate) struct StageLaunch {
    /// The job, as written to `job_file`.
    pub job: StageJob,
    /// The job file the stage's process reads (`stage-exec JOB`).
    pub job_file: PathBuf,
    /// The stage's log.
    pub log: PathBuf,
    /// CPU threads granted.
    pub cpus: u32,
    /// GPU ids granted (only when the executor has a budget).
    pub gpus: Vec<u32>,
    /// What the manifest asks for.
    pub resources: Resources,
    /// The stage's time limit.
    pub timeout: Option<Duration>,
    /// Flips to `true` when the run is interrupted.
    pub cancel: watch::Receiver<bool>,
    /// The run's events.
    pub sink: Arc<Sink>,
}

/// How a launched stage ended: its outcome, and why when it did not succeed.
pub(crate) type Ended = (Outcome, Option<String>);

/// Launches one stage and waits for its end: the only part an executor brings itself.
pub(crate) trait Launcher: Send + Sync + 'static {
    /// CPU threads and GPU ids the executor shares out among stages; `None` when a
    /// scheduler outside the engine decides where and when stages run.
    fn budget(&self) -> Option<Budget>;

    /// Runs the stage to its end. An interrupt (`cancel`) must stop it before this returns,
    /// so that nothing writes to the stage's entry once the run discards it.
    fn launch(
        self: Arc<Self>,
        stage: StageLaunch,
    ) -> impl Future<Output = io::Result<Ended>> + Send;
}

/// Runs every stage of `plan` that is not cached, each as a child process of this machine.
/// The caller holds the workspace lock. Flipping `cancel` to `true` stops all running
/// stages and ends the run.
pub async fn execute(
    m: &LoadedManifest,
    plan: &Plan,
    store: &Store,
    opts: &ExecOptions,
    reporter: Arc<dyn Reporter>,
    cancel: watch::Receiver<bool>,
) -> io::Result<RunSummary> {
    let launcher = Arc::new(local::LocalLauncher::new(opts.clone()));
    run(m, plan, store, launcher, reporter, cancel).await
}

/// Runs every stage of `plan` that is not cached as a Slurm batch job (see [`slurm`]).
/// The caller holds the workspace lock, and has checked the cluster with
/// [`slurm::check`]. Flipping `cancel` to `true` cancels the run's jobs and ends the run.
pub async fn execute_on_slurm(
    m: &LoadedManifest,
    plan: &Plan,
    store: &Store,
    opts: &slurm::SlurmOptions,
    reporter: Arc<dyn Reporter>,
    cancel: watch::Receiver<bool>,
) -> io::Result<RunSummary> {
    let launcher = Arc::new(slurm::SlurmLauncher::new(opts.clone(), cancel.clone()));
    let result = run(m, plan, store, launcher.clone(), reporter, cancel).await;
    launcher.shut_down();
    result
}

/// The scheduling loop every executor shares.
async fn run<L: Launcher>(
    m: &LoadedManifest,
    plan: &Plan,
    store: &Store,
    launcher: Arc<L>,
    reporter: Arc<dyn Reporter>,
    cancel: watch::Receiver<bool>,
) -> io::Result<RunSummary> {
    let started = Instant::now();
    store.create()?;
    store.clean_tmp();
    let run_id = new_run_id();
    let run_dir = store.run_dir(&run_id);
    std::fs::create_dir_all(run_dir.join("logs"))?;
    std::fs::create_dir_all(run_dir.join("jobs"))?;
    let sink = Arc::new(Sink {
        file: Mutex::new(File::create(run_dir.join("events.jsonl"))?),
        reporter,
    });
    let (_, to_run) = plan.counts();
    sink.emit(Event::RunStarted {
        run_id: run_id.clone(),
        manifest: m.path.display().to_string(),
        stages: plan.stages.iter().map(|s| s.id.clone()).collect(),
        to_run,
    });

    let on_disk = LockRecord::read(&m.path);
    let mut record = on_disk.clone();
    record.version = crate::record::LOCK_VERSION;
    record.manifest = m
        .path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    record
        .stages
        .retain(|id, _| m.manifest.stages.contains_key(id));

    let mut states: BTreeMap<String, State> = BTreeMap::new();
    let mut summaries: BTreeMap<String, StageSummary> = BTreeMap::new();
    for sp in &plan.stages {
        if sp.status == Status::Cached {
            sink.emit(Event::StageCached {
                stage: sp.id.clone(),
                key: sp.digest.clone(),
            });
            states.insert(sp.id.clone(), State::Done(Outcome::Cached));
            summaries.insert(
                sp.id.clone(),
                summary(
                    Outcome::Cached,
                    &sp.digest,
                    0.0,
                    None,
                    Some(store.out_dir(&sp.digest)),
                    None,
                ),
            );
            let outputs = store
                .read_meta(&sp.digest)
                .map(|meta| meta.outputs)
                .unwrap_or_default();
            record.stages.insert(
                sp.id.clone(),
                LockedStage {
                    kind: sp.kind.clone(),
                    key: sp.digest.clone(),
                    outputs,
                },
            );
        } else {
            states.insert(sp.id.clone(), State::Waiting);
        }
    }
    if record != on_disk {
        record.write(&m.path)?;
    }

    let budget = launcher.budget();
    let total_cpus = budget.as_ref().map_or(u32::MAX, |b| b.cpus.max(1));
    let offered_gpus = budget.as_ref().map(|b| b.gpus.len());
    let mut free_cpus = total_cpus;
    let mut free_gpus: VecDeque<u32> = budget
        .as_ref()
        .map(|b| b.gpus.iter().copied().collect())
        .unwrap_or_default();
    let mut tasks: JoinSet<Finished> = JoinSet::new();
    let mut watch_cancel = cancel.clone();
    let mut cancelled = *cancel.borrow();

    loop {
        // Stages whose upstream did not succeed will never run.
        for sp in &plan.stages {
            if !matches!(states.get(&sp.id), Some(State::Waiting)) {
                continue;
            }
            let failed_up =
                m.dag
                    .upstream(&sp.id)
                    .into_iter()
                    .find_map(|(up, _)| match states.get(up) {
                        Some(State::Done(o)) if !o.is_ok() => Some(up.to_owned()),
                        _ => None,
                    });
            if let Some(up) = failed_up {
                let msg = format!("not run: `{up}` did not succeed");
                sink.emit(Event::StageFinished {
                    stage: sp.id.clone(),
                    outcome: Outcome::Skipped,
                    duration_s: 0.0,
                    message: Some(msg.clone()),
                });
                summaries.insert(
                    sp.id.clone(),
                    summary(Outcome::Skipped, &sp.digest, 0.0, Some(msg), None, None),
                );
                states.insert(sp.id.clone(), State::Done(Outcome::Skipped));
            }
        }
        // Launch what is ready and fits.
        if !cancelled {
            for sp in &plan.stages {
                if !matches!(states.get(&sp.id), Some(State::Waiting)) {
                    continue;
                }
                let ready = m
                    .dag
                    .upstream(&sp.id)
                    .into_iter()
                    .all(|(up, _)| matches!(states.get(up), Some(State::Done(o)) if o.is_ok()));
                if !ready {
                    continue;
                }
                let stage = &m.manifest.stages[&sp.id];
                let want_gpus = stage.resources.gpus as usize;
                if let Some(offered) = offered_gpus
                    && want_gpus > offered
                {
                    let msg = format!("needs {want_gpus} GPU(s) but this machine offers {offered}");
                    sink.emit(Event::StageFinished {
                        stage: sp.id.clone(),
                        outcome: Outcome::Failed,
                        duration_s: 0.0,
                        message: Some(msg.clone()),
                    });
                    summaries.insert(
                        sp.id.clone(),
                        summary(Outcome::Failed, &sp.digest, 0.0, Some(msg), None, None),
                    );
                    states.insert(sp.id.clone(), State::Done(Outcome::Failed));
                    continue;
                }
                let cpus = stage.resources.cpus.min(total_cpus);
                // Without a budget of its own, the executor hands GPUs out through its scheduler.
                let local_gpus = if budget.is_some() { want_gpus } else { 0 };
                if cpus > free_cpus || local_gpus > free_gpus.len() {
                    continue;
                }
                free_cpus -= cpus;
                let gpus: Vec<u32> = free_gpus.drain(..local_gpus).collect();
                let pending = store.begin(&sp.digest, &run_id, &sp.id)?;
                let job = stage_job(m, plan, store, sp, &run_id, pending.out_dir(), cpus);
                let timeout = stage
                    .resources
                    .timeout_minutes
                    .map(|min| Duration::from_secs_f64(min * 60.0));
                sink.emit(Event::StageStarted {
                    stage: sp.id.clone(),
                    key: sp.digest.clone(),
                    cpus,
                    gpus: gpus.clone(),
                });
                states.insert(sp.id.clone(), State::Running);
                let launch = StageLaunch {
                    job_file: run_dir.join("jobs").join(format!("{}.json", sp.id)),
                    log: log_path(&run_dir, &sp.id),
                    job,
                    cpus,
                    gpus,
                    resources: stage.resources.clone(),
                    timeout,
                    cancel: cancel.clone(),
                    sink: sink.clone(),
                };
                tasks.spawn(supervise(launcher.clone(), launch, pending));
            }
        }
        if tasks.is_empty() {
            break;
        }
        tokio::select! {
            joined = tasks.join_next() => {
                let Some(joined) = joined else { continue };
                let f = joined.map_err(io::Error::other)?;
                free_cpus += f.cpus;
                free_gpus.extend(f.gpus.iter().copied());
                let sp = plan.stage(&f.id).ok_or_else(|| io::Error::other("a finished stage is not in the plan"))?;
                let log = log_path(&run_dir, &f.id);
                let secs = f.duration.as_secs_f64();
                let (outcome, message, outputs) = if f.outcome == Outcome::Succeeded {
                    match finish_entry(store, m, sp, f.pending, &run_id, secs) {
                        Ok((dir, hashes)) => {
                            record.stages.insert(f.id.clone(), LockedStage { kind: sp.kind.clone(), key: sp.digest.clone(), outputs: hashes });
                            record.write(&m.path)?;
                            (Outcome::Succeeded, None, Some(dir))
                        }
                        Err(e) => (Outcome::Failed, Some(format!("could not store its outputs: {e}")), None),
                    }
                } else {
                    store.discard(f.pending);
                    (f.outcome, f.message, None)
                };
                sink.emit(Event::StageFinished { stage: f.id.clone(), outcome, duration_s: secs, message: message.clone() });
                summaries.insert(f.id.clone(), summary(outcome, &sp.digest, secs, message, outputs, Some(log)));
                states.insert(f.id, State::Done(outcome));
            }
            changed = watch_cancel.changed(), if !cancelled => {
                if changed.is_err() || *watch_cancel.borrow() {
                    cancelled = true;
                }
            }
        }
    }

    for sp in &plan.stages {
        if matches!(states.get(&sp.id), Some(State::Waiting)) {
            summaries.insert(
                sp.id.clone(),
                summary(
                    Outcome::Cancelled,
                    &sp.digest,
                    0.0,
                    Some("not run: the run was interrupted".into()),
                    None,
                    None,
                ),
            );
        }
    }
    // The interrupt may have arrived while the last stage was being reaped.
    cancelled |= *cancel.borrow() || summaries.values().any(|s| s.outcome == Outcome::Cancelled);
    let status = if cancelled {
        RunStatus::Cancelled
    } else if summaries.values().all(|s| s.outcome.is_ok()) {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    let duration_s = started.elapsed().as_secs_f64();
    sink.emit(Event::RunFinished {
        run_id: run_id.clone(),
        status,
        duration_s,
    });
    let result = RunSummary {
        run_id,
        status,
        duration_s,
        run_dir: run_dir.clone(),
        stages: summaries,
    };
    crate::store::write_json_unsynced(&run_dir.join("summary.json"), &result)?;
    Ok(result)
}

/// Writes the stage's job file, launches it and waits for its end.
async fn supervise<L: Launcher>(
    launcher: Arc<L>,
    launch: StageLaunch,
    pending: Pending,
) -> Finished {
    let started = Instant::now();
    let id = launch.job.stage.clone();
    let (cpus, gpus) = (launch.cpus, launch.gpus.clone());
    let ended = match crate::store::write_json_unsynced(&launch.job_file, &launch.job) {
        Ok(()) => launcher.launch(launch).await,
        Err(e) => Err(e),
    };
    let (outcome, message) = ended.unwrap_or_else(|e| {
        (
            Outcome::Failed,
            Some(format!("could not run the stage: {e}")),
        )
    });
    Finished {
        id,
        outcome,
        duration: started.elapsed(),
        message,
        pending,
        cpus,
        gpus,
    }
}

/// The last lines a stage printed, for a failure message: `; last output: a | b | c`, or
/// nothing. Progress lines and blank lines do not count.
pub(crate) fn last_output(lines: &VecDeque<String>) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!(
            "; last output: {}",
            lines.iter().cloned().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// Keeps `line` among the last three a stage printed, unless it is a progress line or blank.
pub(crate) fn keep_tail(tail: &mut VecDeque<String>, stage: &str, line: &str) -> Option<Event> {
    if let Some(ev) = parse_progress(stage, line) {
        return Some(ev);
    }
    if !line.trim().is_empty() {
        tail.push_back(line.chars().take(300).collect());
        while tail.len() > 3 {
            tail.pop_front();
        }
    }
    None
}

/// The job of stage `sp`: its resolved params, the output directories of the stages it
/// reads, its datasets' roots, declarations and fingerprints; its outputs go to `out_dir`.
pub fn stage_job(
    m: &LoadedManifest,
    plan: &Plan,
    store: &Store,
    sp: &crate::plan::StagePlan,
    run_id: &str,
    out_dir: PathBuf,
    cpus: u32,
) -> StageJob {
    StageJob {
        run_id: run_id.to_owned(),
        stage: sp.id.clone(),
        kind: m.manifest.stages[&sp.id].uses,
        params: serde_json::to_value(&m.params[&sp.id]).unwrap_or_default(),
        workspace: m.dir.clone(),
        out_dir,
        upstream: sp
            .key
            .upstream
            .keys()
            .map(|u| (u.clone(), store.out_dir(&plan_digest(plan, u))))
            .collect(),
        datasets: sp
            .key
            .datasets
            .keys()
            .map(|d| (d.clone(), m.dir.join(&m.manifest.datasets[d].root)))
            .collect(),
        dataset_fingerprints: sp.key.datasets.clone(),
        dataset_specs: sp
            .key
            .datasets
            .keys()
            .map(|d| (d.clone(), m.manifest.datasets[d].clone()))
            .collect(),
        seed: sp.key.seed,
        cpus,
        task: sp
            .key
            .task
            .as_ref()
            .and_then(|t| serde_json::from_value(t.clone()).ok()),
        objective: sp
            .key
            .objective
            .as_ref()
            .and_then(|o| serde_json::from_value(o.clone()).ok()),
    }
}

fn plan_digest(plan: &Plan, id: &str) -> String {
    plan.stage(id).map(|s| s.digest.clone()).unwrap_or_default()
}

fn summary(
    outcome: Outcome,
    key: &str,
    duration_s: f64,
    message: Option<String>,
    outputs: Option<PathBuf>,
    log: Option<PathBuf>,
) -> StageSummary {
    StageSummary {
        outcome,
        key: key.to_owned(),
        duration_s,
        message,
        outputs,
        log,
    }
}

/// Hashes the declared outputs and moves the entry into the cache.
fn finish_entry(
    store: &Store,
    m: &LoadedManifest,
    sp: &crate::plan::StagePlan,
    pending: Pending,
    run_id: &str,
    duration_s: f64,
) -> io::Result<(PathBuf, BTreeMap<String, String>)> {
    let declared = m.params[&sp.id].declared_outputs();
    let mut hashes = BTreeMap::new();
    let mut fp = FingerprintDb::in_memory();
    for out in declared {
        let digest = fp
            .tree(&pending.out_dir().join(&out))
            .map_err(io::Error::other)?;
        hashes.insert(out, hex(&digest));
    }
    let meta = EntryMeta {
        stage: sp.id.clone(),
        run_id: run_id.to_owned(),
        finished_at: now_rfc3339(),
        duration_s,
        outputs: hashes.clone(),
        engine_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let dir = store.commit(pending, &sp.key, &meta)?;
    Ok((dir.join("out"), hashes))
}

/// The path of a stage's log in a run directory.
pub fn log_path(run_dir: &Path, stage: &str) -> PathBuf {
    run_dir.join("logs").join(format!("{stage}.log"))
}
