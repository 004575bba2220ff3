//! Scoring a round and the acceptance rule.
//!
//! A round is scored from the `metrics.json` its scoring `evaluate` stage wrote on the
//! validation split: the TaskSpec's objective (without a TaskSpec: AUC, macro AUC for
//! several classes, mAP@50 for a detector), each of its constraints, and, when the
//! evaluation analyses a confounder, the partial correlation between the model's output and
//! the confounder with the label held fixed.
//!
//! **The acceptance rule.** A round is kept when it is better than the best round so far:
//! 1. a round that meets every constraint beats one that does not;
//! 2. when both meet them, the objective must rise by at least `policy.min_improvement`
//!    (0.005 by default): smaller gains on a validation split of a few hundred images are
//!    within its noise, and keeping them would let the loop walk on noise;
//! 3. when neither meets them, the total shortfall must shrink by at least as much;
//! 4. and, for a task with confounders, the absolute partial correlation may not rise more
//!    than `policy.confound_tolerance` (0.05) above the best round's, however much the
//!    objective gains: a model that scores better by leaning harder on the drain is not
//!    better.
//!
//! A failed, timed-out or refused round is never kept.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::manifest::Policy;
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
    /// Whether the bound holds.
    pub met: bool,
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
    /// Every metric of the evaluation, by key.
    pub metrics: BTreeMap<String, f64>,
}

impl Score {
    /// Whether every constraint holds.
    pub fn feasible(&self) -> bool {
        self.constraints.iter().all(|c| c.met)
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
    let mut constraints = Vec::new();
    for c in task.map(|t| t.constraints.as_slice()).unwrap_or_default() {
        let k = metric_key(&metrics, c.metric.as_str(), None)?;
        let v = metrics[&k];
        let (op, met) = match c.op {
            Comparison::AtLeast => (">=", v >= c.value),
            Comparison::AtMost => ("<=", v <= c.value),
        };
        constraints.push(ConstraintCheck {
            metric: k,
            op: op.into(),
            bound: c.value,
            value: v,
            met,
        });
    }
    let confound = metrics_json["confound"]["attribute"]
        .as_str()
        .zip(metrics.get("confound/partial_correlation").copied())
        .map(|(a, p)| (a.to_owned(), p));
    Ok(Score {
        metric: key,
        value,
        ci,
        constraints,
        confound,
        metrics,
    })
}

/// Whether `candidate` is better than `best` under the acceptance rule, and why, in a
/// sentence.
pub fn judge(candidate: &Score, best: &Score, policy: &Policy, confounded: bool) -> (bool, String) {
    let m = &candidate.metric;
    if !candidate.value.is_finite() {
        return (false, format!("{m} is undefined on validation"));
    }
    if confounded
        && let (Some((a, c)), Some((_, b))) = (&candidate.confound, &best.confound)
        && c.abs() > b.abs() + policy.confound_tolerance
    {
        return (
            false,
            format!(
                "leans more on `{a}`: partial correlation {c:.3} against the best's {b:.3} (tolerance {})",
                policy.confound_tolerance
            ),
        );
    }
    match (candidate.feasible(), best.feasible()) {
        (true, false) => (
            true,
            "meets every constraint, which the best round did not".into(),
        ),
        (false, true) => {
            let broken: Vec<String> = candidate
                .constraints
                .iter()
                .filter(|c| !c.met)
                .map(|c| format!("{} {:.3} (needs {} {})", c.metric, c.value, c.op, c.bound))
                .collect();
            (false, format!("breaks a constraint: {}", broken.join(", ")))
        }
        (false, false) => {
            let (a, b) = (candidate.shortfall(), best.shortfall());
            if b - a >= policy.min_improvement {
                (
                    true,
                    format!("closer to the constraints: shortfall {a:.3} against {b:.3}"),
                )
            } else {
                (
                    false,
                    format!("no closer to the constraints: shortfall {a:.3} against {b:.3}"),
                )
            }
        }
        (true, true) => {
            let gain = candidate.value - best.value;
            if gain >= policy.min_improvement {
                (
                    true,
                    format!(
                        "{m} {:.4} against {:.4} (+{gain:.4})",
                        candidate.value, best.value
                    ),
                )
            } else if gain > 0.0 {
                (
                    false,
                    format!(
                        "{m} {:.4} against {:.4}: a gain of {gain:.4} is below the {} that counts",
                        candidate.value, best.value, policy.min_improvement
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "{m} {:.4} against {:.4} ({gain:+.4})",
                        candidate.value, best.value
                    ),
                )
            }
        }
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
                "confound/partial_correlation": {"value": partial, "ci": null}
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

    #[test]
    fn the_acceptance_rule() {
        let p = Policy::default();
        let t = task(json!({}));
        let s = |auc, partial| score(Some(&t), &metrics(auc, 0.9, partial)).unwrap();
        assert!(judge(&s(0.91, 0.1), &s(0.90, 0.1), &p, true).0);
        let (kept, why) = judge(&s(0.903, 0.1), &s(0.90, 0.1), &p, true);
        assert!(!kept && why.contains("below the 0.005"), "{why}");
        assert!(!judge(&s(0.89, 0.1), &s(0.90, 0.1), &p, true).0);
        let (kept, why) = judge(&s(0.95, 0.3), &s(0.90, 0.1), &p, true);
        assert!(!kept && why.contains("leans more on `drain`"), "{why}");
        assert!(
            judge(&s(0.95, 0.3), &s(0.90, 0.1), &p, false).0,
            "without confounders the correlation is not judged"
        );
        assert!(!judge(&s(f64::NAN, 0.1), &s(0.90, 0.1), &p, true).0);

        let tc =
            task(json!({"constraints": [{"metric": "sensitivity", "op": ">=", "value": 0.9}]}));
        let c = |auc, sens| score(Some(&tc), &metrics(auc, sens, 0.0)).unwrap();
        assert!(
            judge(&c(0.80, 0.92), &c(0.95, 0.85), &p, false).0,
            "feasible beats infeasible"
        );
        assert!(
            !judge(&c(0.99, 0.85), &c(0.80, 0.92), &p, false).0,
            "infeasible never beats feasible"
        );
        assert!(
            judge(&c(0.80, 0.88), &c(0.95, 0.85), &p, false).0,
            "closer to the constraint"
        );
    }
}
