//! `classifier.train` through `engine apply`: the stage is handed to the libtorch worker
//! (`engine-worker`, built beside `engine` by `cargo test --workspace`), its progress reaches
//! the run's events, and its outputs are cached like any stage's.

use serde_json::Value;

use crate::support::{Workspace, outcomes};

fn worker_is_built() -> bool {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_engine"));
    exe.with_file_name("engine-worker").is_file()
}

#[test]
fn a_classifier_trains_through_the_worker_and_is_cached() {
    assert!(
        worker_is_built(),
        "engine-worker is not beside engine: run the tests with `cargo test --workspace` (scripts/test.sh does)"
    );
    let ws = Workspace::new();
    ws.run(&[
        "synth",
        "chest",
        "--out",
        "data/chest",
        "--n",
        "80",
        "--size",
        "32",
        "--neatx",
        "0",
    ])
    .code(0);
    ws.manifest(
        r#"
version: 1
name: train
seed: 3
datasets:
  siim: {format: siim-acr, root: data/chest, split: {val: 0.25, seed: 1}}
stages:
  train:
    uses: classifier.train
    with: {dataset: siim, image_size: 32, epochs: 2, batch_size: 16, device: cpu}
"#,
    );
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(outcomes(&summary), [("train".into(), "succeeded".into())]);
    let entry = &ws.entries("cache")[0];
    for f in [
        "model.safetensors",
        "config.json",
        "predictions.csv",
        "curve.jsonl",
        "metrics.json",
    ] {
        assert!(entry.join("out").join(f).is_file(), "{f}");
    }
    let lock: Value = serde_norway::from_str(&ws.read("pipeline.lock")).unwrap();
    assert!(
        lock["stages"]["train"]["outputs"]["model.safetensors"].is_string(),
        "{lock:?}"
    );
    // Progress lines became events.
    let runs = ws.entries("runs");
    let events = std::fs::read_to_string(runs[0].join("events.jsonl")).unwrap();
    assert!(
        events.contains("\"stage_progress\"") && events.contains("epoch 2/2"),
        "{events}"
    );
    // The validation predictions feed `engine metrics`.
    let preds = entry.join("out/predictions.csv");
    let r = ws
        .run(&[
            "metrics",
            "--task",
            "binary",
            "--preds",
            preds.to_str().unwrap(),
            "--bootstrap",
            "50",
            "--json",
        ])
        .code(0);
    assert!(r.stdout.contains("\"auc\""), "{}", r.stdout);
    let (_, again) = ws.apply_json();
    assert_eq!(outcomes(&again), [("train".into(), "cached".into())]);
}
