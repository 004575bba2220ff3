//! `engine metrics`: evaluation metrics with bootstrap confidence intervals, printed as a
//! table or as JSON (`{"metrics": {"auc": {"value": x, "ci": [lo, hi]}, ...}, "n": ...}`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::metrics::binary::percent;
use engine_core::metrics::bootstrap::PairedTest;
use engine_core::metrics::coco::read_detection;
use engine_core::metrics::delong::delong_test;
use engine_core::metrics::predictions::{read_binary, read_multiclass};
use engine_core::metrics::{
    BinaryData, BinaryMetrics, BinaryOptions, Bootstrap, CONFOUND_NAMES, ConfoundData, Confusion,
    DetectionData, DetectionMetrics, DetectionOptions, Estimate, MulticlassData, MulticlassMetrics,
    OperatingRule, Proportion, Units,
};
use engine_core::task::requirements::{
    self, Control, Evidence, Measure, Requirement, requirements,
};
use serde_json::{Map, Value, json};

use crate::EXIT_USAGE;
use crate::cli::{MetricsArgs, MetricsTask};

/// The most resamples `--bootstrap` accepts: every resample's figures are kept in memory.
const MAX_RESAMPLES: usize = 1_000_000;

/// What to evaluate, checked.
#[derive(Debug)]
pub(crate) enum Input {
    Binary(BinaryInput),
    Multiclass {
        preds: PathBuf,
        compare: Option<PathBuf>,
    },
    Detection {
        gt: PathBuf,
        dets: PathBuf,
        options: DetectionOptions,
        /// A baseline's detections on the same images, matched against the same `gt`.
        compare: Option<PathBuf>,
    },
}

/// A usage problem: the message, then what to do.
struct Usage(String);

impl MetricsArgs {
    /// Checks that the flags fit the task.
    fn input(self) -> Result<Input, Usage> {
        let task = self.task;
        let only = |flag: &str, given: bool, allowed: &[MetricsTask]| {
            if given && !allowed.contains(&task) {
                Err(Usage(format!(
                    "--{flag} does not apply to --task {} (hint: leave it out)",
                    task_name(task)
                )))
            } else {
                Ok(())
            }
        };
        if self.bootstrap > MAX_RESAMPLES {
            return Err(Usage(format!(
                "--bootstrap {} is more resamples than the {MAX_RESAMPLES} allowed (hint: 2000 gives stable 95% intervals; 10000 is plenty for p-values)",
                self.bootstrap
            )));
        }
        use MetricsTask::{Binary, Detection, Multiclass};
        only("preds", self.preds.is_some(), &[Binary, Multiclass])?;
        only("gt", self.gt.is_some(), &[Detection])?;
        only("dets", self.dets.is_some(), &[Detection])?;
        only("at-specificity", self.at_specificity.is_some(), &[Binary])?;
        only("at-sensitivity", self.at_sensitivity.is_some(), &[Binary])?;
        only("attribute", self.attribute.is_some(), &[Binary])?;
        only("threshold", self.threshold.is_some(), &[Binary])?;
        only(
            "compare",
            self.compare.is_some(),
            &[Binary, Multiclass, Detection],
        )?;
        only(
            "score-threshold",
            self.score_threshold.is_some(),
            &[Detection],
        )?;
        let rate = |flag: &str, v: Option<f64>, default: f64| match v {
            None => Ok(default),
            Some(x) if (0.0..=1.0).contains(&x) => Ok(x),
            Some(x) => Err(Usage(format!(
                "--{flag} {x} is not between 0 and 1 (hint: give a rate such as 0.85)"
            ))),
        };
        let need = |flag: &str, v: Option<PathBuf>, what: &str| {
            v.ok_or_else(|| Usage(format!("--task {} needs --{flag} {what}", task_name(task))))
        };
        Ok(match task {
            Binary => Input::Binary(BinaryInput {
                preds: need("preds", self.preds, "FILE.csv (columns id,label,prob)")?,
                options: BinaryOptions {
                    at_specificity: rate("at-specificity", self.at_specificity, 0.8)?,
                    at_sensitivity: rate("at-sensitivity", self.at_sensitivity, 0.9)?,
                },
                attribute: self.attribute,
                compare: self.compare,
                cut: match self.threshold {
                    Some(t) if t.is_finite() => Cut::Fixed(Locked {
                        threshold: t,
                        rule: None,
                        chosen_on: "given with --threshold".into(),
                    }),
                    Some(t) => {
                        return Err(Usage(format!(
                            "--threshold {t} is not a number (hint: give a probability such as 0.5)"
                        )));
                    }
                    None => Cut::Choose {
                        rule: OperatingRule::Youden,
                        on: "these predictions".into(),
                    },
                },
                compare_cut: Cut::Choose {
                    rule: OperatingRule::Youden,
                    on: "the baseline's predictions".into(),
                },
                positive_name: None,
            }),
            Multiclass => Input::Multiclass {
                preds: need(
                    "preds",
                    self.preds,
                    "FILE.csv (columns id,label,CLASS1,CLASS2,...)",
                )?,
                compare: self.compare,
            },
            Detection => {
                if let Some(t) = self.score_threshold
                    && !t.is_finite()
                {
                    return Err(Usage(format!(
                        "--score-threshold {t} is not a number (hint: give a detection score such as 0.5)"
                    )));
                }
                Input::Detection {
                    gt: need("gt", self.gt, "GT.json (COCO ground truth)")?,
                    dets: need("dets", self.dets, "DETS.json (COCO detections)")?,
                    options: DetectionOptions {
                        score_threshold: self.score_threshold,
                    },
                    compare: self.compare,
                }
            }
        })
    }
}

fn task_name(task: MetricsTask) -> &'static str {
    match task {
        MetricsTask::Binary => "binary",
        MetricsTask::Multiclass => "multiclass",
        MetricsTask::Detection => "detection",
    }
}

/// The evaluation, ready to print.
#[derive(Clone, Debug)]
pub(crate) struct Report {
    /// Everything but the metrics, in JSON.
    header: Map<String, Value>,
    /// Lines above the table.
    summary: Vec<String>,
    /// (name, label in the table, estimate).
    metrics: Vec<(String, String, Estimate)>,
    /// Lines below the table.
    notes: Vec<String>,
    /// The paired comparison with a baseline: (name, label, test).
    paired: Vec<(String, String, PairedTest)>,
}

/// Runs `engine metrics`.
pub fn metrics(flags: MetricsArgs) -> anyhow::Result<ExitCode> {
    let bootstrap = Bootstrap {
        resamples: flags.bootstrap,
        seed: flags.seed,
        ..Bootstrap::default()
    };
    let json = flags.json;
    let input = match flags.input() {
        Ok(i) => i,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let report = match evaluate(input, &bootstrap) {
        Ok(r) => r,
        Err(message) => {
            eprintln!("error: {message}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let text = if json {
        serde_json::to_string_pretty(&to_json(report))? + "\n"
    } else {
        table(&report, &bootstrap)
    };
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the output; a reader that went away (`| head`) is not an error.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(anyhow::anyhow!("cannot write the metrics: {e}"))
        }
        _ => Ok(()),
    }
}

/// Reads the input and computes the metrics; an error is a message for the user.
pub(crate) fn evaluate(input: Input, bootstrap: &Bootstrap) -> Result<Report, String> {
    let mut header = Map::new();
    let mut summary = Vec::new();
    let mut notes = Vec::new();
    let mut paired = Vec::new();
    let boot = |unit: &str| {
        json!({
            "resamples": bootstrap.resamples,
            "seed": bootstrap.seed,
            "level": bootstrap.level,
            "unit": unit,
        })
    };
    let metrics = match input {
        Input::Binary(input) => binary(
            input,
            bootstrap,
            &mut header,
            &mut summary,
            &mut notes,
            &mut paired,
        )?,
        Input::Multiclass { preds, compare } => {
            let p = read_multiclass(&preds).map_err(|e| e.to_string())?;
            let data = MulticlassData::new(&p.labels, &p.probs)
                .map_err(|e| format!("{}: {e}", preds.display()))?;
            let n = p.labels.len();
            let (units, unit) = units(p.patients.as_deref(), n);
            header.insert("task".into(), "multiclass".into());
            header.insert("preds".into(), preds.display().to_string().into());
            header.insert("n".into(), n.into());
            header.insert("classes".into(), p.classes.clone().into());
            summary.push(format!(
                "multiclass metrics for {}: {n} cases, {} classes ({})",
                preds.display(),
                p.classes.len(),
                p.classes.join(", ")
            ));
            if let Units::Clusters { clusters, .. } = &units {
                header.insert("n_patients".into(), (*clusters).into());
                summary.push(format!("{clusters} patients"));
            }
            header.insert("bootstrap".into(), boot(unit));
            let estimates = data
                .bootstrap(&units, bootstrap)
                .map_err(|e| format!("{}: {e}", preds.display()))?;
            if let Some(base) = &compare {
                let b = read_multiclass(base).map_err(|e| e.to_string())?;
                // The baseline's classes by name, in this file's order.
                let by_name: Vec<Option<usize>> = p
                    .classes
                    .iter()
                    .map(|c| b.classes.iter().position(|x| x == c))
                    .collect();
                if b.classes.len() != p.classes.len() || by_name.iter().any(Option::is_none) {
                    return Err(format!(
                        "{} has the classes {} and {} has {}; paired tests need the same classes",
                        preds.display(),
                        p.classes.join(", "),
                        base.display(),
                        b.classes.join(", ")
                    ));
                }
                let order = align(&p.ids, &b.ids, &preds, base)?;
                let column: Vec<usize> = by_name.into_iter().flatten().collect();
                let mut class_of = vec![0u32; column.len()];
                for (mine, theirs) in column.iter().enumerate() {
                    class_of[*theirs] = mine as u32;
                }
                let labels_b: Vec<u32> = order
                    .iter()
                    .map(|&j| class_of[b.labels[j] as usize])
                    .collect();
                if let Some(i) = (0..n).find(|&i| labels_b[i] != p.labels[i]) {
                    return Err(format!(
                        "case `{}` has another label in {} than in {}; paired tests need the same cases with the same labels",
                        p.ids[i],
                        base.display(),
                        preds.display()
                    ));
                }
                let probs_b: Vec<Vec<f64>> = column
                    .iter()
                    .map(|&c| order.iter().map(|&j| b.probs[c][j]).collect())
                    .collect();
                let data_b = MulticlassData::new(&labels_b, &probs_b)
                    .map_err(|e| format!("{}: {e}", base.display()))?;
                let tests = data
                    .paired(&data_b, &units, bootstrap)
                    .map_err(|e| e.to_string())?;
                for (name, t) in MulticlassMetrics::names(&p.classes).into_iter().zip(tests) {
                    paired.push((name.clone(), name, t));
                }
                header.insert(
                    "comparison".into(),
                    json!({"baseline": base.display().to_string()}),
                );
            }
            // Per class: how many cases it has, how many of them the argmax finds, and how
            // many of the others it leaves alone, for exact intervals of the proportions.
            let k = p.classes.len();
            let predicted: Vec<usize> = (0..n)
                .map(|i| {
                    (0..k).fold(0, |best, c| {
                        if p.probs[c][i] > p.probs[best][i] {
                            c
                        } else {
                            best
                        }
                    })
                })
                .collect();
            let mut labelled = vec![0u64; k];
            let mut found = vec![0u64; k];
            let mut called = vec![0u64; k];
            for (&l, &q) in p.labels.iter().zip(&predicted) {
                labelled[l as usize] += 1;
                called[q] += 1;
                if l as usize == q {
                    found[q] += 1;
                }
            }
            header.insert(
                "class_counts".into(),
                p.classes
                    .iter()
                    .zip(&labelled)
                    .map(|(c, m)| (c.clone(), json!(m)))
                    .collect::<Map<_, _>>()
                    .into(),
            );
            header.insert("intervals".into(), intervals(unit));
            let exact = |name: &str| -> Option<Proportion> {
                let (what, class) = name.split_once('/')?;
                let c = p.classes.iter().position(|x| x == class)?;
                let total = n as u64;
                match what {
                    "sensitivity" => Some(Proportion::new(found[c], labelled[c], bootstrap.level)),
                    // Of the cases of other classes, those not called this class.
                    "specificity" => Some(Proportion::new(
                        total - labelled[c] - (called[c] - found[c]),
                        total - labelled[c],
                        bootstrap.level,
                    )),
                    _ => None,
                }
            };
            let labels_u: Vec<u32> = p.labels.clone();
            let calibration = bootstrap.estimate(&units, |w| {
                vec![
                    engine_core::metrics::calibration::brier(&labels_u, &p.probs, w),
                    engine_core::metrics::calibration::ece(&labels_u, &p.probs, w),
                ]
            });
            header.insert(
                "calibration".into(),
                json!({
                    "reliability": engine_core::metrics::calibration::reliability(&labels_u, &p.probs),
                    "ece_if_calibrated": ece_floor(&p.probs, calibration[1].value, bootstrap.seed, &mut notes),
                }),
            );
            let mut rows: Vec<(String, String, Estimate)> = MulticlassMetrics::names(&p.classes)
                .into_iter()
                .zip(estimates)
                .map(|(name, e)| {
                    let e = match exact(&name) {
                        Some(x) => exact_estimate(x, e, unit, bootstrap.resamples),
                        None => e,
                    };
                    (name.clone(), name, e)
                })
                .collect();
            rows.extend(calibration_rows(
                &calibration,
                "Brier score (sum over classes)".into(),
                "top class, ",
            ));
            rows
        }
        Input::Detection {
            gt,
            dets,
            options,
            compare,
        } => {
            let (truth, detections) = read_detection(&gt, &dets).map_err(|e| e.to_string())?;
            let data = DetectionData::new(&truth, &detections, options)
                .map_err(|e| format!("{} and {}: {e}", gt.display(), dets.display()))?;
            let names: Vec<String> = data.categories().iter().map(|c| c.name.clone()).collect();
            header.insert("task".into(), "detection".into());
            header.insert("gt".into(), gt.display().to_string().into());
            header.insert("dets".into(), dets.display().to_string().into());
            header.insert("n".into(), data.images().into());
            header.insert("n_boxes".into(), data.ground_truth_boxes().into());
            header.insert("n_detections".into(), detections.len().into());
            header.insert("categories".into(), names.clone().into());
            header.insert(
                "score_threshold".into(),
                match options.score_threshold {
                    Some(_) => "given",
                    None => "f1-optimal",
                }
                .into(),
            );
            summary.push(format!(
                "detection metrics for {} against {}: {} images, {} boxes, {} detections",
                dets.display(),
                gt.display(),
                data.images(),
                data.ground_truth_boxes(),
                detections.len()
            ));
            summary.push("COCO evaluation: IoU 0.5:0.95, area all, at most 100 detections per image and category".into());
            header.insert("bootstrap".into(), boot("image"));
            let estimates = data.bootstrap(bootstrap);
            if let Some(base) = &compare {
                let (_, base_dets) = read_detection(&gt, base).map_err(|e| e.to_string())?;
                let data_b = DetectionData::new(&truth, &base_dets, options)
                    .map_err(|e| format!("{} and {}: {e}", gt.display(), base.display()))?;
                let tests = data.paired(&data_b, bootstrap).map_err(|e| e.to_string())?;
                for (name, t) in DetectionMetrics::names(&names).into_iter().zip(tests) {
                    // Each model's F1-optimal threshold is its own: no difference to test.
                    if name != "score_threshold" {
                        paired.push((name.clone(), name, t));
                    }
                }
                header.insert(
                    "comparison".into(),
                    json!({"baseline": base.display().to_string()}),
                );
            }
            DetectionMetrics::names(&names)
                .into_iter()
                .zip(estimates)
                .map(|(name, e)| {
                    let label = match name.as_str() {
                        "precision" | "recall" | "f1" => format!("{name} (IoU 0.5)"),
                        "score_threshold" => match options.score_threshold {
                            Some(_) => "score threshold (given)".to_owned(),
                            None => "score threshold (F1-optimal)".to_owned(),
                        },
                        _ => name.clone(),
                    };
                    (name, label, e)
                })
                .collect()
        }
    };
    Ok(Report {
        header,
        summary,
        metrics,
        notes,
        paired,
    })
}

/// Fewer cases than this in a label × attribute subgroup are marked: quartiles of so few
/// say little.
const FEW: usize = 10;

/// Binary predictions to evaluate, checked.
#[derive(Debug)]
pub(crate) struct BinaryInput {
    pub preds: PathBuf,
    pub options: BinaryOptions,
    pub attribute: Option<String>,
    pub compare: Option<PathBuf>,
    /// Where the model's decision threshold comes from.
    pub cut: Cut,
    /// Where the baseline's comes from.
    pub compare_cut: Cut,
    /// The positive class's name, for words such as "images with pneumothorax".
    pub positive_name: Option<String>,
}

/// Where a binary model's decision threshold comes from.
#[derive(Clone, Debug)]
pub(crate) enum Cut {
    /// Chosen by the rule on the evaluated predictions themselves (validation, or `engine
    /// metrics` without `--threshold`); `on` names them in words.
    Choose { rule: OperatingRule, on: String },
    /// Fixed beforehand and applied unchanged (the sealed test).
    Fixed(Locked),
}

/// A threshold fixed beforehand.
#[derive(Clone, Debug)]
pub(crate) struct Locked {
    pub threshold: f64,
    /// The rule that chose it, when a rule did.
    pub rule: Option<OperatingRule>,
    /// Where, in words ("validation").
    pub chosen_on: String,
}

impl Cut {
    /// The threshold on `data` (the predictions evaluated), with the rule and where it was
    /// chosen, in words.
    fn resolve(&self, data: &BinaryData) -> Result<(f64, Option<OperatingRule>, String), String> {
        match self {
            Cut::Choose { rule, on } => {
                let point = data.operating_point(*rule).ok_or(
                    "a threshold cannot be chosen on predictions of one class (hint: the predictions need positive and negative cases)",
                )?;
                Ok((point.threshold, Some(*rule), on.clone()))
            }
            Cut::Fixed(l) => Ok((l.threshold, l.rule, l.chosen_on.clone())),
        }
    }
}

/// The binary evaluation: the AUC, every threshold-bound figure at the threshold the
/// [`Cut`] gives (proportions with exact Clopper-Pearson intervals, widened to the patient
/// bootstrap's where patients repeat), the ROC-curve operating points, the calibration
/// (Brier score, expected calibration error), the confound analysis at the same threshold,
/// and the paired comparison with a baseline at its own threshold.
fn binary(
    input: BinaryInput,
    bootstrap: &Bootstrap,
    header: &mut Map<String, Value>,
    summary: &mut Vec<String>,
    notes: &mut Vec<String>,
    paired: &mut Vec<(String, String, PairedTest)>,
) -> Result<Vec<(String, String, Estimate)>, String> {
    let BinaryInput {
        preds,
        options,
        attribute,
        compare,
        cut,
        compare_cut,
        positive_name,
    } = input;
    let p = read_binary(&preds, attribute.as_deref()).map_err(|e| e.to_string())?;
    let data =
        BinaryData::new(&p.positive, &p.probs).map_err(|e| format!("{}: {e}", preds.display()))?;
    let n = p.positive.len();
    let n_pos = p.positive.iter().filter(|&&x| x).count();
    let (units, unit) = units(p.patients.as_deref(), n);
    header.insert("task".into(), "binary".into());
    header.insert("preds".into(), preds.display().to_string().into());
    header.insert("n".into(), n.into());
    header.insert("n_positive".into(), n_pos.into());
    if let Some(name) = &positive_name {
        header.insert("positive_class".into(), name.clone().into());
    }
    summary.push(format!(
        "binary metrics for {}: {n} cases ({n_pos} positive{})",
        preds.display(),
        positive_name
            .as_deref()
            .map(|c| format!(": {c}"))
            .unwrap_or_default()
    ));
    if let Units::Clusters { clusters, .. } = &units {
        header.insert("n_patients".into(), (*clusters).into());
        summary.push(format!("{clusters} patients"));
    }
    header.insert(
        "bootstrap".into(),
        json!({
            "resamples": bootstrap.resamples,
            "seed": bootstrap.seed,
            "level": bootstrap.level,
            "unit": unit,
        }),
    );
    header.insert(
        "operating_points".into(),
        json!({
            "at_specificity": options.at_specificity,
            "at_sensitivity": options.at_sensitivity,
        }),
    );
    let (threshold, rule, chosen_on) = cut
        .resolve(&data)
        .map_err(|e| format!("{}: {e}", preds.display()))?;
    let ones = vec![1u32; n];
    let confusion = Confusion::at(&p.positive, &p.probs, threshold, &ones);
    let rule_words = rule.map(|r| r.describe());
    header.insert(
        "threshold".into(),
        json!({
            "value": threshold,
            "rule": rule_words,
            "chosen_on": chosen_on,
            "fixed_beforehand": matches!(cut, Cut::Fixed(_)),
            "tp": confusion.tp,
            "fp": confusion.fp,
            "tn": confusion.tn,
            "fn": confusion.fn_,
        }),
    );
    summary.push(format!(
        "threshold {threshold:.4} ({}{})",
        match &cut {
            Cut::Fixed(_) => format!("fixed on {chosen_on}, not re-tuned here"),
            Cut::Choose { .. } => format!("chosen on {chosen_on}"),
        },
        rule_words.map(|r| format!(": {r}")).unwrap_or_default()
    ));
    header.insert("intervals".into(), intervals(unit));
    if let Some(a) = &p.attribute {
        let present = a.present.iter().filter(|&&x| x).count();
        let prevalence = present as f64 / n as f64;
        header.insert(
            "attribute".into(),
            json!({"name": a.name, "present": present, "prevalence": prevalence}),
        );
        summary.push(format!(
            "attribute `{}`: present in {present} of {n} cases ({:.1}%)",
            a.name,
            100.0 * prevalence
        ));
    }
    let labels: Vec<u32> = p.positive.iter().map(|&x| u32::from(x)).collect();
    let columns = engine_core::metrics::calibration::binary_columns(&p.probs);
    let curve = data
        .bootstrap(&options, &units, bootstrap)
        .map_err(|e| format!("{}: {e}", preds.display()))?;
    let at = bootstrap.estimate(&units, |w| {
        Confusion::at(&p.positive, &p.probs, threshold, w)
            .rates()
            .to_vec()
    });
    let calibration = bootstrap.estimate(&units, |w| {
        vec![
            engine_core::metrics::calibration::brier(&labels, &columns, w),
            engine_core::metrics::calibration::ece(&labels, &columns, w),
        ]
    });
    let level = bootstrap.level;
    let counts = [
        (confusion.tp, confusion.tp + confusion.fn_),
        (confusion.tn, confusion.tn + confusion.fp),
        (confusion.tp, confusion.tp + confusion.fp),
        (confusion.tn, confusion.tn + confusion.fn_),
    ];
    let mut rows: Vec<(String, String, Estimate)> =
        vec![("auc".into(), "auc".into(), curve[0].clone())];
    for (j, name) in Confusion::RATES.iter().enumerate() {
        let e = match counts.get(j) {
            Some(&(k, m)) => exact_estimate(
                Proportion::new(k, m, level),
                at[j].clone(),
                unit,
                bootstrap.resamples,
            ),
            None => at[j].clone(),
        };
        rows.push(((*name).to_owned(), (*name).to_owned(), e));
    }
    rows.push((
        "threshold".into(),
        match &cut {
            Cut::Fixed(_) => format!("threshold (fixed on {chosen_on})"),
            Cut::Choose { .. } => format!("threshold (chosen on {chosen_on})"),
        },
        Estimate {
            value: threshold,
            ci: None,
            resamples: bootstrap.resamples,
        },
    ));
    rows.push((
        "sensitivity_at_specificity".into(),
        format!(
            "sensitivity at {} specificity (ROC curve)",
            percent(options.at_specificity)
        ),
        curve[6].clone(),
    ));
    rows.push((
        "specificity_at_sensitivity".into(),
        format!(
            "specificity at {} sensitivity (ROC curve)",
            percent(options.at_sensitivity)
        ),
        curve[7].clone(),
    ));
    let prevalence = n_pos as f64 / n as f64;
    let brier_prevalence = prevalence * (1.0 - prevalence);
    rows.extend(calibration_rows(
        &calibration,
        format!("Brier score (prevalence alone {brier_prevalence:.4})"),
        "",
    ));
    header.insert(
        "calibration".into(),
        json!({
            "brier_prevalence": brier_prevalence,
            "reliability": engine_core::metrics::calibration::reliability(&labels, &columns),
            "ece_if_calibrated": ece_floor(&columns, calibration[1].value, bootstrap.seed, notes),
        }),
    );
    if let Some(a) = &p.attribute {
        // The confound figures at the same threshold, held fixed across resamples.
        let cd = ConfoundData::new(&p.positive, &p.probs, &a.values, &a.present, threshold);
        let first_line = notes.len();
        let groups: Vec<Value> = cd
            .subgroups()
            .iter()
            .map(|g| {
                notes.push(format!(
                    "  label {} × {} {:<7}  n {:>6}  median {:.3}  IQR {:.3}-{:.3}{}",
                    u8::from(g.positive),
                    a.name,
                    if g.attribute { "present" } else { "absent" },
                    g.n,
                    g.median,
                    g.q1,
                    g.q3,
                    if g.n < FEW {
                        "  (few cases: read with care)"
                    } else {
                        ""
                    }
                ));
                json!({
                    "label": u8::from(g.positive),
                    "attribute": g.attribute,
                    "n": g.n,
                    "median": number(g.median),
                    "q1": number(g.q1),
                    "q3": number(g.q3),
                })
            })
            .collect();
        notes.insert(
            first_line,
            format!(
                "predicted probability by label × {} (threshold {threshold:.4}):",
                a.name
            ),
        );
        header.insert(
            "confound".into(),
            json!({"attribute": a.name, "threshold": threshold, "subgroups": groups}),
        );
        let labels = [
            format!("false positives with {} (share)", a.name),
            format!("negatives with {} (expected share)", a.name),
            format!("correlation of prob with {}", a.name),
            "partial correlation, label held fixed".to_owned(),
        ];
        for ((name, label), e) in CONFOUND_NAMES
            .iter()
            .zip(labels)
            .zip(bootstrap.estimate(&units, |w| cd.stats(w)))
        {
            rows.push((format!("confound/{name}"), label, e));
        }
    }
    if let Some(base) = &compare {
        let b = read_binary(base, attribute.as_deref()).map_err(|e| e.to_string())?;
        let order = align(&p.ids, &b.ids, &preds, base)?;
        let positive_b: Vec<bool> = order.iter().map(|&j| b.positive[j]).collect();
        if let Some(i) = (0..n).find(|&i| positive_b[i] != p.positive[i]) {
            return Err(format!(
                "case `{}` is labelled {} in {} but {} in {}; paired tests need the same cases with the same labels",
                p.ids[i],
                u8::from(p.positive[i]),
                preds.display(),
                u8::from(positive_b[i]),
                base.display()
            ));
        }
        let probs_b: Vec<f64> = order.iter().map(|&j| b.probs[j]).collect();
        let data_b = BinaryData::new(&positive_b, &probs_b)
            .map_err(|e| format!("{}: {e}", base.display()))?;
        let (threshold_b, _, _) = compare_cut
            .resolve(&data_b)
            .map_err(|e| format!("{}: {e}", base.display()))?;
        // The ROC figures need no threshold; the rest are read at each model's own.
        let curve_tests = data
            .paired(&data_b, &options, &units, bootstrap)
            .map_err(|e| e.to_string())?;
        for (&name, t) in BinaryMetrics::NAMES.iter().zip(curve_tests) {
            let label = match name {
                "auc" => "auc".to_owned(),
                "sensitivity_at_specificity" => format!(
                    "sensitivity at {} specificity (ROC curve)",
                    percent(options.at_specificity)
                ),
                "specificity_at_sensitivity" => format!(
                    "specificity at {} sensitivity (ROC curve)",
                    percent(options.at_sensitivity)
                ),
                _ => continue,
            };
            paired.push((name.to_owned(), label, t));
        }
        let columns_b = engine_core::metrics::calibration::binary_columns(&probs_b);
        let fixed = |probs: &[f64], cols: &[Vec<f64>], t: f64, w: &[u32]| {
            let mut v = Confusion::at(&p.positive, probs, t, w).rates().to_vec();
            v.push(engine_core::metrics::calibration::brier(&labels, cols, w));
            v
        };
        let fixed_tests = bootstrap.paired(
            &units,
            |w| fixed(&p.probs, &columns, threshold, w),
            |w| fixed(&probs_b, &columns_b, threshold_b, w),
        );
        for (name, t) in Confusion::RATES
            .iter()
            .chain(["brier"].iter())
            .zip(fixed_tests)
        {
            let label = if *name == "brier" {
                "brier".to_owned()
            } else {
                format!("{name} (each at its threshold)")
            };
            paired.push(((*name).to_owned(), label, t));
        }
        let mut comparison = Map::new();
        comparison.insert("baseline".into(), base.display().to_string().into());
        comparison.insert("baseline_threshold".into(), number(threshold_b));
        if let Ok(d) = delong_test(&p.positive, &p.probs, &probs_b) {
            comparison.insert(
                "delong".into(),
                json!({
                    "auc": number(d.auc_a),
                    "baseline_auc": number(d.auc_b),
                    "difference": number(d.diff),
                    "se": number(d.se),
                    "z": number(d.z),
                    "p_value": number(d.p_value),
                }),
            );
            notes.push(format!(
                "DeLong's test of the AUC against {}: difference {:.4}, z {:.3}, p {:.4}",
                base.display(),
                d.diff,
                d.z,
                d.p_value
            ));
        }
        if let Some(a) = &p.attribute {
            let cd_a = ConfoundData::new(&p.positive, &p.probs, &a.values, &a.present, threshold);
            let cd_b = ConfoundData::new(&p.positive, &probs_b, &a.values, &a.present, threshold_b);
            let tests = bootstrap.paired(&units, |w| cd_a.stats(w), |w| cd_b.stats(w));
            // The relative reduction (baseline - model) / |baseline| with its own interval.
            let ratio = bootstrap.estimate(&units, |w| {
                let (sa, sb) = (cd_a.stats(w), cd_b.stats(w));
                sa.iter()
                    .zip(&sb)
                    .map(|(a, b)| {
                        if *b != 0.0 {
                            (b - a) / b.abs()
                        } else {
                            f64::NAN
                        }
                    })
                    .collect()
            });
            let mut reductions = Map::new();
            for ((name, t), r) in CONFOUND_NAMES.iter().zip(tests).zip(ratio) {
                if *name == "expected_fp_share" {
                    continue;
                }
                reductions.insert(
                    (*name).to_owned(),
                    json!({
                        "value": number(r.value),
                        "ci": r.ci.map(|(lo, hi)| json!([number(lo), number(hi)])),
                    }),
                );
                notes.push(format!(
                    "{name}: {:.4} against the baseline's {:.4} (relative reduction {}{})",
                    t.a,
                    t.b,
                    if r.value.is_finite() {
                        format!("{:.1}%", 100.0 * r.value)
                    } else {
                        "n/a".to_owned()
                    },
                    match r.ci {
                        Some((lo, hi)) =>
                            format!(", 95% CI {:.1}% to {:.1}%", 100.0 * lo, 100.0 * hi),
                        None => String::new(),
                    }
                ));
                paired.push((
                    format!("confound/{name}"),
                    format!("confound {}", name.replace('_', " ")),
                    t,
                ));
            }
            comparison.insert("relative_reduction".into(), Value::Object(reductions));
        }
        header.insert("comparison".into(), Value::Object(comparison));
    }
    Ok(rows)
}

/// How the intervals were computed, for the JSON.
fn intervals(unit: &str) -> Value {
    json!({
        "proportions": match unit {
            "patient" => "exact (Clopper-Pearson), widened to the patient bootstrap's where that is wider",
            _ => "exact (Clopper-Pearson)",
        },
        "other": "percentile bootstrap",
    })
}

/// A proportion's estimate: its exact value and interval; where patients repeat, the wider
/// of that interval and the patient bootstrap's, so that neither small numbers nor
/// clustering is hidden.
fn exact_estimate(exact: Proportion, boot: Estimate, unit: &str, resamples: usize) -> Estimate {
    Estimate {
        value: exact.value,
        ci: match (exact.ci, boot.ci) {
            (Some((lo, hi)), Some((blo, bhi))) if unit == "patient" => {
                Some((lo.min(blo), hi.max(bhi)))
            }
            (c, _) => c,
        },
        resamples,
    }
}

/// The table's Brier score and expected calibration error rows from their estimates.
fn calibration_rows(
    calibration: &[Estimate],
    brier_label: String,
    ece_of: &str,
) -> [(String, String, Estimate); 2] {
    [
        ("brier".into(), brier_label, calibration[0].clone()),
        (
            "ece".into(),
            format!(
                "expected calibration error ({ece_of}{} bins)",
                engine_core::metrics::calibration::ECE_BINS
            ),
            calibration[1].clone(),
        ),
    ]
}

/// The expected calibration error that perfectly calibrated probabilities would show on
/// these cases by chance alone (consistency resampling), with a note saying whether the
/// observed `ece` lies inside that range: on a hundred cases, about 0.07 is noise.
fn ece_floor(probs: &[Vec<f64>], ece: f64, seed: u64, notes: &mut Vec<String>) -> Value {
    let Some((mean, lo, hi)) =
        engine_core::metrics::calibration::ece_if_calibrated(probs, ECE_FLOOR_DRAWS, seed)
    else {
        return Value::Null;
    };
    let verdict = if ece <= hi {
        "within it: these probabilities are consistent with being calibrated"
    } else {
        "above it: miscalibrated beyond what chance on these cases explains"
    };
    notes.push(format!(
        "expected calibration error {ece:.4}; perfectly calibrated probabilities would show {mean:.4} on these cases by chance alone (95% range {lo:.4} to {hi:.4}): {verdict}"
    ));
    json!({"mean": mean, "range": [lo, hi], "consistent": ece <= hi})
}

/// Label draws behind [`ece_floor`].
const ECE_FLOOR_DRAWS: usize = 500;

/// For each case of `a` (in order), its index in `b`; an error when the two files do not
/// hold the same cases.
pub(crate) fn align(
    a: &[String],
    b: &[String],
    a_path: &Path,
    b_path: &Path,
) -> Result<Vec<usize>, String> {
    let index: HashMap<&str, usize> = b
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i))
        .collect();
    let mut order = Vec::with_capacity(a.len());
    for id in a {
        match index.get(id.as_str()) {
            Some(&j) => order.push(j),
            None => {
                return Err(format!(
                    "case `{id}` of {} is not in {}; paired tests need predictions for the same cases",
                    a_path.display(),
                    b_path.display()
                ));
            }
        }
    }
    if b.len() != a.len() {
        return Err(format!(
            "{} has {} cases and {} has {}; paired tests need predictions for the same cases",
            a_path.display(),
            a.len(),
            b_path.display(),
            b.len()
        ));
    }
    Ok(order)
}

/// Resampling units: patients when the file names them and some have several cases, else
/// cases (a file whose every case is its own "patient" has no patients to speak of).
pub(crate) fn units(patients: Option<&[String]>, n: usize) -> (Units, &'static str) {
    match patients.map(Units::clusters) {
        Some(u @ Units::Clusters { clusters, .. }) if clusters < n => (u, "patient"),
        _ => (Units::Items(n), "case"),
    }
}

/// A number for JSON: NaN (undefined) becomes null.
fn number(x: f64) -> Value {
    if x.is_finite() { json!(x) } else { Value::Null }
}

pub(crate) fn to_json(report: Report) -> Value {
    let mut out = report.header;
    let requested = out
        .get("bootstrap")
        .and_then(|b| b["resamples"].as_u64())
        .unwrap_or(0);
    let mut metrics = Map::new();
    for (name, _, e) in report.metrics {
        let mut m = Map::new();
        m.insert("value".into(), number(e.value));
        m.insert(
            "ci".into(),
            match e.ci {
                Some((lo, hi)) => json!([number(lo), number(hi)]),
                None => Value::Null,
            },
        );
        // Say so when some resamples left the metric undefined (e.g. one class drawn).
        if (e.resamples as u64) < requested {
            m.insert("resamples".into(), e.resamples.into());
        }
        metrics.insert(name, Value::Object(m));
    }
    out.insert("metrics".into(), Value::Object(metrics));
    if !report.paired.is_empty()
        && let Some(Value::Object(c)) = out.get_mut("comparison")
    {
        let mut tests = Map::new();
        for (name, _, t) in report.paired {
            tests.insert(
                name,
                json!({
                    "model": number(t.a),
                    "baseline": number(t.b),
                    "difference": number(t.diff),
                    "ci": match t.ci {
                        Some((lo, hi)) => json!([number(lo), number(hi)]),
                        None => Value::Null,
                    },
                    "p_value": t.p_value.map_or(Value::Null, number),
                }),
            );
        }
        c.insert("paired".into(), Value::Object(tests));
    }
    Value::Object(out)
}

pub(crate) fn table(report: &Report, bootstrap: &Bootstrap) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{}", report.summary.join("; "));
    let ci_title = format!("{:.0}% CI", 100.0 * bootstrap.level);
    if bootstrap.resamples > 0 {
        let unit = report
            .header
            .get("bootstrap")
            .and_then(|b| b["unit"].as_str())
            .unwrap_or("case");
        let _ = writeln!(
            out,
            "{ci_title}: percentile bootstrap, {} resamples by {unit}, seed {}",
            bootstrap.resamples, bootstrap.seed
        );
    }
    out.push('\n');
    let width = report
        .metrics
        .iter()
        .map(|(_, label, _)| label.chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(out, "{:<width$}  {:>8}  {ci_title}", "metric", "value");
    let fmt = |x: f64| {
        if x.is_nan() {
            "n/a".to_owned()
        } else {
            format!("{x:.4}")
        }
    };
    for (_, label, e) in &report.metrics {
        let ci = match e.ci {
            Some((lo, hi)) => format!("[{}, {}]", fmt(lo), fmt(hi)),
            None if bootstrap.resamples == 0 => String::new(),
            // A figure fixed, not estimated (the threshold): no interval to show.
            None if e.resamples >= bootstrap.resamples => String::new(),
            None => "n/a".to_owned(),
        };
        let note = if e.resamples > 0 && e.resamples < bootstrap.resamples {
            format!(
                "  ({} of {} resamples defined)",
                e.resamples, bootstrap.resamples
            )
        } else {
            String::new()
        };
        let _ = writeln!(out, "{label:<width$}  {:>8}  {ci}{note}", fmt(e.value));
    }
    out.push_str(&comparison_table(report, bootstrap));
    if !report.notes.is_empty() {
        out.push('\n');
        for line in &report.notes {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

impl Report {
    /// What the evaluation measured, as the requirement verdicts read it: each figure with
    /// its interval and the cases it rests on. `split` names the data in words.
    pub(crate) fn evidence(&self, split: &str) -> Evidence {
        let n = self.header.get("n").and_then(Value::as_u64).unwrap_or(0);
        let positive = self
            .header
            .get("positive_class")
            .and_then(Value::as_str)
            .map(|c| c.replace('_', " "));
        let cut = self.header.get("threshold");
        let count = |k: &str| cut.and_then(|t| t[k].as_u64()).unwrap_or(0);
        let (tp, fp, tn, fn_) = (count("tp"), count("fp"), count("tn"), count("fn"));
        let class_counts = self.header.get("class_counts");
        let proportions = self
            .header
            .get("intervals")
            .and_then(|i| i["proportions"].as_str())
            .unwrap_or("exact (Clopper-Pearson)")
            .to_owned();
        let bootstrapped = format!(
            "percentile bootstrap by {}",
            self.header
                .get("bootstrap")
                .and_then(|b| b["unit"].as_str())
                .unwrap_or("case")
        );
        let with = |what: &str| match &positive {
            Some(p) => format!("images {what} {p}"),
            None if what == "with" => "positive images".to_owned(),
            None => "negative images".to_owned(),
        };
        let mut measures = BTreeMap::new();
        for (name, _, e) in &self.metrics {
            let (cases_n, cases, proportion) = match name.as_str() {
                "sensitivity" => (tp + fn_, with("with"), true),
                "specificity" => (tn + fp, with("without"), true),
                "ppv" => (tp + fp, "images called positive".to_owned(), true),
                "npv" => (tn + fn_, "images called negative".to_owned(), true),
                other => match other.split_once('/') {
                    Some(("sensitivity", c)) => (
                        class_counts.and_then(|m| m[c].as_u64()).unwrap_or(0),
                        format!("images of {c}"),
                        true,
                    ),
                    Some(("specificity", c)) => (
                        n - class_counts.and_then(|m| m[c].as_u64()).unwrap_or(0),
                        format!("images not of {c}"),
                        true,
                    ),
                    _ => (n, "images".to_owned(), false),
                },
            };
            measures.insert(
                name.clone(),
                Measure {
                    estimate: e.value,
                    ci: e.ci,
                    n: cases_n,
                    cases,
                    interval: if proportion {
                        proportions.clone()
                    } else {
                        bootstrapped.clone()
                    },
                    proportion,
                },
            );
        }
        let threshold = cut.and_then(|t| {
            let value = t["value"].as_f64()?;
            let on = t["chosen_on"].as_str().unwrap_or("these predictions");
            Some(if t["fixed_beforehand"].as_bool() == Some(true) {
                format!("at the threshold {value:.4} fixed on {on}")
            } else {
                format!("at the threshold {value:.4} chosen on {on}")
            })
        });
        Evidence {
            control: None,
            measures,
            confound: self
                .header
                .get("confound")
                .and_then(|c| c["attribute"].as_str())
                .map(str::to_owned),
            split: split.to_owned(),
            threshold,
            classes: self
                .header
                .get("classes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|c| c.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

impl Report {
    /// The paired bootstrap test of `metric` against the baseline, if it was compared.
    pub(crate) fn paired_test(&self, metric: &str) -> Option<&PairedTest> {
        self.paired
            .iter()
            .find(|(n, _, _)| n == metric)
            .map(|(_, _, t)| t)
    }

    /// DeLong's test of the AUC against the baseline, if it was made.
    pub(crate) fn delong(&self) -> Option<crate::evidence::DeLongRecord> {
        let d = self.header.get("comparison")?.get("delong")?;
        Some(crate::evidence::DeLongRecord {
            auc: d["auc"].as_f64()?,
            baseline_auc: d["baseline_auc"].as_f64()?,
            se: d["se"].as_f64()?,
        })
    }

    /// What the bootstrap resampled: `patient`, `case` or `image`.
    pub(crate) fn resampled_unit(&self) -> &str {
        self.header
            .get("bootstrap")
            .and_then(|b| b["unit"].as_str())
            .unwrap_or("case")
    }

    /// The confound comparison of this report (a model against a baseline, with the
    /// confound analysis) read as the model against its plain control named `name`.
    pub(crate) fn control(&self, name: &str) -> Option<Control> {
        let c = self.header.get("comparison")?;
        let reduction = &c.get("relative_reduction")?["partial_correlation"];
        let paired = |metric: &str| {
            self.paired
                .iter()
                .find(|(n, _, _)| n == metric)
                .map(|(_, _, t)| t)
        };
        let partial = paired("confound/partial_correlation")?;
        Some(Control {
            name: name.to_owned(),
            partial_correlation: partial.b,
            reduction: reduction["value"].as_f64().map(|v| {
                (
                    v,
                    reduction["ci"][0].as_f64().zip(reduction["ci"][1].as_f64()),
                )
            }),
            fp_share: paired("confound/fp_share_with_attribute").map(|t| (t.a, t.b)),
            expected_fp_share: self
                .metrics
                .iter()
                .find(|(n, _, _)| n == "confound/expected_fp_share")
                .map(|(_, _, e)| e.value)
                .filter(|v| v.is_finite()),
        })
    }
}

/// The requirements of `task` checked against the evaluation (and a plain control, when
/// the model was compared with one), and the verdict block that heads every output: one
/// plain sentence per requirement.
pub(crate) fn verdicts(
    task: &engine_core::task::TaskSpec,
    report: &Report,
    split: &str,
    control: Option<Control>,
) -> (Vec<Requirement>, String) {
    let mut evidence = report.evidence(split);
    evidence.control = control;
    let reqs = requirements(task, &evidence);
    let mut text = String::new();
    if reqs.is_empty() {
        return (reqs, text);
    }
    let _ = writeln!(text, "Does the model do what was asked? (on {split})");
    for r in &reqs {
        let _ = writeln!(text, "  {}", terminal_safe(&requirements::sentence(r)));
    }
    text.push('\n');
    (reqs, text)
}

/// Text from data (class and attribute names) made safe for a terminal: control
/// characters, escape sequences included, are shown as `\u{..}` escapes, never sent.
pub(crate) fn terminal_safe(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() && c != '\n' {
                c.escape_unicode().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

/// The verdicts an evaluation wrote into its `metrics.json` (`requirements`), as the
/// sentences that head its summary; `None` when it has none.
pub(crate) fn verdict_lines(metrics: &Value) -> Option<Vec<String>> {
    let reqs: Vec<Requirement> =
        serde_json::from_value(metrics.get("requirements")?.clone()).ok()?;
    (!reqs.is_empty()).then(|| {
        reqs.iter()
            .map(|r| terminal_safe(&requirements::sentence(r)))
            .collect()
    })
}

/// The paired comparison with the baseline, as `table` prints it (empty without one).
pub(crate) fn comparison_table(report: &Report, bootstrap: &Bootstrap) -> String {
    let mut out = String::new();
    let ci_title = format!("{:.0}% CI", 100.0 * bootstrap.level);
    let fmt = |x: f64| {
        if x.is_nan() {
            "n/a".to_owned()
        } else {
            format!("{x:.4}")
        }
    };
    if !report.paired.is_empty() {
        let base = report
            .header
            .get("comparison")
            .and_then(|c| c["baseline"].as_str())
            .unwrap_or("the baseline");
        let _ = writeln!(
            out,
            "\npaired bootstrap against {base} (model minus baseline, same resamples):"
        );
        let width = report
            .paired
            .iter()
            .map(|(_, label, _)| label.chars().count())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {ci_title:<20}  p",
            "metric", "model", "baseline", "diff"
        );
        for (_, label, t) in &report.paired {
            let ci = match t.ci {
                Some((lo, hi)) => format!("[{}, {}]", fmt(lo), fmt(hi)),
                None => "n/a".to_owned(),
            };
            let p = t.p_value.map_or("n/a".to_owned(), |p| format!("{p:.4}"));
            let _ = writeln!(
                out,
                "{label:<width$}  {:>8}  {:>8}  {:>8}  {ci:<20}  {p}",
                fmt(t.a),
                fmt(t.b),
                fmt(t.diff)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proportions_interval_is_exact_and_widened_by_the_patient_bootstrap() {
        let exact = Proportion::new(9, 10, 0.95);
        let (lo, hi) = exact.ci.unwrap();
        let boot = |ci| Estimate {
            value: 0.9,
            ci: Some(ci),
            resamples: 50,
        };
        // By case: the exact interval alone, whatever the bootstrap said.
        let e = exact_estimate(exact, boot((0.5, 0.99)), "case", 100);
        assert_eq!((e.value, e.ci, e.resamples), (0.9, Some((lo, hi)), 100));
        // By patient: the wider of the two on each side.
        let e = exact_estimate(exact, boot((0.5, 0.95)), "patient", 100);
        assert_eq!(e.ci, Some((0.5, hi)));
        let e = exact_estimate(exact, boot((0.8, 0.9)), "patient", 100);
        assert_eq!(e.ci, Some((lo, hi)));
    }
}
