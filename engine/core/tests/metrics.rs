//! Metrics checked against scikit-learn and pycocotools on the fixtures that
//! `tests/fixtures/metrics/make_fixtures.py` generated (AUC to 1e-9, mAP to 1e-4; the
//! largest differences seen are printed with `--nocapture`).

use std::path::PathBuf;

use engine_core::metrics::coco::read_detection;
use engine_core::metrics::predictions::{read_binary, read_multiclass};
use engine_core::metrics::{
    BinaryData, BinaryMetrics, BinaryOptions, Bootstrap, DetectionData, DetectionMetrics,
    DetectionOptions, MulticlassData, MulticlassMetrics, Units, delong_test,
};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/metrics")
        .join(name)
}

fn references() -> Value {
    let text = std::fs::read_to_string(fixture("references.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[track_caller]
fn close(what: &str, got: f64, want: &Value, tol: f64) -> f64 {
    let want = want
        .as_f64()
        .unwrap_or_else(|| panic!("{what}: no reference"));
    let err = (got - want).abs();
    assert!(
        err <= tol,
        "{what}: got {got}, want {want} (error {err:e} > {tol:e})"
    );
    err
}

#[test]
fn binary_metrics_match_scikit_learn() {
    let refs = references();
    let (mut auc_err, mut other_err) = (0.0f64, 0.0f64);
    for (name, want) in refs["binary"].as_object().unwrap() {
        let p = read_binary(&fixture(name), None).unwrap();
        let m = BinaryData::new(&p.positive, &p.probs)
            .unwrap()
            .metrics(&BinaryOptions::default());
        auc_err = auc_err.max(close(&format!("{name} auc"), m.auc, &want["auc"], 1e-9));
        for (field, got) in BinaryMetrics::NAMES.iter().zip(m.values()).skip(1) {
            other_err = other_err.max(close(&format!("{name} {field}"), got, &want[*field], 1e-12));
        }
    }
    println!("binary: max AUC error {auc_err:e}, max other error {other_err:e}");
}

#[test]
fn multiclass_metrics_match_scikit_learn() {
    let refs = references();
    let want = &refs["multiclass"]["multiclass_5.csv"];
    let p = read_multiclass(&fixture("multiclass_5.csv")).unwrap();
    let m = MulticlassData::new(&p.labels, &p.probs).unwrap().metrics();
    let mut auc_err = close("macro auc", m.macro_auc, &want["macro_auc"], 1e-9);
    let mut other_err = 0.0f64;
    for (field, got) in [
        ("macro_f1", m.macro_f1),
        ("balanced_accuracy", m.balanced_accuracy),
        ("accuracy", m.accuracy),
    ] {
        other_err = other_err.max(close(field, got, &want[field], 1e-12));
    }
    for (c, class) in p.classes.iter().enumerate() {
        auc_err = auc_err.max(close(
            &format!("auc {class}"),
            m.auc[c],
            &want["auc"][class],
            1e-9,
        ));
        for (field, per) in [
            ("f1", &m.f1),
            ("sensitivity", &m.sensitivity),
            ("specificity", &m.specificity),
        ] {
            other_err = other_err.max(close(
                &format!("{field} {class}"),
                per[c],
                &want[field][class],
                1e-12,
            ));
        }
    }
    assert_eq!(MulticlassMetrics::names(&p.classes).len(), m.values().len());
    println!("multiclass: max AUC error {auc_err:e}, max other error {other_err:e}");
}

#[test]
fn detection_metrics_match_pycocotools() {
    let refs = references();
    let mut max_err = 0.0f64;
    for (prefix, want) in refs["detection"].as_object().unwrap() {
        let (gt, dets) = read_detection(
            &fixture(&format!("{prefix}_gt.json")),
            &fixture(&format!("{prefix}_dets.json")),
        )
        .unwrap();
        let data = DetectionData::new(&gt, &dets, DetectionOptions::default()).unwrap();
        let m = data.metrics();
        max_err = max_err.max(close(
            &format!("{prefix} mAP@50"),
            m.map50,
            &want["map50"],
            1e-4,
        ));
        max_err = max_err.max(close(
            &format!("{prefix} mAP@50:95"),
            m.map50_95,
            &want["map50_95"],
            1e-4,
        ));
        for (k, cat) in data.categories().iter().enumerate() {
            if want["ap50"].get(&cat.name).is_none() {
                assert!(
                    m.ap50[k].is_nan(),
                    "{prefix} {}: AP without ground truth",
                    cat.name
                );
                continue;
            }
            max_err = max_err.max(close(
                &format!("{prefix} AP50 {}", cat.name),
                m.ap50[k],
                &want["ap50"][&cat.name],
                1e-4,
            ));
            max_err = max_err.max(close(
                &format!("{prefix} AP {}", cat.name),
                m.ap50_95[k],
                &want["ap50_95"][&cat.name],
                1e-4,
            ));
        }
        let names: Vec<String> = data.categories().iter().map(|c| c.name.clone()).collect();
        assert_eq!(DetectionMetrics::names(&names).len(), m.values().len());
    }
    println!("detection: max mAP/AP error {max_err:e}");
}

#[test]
fn delong_matches_the_reference_implementation() {
    let refs = references();
    let want = &refs["delong"];
    let p = read_two_models(&fixture("delong.csv"));
    let d = delong_test(&p.0, &p.1, &p.2).unwrap();
    let mut err = 0.0f64;
    for (field, got) in [
        ("auc_a", d.auc_a),
        ("auc_b", d.auc_b),
        ("var_a", d.var_a),
        ("var_b", d.var_b),
        ("covariance", d.covariance),
        ("z", d.z),
        ("p_value", d.p_value),
        ("sklearn_auc_a", d.auc_a),
        ("sklearn_auc_b", d.auc_b),
    ] {
        err = err.max(close(field, got, &want[field], 1e-9));
    }
    println!("DeLong: max error {err:e}");
}

/// `delong.csv` has two probability columns; read it with the binary reader twice.
fn read_two_models(path: &std::path::Path) -> (Vec<bool>, Vec<f64>, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cols = [String::new(), String::new()];
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split(',').collect();
        for (k, col) in cols.iter_mut().enumerate() {
            let p = if i == 0 { "prob" } else { f[2 + k] };
            col.push_str(&format!("{},{},{p}\n", f[0], f[1]));
        }
    }
    let read = |k: usize| {
        let p = dir.path().join(format!("m{k}.csv"));
        std::fs::write(&p, &cols[k]).unwrap();
        read_binary(&p, None).unwrap()
    };
    let (a, b) = (read(0), read(1));
    assert_eq!(a.positive, b.positive);
    (a.positive, a.probs, b.probs)
}

#[test]
fn bootstrap_of_a_fixture_is_seeded_and_covers_the_estimate() {
    let p = read_binary(&fixture("binary_ties.csv"), None).unwrap();
    let data = BinaryData::new(&p.positive, &p.probs).unwrap();
    let patients = Units::clusters(p.patients.as_deref().unwrap());
    let b = Bootstrap::default();
    let est = data
        .bootstrap(&BinaryOptions::default(), &patients, &b)
        .unwrap();
    let again = data
        .bootstrap(&BinaryOptions::default(), &patients, &b)
        .unwrap();
    assert_eq!(est, again);
    let auc = &est[0];
    let (lo, hi) = auc.ci.unwrap();
    assert!(lo < auc.value && auc.value < hi, "{auc:?}");
    // The AUC alone, through the fast path, gives the same interval.
    let fast = data.bootstrap_auc(&patients, &b).unwrap();
    assert_eq!(&fast, auc);
}

#[test]
fn paired_bootstrap_and_delong_agree_on_the_fixture() {
    let (pos, a, b) = read_two_models(&fixture("delong.csv"));
    let da = BinaryData::new(&pos, &a).unwrap();
    let db = BinaryData::new(&pos, &b).unwrap();
    let t = &da
        .paired(
            &db,
            &BinaryOptions::default(),
            &Units::Items(pos.len()),
            &Bootstrap::default(),
        )
        .unwrap()[0];
    let d = delong_test(&pos, &a, &b).unwrap();
    assert!((t.diff - d.diff).abs() < 1e-12);
    // Both are asymptotically the same test: on 250 cases their p-values are close.
    let p = t.p_value.unwrap();
    assert!(
        (p - d.p_value).abs() < 0.1,
        "bootstrap {p}, DeLong {}",
        d.p_value
    );
}

#[test]
fn exact_intervals_match_statsmodels() {
    // exact.json: statsmodels' proportion_confint(method="beta"), written by
    // make_exact_fixtures.py beside it.
    let text = std::fs::read_to_string(fixture("exact.json")).unwrap();
    let refs: Value = serde_json::from_str(&text).unwrap();
    let mut worst = 0.0f64;
    for case in refs["cases"].as_array().unwrap() {
        let (k, n) = (case["k"].as_u64().unwrap(), case["n"].as_u64().unwrap());
        let level = case["level"].as_f64().unwrap();
        let (lo, hi) = engine_core::metrics::clopper_pearson(k, n, level).unwrap();
        let what = format!("{k} of {n} at {level}");
        worst = worst.max(close(&format!("{what} lower"), lo, &case["ci"][0], 1e-9));
        worst = worst.max(close(&format!("{what} upper"), hi, &case["ci"][1], 1e-9));
    }
    println!("exact intervals: max error {worst:e}");
}
