//! `detector.train` and its evaluation on a synthetic wrist set (YOLO layout), trained for
//! real through the libtorch worker: the learning check (validation mAP@50 of at least 0.6
//! when every image is boxed), COCO files `engine metrics` reads, the cache, and the load
//! checks that keep detectors to YOLO datasets.

use serde_json::Value;

use crate::support::{Workspace, worker_is_built};

const MANIFEST: &str = "\
version: 1
name: wrist
seed: 1
datasets:
  wrist:
    format: yolo
    root: data
    split: {by: patient, val: 0.2, test: 0.15, seed: 7}
stages:
  det:
    uses: detector.train
    with:
      dataset: wrist
      image_size: 64
      epochs: 10
      batch_size: 16
      device: cpu
  evaluate:
    uses: evaluate
    with: {model: det, bootstrap: 200}
";

fn wrist(n: usize, box_fraction: &str) -> Workspace {
    assert!(
        worker_is_built(),
        "run the tests with `cargo test --workspace`"
    );
    let ws = Workspace::new();
    ws.run(&[
        "synth",
        "wrist",
        "--out",
        "data",
        "--n",
        &n.to_string(),
        "--size",
        "64",
        "--seed",
        "1",
        "--box-fraction",
        box_fraction,
    ])
    .code(0);
    ws
}

fn outputs(summary: &Value, stage: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(summary["stages"][stage]["outputs"].as_str().unwrap())
}

#[test]
fn a_detector_learns_the_fully_boxed_wrist_set_and_is_evaluated_in_coco_terms() {
    let ws = wrist(320, "1.0");
    ws.manifest(MANIFEST);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    let det = outputs(&summary, "det");
    let metrics: Value =
        serde_json::from_str(&std::fs::read_to_string(det.join("metrics.json")).unwrap()).unwrap();
    // The learning check.
    let map50 = metrics["best"].as_f64().unwrap();
    assert!(map50 >= 0.6, "validation mAP@50 {map50}: {metrics}");
    assert_eq!(metrics["metric"], "map50");
    assert!(metrics["train_with_boxes"].as_u64().unwrap() > 50);
    assert_eq!(metrics["unboxed_positives_left_out"], 0);
    assert_eq!(metrics["runtime"]["device"], "cpu");

    // The evaluate stage: COCO metrics with intervals over images.
    let eval: Value = serde_json::from_str(
        &std::fs::read_to_string(outputs(&summary, "evaluate").join("metrics.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(eval["task"], "detection", "{eval}");
    let m = &eval["metrics"]["map50"];
    assert!(
        (m["value"].as_f64().unwrap() - map50).abs() < 1e-9,
        "{eval}"
    );
    assert!(m["ci"][0].as_f64().unwrap() <= map50 && map50 <= m["ci"][1].as_f64().unwrap());
    for k in ["map50_95", "precision", "recall", "f1", "ap50/fracture"] {
        assert!(eval["metrics"][k]["value"].is_number(), "{k}: {eval}");
    }

    // The files are plain COCO: `engine metrics` reads them the same way.
    let gt = det.join("ground_truth.json");
    let dets = det.join("detections.json");
    let r = ws
        .run(&[
            "metrics",
            "--task",
            "detection",
            "--gt",
            gt.to_str().unwrap(),
            "--dets",
            dets.to_str().unwrap(),
            "--bootstrap",
            "0",
            "--json",
        ])
        .code(0);
    let again: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!((again["metrics"]["map50"]["value"].as_f64().unwrap() - map50).abs() < 1e-9);
    let coco: Value = serde_json::from_str(&std::fs::read_to_string(&gt).unwrap()).unwrap();
    assert_eq!(coco["categories"][0]["name"], "fracture");
    let w = coco["images"][0]["width"].as_u64().unwrap();
    assert_eq!(w, 64, "boxes are in the source image's pixels");

    // Nothing re-runs.
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0);
    assert!(
        summary["stages"]
            .as_object()
            .unwrap()
            .values()
            .all(|s| s["outcome"] == "cached"),
        "{summary}"
    );
}

#[test]
fn detectors_take_yolo_datasets_and_no_paired_or_confound_evaluation() {
    let ws = wrist(40, "1.0");
    let bad = MANIFEST
        .replace("format: yolo", "format: folder-per-class")
        .replace("root: data", "root: data/images");
    ws.manifest(&bad);
    let r = ws.run(&["validate", "pipeline.yaml"]).code(2);
    assert!(
        r.stderr.contains("has no boxes") && r.stderr.contains("yolo"),
        "{}",
        r.stderr
    );
    let paired = MANIFEST.replace(
        "with: {model: det, bootstrap: 200}",
        "with: {model: det, baseline: det, bootstrap: 200}",
    );
    ws.manifest(&paired);
    let r = ws.run(&["validate", "pipeline.yaml"]).code(2);
    assert!(r.stderr.contains("paired tests"), "{}", r.stderr);
    let big = MANIFEST.replace("image_size: 64", "image_size: 100");
    ws.manifest(&big);
    let r = ws.run(&["validate", "pipeline.yaml"]).code(2);
    assert!(r.stderr.contains("image_size"), "{}", r.stderr);
}

const PSEUDO: &str = "\
version: 1
name: wrist-pseudo
seed: 1
datasets:
  wrist:
    format: yolo
    root: data
    split: {by: patient, val: 0.2, test: 0.15, seed: 7}
stages:
  teacher:
    uses: detector.train
    with: {dataset: wrist, image_size: 64, epochs: 25, batch_size: 16, device: cpu}
  pseudo:
    uses: pseudo_label
    with: {teacher: teacher, dataset: wrist, confidence: 0.25, device: cpu}
  student:
    uses: detector.train
    with: {dataset: wrist, image_size: 64, epochs: 2, batch_size: 16, neg_pos_ratio: 2, label_smoothing: 0.05, from: [pseudo], device: cpu}
";

fn json_of(dir: &std::path::Path, file: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
}

#[test]
fn a_teacher_boxes_the_unboxed_positives_and_the_student_trains_on_them() {
    let ws = wrist(400, "0.5");
    ws.manifest(PSEUDO);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    let teacher = json_of(&outputs(&summary, "teacher"), "metrics.json");
    let pseudo_dir = outputs(&summary, "pseudo");
    let pm = json_of(&pseudo_dir, "metrics.json");
    let labels = json_of(&pseudo_dir, "pseudo_labels.json");
    let student = json_of(&outputs(&summary, "student"), "metrics.json");
    // The teacher left the unboxed positives out; the pseudo-labeller saw exactly them.
    let unboxed = teacher["unboxed_positives_left_out"].as_u64().unwrap();
    assert!(unboxed > 50, "{teacher}");
    assert_eq!(pm["unboxed_positives"], unboxed, "{pm}");
    let labelled = pm["labelled"].as_u64().unwrap();
    assert!(labelled > 0, "the teacher boxed nothing: {pm}");
    assert_eq!(
        labelled + pm["down_weighted"].as_u64().unwrap() + pm["dropped"].as_u64().unwrap(),
        unboxed
    );
    let images = labels["images"].as_array().unwrap();
    assert_eq!(images.len() as u64, labelled);
    for img in images {
        let boxes = img["boxes"].as_array().unwrap();
        assert!(!boxes.is_empty() && boxes.len() <= 3, "{img}");
        for b in boxes {
            assert!(b["score"].as_f64().unwrap() >= 0.25);
            let (cx, w) = (b["cx"].as_f64().unwrap(), b["w"].as_f64().unwrap());
            assert!(
                w > 0.0 && cx - w / 2.0 >= -1e-9 && cx + w / 2.0 <= 1.0 + 1e-9,
                "{b}"
            );
        }
        assert_eq!(img["weight"], 1.0);
    }
    // The student trains on the boxed images and the pseudo-labelled ones together.
    assert_eq!(student["pseudo_labelled"], labelled, "{student}");
    assert_eq!(student["unboxed_positives_left_out"], unboxed - labelled);
    assert_eq!(
        student["train_with_boxes"].as_u64().unwrap(),
        teacher["train_with_boxes"].as_u64().unwrap() + labelled
    );

    // Down-weighting the unconfident: a confidence no box reaches keeps each image's best
    // box at the lower weight; the teacher comes from the cache.
    ws.manifest(&PSEUDO.replace(
        "confidence: 0.25,",
        "confidence: 0.99, unconfident: down_weight, unconfident_weight: 0.25,",
    ));
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(summary["stages"]["teacher"]["outcome"], "cached");
    let pm = json_of(&outputs(&summary, "pseudo"), "metrics.json");
    let down = pm["down_weighted"].as_u64().unwrap();
    assert!(down > 0, "{pm}");
    let labels = json_of(&outputs(&summary, "pseudo"), "pseudo_labels.json");
    let weights: Vec<f64> = labels["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["weight"].as_f64().unwrap())
        .collect();
    assert_eq!(weights.iter().filter(|w| **w == 0.25).count() as u64, down);
}

#[test]
fn pseudo_labels_need_a_detector_teacher_on_the_same_dataset() {
    let ws = wrist(40, "0.3");
    let wrong_teacher = PSEUDO.replace("teacher: teacher, dataset", "teacher: student, dataset");
    ws.manifest(&wrong_teacher);
    // A cycle (student reads pseudo, pseudo reads student) is refused first.
    ws.run(&["validate", "pipeline.yaml"]).code(2);
    let audit_teacher = PSEUDO.replace(
        "  teacher:\n    uses: detector.train\n    with: {dataset: wrist, image_size: 64, epochs: 25, batch_size: 16, device: cpu}",
        "  teacher:\n    uses: data.audit\n    with: {dataset: wrist}",
    );
    assert_ne!(audit_teacher, PSEUDO);
    ws.manifest(&audit_teacher);
    let r = ws.run(&["validate", "pipeline.yaml"]).code(2);
    assert!(r.stderr.contains("trains no detector"), "{}", r.stderr);
    let from_teacher = PSEUDO.replace("from: [pseudo]", "from: [teacher]");
    ws.manifest(&from_teacher);
    let r = ws.run(&["validate", "pipeline.yaml"]).code(2);
    assert!(r.stderr.contains("writes no pseudo-labels"), "{}", r.stderr);
}

const DEVELOP_MANIFEST: &str = "\
version: 1
name: wrist
task:
  task: detection
  modality: wrist_xray
  target: fracture
  classes: [fracture]
  priority_class: fracture
  error_preference: minimize_false_negatives
  objective: {metric: map50}
seed: 1
datasets:
  wrist:
    format: yolo
    root: data
    target: fracture
    split: {by: patient, val: 0.2, test: 0.2, seed: 7}
stages:
  audit:
    uses: data.audit
    with: {dataset: wrist}
  # The detector the loop improves.
  det:
    uses: detector.train
    with:
      dataset: wrist
      image_size: 64
      epochs: 8
      device: cpu
  evaluate:
    uses: evaluate
    with: {model: det, bootstrap: 200}
";

#[test]
fn the_developer_loop_pseudo_labels_sparse_boxes_and_the_test_compares_detectors() {
    let ws = wrist(600, "0.15");
    ws.manifest(DEVELOP_MANIFEST);
    let r = ws
        .run(&["develop", "pipeline.yaml", "--rounds", "1", "--plain"])
        .code(0);
    let rows = crate::support::develop_rows(&ws);
    assert_eq!(rows.len(), 2, "{}", r.stdout);
    // Round 1: the audit's sparse boxes lead to a teacher and a pseudo_label stage.
    assert_eq!(
        rows[1]["summary"],
        "det.from: + [pseudo]; stages.pseudo: + a pseudo_label stage; stages.teacher: + a detector.train stage",
        "{}",
        r.stdout
    );
    let why = rows[1]["rationale"].as_str().unwrap();
    assert!(
        why.contains("training images have boxes") && why.contains("only image-level labels"),
        "{why}"
    );
    assert_eq!(rows[1]["state"], "done", "{}", r.stdout);
    assert_eq!(rows[1]["score"]["metric"], "map50");
    let round1 = ws.read(".engine/develop/pipeline/rounds/001/manifest.yaml");
    assert!(
        round1.contains("# The detector the loop improves.")
            && round1.contains("uses: pseudo_label")
            && round1.contains("from: [pseudo]"),
        "{round1}"
    );
    let best = rows.iter().rev().find(|r| r["kept"] == true).unwrap()["round"]
        .as_u64()
        .unwrap();
    // The pseudo-labelled student beats the detector that saw the boxed images alone.
    assert_eq!(best, 1, "{}", r.stdout);

    // The held-out test: the best round's detector against round 0's, paired over images.
    let t = ws
        .run(&["test", "pipeline.yaml", "--bootstrap", "200", "--json"])
        .code(0);
    let v: Value = serde_json::from_str(&t.stdout).unwrap();
    assert_eq!(v["split"], "test");
    assert_eq!(v["task"], "detection");
    assert!(v["n"].as_u64().unwrap() > 20, "{v}");
    assert!(v["metrics"]["map50"]["value"].is_number(), "{v}");
    assert!(
        v["label"]
            .as_str()
            .unwrap()
            .contains(&format!("round {best}")),
        "{v}"
    );
    let dir = ws
        .path()
        .join(".engine/test")
        .join(v["opening"]["id"].as_str().unwrap());
    let model_dir = dir.join(v["predictions"]["model"].as_str().unwrap());
    assert!(model_dir.join("ground_truth.json").is_file());
    assert!(model_dir.join("detections.json").is_file());
    let p = &v["comparison"]["paired"]["map50"];
    assert!(p["p_value"].is_number() && p["ci"].is_array(), "{v}");
    assert_eq!(p["model"], v["metrics"]["map50"]["value"]);
    assert!(
        v["comparison"]["baseline_label"]
            .as_str()
            .unwrap()
            .contains("round 0 (initial)"),
        "{v}"
    );
    assert!(
        t.stderr.contains("positive without boxes"),
        "the unboxed test positives are counted: {}",
        t.stderr
    );
    // The opening is recorded once; a detector has no confound analysis.
    let seal = ws.read(".engine/test-seal.jsonl");
    assert_eq!(seal.lines().count(), 1, "{seal}");
    let r = ws
        .run(&["test", "pipeline.yaml", "--confound", "fracture"])
        .code(2);
    assert!(r.stderr.contains("is a detector"), "{}", r.stderr);
    assert_eq!(
        ws.read(".engine/test-seal.jsonl"),
        seal,
        "a refusal opens nothing"
    );

    // The report shows the detectors' test.
    ws.run(&["report", "pipeline.yaml"]).code(0);
    let html = ws.read("pipeline.report.html");
    assert!(
        html.contains("images with") && html.contains("map50"),
        "report"
    );
}
