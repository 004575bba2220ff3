//! The `evaluate` stage: `engine metrics` on a `classifier.train` stage's validation
//! predictions at the threshold the request's rule picks there, with the confound analysis
//! and the paired comparison with a baseline stage, headed by the request's requirements
//! and their verdicts, written as `metrics.json` and `summary.md`.

use std::path::{Path, PathBuf};

use engine_core::job::StageJob;
use engine_core::manifest::StageParams;
use engine_core::metrics::{BinaryOptions, Bootstrap, OperatingRule};
use engine_core::task::requirements::operating_rule;

use crate::metrics::{BinaryInput, Cut, Input, evaluate, table, to_json, verdicts};

/// Runs an `evaluate` stage job; the error says what went wrong in a sentence.
pub fn run_evaluate_stage(job: &StageJob) -> Result<(), String> {
    let StageParams::Evaluate(p) = job.stage_params()? else {
        return Err("not an evaluate job".into());
    };
    let predictions = |stage: &str| -> Result<(PathBuf, usize), String> {
        let dir = job
            .upstream
            .get(stage)
            .ok_or_else(|| format!("no outputs of stage `{stage}`"))?;
        Ok((dir.join("predictions.csv"), classes(dir, stage)?))
    };
    let model_dir = job
        .upstream
        .get(&p.model)
        .ok_or_else(|| format!("no outputs of stage `{}`", p.model))?;
    if is_detector(model_dir) {
        return evaluate_detector(job, &p, model_dir);
    }
    let (preds, k) = predictions(&p.model)?;
    let compare = match &p.baseline {
        Some(b) => {
            let (path, kb) = predictions(b)?;
            if kb != k {
                return Err(format!(
                    "`{}` tells {k} classes apart and `{b}` {kb}; paired tests need the same task",
                    p.model
                ));
            }
            Some(path)
        }
        None => None,
    };
    // The threshold the request implies, chosen here on validation: `engine test` chooses
    // it again from these same predictions and applies it unchanged to the test split.
    let rule = job
        .task
        .as_ref()
        .map_or(OperatingRule::Youden, operating_rule);
    let input = if k == 2 {
        Input::Binary(BinaryInput {
            preds,
            options: BinaryOptions {
                at_specificity: p.at_specificity,
                at_sensitivity: p.at_sensitivity,
            },
            attribute: p.confound.clone(),
            compare,
            cut: Cut::Choose {
                rule,
                on: "validation".into(),
            },
            compare_cut: Cut::Choose {
                rule,
                on: "the baseline's validation predictions".into(),
            },
            positive_name: positive_class(model_dir),
        })
    } else {
        if p.confound.is_some() {
            return Err(format!(
                "the confound analysis is for binary tasks, and `{}` tells {k} classes apart; remove `confound`",
                p.model
            ));
        }
        Input::Multiclass { preds, compare }
    };
    let bootstrap = Bootstrap {
        resamples: p.bootstrap as usize,
        seed: job.seed,
        ..Bootstrap::default()
    };
    let report = evaluate(input, &bootstrap)?;
    let (reqs, head) = match &job.task {
        // A baseline compared on the confound figures is the plain control they refer to.
        Some(task) => {
            let control = p
                .baseline
                .as_ref()
                .and_then(|b| report.control(&format!("`{b}`")));
            verdicts(task, &report, "validation", control)
        }
        None => (Vec::new(), String::new()),
    };
    let text = head + &table(&report, &bootstrap);
    let mut json = to_json(report);
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "requirements".into(),
            serde_json::to_value(&reqs).map_err(|e| e.to_string())?,
        );
    }
    // Paths inside the cache mean nothing to a reader; name the stages instead.
    if let Some(obj) = json.as_object_mut() {
        obj.insert("model".into(), p.model.clone().into());
        obj.insert("split".into(), "val".into());
        obj.remove("preds");
        if let (Some(b), Some(serde_json::Value::Object(c))) =
            (&p.baseline, obj.get_mut("comparison"))
        {
            c.insert("baseline".into(), b.clone().into());
        }
    }
    let text = text.replace(
        &job.upstream[&p.model]
            .join("predictions.csv")
            .display()
            .to_string(),
        &format!("`{}` (validation)", p.model),
    );
    let text = match &p.baseline {
        Some(b) => text.replace(
            &job.upstream[b]
                .join("predictions.csv")
                .display()
                .to_string(),
            &format!("`{b}` (validation)"),
        ),
        None => text,
    };
    write_outputs(&job.out_dir, &p.model, &json, &text)
}

/// `metrics.json` and `summary.md` of an evaluation, and the table on standard output.
fn write_outputs(
    out: &Path,
    model: &str,
    json: &serde_json::Value,
    text: &str,
) -> Result<(), String> {
    let body = serde_json::to_string_pretty(json).map_err(|e| e.to_string())? + "\n";
    std::fs::write(out.join("metrics.json"), body)
        .map_err(|e| format!("cannot write metrics.json: {e}"))?;
    let md = format!("# Validation metrics of `{model}`\n\n```\n{text}```\n");
    std::fs::write(out.join("summary.md"), md)
        .map_err(|e| format!("cannot write summary.md: {e}"))?;
    print!("{text}");
    Ok(())
}

/// Whether a stage's outputs are a detector's (`detector.train` writes `kind: detector`).
fn is_detector(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|c| c["kind"] == "detector")
}

/// `engine metrics --task detection` on a detector's validation ground truth and
/// detections: mAP@50, mAP@50:95, precision, recall and F1 with intervals over images.
fn evaluate_detector(
    job: &StageJob,
    p: &engine_core::stages::evaluate::EvaluateParams,
    dir: &Path,
) -> Result<(), String> {
    let (gt, dets) = (dir.join("ground_truth.json"), dir.join("detections.json"));
    let input = Input::Detection {
        gt: gt.clone(),
        dets: dets.clone(),
        options: engine_core::metrics::DetectionOptions::default(),
        compare: None,
    };
    let bootstrap = Bootstrap {
        resamples: p.bootstrap as usize,
        seed: job.seed,
        ..Bootstrap::default()
    };
    let report = evaluate(input, &bootstrap)?;
    let text = table(&report, &bootstrap)
        .replace(
            &gt.display().to_string(),
            &format!("`{}` (validation ground truth)", p.model),
        )
        .replace(
            &dets.display().to_string(),
            &format!("`{}` (validation detections)", p.model),
        );
    let (reqs, head) = match &job.task {
        Some(task) => verdicts(task, &report, "validation", None),
        None => (Vec::new(), String::new()),
    };
    let text = head + &text;
    let mut json = to_json(report);
    if let Some(obj) = json.as_object_mut() {
        obj.insert("model".into(), p.model.clone().into());
        obj.insert("split".into(), "val".into());
        obj.insert(
            "requirements".into(),
            serde_json::to_value(&reqs).map_err(|e| e.to_string())?,
        );
        obj.remove("gt");
        obj.remove("dets");
    }
    write_outputs(&job.out_dir, &p.model, &json, &text)
}

/// The positive class of a binary `classifier.train` stage (the second of the classes its
/// `config.json` names: label 1 of its predictions).
pub(crate) fn positive_class(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["classes"].get(1)?.as_str().map(str::to_owned)
}

/// The number of classes a `classifier.train` stage's `config.json` names.
fn classes(dir: &Path, stage: &str) -> Result<usize, String> {
    let text = std::fs::read_to_string(dir.join("config.json"))
        .map_err(|e| format!("stage `{stage}` left no readable config.json: {e}"))?;
    let config: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the config.json of stage `{stage}` is not JSON: {e}"))?;
    config["classes"]
        .as_array()
        .map(Vec::len)
        .filter(|k| *k >= 2)
        .ok_or_else(|| format!("the config.json of stage `{stage}` names no classes"))
}
