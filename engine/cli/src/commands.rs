//! The short subcommands: validate, plan, graph and the hidden stage runner.

use std::path::Path;
use std::process::ExitCode;

use engine_core::fingerprint::FingerprintDb;
use engine_core::load::{Invalid, LoadedManifest, load};
use engine_core::plan::{Status, make_plan};
use engine_core::store::Store;

use crate::cli::GraphFormat;
use crate::{EXIT_FAILED, EXIT_USAGE};

/// Prints a manifest's problems and returns the usage exit code.
pub fn report_invalid(invalid: &Invalid) -> ExitCode {
    eprintln!("{}", invalid.render());
    let n = invalid.diagnostics.0.len();
    if n > 1 {
        eprintln!("{n} problems found");
    }
    ExitCode::from(EXIT_USAGE)
}

/// Loads a manifest or reports why it cannot be loaded.
pub fn load_or_report(path: &Path) -> Result<LoadedManifest, ExitCode> {
    load(path).map_err(|invalid| report_invalid(&invalid))
}

/// `engine validate`.
pub fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    let m = match load_or_report(path) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let stages = m.manifest.stages.len();
    let datasets = m.manifest.datasets.len();
    println!(
        "{}: valid ({stages} stage{}, {datasets} dataset{})",
        path.display(),
        plural(stages),
        plural(datasets)
    );
    Ok(ExitCode::SUCCESS)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `engine plan`.
pub fn plan(path: &Path, json: bool) -> anyhow::Result<ExitCode> {
    let m = match load_or_report(path) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let store = Store::at(&m.dir);
    let mut fp = FingerprintDb::open(&store.fingerprint_memo());
    let plan = match make_plan(&m, &store, &mut fp) {
        Ok(p) => p,
        Err(invalid) => return Ok(report_invalid(&invalid)),
    };
    if store.root().is_dir() {
        // The memo is an optimisation; failing to save it changes nothing else.
        let _ = fp.save();
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    let (cached, to_run) = plan.counts();
    println!(
        "plan for `{}` ({}): {} stage{}, {cached} cached, {to_run} to run",
        m.manifest.name,
        path.display(),
        plan.stages.len(),
        plural(plan.stages.len())
    );
    let width = plan.stages.iter().map(|s| s.id.len()).max().unwrap_or(0);
    let kind_width = plan.stages.iter().map(|s| s.kind.len()).max().unwrap_or(0);
    for s in &plan.stages {
        let (tag, why) = match s.status {
            Status::Cached => ("cached", String::new()),
            Status::Run => ("run", s.reasons.join("; ")),
        };
        println!(
            "  {tag:<6}  {:<width$}  {:<kind_width$}  {}  {why}",
            s.id,
            s.kind,
            &s.digest[..12]
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `engine graph`.
pub fn graph(path: &Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let m = match load_or_report(path) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    match format {
        GraphFormat::Dot => print!("{}", m.dag.to_dot(&m.manifest.name)),
        GraphFormat::Mermaid => print!("{}", m.dag.to_mermaid()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `engine stage-exec JOB`: runs one stage in this process (the executor's child).
pub fn stage_exec(job_file: &Path) -> anyhow::Result<ExitCode> {
    let job = match engine_core::job::StageJob::read(job_file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    if job.kind.needs_libtorch() {
        return run_in_worker(job_file);
    }
    let result = match job.kind {
        engine_core::manifest::StageKind::DataAudit => crate::data::run_audit_stage(&job),
        engine_core::manifest::StageKind::Evaluate => crate::evaluate::run_evaluate_stage(&job),
        _ => engine_core::job::run_core_job(&job),
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("error: stage `{}`: {e}", job.stage);
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

/// glibc malloc settings of the worker: no allocation is served by its own mapping, and up to
/// 1 GiB freed at the top of the heap stays there.
const WORKER_MALLOC: [(&str, &str); 2] = [
    ("MALLOC_MMAP_MAX_", "0"),
    ("MALLOC_TRIM_THRESHOLD_", "1073741824"),
];

/// Hands a libtorch stage to `engine-worker stage-exec JOB` and returns its exit status.
/// The libtorch worker as a command, with the environment every libtorch job gets; `None`
/// (after saying so) when it cannot be found.
pub fn worker_command(what: &str) -> Option<std::process::Command> {
    let Some(worker) = crate::doctor::worker_path() else {
        eprintln!(
            "error: {what} needs the libtorch worker `engine-worker`, which was not found beside `engine` or on PATH (hint: build it with `cargo build -p engine-torch`, or set ENGINE_WORKER)"
        );
        return None;
    };
    let mut cmd = std::process::Command::new(worker);
    // libtorch's CPU allocator then backs large tensors with transparent huge pages: far
    // fewer page faults for batches of images (the user's own setting wins).
    if std::env::var_os("THP_MEM_ALLOC_ENABLE").is_none() {
        cmd.env("THP_MEM_ALLOC_ENABLE", "1");
    }
    // And glibc keeps what a step frees for the next one, instead of unmapping every large
    // tensor (a batch of images, an activation) and faulting in zeroed pages again: without
    // it, a 224-pixel batch on the CPU spends about as long in the kernel's page clearing as
    // in its augmentation (see bench/image-pipeline.sh). The user's own settings win.
    for (name, value) in WORKER_MALLOC {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    Some(cmd)
}

fn run_in_worker(job_file: &Path) -> anyhow::Result<ExitCode> {
    let Some(mut cmd) = worker_command("this stage") else {
        return Ok(ExitCode::from(EXIT_FAILED));
    };
    cmd.arg("stage-exec").arg(job_file);
    let status = cmd.status().map_err(|e| {
        anyhow::anyhow!("cannot start {}: {e}", cmd.get_program().to_string_lossy())
    })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_FAILED)),
        None => ExitCode::from(EXIT_FAILED),
    })
}
