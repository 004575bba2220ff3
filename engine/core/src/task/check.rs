//! Checks a TaskSpec that arrives as JSON from outside the rule-based parser (a language
//! model's tool call): against the TaskSpec schema, then for consistency (classes named
//! where they must be, metrics that fit the task, operating points where a metric needs
//! one), and normalises confounder names through the parser's vocabulary, so that
//! "chest_tube" and "drains" both become `chest_drain` whichever parser read the request.

use std::sync::OnceLock;

use serde_json::Value;

use crate::task::schema::task_schema;
use crate::task::spec::{Metric, TaskKind, TaskSpec};
use crate::task::text::{find, tokenize};
use crate::task::vocab::vocab;

fn validator() -> &'static jsonschema::Validator {
    static V: OnceLock<jsonschema::Validator> = OnceLock::new();
    V.get_or_init(|| {
        #[expect(
            clippy::expect_used,
            reason = "the generated schema is a compile-time constant, tested"
        )]
        jsonschema::draft7::new(&task_schema()).expect("the generated TaskSpec schema compiles")
    })
}

/// The TaskSpec in `value`, checked and normalised; the error lists every problem in a
/// sentence each, in words a language model (or a person) can act on.
pub fn check_spec(value: &Value) -> Result<TaskSpec, String> {
    let errors: Vec<String> = validator()
        .iter_errors(value)
        .take(8)
        .map(|e| {
            let at = e.instance_path.as_str();
            if at.is_empty() {
                format!("at the top level: {e}")
            } else {
                format!("at {at}: {e}")
            }
        })
        .collect();
    if !errors.is_empty() {
        return Err(format!(
            "it does not fit the TaskSpec schema: {}",
            errors.join("; ")
        ));
    }
    let mut spec: TaskSpec = serde_json::from_value(value.clone())
        .map_err(|e| format!("it does not fit the TaskSpec schema: {e}"))?;
    normalise_confounders(&mut spec);
    let problems = consistency(&spec);
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(problems.join("; "))
    }
}

/// Maps each confounder to the vocabulary's name for it, drops repeats and the target.
fn normalise_confounders(spec: &mut TaskSpec) {
    let v = vocab();
    let mut out: Vec<String> = Vec::new();
    for c in &spec.confounders {
        let words = tokenize(&c.replace('_', " "));
        // The whole name must be one phrase of the vocabulary (plurals as the parser reads them).
        let name = match find(&words, &v.confounders).as_slice() {
            [hit] if hit.start == 0 && hit.end == words.len() => hit.value.clone(),
            _ => c.clone(),
        };
        if !out.contains(&name) && spec.target.as_deref() != Some(name.as_str()) {
            out.push(name);
        }
    }
    spec.confounders = out;
}

fn consistency(spec: &TaskSpec) -> Vec<String> {
    let mut p = Vec::new();
    let classes = &spec.classes;
    let known = |c: &str| classes.is_empty() || classes.iter().any(|k| k == c);
    let list = || classes.join(", ");
    match spec.task {
        TaskKind::BinaryClassification => {
            if !classes.is_empty() && classes.len() != 2 {
                p.push(format!(
                    "a binary task has two classes, and `classes` lists {} ({}); list both or leave `classes` out",
                    classes.len(),
                    list()
                ));
            }
            if spec.positive_class.is_none() {
                p.push(
                    "a binary task needs `positive_class`: the finding a positive prediction means"
                        .into(),
                );
            }
            if spec.positive_class.is_some() && spec.positive_class == spec.negative_class {
                p.push("`positive_class` and `negative_class` are the same class".into());
            }
        }
        TaskKind::MulticlassClassification | TaskKind::Detection => {
            if spec.positive_class.is_some() || spec.negative_class.is_some() {
                p.push(format!(
                    "`positive_class` and `negative_class` are for binary tasks, not {}; use `priority_class` for the class that matters most",
                    spec.task.as_str()
                ));
            }
            if spec.task == TaskKind::MulticlassClassification && classes.len() == 1 {
                p.push(
                    "a multiclass task needs at least two classes in `classes` (or none, when the request does not list them)"
                        .into(),
                );
            }
        }
    }
    for (field, value) in [
        ("positive_class", &spec.positive_class),
        ("negative_class", &spec.negative_class),
        ("priority_class", &spec.priority_class),
    ] {
        if let Some(c) = value
            && !known(c)
        {
            p.push(format!(
                "`{field}` is `{c}`, which is not one of the classes ({})",
                list()
            ));
        }
    }
    let fits = |m: Metric| -> Option<String> {
        let detection = matches!(m, Metric::Map50 | Metric::Map50_95);
        let multiclass_only = matches!(m, Metric::MacroAuc | Metric::MacroF1);
        match spec.task {
            TaskKind::Detection if !detection && m != Metric::Sensitivity && m != Metric::F1 => {
                Some(format!(
                    "`{}` is not a detection metric (use map50, map50_95, sensitivity or f1)",
                    m.as_str()
                ))
            }
            TaskKind::BinaryClassification | TaskKind::MulticlassClassification if detection => {
                Some(format!(
                    "`{}` is a detection metric, and this is {}",
                    m.as_str(),
                    spec.task.as_str()
                ))
            }
            TaskKind::BinaryClassification if multiclass_only => Some(format!(
                "`{}` averages over classes; a binary task uses `{}`",
                m.as_str(),
                if m == Metric::MacroAuc { "auc" } else { "f1" }
            )),
            _ => None,
        }
    };
    if let Some(o) = &spec.objective {
        p.extend(fits(o.metric));
        match (o.metric, o.at_specificity, o.at_sensitivity) {
            (Metric::SensitivityAtSpecificity, None, _) => {
                p.push("the objective `sensitivity_at_specificity` needs `at_specificity` (a fraction such as 0.8)".into());
            }
            (Metric::SpecificityAtSensitivity, _, None) => {
                p.push("the objective `specificity_at_sensitivity` needs `at_sensitivity` (a fraction such as 0.9)".into());
            }
            _ => {}
        }
        if let Some(c) = &o.class
            && !known(c)
        {
            p.push(format!(
                "the objective's class `{c}` is not one of the classes ({})",
                list()
            ));
        }
    }
    for c in &spec.constraints {
        p.extend(fits(c.metric));
    }
    for c in &spec.confounders {
        if spec.positive_class.as_deref() == Some(c.as_str()) {
            p.push(format!(
                "`{c}` is the positive class and a confounder at once"
            ));
        }
    }
    p
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_good_spec_passes_and_confounders_take_the_vocabularys_names() {
        let spec = check_spec(&json!({
            "task": "binary_classification",
            "modality": "chest_xray",
            "target": "pneumothorax",
            "positive_class": "pneumothorax",
            "objective": {"metric": "auc"},
            "confounders": ["chest_tubes", "drains", "pacemaker"]
        }))
        .unwrap();
        assert_eq!(spec.confounders, vec!["chest_drain", "pacemaker"]);
        assert_eq!(spec.error_preference.as_str(), "balanced");
    }

    #[test]
    fn the_schema_is_enforced_with_the_place_of_each_problem() {
        let e = check_spec(&json!({"task": "segmentation", "modality": "chest_xray"})).unwrap_err();
        assert!(e.contains("/task") && e.contains("schema"), "{e}");
        let e = check_spec(&json!({
            "task": "binary_classification", "modality": "chest_xray",
            "positive_class": "Pneumothorax", "mood": "happy"
        }))
        .unwrap_err();
        assert!(e.contains("/positive_class") && e.contains("mood"), "{e}");
        let e = check_spec(&json!({
            "task": "binary_classification", "modality": "chest_xray", "positive_class": "x",
            "constraints": [{"metric": "sensitivity", "op": ">=", "value": 90}]
        }))
        .unwrap_err();
        assert!(e.contains("/constraints/0/value"), "{e}");
        assert!(check_spec(&json!("a string")).is_err());
    }

    #[test]
    fn inconsistent_specs_are_refused_with_what_to_change() {
        let base = || {
            json!({
                "task": "multiclass_classification", "modality": "dermoscopy",
                "classes": ["melanoma", "nevus", "basal_cell_carcinoma"]
            })
        };
        assert!(check_spec(&base()).is_ok());
        let mut v = base();
        v["priority_class"] = json!("squamous_cell_carcinoma");
        assert!(
            check_spec(&v)
                .unwrap_err()
                .contains("not one of the classes")
        );
        let mut v = base();
        v["objective"] = json!({"metric": "sensitivity_at_specificity", "class": "melanoma"});
        assert!(
            check_spec(&v)
                .unwrap_err()
                .contains("needs `at_specificity`")
        );
        let mut v = base();
        v["objective"] = json!({"metric": "map50"});
        assert!(check_spec(&v).unwrap_err().contains("detection metric"));
        let mut v = base();
        v["positive_class"] = json!("melanoma");
        assert!(check_spec(&v).unwrap_err().contains("binary tasks"));
        let e = check_spec(&json!({"task": "binary_classification", "modality": "chest_xray"}))
            .unwrap_err();
        assert!(e.contains("needs `positive_class`"), "{e}");
        let e = check_spec(&json!({
            "task": "binary_classification", "modality": "dermoscopy", "positive_class": "melanoma",
            "objective": {"metric": "macro_auc"}
        }))
        .unwrap_err();
        assert!(e.contains("uses `auc`"), "{e}");
    }

    #[test]
    fn the_rule_based_parsers_reading_of_the_example_requests_passes() {
        for request in [
            "Flag pneumothorax on chest X-rays; it must not rely on the chest drains.",
            "Sort dermoscopy images into melanoma, nevus and basal cell carcinoma; melanoma matters most.",
            "Find fractures on wrist radiographs and draw boxes around them.",
        ] {
            let spec = crate::task::parse_request(request);
            let value = serde_json::to_value(&spec).unwrap();
            if let Err(e) = check_spec(&value) {
                panic!("{request}: {e}\n{value}");
            }
        }
    }
}
