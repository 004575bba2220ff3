//! `engine synth`, `engine audit` and the `data.audit` stage, end to end: synthetic data in
//! the real layouts, audited from a directory and from a manifest, bad input refused with
//! exit 2 and nothing on disk lost.

use serde_json::Value;

use crate::support::{Workspace, outcomes};

fn synth(ws: &Workspace, args: &[&str]) {
    let mut all = vec!["synth"];
    all.extend_from_slice(args);
    ws.run(&all).code(0);
}

#[test]
fn synth_then_audit_a_directory() {
    let ws = Workspace::new();
    synth(
        &ws,
        &[
            "chest", "--out", "chest", "--n", "120", "--size", "32", "--seed", "4",
        ],
    );
    for f in [
        "train-rle.csv",
        "drains.csv",
        "README.md",
        "neatx/drains.csv",
        "dicom-images-train",
    ] {
        assert!(ws.path().join("chest").join(f).exists(), "{f}");
    }
    let cache = ws.path().join("cache");
    let r = crate::support::engine()
        .args([
            "audit",
            "chest",
            "--attribute",
            "drain=drains.csv",
            "--json",
        ])
        .current_dir(ws.path())
        .env("XDG_CACHE_HOME", &cache)
        .output()
        .unwrap();
    assert_eq!(
        r.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    let v: Value = serde_json::from_slice(&r.stdout).unwrap();
    for key in [
        "n_images",
        "classes",
        "splits",
        "supervision",
        "cross_tabs",
        "excluded",
    ] {
        assert!(v.get(key).is_some(), "audit.json lacks `{key}`");
    }
    assert_eq!(v["n_images"], 120);
    assert_eq!(v["dataset"]["format"], "siim-acr");
    assert!(v["cross_tabs"]["drain"]["train"][0]["p_given_positive"].is_number());
    // Outside a workspace the salt lives in the user's cache, not in the current directory.
    assert!(cache.join("engine/salt").is_file());
    assert!(!ws.path().join(".engine").exists());
    let text = String::from_utf8_lossy(&r.stdout);
    assert!(
        !text.contains("SYNTH") && !text.contains("2.25."),
        "an identifier leaked"
    );
}

#[test]
fn synth_refuses_bad_input_and_keeps_what_is_there() {
    let ws = Workspace::new();
    ws.file("taken/keep.txt", "mine");
    let r = ws
        .run(&["synth", "derm", "--out", "taken", "--n", "5"])
        .code(2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert_eq!(ws.read("taken/keep.txt"), "mine");
    let r = ws
        .run(&["synth", "chest", "--out", "x", "--box-fraction", "0.1"])
        .code(2);
    assert!(
        r.stderr
            .contains("--box-fraction does not apply to `chest`"),
        "{}",
        r.stderr
    );
    let r = ws
        .run(&["synth", "wrist", "--out", "x", "--box-fraction", "2"])
        .code(2);
    assert!(r.stderr.contains("between 0 and 1"), "{}", r.stderr);
    let r = ws
        .run(&[
            "synth",
            "chest",
            "--out",
            "x",
            "--test-drain-given-positive",
            "0.3",
        ])
        .code(2);
    assert!(r.stderr.contains("--test-fraction"), "{}", r.stderr);
    let r = ws
        .run(&["synth", "derm", "--out", "x", "--test-fraction", "0.2"])
        .code(2);
    assert!(
        r.stderr
            .contains("--test-fraction does not apply to `derm`")
            && r.stderr.contains("chest and wrist"),
        "{}",
        r.stderr
    );
    ws.run(&["synth", "lungs", "--out", "x"]).code(2);
    assert!(!ws.path().join("x").exists());
}

#[test]
fn audit_refuses_what_it_cannot_read() {
    let ws = Workspace::new();
    // Two classes of images that are all corrupt: nothing is left after exclusions.
    ws.file("bad/normal/a.png", "not a png")
        .file("bad/effusion/b.png", "\u{89}PNG\r\n truncated");
    let r = ws
        .run(&["audit", "bad", "--format", "folder-per-class"])
        .code(2);
    assert!(r.stderr.contains("no usable image"), "{}", r.stderr);
    let r = ws.run(&["audit", "nowhere"]).code(2);
    assert!(
        r.stderr
            .contains("neither a dataset directory nor a manifest"),
        "{}",
        r.stderr
    );
    ws.file("odd/readme.txt", "no images here");
    let r = ws.run(&["audit", "odd"]).code(2);
    assert!(r.stderr.contains("cannot tell the layout"), "{}", r.stderr);
    let r = ws.run(&["audit", "odd", "--format", "dicom"]).code(2);
    assert!(r.stderr.contains("not a layout"), "{}", r.stderr);
    ws.file("csvset/labels.csv", "image,grade\n");
    let r = ws
        .run(&[
            "audit",
            "csvset",
            "--format",
            "csv-images",
            "--labels",
            "labels.csv",
            "--target-column",
            "label",
        ])
        .code(2);
    assert!(
        r.stderr.contains("no column `label`") && r.stderr.contains("`grade`"),
        "{}",
        r.stderr
    );
}

const MANIFEST: &str = r#"
version: 1
name: audit-only
datasets:
  siim:
    format: siim-acr
    root: data/chest
    attributes:
      drain: {file: drains.csv}
    split: {by: patient, val: 0.15, test: 0.15, seed: 7, stratify: [drain]}
  wrist:
    format: yolo
    root: data/wrist
stages:
  audit:
    uses: data.audit
    with: {dataset: siim}
  audit_wrist:
    uses: data.audit
    with: {dataset: wrist}
"#;

#[test]
fn data_audit_stage_runs_caches_and_follows_its_dataset() {
    let ws = Workspace::new();
    synth(
        &ws,
        &[
            "chest",
            "--out",
            "data/chest",
            "--n",
            "80",
            "--size",
            "32",
            "--neatx",
            "0",
        ],
    );
    synth(
        &ws,
        &[
            "wrist",
            "--out",
            "data/wrist",
            "--n",
            "60",
            "--size",
            "32",
            "--box-fraction",
            "0.1",
        ],
    );
    ws.manifest(MANIFEST);
    ws.run(&["validate", "pipeline.yaml"]).code(0);
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    assert_eq!(
        outcomes(&summary),
        [
            ("audit".into(), "succeeded".into()),
            ("audit_wrist".into(), "succeeded".into())
        ]
    );
    let entries = ws.entries("cache");
    assert_eq!(entries.len(), 2);
    let mut formats = Vec::new();
    for e in &entries {
        let audit: Value =
            serde_json::from_str(&std::fs::read_to_string(e.join("out/audit.json")).unwrap())
                .unwrap();
        let summary_md = std::fs::read_to_string(e.join("out/summary.md")).unwrap();
        assert!(summary_md.starts_with("# Data audit"));
        formats.push(audit["dataset"]["format"].as_str().unwrap().to_owned());
        let text = audit.to_string() + &summary_md;
        assert!(
            !text.contains("SYNTH") && !text.contains("2.25."),
            "an identifier leaked"
        );
    }
    formats.sort();
    assert_eq!(formats, ["siim-acr", "yolo"]);
    // No identifier in the stage logs either.
    for log in std::fs::read_dir(ws.path().join(".engine/runs")).unwrap() {
        for f in std::fs::read_dir(log.unwrap().path().join("logs")).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            assert!(
                !text.contains("SYNTH") && !text.contains("2.25."),
                "an identifier reached a log"
            );
        }
    }
    // Cached on a second run; a change to the dataset's declaration re-runs only its audit.
    let (_, again) = ws.apply_json();
    assert_eq!(
        outcomes(&again)
            .iter()
            .filter(|(_, o)| o == "cached")
            .count(),
        2,
        "{again}"
    );
    ws.manifest(&MANIFEST.replace("seed: 7", "seed: 8"));
    let plan = ws.plan_json();
    let statuses = crate::support::statuses(&plan);
    assert_eq!(
        statuses,
        [
            ("audit".into(), "run".into()),
            ("audit_wrist".into(), "cached".into())
        ]
    );
    // `engine audit MANIFEST` audits the declared datasets without running anything.
    let r = ws
        .run(&["audit", "pipeline.yaml", "--dataset", "wrist"])
        .code(0);
    assert!(
        r.stdout.contains("have only image-level labels"),
        "{}",
        r.stdout
    );
    let r = ws
        .run(&["audit", "pipeline.yaml", "--dataset", "wirst"])
        .code(2);
    assert!(r.stderr.contains("no dataset `wirst`"), "{}", r.stderr);
}

#[test]
fn a_data_audit_stage_with_an_unreadable_dataset_fails_with_the_reason() {
    let ws = Workspace::new();
    ws.file("data/normal/a.png", "garbage")
        .file("data/effusion/b.png", "garbage");
    ws.manifest(
        "version: 1\nname: bad\ndatasets:\n  d: {format: folder-per-class, root: data}\nstages:\n  audit: {uses: data.audit, with: {dataset: d}}\n",
    );
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 1, "{summary}");
    assert_eq!(outcomes(&summary), [("audit".into(), "failed".into())]);
    assert!(summary.to_string().contains("no usable image"), "{summary}");
    assert!(
        ws.entries("cache").is_empty(),
        "a failed stage leaves no cache entry"
    );
}

#[test]
fn a_data_audit_stage_audits_attributes_written_by_another_stage() {
    let ws = Workspace::new();
    synth(
        &ws,
        &["wrist", "--out", "data/wrist", "--n", "40", "--size", "24"],
    );
    // A stand-in for a model.predict stage: an attribute for every image (a cast, say),
    // present exactly on the fractured ones, so its AUC against the label is 1.
    ws.manifest(
        r#"
version: 1
name: attrs
datasets:
  wrist: {format: yolo, root: data/wrist}
stages:
  cast:
    uses: command
    with:
      run: "awk -F, 'NR==1{print \"image_id,cast\"} NR>1{print $1\",\"$2}' data/wrist/image_labels.csv > \"$ENGINE_OUT/attributes.csv\""
      inputs: [data/wrist/image_labels.csv]
      outputs: [attributes.csv]
  audit:
    uses: data.audit
    with: {dataset: wrist, from: [cast]}
"#,
    );
    let (code, summary) = ws.apply_json();
    assert_eq!(code, 0, "{summary}");
    let entry = ws
        .entries("cache")
        .into_iter()
        .find(|e| e.join("out/audit.json").is_file())
        .unwrap();
    let audit: Value =
        serde_json::from_str(&std::fs::read_to_string(entry.join("out/audit.json")).unwrap())
            .unwrap();
    let tab = &audit["cross_tabs"]["cast"]["train"][0];
    assert_eq!(tab["auc"], 1.0, "{tab}");
    assert_eq!(tab["p_given_positive"], 1.0);
    assert_eq!(tab["p_given_negative"], 0.0);
    assert!(
        audit["warnings"].to_string().contains("`cast`"),
        "{}",
        audit["warnings"]
    );
}
