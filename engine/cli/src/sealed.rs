//! `engine test`: the held-out evaluation, the only command that opens a dataset's sealed
//! test split. It checks the models have run, records the opening in
//! `.engine/test-seal.jsonl` (which models, by the hash of their weights, when, and why a
//! reopening happened), refuses to open the split for other models unless `--reopen` gives
//! a reason, has the libtorch worker predict the test images, and reports under
//! `.engine/test/<id>/`: first the request's requirements with their verdicts, then every
//! metric with its 95% CI at each model's threshold, fixed on its validation predictions
//! before the split was opened, and the paired tests against the baseline and the plain
//! control.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::diag::did_you_mean;
use engine_core::fingerprint::FingerprintDb;
use engine_core::load::LoadedManifest;
use engine_core::manifest::StageParams;
use engine_core::metrics::predictions::read_binary;
use engine_core::metrics::{BinaryData, BinaryOptions, Bootstrap, OperatingRule};
use engine_core::plan::{Plan, make_plan};
use engine_core::store::Store;
use engine_core::task::requirements::operating_rule;
use serde_json::{Value, json};

use crate::cli::TestArgs;
use crate::commands::{load_or_report, report_invalid};
use crate::metrics::{BinaryInput, Cut, Input, Locked, evaluate, table, to_json, verdicts};
use crate::{EXIT_FAILED, EXIT_USAGE};

/// The `comparison` object of a report's JSON (the paired tests and relative reductions).
fn to_json_comparison(report: &crate::metrics::Report) -> Value {
    to_json(report.clone())["comparison"].clone()
}

/// A model under test.
struct Tested {
    stage: String,
    /// How reports name it: the stage, and in history mode its round.
    label: String,
    digest: String,
    hash: String,
    classes: usize,
    /// A `detector.train` model (tested on boxes), not a classifier.
    detector: bool,
    /// The manifest (a round's, in history mode) and plan it comes from.
    m: LoadedManifest,
    plan: Plan,
}

/// A model to test: the manifest it comes from, its stage, and how reports name it.
type Source = (LoadedManifest, String, String);

/// The models `engine test` takes: named ones, or those of a developer loop's history.
struct Chosen {
    /// The models, in the order they are tested.
    sources: Vec<Source>,
    /// The attribute the scoring evaluation analyses as a confounder.
    confound: Option<String>,
    /// Whether the last model is the plain control of that confounder.
    with_control: bool,
    /// How many rounds of the history were scored on the validation split.
    looks: Option<usize>,
}

/// The models `engine test` compares when no `--model` is named: the best round of the
/// developer loop's history (or the round the clinician accepted) against round 0.
fn from_history(m: &LoadedManifest, manifest: &Path) -> Result<Chosen, String> {
    let journal = engine_core::agent::journal::Journal::for_manifest(&m.dir, manifest);
    if !journal.exists() {
        return Err(format!(
            "name the model with --model STAGE, or run `engine develop {}` first: without --model, the test compares the developer loop's best round with its first",
            manifest.display()
        ));
    }
    let (rounds, _) = journal.rounds()?;
    let looks = Some(engine_core::agent::journal::Journal::looks(&rounds));
    let accepted = journal.accepted();
    let best = journal
        .chosen(&rounds)
        .ok_or("no round of the history succeeded; there is no model to test")?;
    let scoring = crate::develop::scoring(m)?;
    let mut out = Vec::new();
    for (round, role) in [
        (
            best,
            if accepted.is_some() {
                "accepted"
            } else {
                "best"
            },
        ),
        (0, "initial"),
    ] {
        if round == 0 && best == 0 && !out.is_empty() {
            eprintln!("note: no round beat the manifest as written; it is tested alone");
            break;
        }
        let path = journal.manifest_of(round);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let rm = engine_core::load::load_text(manifest, text)
            .map_err(|i| format!("round {round}'s manifest no longer loads:\n{}", i.render()))?;
        out.push((
            rm,
            scoring.train.clone(),
            format!("`{}` of round {round} ({role})", scoring.train),
        ));
    }
    // The plain control the manifest compares the model with on the confound figures, if
    // any: tested beside the model, so that its reliance on the attribute has a reference.
    let control = m.params.iter().find_map(|(_, p)| match p {
        StageParams::Evaluate(e) if e.model == scoring.train && e.confound.is_some() => {
            e.baseline.clone()
        }
        _ => None,
    });
    if let Some(c) = control {
        out.push((m.clone(), c.clone(), format!("the plain control `{c}`")));
        return Ok(Chosen {
            sources: out,
            confound: scoring.confound,
            with_control: true,
            looks,
        });
    }
    Ok(Chosen {
        sources: out,
        confound: scoring.confound,
        with_control: false,
        looks,
    })
}

/// Runs `engine test`.
pub fn test(args: &TestArgs) -> anyhow::Result<ExitCode> {
    let m = match load_or_report(&args.manifest) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let store = Store::at(&m.dir);
    let mut fp = FingerprintDb::open(&store.fingerprint_memo());
    let usage = |message: String| {
        eprintln!("error: {message}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let Chosen {
        sources,
        confound: scored_confound,
        with_control,
        looks,
    } = match &args.model {
        Some(model) => Chosen {
            sources: std::iter::once(model)
                .chain(args.baseline.iter())
                .map(|s| (m.clone(), s.clone(), format!("`{s}`")))
                .collect::<Vec<_>>(),
            confound: None,
            with_control: false,
            looks: None,
        },
        None if args.baseline.is_some() => {
            return usage("--baseline needs --model; without both, the test compares the developer loop's best round with its first".into());
        }
        None => match from_history(&m, &args.manifest) {
            Ok(s) => s,
            Err(e) => return usage(e),
        },
    };
    let mut models = Vec::new();
    for (sm, stage, label) in sources {
        let plan = match make_plan(&sm, &store, &mut fp) {
            Ok(p) => p,
            Err(invalid) => return Ok(report_invalid(&invalid)),
        };
        match tested(sm, plan, &store, &stage, label, &args.manifest) {
            Ok(t) => models.push(t),
            Err(message) => return usage(message),
        }
    }
    // The confounder the model's evaluation analyses (in history mode, the scoring one's),
    // unless one is named: the test measures what validation measured.
    let evaluated_confound = || {
        let first = models.first()?;
        first.m.params.values().find_map(|p| match p {
            StageParams::Evaluate(e) if e.model == first.stage => e.confound.clone(),
            _ => None,
        })
    };
    let confound = args
        .confound
        .clone()
        .or(scored_confound)
        .or_else(evaluated_confound);
    for base in models.iter().skip(1) {
        let model = &models[0];
        let dataset = |t: &Tested| match &t.m.params[&t.stage] {
            StageParams::ClassifierTrain(p) => p.dataset.clone(),
            StageParams::DetectorTrain(p) => p.dataset.clone(),
            _ => String::new(),
        };
        if model.detector != base.detector {
            return usage(format!(
                "{} and {} are not both detectors or both classifiers; a paired test compares two models of one kind",
                model.label, base.label
            ));
        }
        if dataset(model) != dataset(base) {
            return usage(format!(
                "{} trained on dataset `{}` and {} on `{}`; paired tests need the same test images",
                model.label,
                dataset(model),
                base.label,
                dataset(base)
            ));
        }
    }
    if let Some(attr) = &confound {
        if models[0].detector {
            return usage(format!(
                "--confound is for binary classifiers, and {} is a detector",
                models[0].label
            ));
        }
        if models[0].classes != 2 {
            return usage(format!(
                "--confound is for binary tasks, and {} tells {} classes apart",
                models[0].label, models[0].classes
            ));
        }
        // Checked before the split is opened: a typo must not cost an opening.
        let first = &models[0];
        let known = match &first.m.params[&first.stage] {
            StageParams::ClassifierTrain(p) => {
                engine_core::load::train_attributes(&first.m.manifest.datasets, &first.m.params, p)
            }
            _ => None,
        };
        if let Some(known) = known
            && !known.iter().any(|k| k == attr)
        {
            let hint = match did_you_mean(attr, known.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if known.is_empty() => "the dataset has no attributes".to_owned(),
                None => format!("the attributes are {}", known.join(", ")),
            };
            return usage(format!(
                "--confound {attr} is not an attribute of {}'s dataset (hint: {hint})",
                first.label
            ));
        }
    }

    // The decision thresholds, fixed on each model's validation predictions by the rule the
    // request implies, before the test split is opened; the test applies them unchanged.
    let rule = m
        .manifest
        .task
        .as_ref()
        .map_or(OperatingRule::Youden, operating_rule);
    let mut thresholds: Vec<Option<(f64, OperatingRule)>> = Vec::new();
    for t in &models {
        if t.detector || t.classes != 2 {
            thresholds.push(None);
            continue;
        }
        match locked_threshold(&store.out_dir(&t.digest), rule) {
            Ok(x) => thresholds.push(Some((x, rule))),
            Err(e) => return usage(format!("{}: {e}", t.label)),
        }
    }
    thresholds.resize(models.len().max(2), None);

    // The seal: the first opening names the models; another set needs a reason.
    let seal_path = store.root().join("test-seal.jsonl");
    let openings = read_openings(&seal_path)?;
    let mut hashes: Vec<&str> = models.iter().map(|t| t.hash.as_str()).collect();
    hashes.sort_unstable();
    let seen = openings.iter().any(|o| {
        let mut h: Vec<&str> = o["models"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["hash"].as_str())
            .collect();
        h.sort_unstable();
        h == hashes
    });
    if !openings.is_empty() && !seen && args.reopen.is_none() {
        let first = &openings[0];
        let names: Vec<String> = first["models"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                format!(
                    "`{}` ({})",
                    x["stage"].as_str().unwrap_or("?"),
                    x["hash"].as_str().unwrap_or("?")
                )
            })
            .collect();
        return usage(format!(
            "the test split was opened on {} for {}; looking again with other models turns the test set into a validation set (hint: if you must, pass --reopen \"REASON\"; the reason is recorded and reported)",
            first["at"].as_str().unwrap_or("an earlier run"),
            names.join(" and ")
        ));
    }
    if crate::commands::worker_command("testing").is_none() {
        return Ok(ExitCode::from(EXIT_FAILED));
    }
    let _lock = store.lock("engine test", |other| {
        eprintln!("waiting for another engine process on this workspace ({other})");
    })?;
    let id = engine_core::clock::new_run_id();
    let opened_at = engine_core::clock::now_rfc3339();
    let record = json!({
        "at": opened_at,
        "id": id,
        "manifest": args.manifest.file_name().map(|n| n.to_string_lossy()),
        "models": models.iter().map(|t| json!({"stage": t.stage, "label": t.label, "hash": t.hash})).collect::<Vec<_>>(),
        "repeat": seen,
        "reopen": args.reopen,
    });
    append_line(&seal_path, &record)?;

    let dir = store.root().join("test").join(&id);
    std::fs::create_dir_all(&dir)?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let mut files = Vec::new();
    for t in &models {
        let Some(sp) = t.plan.stage(&t.stage) else {
            return usage(format!("no plan for stage `{}`", t.stage));
        };
        let job = engine_core::exec::stage_job(
            &t.m,
            &t.plan,
            &store,
            sp,
            &id,
            store.out_dir(&t.digest),
            cpus,
        );
        let file_stem = format!("{}-{}", t.stage, &t.digest[..12]);
        let job_file = dir.join(format!("job-{file_stem}.json"));
        std::fs::write(&job_file, serde_json::to_string_pretty(&job)?)?;
        // A classifier's predictions are one CSV file; a detector's, a directory with the
        // test ground truth and its detections.
        let out = if t.detector {
            dir.join(&file_stem)
        } else {
            dir.join(format!("{file_stem}.csv"))
        };
        eprintln!("predicting the test split with {}", t.label);
        let Some(mut cmd) = crate::commands::worker_command("testing") else {
            return Ok(ExitCode::from(EXIT_FAILED));
        };
        cmd.arg("test-predict")
            .arg(&job_file)
            .arg("--out")
            .arg(&out)
            .arg("--purpose")
            .arg(format!("engine test {id}: model {} ({})", t.label, t.hash))
            .arg("--device")
            .arg(&args.device);
        // The worker's progress goes to standard error in words; standard output is ours.
        cmd.stdout(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            anyhow::anyhow!("cannot start {}: {e}", cmd.get_program().to_string_lossy())
        })?;
        if let Some(out) = child.stdout.take() {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                match engine_core::events::parse_progress(&t.stage, &line) {
                    Some(engine_core::events::Event::StageProgress { message, .. }) => {
                        eprintln!("  {}: {message}", t.stage);
                    }
                    _ => eprintln!("  {}: {line}", t.stage),
                }
            }
        }
        let status = child.wait()?;
        if !status.success() {
            eprintln!("error: predicting the test split with {} failed", t.label);
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        files.push(out);
    }

    // The comparison with the initial model (or the named baseline); the plain control,
    // when there is one, is compared on its own below.
    let control_index = with_control.then(|| models.len() - 1);
    let compare = files.get(1).filter(|_| control_index != Some(1)).cloned();
    let input = if models[0].detector {
        let gt = files[0].join("ground_truth.json");
        if let Some(base) = &compare {
            same_ground_truth(&gt, &base.join("ground_truth.json"))?;
        }
        Input::Detection {
            gt,
            dets: files[0].join("detections.json"),
            options: engine_core::metrics::DetectionOptions::default(),
            compare: compare.as_ref().map(|b| b.join("detections.json")),
        }
    } else if models[0].classes == 2 {
        let locked = |i: usize| {
            thresholds[i].map(|(threshold, rule)| {
                Cut::Fixed(Locked {
                    threshold,
                    rule: Some(rule),
                    chosen_on: "validation".into(),
                })
            })
        };
        let (Some(cut), compare_cut) = (locked(0), compare.as_ref().and(locked(1))) else {
            return usage("no threshold was fixed on validation for the model".into());
        };
        Input::Binary(BinaryInput {
            preds: files[0].clone(),
            options: operating_points(&models[0].m, &models[0].stage),
            attribute: confound.clone(),
            compare: compare.clone(),
            cut,
            compare_cut: compare_cut.unwrap_or(Cut::Choose {
                rule: OperatingRule::Youden,
                on: "the baseline's test predictions".into(),
            }),
            positive_name: crate::evaluate::positive_class(&store.out_dir(&models[0].digest)),
        })
    } else {
        Input::Multiclass {
            preds: files[0].clone(),
            compare: compare.clone(),
        }
    };
    let bootstrap = Bootstrap {
        resamples: args.bootstrap,
        seed: args.seed,
        ..Bootstrap::default()
    };
    let report = match evaluate(input, &bootstrap) {
        Ok(r) => r,
        Err(message) => return usage(message),
    };
    // What the calibration did on the test split: the same figures on the raw outputs.
    let uncalibrated = if !models[0].detector {
        uncalibrated_fit(&files[0], models[0].classes)
    } else {
        None
    };
    // The model against its plain control, at each one's threshold fixed on validation.
    let control = match control_index {
        Some(ci) if models[0].classes == 2 && confound.is_some() => {
            let (Some(cut), Some(control_cut)) = (
                thresholds[0].map(|(threshold, rule)| {
                    Cut::Fixed(Locked {
                        threshold,
                        rule: Some(rule),
                        chosen_on: "validation".into(),
                    })
                }),
                thresholds[ci].map(|(threshold, rule)| {
                    Cut::Fixed(Locked {
                        threshold,
                        rule: Some(rule),
                        chosen_on: "validation".into(),
                    })
                }),
            ) else {
                return usage("no threshold was fixed on validation for the plain control".into());
            };
            let input = Input::Binary(BinaryInput {
                preds: files[0].clone(),
                options: operating_points(&models[0].m, &models[0].stage),
                attribute: confound.clone(),
                compare: Some(files[ci].clone()),
                cut,
                compare_cut: control_cut,
                positive_name: None,
            });
            match evaluate(input, &bootstrap) {
                Ok(r) => Some((ci, r)),
                Err(message) => return usage(message),
            }
        }
        _ => None,
    };
    let (reqs, head) = match &m.manifest.task {
        Some(task) => verdicts(
            task,
            &report,
            "the sealed test split",
            control
                .as_ref()
                .and_then(|(ci, r)| r.control(&format!("`{}`", models[*ci].stage))),
        ),
        None => (Vec::new(), String::new()),
    };
    let mut text = head + &table(&report, &bootstrap);
    if let Some((ci, r)) = &control {
        let name = format!("`{}`", models[*ci].stage);
        text.push_str(&format!(
            "\nagainst the plain control {name} (the same network and data without the debiasing):\n"
        ));
        if let Some(c) = r.control(&name) {
            text.push_str(&format!("{}.\n", c.words()));
        }
        text.push_str(&crate::metrics::comparison_table(r, &bootstrap));
    }
    for (t, f) in models.iter().zip(&files) {
        if t.detector {
            text = text
                .replace(
                    &f.join("detections.json").display().to_string(),
                    &format!("{} (test)", t.label),
                )
                .replace(
                    &f.join("ground_truth.json").display().to_string(),
                    "the test boxes",
                );
        }
        text = text.replace(&f.display().to_string(), &format!("{} (test)", t.label));
    }
    let mut json = to_json(report);
    if let Some(obj) = json.as_object_mut() {
        obj.remove("preds");
        obj.remove("gt");
        obj.remove("dets");
        obj.insert("split".into(), "test".into());
        obj.insert("requirements".into(), serde_json::to_value(&reqs)?);
        if let (Some((brier, ece)), Some(Value::Object(c))) =
            (uncalibrated, obj.get_mut("calibration"))
        {
            c.insert("uncalibrated".into(), json!({"brier": brier, "ece": ece}));
        }
        obj.insert("model".into(), models[0].stage.clone().into());
        obj.insert("label".into(), models[0].label.clone().into());
        obj.insert("opening".into(), record.clone());
        if let Some(k) = looks {
            obj.insert("validation_looks".into(), k.into());
        }
        let name = |f: &PathBuf| f.file_name().map(|n| n.to_string_lossy().into_owned());
        obj.insert(
            "predictions".into(),
            json!({
                "model": name(&files[0]),
                "baseline": compare.as_ref().and_then(name),
                "control": control_index.and_then(|ci| name(&files[ci])),
            }),
        );
        if let Some((ci, r)) = &control {
            let mut c = to_json_comparison(r);
            if let Value::Object(o) = &mut c {
                o.insert("baseline".into(), models[*ci].stage.clone().into());
                o.insert("baseline_label".into(), models[*ci].label.clone().into());
            }
            obj.insert("control".into(), c);
        }
        let main_baseline = models.get(1).filter(|_| control_index != Some(1));
        if let (Some(b), Some(Value::Object(c))) = (main_baseline, obj.get_mut("comparison")) {
            c.insert("baseline".into(), b.stage.clone().into());
            c.insert("baseline_label".into(), b.label.clone().into());
        }
    }
    if let Some((brier, ece)) = uncalibrated {
        let after = |k: &str| json["metrics"][k]["value"].as_f64().unwrap_or(f64::NAN);
        text.push_str(&format!(
            "\ncalibration (fitted on validation, applied unchanged): Brier score {brier:.4} -> {:.4}, expected calibration error {ece:.4} -> {:.4}{}\n",
            after("brier"),
            after("ece"),
            json["calibration"]["brier_prevalence"]
                .as_f64()
                .map(|b| format!(" (prevalence alone: Brier {b:.4})"))
                .unwrap_or_default()
        ));
        let floor = &json["calibration"]["ece_if_calibrated"];
        if let (Some(mean), Some(hi)) = (floor["mean"].as_f64(), floor["range"][1].as_f64()) {
            text.push_str(&format!(
                "on {} cases, perfectly calibrated probabilities would show an ECE of about {mean:.3} by chance alone (up to {hi:.3}); this one is {}\n",
                json["n"],
                if floor["consistent"] == true {
                    "within that range"
                } else {
                    "beyond it"
                }
            ));
        }
    }
    let mut heading = format!(
        "test split opened {opened_at} for {}",
        models
            .iter()
            .map(|t| format!("{} ({})", t.label, t.hash))
            .collect::<Vec<_>>()
            .join(" and ")
    );
    if let Some(reason) = &args.reopen {
        heading.push_str(&format!("; REOPENED: {reason}"));
    }
    if let Some(k) = looks {
        text.push_str(&format!("\n{}\n", crate::history::looks_sentence(k)));
    }
    let body = serde_json::to_string_pretty(&json)? + "\n";
    std::fs::write(dir.join("metrics.json"), &body)?;
    std::fs::write(
        dir.join("summary.md"),
        format!(
            "# Held-out test of {}\n\n{heading}\n\n```\n{text}```\n",
            models[0].label
        ),
    )?;
    if args.json {
        print!("{body}");
    } else {
        println!("{heading}\n");
        print!("{text}");
        println!("\nresults: {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The operating points of the `evaluate` stage that evaluates `stage` on validation, so that
/// the test reports the sensitivity and specificity the clinician asked for; the defaults
/// when no such stage exists.
fn operating_points(m: &LoadedManifest, stage: &str) -> BinaryOptions {
    m.params
        .values()
        .find_map(|p| match p {
            StageParams::Evaluate(e) if e.model == stage => Some(BinaryOptions {
                at_specificity: e.at_specificity,
                at_sensitivity: e.at_sensitivity,
            }),
            _ => None,
        })
        .unwrap_or_default()
}

/// The Brier score and expected calibration error of the model's uncalibrated test
/// predictions (written by the worker beside the calibrated ones), if they are there.
fn uncalibrated_fit(file: &Path, classes: usize) -> Option<(f64, f64)> {
    use engine_core::metrics::calibration::{binary_columns, brier, ece};
    let raw = file.with_extension("uncalibrated.csv");
    let (labels, probs) = if classes == 2 {
        let p = read_binary(&raw, None).ok()?;
        let labels: Vec<u32> = p.positive.iter().map(|&x| u32::from(x)).collect();
        (labels, binary_columns(&p.probs))
    } else {
        let p = engine_core::metrics::predictions::read_multiclass(&raw).ok()?;
        (p.labels, p.probs)
    };
    let ones = vec![1u32; labels.len()];
    Some((brier(&labels, &probs, &ones), ece(&labels, &probs, &ones)))
}

/// The threshold `rule` picks on the validation predictions a binary `classifier.train`
/// stage left in `dir`: the same choice its `evaluate` stage made, never the test's.
fn locked_threshold(dir: &Path, rule: OperatingRule) -> Result<f64, String> {
    let path = dir.join("predictions.csv");
    let p = read_binary(&path, None).map_err(|e| e.to_string())?;
    let data =
        BinaryData::new(&p.positive, &p.probs).map_err(|e| format!("{}: {e}", path.display()))?;
    data.operating_point(rule)
        .map(|o| o.threshold)
        .ok_or_else(|| {
            "its validation predictions hold one class only, so no threshold can be fixed on them"
                .to_owned()
        })
}

/// The model of `stage`, which must be a `classifier.train` stage whose current settings
/// have run.
fn tested(
    m: LoadedManifest,
    plan: Plan,
    store: &Store,
    stage: &str,
    label: String,
    manifest: &Path,
) -> Result<Tested, String> {
    let Some(params) = m.params.get(stage) else {
        let hint = match did_you_mean(stage, m.params.keys().map(String::as_str)) {
            Some(s) => format!(" (hint: did you mean `{s}`?)"),
            None => String::new(),
        };
        return Err(format!(
            "`{stage}` is not a stage of {}{hint}",
            manifest.display()
        ));
    };
    if !matches!(
        params,
        StageParams::ClassifierTrain(_) | StageParams::DetectorTrain(_)
    ) {
        return Err(format!(
            "`{stage}` is a `{}` stage; only `classifier.train` and `detector.train` models are tested",
            m.manifest.stages[stage].uses.as_str()
        ));
    }
    let sp = plan
        .stage(stage)
        .ok_or_else(|| format!("no plan for stage `{stage}`"))?;
    if !store.is_complete(&sp.digest) {
        return Err(format!(
            "{label} has not run with its current settings (hint: run `engine apply {}` first)",
            manifest.display()
        ));
    }
    let digest = sp.digest.clone();
    let out = store.out_dir(&digest);
    let weights = std::fs::read(out.join("model.safetensors"))
        .map_err(|e| format!("stage `{stage}` has no readable model.safetensors: {e}"))?;
    let config: Value = std::fs::read_to_string(out.join("config.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .ok_or_else(|| format!("stage `{stage}` has no readable config.json"))?;
    let detector = config["kind"] == "detector";
    let classes = config[if detector { "box_classes" } else { "classes" }]
        .as_array()
        .map_or(0, Vec::len);
    Ok(Tested {
        stage: stage.to_owned(),
        label,
        digest,
        hash: blake3::hash(&weights).to_hex()[..16].to_owned(),
        classes,
        detector,
        m,
        plan,
    })
}

/// Checks that two detectors' test ground truth (written by the worker for each) is the
/// same images and boxes, as a paired test needs.
fn same_ground_truth(a: &Path, b: &Path) -> anyhow::Result<()> {
    let read = |p: &Path| -> anyhow::Result<Value> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        Ok(serde_json::from_str(&text)?)
    };
    let (x, y) = (read(a)?, read(b)?);
    if x["images"] != y["images"] || x["annotations"] != y["annotations"] {
        anyhow::bail!(
            "the two detectors were tested on different images or boxes ({} and {}); they must have trained on the same dataset",
            a.display(),
            b.display()
        );
    }
    Ok(())
}

/// Every opening recorded so far, oldest first.
fn read_openings(path: &PathBuf) -> anyhow::Result<Vec<Value>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", path.display())),
    }
}

fn append_line(path: &Path, value: &Value) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{value}")?;
    f.sync_all()?;
    Ok(())
}
