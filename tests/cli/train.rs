//! `classifier.train` through `engine apply`: the stage is handed to the libtorch worker
//! (`engine-worker`, built beside `engine` by `cargo test --workspace`), its progress reaches
//! the run's events, and its outputs are cached like any stage's.

use serde_json::Value;

use crate::support::{Workspace, outcomes, worker_is_built};

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

#[test]
fn a_drain_model_labels_the_dataset_for_the_audit_and_debiased_training() {
    assert!(worker_is_built(), "engine-worker is not beside engine");
    let ws = Workspace::new();
    ws.run(&[
        "synth",
        "chest",
        "--out",
        "data/chest",
        "--n",
        "120",
        "--size",
        "32",
        "--neatx",
        "120",
    ])
    .code(0);
    ws.manifest(
        r#"
version: 1
name: drains
seed: 3
datasets:
  siim: {format: siim-acr, root: data/chest, split: {val: 0.25, seed: 1}}
  neatx: {format: csv-images, root: data/chest/neatx, labels: drains.csv, target: drain, split: {val: 0.25, seed: 1}}
stages:
  drain_model:
    uses: classifier.train
    with: {dataset: neatx, image_size: 32, epochs: 2, batch_size: 16, device: cpu, loss: {kind: bce}}
  drain_labels:
    uses: model.predict
    with: {model: drain_model, dataset: siim, as_attribute: chest_drain, device: cpu}
  audit:
    uses: data.audit
    with: {dataset: siim, from: [drain_labels]}
  train:
    uses: classifier.train
    with:
      dataset: siim
      image_size: 32
      epochs: 1
      batch_size: 16
      device: cpu
      from: [drain_labels]
      sampler: {kind: group_balanced, attribute: chest_drain}
      debias: {kind: gradient_reversal, attribute: chest_drain_prob}
      segmentation: {weight: 0.5}
  plain:
    uses: classifier.train
    with: {dataset: siim, image_size: 32, epochs: 1, batch_size: 16, device: cpu, from: [drain_labels]}
  evaluate:
    uses: evaluate
    with: {model: train, baseline: plain, confound: chest_drain_prob, bootstrap: 200}
"#,
    );
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    let mut got = outcomes(&summary);
    got.sort();
    assert_eq!(
        got,
        [
            ("audit".into(), "succeeded".into()),
            ("drain_labels".into(), "succeeded".into()),
            ("drain_model".into(), "succeeded".into()),
            ("evaluate".into(), "succeeded".into()),
            ("plain".into(), "succeeded".into()),
            ("train".into(), "succeeded".into()),
        ]
    );
    // The evaluation: metrics with intervals, the confound analysis, and the paired tests
    // against the plain model, naming stages rather than cache paths.
    let metrics: Value = ws
        .entries("cache")
        .into_iter()
        .map(|e| e.join("out/metrics.json"))
        .filter(|p| p.is_file())
        .map(|p| serde_json::from_str::<Value>(&std::fs::read_to_string(p).unwrap()).unwrap())
        .find(|v| v.get("comparison").is_some())
        .expect("the evaluate stage's metrics.json");
    assert_eq!(metrics["model"], "train");
    assert_eq!(metrics["comparison"]["baseline"], "plain");
    assert!(metrics["metrics"]["auc"]["ci"].is_array(), "{metrics}");
    assert!(
        metrics["metrics"]["confound/partial_correlation"]["value"].is_number(),
        "{metrics}"
    );
    assert!(
        metrics["comparison"]["paired"]["auc"]["p_value"].is_number(),
        "{metrics}"
    );
    assert!(
        metrics["comparison"]["delong"]["p_value"].is_number(),
        "{metrics}"
    );
    assert!(!metrics.to_string().contains(".engine/cache"), "{metrics}");
    let lock: Value = serde_norway::from_str(&ws.read("pipeline.lock")).unwrap();
    assert!(
        lock["stages"]["drain_labels"]["outputs"]["attributes.csv"].is_string(),
        "{lock:?}"
    );
    // The audit saw the predicted attribute.
    let audit = ws
        .entries("cache")
        .into_iter()
        .map(|e| e.join("out/summary.md"))
        .find(|p| p.is_file())
        .unwrap();
    let summary_md = std::fs::read_to_string(audit).unwrap();
    assert!(summary_md.contains("chest_drain"), "{summary_md}");
    let (_, again) = ws.apply_json();
    assert!(
        outcomes(&again).iter().all(|(_, o)| o == "cached"),
        "{again}"
    );
}

#[test]
fn the_test_split_is_opened_once_for_the_named_models() {
    assert!(worker_is_built(), "engine-worker is not beside engine");
    let ws = Workspace::new();
    ws.run(&[
        "synth",
        "chest",
        "--out",
        "data/chest",
        "--n",
        "160",
        "--size",
        "32",
        "--neatx",
        "0",
    ])
    .code(0);
    let manifest = r#"
version: 1
name: sealed
seed: 3
task:
  task: binary_classification
  modality: chest_xray
  target: pneumothorax
  positive_class: pneumothorax
  objective: {metric: auc}
  constraints: [{metric: sensitivity, op: '>=', value: 0.9}]
datasets:
  siim:
    format: siim-acr
    root: data/chest
    attributes: {drain: {file: drains.csv}}
    split: {val: 0.25, test: 0.25, seed: 1}
stages:
  plain:
    uses: classifier.train
    with: {dataset: siim, image_size: 32, epochs: 1, batch_size: 16, device: cpu}
  train:
    uses: classifier.train
    with: {dataset: siim, image_size: 32, epochs: 2, batch_size: 16, device: cpu, loss: {kind: bce}}
"#;
    ws.manifest(manifest);
    // Nothing has run yet.
    let r = ws
        .run(&["test", "pipeline.yaml", "--model", "train"])
        .code(2);
    assert!(
        r.stderr.contains("run `engine apply pipeline.yaml` first"),
        "{}",
        r.stderr
    );
    let r = ws
        .run(&["test", "pipeline.yaml", "--model", "trian"])
        .code(2);
    assert!(r.stderr.contains("did you mean `train`?"), "{}", r.stderr);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    assert!(
        !ws.path().join(".engine/test-access.jsonl").exists(),
        "apply never opens the test split"
    );

    // A typo in --confound is caught before the split is opened.
    let r = ws
        .run(&[
            "test",
            "pipeline.yaml",
            "--model",
            "train",
            "--confound",
            "drian",
        ])
        .code(2);
    assert!(r.stderr.contains("did you mean `drain`?"), "{}", r.stderr);
    assert!(!ws.path().join(".engine/test-seal.jsonl").exists());
    let args = [
        "test",
        "pipeline.yaml",
        "--model",
        "train",
        "--baseline",
        "plain",
        "--confound",
        "drain",
        "--bootstrap",
        "100",
        "--device",
        "cpu",
        "--json",
    ];
    let r = ws.run(&args).code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(v["split"], "test");
    assert_eq!(v["model"], "train");
    assert_eq!(v["comparison"]["baseline"], "plain");
    assert!(v["metrics"]["auc"]["ci"].is_array(), "{v}");
    assert!(
        v["comparison"]["paired"]["auc"]["p_value"].is_number(),
        "{v}"
    );
    assert!(
        v["metrics"]["confound/partial_correlation"]["value"].is_number(),
        "{v}"
    );
    let n = v["n"].as_u64().unwrap();
    assert!(n > 20 && n < 80, "a quarter of 160 images, by patient: {n}");
    // The threshold is the one the request's sensitivity floor picks on the model's
    // validation predictions, applied unchanged: never re-tuned on the test.
    let plan = ws.plan_json();
    let digest = plan["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "train")
        .and_then(|s| s["digest"].as_str())
        .unwrap()
        .to_owned();
    let val = ws.read(&format!(".engine/cache/{digest}/out/predictions.csv"));
    let mut positives: Vec<f64> = val
        .lines()
        .skip(1)
        .filter(|l| l.split(',').nth(1) == Some("1"))
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    positives.sort_by(|a, b| b.total_cmp(a));
    // As the engine counts: 90% of the positives, the product rounded up (float noise aside).
    let needed = (0.9 * positives.len() as f64 * (1.0 - 1e-12)).ceil() as usize;
    let want = positives[needed - 1];
    assert_eq!(
        v["threshold"]["value"].as_f64(),
        Some(want),
        "{}",
        v["threshold"]
    );
    assert_eq!(v["threshold"]["fixed_beforehand"], true);
    assert_eq!(v["threshold"]["chosen_on"], "validation");
    // Every requirement has its verdict, with the cases it rests on.
    let reqs = v["requirements"].as_array().unwrap();
    assert_eq!(reqs.len(), 2, "{}", v["requirements"]);
    let sens = &reqs[1];
    assert_eq!(sens["metric"], "sensitivity");
    assert_eq!(sens["op"], ">=");
    assert_eq!(sens["n"], v["n_positive"]);
    assert!(
        ["met", "not_met", "undetermined"].contains(&sens["verdict"].as_str().unwrap()),
        "{sens}"
    );
    // The probabilities are calibrated on validation; the raw ones are measured beside them.
    assert!(
        v["calibration"]["uncalibrated"]["brier"].is_number(),
        "{}",
        v["calibration"]
    );
    assert!(v["metrics"]["ece"]["value"].is_number());
    let access = ws.read(".engine/test-access.jsonl");
    assert_eq!(access.lines().count(), 2, "{access}");
    assert!(access.contains("model `train`") && access.contains("model `plain`"));

    // The same models again: allowed, and recorded as a repeat.
    ws.run(&args).code(0);
    // Other models: refused without a reason.
    let other = [
        "test",
        "pipeline.yaml",
        "--model",
        "plain",
        "--device",
        "cpu",
        "--bootstrap",
        "50",
    ];
    let r = ws.run(&other).code(2);
    assert!(
        r.stderr.contains("the test split was opened on") && r.stderr.contains("--reopen"),
        "{}",
        r.stderr
    );
    let mut reopened = other.to_vec();
    reopened.extend(["--reopen", "the plain model alone, for the appendix"]);
    let r = ws.run(&reopened).code(0);
    assert!(
        r.stdout
            .contains("REOPENED: the plain model alone, for the appendix"),
        "{}",
        r.stdout
    );
    let seal = ws.read(".engine/test-seal.jsonl");
    let lines: Vec<Value> = seal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{seal}");
    assert_eq!(lines[1]["repeat"], true);
    assert_eq!(
        lines[2]["reopen"],
        "the plain model alone, for the appendix"
    );
}
