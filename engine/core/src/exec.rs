//! The local executor: walks the sealed graph with tokio, runs each ready stage as a
//! child process of the engine binary within the declared CPU and GPU budget, and
//! stores each result atomically. A failure stops the stages that depend on it while
//! independent stages finish; a cancellation stops every child and stores nothing partial.

use std::collections::{BTreeMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::clock::{new_run_id, now_rfc3339};
use crate::events::{Event, Outcome, Reporter, RunStatus, Stamped, parse_progress};
use crate::fingerprint::{FingerprintDb, hex};
use crate::job::StageJob;
use crate::load::LoadedManifest;
use crate::manifest::StageParams;
use crate::plan::{Plan, Status};
use crate::record::{LockRecord, LockedStage};
use crate::store::{EntryMeta, Pending, Store};

/// How stages are launched and what the machine offers.
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

struct Sink {
    file: Mutex<File>,
    reporter: Arc<dyn Reporter>,
}

impl Sink {
    fn emit(&self, event: Event) {
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

/// Runs every stage of `plan` that is not cached. The caller holds the workspace lock.
/// Flipping `cancel` to `true` stops all running stages and ends the run.
pub async fn execute(
    m: &LoadedManifest,
    plan: &Plan,
    store: &Store,
    opts: &ExecOptions,
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

    let total_cpus = opts.cpus.max(1);
    let mut free_cpus = total_cpus;
    let mut free_gpus: VecDeque<u32> = opts.gpus.iter().copied().collect();
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
                if want_gpus > opts.gpus.len() {
                    let msg = format!(
                        "needs {want_gpus} GPU(s) but this machine offers {}",
                        opts.gpus.len()
                    );
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
                if cpus > free_cpus || want_gpus > free_gpus.len() {
                    continue;
                }
                free_cpus -= cpus;
                let gpus: Vec<u32> = free_gpus.drain(..want_gpus).collect();
                let pending = store.begin(&sp.digest, &run_id, &sp.id)?;
                let job = StageJob {
                    run_id: run_id.clone(),
                    stage: sp.id.clone(),
                    kind: stage.uses,
                    params: serde_json::to_value(&m.params[&sp.id]).unwrap_or_default(),
                    workspace: m.dir.clone(),
                    out_dir: pending.out_dir(),
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
                    seed: sp.key.seed,
                    cpus,
                };
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
                let launch = Launch {
                    opts: opts.clone(),
                    sink: sink.clone(),
                    run_dir: run_dir.clone(),
                    job,
                    pending,
                    cpus,
                    gpus,
                    timeout,
                    cancel: cancel.clone(),
                };
                tasks.spawn(launch.run());
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
                let log = run_dir.join("logs").join(format!("{}.log", f.id));
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
    let declared: Vec<String> = match &m.params[&sp.id] {
        StageParams::Command(p) => p.outputs.clone(),
    };
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

/// One stage launch, moved into its task.
struct Launch {
    opts: ExecOptions,
    sink: Arc<Sink>,
    run_dir: PathBuf,
    job: StageJob,
    pending: Pending,
    cpus: u32,
    gpus: Vec<u32>,
    timeout: Option<Duration>,
    cancel: watch::Receiver<bool>,
}

impl Launch {
    async fn run(mut self) -> Finished {
        let started = Instant::now();
        let (outcome, message) = match self.supervise().await {
            Ok(pair) => pair,
            Err(e) => (
                Outcome::Failed,
                Some(format!("could not run the stage: {e}")),
            ),
        };
        Finished {
            id: self.job.stage.clone(),
            outcome,
            duration: started.elapsed(),
            message,
            pending: self.pending,
            cpus: self.cpus,
            gpus: self.gpus,
        }
    }

    async fn supervise(&mut self) -> io::Result<(Outcome, Option<String>)> {
        let id = self.job.stage.clone();
        let job_file = self.run_dir.join("jobs").join(format!("{id}.json"));
        crate::store::write_json_unsynced(&job_file, &self.job)?;
        let log_path = self.run_dir.join("logs").join(format!("{id}.log"));
        let log = Arc::new(Mutex::new(File::create(&log_path)?));
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));

        let mut cmd = Command::new(&self.opts.program);
        cmd.args(&self.opts.program_args)
            .arg(&job_file)
            .env(
                "CUDA_VISIBLE_DEVICES",
                self.gpus
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .env("OMP_NUM_THREADS", self.cpus.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        let mut readers = JoinSet::new();
        if let Some(out) = child.stdout.take() {
            readers.spawn(pump(
                out,
                id.clone(),
                log.clone(),
                tail.clone(),
                self.sink.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            readers.spawn(pump(
                err,
                id.clone(),
                log.clone(),
                tail.clone(),
                self.sink.clone(),
            ));
        }

        let deadline = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut cancel = self.cancel.clone();
        let cancelled = async move {
            loop {
                if *cancel.borrow() {
                    return;
                }
                if cancel.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let (status, stopped) = tokio::select! {
            s = child.wait() => (Some(s?), None),
            _ = deadline => (None, Some(Outcome::TimedOut)),
            _ = cancelled => (None, Some(Outcome::Cancelled)),
        };
        let status = match status {
            Some(s) => s,
            None => stop(&mut child, pgid, self.opts.grace).await?,
        };
        // Readers end at end-of-file; a grandchild that escaped the process group could keep
        // a pipe open, so do not wait for them forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while readers.join_next().await.is_some() {}
        })
        .await;
        if let Some(pg) = pgid {
            // Whatever is left of the stage's process group goes with it.
            let _ = killpg(pg, Signal::SIGKILL);
        }

        let last_lines = || {
            let t = tail
                .lock()
                .map(|t| t.iter().cloned().collect::<Vec<_>>().join(" | "))
                .unwrap_or_default();
            if t.is_empty() {
                String::new()
            } else {
                format!("; last output: {t}")
            }
        };
        let log_hint = format!(" (log: {})", log_path.display());
        Ok(match stopped {
            Some(Outcome::TimedOut) => {
                let limit = self.timeout.map_or(0.0, |t| t.as_secs_f64() / 60.0);
                (
                    Outcome::TimedOut,
                    Some(format!(
                        "stopped after its time limit of {limit} min{log_hint}"
                    )),
                )
            }
            Some(o) => (o, Some("stopped: the run was interrupted".into())),
            None if status.success() => (Outcome::Succeeded, None),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let how = match (status.code(), status.signal()) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(sig)) => format!("was killed by signal {sig}"),
                    _ => "failed".to_owned(),
                };
                (
                    Outcome::Failed,
                    Some(format!("{how}{}{log_hint}", last_lines())),
                )
            }
        })
    }
}

/// Asks the stage's process group to stop, then forces it after `grace`.
async fn stop(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    if let Some(pg) = pgid {
        let _ = killpg(pg, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = killpg(pg, Signal::SIGKILL);
            }
            child.kill().await.ok();
            child.wait().await
        }
    }
}

/// Copies a child's output into its log, keeps the last lines, and forwards progress lines.
async fn pump<R: AsyncRead + Unpin>(
    stream: R,
    stage: String,
    log: Arc<Mutex<File>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    sink: Arc<Sink>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&buf);
                }
                let line = String::from_utf8_lossy(&buf);
                let line = line.trim_end();
                if let Some(ev) = parse_progress(&stage, line) {
                    sink.emit(ev);
                } else if !line.trim().is_empty()
                    && let Ok(mut t) = tail.lock()
                {
                    t.push_back(line.chars().take(300).collect());
                    while t.len() > 3 {
                        t.pop_front();
                    }
                }
            }
        }
    }
}

/// The path of a stage's log in a run directory.
pub fn log_path(run_dir: &Path, stage: &str) -> PathBuf {
    run_dir.join("logs").join(format!("{stage}.log"))
}
