//! Scoring a round and the acceptance rule.
//!
//! A round is scored from the `metrics.json` its scoring `evaluate` stage wrote on the
//! validation split: the TaskSpec's objective (without a TaskSpec: AUC, macro AUC for
//! several classes, mAP@50 for a detector), each of its constraints with the verdict its
//! interval gives, and, when the evaluation analyses a confounder, the partial correlation
//! between the model's output and the confounder with the label held fixed.
//!
//! **The acceptance rule.** A round is kept only on evidence that it is better than the best
//! round so far, from paired tests of its validation predictions against the best round's
//! on the same images ([`Evidence`]): DeLong's test for an AUC, the paired bootstrap (over
//! patients where they repeat, else images) for every other figure. Every p-value is
//! one-sided, at the level `policy.alpha` (0.05 by default).
//! 1. For a task with confounders, a round whose reliance on the confounder (the absolute
//!    partial correlation) is significantly higher than round 0's, the plain control's or
//!    the best round's is not kept, however much its objective gains; nor one whose
//!    estimated reliance rises more than `policy.confound_tolerance` (0.05) above the
//!    best's.
//! 2. A constraint is broken when its validation interval lies wholly on the wrong side of
//!    its bound. A round that breaks none beats one that breaks some; a round that breaks
//!    some never beats one that breaks none; when both break some, the round is kept when
//!    it comes significantly closer to a broken bound and significantly farther from none.
//! 3. Otherwise the objective decides: it must rise by at least `policy.min_improvement`
//!    (0.005 by default) and the rise must be significant.
//! 4. While the best round's reliance on a confounder may still exceed the limit the
//!    verdicts use (its interval reaches past 0.1), a round that leans significantly less on
//!    it is kept when its objective is not significantly lower: that is what the request
//!    asked for.
//!
//! A failed, timed-out or refused round is never kept, nor one whose objective or reliance
//! could not be compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::Policy;
use crate::task::requirements::{RELIANCE_LIMIT, Requirement, Verdict};
use crate::task::{Comparison, TaskSpec};

/// A constraint checked on a round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConstraintCheck {
    /// The metric's key in `metrics.json`.
    pub metric: String,
    /// `>=` or `<=`.
    pub op: String,
    /// The bound.
    pub bound: f64,
    /// The round's value.
    pub value: f64,
    /// Whether the bound holds for the estimate.
    pub met: bool,
    /// The verdict of the bound on the estimate's interval (`met`, `not_met` or
    /// `undetermined`), from the evaluation's requirements; absent in older records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

impl ConstraintCheck {
    /// Whether the evidence says the bound does not hold: its interval lies wholly on the
    /// wrong side (without a verdict, as in older records: the estimate misses it).
    pub fn broken(&self) -> bool {
        match self.verdict {
            Some(v) => v == Verdict::NotMet,
            None => !self.met,
        }
    }
}

/// What a round scored on validation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The objective's key in `metrics.json` (`auc`, `sensitivity/MEL`, ...).
    pub metric: String,
    /// Its value.
    pub value: f64,
    /// Its 95% bootstrap interval, when the evaluation computed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<(f64, f64)>,
    /// The TaskSpec's constraints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<ConstraintCheck>,
    /// The confounder analysed, and the partial correlation of the output with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound: Option<(String, f64)>,
    /// The 95% interval of that partial correlation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confound_ci: Option<(f64, f64)>,
    /// Every metric of the evaluation, by key.
    pub metrics: BTreeMap<String, f64>,
}

impl Score {
    /// Whether no constraint is broken (see [`ConstraintCheck::broken`]).
    pub fn feasible(&self) -> bool {
        !self.constraints.iter().any(ConstraintCheck::broken)
    }

    /// Whether the reliance on the confounder may still exceed [`RELIANCE_LIMIT`]: its
    /// interval (or, without one, its estimate) reaches past it.
    pub fn may_rely(&self) -> bool {
        let Some((_, p)) = &self.confound else {
            return false;
        };
        let reach = self
            .confound_ci
            .map_or(p.abs(), |(lo, hi)| lo.abs().max(hi.abs()));
        reach > RELIANCE_LIMIT
    }

    /// How far the constraints are from holding, summed.
    pub fn shortfall(&self) -> f64 {
        self.constraints
            .iter()
            .map(|c| match c.op.as_str() {
                ">=" => (c.bound - c.value).max(0.0),
                _ => (c.value - c.bound).max(0.0),
            })
            .sum()
    }
}

/// The key of a metric for `class` in multiclass metrics: `metric/CLASS`, where the
/// dataset's class name may be a code (`MEL`) the TaskSpec calls `melanoma`.
fn class_key(metrics: &BTreeMap<String, f64>, metric: &str, class: &str) -> Option<String> {
    metrics
        .keys()
        .filter_map(|k| k.strip_prefix(metric)?.strip_prefix('/').map(|c| (k, c)))
        .find(|(_, c)| {
            c.eq_ignore_ascii_case(class) || crate::task::label_of(c).is_some_and(|l| l == class)
        })
        .map(|(k, _)| k.clone())
}

fn metric_key(
    metrics: &BTreeMap<String, f64>,
    metric: &str,
    class: Option<&str>,
) -> Result<String, String> {
    if let Some(c) = class
        && let Some(k) = class_key(metrics, metric, c)
    {
        return Ok(k);
    }
    if metrics.contains_key(metric) {
        return Ok(metric.to_owned());
    }
    // A binary task's `macro_auc` is its AUC, and the reverse.
    let alias = match metric {
        "macro_auc" => "auc",
        "auc" => "macro_auc",
        "macro_f1" => "f1",
        _ => "",
    };
    if metrics.contains_key(alias) {
        return Ok(alias.to_owned());
    }
    Err(format!(
        "the evaluation has no `{metric}`{}; it has {}",
        class.map(|c| format!(" for `{c}`")).unwrap_or_default(),
        metrics
            .keys()
            .take(12)
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// Scores an evaluation's `metrics.json` under the TaskSpec.
pub fn score(task: Option<&TaskSpec>, metrics_json: &Value) -> Result<Score, String> {
    let table = metrics_json
        .get("metrics")
        .and_then(Value::as_object)
        .ok_or("metrics.json has no `metrics` table")?;
    let metrics: BTreeMap<String, f64> = table
        .iter()
        // An undefined value (null) stays a metric, as NaN.
        .filter_map(|(k, v)| Some((k.clone(), v.get("value")?.as_f64().unwrap_or(f64::NAN))))
        .collect();
    let (metric, class) = match task.and_then(|t| t.objective.as_ref()) {
        Some(o) => (o.metric.as_str(), o.class.as_deref()),
        None => (
            if metrics.contains_key("auc") {
                "auc"
            } else if metrics.contains_key("map50") {
                "map50"
            } else {
                "macro_auc"
            },
            None,
        ),
    };
    let key = metric_key(&metrics, metric, class)?;
    let value = metrics[&key];
    let ci = table[&key]["ci"]
        .as_array()
        .and_then(|a| Some((a.first()?.as_f64()?, a.get(1)?.as_f64()?)));
    let requirements: Vec<Requirement> = metrics_json
        .get("requirements")
        .and_then(|r| serde_json::from_value(r.clone()).ok())
        .unwrap_or_default();
    let mut constraints = Vec::new();
    for c in task.map(|t| t.constraints.as_slice()).unwrap_or_default() {
        let k = metric_key(&metrics, c.metric.as_str(), None)?;
        let v = metrics[&k];
        let (op, met) = match c.op {
            Comparison::AtLeast => (">=", v >= c.value),
            Comparison::AtMost => ("<=", v <= c.value),
        };
        let verdict = requirements
            .iter()
            .find(|r| r.metric == k && r.op == op && r.value == c.value)
            .map(|r| r.verdict);
        constraints.push(ConstraintCheck {
            metric: k,
            op: op.into(),
            bound: c.value,
            value: v,
            met,
            verdict,
        });
    }
    let confound = metrics_json["confound"]["attribute"]
        .as_str()
        .zip(metrics.get("confound/partial_correlation").copied())
        .map(|(a, p)| (a.to_owned(), p));
    let confound_ci = confound.as_ref().and_then(|_| {
        let ci = table
            .get("confound/partial_correlation")?
            .get("ci")?
            .as_array()?;
        Some((ci.first()?.as_f64()?, ci.get(1)?.as_f64()?))
    });
    Ok(Score {
        metric: key,
        value,
        ci,
        constraints,
        confound,
        confound_ci,
        metrics,
    })
}

/// A paired test of a round against another model on the same validation cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Paired {
    /// What is compared: a metric's key, or `reliance on ATTRIBUTE` (the absolute partial
    /// correlation of the output with it, label held fixed).
    pub metric: String,
    /// The model compared against, in words: `round 3`, `the plain control `control``.
    pub against: String,
    /// The test, in words: `DeLong's test`, `paired bootstrap over images (2000 resamples)`.
    pub method: String,
    /// The round's value.
    pub value: f64,
    /// The other model's value.
    pub other: f64,
    /// `value - other`.
    pub diff: f64,
    /// The 95% interval of the difference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<(f64, f64)>,
    /// One-sided p-value of "the round's value is not higher".
    pub p_higher: f64,
    /// One-sided p-value of "the round's value is not lower".
    pub p_lower: f64,
}

impl Paired {
    /// The comparison in a line, with the one-sided p-value in the direction the
    /// difference lies: `auc 0.861 against 0.842 of round 2: +0.019 (95% CI -0.004 to
    /// +0.043), one-sided p of a rise 0.061 (DeLong's test)`.
    pub fn describe(&self) -> String {
        let ci = self
            .ci
            .map(|(lo, hi)| format!(" (95% CI {lo:+.4} to {hi:+.4})"))
            .unwrap_or_default();
        let (direction, p) = if self.diff < 0.0 {
            ("fall", self.p_lower)
        } else {
            ("rise", self.p_higher)
        };
        format!(
            "{} {:.4} against {:.4} of {}: {:+.4}{ci}, one-sided p of a {direction} {p:.4} ({})",
            self.metric, self.value, self.other, self.against, self.diff, self.method
        )
    }
}

/// The paired comparisons a round is judged on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The objective against the best round.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Paired>,
    /// Each constraint's figure against the best round.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Paired>,
    /// The reliance on the confounder against the best round, round 0 and the plain
    /// control.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reliance: Vec<Paired>,
    /// The comparisons that could not be made, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

/// Whether `candidate` is better than `best` under the acceptance rule (see the module
/// documentation), judged on `evidence`, and why, in a sentence.
pub fn judge(
    candidate: &Score,
    best: &Score,
    evidence: &Evidence,
    policy: &Policy,
    confounded: bool,
) -> (bool, String) {
    let m = &candidate.metric;
    let alpha = policy.alpha;
    if !candidate.value.is_finite() {
        return (false, format!("{m} is undefined on validation"));
    }
    if confounded {
        if let Some(r) = evidence.reliance.iter().find(|r| r.p_higher < alpha) {
            return (
                false,
                format!(
                    "leans significantly more on the confounder: {}",
                    r.describe()
                ),
            );
        }
        if let (Some((a, c)), Some((_, b))) = (&candidate.confound, &best.confound)
            && c.abs() > b.abs() + policy.confound_tolerance
        {
            return (
                false,
                format!(
                    "leans more on `{a}`: partial correlation {c:.3} against the best's {b:.3}, a rise beyond the tolerance of {}",
                    policy.confound_tolerance
                ),
            );
        }
        if candidate.confound.is_some() && evidence.reliance.is_empty() {
            return (
                false,
                format!(
                    "its reliance on the confounder could not be compared with the best round's: {}",
                    evidence.missing.join("; ")
                ),
            );
        }
    }
    let broken = |s: &Score| -> Vec<String> {
        s.constraints
            .iter()
            .filter(|c| c.broken())
            .map(|c| format!("{} {:.3} (needs {} {})", c.metric, c.value, c.op, c.bound))
            .collect()
    };
    match (candidate.feasible(), best.feasible()) {
        (true, false) => {
            return (
                true,
                format!(
                    "no constraint's interval lies on the wrong side of its bound, as the best round's did: {}",
                    broken(best).join(", ")
                ),
            );
        }
        (false, true) => {
            return (
                false,
                format!(
                    "breaks a constraint (its interval lies on the wrong side): {}",
                    broken(candidate).join(", ")
                ),
            );
        }
        (false, false) => return closer(candidate, evidence, alpha),
        (true, true) => {}
    }
    let Some(o) = &evidence.objective else {
        return (
            false,
            format!(
                "{m} could not be compared with the best round's{}",
                if evidence.missing.is_empty() {
                    String::new()
                } else {
                    format!(": {}", evidence.missing.join("; "))
                }
            ),
        );
    };
    if o.diff >= policy.min_improvement && o.p_higher < alpha {
        return (true, o.describe());
    }
    if confounded
        && best.may_rely()
        && o.p_lower >= alpha
        && let Some(r) = evidence
            .reliance
            .iter()
            .find(|r| r.against == o.against && r.p_lower < alpha)
    {
        return (
            true,
            format!(
                "leans significantly less on the confounder, as the request asks: {}; {m} is not significantly lower ({})",
                r.describe(),
                o.describe()
            ),
        );
    }
    let why = if o.diff <= 0.0 {
        "no gain"
    } else if o.p_higher >= alpha {
        "the gain is within the noise of the validation split"
    } else {
        "the gain is below the smallest that counts"
    };
    (
        false,
        format!(
            "{why}: {} (needs at least +{} and p below {alpha})",
            o.describe(),
            policy.min_improvement
        ),
    )
}

/// Rule 2 when both rounds break constraints: kept when the candidate comes significantly
/// closer to a bound it breaks, and significantly farther from none.
fn closer(candidate: &Score, evidence: &Evidence, alpha: f64) -> (bool, String) {
    let mut closer = Vec::new();
    for c in candidate.constraints.iter().filter(|c| c.broken()) {
        let Some(t) = evidence.constraints.iter().find(|t| t.metric == c.metric) else {
            return (
                false,
                format!(
                    "breaks {} {} {} and it could not be compared with the best round's",
                    c.metric, c.op, c.bound
                ),
            );
        };
        let up = c.op == ">=";
        let (toward, away) = if up {
            (t.p_higher, t.p_lower)
        } else {
            (t.p_lower, t.p_higher)
        };
        if away < alpha {
            return (
                false,
                format!(
                    "significantly farther from its bound {} {}: {}",
                    c.op,
                    c.bound,
                    t.describe()
                ),
            );
        }
        if toward < alpha {
            closer.push(t.describe());
        }
    }
    if closer.is_empty() {
        (
            false,
            "breaks a constraint and comes no significantly closer to it than the best round"
                .into(),
        )
    } else {
        (
            true,
            format!(
                "significantly closer to the constraints it breaks: {}",
                closer.join("; ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn metrics(auc: f64, sens: f64, partial: f64) -> Value {
        json!({
            "n": 100,
            "metrics": {
                "auc": {"value": auc, "ci": [auc - 0.05, auc + 0.04]},
                "sensitivity": {"value": sens, "ci": null},
                "confound/partial_correlation": {"value": partial, "ci": [partial - 0.1, partial + 0.1]}
            },
            "confound": {"attribute": "drain", "threshold": 0.5, "subgroups": []}
        })
    }

    fn task(extra: Value) -> TaskSpec {
        let mut t = json!({"task": "binary_classification", "modality": "chest_xray", "objective": {"metric": "auc"}});
        t.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(t).unwrap()
    }

    #[test]
    fn the_objective_constraints_and_confound_are_read() {
        let t = task(json!({"constraints": [{"metric": "sensitivity", "op": ">=", "value": 0.9}]}));
        let s = score(Some(&t), &metrics(0.9, 0.85, 0.2)).unwrap();
        assert_eq!((s.metric.as_str(), s.value), ("auc", 0.9));
        assert_eq!(s.ci, Some((0.9 - 0.05, 0.9 + 0.04)));
        assert!(!s.feasible());
        assert!((s.shortfall() - 0.05).abs() < 1e-12);
        assert_eq!(s.confound, Some(("drain".into(), 0.2)));
        assert_eq!(s.confound_ci, Some((0.2 - 0.1, 0.2 + 0.1)));
        assert!(s.may_rely());
        assert_eq!(
            s.constraints[0].verdict, None,
            "no requirements: no verdict"
        );
        let e = score(
            Some(&task(json!({"objective": {"metric": "ppv"}}))),
            &metrics(0.9, 0.9, 0.0),
        )
        .unwrap_err();
        assert!(e.contains("no `ppv`"), "{e}");
    }

    #[test]
    fn multiclass_objectives_find_their_class_under_its_code() {
        let m = json!({"metrics": {"macro_auc": {"value": 0.8}, "sensitivity/MEL": {"value": 0.7}, "sensitivity/NV": {"value": 0.9}}});
        let t = task(
            json!({"task": "multiclass_classification", "modality": "dermoscopy", "objective": {"metric": "sensitivity", "class": "melanoma"}}),
        );
        let s = score(Some(&t), &m).unwrap();
        assert_eq!((s.metric.as_str(), s.value), ("sensitivity/MEL", 0.7));
        assert_eq!(score(None, &m).unwrap().metric, "macro_auc");
    }

    fn paired(metric: &str, against: &str, value: f64, other: f64, p_higher: f64) -> Paired {
        Paired {
            metric: metric.into(),
            against: against.into(),
            method: "test".into(),
            value,
            other,
            diff: value - other,
            ci: None,
            p_higher,
            p_lower: 1.0 - p_higher,
        }
    }

    #[test]
    fn the_objective_must_rise_significantly_and_enough() {
        let p = Policy::default();
        let t = task(json!({}));
        let s = |auc| score(Some(&t), &metrics(auc, 0.9, 0.0)).unwrap();
        let on = |p_higher| Evidence {
            objective: Some(paired("auc", "round 0", 0.93, 0.90, p_higher)),
            ..Evidence::default()
        };
        let (kept, why) = judge(&s(0.93), &s(0.90), &on(0.01), &p, false);
        assert!(
            kept && why.contains("one-sided p of a rise 0.0100"),
            "{why}"
        );
        let (kept, why) = judge(&s(0.93), &s(0.90), &on(0.2), &p, false);
        assert!(!kept && why.contains("within the noise"), "{why}");
        let small = Evidence {
            objective: Some(paired("auc", "round 0", 0.903, 0.90, 0.001)),
            ..Evidence::default()
        };
        let (kept, why) = judge(&s(0.903), &s(0.90), &small, &p, false);
        assert!(!kept && why.contains("below the smallest"), "{why}");
        let strict = Policy {
            alpha: 0.005,
            ..Policy::default()
        };
        assert!(!judge(&s(0.93), &s(0.90), &on(0.01), &strict, false).0);
        assert!(!judge(&s(f64::NAN), &s(0.90), &on(0.01), &p, false).0);
        let (kept, why) = judge(
            &s(0.93),
            &s(0.90),
            &Evidence {
                missing: vec!["the best round's predictions are gone".into()],
                ..Evidence::default()
            },
            &p,
            false,
        );
        assert!(!kept && why.contains("predictions are gone"), "{why}");
    }

    #[test]
    fn reliance_is_judged_against_every_reference() {
        let p = Policy::default();
        let t = task(json!({}));
        let s = |auc, partial| score(Some(&t), &metrics(auc, 0.9, partial)).unwrap();
        let gain = paired("auc", "round 2", 0.95, 0.90, 0.001);
        // Significantly above round 0 though not above the best: refused.
        let creeping = Evidence {
            objective: Some(gain.clone()),
            reliance: vec![
                paired("reliance on drain", "round 2", 0.34, 0.33, 0.3),
                paired("reliance on drain", "round 0", 0.34, 0.29, 0.01),
            ],
            ..Evidence::default()
        };
        let (kept, why) = judge(&s(0.95, 0.34), &s(0.90, 0.33), &creeping, &p, true);
        assert!(!kept && why.contains("of round 0"), "{why}");
        assert!(
            judge(&s(0.95, 0.34), &s(0.90, 0.33), &creeping, &p, false).0,
            "without confounders the reliance is not judged"
        );
        let unknown = Evidence {
            objective: creeping.objective.clone(),
            missing: vec!["round 0's predictions are gone".into()],
            ..Evidence::default()
        };
        let (kept, why) = judge(&s(0.95, 0.33), &s(0.90, 0.33), &unknown, &p, true);
        assert!(!kept && why.contains("predictions are gone"), "{why}");
        // A large rise in the estimate is refused even when not significant.
        let (kept, why) = judge(
            &s(0.95, 0.40),
            &s(0.90, 0.30),
            &Evidence {
                objective: Some(gain),
                ..Evidence::default()
            },
            &p,
            true,
        );
        assert!(!kept && why.contains("tolerance"), "{why}");
        // Leaning significantly less, the objective not significantly lower: kept while
        // the best may still rely on the confounder, not once it cannot.
        let less = Evidence {
            objective: Some(paired("auc", "round 2", 0.89, 0.90, 0.7)),
            reliance: vec![paired("reliance on drain", "round 2", 0.1, 0.3, 0.99)],
            ..Evidence::default()
        };
        let (kept, why) = judge(&s(0.89, 0.1), &s(0.90, 0.3), &less, &p, true);
        assert!(kept && why.contains("less on the confounder"), "{why}");
        let mut settled = s(0.90, 0.05);
        settled.confound_ci = Some((0.0, 0.08));
        assert!(!judge(&s(0.89, 0.01), &settled, &less, &p, true).0);
        let lower = Evidence {
            objective: Some(paired("auc", "round 2", 0.85, 0.90, 0.99)),
            ..less
        };
        assert!(!judge(&s(0.85, 0.1), &s(0.90, 0.3), &lower, &p, true).0);
    }

    #[test]
    fn constraints_are_judged_on_their_intervals() {
        let p = Policy::default();
        let tc =
            task(json!({"constraints": [{"metric": "sensitivity", "op": ">=", "value": 0.9}]}));
        let c = |auc, sens, verdict: &str| {
            let mut m = metrics(auc, sens, 0.0);
            m["requirements"] = json!([{"requirement": "Sensitivity of at least 90%",
                "metric": "sensitivity", "op": ">=", "value": 0.9, "estimate": sens,
                "ci": null, "n": 50, "cases": "images", "interval": "exact",
                "verdict": verdict}]);
            score(Some(&tc), &m).unwrap()
        };
        let none = Evidence::default();
        // The estimate misses the bound but its interval does not lie below it.
        assert!(c(0.9, 0.85, "undetermined").feasible());
        assert!(!c(0.9, 0.85, "not_met").feasible());
        assert!(
            judge(
                &c(0.80, 0.92, "met"),
                &c(0.95, 0.7, "not_met"),
                &none,
                &p,
                false
            )
            .0,
            "feasible beats infeasible"
        );
        assert!(
            !judge(
                &c(0.99, 0.7, "not_met"),
                &c(0.80, 0.92, "undetermined"),
                &none,
                &p,
                false
            )
            .0,
            "infeasible never beats feasible"
        );
        let sens = |value, other, p_higher| Evidence {
            constraints: vec![paired("sensitivity", "round 1", value, other, p_higher)],
            ..Evidence::default()
        };
        let (kept, why) = judge(
            &c(0.80, 0.75, "not_met"),
            &c(0.95, 0.6, "not_met"),
            &sens(0.75, 0.6, 0.01),
            &p,
            false,
        );
        assert!(kept && why.contains("closer"), "{why}");
        assert!(
            !judge(
                &c(0.80, 0.62, "not_met"),
                &c(0.95, 0.6, "not_met"),
                &sens(0.62, 0.6, 0.3),
                &p,
                false
            )
            .0,
            "closer within the noise"
        );
        let (kept, why) = judge(
            &c(0.80, 0.5, "not_met"),
            &c(0.95, 0.6, "not_met"),
            &sens(0.5, 0.6, 0.99),
            &p,
            false,
        );
        assert!(!kept && why.contains("farther"), "{why}");
    }
}
