//! `engine apply`: plan, take the workspace lock, run, and summarise.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use engine_core::events::{Outcome, Reporter, RunStatus, Silent};
use engine_core::exec::slurm::{self, SlurmOptions};
use engine_core::exec::{ExecOptions, execute, execute_on_slurm};
use engine_core::fingerprint::FingerprintDb;
use engine_core::plan::make_plan;
use engine_core::store::Store;
use tokio::signal::unix::{SignalKind, signal};

use crate::cli::Executor;
use crate::commands::{load_or_report, report_invalid};
use crate::progress::{Bars, Lines};
use crate::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE};

/// The flags of `engine apply`.
#[derive(Debug)]
pub struct ApplyArgs {
    pub manifest: PathBuf,
    pub json: bool,
    pub cpus: Option<u32>,
    pub gpus: Option<String>,
    pub plain: bool,
    pub executor: Executor,
    pub partition: Option<String>,
}

/// Parses `--gpus`: `none`, or comma-separated ids.
fn parse_gpus(text: &str) -> Result<Vec<u32>, String> {
    let t = text.trim();
    if t.is_empty() || t == "none" {
        return Ok(Vec::new());
    }
    t.split(',')
        .map(|p| {
            p.trim()
                .parse::<u32>()
                .map_err(|_| format!("`{p}` is not a GPU id"))
        })
        .collect()
}

/// The GPUs this machine offers: CUDA_VISIBLE_DEVICES if set, else those nvidia-smi lists.
fn detect_gpus() -> Vec<u32> {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return parse_gpus(&v).unwrap_or_default();
    }
    let Ok(out) = std::process::Command::new("nvidia-smi").arg("-L").output() else {
        return Vec::new();
    };
    if !out.status.success() {
        return Vec::new();
    }
    let n = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("GPU "))
        .count();
    (0..n as u32).collect()
}

/// What `--cpus`, `--gpus` and `--executor` ask of this machine, checked before anything
/// is read.
#[derive(Debug)]
pub struct Machine {
    /// CPU threads for all stages together.
    pub cpus: u32,
    gpus: Option<Vec<u32>>,
    on_slurm: bool,
}

impl Machine {
    /// The flags, checked; the error is the line to print.
    pub fn from_flags(
        cpus: Option<u32>,
        gpus: Option<&str>,
        executor: Executor,
        partition: bool,
    ) -> Result<Machine, String> {
        let on_slurm = executor == Executor::Slurm;
        if partition && !on_slurm {
            return Err(
                "error: --partition only applies to --executor slurm (hint: add `--executor slurm`)"
                    .into(),
            );
        }
        let gpus = match gpus.map(parse_gpus) {
            Some(Ok(g)) => Some(g),
            Some(Err(e)) => {
                return Err(format!(
                    "error: --gpus: {e} (hint: write ids like `0,1`, or `none`)"
                ));
            }
            None => None,
        };
        let cpus = match cpus {
            Some(0) => return Err("error: --cpus must be at least 1".into()),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        };
        Ok(Machine {
            cpus,
            gpus,
            on_slurm,
        })
    }

    /// The GPUs `m`'s stages may use, checked against what each stage needs; the error is
    /// the line to print.
    pub fn gpus_for(&self, m: &engine_core::load::LoadedManifest) -> Result<Vec<u32>, String> {
        // Looking for GPUs can mean starting nvidia-smi; only do it when a stage asks for
        // one. On a cluster, Slurm hands GPUs out, not this machine.
        let gpus = match &self.gpus {
            Some(g) => g.clone(),
            None if self.on_slurm => Vec::new(),
            None if m.manifest.stages.values().any(|s| s.resources.gpus > 0) => detect_gpus(),
            None => Vec::new(),
        };
        for (id, stage) in m.manifest.stages.iter().filter(|_| !self.on_slurm) {
            if stage.resources.gpus as usize > gpus.len() {
                let mark = m.value_mark(&format!("/stages/{id}/resources/gpus"));
                return Err(format!(
                    "{}:{}:{}: stage `{id}` needs {} GPU(s) but this machine offers {} (hint: lower `resources.gpus`, pass --gpus, or run on a cluster)",
                    m.path.display(),
                    mark.line,
                    mark.col,
                    stage.resources.gpus,
                    gpus.len()
                ));
            }
        }
        Ok(gpus)
    }
}

/// Runs `engine apply`.
pub fn apply(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let machine = match Machine::from_flags(
        args.cpus,
        args.gpus.as_deref(),
        args.executor,
        args.partition.is_some(),
    ) {
        Ok(machine) => machine,
        Err(line) => {
            eprintln!("{line}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let m = match load_or_report(&args.manifest) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let gpus = match machine.gpus_for(&m) {
        Ok(g) => g,
        Err(line) => {
            eprintln!("{line}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let cpus = machine.cpus;

    let store = Store::at(&m.dir);
    store
        .create()
        .with_context(|| format!("cannot create the store {}", store.root().display()))?;
    let holder = format!(
        "pid {} running `engine apply {}`",
        std::process::id(),
        args.manifest.display()
    );
    let _lock = lock_workspace(&store, &m.dir, &holder)?;
    let reporter = choose_reporter(args.json, args.plain);
    let runner = match Runner::new(cpus, gpus, args.executor, args.partition.clone(), reporter) {
        Ok(r) => r,
        Err(RunnerError::Usage(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
        Err(RunnerError::Other(e)) => return Err(e),
    };
    let summary = match runner.run(&m, &store, None)? {
        Ran::Done(summary, _) => summary,
        Ran::Invalid(invalid) => return Ok(report_invalid(&invalid)),
    };

    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let count = |o: Outcome| summary.stages.values().filter(|s| s.outcome == o).count();
        let status = match summary.status {
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "FAILED",
            RunStatus::Cancelled => "was interrupted",
        };
        println!(
            "run {} {status} in {:.1}s: {} ran, {} cached, {} failed, {} skipped",
            summary.run_id,
            summary.duration_s,
            count(Outcome::Succeeded),
            count(Outcome::Cached),
            count(Outcome::Failed) + count(Outcome::TimedOut),
            count(Outcome::Skipped)
        );
        for id in m.dag.order() {
            if let Some(s) = summary.stages.get(id)
                && matches!(s.outcome, Outcome::Failed | Outcome::TimedOut)
            {
                println!("  {id}: {}", s.message.as_deref().unwrap_or("failed"));
            }
        }
        println!("  records: {}", summary.run_dir.display());
        if summary.status == RunStatus::Succeeded {
            print_headline(&m, &summary);
        }
    }
    Ok(match summary.status {
        RunStatus::Succeeded => ExitCode::SUCCESS,
        RunStatus::Failed => ExitCode::from(EXIT_FAILED),
        RunStatus::Cancelled => ExitCode::from(EXIT_INTERRUPTED),
    })
}

/// The scoring evaluation's answer, so that a run ends with what it means: the request's
/// requirements with their verdicts on validation (or, without a TaskSpec, the headline
/// figure). Nothing when the manifest has no scoring `evaluate` stage.
fn print_headline(m: &engine_core::load::LoadedManifest, summary: &engine_core::exec::RunSummary) {
    let Ok(scoring) = crate::develop::scoring(m) else {
        return;
    };
    let Some(dir) = summary
        .stages
        .get(&scoring.evaluate)
        .and_then(|s| s.outputs.as_ref())
    else {
        return;
    };
    let Some(metrics) = std::fs::read_to_string(dir.join("metrics.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
    else {
        return;
    };
    println!(
        "\nwhat `{}` says about `{}` on validation (the test split stays sealed):",
        scoring.evaluate, scoring.train
    );
    match crate::metrics::verdict_lines(&metrics) {
        Some(lines) => {
            for line in lines {
                println!("  {line}");
            }
        }
        None => {
            for name in ["auc", "macro_auc", "map50"] {
                let m = &metrics["metrics"][name];
                if let Some(v) = m["value"].as_f64() {
                    let ci = match (m["ci"][0].as_f64(), m["ci"][1].as_f64()) {
                        (Some(lo), Some(hi)) => format!(" (95% CI {lo:.3} to {hi:.3})"),
                        _ => String::new(),
                    };
                    println!("  {name} {v:.3}{ci}; the manifest states no requirements to check");
                    break;
                }
            }
        }
    }
}

/// Takes the workspace lock, saying so while another run holds it.
pub fn lock_workspace(
    store: &Store,
    dir: &std::path::Path,
    holder: &str,
) -> anyhow::Result<engine_core::store::WorkspaceLock> {
    store
        .lock(holder, |other| {
            let who = if other.is_empty() { "another engine run" } else { other };
            eprintln!("waiting: the workspace {} is locked by {who}; this run starts when it ends (Ctrl-C to give up)", dir.display());
        })
        .context("cannot lock the workspace")
}

/// Progress bars on a terminal, plain lines otherwise, nothing with `--json`.
pub fn choose_reporter(json: bool, plain: bool) -> Arc<dyn Reporter> {
    if json {
        Arc::new(Silent)
    } else if std::io::stderr().is_terminal() && !plain {
        Arc::new(Bars::new())
    } else {
        Arc::new(Lines::new())
    }
}

/// Why a runner could not be made.
pub enum RunnerError {
    /// The user's flags or cluster do not fit (exit 2).
    Usage(String),
    /// Anything else.
    Other(anyhow::Error),
}

/// What a run came to.
pub enum Ran {
    /// It ran (to success, failure or interruption), and whether its time limit stopped it.
    Done(engine_core::exec::RunSummary, bool),
    /// Planning found the manifest invalid (for example a missing input file).
    Invalid(engine_core::load::Invalid),
}

/// Runs manifests one after another with shared settings: the async runtime, the executor,
/// the reporter, and Ctrl-C / SIGTERM handling registered once for all runs.
pub struct Runner {
    runtime: tokio::runtime::Runtime,
    opts: ExecOptions,
    slurm: Option<SlurmOptions>,
    reporter: Arc<dyn Reporter>,
    interrupt: tokio::sync::watch::Receiver<bool>,
}

impl Runner {
    /// A runner for this machine (or Slurm), listening for Ctrl-C and SIGTERM from now on.
    pub fn new(
        cpus: u32,
        gpus: Vec<u32>,
        executor: Executor,
        partition: Option<String>,
        reporter: Arc<dyn Reporter>,
    ) -> Result<Runner, RunnerError> {
        let program = std::env::current_exe()
            .context("cannot find the engine binary to run stages with")
            .map_err(RunnerError::Other)?;
        let opts = ExecOptions {
            program: program.clone(),
            program_args: vec!["stage-exec".into()],
            cpus,
            gpus,
            grace: Duration::from_secs(5),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")
            .map_err(RunnerError::Other)?;
        let slurm = match executor {
            Executor::Slurm => {
                runtime
                    .block_on(slurm::check(partition.as_deref()))
                    .map_err(|e| RunnerError::Usage(e.to_string()))?;
                Some(SlurmOptions::new(
                    program,
                    vec!["stage-exec".into()],
                    partition,
                ))
            }
            Executor::Local => None,
        };
        // Register for SIGINT and SIGTERM before any stage starts, so that an interrupt
        // always reaches the executor rather than killing the engine outright.
        let (tx, interrupt) = tokio::sync::watch::channel(false);
        runtime
            .block_on(async {
                let mut int = signal(SignalKind::interrupt())?;
                let mut term = signal(SignalKind::terminate())?;
                tokio::spawn(async move {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                    eprintln!("\ninterrupted: stopping running stages (nothing partial is stored)");
                    let _ = tx.send(true);
                });
                Ok::<(), std::io::Error>(())
            })
            .context("cannot listen for Ctrl-C")
            .map_err(RunnerError::Other)?;
        Ok(Runner {
            runtime,
            opts,
            slurm,
            reporter,
            interrupt,
        })
    }

    /// Whether Ctrl-C or SIGTERM arrived.
    pub fn interrupted(&self) -> bool {
        *self.interrupt.borrow()
    }

    /// Plans and runs `m` (the caller holds the workspace lock), stopping it after `limit`.
    pub fn run(
        &self,
        m: &engine_core::load::LoadedManifest,
        store: &Store,
        limit: Option<Duration>,
    ) -> anyhow::Result<Ran> {
        // Plan under the lock, so that what another run just stored counts as cached.
        let mut fp = FingerprintDb::open(&store.fingerprint_memo());
        let plan = match make_plan(m, store, &mut fp) {
            Ok(p) => p,
            Err(invalid) => return Ok(Ran::Invalid(invalid)),
        };
        let _ = fp.save();
        let reporter = self.reporter.clone();
        let mut interrupt = self.interrupt.clone();
        let (tx, rx) = tokio::sync::watch::channel(*interrupt.borrow());
        self.runtime.block_on(async {
            let run = async {
                match &self.slurm {
                    Some(s) => execute_on_slurm(m, &plan, store, s, reporter, rx).await,
                    None => execute(m, &plan, store, &self.opts, reporter, rx).await,
                }
            };
            tokio::pin!(run);
            let timer = async {
                match limit {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::pin!(timer);
            let mut timed_out = false;
            let mut stopping = *interrupt.borrow();
            loop {
                tokio::select! {
                    summary = &mut run => return Ok(Ran::Done(summary?, timed_out)),
                    () = &mut timer, if !timed_out && !stopping => {
                        eprintln!("time limit reached: stopping this run's stages");
                        timed_out = true;
                        stopping = true;
                        let _ = tx.send(true);
                    }
                    changed = interrupt.changed(), if !stopping => {
                        if changed.is_err() || *interrupt.borrow() {
                            stopping = true;
                            let _ = tx.send(true);
                        }
                    }
                }
            }
        })
    }
}
