//! `engine init`: from a request and a dataset to a manifest that validates and runs, every
//! chosen value with its reason; the examples in `examples/` are its output and run.

use std::path::Path;

use crate::support::{Workspace, outcomes, worker_is_built};

fn examples() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The arguments of the `engine synth` line of an example's run.sh.
fn synth_args(example: &Path) -> Vec<String> {
    let script = std::fs::read_to_string(example.join("run.sh")).unwrap();
    let line = script
        .lines()
        .find(|l| l.starts_with("\"$engine\" synth"))
        .expect("run.sh writes its data with engine synth");
    line.split_whitespace().skip(1).map(str::to_owned).collect()
}

#[test]
fn the_examples_are_what_init_makes_and_they_run() {
    for name in [
        "dermoscopy-8class",
        "melanoma-vs-nevus",
        "pneumothorax-drains",
        "wrist-fracture",
        "wrist-fracture-sparse-boxes",
    ] {
        let example = examples().join(name);
        let ws = Workspace::new();
        let args = synth_args(&example);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ws.run(&args).code(0);
        let request = std::fs::read_to_string(example.join("request.txt")).unwrap();
        ws.run(&["init", &request, "--data", "data", "-o", "pipeline.yaml"])
            .code(0);
        let made = ws.read("pipeline.yaml");
        let checked_in = std::fs::read_to_string(example.join("pipeline.yaml")).unwrap();
        assert_eq!(
            made, checked_in,
            "examples/{name}/pipeline.yaml is not what `engine init` makes now; rerun examples/{name}/run.sh and commit it"
        );
        assert!(worker_is_built(), "engine-worker is not beside engine");
        let (code, summary) = ws.apply_json();
        assert_eq!(code, 0, "{name}: {summary}");
        assert!(
            outcomes(&summary).iter().all(|(_, o)| o == "succeeded"),
            "{name}: {summary}"
        );
    }
}

#[test]
fn init_says_why_it_chose_each_value() {
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
        "60",
    ])
    .code(0);
    let request = "Flag pneumothorax on chest X-rays; it must not rely on chest tubes.";
    ws.run(&["init", request, "--data", "data/chest", "-o", "p.yaml"])
        .code(0);
    let text = ws.read("p.yaml");
    for want in [
        "request: >-\n  Flag pneumothorax on chest X-rays; it must not rely on chest tubes.",
        "  confounders:\n  - chest_drain",
        "format: siim-acr  # from the files: 120 images in the siim-acr layout",
        "root: data/chest\n",
        "patients; each patient's images stay in one split",
        "drain: {file: drains.csv}  # the request names `chest_drain`",
        "uses: model.predict",
        "sampler: {kind: group_balanced, attribute: chest_drain}",
        "debias: {kind: gradient_reversal, attribute: chest_drain_prob, lambda: 0.3}",
        "image_size: 32  # images are mostly 32x32 px",
        "confound: drain",
        // A plain control, so that the reliance on the drain has a reference.
        "  control:\n    description: The plain control",
        "with: {model: train, baseline: control, confound: drain}",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    // The control is the same training without the debiasing.
    let control = &text[text.find("  control:").unwrap()..text.find("  against_control:").unwrap()];
    assert!(
        !control.contains("sampler:") && !control.contains("debias:"),
        "{control}"
    );
    ws.run(&["validate", "p.yaml"]).code(0);
    // An existing manifest is kept.
    let r = ws
        .run(&[
            "init",
            "flag fractures",
            "--data",
            "data/chest",
            "-o",
            "p.yaml",
        ])
        .code(2);
    assert!(r.stderr.contains("p.yaml exists"), "{}", r.stderr);
    assert_eq!(ws.read("p.yaml"), text);
}

#[test]
fn requests_the_data_cannot_serve_are_refused_in_words() {
    let ws = Workspace::new();
    ws.run(&[
        "synth", "derm", "--out", "derm", "--n", "80", "--size", "16",
    ])
    .code(0);
    for (request, data, message) in [
        (
            "Tell pneumonia apart from normal chest X-rays.",
            "derm",
            "asks for a yes/no model, and derm holds",
        ),
        (
            "Mark where a fracture is on the wrist radiograph.",
            "derm",
            "which has no boxes (hint: point --data at a YOLO dataset",
        ),
        (
            "Sort dermoscopy lesions into the usual diagnostic groups.",
            "nowhere",
            "--data nowhere is not a directory",
        ),
        ("something vague", "derm", "the request leaves open:"),
        ("", "derm", "the request is empty"),
    ] {
        let r = ws
            .run(&["init", request, "--data", data, "-o", "x.yaml"])
            .code(2);
        assert!(r.stderr.contains(message), "{request}: {}", r.stderr);
        assert!(!ws.path().join("x.yaml").exists());
    }
    // Without a terminal, open questions are listed, and --assume-defaults goes ahead.
    ws.run(&[
        "init",
        "Sort dermoscopy lesions into the usual diagnostic groups.",
        "--data",
        "derm",
        "-o",
        "x.yaml",
        "--assume-defaults",
    ])
    .code(0);
}

#[test]
fn splits_too_small_for_the_requests_claims_are_named_before_training() {
    let ws = Workspace::new();
    ws.run(&[
        "synth", "chest", "--out", "data", "--n", "120", "--size", "32", "--neatx", "0",
    ])
    .code(0);
    let request = "Flag pneumothorax on chest X-rays with a sensitivity of at least 90%.";
    let r = ws
        .run(&["init", request, "--data", "data", "-o", "p.yaml"])
        .code(0);
    // 36 positives are the fewest on which 90% could be shown even with none missed.
    for split in ["validation", "test"] {
        let line = r
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("warning: the {split} split has ")))
            .unwrap_or_else(|| panic!("no warning for {split}: {}", r.stderr));
        assert!(
            line.contains("images with pneumothorax: even a model that gets every one right could not show a sensitivity of at least 90%")
                && line.contains("(that takes at least 36)"),
            "{line}"
        );
    }
    // A request that claims nothing about a proportion gets no such warning.
    let r = ws
        .run(&[
            "init",
            "Flag pneumothorax on chest X-rays.",
            "--data",
            "data",
            "-o",
            "q.yaml",
        ])
        .code(0);
    assert!(!r.stderr.contains("warning: the"), "{}", r.stderr);
}
