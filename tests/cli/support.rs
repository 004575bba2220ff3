//! A small fluent builder for running `engine` in a scratch workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// The `engine` binary under test.
pub fn engine() -> Command {
    Command::new(env!("CARGO_BIN_EXE_engine"))
}

/// A scratch workspace with a manifest and files.
pub struct Workspace {
    dir: tempfile::TempDir,
}

/// What a run of `engine` printed and returned.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.code, want,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file (creating directories).
    pub fn file(&self, rel: &str, content: &str) -> &Workspace {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
        self
    }

    /// Writes `pipeline.yaml`.
    pub fn manifest(&self, content: &str) -> &Workspace {
        self.file("pipeline.yaml", content)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(rel)).unwrap()
    }

    /// Runs `engine ARGS` in the workspace.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(
            engine()
                .args(args)
                .current_dir(self.dir.path())
                .output()
                .unwrap(),
        )
    }

    /// `engine apply pipeline.yaml --json`, parsed.
    pub fn apply_json(&self) -> (i32, serde_json::Value) {
        let r = self.run(&["apply", "pipeline.yaml", "--json"]);
        let v = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
        (r.code, v)
    }

    /// `engine plan pipeline.yaml --json`, parsed.
    pub fn plan_json(&self) -> serde_json::Value {
        let r = self.run(&["plan", "pipeline.yaml", "--json"]).code(0);
        serde_json::from_str(&r.stdout).unwrap()
    }

    /// Every complete and in-progress entry directory under `.engine`.
    pub fn entries(&self, sub: &str) -> Vec<PathBuf> {
        let dir = self.dir.path().join(".engine").join(sub);
        let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|r| r.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        out.sort();
        out
    }
}

/// Outcome of each stage in an apply summary.
pub fn outcomes(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["stages"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["outcome"].as_str().unwrap().to_owned()))
        .collect()
}

/// Status of each stage in a plan.
pub fn statuses(plan: &serde_json::Value) -> Vec<(String, String)> {
    plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["id"].as_str().unwrap().to_owned(),
                s["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits up to a minute for a file that a running stage creates.
pub fn wait_for(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `engine-worker` was built beside `engine` (`cargo test --workspace` builds it).
pub fn worker_is_built() -> bool {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_engine"));
    exe.with_file_name("engine-worker").is_file()
}

/// A workspace for tests that train through the worker: a small synthetic chest set (with
/// `drains.csv`, no NEATX set) under `data/` and `manifest` as `pipeline.yaml`.
pub fn chest_workspace(manifest: &str, n: usize, seed: u64) -> Workspace {
    assert!(
        worker_is_built(),
        "engine-worker is not beside engine: run the tests with `cargo test --workspace`"
    );
    let ws = Workspace::new();
    let (n, seed) = (n.to_string(), seed.to_string());
    ws.run(&[
        "synth", "chest", "--out", "data", "--n", &n, "--size", "32", "--neatx", "0", "--seed",
        &seed,
    ])
    .code(0);
    ws.manifest(manifest);
    ws
}

/// The rows of `pipeline.yaml`'s developer-loop history.
pub fn develop_rows(ws: &Workspace) -> Vec<serde_json::Value> {
    ws.read(".engine/develop/pipeline/rounds.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
