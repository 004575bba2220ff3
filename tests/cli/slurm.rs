//! `engine apply --executor slurm` against real Slurm daemons: a one-node cluster on loopback
//! started by `scripts/slurm-test-cluster.sh` (which installs slurm-wlm and munge first when
//! they are missing), shared by every test of the process and stopped after the last one.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

use crate::support::{Run, Workspace, engine, outcomes, wait_for};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/slurm-test-cluster.sh"
);

/// The users of the cluster in this process, and the shared lock that tells other
/// processes (and the script's watcher) that the cluster is in use.
struct Users {
    count: usize,
    lock: Option<File>,
}

static USERS: Mutex<Users> = Mutex::new(Users {
    count: 0,
    lock: None,
});

/// Holds the test cluster up; the last holder to go (also when its test panics) stops it.
struct Cluster {
    dir: PathBuf,
}

fn cluster_dir() -> PathBuf {
    std::env::temp_dir().join("engine-slurm-test")
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The shared cluster, or `None` (with a message) where this machine cannot run one.
/// With `ENGINE_REQUIRE_SLURM=1` (CI), not being able to run one is a failure instead.
fn cluster(test: &str) -> Option<Cluster> {
    if !is_root() {
        let why = "the test cluster's daemons run as root and this user is not root";
        assert!(
            std::env::var_os("ENGINE_REQUIRE_SLURM").is_none(),
            "{test}: {why}, but ENGINE_REQUIRE_SLURM is set"
        );
        eprintln!("SKIPPED {test}: {why}");
        return None;
    }
    let dir = cluster_dir();
    let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
    if users.count == 0 {
        std::fs::create_dir_all(&dir).unwrap();
        // Starting and stopping happen under the setup lock, so that no process stops the
        // cluster while another is starting to use it.
        let setup = lock_file(&dir.join("setup.lock"));
        setup.lock().unwrap();
        let shared = lock_file(&dir.join("users.lock"));
        shared.lock_shared().unwrap();
        let out = Command::new("bash")
            .args([SCRIPT, "start"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "could not start the test cluster:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        users.lock = Some(shared);
    }
    users.count += 1;
    Some(Cluster { dir })
}

fn lock_file(path: &Path) -> File {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let mut users = USERS.lock().unwrap_or_else(|e| e.into_inner());
        users.count -= 1;
        if users.count > 0 {
            return;
        }
        let Ok(()) = lock_file(&self.dir.join("setup.lock")).lock() else {
            return;
        };
        users.lock = None;
        // Only the last user of every process stops the daemons.
        if lock_file(&self.dir.join("users.lock")).try_lock().is_ok() {
            let _ = Command::new("bash")
                .args([SCRIPT, "stop"])
                .arg(&self.dir)
                .status();
        }
    }
}

impl Cluster {
    fn conf(&self) -> PathBuf {
        self.dir.join("slurm.conf")
    }

    /// A Slurm command against the test cluster.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("SLURM_CONF", self.conf());
        c
    }

    /// `engine ARGS` in the workspace, talking to the test cluster.
    fn engine(&self, ws: &Workspace, args: &[&str]) -> Run {
        let out = engine()
            .args(args)
            .env("SLURM_CONF", self.conf())
            .current_dir(ws.path())
            .output()
            .unwrap();
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `engine apply pipeline.yaml --executor slurm --json`, parsed.
    fn apply_json(&self, ws: &Workspace) -> (i32, serde_json::Value) {
        let r = self.engine(
            ws,
            &["apply", "pipeline.yaml", "--executor", "slurm", "--json"],
        );
        let v = serde_json::from_str(&r.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}\n{}", r.stdout, r.stderr));
        (r.code, v)
    }

    /// Name and state of the jobs Slurm lists for a run: with `all`, finished ones too;
    /// without, only those pending, running or completing.
    fn jobs_of(&self, run_id: &str, all: bool) -> Vec<(String, String)> {
        let mut cmd = self.cmd("squeue");
        cmd.args(["--noheader", "--format=%j|%T"]);
        if all {
            cmd.arg("--states=all");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().split_once('|'))
            .filter(|(name, _)| name.starts_with(&format!("engine-{run_id}-")))
            .map(|(n, s)| (n.to_owned(), s.to_owned()))
            .collect()
    }
}

const DIAMOND: &str = r#"version: 1
name: diamond
stages:
  a:
    uses: command
    with:
      run: |
        echo "from a" > "$ENGINE_OUT/a.txt"
      outputs: [a.txt]
  b:
    uses: command
    with:
      run: |
        tr a-z A-Z < "$ENGINE_IN_a/a.txt" > "$ENGINE_OUT/b.txt"
      from: [a]
      outputs: [b.txt]
    resources: {cpus: 2, memory_gb: 0.25, timeout_minutes: 5}
  c:
    uses: command
    with:
      run: |
        mkdir -p "$ENGINE_OUT/dir"
        wc -c < "$ENGINE_IN_a/a.txt" > "$ENGINE_OUT/dir/size"
      from: [a]
      outputs: [dir]
  d:
    uses: command
    with:
      run: |
        cat "$ENGINE_IN_b/b.txt" "$ENGINE_IN_c/dir/size" > "$ENGINE_OUT/d.txt"
      from: [b, c]
      outputs: [d.txt]
"#;

#[test]
fn slurm_gives_the_same_keys_and_outputs_as_the_local_executor() {
    let Some(cluster) = cluster("slurm_gives_the_same_keys_and_outputs_as_the_local_executor")
    else {
        return;
    };
    let local = Workspace::new();
    local.manifest(DIAMOND);
    let on_slurm = Workspace::new();
    on_slurm.manifest(DIAMOND);

    let (code, _) = local.apply_json();
    assert_eq!(code, 0);
    let (code, summary) = cluster.apply_json(&on_slurm);
    assert_eq!(code, 0, "{summary}");
    assert!(
        outcomes(&summary).iter().all(|(_, o)| o == "succeeded"),
        "{summary}"
    );
    // Same keys and output hashes: the lock files are identical.
    assert_eq!(local.read("pipeline.lock"), on_slurm.read("pipeline.lock"));
    let d = PathBuf::from(summary["stages"]["d"]["outputs"].as_str().unwrap());
    assert_eq!(
        std::fs::read_to_string(d.join("d.txt")).unwrap(),
        "FROM A\n7\n"
    );

    // One job per stage, named after the run and the stage, its output in the stage's log.
    let run_id = summary["run_id"].as_str().unwrap();
    let mut jobs = cluster.jobs_of(run_id, true);
    jobs.sort();
    let want: Vec<(String, String)> = ["a", "b", "c", "d"]
        .iter()
        .map(|s| (format!("engine-{run_id}-{s}"), "COMPLETED".to_owned()))
        .collect();
    assert_eq!(jobs, want);
    let run_dir = PathBuf::from(summary["run_dir"].as_str().unwrap());
    assert!(run_dir.join("logs/b.log").is_file());
    let events = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    assert!(events.contains("submitted as Slurm job"), "{events}");

    let (code, summary) = cluster.apply_json(&on_slurm);
    assert_eq!(code, 0);
    assert!(
        outcomes(&summary).iter().all(|(_, o)| o == "cached"),
        "{summary}"
    );
}

#[test]
fn a_failing_stage_on_slurm_is_reported_with_its_reason() {
    let Some(cluster) = cluster("a_failing_stage_on_slurm_is_reported_with_its_reason") else {
        return;
    };
    let ws = Workspace::new();
    ws.manifest(
        r#"version: 1
name: failing
stages:
  a:
    uses: command
    with: {run: 'echo a > "$ENGINE_OUT/a"', outputs: [a]}
  b:
    uses: command
    with:
      run: |
        echo "something broke" >&2
        exit 3
      from: [a]
      outputs: [b]
  c:
    uses: command
    with: {run: 'echo c > "$ENGINE_OUT/c"', from: [b], outputs: [c]}
  huge:
    uses: command
    with: {run: 'echo h > "$ENGINE_OUT/h"', outputs: [h]}
    resources: {memory_gb: 4096}
"#,
    );
    let (code, summary) = cluster.apply_json(&ws);
    assert_eq!(code, 1);
    assert_eq!(
        outcomes(&summary),
        [
            ("a".into(), "succeeded".into()),
            ("b".into(), "failed".into()),
            ("c".into(), "skipped".into()),
            ("huge".into(), "failed".into())
        ]
    );
    let message = summary["stages"]["b"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited with status 1")
            && message.contains("Slurm job")
            && message.contains("something broke"),
        "{message}"
    );
    let message = summary["stages"]["huge"]["message"].as_str().unwrap();
    assert!(message.contains("`sbatch` refused the job"), "{message}");
    assert_eq!(ws.entries("cache").len(), 1, "only a is stored");
    assert!(ws.entries("tmp").is_empty());
}

/// Slurm looks at time limits about every 30 s and counts in minutes, so this test takes
/// about 60 to 100 s: the shortest limit Slurm has is one minute.
#[test]
fn a_stage_past_its_time_limit_on_slurm_is_reported_as_timed_out() {
    let Some(cluster) = cluster("a_stage_past_its_time_limit_on_slurm_is_reported_as_timed_out")
    else {
        return;
    };
    let ws = Workspace::new();
    ws.manifest(
        "version: 1\nname: slow\nstages:\n  slow:\n    uses: command\n    with: {run: 'sleep 600; echo x > \"$ENGINE_OUT/x\"', outputs: [x]}\n    resources: {timeout_minutes: 0.01}\n",
    );
    let started = Instant::now();
    let (code, summary) = cluster.apply_json(&ws);
    eprintln!("the time-limit run took {:.0?}", started.elapsed());
    assert_eq!(code, 1);
    assert_eq!(outcomes(&summary), [("slow".into(), "timed_out".into())]);
    let message = summary["stages"]["slow"]["message"].as_str().unwrap();
    assert!(
        message.contains("stopped after its time limit") && message.contains("--time=1"),
        "{message}"
    );
    assert!(ws.entries("cache").is_empty());
    assert!(ws.entries("tmp").is_empty());
}

#[test]
fn ctrl_c_on_slurm_cancels_the_runs_jobs_and_stores_nothing_partial() {
    let Some(cluster) = cluster("ctrl_c_on_slurm_cancels_the_runs_jobs_and_stores_nothing_partial")
    else {
        return;
    };
    let ws = Workspace::new();
    ws.manifest(
        r#"version: 1
name: interrupt
stages:
  quick:
    uses: command
    with: {run: 'echo q > "$ENGINE_OUT/q"', outputs: [q]}
  long:
    uses: command
    with:
      run: |
        echo partial > "$ENGINE_OUT/x"
        touch long.started
        sleep 300
        echo done > "$ENGINE_OUT/x"
      outputs: [x]
    needs: [quick]
  after:
    uses: command
    with: {run: 'echo a > "$ENGINE_OUT/a"', outputs: [a]}
    needs: [long]
"#,
    );
    let child = engine()
        .args(["apply", "pipeline.yaml", "--executor", "slurm", "--json"])
        .env("SLURM_CONF", cluster.conf())
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&ws.path().join("long.started"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        outcomes(&summary),
        [
            ("after".into(), "skipped".into()),
            ("long".into(), "cancelled".into()),
            ("quick".into(), "succeeded".into())
        ]
    );
    // When the engine exits, none of the run's jobs is pending, running or completing.
    let run_id = summary["run_id"].as_str().unwrap();
    assert_eq!(cluster.jobs_of(run_id, false), []);
    let mut all = cluster.jobs_of(run_id, true);
    all.sort();
    assert_eq!(
        all,
        [
            (format!("engine-{run_id}-long"), "CANCELLED".to_owned()),
            (format!("engine-{run_id}-quick"), "COMPLETED".to_owned())
        ]
    );
    assert_eq!(
        ws.entries("cache").len(),
        1,
        "only the finished stage is stored"
    );
    assert!(
        ws.entries("tmp").is_empty(),
        "no in-progress entry is left behind"
    );
}

#[test]
fn missing_slurm_commands_or_controller_are_usage_errors_with_a_hint() {
    // No Slurm on PATH: runs on any machine, daemons or not.
    let ws = Workspace::new();
    ws.manifest("version: 1\nname: m\nstages:\n  a:\n    uses: command\n    with: {run: 'true', outputs: [x]}\n");
    let empty = tempfile::tempdir().unwrap();
    let out = engine()
        .args(["apply", "pipeline.yaml", "--executor", "slurm"])
        .env("PATH", empty.path())
        .env_remove("SLURM_CONF")
        .current_dir(ws.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot run `sbatch`") && stderr.contains("hint:"),
        "{stderr}"
    );

    let r = ws
        .run(&["apply", "pipeline.yaml", "--partition", "gpu"])
        .code(2);
    assert!(r.stderr.contains("--executor slurm"), "{}", r.stderr);

    // A controller that does not answer.
    let Some(cluster) =
        cluster("missing_slurm_commands_or_controller_are_usage_errors_with_a_hint")
    else {
        return;
    };
    let conf = std::fs::read_to_string(cluster.conf()).unwrap();
    let port = conf
        .lines()
        .find_map(|l| l.strip_prefix("SlurmctldPort="))
        .unwrap();
    ws.file(
        "bad-slurm.conf",
        &conf.replace(&format!("SlurmctldPort={port}"), "SlurmctldPort=1"),
    );
    let out = engine()
        .args(["apply", "pipeline.yaml", "--executor", "slurm"])
        .env("SLURM_CONF", ws.path().join("bad-slurm.conf"))
        .current_dir(ws.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot reach the Slurm controller") && stderr.contains("hint:"),
        "{stderr}"
    );
    let r = cluster.engine(
        &ws,
        &[
            "apply",
            "pipeline.yaml",
            "--executor",
            "slurm",
            "--partition",
            "nope",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("no partition `nope`"), "{}", r.stderr);
}

#[test]
fn the_developer_loop_runs_its_rounds_on_slurm() {
    let Some(cluster) = cluster("the_developer_loop_runs_its_rounds_on_slurm") else {
        return;
    };
    let ws = crate::support::chest_workspace(crate::develop::MANIFEST, 160, 2);
    let r = cluster.engine(
        &ws,
        &[
            "develop",
            "pipeline.yaml",
            "--rounds",
            "1",
            "--executor",
            "slurm",
            "--plain",
        ],
    );
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let rows = crate::support::develop_rows(&ws);
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    // Every round ran as Slurm jobs: round 0 the whole pipeline, round 1 only what its
    // change touched (the audit came from the cache).
    for (row, stages) in rows.iter().zip([
        &["audit", "evaluate", "train"][..],
        &["evaluate", "train"][..],
    ]) {
        assert_eq!(row["state"], "done", "{row}");
        assert!(row["score"]["value"].is_number(), "{row}");
        let run_id = row["run_id"].as_str().unwrap();
        let mut jobs = cluster.jobs_of(run_id, true);
        jobs.sort();
        let want: Vec<(String, String)> = stages
            .iter()
            .map(|s| (format!("engine-{run_id}-{s}"), "COMPLETED".to_owned()))
            .collect();
        assert_eq!(jobs, want, "round {}", row["round"]);
    }
    // The keys do not depend on the executor: the best manifest is all cached locally.
    let again = ws.run(&["apply", "pipeline.best.yaml", "--json"]).code(0);
    let summary: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert!(
        outcomes(&summary).iter().all(|(_, o)| o == "cached"),
        "{summary}"
    );
}
