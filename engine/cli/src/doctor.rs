//! `engine doctor`: what this installation is, and whether libtorch trains on it
//! (through the libtorch worker, which the `engine` binary itself never loads).

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::{EXIT_FAILED, EXIT_USAGE};

/// Name of the libtorch worker binary, installed beside `engine`.
pub const WORKER: &str = "engine-worker";

/// Finds the libtorch worker: `ENGINE_WORKER` if set, else beside this binary, else on `PATH`.
pub fn worker_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENGINE_WORKER") {
        return Some(PathBuf::from(p));
    }
    let beside = std::env::current_exe().ok()?.parent()?.join(WORKER);
    if beside.is_file() {
        return Some(beside);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(WORKER))
            .find(|p| p.is_file())
    })
}

/// Runs `engine doctor`.
pub fn doctor(json: bool, device: &str) -> anyhow::Result<ExitCode> {
    if !json {
        println!("engine {}", env!("CARGO_PKG_VERSION"));
    }
    let Some(worker) = worker_path() else {
        eprintln!(
            "error: the libtorch worker `{WORKER}` was not found beside this binary or on PATH (hint: build it with `cargo build -p engine-torch`, or set ENGINE_WORKER)"
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let mut cmd = Command::new(&worker);
    cmd.arg("doctor").arg("--device").arg(device);
    if json {
        cmd.arg("--json");
    } else {
        println!("worker {}", worker.display());
    }
    let status = cmd
        .status()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", worker.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_FAILED)),
        None => ExitCode::from(EXIT_FAILED),
    })
}
