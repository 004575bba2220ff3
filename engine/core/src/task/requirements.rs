//! Requirements as checked claims: every requirement a TaskSpec holds (its objective, each
//! constraint, the operating point it implies, each named confounder) set against what an
//! evaluation measured, with a verdict the interval supports: met, not met, or
//! undetermined, and, for a proportion left undetermined, how many cases would settle it.
//!
//! The rules, so that a verdict never claims more than its interval:
//! - `>= v` is **met** when the whole 95% interval is at or above `v`, **not met** when the
//!   whole interval is below it, **undetermined** otherwise. `<= v` mirrors it.
//! - An objective without a stated target (maximise the AUC) is checked against chance:
//!   an AUC above 0.5; a sensitivity at specificity `X` above `1 - X`, which a model
//!   calling cases positive at random reaches.
//! - A named confounder is checked as "does not rely on it": the partial correlation
//!   between the predicted probability and the attribute, with the label held fixed, at
//!   most [`RELIANCE_LIMIT`] (a correlation below 0.1 explains less than 1% of the
//!   variance, Cohen's bound of a small effect). A confounder no attribute measures is
//!   undetermined, and says so.
//! - A requirement whose figure could not be measured is undetermined, and says why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::metrics::OperatingRule;
use crate::metrics::binary::percent;
use crate::metrics::exact::{Side, trials_needed};

use super::spec::{Comparison, Metric, TaskKind, TaskSpec};

/// The largest partial correlation with a confounder that counts as not relying on it.
pub const RELIANCE_LIMIT: f64 = 0.1;

/// The figure under which [`Evidence::measures`] holds the confound analysis' partial
/// correlation.
pub const PARTIAL_CORRELATION: &str = "confound/partial_correlation";

/// What the interval says about a requirement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The whole interval is on the required side of the target.
    Met,
    /// The whole interval is on the wrong side.
    NotMet,
    /// The interval straddles the target, or the figure could not be measured.
    Undetermined,
}

impl Verdict {
    /// The verdict as the terminal and the report show it.
    pub fn shout(self) -> &'static str {
        match self {
            Verdict::Met => "MET",
            Verdict::NotMet => "NOT MET",
            Verdict::Undetermined => "UNDETERMINED",
        }
    }
}

/// One requirement, checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Requirement {
    /// The requirement in plain words, e.g. "Sensitivity of at least 90%".
    pub requirement: String,
    /// The figure it is checked on, as the metrics name it (e.g. `sensitivity`).
    pub metric: String,
    /// `>=`, `<=`, or `>` (better than chance).
    pub op: String,
    /// The target.
    pub value: f64,
    /// The measured value; `None` when it could not be measured.
    pub estimate: Option<f64>,
    /// Its 95% interval.
    pub ci: Option<[f64; 2]>,
    /// The number of cases the figure rests on.
    pub n: u64,
    /// What those cases are, e.g. "images with pneumothorax".
    pub cases: String,
    /// How the interval was computed.
    pub interval: String,
    /// The verdict.
    pub verdict: Verdict,
    /// For a proportion left undetermined: about how many cases, at the observed value,
    /// the interval would need to clear the target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needed: Option<u64>,
    /// What else a reader must know (why it is undetermined, the threshold it is read at).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    /// The value (NaN when undefined).
    pub estimate: f64,
    /// Its 95% interval.
    pub ci: Option<(f64, f64)>,
    /// The cases it rests on.
    pub n: u64,
    /// What those cases are.
    pub cases: String,
    /// How the interval was computed (e.g. "exact (Clopper-Pearson)").
    pub interval: String,
    /// A proportion of `n` cases, for which more cases can be counted.
    pub proportion: bool,
}

/// What an evaluation measured, for [`requirements`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evidence {
    /// Figures by the names of the metrics (`auc`, `sensitivity`, `sensitivity/MEL`,
    /// [`PARTIAL_CORRELATION`], ...). Threshold-bound figures are at the locked threshold.
    pub measures: BTreeMap<String, Measure>,
    /// The attribute the confound analysis measured, if any.
    pub confound: Option<String>,
    /// The split, in words ("validation", "the sealed test split").
    pub split: String,
    /// Where the threshold-bound figures were read, in words (e.g. "at the threshold fixed
    /// on validation, 0.4310").
    pub threshold: Option<String>,
    /// The classes of the predictions, for multiclass objectives that name a class.
    pub classes: Vec<String>,
    /// The plain control the confound figures were compared with, if any.
    pub control: Option<Control>,
}

/// A plain control model (the same network and data without the debiasing) measured on
/// the same cases: the reference of "reliance reduced by X%".
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Control {
    /// How the outputs name it (a stage, a round).
    pub name: String,
    /// Its partial correlation with the attribute.
    pub partial_correlation: f64,
    /// The relative reduction `(control - model) / |control|` of the partial correlation,
    /// with its interval.
    pub reduction: Option<(f64, Option<(f64, f64)>)>,
    /// The share of false positives with the attribute: (model, control).
    pub fp_share: Option<(f64, f64)>,
    /// The share its prevalence among negatives predicts.
    pub expected_fp_share: Option<f64>,
}

impl Control {
    /// The comparison in words, for the confounder's verdict.
    pub fn words(&self) -> String {
        let mut s = format!(
            "the plain control {} has a partial correlation of {:.3}",
            self.name, self.partial_correlation
        );
        if let Some((r, ci)) = self.reduction {
            s.push_str(&format!(
                ", and {} of it was removed{}",
                percent_signed(r),
                match ci {
                    Some((lo, hi)) =>
                        format!(" (95% CI {} to {})", percent_signed(lo), percent_signed(hi)),
                    None => String::new(),
                }
            ));
        }
        if let Some((m, c)) = self.fp_share {
            s.push_str(&format!(
                "; false positives with the attribute: {} against the control's {}",
                percent_signed(m),
                percent_signed(c)
            ));
            if let Some(e) = self.expected_fp_share {
                s.push_str(&format!(
                    " ({} expected from its prevalence)",
                    percent_signed(e)
                ));
            }
        }
        s
    }
}

/// A fraction as a whole percentage, sign kept: -0.083 -> "-8%".
fn percent_signed(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// The decision threshold a binary request implies, to be chosen on validation: a
/// sensitivity constraint (the strictest, when several) first, as a missed finding is the
/// costlier error a request states as a floor; then a specificity constraint; then the
/// objective's operating point; else Youden's point.
pub fn operating_rule(spec: &TaskSpec) -> OperatingRule {
    let floor = |m: Metric| {
        spec.constraints
            .iter()
            .filter(|c| c.metric == m && c.op == Comparison::AtLeast)
            .map(|c| c.value)
            .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))))
    };
    if let Some(x) = floor(Metric::Sensitivity) {
        return OperatingRule::MinSensitivity(x);
    }
    if let Some(x) = floor(Metric::Specificity) {
        return OperatingRule::MinSpecificity(x);
    }
    if let Some(o) = &spec.objective {
        match (o.metric, o.at_specificity, o.at_sensitivity) {
            (Metric::SensitivityAtSpecificity, Some(x), _) => {
                return OperatingRule::MinSpecificity(x);
            }
            (Metric::SpecificityAtSensitivity, _, Some(y)) => {
                return OperatingRule::MinSensitivity(y);
            }
            _ => {}
        }
    }
    OperatingRule::Youden
}

/// Every requirement of `spec`, checked against `evidence`, in the order of the TaskSpec:
/// the objective (and its operating point), the constraints, the confounders. Detection
/// tasks name no threshold-bound figures; their objective, when one is named, has no
/// chance level and is left to the comparison with the initial model.
pub fn requirements(spec: &TaskSpec, evidence: &Evidence) -> Vec<Requirement> {
    let mut out = Vec::new();
    let at_threshold = evidence
        .threshold
        .as_deref()
        .map(|t| format!(", {t}"))
        .unwrap_or_default();
    if let Some(o) = &spec.objective {
        match o.metric {
            Metric::Auc | Metric::MacroAuc => {
                let (key, words) = match (&o.class, spec.task) {
                    (Some(c), TaskKind::MulticlassClassification) => (
                        format!("auc/{}", class_name(evidence, c)),
                        format!("Tells {} apart better than chance", words(c)),
                    ),
                    (_, TaskKind::MulticlassClassification) => (
                        "macro_auc".to_owned(),
                        "Tells the classes apart better than chance".to_owned(),
                    ),
                    _ => (
                        "auc".to_owned(),
                        format!("Tells {} better than chance", binary_words(spec)),
                    ),
                };
                let name = if key.starts_with("macro") {
                    "macro AUC"
                } else {
                    "AUC"
                };
                out.push(check(
                    evidence,
                    format!("{words} ({name} above 0.5)"),
                    &key,
                    ">",
                    0.5,
                    String::new(),
                ));
            }
            Metric::SensitivityAtSpecificity => {
                if let Some(x) = o.at_specificity {
                    out.push(check(
                        evidence,
                        format!("Specificity of at least {}", percent(x)),
                        "specificity",
                        ">=",
                        x,
                        at_threshold.clone(),
                    ));
                    out.push(check(
                        evidence,
                        format!(
                            "Sensitivity at {} specificity better than chance (above {})",
                            percent(x),
                            percent(1.0 - x)
                        ),
                        "sensitivity",
                        ">",
                        1.0 - x,
                        at_threshold.clone(),
                    ));
                }
            }
            Metric::SpecificityAtSensitivity => {
                if let Some(y) = o.at_sensitivity {
                    out.push(check(
                        evidence,
                        format!("Sensitivity of at least {}", percent(y)),
                        "sensitivity",
                        ">=",
                        y,
                        at_threshold.clone(),
                    ));
                    out.push(check(
                        evidence,
                        format!(
                            "Specificity at {} sensitivity better than chance (above {})",
                            percent(y),
                            percent(1.0 - y)
                        ),
                        "specificity",
                        ">",
                        1.0 - y,
                        at_threshold.clone(),
                    ));
                }
            }
            _ => {}
        }
    }
    for c in &spec.constraints {
        let class = match spec.task {
            TaskKind::MulticlassClassification => spec.priority_class.clone(),
            _ => None,
        };
        let key = match &class {
            Some(k) => format!("{}/{}", c.metric.as_str(), class_name(evidence, k)),
            None => c.metric.as_str().to_owned(),
        };
        let (op, side) = match c.op {
            Comparison::AtLeast => (">=", "at least"),
            Comparison::AtMost => ("<=", "at most"),
        };
        let of = class
            .map(|k| format!(" for {}", words(&k)))
            .unwrap_or_default();
        let bound = matches!(
            c.metric,
            Metric::Sensitivity
                | Metric::Specificity
                | Metric::Ppv
                | Metric::Npv
                | Metric::F1
                | Metric::Accuracy
        );
        out.push(check(
            evidence,
            format!(
                "{}{of} of {side} {}",
                metric_words(c.metric),
                percent(c.value)
            ),
            &key,
            op,
            c.value,
            if bound {
                at_threshold.clone()
            } else {
                String::new()
            },
        ));
    }
    for name in &spec.confounders {
        let words = format!("Does not rely on {}", name.replace('_', " "));
        match &evidence.confound {
            Some(attr) => {
                let mut r = check(
                    evidence,
                    format!(
                        "{words} (partial correlation with `{attr}`, label held fixed, at most {RELIANCE_LIMIT})"
                    ),
                    PARTIAL_CORRELATION,
                    "<=",
                    RELIANCE_LIMIT,
                    String::new(),
                );
                if let Some(control) = &evidence.control {
                    let words = control.words();
                    r.note = Some(match r.note.take() {
                        Some(n) => format!("{n}; {words}"),
                        None => words,
                    });
                }
                out.push(r);
            }
            None => out.push(Requirement {
                requirement: words,
                metric: PARTIAL_CORRELATION.to_owned(),
                op: "<=".into(),
                value: RELIANCE_LIMIT,
                estimate: None,
                ci: None,
                n: 0,
                cases: String::new(),
                interval: String::new(),
                verdict: Verdict::Undetermined,
                needed: None,
                note: Some(format!(
                    "not measured: no attribute for {name} was analysed (hint: name the attribute that labels it: `confound:` of the evaluate stage, or `engine test --confound ATTR`)"
                )),
            }),
        }
    }
    out
}

/// The predictions' name of a class the TaskSpec names: the same name, or the class whose
/// name the vocabulary reads as it (`MEL` for `melanoma`); the TaskSpec's name when none.
fn class_name(evidence: &Evidence, class: &str) -> String {
    if evidence.classes.iter().any(|c| c == class) {
        return class.to_owned();
    }
    evidence
        .classes
        .iter()
        .find(|c| super::label_of(c).as_deref() == Some(class))
        .cloned()
        .unwrap_or_else(|| class.to_owned())
}

/// "pneumothorax from no pneumothorax", or the target alone.
fn binary_words(spec: &TaskSpec) -> String {
    match (&spec.positive_class, &spec.negative_class, &spec.target) {
        (Some(p), Some(n), _) => format!("{} from {}", words(p), words(n)),
        (Some(p), None, _) => format!("{} from its absence", words(p)),
        (None, _, Some(t)) => format!("{} from its absence", words(t)),
        _ => "the classes apart".to_owned(),
    }
}

fn words(name: &str) -> String {
    name.replace('_', " ")
}

fn metric_words(m: Metric) -> &'static str {
    match m {
        Metric::Auc => "AUC",
        Metric::MacroAuc => "Macro AUC",
        Metric::SensitivityAtSpecificity => "Sensitivity at the set specificity",
        Metric::SpecificityAtSensitivity => "Specificity at the set sensitivity",
        Metric::Sensitivity => "Sensitivity",
        Metric::Specificity => "Specificity",
        Metric::Ppv => "Positive predictive value",
        Metric::Npv => "Negative predictive value",
        Metric::F1 => "F1 score",
        Metric::MacroF1 => "Macro F1 score",
        Metric::Accuracy => "Accuracy",
        Metric::BalancedAccuracy => "Balanced accuracy",
        Metric::Map50 => "mAP@50",
        Metric::Map50_95 => "mAP@50:95",
    }
}

/// One requirement `metric op value` against the evidence.
fn check(
    evidence: &Evidence,
    requirement: String,
    metric: &str,
    op: &str,
    value: f64,
    at: String,
) -> Requirement {
    let Some(m) = evidence
        .measures
        .get(metric)
        .filter(|m| m.estimate.is_finite())
    else {
        let why = if metric.contains('/')
            && !evidence.classes.is_empty()
            && !metric.starts_with("confound/")
        {
            format!(
                "not measured: the predictions have no class `{}` (their classes: {})",
                metric.split_once('/').map_or(metric, |(_, c)| c),
                evidence.classes.join(", ")
            )
        } else {
            format!("not measured: {} has no defined `{metric}`", evidence.split)
        };
        return Requirement {
            requirement,
            metric: metric.to_owned(),
            op: op.to_owned(),
            value,
            estimate: None,
            ci: None,
            n: evidence.measures.get(metric).map_or(0, |m| m.n),
            cases: evidence
                .measures
                .get(metric)
                .map(|m| m.cases.clone())
                .unwrap_or_default(),
            interval: String::new(),
            verdict: Verdict::Undetermined,
            needed: None,
            note: Some(why),
        };
    };
    let verdict = match m.ci {
        None => Verdict::Undetermined,
        Some((lo, hi)) => match op {
            ">=" if lo >= value => Verdict::Met,
            ">=" if hi < value => Verdict::NotMet,
            ">" if lo > value => Verdict::Met,
            ">" if hi <= value => Verdict::NotMet,
            "<=" if hi <= value => Verdict::Met,
            "<=" if lo > value => Verdict::NotMet,
            _ => Verdict::Undetermined,
        },
    };
    let side = if op == "<=" {
        Side::AtMost
    } else {
        Side::AtLeast
    };
    let needed = (verdict == Verdict::Undetermined && m.proportion && m.ci.is_some())
        .then(|| trials_needed(m.estimate, value, side, 0.95))
        .flatten();
    let mut notes = Vec::new();
    if m.proportion
        && let Some(least) = cases_to_show(value, side)
        && m.n < least
    {
        notes.push(format!(
            "too few cases: even if all {} {} came out right, they could not show {}; that takes at least {least}",
            m.n,
            m.cases,
            percent(value)
        ));
    }
    if !at.is_empty() {
        notes.push(at.trim_start_matches(", ").to_owned());
    }
    if m.ci.is_none() {
        notes.push("no interval could be computed".to_owned());
    } else if verdict == Verdict::Undetermined && m.proportion {
        match needed {
            Some(k) if k > m.n => notes.push(format!(
                "about {k} {} would be needed at the observed {:.3} for the interval to clear {}",
                m.cases,
                m.estimate,
                percent(value)
            )),
            Some(_) => {}
            None => notes.push(format!(
                "the observed {:.3} does not lie beyond {}, so more cases would not settle it",
                m.estimate,
                percent(value)
            )),
        }
    }
    Requirement {
        requirement,
        metric: metric.to_owned(),
        op: op.to_owned(),
        value,
        estimate: Some(m.estimate),
        ci: m.ci.map(|(lo, hi)| [lo, hi]),
        n: m.n,
        cases: m.cases.clone(),
        interval: m.interval.clone(),
        verdict,
        needed,
        note: (!notes.is_empty()).then(|| notes.join("; ")),
    }
}

/// The fewest cases on which a proportion could be shown to be on the claimed side of
/// `target` at all: with every case right (all found for `>=`, none for `<=`), the exact
/// interval clears the target from this many cases on.
pub fn cases_to_show(target: f64, side: Side) -> Option<u64> {
    let perfect = match side {
        Side::AtLeast => 1.0,
        Side::AtMost => 0.0,
    };
    trials_needed(perfect, target, side, 0.95)
}

/// The request's claims about proportions that a split is too small to support even with a
/// perfect model: one sentence each, naming the number the split has and the number needed.
/// `positives` and `negatives` are the split's images with and without the finding.
pub fn shortfalls(spec: &TaskSpec, split: &str, positives: u64, negatives: u64) -> Vec<String> {
    if spec.task != TaskKind::BinaryClassification {
        return Vec::new();
    }
    let finding = spec
        .positive_class
        .as_deref()
        .or(spec.target.as_deref())
        .map_or_else(|| "the finding".to_owned(), words);
    let mut claims: Vec<(Metric, f64)> = spec
        .constraints
        .iter()
        .filter(|c| c.op == Comparison::AtLeast)
        .map(|c| (c.metric, c.value))
        .collect();
    if let Some(o) = &spec.objective {
        match (o.metric, o.at_specificity, o.at_sensitivity) {
            (Metric::SensitivityAtSpecificity, Some(x), _) => claims.push((Metric::Specificity, x)),
            (Metric::SpecificityAtSensitivity, _, Some(y)) => claims.push((Metric::Sensitivity, y)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (metric, value) in claims {
        let (have, of) = match metric {
            Metric::Sensitivity => (positives, format!("images with {finding}")),
            Metric::Specificity => (negatives, format!("images without {finding}")),
            _ => continue,
        };
        if let Some(least) = cases_to_show(value, Side::AtLeast)
            && have < least
        {
            out.push(format!(
                "the {split} split has {have} {of}: even a model that gets every one right could not show a {} of at least {} on them (that takes at least {least}); its verdict there will be undetermined",
                metric_words(metric).to_lowercase(),
                percent(value)
            ));
        }
    }
    out
}

/// The requirement in one plain sentence: "Sensitivity of at least 90%: NOT MET: 0.806 (95%
/// CI 0.685 to 0.896) on 62 images with pneumothorax; at the threshold fixed on validation."
/// Three decimals, so that an interval ending just below a target never reads as reaching it.
pub fn sentence(r: &Requirement) -> String {
    let mut s = format!("{}: {}", r.requirement, r.verdict.shout());
    match (r.estimate, r.ci) {
        (Some(e), Some([lo, hi])) => {
            s.push_str(&format!(": {e:.3} (95% CI {lo:.3} to {hi:.3})"));
        }
        (Some(e), None) => s.push_str(&format!(": {e:.3} (no interval)")),
        _ => {}
    }
    if r.estimate.is_some() && r.n > 0 && !r.cases.is_empty() {
        s.push_str(&format!(" on {} {}", r.n, r.cases));
    }
    if let Some(note) = &r.note {
        s.push_str(&format!("; {note}"));
    }
    s.push('.');
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::exact::Proportion;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> TaskSpec {
        let mut base = json!({"task": "binary_classification", "modality": "chest_xray",
            "target": "pneumothorax", "positive_class": "pneumothorax"});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            b.extend(o.clone());
        }
        serde_json::from_value(base).unwrap()
    }

    fn proportion(k: u64, n: u64, cases: &str) -> Measure {
        let p = Proportion::new(k, n, 0.95);
        Measure {
            estimate: p.value,
            ci: p.ci,
            n,
            cases: cases.into(),
            interval: "exact (Clopper-Pearson)".into(),
            proportion: true,
        }
    }

    fn evidence(measures: Vec<(&str, Measure)>) -> Evidence {
        Evidence {
            measures: measures
                .into_iter()
                .map(|(k, m)| (k.to_owned(), m))
                .collect(),
            split: "the test split".into(),
            threshold: Some("at the threshold fixed on validation".into()),
            ..Evidence::default()
        }
    }

    #[test]
    fn each_verdict_on_a_sensitivity_floor() {
        let s = spec(json!({"constraints": [{"metric": "sensitivity", "op": ">=", "value": 0.9}]}));
        let verdict = |k, n| {
            requirements(
                &s,
                &evidence(vec![(
                    "sensitivity",
                    proportion(k, n, "images with pneumothorax"),
                )]),
            )
            .pop()
            .unwrap()
        };
        // 390 of 400: 0.975, CI about [0.955, 0.988]: met.
        let met = verdict(390, 400);
        assert_eq!(met.verdict, Verdict::Met, "{met:?}");
        // 50 of 62 (0.81): the interval lies below 0.9.
        let not = verdict(50, 62);
        assert_eq!(not.verdict, Verdict::NotMet, "{not:?}");
        assert!(sentence(&not).starts_with(
            "Sensitivity of at least 90%: NOT MET: 0.806 (95% CI 0.686 to 0.896) on 62 images with pneumothorax; at the threshold fixed on validation."
        ), "{}", sentence(&not));
        // 9 of 9: perfect, but nine cases cannot show 90%; about 36 would.
        let und = verdict(9, 9);
        assert_eq!(und.verdict, Verdict::Undetermined);
        assert_eq!(und.needed, Some(36));
        assert!(
            sentence(&und).contains("about 36 images with pneumothorax would be needed"),
            "{}",
            sentence(&und)
        );
        assert!(sentence(&und).contains("too few cases: even if all 9 images with pneumothorax came out right, they could not show 90%; that takes at least 36"), "{}", sentence(&und));
        // 11 of 12 (0.917): straddles, and needs more cases.
        let und = verdict(11, 12);
        assert_eq!(und.verdict, Verdict::Undetermined);
        assert!(und.needed.unwrap() > 12);
        // 8 of 10: straddles too, but the estimate is below the target.
        let und = verdict(8, 10);
        assert_eq!((und.verdict, und.needed), (Verdict::Undetermined, None));
        assert!(sentence(&und).contains("more cases would not settle it"));
        assert_eq!(operating_rule(&s), OperatingRule::MinSensitivity(0.9));
    }

    #[test]
    fn splits_too_small_for_a_claim_are_named() {
        let s = spec(json!({"constraints": [{"metric": "sensitivity", "op": ">=", "value": 0.9}]}));
        assert_eq!(cases_to_show(0.9, Side::AtLeast), Some(36));
        let short = shortfalls(&s, "validation", 21, 75);
        assert_eq!(short.len(), 1);
        assert!(
            short[0].starts_with("the validation split has 21 images with pneumothorax: even a model that gets every one right could not show a sensitivity of at least 90%"),
            "{}",
            short[0]
        );
        assert!(shortfalls(&s, "validation", 40, 75).is_empty());
        let o = spec(
            json!({"objective": {"metric": "sensitivity_at_specificity", "at_specificity": 0.8}}),
        );
        assert!(shortfalls(&o, "test", 5, 10)[0].contains("images without pneumothorax"));
    }

    #[test]
    fn an_objective_without_a_target_is_checked_against_chance() {
        let s = spec(json!({"objective": {"metric": "auc"}}));
        let auc = |lo: f64, hi: f64| Measure {
            estimate: (lo + hi) / 2.0,
            ci: Some((lo, hi)),
            n: 100,
            cases: "images".into(),
            interval: "bootstrap".into(),
            proportion: false,
        };
        let r = |lo, hi| requirements(&s, &evidence(vec![("auc", auc(lo, hi))]))[0].clone();
        assert_eq!(r(0.6, 0.8).verdict, Verdict::Met);
        assert_eq!(r(0.3, 0.5).verdict, Verdict::NotMet);
        let u = r(0.45, 0.7);
        assert_eq!((u.verdict, u.needed), (Verdict::Undetermined, None));
        assert_eq!(
            u.requirement,
            "Tells pneumothorax from its absence better than chance (AUC above 0.5)"
        );
        assert_eq!(operating_rule(&s), OperatingRule::Youden);
    }

    #[test]
    fn an_operating_point_objective_checks_the_locked_point() {
        let s = spec(
            json!({"objective": {"metric": "sensitivity_at_specificity", "at_specificity": 0.8}}),
        );
        assert_eq!(operating_rule(&s), OperatingRule::MinSpecificity(0.8));
        let r = requirements(
            &s,
            &evidence(vec![
                (
                    "specificity",
                    proportion(300, 400, "images without pneumothorax"),
                ),
                (
                    "sensitivity",
                    proportion(30, 40, "images with pneumothorax"),
                ),
            ]),
        );
        assert_eq!(r[0].requirement, "Specificity of at least 80%");
        // 0.75 with CI about [0.70, 0.79]: the locked threshold lost its specificity.
        assert_eq!(r[0].verdict, Verdict::NotMet);
        assert_eq!(r[1].op, ">");
        assert_eq!(r[1].verdict, Verdict::Met);
        assert!(
            r[1].note
                .as_deref()
                .unwrap()
                .contains("fixed on validation")
        );
    }

    #[test]
    fn confounders_are_checked_or_said_to_be_unmeasured() {
        let s = spec(json!({"confounders": ["chest_drain"]}));
        let r = requirements(&s, &evidence(vec![]));
        assert_eq!(r[0].verdict, Verdict::Undetermined);
        assert!(r[0].note.as_deref().unwrap().starts_with("not measured"));
        let mut e = evidence(vec![(
            PARTIAL_CORRELATION,
            Measure {
                estimate: 0.3,
                ci: Some((0.2, 0.4)),
                n: 90,
                cases: "images".into(),
                interval: "bootstrap".into(),
                proportion: false,
            },
        )]);
        e.confound = Some("drain".into());
        let r = requirements(&s, &e);
        assert_eq!(r[0].verdict, Verdict::NotMet);
        assert!(r[0].requirement.starts_with("Does not rely on chest drain"));
        // Against a plain control, the verdict says how much of its reliance was removed.
        e.control = Some(Control {
            name: "`control`".into(),
            partial_correlation: 0.6,
            reduction: Some((0.5, Some((0.3, 0.7)))),
            fp_share: Some((0.3, 0.6)),
            expected_fp_share: Some(0.2),
        });
        let r = requirements(&s, &e);
        assert!(
            sentence(&r[0]).ends_with("NOT MET: 0.300 (95% CI 0.200 to 0.400) on 90 images; the plain control `control` has a partial correlation of 0.600, and 50% of it was removed (95% CI 30% to 70%); false positives with the attribute: 30% against the control's 60% (20% expected from its prevalence)."),
            "{}",
            sentence(&r[0])
        );
    }

    #[test]
    fn a_multiclass_class_the_predictions_lack_is_named() {
        let s: TaskSpec = serde_json::from_value(json!({"task": "multiclass_classification",
            "modality": "dermoscopy", "objective": {"metric": "auc", "class": "melanoma"}}))
        .unwrap();
        let mut e = evidence(vec![]);
        e.classes = vec!["BCC".into(), "NV".into()];
        let r = requirements(&s, &e);
        assert_eq!(r[0].verdict, Verdict::Undetermined);
        assert!(
            r[0].note
                .as_deref()
                .unwrap()
                .contains("no class `melanoma` (their classes: BCC, NV)")
        );
        // A dataset's own name for the class is found through the vocabulary.
        e.classes = vec!["MEL".into(), "NV".into()];
        e.measures.insert(
            "auc/MEL".into(),
            Measure {
                estimate: 0.9,
                ci: Some((0.85, 0.95)),
                n: 50,
                cases: "images".into(),
                interval: "bootstrap".into(),
                proportion: false,
            },
        );
        assert_eq!(requirements(&s, &e)[0].verdict, Verdict::Met);
    }
}
