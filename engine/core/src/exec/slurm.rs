//! The Slurm executor's launcher: each stage is one `sbatch` job running the same command
//! the local executor runs (`engine stage-exec JOB`); one poller asks `squeue` about all
//! of a run's jobs at once, and an interrupt cancels them with one `scancel`.
//!
//! The workspace (and so `.engine/`) must be on a filesystem every node shares: jobs read
//! their job file and upstream outputs there and write their outputs into the entry being
//! built, which the engine process commits exactly as the local executor does.
//!
//! A stage's resources become `--cpus-per-task`, `--gres=gpu:N` (only when N > 0), `--mem`
//! (memory_gb in MB, rounded up) and `--time`: its `timeout_minutes` plus
//! [`TIME_MARGIN_MINUTES`] for the node to start the engine, rounded up to whole minutes
//! (Slurm's unit); no `--time` when the stage has no timeout. Slurm enforces limits
//! coarsely (its controller looks about every 30 s), so a stage may run up to a minute or
//! so past its limit before it is stopped.
//!
//! Slurm commands run with the engine's environment (`SLURM_CONF` included), and jobs are
//! submitted with it (`sbatch`'s default `--export=ALL`), so modules loaded before
//! `engine apply` are loaded in the jobs too.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use super::{Budget, Ended, Launcher, StageLaunch, keep_tail, last_output};
use crate::events::{Event, Outcome};

/// Minutes added to a stage's `timeout_minutes` before it becomes `--time`.
pub const TIME_MARGIN_MINUTES: f64 = 0.5;

/// How often a preempted job is submitted again before its stage fails.
pub const MAX_RESUBMITS: u32 = 3;

/// How the Slurm executor submits and watches jobs.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// The program that runs one stage job (the engine binary itself), on the nodes.
    pub program: PathBuf,
    /// Arguments before the job file (for the engine: `stage-exec`).
    pub program_args: Vec<OsString>,
    /// The partition to submit to; the cluster's default when `None`.
    pub partition: Option<String>,
    /// First interval between two polls; it doubles up to `poll_max`.
    pub poll_min: Duration,
    /// Longest interval between two polls.
    pub poll_max: Duration,
}

impl SlurmOptions {
    /// Options for `program`, polling from 0.5 s up to 5 s.
    pub fn new(program: PathBuf, program_args: Vec<OsString>, partition: Option<String>) -> Self {
        SlurmOptions {
            program,
            program_args,
            partition,
            poll_min: Duration::from_millis(500),
            poll_max: Duration::from_secs(5),
        }
    }
}

/// Why the cluster cannot take a run.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    /// A Slurm command is not installed.
    #[error(
        "cannot run `{program}`: {source} (hint: install Slurm's client commands, load the cluster's Slurm module, or put them on PATH)"
    )]
    Missing {
        /// The command.
        program: String,
        /// Why it could not start.
        source: io::Error,
    },
    /// `SLURM_CONF` names a file that is not there.
    #[error(
        "SLURM_CONF names {0}, which does not exist (hint: point SLURM_CONF at the cluster's slurm.conf, or unset it)"
    )]
    MissingConfig(PathBuf),
    /// The controller did not answer.
    #[error(
        "cannot reach the Slurm controller: {0} (hint: check that slurmctld is running and that SLURM_CONF points at the cluster's slurm.conf)"
    )]
    Unreachable(String),
    /// The partition does not exist.
    #[error(
        "the cluster has no partition `{0}` (hint: `sinfo --summarize` lists them; leave out --partition for the default one)"
    )]
    NoPartition(String),
}

/// Checks, before a run, that the Slurm commands exist, the controller answers and the
/// partition (if any) exists.
pub async fn check(partition: Option<&str>) -> Result<(), SlurmError> {
    if let Some(conf) = std::env::var_os("SLURM_CONF").map(PathBuf::from)
        && !conf.is_file()
    {
        return Err(SlurmError::MissingConfig(conf));
    }
    for program in ["sbatch", "squeue", "scancel"] {
        let status = Command::new(program)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        if let Err(source) = status {
            return Err(SlurmError::Missing {
                program: program.to_owned(),
                source,
            });
        }
    }
    let ping = run_tool("scontrol", &["ping".to_owned()], Duration::from_secs(30))
        .await
        .map_err(|e| match e {
            ToolError::Spawn(source) => SlurmError::Missing {
                program: "scontrol".into(),
                source,
            },
            ToolError::Failed(msg) => SlurmError::Unreachable(msg),
        })?;
    if ping.contains("DOWN") || !ping.contains("UP") {
        return Err(SlurmError::Unreachable(one_line(&ping)));
    }
    if let Some(p) = partition {
        let args = ["show".to_owned(), "partition".to_owned(), p.to_owned()];
        match run_tool("scontrol", &args, Duration::from_secs(30)).await {
            Ok(_) => {}
            Err(ToolError::Failed(msg)) if msg.contains("not found") => {
                return Err(SlurmError::NoPartition(p.to_owned()));
            }
            Err(ToolError::Failed(msg)) => return Err(SlurmError::Unreachable(msg)),
            Err(ToolError::Spawn(source)) => {
                return Err(SlurmError::Missing {
                    program: "scontrol".into(),
                    source,
                });
            }
        }
    }
    Ok(())
}

enum ToolError {
    Spawn(io::Error),
    Failed(String),
}

/// Runs a Slurm command and returns its standard output, or why it failed.
async fn run_tool(program: &str, args: &[String], limit: Duration) -> Result<String, ToolError> {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(ToolError::Spawn)?;
    let out = match tokio::time::timeout(limit, child.wait_with_output()).await {
        Ok(out) => out.map_err(ToolError::Spawn)?,
        Err(_) => {
            return Err(ToolError::Failed(format!(
                "`{program}` did not answer within {} s",
                limit.as_secs()
            )));
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = if stderr.trim().is_empty() {
            stdout.as_str()
        } else {
            stderr.as_ref()
        };
        Err(ToolError::Failed(format!(
            "`{program}` {}: {}",
            out.status,
            one_line(text)
        )))
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a job ended, as the poller saw it.
#[derive(Clone, Debug)]
struct JobEnd {
    /// Slurm's state name (`COMPLETED`, `FAILED`, ...), or `None` when Slurm lost the job.
    state: Option<String>,
    /// Slurm's reason, or why the poller gave up on the job.
    reason: String,
}

/// The jobs the poller watches.
#[derive(Default)]
struct Watched {
    /// Who waits for each job's end, by job id.
    waiting: BTreeMap<String, oneshot::Sender<JobEnd>>,
    /// Jobs already asked to stop.
    cancelled: BTreeSet<String>,
    /// Polls in a row that did not list a job.
    unseen: BTreeMap<String, u32>,
}

struct Shared {
    watched: Mutex<Watched>,
    changed: Notify,
}

/// Submits stages with `sbatch`; one background task polls every job of the run.
pub(crate) struct SlurmLauncher {
    opts: SlurmOptions,
    shared: Arc<Shared>,
    poller: Mutex<Option<JoinHandle<()>>>,
    cancel: watch::Receiver<bool>,
}

impl std::fmt::Debug for SlurmLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlurmLauncher")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl SlurmLauncher {
    pub(crate) fn new(opts: SlurmOptions, cancel: watch::Receiver<bool>) -> SlurmLauncher {
        SlurmLauncher {
            opts,
            shared: Arc::new(Shared {
                watched: Mutex::new(Watched::default()),
                changed: Notify::new(),
            }),
            poller: Mutex::new(None),
            cancel,
        }
    }

    /// Stops the poller (after the run, when no job is left to watch).
    pub(crate) fn shut_down(&self) {
        if let Ok(mut p) = self.poller.lock()
            && let Some(handle) = p.take()
        {
            handle.abort();
        }
    }

    /// Starts the poller on the first submission (it must run inside the runtime).
    fn ensure_poller(&self) {
        if let Ok(mut p) = self.poller.lock()
            && p.is_none()
        {
            *p = Some(tokio::spawn(poll(
                self.shared.clone(),
                self.opts.clone(),
                self.cancel.clone(),
            )));
        }
    }

    /// Registers a submitted job and returns where its end will arrive.
    fn watch_job(&self, id: &str) -> oneshot::Receiver<JobEnd> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.shared.watched.lock() {
            w.waiting.insert(id.to_owned(), tx);
        }
        self.shared.changed.notify_one();
        rx
    }

    /// The `sbatch` arguments of one stage (the batch script comes last).
    fn sbatch_args(&self, stage: &StageLaunch, script: &Path, append: bool) -> Vec<OsString> {
        let r = &stage.resources;
        let mut args: Vec<OsString> = vec![
            "--parsable".into(),
            "--no-requeue".into(),
            format!("--job-name=engine-{}-{}", stage.job.run_id, stage.job.stage).into(),
            os_arg("--output=", &stage.log),
            os_arg("--chdir=", &stage.job.workspace),
            format!("--cpus-per-task={}", stage.cpus).into(),
        ];
        if append {
            args.push("--open-mode=append".into());
        }
        if let Some(p) = &self.opts.partition {
            args.push(format!("--partition={p}").into());
        }
        if r.gpus > 0 {
            args.push(format!("--gres=gpu:{}", r.gpus).into());
        }
        if let Some(gb) = r.memory_gb {
            args.push(format!("--mem={}M", memory_mb(gb)).into());
        }
        if let Some(min) = r.timeout_minutes {
            args.push(format!("--time={}", time_limit_minutes(min)).into());
        }
        args.push(script.as_os_str().to_owned());
        args
    }

    async fn submit(&self, stage: &StageLaunch, script: &Path, append: bool) -> io::Result<String> {
        let mut cmd = Command::new("sbatch");
        cmd.args(self.sbatch_args(stage, script, append))
            .env("OMP_NUM_THREADS", stage.cpus.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // Slurm sets CUDA_VISIBLE_DEVICES for the GPUs it grants; a stage without GPUs
        // must not inherit the submitting shell's.
        if stage.resources.gpus > 0 {
            cmd.env_remove("CUDA_VISIBLE_DEVICES");
        } else {
            cmd.env("CUDA_VISIBLE_DEVICES", "");
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run `sbatch`: {e}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "`sbatch` refused the job: {}",
                one_line(&String::from_utf8_lossy(&out.stderr))
            )));
        }
        // `--parsable` prints `ID` or `ID;CLUSTER`.
        let text = String::from_utf8_lossy(&out.stdout);
        let id = text.trim().split(';').next().unwrap_or("").trim();
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(io::Error::other(format!(
                "`sbatch` printed no job id: {}",
                one_line(&text)
            )));
        }
        Ok(id.to_owned())
    }
}

impl Launcher for SlurmLauncher {
    fn budget(&self) -> Option<Budget> {
        None
    }

    async fn launch(self: Arc<Self>, stage: StageLaunch) -> io::Result<Ended> {
        let id = stage.job.stage.clone();
        let interrupted = || {
            Ok((
                Outcome::Cancelled,
                Some("stopped: the run was interrupted".into()),
            ))
        };
        if *stage.cancel.borrow() {
            return interrupted();
        }
        let script = stage.job_file.with_extension("sh");
        write_script(&script, &self.opts, &stage.job_file)?;
        self.ensure_poller();
        let log_hint = format!(" (log: {})", stage.log.display());
        let mut preempted = 0;
        loop {
            let job = self.submit(&stage, &script, preempted > 0).await?;
            let note = if preempted == 0 {
                format!("submitted as Slurm job {job}")
            } else {
                format!(
                    "preempted; submitted again as Slurm job {job} ({preempted} of {MAX_RESUBMITS})"
                )
            };
            stage.sink.emit(Event::StageProgress {
                stage: id.clone(),
                fraction: None,
                message: note,
            });
            let end = self
                .watch_job(&job)
                .await
                .map_err(|_| io::Error::other("the Slurm poller stopped"))?;
            let Some(state) = end.state else {
                return Ok((
                    Outcome::Failed,
                    Some(format!("Slurm job {job} {}{log_hint}", end.reason)),
                ));
            };
            let by = format!("Slurm job {job}");
            let tail = || last_output(&log_tail(&stage.log, &id));
            let failed = |what: String| {
                Ok((
                    Outcome::Failed,
                    Some(format!("{what} ({by}){}{log_hint}", tail())),
                ))
            };
            return match state.as_str() {
                "COMPLETED" => Ok((Outcome::Succeeded, None)),
                "PREEMPTED" if preempted < MAX_RESUBMITS && !*stage.cancel.borrow() => {
                    preempted += 1;
                    continue;
                }
                "PREEMPTED" => failed(format!("preempted {} times", preempted + 1)),
                "CANCELLED" if *stage.cancel.borrow() => interrupted(),
                "CANCELLED" => failed("cancelled outside the engine".into()),
                "TIMEOUT" => {
                    let limit = stage.resources.timeout_minutes.unwrap_or(0.0);
                    Ok((
                        Outcome::TimedOut,
                        Some(format!(
                            "stopped after its time limit of {limit} min ({by}, --time={}){log_hint}",
                            time_limit_minutes(limit)
                        )),
                    ))
                }
                "OUT_OF_MEMORY" => failed("out of memory".into()),
                "NODE_FAIL" => failed("node failure".into()),
                "BOOT_FAIL" => failed("its node failed to boot".into()),
                "DEADLINE" => failed("missed its deadline".into()),
                "FAILED" => failed(exit_description(&job).await),
                other => failed(format!("ended in Slurm state {other} ({})", end.reason)),
            };
        }
    }
}

/// How a failed job exited, from `scontrol show job` (`ExitCode=CODE:SIGNAL`).
async fn exit_description(job: &str) -> String {
    let args = ["show".to_owned(), "job".to_owned(), job.to_owned()];
    let text = run_tool("scontrol", &args, Duration::from_secs(30))
        .await
        .unwrap_or_default();
    match field(&text, "ExitCode").and_then(|v| v.split_once(':')) {
        Some((_, sig)) if sig != "0" => format!("was killed by signal {sig}"),
        Some((code, _)) => format!("exited with status {code}"),
        None => "failed".into(),
    }
}

/// The value of `Key=` in `scontrol show` output.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(prefix.as_str()))
}

/// The last lines of a stage's log, as the local executor keeps them.
fn log_tail(log: &Path, stage: &str) -> VecDeque<String> {
    let mut tail = VecDeque::new();
    if let Ok(bytes) = std::fs::read(log) {
        // Only the end matters; a huge log is not read line by line from the start.
        let start = bytes.len().saturating_sub(64 * 1024);
        for line in String::from_utf8_lossy(&bytes[start..]).lines() {
            let _ = keep_tail(&mut tail, stage, line.trim_end());
        }
    }
    tail
}

/// `--mem`: memory_gb in MB, rounded up.
fn memory_mb(gb: f64) -> u64 {
    (gb * 1024.0).ceil().max(1.0) as u64
}

/// `--time`: the stage's limit plus [`TIME_MARGIN_MINUTES`], rounded up to whole minutes.
pub fn time_limit_minutes(timeout_minutes: f64) -> u64 {
    (timeout_minutes + TIME_MARGIN_MINUTES).ceil().max(1.0) as u64
}

fn os_arg(flag: &str, path: &Path) -> OsString {
    let mut s = OsString::from(flag);
    s.push(path.as_os_str());
    s
}

/// Writes the batch script: it runs the very command the local executor runs.
fn write_script(path: &Path, opts: &SlurmOptions, job_file: &Path) -> io::Result<()> {
    let mut text = String::from("#!/bin/sh\n# Written by engine: one stage of a run.\nexec");
    text.push(' ');
    text.push_str(&quote(opts.program.as_os_str())?);
    for a in &opts.program_args {
        text.push(' ');
        text.push_str(&quote(a)?);
    }
    text.push(' ');
    text.push_str(&quote(job_file.as_os_str())?);
    text.push('\n');
    std::fs::write(path, text)
}

/// Quotes a word for `sh`.
fn quote(word: &std::ffi::OsStr) -> io::Result<String> {
    let s = word
        .to_str()
        .ok_or_else(|| io::Error::other(format!("{} is not UTF-8", word.to_string_lossy())))?;
    Ok(format!("'{}'", s.replace('\'', r"'\''")))
}

/// Slurm states after which a job runs no more.
fn is_final(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "CANCELLED"
            | "FAILED"
            | "TIMEOUT"
            | "PREEMPTED"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "DEADLINE"
            | "OUT_OF_MEMORY"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

/// Polls in a row that may miss a job before `scontrol` is asked about it.
const UNSEEN_LIMIT: u32 = 3;
/// Failed polls in a row after which the run's jobs are given up.
const FAILED_POLL_LIMIT: u32 = 24;

/// Watches every registered job with one `squeue` per poll, backing off from `poll_min` to
/// `poll_max`; cancels them all with one `scancel` once the run is interrupted.
async fn poll(shared: Arc<Shared>, opts: SlurmOptions, mut cancel: watch::Receiver<bool>) {
    let mut interval = opts.poll_min;
    let mut failed_polls = 0;
    // Whether an interrupt may still arrive (the sender may be gone without one).
    let mut listening = true;
    loop {
        let (ids, to_cancel) = match shared.watched.lock() {
            Ok(w) => (
                w.waiting.keys().cloned().collect::<Vec<_>>(),
                w.waiting
                    .keys()
                    .filter(|id| !w.cancelled.contains(*id))
                    .cloned()
                    .collect::<Vec<_>>(),
            ),
            Err(_) => return,
        };
        let cancelled = *cancel.borrow();
        if cancelled && !to_cancel.is_empty() {
            let _ = run_tool("scancel", &[to_cancel.join(",")], Duration::from_secs(60)).await;
            if let Ok(mut w) = shared.watched.lock() {
                w.cancelled.extend(to_cancel);
            }
            interval = opts.poll_min;
        }
        if ids.is_empty() {
            interval = opts.poll_min;
            let notified = shared.changed.notified();
            tokio::select! {
                _ = notified => {}
                changed = cancel.changed(), if listening && !cancelled => listening = changed.is_ok(),
            }
            continue;
        }
        let args = [
            format!("--jobs={}", ids.join(",")),
            "--states=all".to_owned(),
            "--noheader".to_owned(),
            "--format=%i|%T|%r".to_owned(),
        ];
        let seen: Option<BTreeMap<String, (String, String)>> =
            match run_tool("squeue", &args, Duration::from_secs(60)).await {
                Ok(text) => Some(parse_squeue(&text)),
                // Asked about one job only, squeue fails once Slurm has forgotten it.
                Err(ToolError::Failed(msg)) if msg.contains("Invalid job id") => {
                    Some(BTreeMap::new())
                }
                Err(ToolError::Failed(msg)) => {
                    failed_polls += 1;
                    if failed_polls >= FAILED_POLL_LIMIT {
                        give_up(&shared, &ids, &format!("could not be watched: {msg}"));
                    }
                    None
                }
                Err(ToolError::Spawn(e)) => {
                    give_up(
                        &shared,
                        &ids,
                        &format!("could not be watched: cannot run `squeue`: {e}"),
                    );
                    None
                }
            };
        if let Some(seen) = seen {
            failed_polls = 0;
            for id in &ids {
                match seen.get(id) {
                    Some((state, reason)) if is_final(state) => finish(
                        &shared,
                        id,
                        JobEnd {
                            state: Some(state.clone()),
                            reason: reason.clone(),
                        },
                    ),
                    Some(_) => {
                        if let Ok(mut w) = shared.watched.lock() {
                            w.unseen.remove(id);
                        }
                    }
                    None => {
                        let misses = shared.watched.lock().map_or(0, |mut w| {
                            let n = w.unseen.entry(id.clone()).or_insert(0);
                            *n += 1;
                            *n
                        });
                        if misses >= UNSEEN_LIMIT {
                            finish(&shared, id, ask_scontrol(id).await);
                        }
                    }
                }
            }
        }
        let wait = if *cancel.borrow() {
            opts.poll_min
        } else {
            interval
        };
        let notified = shared.changed.notified();
        tokio::select! {
            _ = tokio::time::sleep(wait) => {
                interval = (interval * 2).min(opts.poll_max);
            }
            // A new job or an interrupt: look again soon.
            _ = notified => interval = opts.poll_min,
            changed = cancel.changed(), if listening && !*cancel.borrow() => {
                listening = changed.is_ok();
                interval = opts.poll_min;
            }
        }
    }
}

/// What `scontrol` knows about a job `squeue` no longer lists.
async fn ask_scontrol(id: &str) -> JobEnd {
    let args = ["show".to_owned(), "job".to_owned(), id.to_owned()];
    match run_tool("scontrol", &args, Duration::from_secs(30)).await {
        Ok(text) => match field(&text, "JobState") {
            Some(state) if is_final(state) => JobEnd {
                state: Some(state.to_owned()),
                reason: field(&text, "Reason").unwrap_or("").to_owned(),
            },
            _ => JobEnd {
                state: None,
                reason: "is not listed by squeue and scontrol does not say it ended".into(),
            },
        },
        Err(_) => JobEnd {
            state: None,
            reason: "ended but Slurm no longer knows how (hint: raise MinJobAge in slurm.conf so finished jobs stay visible longer than the engine's poll interval)".into(),
        },
    }
}

fn finish(shared: &Shared, id: &str, end: JobEnd) {
    if let Ok(mut w) = shared.watched.lock() {
        w.unseen.remove(id);
        w.cancelled.remove(id);
        if let Some(tx) = w.waiting.remove(id) {
            let _ = tx.send(end);
        }
    }
}

fn give_up(shared: &Shared, ids: &[String], why: &str) {
    for id in ids {
        finish(
            shared,
            id,
            JobEnd {
                state: None,
                reason: why.to_owned(),
            },
        );
    }
}

/// Parses `squeue --format=%i|%T|%r` lines into state and reason by job id.
fn parse_squeue(text: &str) -> BTreeMap<String, (String, String)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.trim().splitn(3, '|');
            let id = parts.next()?.trim();
            let state = parts.next()?.trim();
            let reason = parts.next().unwrap_or("").trim();
            (!id.is_empty()).then(|| (id.to_owned(), (state.to_owned(), reason.to_owned())))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_limits_get_a_margin_and_round_up_to_minutes() {
        assert_eq!(time_limit_minutes(0.01), 1);
        assert_eq!(time_limit_minutes(0.5), 1);
        assert_eq!(time_limit_minutes(0.6), 2);
        assert_eq!(time_limit_minutes(10.0), 11);
        assert_eq!(memory_mb(0.5), 512);
        assert_eq!(memory_mb(1.0001), 1025);
    }

    #[test]
    fn squeue_lines_and_scontrol_fields_parse() {
        let seen = parse_squeue("12|COMPLETED|None\n13|PENDING|Resources\n\n");
        assert_eq!(seen["12"], ("COMPLETED".into(), "None".into()));
        assert_eq!(seen["13"].0, "PENDING");
        let text = "JobId=12 JobName=x\n   JobState=FAILED Reason=NonZeroExitCode Dependency=(null)\n   ExitCode=3:0\n";
        assert_eq!(field(text, "ExitCode"), Some("3:0"));
        assert_eq!(field(text, "JobState"), Some("FAILED"));
        assert!(is_final("OUT_OF_MEMORY") && !is_final("COMPLETING"));
    }

    #[test]
    fn the_batch_script_quotes_its_words() {
        let d = tempfile::tempdir().unwrap();
        let opts = SlurmOptions::new("/opt/it's/engine".into(), vec!["stage-exec".into()], None);
        let script = d.path().join("a.sh");
        write_script(&script, &opts, Path::new("/w/jobs/a.json")).unwrap();
        let text = std::fs::read_to_string(&script).unwrap();
        assert!(
            text.ends_with("exec '/opt/it'\\''s/engine' 'stage-exec' '/w/jobs/a.json'\n"),
            "{text}"
        );
    }
}
