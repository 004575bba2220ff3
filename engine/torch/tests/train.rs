//! `classifier.train` on synthetic data, on the CPU: it learns (the chest family's
//! pneumothorax), writes its outputs in the forms the rest of the engine reads, and the same
//! seed gives a bit-identical checkpoint.

use std::collections::BTreeMap;
use std::path::Path;

use engine_core::job::StageJob;
use engine_core::manifest::{AttributeSource, Dataset, DatasetFormat, SplitSpec, StageKind};
use engine_data::synth::{self, ChestOptions, DermOptions, Family};

fn chest(root: &Path, n: usize, size: usize) -> Dataset {
    synth::write(
        &Family::Chest(ChestOptions {
            n,
            size,
            neatx_n: 0,
            seed: 3,
            ..ChestOptions::default()
        }),
        root,
    )
    .unwrap();
    let mut spec = Dataset::new(DatasetFormat::SiimAcr, root.display().to_string());
    spec.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "drains.csv".into(),
            id_column: "image_id".into(),
            column: None,
        },
    );
    spec.split = Some(SplitSpec {
        val: 0.2,
        seed: 7,
        ..SplitSpec::default()
    });
    spec
}

fn job(ws: &Path, out: &str, spec: &Dataset, params: serde_json::Value, seed: u64) -> StageJob {
    let out_dir = ws.join(out);
    std::fs::create_dir_all(&out_dir).unwrap();
    StageJob {
        run_id: "test".into(),
        stage: "train".into(),
        kind: StageKind::ClassifierTrain,
        params,
        workspace: ws.to_path_buf(),
        out_dir,
        upstream: BTreeMap::new(),
        datasets: BTreeMap::from([("d".into(), spec.root.clone().into())]),
        dataset_specs: BTreeMap::from([("d".into(), spec.clone())]),
        dataset_fingerprints: BTreeMap::from([("d".into(), "fp".into())]),
        seed,
        cpus: 2,
    }
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn outputs_are_complete_and_the_same_seed_gives_the_same_checkpoint() {
    let ws = tempfile::tempdir().unwrap();
    let spec = chest(&ws.path().join("chest"), 120, 32);
    let params = serde_json::json!({"dataset": "d", "image_size": 32, "epochs": 2, "batch_size": 16, "device": "cpu"});
    engine_torch::train::run_stage(&job(ws.path(), "a", &spec, params.clone(), 5)).unwrap();
    engine_torch::train::run_stage(&job(ws.path(), "b", &spec, params.clone(), 5)).unwrap();
    engine_torch::train::run_stage(&job(ws.path(), "c", &spec, params, 6)).unwrap();
    let bytes = |d: &str| std::fs::read(ws.path().join(d).join("model.safetensors")).unwrap();
    assert_eq!(
        bytes("a"),
        bytes("b"),
        "the same seed gives a bit-identical checkpoint"
    );
    assert_ne!(
        bytes("a"),
        bytes("c"),
        "another seed gives another checkpoint"
    );
    for f in engine_core::stages::train::OUTPUTS {
        assert!(ws.path().join("a").join(f).is_file(), "{f} is missing");
    }
    let metrics = read_json(&ws.path().join("a/metrics.json"));
    assert_eq!(metrics["metric"], "auc");
    assert_eq!(metrics["epochs_run"], 2);
    let config = read_json(&ws.path().join("a/config.json"));
    assert_eq!(
        config["classes"],
        serde_json::json!(["no_pneumothorax", "pneumothorax"])
    );
    assert_eq!(config["channels"], 1);
    assert_eq!(
        std::fs::read_to_string(ws.path().join("a/curve.jsonl"))
            .unwrap()
            .lines()
            .count(),
        2
    );
    // The predictions are what `engine metrics` reads, with the drain as an attribute column,
    // and hold no DICOM identifier or synthetic name.
    let preds = std::fs::read_to_string(ws.path().join("a/predictions.csv")).unwrap();
    assert!(
        preds.starts_with("id,label,prob,patient,drain\n"),
        "{preds}"
    );
    assert!(!preds.contains("2.25.") && !preds.contains("SYNTH"));
    let parsed = engine_core::metrics::predictions::read_binary(
        &ws.path().join("a/predictions.csv"),
        Some("drain"),
    )
    .unwrap();
    assert_eq!(
        parsed.ids.len(),
        metrics["val_images"].as_u64().unwrap() as usize
    );
}

#[test]
fn it_learns_pneumothorax_on_the_chest_family() {
    let ws = tempfile::tempdir().unwrap();
    let spec = chest(&ws.path().join("chest"), 1200, 64);
    let params = serde_json::json!({"dataset": "d", "image_size": 64, "epochs": 12, "batch_size": 32, "lr": 0.002, "device": "cpu"});
    engine_torch::train::run_stage(&job(ws.path(), "out", &spec, params, 1)).unwrap();
    let metrics = read_json(&ws.path().join("out/metrics.json"));
    let auc = metrics["best"].as_f64().unwrap();
    eprintln!("chest validation AUC {auc:.4} ({metrics})");
    assert!(auc >= 0.85, "validation AUC {auc} is below 0.85");
}

#[test]
fn it_learns_the_eight_dermoscopy_classes() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().join("derm");
    synth::write(
        &Family::Derm(DermOptions {
            n: 1200,
            size: 48,
            seed: 4,
        }),
        &root,
    )
    .unwrap();
    let mut spec = Dataset::new(DatasetFormat::Isic2019, root.display().to_string());
    spec.split = Some(SplitSpec {
        val: 0.2,
        seed: 7,
        ..SplitSpec::default()
    });
    let params = serde_json::json!({"dataset": "d", "image_size": 48, "epochs": 10, "batch_size": 32, "lr": 0.002, "device": "cpu", "loss": {"class_weighted": true}});
    engine_torch::train::run_stage(&job(ws.path(), "out", &spec, params, 1)).unwrap();
    let metrics = read_json(&ws.path().join("out/metrics.json"));
    let auc = metrics["best"].as_f64().unwrap();
    eprintln!("dermoscopy validation macro AUC {auc:.4} ({metrics})");
    assert_eq!(metrics["metric"], "macro_auc");
    assert!(auc >= 0.85, "validation macro AUC {auc} is below 0.85");
}
