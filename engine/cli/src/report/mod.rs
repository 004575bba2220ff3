//! `engine report`: one self-contained HTML file (inline CSS and SVG, no script, no
//! external address) that tells what was asked, what the data looked like, what the
//! developer loop tried, and what the sealed test found, with where every figure came from.
//!
//! It only reads: the manifest, the developer loop's history (`.engine/develop/<stem>/`),
//! the runs it points to (`.engine/runs/<id>/summary.json`, whose stage outputs hold the
//! audit, the validation metrics and the training runtime) and the test openings
//! (`.engine/test-seal.jsonl`, `.engine/test/<id>/`). The baseline's intervals on the test
//! split are recomputed from its saved predictions with the opening's bootstrap settings,
//! which gives the same figures `engine test` computed.

mod svg;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::agent::journal::{Journal, Round, State};
use engine_core::metrics::bootstrap::quantile;
use engine_core::metrics::predictions::{read_binary, read_multiclass};
use engine_core::metrics::{BinaryOptions, Bootstrap};
use engine_core::store::Store;
use serde_json::Value;

use crate::EXIT_USAGE;
use crate::commands::load_or_report;
use crate::metrics::{BinaryInput, Cut, Input, Locked, evaluate, to_json};
use svg::{BASELINE, Bar, BarGroup, BoxStat, Curve, IntervalRow, MODEL, RoundPoint, esc};

/// The marker that tells a file is a report this command wrote (and may overwrite).
const GENERATOR: &str = "engine report";

/// Colours of the one-vs-rest ROC curves of a multiclass model.
const PALETTE: [&str; 10] = [
    "#0b61d6", "#e8590c", "#1a7f37", "#8250df", "#cf222e", "#0a7d8c", "#bf8700", "#57606a",
    "#d63384", "#3d5a80",
];

/// `engine report [MANIFEST] [-o FILE] [--test ID]`.
pub fn report(
    manifest: Option<&Path>,
    out: Option<&Path>,
    test: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let usage = |message: String| {
        eprintln!("error: {message}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let manifest = match manifest {
        Some(m) => m.to_path_buf(),
        None => match crate::history::find(None) {
            Ok((_, m)) => m,
            Err(_) => {
                return usage(
                    "name the manifest to report on (hint: `engine report pipeline.yaml`)".into(),
                );
            }
        },
    };
    let m = match load_or_report(&manifest) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let stem = manifest
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    let out = out.map_or_else(
        || m.dir.join(format!("{stem}.report.html")),
        Path::to_path_buf,
    );
    if let Err(e) = may_write(&out) {
        return usage(e);
    }
    let store = Store::at(&m.dir);
    let ctx = match Context::gather(&m, &manifest, &store, test) {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    if ctx.rounds.is_empty()
        && ctx.test.is_none()
        && ctx.audit.is_none()
        && ctx.validation.is_empty()
    {
        return usage(format!(
            "nothing to report on {} yet: it has no history, no test and no run with its current settings (hint: `engine apply {}` or `engine develop {}` first)",
            manifest.display(),
            manifest.display(),
            manifest.display()
        ));
    }
    let html = ctx.render();
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    engine_core::store::write_atomic(&out, html.as_bytes())?;
    // Readable by others, as a document is (the temporary file it came from was private).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644))?;
    }
    for w in &ctx.warnings {
        eprintln!("note: {w}");
    }
    println!("report: {}", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Refuses to overwrite a file that is not a report this command wrote.
fn may_write(out: &Path) -> Result<(), String> {
    if out.is_dir() {
        return Err(format!(
            "{} is a folder (hint: name a file, such as report.html)",
            out.display()
        ));
    }
    if !out.exists() {
        return Ok(());
    }
    let head = std::fs::read(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let head = String::from_utf8_lossy(&head[..head.len().min(400)]);
    if head.contains(&format!("<meta name=\"generator\" content=\"{GENERATOR}")) {
        Ok(())
    } else {
        Err(format!(
            "{} exists and is not a report written by `engine report`; it is left as it is (hint: name another file with -o)",
            out.display()
        ))
    }
}

/// One opening of the test split, as `engine test` recorded it.
#[derive(Debug)]
struct Opening {
    record: Value,
    /// `metrics.json` of the opening.
    metrics: Value,
    dir: PathBuf,
}

/// The baseline's own figures on the test split, recomputed from its predictions.
#[derive(Debug, Default)]
struct Baseline {
    metrics: Value,
}

/// Everything the report shows, read once.
#[derive(Debug)]
struct Context {
    manifest: PathBuf,
    manifest_hash: String,
    request: Option<String>,
    task: Option<engine_core::task::TaskSpec>,
    header: Option<engine_core::agent::journal::Header>,
    rounds: Vec<Round>,
    best: Option<u32>,
    accepted: Option<u32>,
    audit: Option<(Value, Option<Value>)>,
    /// Validation metrics (`metrics.json` of the scoring evaluation): label, JSON.
    validation: Vec<(String, Value)>,
    openings: Vec<Value>,
    test: Option<Opening>,
    baseline: Option<Baseline>,
    /// Training runtime of the tested or best models: label, JSON.
    runtimes: Vec<(String, Value)>,
    warnings: Vec<String>,
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

impl Context {
    fn gather(
        m: &engine_core::load::LoadedManifest,
        manifest: &Path,
        store: &Store,
        test_id: Option<&str>,
    ) -> Result<Context, String> {
        let mut warnings = Vec::new();
        let journal = Journal::for_manifest(&m.dir, manifest);
        let (rounds, header, accepted) = if journal.exists() {
            let (rounds, _) = journal.rounds()?;
            (rounds, journal.header(), journal.accepted())
        } else {
            (Vec::new(), None, None)
        };
        let best = journal.chosen(&rounds);
        let scoring = crate::develop::scoring(m).ok();
        let mut outputs = BTreeMap::new();
        for r in &rounds {
            let Some(id) = &r.run_id else { continue };
            let Some(summary) = read_json(&store.run_dir(id).join("summary.json")) else {
                continue;
            };
            let stages: BTreeMap<String, PathBuf> = summary["stages"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), PathBuf::from(v["outputs"].as_str()?))))
                .filter(|(_, p)| p.is_dir())
                .collect();
            outputs.insert(r.round, stages);
        }
        // The current manifest's completed stages, from the cache.
        let mut fp = engine_core::fingerprint::FingerprintDb::open(&store.fingerprint_memo());
        let current: BTreeMap<String, (String, PathBuf)> =
            match engine_core::plan::make_plan(m, store, &mut fp) {
                Ok(plan) => plan
                    .stages
                    .iter()
                    .filter(|s| store.is_complete(&s.digest))
                    .map(|s| (s.id.clone(), (s.kind.clone(), store.out_dir(&s.digest))))
                    .collect(),
                Err(_) => BTreeMap::new(),
            };
        let audit = current
            .values()
            .find(|(kind, _)| kind == "data.audit")
            .and_then(|(_, dir)| {
                let audit = read_json(&dir.join("audit.json"))?;
                let key = dir.parent().and_then(|p| read_json(&p.join("key.json")));
                Some((audit, key))
            });
        let mut validation = Vec::new();
        if let Some(s) = &scoring {
            let metrics_of = |round: u32| {
                outputs
                    .get(&round)
                    .and_then(|o| o.get(&s.evaluate))
                    .and_then(|d| read_json(&d.join("metrics.json")))
            };
            if !rounds.is_empty() {
                if let Some(b) = best.filter(|b| *b != 0)
                    && let Some(v) = metrics_of(b)
                {
                    validation.push((format!("round {b} ({})", role(accepted, b)), v));
                }
                if let Some(v) = metrics_of(0) {
                    validation.push(("round 0 (initial)".into(), v));
                }
            } else if let Some((_, dir)) = current.get(&s.evaluate)
                && let Some(v) = read_json(&dir.join("metrics.json"))
            {
                validation.push(("the manifest as it is".into(), v));
            }
        }

        let name = manifest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        let openings: Vec<Value> = std::fs::read_to_string(store.root().join("test-seal.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|o| {
                o["manifest"].as_str().is_none() || o["manifest"].as_str() == name.as_deref()
            })
            .collect();
        let chosen = match test_id {
            Some(id) => Some(
                openings
                    .iter()
                    .find(|o| o["id"].as_str() == Some(id))
                    .ok_or_else(|| {
                        let ids: Vec<&str> =
                            openings.iter().filter_map(|o| o["id"].as_str()).collect();
                        format!(
                            "no test opening `{id}` for {} ({})",
                            manifest.display(),
                            if ids.is_empty() {
                                "the test split was never opened".to_owned()
                            } else {
                                format!("the openings are {}", ids.join(", "))
                            }
                        )
                    })?
                    .clone(),
            ),
            None => openings
                .iter()
                .rev()
                .find(|o| {
                    o["id"].as_str().is_some_and(|id| {
                        store
                            .root()
                            .join("test")
                            .join(id)
                            .join("metrics.json")
                            .is_file()
                    })
                })
                .cloned(),
        };
        let test = chosen.and_then(|record| {
            let dir = store.root().join("test").join(record["id"].as_str()?);
            let metrics = read_json(&dir.join("metrics.json"));
            if metrics.is_none() {
                warnings.push(format!(
                    "the results of test opening {} are missing ({})",
                    record["id"],
                    dir.display()
                ));
            }
            Some(Opening {
                record,
                metrics: metrics?,
                dir,
            })
        });
        let baseline = match &test {
            Some(t) => match recompute_baseline(t) {
                Ok(b) => b,
                Err(e) => {
                    warnings.push(format!(
                        "the baseline's test intervals could not be recomputed: {e}"
                    ));
                    None
                }
            },
            None => None,
        };
        let mut runtimes = Vec::new();
        if let Some(s) = &scoring {
            let mut seen = Vec::new();
            for r in best.into_iter().chain(rounds.first().map(|r| r.round)) {
                if seen.contains(&r) {
                    continue;
                }
                seen.push(r);
                if let Some(v) = outputs
                    .get(&r)
                    .and_then(|o| o.get(&s.train))
                    .and_then(|d| read_json(&d.join("metrics.json")))
                {
                    runtimes.push((
                        format!("`{}` of round {r} ({})", s.train, role(accepted, r)),
                        v,
                    ));
                }
            }
            if rounds.is_empty()
                && let Some((_, dir)) = current.get(&s.train)
                && let Some(v) = read_json(&dir.join("metrics.json"))
            {
                runtimes.push((format!("`{}`", s.train), v));
            }
        }
        Ok(Context {
            manifest: manifest.to_path_buf(),
            manifest_hash: blake3::hash(m.source.as_bytes()).to_hex().to_string(),
            request: m.manifest.request.clone(),
            task: m.manifest.task.clone(),
            header,
            rounds,
            best,
            accepted,
            audit,
            validation,
            openings,
            test,
            baseline,
            runtimes,
            warnings,
        })
    }
}

fn role(accepted: Option<u32>, round: u32) -> &'static str {
    match (accepted, round) {
        (_, 0) => "initial",
        (Some(a), r) if a == r => "accepted",
        _ => "best",
    }
}

/// The baseline's metrics and confound analysis on the test split, from its predictions,
/// with the opening's bootstrap settings and operating points.
fn recompute_baseline(t: &Opening) -> Result<Option<Baseline>, String> {
    let Some(file) = t.metrics["predictions"]["baseline"].as_str() else {
        return Ok(None);
    };
    let preds = t.dir.join(file);
    let b = &t.metrics["bootstrap"];
    let bootstrap = Bootstrap {
        resamples: b["resamples"].as_u64().unwrap_or(2000) as usize,
        seed: b["seed"].as_u64().unwrap_or(0),
        ..Bootstrap::default()
    };
    let input = if t.metrics["task"] == "detection" {
        // A detector's predictions are a directory: the test boxes and its detections.
        let model = t.metrics["predictions"]["model"]
            .as_str()
            .unwrap_or_default();
        Input::Detection {
            gt: t.dir.join(model).join("ground_truth.json"),
            dets: preds.join("detections.json"),
            options: engine_core::metrics::DetectionOptions::default(),
            compare: None,
        }
    } else if t.metrics["task"] == "binary" {
        let ops = &t.metrics["operating_points"];
        // The baseline's own threshold, fixed on its validation predictions when it was tested.
        let cut = match t.metrics["comparison"]["baseline_threshold"].as_f64() {
            Some(threshold) => Cut::Fixed(Locked {
                threshold,
                rule: None,
                chosen_on: "validation".into(),
            }),
            None => {
                return Err("the test's metrics.json names no threshold for the baseline (hint: it was written by an older engine; run `engine test` again with --reopen)".into());
            }
        };
        Input::Binary(BinaryInput {
            preds,
            options: BinaryOptions {
                at_specificity: ops["at_specificity"].as_f64().unwrap_or(0.8),
                at_sensitivity: ops["at_sensitivity"].as_f64().unwrap_or(0.9),
            },
            attribute: t.metrics["attribute"]["name"].as_str().map(str::to_owned),
            compare: None,
            cut: cut.clone(),
            compare_cut: cut,
            positive_name: t.metrics["positive_class"].as_str().map(str::to_owned),
        })
    } else {
        Input::Multiclass {
            preds,
            compare: None,
        }
    };
    let json = to_json(evaluate(input, &bootstrap)?);
    Ok(Some(Baseline {
        metrics: json["metrics"].clone(),
    }))
}

/// The points of a ROC curve (false-positive rate, sensitivity), tied scores as one step.
fn roc_points(positive: &[bool], scores: &[f64]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let p = positive.iter().filter(|x| **x).count().max(1) as f64;
    let n = positive.iter().filter(|x| !**x).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut points = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < order.len() {
        let s = scores[order[i]];
        while i < order.len() && scores[order[i]] == s {
            if positive[order[i]] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        points.push((fp / n, tp / p));
    }
    points
}

fn box_stat(colour: &'static str, mut v: Vec<f64>) -> Option<BoxStat> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(BoxStat {
        colour,
        n: v.len(),
        p05: quantile(&v, 0.05),
        q1: quantile(&v, 0.25),
        median: quantile(&v, 0.5),
        q3: quantile(&v, 0.75),
        p95: quantile(&v, 0.95),
    })
}

/// A JSON value as escaped text (numbers as they are).
fn jv(v: &Value) -> String {
    esc(&v.to_string())
}

fn f4(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |x| format!("{x:.4}"))
}

fn ci(v: &Value) -> Option<(f64, f64)> {
    Some((v[0].as_f64()?, v[1].as_f64()?))
}

fn ci_text(v: &Value) -> String {
    ci(v).map_or(String::new(), |(l, h)| format!("[{l:.4}, {h:.4}]"))
}

fn mark(p: Option<f64>) -> String {
    match p {
        Some(p) if p < 0.001 => "***".into(),
        Some(p) if p < 0.01 => "**".into(),
        Some(p) if p < 0.05 => "*".into(),
        Some(_) => "n.s.".into(),
        None => String::new(),
    }
}

/// A metric key as a reader says it.
/// A metric's name for readers; an operating point with its value (`ops` is the
/// evaluation's `operating_points`), never "sens. at spec.".
fn metric_label(key: &str, ops: &Value) -> String {
    let (base, class) = key.split_once('/').unwrap_or((key, ""));
    let pct = |k: &str| {
        ops[k].as_f64().map_or_else(
            || "the set".to_owned(),
            engine_core::metrics::binary::percent,
        )
    };
    match base {
        "sensitivity_at_specificity" => {
            return format!("sensitivity at {} specificity", pct("at_specificity"));
        }
        "specificity_at_sensitivity" => {
            return format!("specificity at {} sensitivity", pct("at_sensitivity"));
        }
        _ => {}
    }
    if base == "confound" {
        return match class {
            "fp_share_with_attribute" => "false positives with attribute (share)",
            "expected_fp_share" => "negatives with attribute (expected share)",
            "pearson" => "correlation with attribute",
            "partial_correlation" => "partial correlation, label fixed",
            other => other,
        }
        .into();
    }
    let base = match base {
        "auc" => "AUC",
        "macro_auc" => "macro AUC",
        "f1" => "F1",
        "macro_f1" => "macro F1",
        "brier" => "Brier score",
        "ece" => "expected calibration error",
        "balanced_accuracy" => "balanced accuracy",
        other => other,
    };
    if class.is_empty() {
        base.into()
    } else {
        format!("{base} {class}")
    }
}

const CSS: &str = r#"
body{margin:0;background:#f6f8fa;color:#24292f;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif}
main{max-width:1040px;margin:0 auto;padding:24px 28px 60px;background:#fff;min-height:100vh}
h1{font-size:26px;margin:8px 0 4px}h2{font-size:20px;margin:36px 0 8px;padding-top:12px;border-top:1px solid #d0d7de}
h3{font-size:16px;margin:20px 0 6px}
.lede{color:#57606a;margin:0 0 16px}
blockquote{margin:12px 0;padding:8px 14px;border-left:4px solid #0b61d6;background:#f0f6ff;font-size:16px}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;margin:12px 0}
dl.facts dt{color:#57606a}dl.facts dd{margin:0}
.headline{font-size:17px;padding:10px 14px;background:#f6f8fa;border-radius:6px}
figure{margin:16px 0;display:inline-block;vertical-align:top;max-width:100%}
figure svg{max-width:100%;height:auto;border:1px solid #eaeef2;border-radius:4px;background:#fff}
figcaption{font-size:13px;color:#57606a;max-width:560px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13.5px}
th,td{padding:4px 10px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.kept td{background:#f0fff4}tr.bad td{color:#cf222e}
details{font-size:13px}summary{cursor:pointer;color:#0b61d6}
pre{background:#f6f8fa;padding:8px 10px;border-radius:4px;overflow-x:auto;font-size:12.5px;line-height:1.4}
.add{color:#1a7f37}.del{color:#cf222e}.hunk{color:#8250df}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:8px 12px;border-radius:6px;margin:8px 0}
.alert{background:#ffebe9;border:1px solid #cf222e;padding:8px 12px;border-radius:6px;margin:8px 0}
.note{color:#57606a;font-size:13.5px}
code{font-size:13px;background:#f6f8fa;padding:0 3px;border-radius:3px}
.v{font-weight:700;white-space:nowrap}.v-met{color:#1a7f37}.v-not_met{color:#cf222e}.v-undetermined{color:#9a6700}
dl.terms{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;font-size:13.5px;margin:8px 0}
dl.terms dt{font-weight:600}dl.terms dd{margin:0;color:#57606a}
"#;

fn diff_html(diff: &str) -> String {
    let mut out = String::from("<pre>");
    for line in diff.lines() {
        let class = if line.starts_with("+++") || line.starts_with("---") {
            ""
        } else if line.starts_with('+') {
            "add"
        } else if line.starts_with('-') {
            "del"
        } else if line.starts_with("@@") {
            "hunk"
        } else {
            ""
        };
        if class.is_empty() {
            let _ = writeln!(out, "{}", esc(line));
        } else {
            let _ = writeln!(out, r#"<span class="{class}">{}</span>"#, esc(line));
        }
    }
    out.push_str("</pre>");
    out
}

/// A model's name for legends: "round 2 (best)" for "`train` of round 2 (best)".
fn short(label: &str) -> String {
    match label.find(" of round ") {
        Some(i) => label[i + 4..].to_owned(),
        None => label.replace('`', ""),
    }
}

/// One sentence for each technical term the report uses.
const GLOSSARY: [(&str, &str); 10] = [
    (
        "AUC",
        "The chance that the model scores a random case with the finding above a random case without it: 0.5 is guessing, 1.0 is perfect ranking.",
    ),
    (
        "Sensitivity",
        "Of the cases with the finding, the share the model calls positive (missed findings are the rest).",
    ),
    (
        "Specificity",
        "Of the cases without the finding, the share the model calls negative (false alarms are the rest).",
    ),
    (
        "Threshold",
        "The probability above which a case is called positive; fixed on validation and never re-tuned on the test.",
    ),
    (
        "Youden's point",
        "The threshold that maximises sensitivity + specificity, used when the request names no operating point.",
    ),
    (
        "95% CI",
        "The range the true value lies in with 95% confidence; exact (Clopper-Pearson) for shares of cases, bootstrap otherwise. A wide interval means few cases.",
    ),
    (
        "Brier score",
        "The mean squared difference between predicted probability and outcome: lower is better, and a useful model beats predicting the prevalence for everyone.",
    ),
    (
        "Expected calibration error (ECE)",
        "How far, on average over ten probability bins, the predicted probabilities are from the observed rates: 0.05 means off by about 5 points.",
    ),
    (
        "Partial correlation",
        "How strongly the predicted probability follows the attribute (e.g. a drain) among cases with the same label: 0 means no reliance, 1 complete reliance.",
    ),
    (
        "Plain control",
        "The same network trained on the same data without the debiasing: the reference for how much reliance the debiasing removed.",
    ),
];

fn figure(id: &str, svg: String, caption: &str) -> String {
    format!(r#"<figure id="{id}">{svg}<figcaption>{caption}</figcaption></figure>"#)
}

impl Context {
    /// A metric's name for readers, with the operating points of the evaluation shown.
    fn metric_label(&self, key: &str) -> String {
        let ops = self
            .test
            .as_ref()
            .map(|t| &t.metrics["operating_points"])
            .or_else(|| self.validation.first().map(|(_, v)| &v["operating_points"]))
            .cloned()
            .unwrap_or(Value::Null);
        metric_label(key, &ops)
    }

    fn model_label(&self) -> String {
        short(
            self.test
                .as_ref()
                .and_then(|t| t.metrics["label"].as_str())
                .unwrap_or("the model"),
        )
    }

    fn baseline_label(&self) -> String {
        short(
            self.test
                .as_ref()
                .and_then(|t| t.metrics["comparison"]["baseline_label"].as_str())
                .unwrap_or("the baseline"),
        )
    }

    /// The objective's metric key: the history's, else the first AUC the figures have.
    fn objective(&self) -> String {
        self.rounds
            .iter()
            .find_map(|r| r.score.as_ref().map(|s| s.metric.clone()))
            .or_else(|| {
                let t = self.test.as_ref()?;
                ["auc", "macro_auc"]
                    .iter()
                    .find(|k| t.metrics["metrics"].get(**k).is_some())
                    .map(|k| (*k).to_owned())
            })
            .unwrap_or_else(|| "auc".into())
    }

    fn render(&self) -> String {
        let mut h = String::new();
        let title = self
            .task
            .as_ref()
            .and_then(|t| t.target.clone())
            .map_or_else(
                || self.manifest.display().to_string(),
                |t| t.replace('_', " "),
            );
        let _ = write!(
            h,
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR} {v}"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Report: {t}</title><style>{CSS}</style></head><body><main>"#,
            v = env!("CARGO_PKG_VERSION"),
            t = esc(&title)
        );
        let _ = write!(
            h,
            r#"<h1>{}: model development report</h1><p class="lede">{} · written {}</p>"#,
            esc(&title),
            esc(&self.manifest.display().to_string()),
            esc(&engine_core::clock::now_rfc3339())
        );
        self.answer(&mut h);
        self.summary(&mut h);
        self.test_section(&mut h);
        self.confound_section(&mut h);
        self.rounds_section(&mut h);
        self.validation_section(&mut h);
        self.audit_section(&mut h);
        self.provenance(&mut h);
        h.push_str("</main></body></html>\n");
        h
    }

    /// The first screen: does the model do what was asked? The request's requirements with
    /// their verdicts (the test's once it was opened, else validation's, said to be), the
    /// comparisons with the initial model and the plain control, the calibration, and what
    /// each technical term means.
    fn answer(&self, h: &mut String) {
        let (metrics, on) = match (&self.test, self.validation.first()) {
            (Some(t), _) => (&t.metrics, "the sealed test split".to_owned()),
            (None, Some((label, v))) => (
                v,
                format!(
                    "validation, for {} (the test split is still sealed; validation is the split the loop chose by, so these figures are optimistic)",
                    short(label)
                ),
            ),
            (None, None) => return,
        };
        h.push_str(r#"<section id="answer"><h2>Does the model do what was asked?</h2>"#);
        let n = metrics["n"].as_u64().unwrap_or(0);
        let positive = metrics["positive_class"].as_str();
        let mut facts = format!("On {}: {n} images", esc(&on));
        if let (Some(p), Some(k)) = (positive, metrics["n_positive"].as_u64()) {
            let _ = write!(
                facts,
                ", {k} of them with {}; the positive class is <code>{}</code>",
                esc(&p.replace('_', " ")),
                esc(p)
            );
        }
        if let Some(t) = metrics["threshold"]["value"].as_f64() {
            let how = if metrics["threshold"]["fixed_beforehand"] == true {
                "fixed on validation and applied unchanged"
            } else {
                "chosen on validation"
            };
            let _ = write!(
                facts,
                ". Decisions (sensitivity, specificity, false positives) are read at the threshold {t:.4}, {how}{}",
                metrics["threshold"]["rule"]
                    .as_str()
                    .map(|r| format!(": {}", esc(r)))
                    .unwrap_or_default()
            );
        }
        let _ = write!(h, "<p>{facts}.</p>");
        if !self.rounds.is_empty() {
            let _ = write!(
                h,
                r#"<p class="note">{}.</p>"#,
                esc(&crate::history::looks(&self.rounds))
            );
        }
        let reqs = metrics["requirements"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if reqs.is_empty() {
            h.push_str(r#"<p class="note">The manifest states no requirements to check (it embeds no TaskSpec, or one without an objective, constraints or confounders).</p>"#);
        } else {
            h.push_str("<table><tr><th>requirement</th><th>verdict</th><th>estimate</th><th>95% CI</th><th>rests on</th><th>what else to know</th></tr>");
            for r in &reqs {
                let verdict = r["verdict"].as_str().unwrap_or("undetermined");
                let shown = match verdict {
                    "met" => "MET",
                    "not_met" => "NOT MET",
                    _ => "UNDETERMINED",
                };
                let _ = write!(
                    h,
                    r#"<tr><td>{}</td><td class="v v-{}">{shown}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td><td class="note">{}</td></tr>"#,
                    esc(r["requirement"].as_str().unwrap_or("")),
                    esc(verdict),
                    r["estimate"]
                        .as_f64()
                        .map_or("–".into(), |e| format!("{e:.3}")),
                    match (r["ci"][0].as_f64(), r["ci"][1].as_f64()) {
                        (Some(lo), Some(hi)) => format!("{lo:.3} to {hi:.3}"),
                        _ => "–".into(),
                    },
                    match (r["n"].as_u64(), r["cases"].as_str()) {
                        (Some(k), Some(c)) if k > 0 && !c.is_empty() => esc(&format!("{k} {c}")),
                        _ => "–".into(),
                    },
                    esc(r["note"].as_str().unwrap_or(""))
                );
            }
            h.push_str("</table>");
            h.push_str(r#"<p class="note">Met: the whole 95% interval is on the required side of the target. Not met: the whole interval is on the wrong side. Undetermined: the interval straddles the target (more cases would be needed), or the figure could not be measured.</p>"#);
        }
        // The comparisons the verdicts rest on.
        if let Some(t) = &self.test {
            let key = self.objective();
            let p = &t.metrics["comparison"]["paired"][&key];
            if p.is_object() {
                let _ = write!(
                    h,
                    "<p>Against {}: {} {} against {}, a difference of {:+.3} (95% CI {}; paired bootstrap p = {}).</p>",
                    esc(&self.baseline_label()),
                    esc(&self.metric_label(&key)),
                    f4(&p["model"]),
                    f4(&p["baseline"]),
                    p["difference"].as_f64().unwrap_or(f64::NAN),
                    ci_text(&p["ci"]),
                    f4(&p["p_value"])
                );
            }
            let c = &t.metrics["control"];
            if c.is_object() {
                let pc = &c["paired"]["confound/partial_correlation"];
                let red = &c["relative_reduction"]["partial_correlation"];
                let fp = &c["paired"]["confound/fp_share_with_attribute"];
                let _ = write!(
                    h,
                    "<p>Against {} (the same network and data without the debiasing): partial correlation with the attribute {} against the control's {}, so {} of the control's reliance was removed (95% CI {}); false positives with the attribute {} against the control's {}.</p>",
                    esc(c["baseline_label"].as_str().unwrap_or("the plain control")),
                    f4(&pc["model"]),
                    f4(&pc["baseline"]),
                    red["value"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                    match (red["ci"][0].as_f64(), red["ci"][1].as_f64()) {
                        (Some(lo), Some(hi)) => format!("{:.0}% to {:.0}%", 100.0 * lo, 100.0 * hi),
                        _ => "–".into(),
                    },
                    fp["model"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                    fp["baseline"]
                        .as_f64()
                        .map_or("–".into(), |v| format!("{:.0}%", 100.0 * v)),
                );
            }
        }
        let brier = &metrics["metrics"]["brier"];
        if brier.is_object() {
            let mut line = format!(
                "{}: Brier score {} (95% CI {})",
                if self.test.is_some() {
                    "Probabilities are calibrated on validation and applied unchanged"
                } else {
                    "Probabilities are calibrated on these validation cases, so their calibration here is measured in-sample"
                },
                f4(&brier["value"]),
                ci_text(&brier["ci"])
            );
            if let Some(b) = metrics["calibration"]["brier_prevalence"].as_f64() {
                let _ = write!(line, " against {b:.4} for always predicting the prevalence");
            }
            let _ = write!(
                line,
                "; expected calibration error {} (95% CI {})",
                f4(&metrics["metrics"]["ece"]["value"]),
                ci_text(&metrics["metrics"]["ece"]["ci"])
            );
            let floor = &metrics["calibration"]["ece_if_calibrated"];
            if let (Some(mean), Some(lo), Some(hi)) = (
                floor["mean"].as_f64(),
                floor["range"][0].as_f64(),
                floor["range"][1].as_f64(),
            ) {
                let _ = write!(
                    line,
                    ", where perfectly calibrated probabilities would show {mean:.3} on these {n} images by chance alone (95% range {lo:.3} to {hi:.3}), so this is {}",
                    if floor["consistent"] == true {
                        "consistent with calibrated probabilities"
                    } else {
                        "miscalibration beyond what chance explains"
                    }
                );
            }
            let raw = &metrics["calibration"]["uncalibrated"];
            if raw.is_object() {
                let _ = write!(
                    line,
                    "; the raw outputs had a Brier score of {} and an expected calibration error of {}",
                    f4(&raw["brier"]),
                    f4(&raw["ece"])
                );
            }
            let _ = write!(h, "<p>{line}.</p>");
            if let Some(bins) = metrics["calibration"]["reliability"].as_array() {
                let bins: Vec<(f64, f64, usize)> = bins
                    .iter()
                    .filter_map(|b| {
                        Some((
                            b["predicted"].as_f64()?,
                            b["observed"].as_f64()?,
                            b["n"].as_u64()? as usize,
                        ))
                    })
                    .collect();
                let binary = metrics["task"] == "binary";
                let svg = svg::reliability(
                    "Reliability diagram",
                    if binary {
                        "predicted probability"
                    } else {
                        "probability of the top class"
                    },
                    if binary {
                        "observed share of positives"
                    } else {
                        "observed share right"
                    },
                    &[svg::Reliability {
                        colour: MODEL,
                        label: self.model_label(),
                        bins,
                    }],
                );
                h.push_str(&figure(
                    "fig-reliability",
                    svg,
                    &format!(
                        "Calibration on {}: each dot is one tenth of the probability range, placed at the mean predicted probability and the observed rate; its size grows with its cases. On the dashed diagonal, a probability means what it says.",
                        esc(&on)
                    ),
                ));
            }
        }
        h.push_str(r#"<h3>What the terms mean</h3><dl class="terms">"#);
        for (term, meaning) in GLOSSARY {
            let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(term), esc(meaning));
        }
        h.push_str("</dl></section>");
    }

    fn summary(&self, h: &mut String) {
        h.push_str(r#"<section id="summary"><h2>The request</h2>"#);
        match &self.request {
            Some(r) => {
                let _ = write!(h, "<blockquote>{}</blockquote>", esc(r));
            }
            None => h.push_str(r#"<p class="note">The manifest embeds no request (it was not made by <code>engine init</code>).</p>"#),
        }
        if let Some(t) = &self.task {
            let v = serde_json::to_value(t).unwrap_or_default();
            h.push_str(r#"<dl class="facts">"#);
            let mut fact = |k: &str, val: String| {
                if !val.is_empty() {
                    let _ = write!(h, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(&val));
                }
            };
            let s = |x: &Value| x.as_str().unwrap_or_default().replace('_', " ");
            fact("task", s(&v["task"]));
            fact("modality", s(&v["modality"]));
            fact(
                "classes",
                v["classes"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default(),
            );
            fact("priority class", s(&v["priority_class"]));
            fact("error preference", s(&v["error_preference"]));
            let o = &v["objective"];
            let mut objective = s(&o["metric"]);
            if let Some(c) = o["class"].as_str() {
                objective.push_str(&format!(" of {c}"));
            }
            if let Some(x) = o["at_specificity"].as_f64() {
                objective.push_str(&format!(" at specificity {x}"));
            }
            if let Some(x) = o["at_sensitivity"].as_f64() {
                objective.push_str(&format!(" at sensitivity {x}"));
            }
            fact("objective", objective);
            fact(
                "constraints",
                v["constraints"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|c| {
                                format!(
                                    "{} {} {}",
                                    s(&c["metric"]),
                                    c["op"].as_str().unwrap_or("?"),
                                    c["value"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("; ")
                    })
                    .unwrap_or_default(),
            );
            fact(
                "must not rely on",
                v["confounders"]
                    .as_array()
                    .map(|a| a.iter().map(s).collect::<Vec<_>>().join(", "))
                    .unwrap_or_default(),
            );
            h.push_str("</dl>");
        }
        if let Some(t) = &self.test {
            let key = self.objective();
            let mm = &t.metrics["metrics"][&key];
            let n = t.metrics["n"].as_u64().unwrap_or(0);
            let _ = write!(
                h,
                r#"<p class="headline">On the held-out test split ({n} {units}, opened {at}), {model} reaches {metric} {v} (95% CI {lo}–{hi})"#,
                units = if t.metrics["task"] == "detection" {
                    "images"
                } else {
                    "cases"
                },
                at = esc(t.record["at"].as_str().unwrap_or("?")),
                model = esc(&self.model_label()),
                metric = esc(&self.metric_label(&key)),
                v = f4(&mm["value"]),
                lo = f4(&mm["ci"][0]),
                hi = f4(&mm["ci"][1]),
            );
            let p = &t.metrics["comparison"]["paired"][&key];
            if p.is_object() {
                let _ = write!(
                    h,
                    " against {} for {}: a difference of {:+.4} (95% CI {}; paired bootstrap p = {})",
                    f4(&p["baseline"]),
                    esc(&self.baseline_label()),
                    p["difference"].as_f64().unwrap_or(f64::NAN),
                    ci_text(&p["ci"]),
                    f4(&p["p_value"])
                );
                if key == "auc"
                    && let Some(d) = t.metrics["comparison"]["delong"]["p_value"].as_f64()
                {
                    let _ = write!(h, "; DeLong p = {d:.4}");
                }
            }
            h.push_str(".</p>");
        } else {
            h.push_str(r#"<p class="headline">The test split is still sealed: no figure here comes from it. <code>engine test MANIFEST</code> opens it once, for the final and the initial model.</p>"#);
        }
        h.push_str("</section>");
    }

    fn test_section(&self, h: &mut String) {
        let Some(t) = &self.test else { return };
        h.push_str(r#"<section id="test"><h2>Held-out test</h2>"#);
        let reopened: Vec<&Value> = self
            .openings
            .iter()
            .filter(|o| o["reopen"].is_string())
            .collect();
        for o in &reopened {
            let _ = write!(
                h,
                r#"<p class="alert">The test split was <strong>reopened</strong> on {} for other models. Reason given: “{}”. Figures after a reopening are no longer an untouched test.</p>"#,
                esc(o["at"].as_str().unwrap_or("?")),
                esc(o["reopen"].as_str().unwrap_or(""))
            );
        }
        let b = &t.metrics["bootstrap"];
        let unit = esc(b["unit"].as_str().unwrap_or("case"));
        let mut cases = if t.metrics["task"] == "detection" {
            format!(
                "{} images with {} boxes",
                jv(&t.metrics["n"]),
                jv(&t.metrics["n_boxes"])
            )
        } else {
            format!("{} cases", jv(&t.metrics["n"]))
        };
        if let Some(p) = t.metrics["n_positive"].as_u64() {
            let _ = write!(cases, " ({p} positive)");
        }
        if let Some(g) = t.metrics["n_patients"].as_u64() {
            let _ = write!(cases, " of {g} {unit}s");
        }
        let _ = write!(
            h,
            r#"<p class="note">{cases}; 95% percentile bootstrap intervals, {r} resamples by {unit}, seed {seed}{paired}.</p>"#,
            r = jv(&b["resamples"]),
            seed = jv(&b["seed"]),
            paired = if t.metrics["comparison"].is_object() {
                "; paired tests on the same resamples, model minus baseline"
            } else {
                "; one model was tested, so there is no comparison"
            },
        );
        // ROC curves.
        let mut curves = Vec::new();
        let model_file = t.metrics["predictions"]["model"]
            .as_str()
            .map(|f| t.dir.join(f));
        let base_file = t.metrics["predictions"]["baseline"]
            .as_str()
            .map(|f| t.dir.join(f));
        let binary = t.metrics["task"] == "binary";
        if binary {
            for (file, colour, label) in [
                (&model_file, MODEL, self.model_label()),
                (&base_file, BASELINE, self.baseline_label()),
            ] {
                let Some(file) = file else { continue };
                if let Ok(p) = read_binary(file, None) {
                    let auc =
                        engine_core::metrics::roc_auc(&p.positive, &p.probs).unwrap_or(f64::NAN);
                    curves.push(Curve {
                        colour,
                        label: format!("{label}, AUC {auc:.3}"),
                        points: roc_points(&p.positive, &p.probs),
                    });
                }
            }
            if !curves.is_empty() {
                h.push_str(&figure("fig-roc", svg::roc("ROC curves on the test split", &curves), "ROC curves of the models on the held-out test split (the dashed diagonal is chance)."));
            }
        } else if let Some(file) = &model_file
            && let Ok(p) = read_multiclass(file)
        {
            for (k, class) in p.classes.iter().enumerate() {
                let positive: Vec<bool> = p.labels.iter().map(|&l| l as usize == k).collect();
                let scores = &p.probs[k];
                let auc = engine_core::metrics::roc_auc(&positive, scores).unwrap_or(f64::NAN);
                curves.push(Curve {
                    colour: PALETTE[k % PALETTE.len()],
                    label: format!("{class}, AUC {auc:.3}"),
                    points: roc_points(&positive, scores),
                });
            }
            h.push_str(&figure(
                "fig-roc",
                svg::roc("One-vs-rest ROC curves on the test split", &curves),
                &format!(
                    "One-vs-rest ROC curve of every class for {} on the held-out test split.",
                    esc(&self.model_label())
                ),
            ));
        }
        // Initial against final, with intervals and marks.
        let paired = &t.metrics["comparison"]["paired"];
        let priority = self.task.as_ref().and_then(|s| s.priority_class.clone());
        let keys: Vec<String> = t.metrics["metrics"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .filter(|k| !k.starts_with("confound/") && k != "threshold" && k != "score_threshold")
            .filter(|k| match k.split_once('/') {
                None => true,
                // The TaskSpec names the finding (`melanoma`), the data its code (`MEL`).
                Some((_, class)) => priority.as_deref().is_some_and(|p| {
                    p == class || engine_core::task::label_of(class).as_deref() == Some(p)
                }),
            })
            .collect();
        let groups: Vec<BarGroup> = keys
            .iter()
            .map(|k| {
                let m = &t.metrics["metrics"][k];
                let mut bars = vec![Bar {
                    value: m["value"].as_f64().unwrap_or(f64::NAN),
                    ci: ci(&m["ci"]),
                    colour: MODEL,
                }];
                if let Some(b) = &self.baseline {
                    let bm = &b.metrics[k];
                    if let Some(v) = bm["value"].as_f64() {
                        bars.push(Bar {
                            value: v,
                            ci: ci(&bm["ci"]),
                            colour: BASELINE,
                        });
                    }
                } else if let Some(v) = paired[k]["baseline"].as_f64() {
                    bars.push(Bar {
                        value: v,
                        ci: None,
                        colour: BASELINE,
                    });
                }
                BarGroup {
                    name: self.metric_label(k),
                    bars,
                    mark: paired.get(k).map(|p| mark(p["p_value"].as_f64())),
                }
            })
            .collect();
        let mut keys_legend = vec![(MODEL, self.model_label())];
        if paired.is_object() {
            keys_legend.push((BASELINE, self.baseline_label()));
        }
        h.push_str(&figure(
            "fig-compare",
            svg::bars("Final against initial on the test split", "value (95% CI)", &groups, &keys_legend),
            if paired.is_object() {
                "Each metric with its 95% bootstrap interval. Marks give the paired bootstrap test of the difference: * p < 0.05, ** p < 0.01, *** p < 0.001, n.s. not significant."
            } else {
                "Each metric with its 95% bootstrap interval."
            },
        ));
        // The table.
        h.push_str("<table><tr><th>metric</th><th>final</th><th>95% CI</th>");
        if paired.is_object() {
            h.push_str(
                "<th>initial</th><th>95% CI</th><th>difference</th><th>95% CI</th><th>p</th>",
            );
        }
        h.push_str("</tr>");
        for (k, m) in t.metrics["metrics"].as_object().into_iter().flatten() {
            if k.starts_with("confound/") {
                continue;
            }
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td>"#,
                esc(&self.metric_label(k)),
                f4(&m["value"]),
                ci_text(&m["ci"])
            );
            if paired.is_object() {
                let bm = self.baseline.as_ref().map(|b| &b.metrics[k]);
                let p = &paired[k];
                let _ = write!(
                    h,
                    r#"<td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td>"#,
                    bm.map_or("–".into(), |b| f4(&b["value"])),
                    bm.map_or(String::new(), |b| ci_text(&b["ci"])),
                    p["difference"]
                        .as_f64()
                        .map_or("–".into(), |d| format!("{d:+.4}")),
                    ci_text(&p["ci"]),
                    f4(&p["p_value"])
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table>");
        let d = &t.metrics["comparison"]["delong"];
        if d.is_object() {
            let _ = write!(
                h,
                r#"<p class="note">DeLong's test of the AUC: difference {:+.4}, z {:.3}, p {:.4}.</p>"#,
                d["difference"].as_f64().unwrap_or(f64::NAN),
                d["z"].as_f64().unwrap_or(f64::NAN),
                d["p_value"].as_f64().unwrap_or(f64::NAN)
            );
        }
        h.push_str("</section>");
    }

    fn confound_section(&self, h: &mut String) {
        let Some(t) = &self.test else { return };
        let Some(attr) = t.metrics["attribute"]["name"].as_str() else {
            return;
        };
        let _ = write!(
            h,
            r#"<section id="confound"><h2>Confound: <code>{}</code></h2>"#,
            esc(attr)
        );
        let _ = write!(
            h,
            r#"<p class="note">`{a}` is present in {p} of {n} test cases ({s:.1}%). A model that relies on it scores cases with `{a}` higher whatever their label; the panels look for that.</p>"#,
            a = esc(attr),
            p = jv(&t.metrics["attribute"]["present"]),
            n = jv(&t.metrics["n"]),
            s = 100.0
                * t.metrics["attribute"]["prevalence"]
                    .as_f64()
                    .unwrap_or(f64::NAN)
        );
        // Subgroup distributions from the saved predictions.
        let files = [
            (t.metrics["predictions"]["model"].as_str(), MODEL),
            (t.metrics["predictions"]["baseline"].as_str(), BASELINE),
        ];
        let mut groups: Vec<(String, Vec<BoxStat>)> = Vec::new();
        for label in [false, true] {
            for present in [false, true] {
                let mut stats = Vec::new();
                for (file, colour) in files {
                    let Some(file) = file else { continue };
                    let Ok(p) = read_binary(&t.dir.join(file), Some(attr)) else {
                        continue;
                    };
                    let Some(a) = &p.attribute else { continue };
                    let v: Vec<f64> = (0..p.probs.len())
                        .filter(|&i| p.positive[i] == label && a.present[i] == present)
                        .map(|i| p.probs[i])
                        .collect();
                    stats.extend(box_stat(colour, v));
                }
                if !stats.is_empty() {
                    groups.push((
                        format!(
                            "{}\n{} {}",
                            if label { "positive" } else { "negative" },
                            if present { "with" } else { "no" },
                            attr
                        ),
                        stats,
                    ));
                }
            }
        }
        let mut thresholds = vec![(
            MODEL,
            t.metrics["metrics"]["threshold"]["value"]
                .as_f64()
                .unwrap_or(f64::NAN),
        )];
        if let Some(b) = &self.baseline
            && let Some(th) = b.metrics["threshold"]["value"].as_f64()
        {
            thresholds.push((BASELINE, th));
        }
        thresholds.retain(|t| t.1.is_finite());
        let mut keys = vec![(MODEL, self.model_label())];
        if self.baseline.is_some() {
            keys.push((BASELINE, self.baseline_label()));
        }
        if !groups.is_empty() {
            h.push_str(&figure(
                "fig-subgroups",
                svg::boxes("Predicted probability by label and attribute", "predicted probability", &groups, &thresholds, &keys),
                &format!("Predicted probability per label × `{}` subgroup: boxes span the quartiles, lines the 5th to 95th percentiles; dashed lines are each model's Youden threshold. Within a label, the boxes with and without the attribute should sit level.", esc(attr)),
            ));
        }
        // False-positive shares.
        let m = &t.metrics["metrics"];
        let b = self.baseline.as_ref().map(|b| &b.metrics);
        let point = |colour, v: &Value| v["value"].as_f64().map(|x| (colour, x, ci(&v["ci"])));
        let mut fp = IntervalRow {
            name: format!("false positives with {attr}"),
            points: Vec::new(),
        };
        fp.points
            .extend(point(MODEL, &m["confound/fp_share_with_attribute"]));
        if let Some(b) = b {
            fp.points
                .extend(point(BASELINE, &b["confound/fp_share_with_attribute"]));
        }
        let mut expected = IntervalRow {
            name: format!("negatives with {attr} (expected)"),
            points: Vec::new(),
        };
        expected
            .points
            .extend(point(svg::MUTED, &m["confound/expected_fp_share"]));
        let mut shares_keys = keys.clone();
        shares_keys.push((svg::MUTED, "expected from prevalence".into()));
        h.push_str(&figure(
            "fig-fp-share",
            svg::intervals("False-positive share in attribute-present cases", "share (95% CI)", &[fp, expected], (0.0, 1.0), None, &shares_keys),
            &format!("At each model's Youden threshold: the share of its false positives that have `{a}`, next to the share expected if errors ignored `{a}` (its prevalence among negatives).", a = esc(attr)),
        ));
        // Correlations.
        let mut rows = Vec::new();
        for (key, name) in [
            ("confound/pearson", "correlation with attribute"),
            (
                "confound/partial_correlation",
                "partial correlation, label fixed",
            ),
        ] {
            let mut row = IntervalRow {
                name: name.into(),
                points: Vec::new(),
            };
            row.points.extend(point(MODEL, &m[key]));
            if let Some(b) = b {
                row.points.extend(point(BASELINE, &b[key]));
            }
            rows.push(row);
        }
        h.push_str(&figure(
            "fig-correlation",
            svg::intervals("Correlation of the output with the attribute", "correlation (95% CI)", &rows, (-1.0, 1.0), Some(0.0), &keys),
            &format!("Pearson correlation between the predicted probability and `{a}`'s probability, raw and with the label held fixed (both residualised on the label). A model that ignores `{a}` has a partial correlation near 0.", a = esc(attr)),
        ));
        let rr = &t.metrics["comparison"]["relative_reduction"];
        if rr.is_object() {
            h.push_str("<table><tr><th>quantity</th><th>final</th><th>initial</th><th>relative reduction</th><th>paired p</th></tr>");
            for (key, name) in [
                (
                    "fp_share_with_attribute",
                    "false-positive share with attribute",
                ),
                ("pearson", "correlation"),
                ("partial_correlation", "partial correlation"),
            ] {
                let p = &t.metrics["comparison"]["paired"][format!("confound/{key}")];
                let _ = write!(
                    h,
                    r#"<tr><td>{name}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                    f4(&p["model"]),
                    f4(&p["baseline"]),
                    rr[key]
                        .as_f64()
                        .map_or("n/a".into(), |x| format!("{:.1}%", 100.0 * x)),
                    f4(&p["p_value"])
                );
            }
            h.push_str("</table>");
        }
        h.push_str("</section>");
    }

    fn rounds_section(&self, h: &mut String) {
        if self.rounds.is_empty() {
            return;
        }
        let metric = self.objective();
        let kept = self
            .rounds
            .iter()
            .filter(|r| r.kept)
            .count()
            .saturating_sub(1);
        let _ = write!(
            h,
            r#"<section id="rounds"><h2>The developer loop</h2><p>{n} round(s); {kept} change(s) kept; best: round {best}{acc}. Each round changed one thing in the manifest, ran it, and was kept only on evidence: a paired test of its validation predictions against the best round's on the same images (DeLong's test for an AUC, else the paired bootstrap) had to show {metric} higher by at least the policy's minimum at the policy's one-sided level, with no constraint's interval on the wrong side of its bound and no significant rise in the reliance on a confounder over round 0, the plain control or the best round. {looks}.</p>"#,
            n = self.rounds.len(),
            best = self.best.map_or("–".into(), |b| b.to_string()),
            acc = self.accepted.map_or(String::new(), |a| format!(
                " (accepted by the clinician: round {a})"
            )),
            metric = esc(&self.metric_label(&metric)),
            looks = esc(&crate::history::looks(&self.rounds)),
        );
        let points: Vec<RoundPoint> = self
            .rounds
            .iter()
            .map(|r| RoundPoint {
                round: r.round,
                value: r.score.as_ref().map(|s| s.value),
                kept: r.kept,
                done: r.state == State::Done,
            })
            .collect();
        h.push_str(&figure(
            "fig-rounds",
            svg::rounds("Validation objective over rounds", &self.metric_label(&metric), &points),
            "Every round's validation objective; filled points were kept, and the line is the best so far. Crosses on the bottom edge are rounds that failed, timed out or were refused before running.",
        ));
        let _ = write!(
            h,
            "<table><tr><th>round</th><th>state</th><th>change</th><th>{}</th><th>verdict</th><th>secs</th></tr>",
            esc(&self.metric_label(&metric))
        );
        for r in &self.rounds {
            let class = if r.kept {
                "kept"
            } else if r.state != State::Done {
                "bad"
            } else {
                ""
            };
            let mut detail = format!(
                "<p><strong>{}</strong> (proposer: {})</p><p>{}</p>",
                esc(&r.proposal.summary),
                esc(&r.proposal.proposer),
                esc(&r.proposal.rationale)
            );
            for n in &r.proposal.notes {
                let _ = write!(detail, r#"<p class="note">{}</p>"#, esc(n));
            }
            if !r.diff.is_empty() {
                detail.push_str(&diff_html(&r.diff));
            }
            let _ = write!(
                h,
                r#"<tr class="{class}"><td class="n">{}{}</td><td>{}</td><td><details><summary>{}</summary>{detail}</details></td><td class="n">{}</td><td>{}</td><td class="n">{:.0}</td></tr>"#,
                r.round,
                if Some(r.round) == self.best {
                    " ★"
                } else {
                    ""
                },
                r.state.as_str(),
                esc(&r.proposal.summary),
                r.score
                    .as_ref()
                    .map_or("–".into(), |s| format!("{:.4}", s.value)),
                esc(&r.verdict),
                r.duration_s
            );
        }
        h.push_str("</table></section>");
    }

    fn validation_section(&self, h: &mut String) {
        if self.validation.is_empty() {
            return;
        }
        h.push_str(r#"<section id="validation"><h2>Validation</h2><p class="note">The figures the loop chose by (the validation split, never the test split), from the scoring evaluation of each model's run, with 95% bootstrap intervals.</p><table><tr><th>metric</th>"#);
        for (label, _) in &self.validation {
            let _ = write!(h, "<th>{}</th><th>95% CI</th>", esc(label));
        }
        h.push_str("</tr>");
        let keys: Vec<String> = self.validation[0].1["metrics"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            let _ = write!(h, "<tr><td>{}</td>", esc(&self.metric_label(&k)));
            for (_, v) in &self.validation {
                let m = &v["metrics"][&k];
                let _ = write!(
                    h,
                    r#"<td class="n">{}</td><td class="n">{}</td>"#,
                    f4(&m["value"]),
                    ci_text(&m["ci"])
                );
            }
            h.push_str("</tr>");
        }
        h.push_str("</table></section>");
    }

    fn audit_section(&self, h: &mut String) {
        let Some((a, _)) = &self.audit else { return };
        let d = &a["dataset"];
        let _ = write!(
            h,
            r#"<section id="audit"><h2>The data audit</h2><p>Dataset <code>{}</code> ({}), target <code>{}</code>: {} images, split by {} (seed {}).</p>"#,
            esc(d["name"].as_str().unwrap_or("?")),
            esc(d["format"].as_str().unwrap_or("?")),
            esc(d["target"].as_str().unwrap_or("?")),
            jv(&a["n_images"]),
            esc(d["split_by"].as_str().unwrap_or("image")),
            jv(&d["seed"])
        );
        h.push_str(r#"<table><tr><th>class</th><th>train</th><th>val</th><th>test (sealed)</th><th>total</th></tr>"#);
        for c in a["classes"].as_array().into_iter().flatten() {
            let _ = write!(
                h,
                r#"<tr><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                esc(c["name"].as_str().unwrap_or("?")),
                jv(&c["train"]),
                jv(&c["val"]),
                jv(&c["test"]),
                jv(&c["total"])
            );
        }
        h.push_str("</table><dl class=\"facts\">");
        let p = &a["patients"];
        if p.is_object() {
            let shared = p["leakage"]["shared"].as_array().map_or(0, Vec::len);
            let _ = write!(
                h,
                "<dt>groups</dt><dd>{} {}s, {} to {} images each; {}</dd>",
                jv(&p["total"]),
                esc(p["by"].as_str().unwrap_or("patient")),
                jv(&p["min_images"]),
                jv(&p["max_images"]),
                if shared == 0 {
                    "no group in two splits".to_owned()
                } else {
                    format!("{shared} group(s) in two splits")
                }
            );
        }
        let sizes: Vec<String> = a["images"]["sizes"]
            .as_array()
            .into_iter()
            .flatten()
            .take(4)
            .map(|s| format!("{}×{} ({})", s["width"], s["height"], s["count"]))
            .collect();
        let _ = write!(h, "<dt>image sizes</dt><dd>{}</dd>", esc(&sizes.join(", ")));
        if let Some(s) = a["supervision"]["summary"].as_str() {
            let _ = write!(h, "<dt>supervision</dt><dd>{}</dd>", esc(s));
        }
        let dup = &a["duplicates"];
        let _ = write!(
            h,
            "<dt>duplicates</dt><dd>{} set(s) of identical images, {} across splits</dd>",
            jv(&dup["sets"]),
            jv(&dup["across_splits"])
        );
        let excluded = a["excluded"].as_array().map_or(0, Vec::len);
        let _ = write!(
            h,
            "<dt>excluded</dt><dd>{excluded} unreadable or unlabelled image(s)</dd></dl>"
        );
        let tabs = a["cross_tabs"].as_object();
        if tabs.is_some_and(|t| !t.is_empty()) {
            h.push_str("<h3>Attributes against the label (training split)</h3><table><tr><th>attribute</th><th>class</th><th>P(attribute | class)</th><th>P(attribute | others)</th><th>AUC of the attribute alone</th></tr>");
            for (name, splits) in tabs.into_iter().flatten() {
                for row in splits["train"].as_array().into_iter().flatten() {
                    let _ = write!(
                        h,
                        r#"<tr><td>{}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
                        esc(name),
                        esc(row["class"].as_str().unwrap_or("?")),
                        f4(&row["p_given_positive"]),
                        f4(&row["p_given_negative"]),
                        f4(&row["auc"])
                    );
                }
            }
            h.push_str("</table>");
        }
        for w in a["warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            let _ = write!(h, r#"<p class="warn">{}</p>"#, esc(w));
        }
        h.push_str("</section>");
    }

    fn provenance(&self, h: &mut String) {
        h.push_str(r#"<section id="provenance"><h2>Provenance</h2><table>"#);
        let mut row = |k: &str, v: String| {
            let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", esc(k), v);
        };
        row(
            "engine",
            esc(&format!("engine {}", env!("CARGO_PKG_VERSION"))),
        );
        row(
            "manifest",
            format!(
                "<code>{}</code>, blake3 of its text <code>{}</code>",
                esc(&self.manifest.display().to_string()),
                &self.manifest_hash[..16]
            ),
        );
        if let Some(hd) = &self.header {
            let same = hd.initial_text_hash == self.manifest_hash;
            row(
                "history",
                format!(
                    "began {} on the text <code>{}</code>{}",
                    esc(&hd.created),
                    esc(hd
                        .initial_text_hash
                        .get(..16)
                        .unwrap_or(&hd.initial_text_hash)),
                    if same {
                        " (the manifest as it is now)".to_owned()
                    } else {
                        " — <strong>the manifest has changed since</strong>".to_owned()
                    }
                ),
            );
        }
        for r in self
            .rounds
            .iter()
            .filter(|r| r.round == 0 || Some(r.round) == self.best)
        {
            row(
                &format!("round {} ({})", r.round, role(self.accepted, r.round)),
                format!(
                    "manifest content hash <code>{}</code>, run <code>{}</code>",
                    esc(r.manifest_hash.get(..16).unwrap_or(&r.manifest_hash)),
                    esc(r.run_id.as_deref().unwrap_or("–"))
                ),
            );
        }
        if let Some((_, Some(key))) = &self.audit
            && let Some(ds) = key["datasets"].as_object()
        {
            let v: Vec<String> = ds
                .iter()
                .map(|(k, d)| {
                    format!(
                        "<code>{}</code> fingerprint <code>{}</code>",
                        esc(k),
                        esc(d.as_str().unwrap_or("?"))
                    )
                })
                .collect();
            row("data", v.join("; "));
        }
        for (label, m) in &self.runtimes {
            let rt = &m["runtime"];
            let text = if rt.is_object() {
                format!(
                    "libtorch {}, device {}, {} CPU thread(s); {} epoch(s) in {:.0} s",
                    esc(rt["libtorch"].as_str().unwrap_or("?")),
                    esc(rt["device"].as_str().unwrap_or("?")),
                    jv(&rt["cpu_threads"]),
                    jv(&m["epochs_run"]),
                    m["seconds"].as_f64().unwrap_or(f64::NAN)
                )
            } else {
                "trained before the engine recorded its runtime".to_owned()
            };
            row(&format!("training of {}", label.replace('`', "")), text);
        }
        for o in &self.openings {
            let models: Vec<String> = o["models"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| {
                    format!(
                        "{} (weights <code>{}</code>)",
                        esc(&m["label"].as_str().unwrap_or("?").replace('`', "")),
                        esc(m["hash"].as_str().unwrap_or("?"))
                    )
                })
                .collect();
            let mut text = format!(
                "{}: {}",
                esc(o["at"].as_str().unwrap_or("?")),
                models.join(" and ")
            );
            if o["repeat"] == true {
                text.push_str(" — a repeat for the same models");
            }
            if let Some(r) = o["reopen"].as_str() {
                let _ = write!(text, " — <strong>reopened</strong>: “{}”", esc(r));
            }
            row(
                &format!("test opening {}", o["id"].as_str().unwrap_or("?")),
                text,
            );
        }
        if self.openings.is_empty() {
            row("test split", "sealed: never opened".into());
        }
        h.push_str("</table></section>");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_points_step_once_per_distinct_score() {
        let pos = [true, false, true, false];
        let s = [0.9, 0.8, 0.8, 0.1];
        assert_eq!(
            roc_points(&pos, &s),
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
    }

    #[test]
    fn marks_follow_the_p_value() {
        assert_eq!(mark(Some(0.0005)), "***");
        assert_eq!(mark(Some(0.004)), "**");
        assert_eq!(mark(Some(0.03)), "*");
        assert_eq!(mark(Some(0.4)), "n.s.");
        assert_eq!(mark(None), "");
    }

    #[test]
    fn only_reports_may_be_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let other = dir.path().join("pipeline.yaml");
        std::fs::write(&other, "version: 1\n").unwrap();
        assert!(may_write(&other).unwrap_err().contains("not a report"));
        let ours = dir.path().join("r.html");
        std::fs::write(&ours, format!("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><meta name=\"generator\" content=\"{GENERATOR} 0.1.0\">")).unwrap();
        assert!(may_write(&ours).is_ok());
        assert!(may_write(&dir.path().join("new.html")).is_ok());
        assert!(may_write(dir.path()).is_err());
    }
}
