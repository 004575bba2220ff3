//! `engine apply`: runs, caching, failures, time limits, interrupts, locking and records.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{Workspace, engine, outcomes, wait_for};

const CHAIN: &str = r#"version: 1
name: chain
stages:
  a:
    uses: command
    with:
      run: |
        echo a >> runs.log
        echo "from a" > "$ENGINE_OUT/a.txt"
      outputs: [a.txt]
  b:
    uses: command
    with:
      run: |
        echo b >> runs.log
        cat "$ENGINE_IN_a/a.txt" > "$ENGINE_OUT/b.txt"
        echo "and b" >> "$ENGINE_OUT/b.txt"
      from: [a]
      outputs: [b.txt]
  c:
    uses: command
    with:
      run: |
        echo c >> runs.log
        mkdir -p "$ENGINE_OUT/dir"
        wc -l < "$ENGINE_IN_b/b.txt" > "$ENGINE_OUT/dir/lines"
      from: [b]
      outputs: [dir]
"#;

#[test]
fn runs_a_pipeline_then_finds_everything_cached() {
    let ws = Workspace::new();
    ws.manifest(CHAIN);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0);
    assert_eq!(
        outcomes(&summary),
        [
            ("a".into(), "succeeded".into()),
            ("b".into(), "succeeded".into()),
            ("c".into(), "succeeded".into())
        ]
    );
    let out = summary["stages"]["c"]["outputs"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{out}/dir/lines"))
            .unwrap()
            .trim(),
        "2"
    );
    assert_eq!(ws.read("runs.log"), "a\nb\nc\n");

    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0);
    assert!(
        outcomes(&summary).iter().all(|(_, o)| o == "cached"),
        "{summary}"
    );
    assert_eq!(ws.read("runs.log"), "a\nb\nc\n", "nothing ran twice");

    let plain = ws.run(&["apply", "pipeline.yaml"]).code(0);
    assert!(plain.stdout.contains("0 ran, 3 cached"), "{}", plain.stdout);
}

#[test]
fn records_events_logs_and_a_lock_file_with_keys_and_output_hashes() {
    let ws = Workspace::new();
    ws.manifest(CHAIN);
    let (_, summary) = ws.apply_json();
    let run_dir = std::path::PathBuf::from(summary["run_dir"].as_str().unwrap());
    let events = std::fs::read_to_string(run_dir.join("events.jsonl")).unwrap();
    let names: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(names.first().map(String::as_str), Some("run_started"));
    assert_eq!(names.last().map(String::as_str), Some("run_finished"));
    assert_eq!(names.iter().filter(|n| *n == "stage_finished").count(), 3);
    assert!(run_dir.join("logs/a.log").is_file());

    let plan = ws.plan_json();
    let lock: serde_json::Value = serde_norway::from_str(&ws.read("pipeline.lock")).unwrap();
    for stage in plan["stages"].as_array().unwrap() {
        let id = stage["id"].as_str().unwrap();
        assert_eq!(
            lock["stages"][id]["key"], stage["digest"],
            "lock key of {id}"
        );
    }
    let b_out =
        std::path::PathBuf::from(summary["stages"]["b"]["outputs"].as_str().unwrap()).join("b.txt");
    assert_eq!(std::fs::read_to_string(&b_out).unwrap(), "from a\nand b\n");
    let want = engine_core::fingerprint::FingerprintDb::in_memory()
        .tree(&b_out)
        .unwrap();
    assert_eq!(
        lock["stages"]["b"]["outputs"]["b.txt"],
        engine_core::fingerprint::hex(&want)
    );
}

const FAILING: &str = r#"version: 1
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
        test -f fixed
        echo b > "$ENGINE_OUT/b"
      from: [a]
      outputs: [b]
  c:
    uses: command
    with: {run: 'echo c > "$ENGINE_OUT/c"', from: [b], outputs: [c]}
  d:
    uses: command
    with: {run: 'echo d > "$ENGINE_OUT/d"', outputs: [d]}
"#;

#[test]
fn a_failed_stage_stops_its_dependents_while_independent_stages_finish() {
    let ws = Workspace::new();
    ws.manifest(FAILING);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 1);
    let got = outcomes(&summary);
    assert_eq!(
        got,
        [
            ("a".into(), "succeeded".into()),
            ("b".into(), "failed".into()),
            ("c".into(), "skipped".into()),
            ("d".into(), "succeeded".into())
        ]
    );
    let message = summary["stages"]["b"]["message"].as_str().unwrap();
    assert!(
        message.contains("exited with status 1") && message.contains("something broke"),
        "{message}"
    );
    assert_eq!(ws.entries("cache").len(), 2, "only a and d are stored");
    assert!(ws.entries("tmp").is_empty());

    let plain = ws.run(&["apply", "pipeline.yaml"]).code(1);
    assert!(
        plain.stdout.contains("FAILED") && plain.stdout.contains("b: exited with status 1"),
        "{}",
        plain.stdout
    );

    ws.file("fixed", "");
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0);
    assert_eq!(
        outcomes(&summary),
        [
            ("a".into(), "cached".into()),
            ("b".into(), "succeeded".into()),
            ("c".into(), "succeeded".into()),
            ("d".into(), "cached".into())
        ]
    );
}

#[test]
fn a_missing_declared_output_fails_the_stage() {
    let ws = Workspace::new();
    ws.manifest("version: 1\nname: m\nstages:\n  a:\n    uses: command\n    with: {run: 'true', outputs: [model.bin]}\n");
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 1);
    let message = summary["stages"]["a"]["message"].as_str().unwrap();
    assert!(
        message.contains("did not write the declared output `model.bin`"),
        "{message}"
    );
    assert!(ws.entries("cache").is_empty());
}

#[test]
fn a_stage_past_its_time_limit_is_stopped_and_stores_nothing() {
    let ws = Workspace::new();
    ws.manifest(
        "version: 1\nname: slow\nstages:\n  slow:\n    uses: command\n    with: {run: 'sleep 60; echo x > \"$ENGINE_OUT/x\"', outputs: [x]}\n    resources: {timeout_minutes: 0.01}\n",
    );
    let started = Instant::now();
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 1);
    assert_eq!(outcomes(&summary), [("slow".into(), "timed_out".into())]);
    assert!(
        summary["stages"]["slow"]["message"]
            .as_str()
            .unwrap()
            .contains("time limit")
    );
    assert!(
        started.elapsed() < Duration::from_secs(55),
        "the stage was not stopped"
    );
    assert!(ws.entries("cache").is_empty());
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

#[test]
fn ctrl_c_stops_every_child_and_leaves_no_partial_entry() {
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
        sleep 120 &
        echo $! > sleeper.pid
        wait
        echo done > "$ENGINE_OUT/x"
      outputs: [x]
    needs: [quick]
"#,
    );
    let child = engine()
        .args(["apply", "pipeline.yaml", "--plain"])
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&ws.path().join("sleeper.pid"));
    let sleeper: i32 = ws.read("sleeper.pid").trim().parse().unwrap();
    assert!(alive(sleeper));
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
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(sleeper) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(sleeper),
        "the stage's grandchild survived the interrupt"
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

    // The next run resumes: the finished stage is cached, the interrupted one runs.
    std::fs::remove_file(ws.path().join("sleeper.pid")).unwrap();
    ws.manifest(&ws.read("pipeline.yaml").replace("sleep 120", "sleep 0"));
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0);
    assert_eq!(
        outcomes(&summary),
        [
            ("long".into(), "succeeded".into()),
            ("quick".into(), "cached".into())
        ]
    );
}

#[test]
fn a_second_apply_waits_for_the_first_and_then_finds_its_results() {
    let ws = Workspace::new();
    ws.manifest(
        r#"version: 1
name: locked
stages:
  slow:
    uses: command
    with:
      run: |
        touch started
        while [ ! -f go ]; do sleep 0.05; done
        echo run >> runs.log
        echo x > "$ENGINE_OUT/x"
      outputs: [x]
"#,
    );
    let first = engine()
        .args(["apply", "pipeline.yaml", "--json"])
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(&ws.path().join("started"));
    let second = engine()
        .args(["apply", "pipeline.yaml", "--json"])
        .current_dir(ws.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Let the second reach the lock before the first finishes.
    let deadline = Instant::now() + Duration::from_secs(30);
    let lock_info = ws.path().join(".engine/lock");
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if std::fs::read_to_string(&lock_info).is_ok_and(|t| t.contains("pid")) {
            break;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    ws.file("go", "");
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert_eq!(first.status.code(), Some(0));
    assert_eq!(second.status.code(), Some(0));
    let s2: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(outcomes(&s2), [("slow".into(), "cached".into())]);
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("is locked by pid"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(ws.read("runs.log"), "run\n", "the stage ran once");
}

#[test]
fn independent_stages_run_concurrently_within_the_cpu_budget() {
    // Each stage waits for the other to start, so the run only succeeds if both run at once.
    let stage = |me: &str, other: &str| {
        format!(
            "  {me}:\n    uses: command\n    with:\n      run: |\n        touch {me}.started\n        for i in $(seq 400); do [ -f {other}.started ] && break; sleep 0.05; done\n        test -f {other}.started\n        echo ok > \"$ENGINE_OUT/ok\"\n      outputs: [ok]\n    resources: {{timeout_minutes: 1}}\n"
        )
    };
    let ws = Workspace::new();
    ws.manifest(&format!(
        "version: 1\nname: together\nstages:\n{}{}",
        stage("left", "right"),
        stage("right", "left")
    ));
    let r = ws
        .run(&["apply", "pipeline.yaml", "--cpus", "2", "--json"])
        .code(0);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(outcomes(&summary).iter().all(|(_, o)| o == "succeeded"));
}

#[test]
fn gpu_slots_are_handed_over_through_cuda_visible_devices() {
    let ws = Workspace::new();
    ws.manifest(
        "version: 1\nname: gpu\nstages:\n  train:\n    uses: command\n    with: {run: 'echo \"$CUDA_VISIBLE_DEVICES\" > \"$ENGINE_OUT/gpus\"', outputs: [gpus]}\n    resources: {gpus: 2}\n  cpu_only:\n    uses: command\n    with: {run: 'echo \"[$CUDA_VISIBLE_DEVICES]\" > \"$ENGINE_OUT/gpus\"', outputs: [gpus]}\n",
    );
    let r = ws
        .run(&["apply", "pipeline.yaml", "--gpus", "3,5,7", "--json"])
        .code(0);
    let summary: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let read = |id: &str| {
        std::fs::read_to_string(format!(
            "{}/gpus",
            summary["stages"][id]["outputs"].as_str().unwrap()
        ))
        .unwrap()
    };
    assert_eq!(read("train").trim(), "3,5");
    assert_eq!(read("cpu_only").trim(), "[]");

    let r = ws
        .run(&["apply", "pipeline.yaml", "--gpus", "none"])
        .code(2);
    assert!(
        r.stderr.contains("pipeline.yaml:7:23:")
            && r.stderr
                .contains("needs 2 GPU(s) but this machine offers 0"),
        "{}",
        r.stderr
    );
    let r = ws
        .run(&["apply", "pipeline.yaml", "--gpus", "zero"])
        .code(2);
    assert!(r.stderr.contains("`zero` is not a GPU id"), "{}", r.stderr);
}
