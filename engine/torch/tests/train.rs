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
        task: None,
        objective: None,
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
            ..DermOptions::default()
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

/// Validation AUC and the partial correlation between the predicted probability and the
/// drain, controlling for the label, of a run's predictions.
fn auc_and_partial_correlation(dir: &Path) -> (f64, f64) {
    let p =
        engine_core::metrics::predictions::read_binary(&dir.join("predictions.csv"), Some("drain"))
            .unwrap();
    let a = p.attribute.unwrap();
    let d = engine_core::metrics::confound::ConfoundData::new(
        &p.positive,
        &p.probs,
        &a.values,
        &a.present,
        0.5,
    );
    let partial = d.stats(&vec![1; p.probs.len()])[3];
    let auc = engine_core::metrics::roc_auc(&p.positive, &p.probs).unwrap();
    (auc, partial)
}

/// Over three seeds, since one adversarial run is chaotic: a change of the inputs in the
/// fifth decimal (the fused CPU augmentation against the tensor path) moved one seed's AUC
/// difference from -0.014 to -0.040 and another's from -0.021 to -0.031, while a third's
/// rose from +0.002 to +0.021. The claims are about the technique, so they are checked on
/// the mean of the seeds.
#[test]
fn gradient_reversal_with_group_balancing_hides_the_drain() {
    let ws = tempfile::tempdir().unwrap();
    let spec = chest(&ws.path().join("chest"), 1200, 64);
    let base = serde_json::json!({"dataset": "d", "image_size": 64, "epochs": 12, "batch_size": 32, "lr": 0.002, "device": "cpu"});
    let mut debiased = base.clone();
    debiased["sampler"] = serde_json::json!({"kind": "group_balanced", "attribute": "drain"});
    debiased["debias"] =
        serde_json::json!({"kind": "gradient_reversal", "attribute": "drain", "lambda": 0.3});
    let seeds = [1u64, 2, 3];
    let (mut auc_change, mut r_plain, mut r_debiased) = (0.0, 0.0, 0.0);
    for seed in seeds {
        let (plain_dir, debiased_dir) = (format!("plain{seed}"), format!("debiased{seed}"));
        let plain_job = job(ws.path(), &plain_dir, &spec, base.clone(), seed);
        engine_torch::train::run_stage(&plain_job).unwrap();
        let debiased_job = job(ws.path(), &debiased_dir, &spec, debiased.clone(), seed);
        engine_torch::train::run_stage(&debiased_job).unwrap();
        let (auc0, r0) = auc_and_partial_correlation(&ws.path().join(&plain_dir));
        let (auc1, r1) = auc_and_partial_correlation(&ws.path().join(&debiased_dir));
        eprintln!(
            "seed {seed}: plain: AUC {auc0:.4}, partial correlation with the drain {r0:.4}; debiased: AUC {auc1:.4}, partial correlation {r1:.4}"
        );
        let curve =
            std::fs::read_to_string(ws.path().join(&debiased_dir).join("curve.jsonl")).unwrap();
        assert!(curve.contains("\"adversary_loss\""), "{curve}");
        let n = seeds.len() as f64;
        auc_change += (auc1 - auc0) / n;
        r_plain += r0 / n;
        r_debiased += r1 / n;
    }
    assert!(
        r_debiased < r_plain,
        "the mean partial correlation rose from {r_plain} to {r_debiased}"
    );
    assert!(auc_change >= -0.03, "the mean AUC changed by {auc_change}");
}

#[test]
fn every_technique_trains_and_the_same_seed_still_gives_the_same_checkpoint() {
    let ws = tempfile::tempdir().unwrap();
    let spec = chest(&ws.path().join("chest"), 120, 32);
    let base = serde_json::json!({"dataset": "d", "image_size": 32, "epochs": 1, "batch_size": 16, "device": "cpu"});
    let variants = [
        (
            "bce",
            serde_json::json!({"loss": {"kind": "bce", "label_smoothing": 0.05}}),
        ),
        (
            "focal",
            serde_json::json!({"loss": {"kind": "focal", "gamma": 2.0, "alpha": 0.75}}),
        ),
        (
            "class",
            serde_json::json!({"sampler": {"kind": "class_balanced"}, "loss": {"class_weighted": true}}),
        ),
        (
            "ratio",
            serde_json::json!({"sampler": {"kind": "ratio", "negatives_per_positive": 2.0}}),
        ),
        (
            "resnet",
            serde_json::json!({"backbone": "resnet18", "threads": 1}),
        ),
        (
            "seg",
            serde_json::json!({"segmentation": {"weight": 0.5}, "mixup": {"alpha": 0.2}}),
        ),
        // Everything random at once: the run must still be reproducible.
        (
            "all",
            serde_json::json!({
                "sampler": {"kind": "group_balanced", "attribute": "drain"},
                "debias": {"kind": "gradient_reversal", "attribute": "drain", "lambda": 0.5, "hidden": 16},
                "mixup": {"alpha": 0.4},
                "ema": {"decay": 0.9},
                "loss": {"kind": "focal"},
            }),
        ),
    ];
    for (name, extra) in variants {
        let mut params = base.clone();
        for (k, v) in extra.as_object().unwrap() {
            params[k] = v.clone();
        }
        engine_torch::train::run_stage(&job(ws.path(), name, &spec, params.clone(), 5))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let metrics = read_json(&ws.path().join(name).join("metrics.json"));
        assert!(metrics["best"].as_f64().unwrap().is_finite(), "{name}");
        let config = read_json(&ws.path().join(name).join("config.json"));
        let head = if matches!(name, "bce" | "focal" | "all") {
            "sigmoid"
        } else {
            "softmax"
        };
        assert_eq!(config["head"], head, "{name}");
        if name == "seg" {
            let curve = std::fs::read_to_string(ws.path().join("seg/curve.jsonl")).unwrap();
            let line: serde_json::Value =
                serde_json::from_str(curve.lines().next().unwrap()).unwrap();
            let seg = line["segmentation_loss"].as_f64().unwrap();
            assert!(seg.is_finite() && seg > 0.0, "{line}");
            let saved = engine_torch::tch::Tensor::read_safetensors(
                ws.path().join("seg/model.safetensors"),
            )
            .unwrap();
            assert!(saved.iter().all(|(k, _)| !k.starts_with("segmentation")));
        }
        if name == "all" {
            engine_torch::train::run_stage(&job(ws.path(), "all-again", &spec, params, 5)).unwrap();
            let bytes =
                |d: &str| std::fs::read(ws.path().join(d).join("model.safetensors")).unwrap();
            assert_eq!(bytes("all"), bytes("all-again"));
            // The adversarial head is training machinery, not part of the saved model.
            let saved = engine_torch::tch::Tensor::read_safetensors(
                ws.path().join("all/model.safetensors"),
            )
            .unwrap();
            assert!(saved.iter().all(|(k, _)| !k.starts_with("adversary")));
        }
    }
    // A checkpoint of this stage is a valid starting point for another run.
    std::fs::copy(
        ws.path().join("resnet/model.safetensors"),
        ws.path().join("start.safetensors"),
    )
    .unwrap();
    let params = serde_json::json!({"dataset": "d", "image_size": 32, "epochs": 1, "batch_size": 16, "device": "cpu", "backbone": "resnet18", "pretrained": "start.safetensors"});
    engine_torch::train::run_stage(&job(ws.path(), "resumed", &spec, params, 5)).unwrap();
    // Weights of another network are refused with the keys that do not fit.
    let params = serde_json::json!({"dataset": "d", "image_size": 32, "epochs": 1, "device": "cpu", "pretrained": "start.safetensors"});
    let err =
        engine_torch::train::run_stage(&job(ws.path(), "wrong", &spec, params, 5)).unwrap_err();
    assert!(
        err.contains("15 keys missing from the file") && err.contains("`bn0.bias`"),
        "{err}"
    );
}

#[test]
fn settings_that_do_not_fit_the_task_are_refused_in_words() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().join("derm");
    synth::write(
        &Family::Derm(DermOptions {
            n: 80,
            size: 16,
            seed: 4,
            ..DermOptions::default()
        }),
        &root,
    )
    .unwrap();
    let spec = Dataset::new(DatasetFormat::Isic2019, root.display().to_string());
    for (params, want) in [
        (
            serde_json::json!({"dataset": "d", "image_size": 16, "device": "cpu", "loss": {"kind": "bce"}}),
            "`loss.kind: bce` is for binary tasks",
        ),
        (
            serde_json::json!({"dataset": "d", "image_size": 16, "device": "cpu", "loss": {"kind": "focal", "alpha": 0.25}}),
            "`loss.alpha` weighs the positive class",
        ),
        (
            serde_json::json!({"dataset": "d", "image_size": 16, "device": "cpu", "sampler": {"kind": "ratio", "negatives_per_positive": 2.0}}),
            "the `ratio` sampler is for binary tasks",
        ),
        (
            serde_json::json!({"dataset": "d", "image_size": 16, "device": "cpu", "sampler": {"kind": "group_balanced", "attribute": "ruler"}}),
            "names attribute `ruler`, which dataset `d` does not have",
        ),
    ] {
        let err =
            engine_torch::train::run_stage(&job(ws.path(), "out", &spec, params, 1)).unwrap_err();
        assert!(err.contains(want), "{err}");
    }
}

#[test]
fn a_drain_model_labels_the_pneumothorax_images_for_the_audit_and_training() {
    let ws = tempfile::tempdir().unwrap();
    let root = ws.path().join("chest");
    synth::write(
        &Family::Chest(ChestOptions {
            n: 300,
            size: 48,
            neatx_n: 400,
            seed: 5,
            ..ChestOptions::default()
        }),
        &root,
    )
    .unwrap();
    let mut neatx = Dataset::new(
        DatasetFormat::CsvImages,
        root.join("neatx").display().to_string(),
    );
    neatx.labels = Some("drains.csv".into());
    neatx.target = Some("drain".into());
    neatx.split = Some(SplitSpec {
        val: 0.25,
        seed: 1,
        ..SplitSpec::default()
    });
    let params = serde_json::json!({"dataset": "d", "image_size": 48, "epochs": 6, "batch_size": 32, "lr": 0.002, "device": "cpu", "loss": {"kind": "bce"}});
    engine_torch::train::run_stage(&job(ws.path(), "drain_model", &neatx, params, 2)).unwrap();
    let drain_auc = read_json(&ws.path().join("drain_model/metrics.json"))["best"]
        .as_f64()
        .unwrap();
    // The calibration map is kept with the model, fitted on every validation image.
    let calibration = read_json(&ws.path().join("drain_model/calibration.json"));
    assert_eq!(calibration["method"], "platt");
    assert_eq!(calibration["bias"].as_array().map(Vec::len), Some(2));
    assert!(
        calibration["slope"].as_f64().unwrap() > 0.0,
        "{calibration}"
    );
    assert!(
        calibration["validation"]["after"]["brier"].is_number(),
        "{calibration}"
    );
    assert!(
        ws.path()
            .join("drain_model/predictions.uncalibrated.csv")
            .exists()
    );

    let mut siim = Dataset::new(DatasetFormat::SiimAcr, root.display().to_string());
    siim.attributes.insert(
        "drain".into(),
        AttributeSource {
            file: "drains.csv".into(),
            id_column: "image_id".into(),
            column: None,
        },
    );
    let mut predict = job(
        ws.path(),
        "drain_labels",
        &siim,
        serde_json::json!({"model": "drain_model", "dataset": "d", "as_attribute": "chest_drain", "device": "cpu"}),
        2,
    );
    predict.kind = StageKind::ModelPredict;
    predict
        .upstream
        .insert("drain_model".into(), ws.path().join("drain_model"));
    engine_torch::predict::run_stage(&predict).unwrap();
    let out = ws.path().join("drain_labels");
    let csv = std::fs::read_to_string(out.join("attributes.csv")).unwrap();
    assert!(
        csv.starts_with("image_id,chest_drain,chest_drain_prob\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), 301);
    // DICOM identifiers leave as their salted hashes.
    assert!(!csv.contains("2.25."), "{}", &csv[..200]);
    let threshold = read_json(&out.join("threshold.json"));
    assert_eq!(threshold["rule"], "youden");
    assert_eq!(threshold["images"], 300);

    // The predicted attribute agrees with the drains the images really have, and the audit
    // reads it.
    let salt = engine_data::salt::Salt::for_workspace(ws.path()).unwrap();
    let audit =
        engine_data::audit::run("d", &siim, &root, &salt, &[out.join("attributes.csv")]).unwrap();
    let json = serde_json::to_value(&audit).unwrap();
    let text = json.to_string();
    assert!(
        text.contains("chest_drain_prob"),
        "the audit lists the predicted attribute"
    );
    let mut catalog = engine_data::read(&siim, &root, &salt).unwrap();
    engine_data::read::attach_attribute_table(&mut catalog, &out.join("attributes.csv")).unwrap();
    let partition = catalog.partition(&SplitSpec::default()).unwrap();
    let (mut agree, mut n) = (0, 0);
    for item in partition.train().iter().chain(partition.val()) {
        let (Some(truth), Some(pred)) = (
            item.attributes.get("drain"),
            item.attributes.get("chest_drain"),
        ) else {
            panic!("{} lacks an attribute: {:?}", item.id, item.attributes);
        };
        n += 1;
        agree += usize::from(truth == pred);
    }
    let accuracy = agree as f64 / n as f64;
    eprintln!(
        "drain model validation AUC {drain_auc:.4}; predicted drains agree with the truth on {accuracy:.3} of {n} images"
    );
    assert!(accuracy >= 0.8, "predicted drains agree on only {accuracy}");

    // Training reads the predicted attribute from the stage's output.
    let mut train = job(
        ws.path(),
        "debiased",
        &siim,
        serde_json::json!({"dataset": "d", "image_size": 48, "epochs": 1, "device": "cpu", "from": ["drain_labels"], "debias": {"kind": "gradient_reversal", "attribute": "chest_drain_prob"}}),
        2,
    );
    train.upstream.insert("drain_labels".into(), out.clone());
    engine_torch::train::run_stage(&train).unwrap();
    let preds = std::fs::read_to_string(ws.path().join("debiased/predictions.csv")).unwrap();
    assert!(
        preds.starts_with("id,label,prob,patient,chest_drain,chest_drain_prob,drain\n"),
        "{preds}"
    );

    // A multiclass model cannot label an attribute.
    let mut wrong = predict.clone();
    let config = ws.path().join("drain_model/config.json");
    let mut c = read_json(&config);
    c["classes"] = serde_json::json!(["a", "b", "c"]);
    std::fs::write(&config, c.to_string()).unwrap();
    wrong.out_dir = ws.path().join("wrong");
    std::fs::create_dir_all(&wrong.out_dir).unwrap();
    let err = engine_torch::predict::run_stage(&wrong).unwrap_err();
    assert!(
        err.contains("labels an attribute with a binary model"),
        "{err}"
    );
}
