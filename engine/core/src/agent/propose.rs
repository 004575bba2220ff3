//! Proposers: each round, one change to the best manifest so far, with a rationale.
//!
//! The heuristic proposer walks a catalogue of established techniques in an order the
//! evidence drives (the TaskSpec, the data audit, the rounds so far); the random proposer
//! draws uniformly from the same space of actions, as a baseline to measure the heuristic
//! against. Both only offer changes the policy allows and that no earlier round tried (the
//! resulting manifest's content hash is the identity).

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::agent::journal::{Round, manifest_hash};
use crate::agent::patch::{self, Patch, PatchOp};
use crate::agent::policy;
use crate::agent::rewrite::inline;
use crate::agent::score::Score;
use crate::manifest::Policy;
use crate::task::{ErrorPreference, TaskKind, TaskSpec};

/// What a proposer sees.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The TaskSpec embedded in the manifest, if any.
    pub task: Option<&'a TaskSpec>,
    /// The best manifest so far, as a value.
    pub best: &'a Value,
    /// The clinician's policy.
    pub policy: &'a Policy,
    /// The training stage the scoring evaluation reads.
    pub train: &'a str,
    /// Every finished round.
    pub rounds: &'a [Round],
    /// The data audit of the training dataset (`audit.json`), when the manifest has one.
    pub audit: Option<&'a Value>,
    /// Attribute columns the training stage can use (declared, and from `from:` stages).
    pub attributes: &'a [String],
    /// The attribute the scoring evaluation analyses as a confounder.
    pub confound: Option<&'a str>,
    /// The best round's training summary (the training stage's `metrics.json`: `best`,
    /// `best_epoch`, `epochs_run`, `stopped_by`), when known.
    pub training: Option<&'a Value>,
}

/// A proposed change.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    /// The patch on the best manifest.
    pub patch: Patch,
    /// Why, citing the evidence.
    pub rationale: String,
}

/// A proposer of changes.
pub trait Proposer {
    /// Its name in records (`heuristic`, `random`, ...).
    fn name(&self) -> &'static str;
    /// The next change to try, or `None` when it has nothing left to offer.
    fn propose(&mut self, ctx: &Context<'_>) -> Option<Candidate>;
}

/// The change a patch makes to `best`, in a line: `loss.kind: bce -> focal; mixup: + {alpha: 0.2}`.
pub fn summarize(best: &Value, patch: &[PatchOp]) -> String {
    let Ok(new) = patch::apply(best, patch) else {
        return "a patch that does not apply".into();
    };
    let parts: Vec<String> = policy::changed_pointers(best, &new)
        .iter()
        .map(|p| {
            let toks = patch::tokens(p).unwrap_or_default();
            let name = if toks.len() > 3 && toks[0] == "stages" && toks[2] == "with" {
                format!("{}.{}", toks[1], toks[3..].join("."))
            } else {
                toks.join(".")
            };
            // A stage inserted or removed is named by its kind; the diff shows the rest.
            let stage = |v: &Value| {
                v["uses"]
                    .as_str()
                    .filter(|_| toks.len() == 2 && toks[0] == "stages")
                    .map(|k| format!("a {k} stage"))
            };
            match (patch::get(best, p), patch::get(&new, p)) {
                (None, Some(b)) if stage(b).is_some() => {
                    format!("{name}: + {}", stage(b).unwrap_or_default())
                }
                (Some(a), None) if stage(a).is_some() => {
                    format!("{name}: - {}", stage(a).unwrap_or_default())
                }
                (Some(a), Some(b)) => format!("{name}: {} -> {}", inline(a), inline(b)),
                (None, Some(b)) => format!("{name}: + {}", inline(b)),
                (Some(a), None) => format!("{name}: - {}", inline(a)),
                (None, None) => name,
            }
        })
        .collect();
    if parts.is_empty() {
        "no change".into()
    } else {
        parts.join("; ")
    }
}

/// The identity of a change, whatever manifest it was made to: each changed pointer with
/// its new value (null when removed), as canonical JSON.
pub fn change_key(base: &Value, new: &Value) -> String {
    let pairs: Vec<Value> = policy::changed_pointers(base, new)
        .into_iter()
        .map(|p| {
            let v = patch::get(new, &p).cloned().unwrap_or(Value::Null);
            json!([p, v])
        })
        .collect();
    crate::canonical::to_canonical_string(&Value::Array(pairs))
}

/// A stage's parameters with every default filled in, or `None` if they do not parse.
fn resolved(stage: &Value) -> Option<Value> {
    let kind: crate::manifest::StageKind = serde_json::from_value(stage["uses"].clone()).ok()?;
    let params = crate::manifest::StageParams::parse(kind, stage["with"].as_object()?).ok()?;
    serde_json::to_value(&params).ok()
}

/// Whether `new` would run exactly as `old`: they differ only in stage parameters set to
/// their defaults (`batch_size: 32` where it was unset), which would waste a round.
pub fn same_run(old: &Value, new: &Value) -> bool {
    let without_stages = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("stages");
        }
        v
    };
    if without_stages(old) != without_stages(new) {
        return false;
    }
    let (Some(a), Some(b)) = (old["stages"].as_object(), new["stages"].as_object()) else {
        return false;
    };
    a.len() == b.len()
        && a.iter().all(|(id, sa)| {
            let Some(sb) = b.get(id) else { return false };
            if sa == sb {
                return true;
            }
            let strip = |s: &Value| {
                let mut s = s.clone();
                if let Some(o) = s.as_object_mut() {
                    o.remove("with");
                }
                s
            };
            strip(sa) == strip(sb) && resolved(sa).is_some() && resolved(sa) == resolved(sb)
        })
}

/// The patch that turns `old` into `new`: removals, then each changed member set.
pub fn patch_between(old: &Value, new: &Value) -> Patch {
    let changed = policy::changed_pointers(old, new);
    let mut out: Patch = changed
        .iter()
        .filter(|p| patch::get(new, p).is_none())
        .map(|p| PatchOp::Remove { path: p.clone() })
        .collect();
    out.extend(changed.iter().filter_map(|p| {
        patch::get(new, p).map(|v| PatchOp::Add {
            path: p.clone(),
            value: v.clone(),
        })
    }));
    out
}

/// Whether `patch` is worth proposing: it applies, the policy allows it, it changes how
/// the pipeline runs, and no round has tried the same change or run the manifest it makes.
pub fn fresh(ctx: &Context<'_>, patch: &[PatchOp], tried: &HashSet<String>) -> bool {
    let Ok(new) = patch::apply(ctx.best, patch) else {
        return false;
    };
    policy::check(ctx.policy, ctx.best, &new).is_ok()
        && !same_run(ctx.best, &new)
        && !tried.contains(&manifest_hash(&new))
        && !tried.contains(&change_key(ctx.best, &new))
}

/// The changes and manifests every round so far tried.
pub fn tried(rounds: &[Round]) -> HashSet<String> {
    rounds
        .iter()
        .flat_map(|r| [r.manifest_hash.clone(), r.change.clone()])
        .filter(|k| !k.is_empty())
        .collect()
}

/// The training stage's parameters in the best manifest.
fn with<'a>(ctx: &Context<'a>) -> Map<String, Value> {
    ctx.best["stages"][ctx.train]["with"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

fn set(ctx: &Context<'_>, key: &str, value: Value) -> PatchOp {
    PatchOp::Add {
        path: format!("/stages/{}/with/{key}", ctx.train),
        value,
    }
}

fn unset(ctx: &Context<'_>, key: &str) -> Option<PatchOp> {
    with(ctx).contains_key(key).then(|| PatchOp::Remove {
        path: format!("/stages/{}/with/{key}", ctx.train),
    })
}

/// The object parameter `key` with `fields` set over what it holds now.
fn merge(ctx: &Context<'_>, key: &str, fields: Value) -> PatchOp {
    let mut obj = with(ctx)
        .get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Value::Object(f) = fields {
        obj.extend(f);
    }
    set(ctx, key, Value::Object(obj))
}

/// A numeric parameter of the training stage: as set, else the stage kind's default, else
/// `default`.
fn num(ctx: &Context<'_>, key: &str, default: f64) -> f64 {
    with(ctx)
        .get(key)
        .and_then(Value::as_f64)
        .or_else(|| resolved(&ctx.best["stages"][ctx.train]).and_then(|r| r[key].as_f64()))
        .unwrap_or(default)
}

/// Whether the scored training stage is a `detector.train` stage.
fn detector(ctx: &Context<'_>) -> bool {
    ctx.best["stages"][ctx.train]["uses"] == json!("detector.train")
}

/// A stage id the best manifest does not use yet: `base`, else `base2`, `base3`, ...
fn free_id(ctx: &Context<'_>, base: &str) -> String {
    let taken = |id: &str| ctx.best["stages"].get(id).is_some();
    if !taken(base) {
        return base.to_owned();
    }
    (2..)
        .map(|n| format!("{base}{n}"))
        .find(|id| !taken(id))
        .unwrap_or_else(|| base.to_owned())
}

/// The best round's validation metric `key`, when it was scored.
fn best_metric(ctx: &Context<'_>, key: &str) -> Option<f64> {
    ctx.rounds
        .iter()
        .rev()
        .find(|r| r.kept)
        .and_then(|r| r.score.as_ref()?.metrics.get(key).copied())
}

/// The audit's sentence about the training split's boxes, when fewer than half of its
/// images have them.
fn sparse_boxes(ctx: &Context<'_>) -> Option<String> {
    let s = &ctx.audit?["supervision"];
    if s["kind"] != json!("boxes") {
        return None;
    }
    let t = &s["splits"]["train"];
    let (images, boxed) = (t["images"].as_u64()?, t["boxed"].as_u64()?);
    (images > 0 && (boxed as f64) < 0.5 * images as f64).then(|| {
        s["summary"].as_str().map_or_else(
            || format!("{boxed} of {images} training images have boxes"),
            str::to_owned,
        )
    })
}

fn binary(ctx: &Context<'_>) -> bool {
    ctx.task
        .is_none_or(|t| t.task == TaskKind::BinaryClassification)
}

/// The attribute that stands for the confounder, and the one to debias against (its
/// predicted probability when a model predicted it, which carries more than a 0/1 label).
fn confound_attributes(ctx: &Context<'_>) -> Option<(String, String, String)> {
    let task = ctx.task?;
    for c in &task.confounders {
        let short = c.split('_').next_back().unwrap_or(c);
        let hit = ctx
            .attributes
            .iter()
            .find(|a| *a == c)
            .or_else(|| ctx.attributes.iter().find(|a| a.as_str() == short))
            .or_else(|| {
                ctx.confound
                    .and_then(|f| ctx.attributes.iter().find(|a| *a == f))
            })
            .or_else(|| {
                ctx.attributes
                    .iter()
                    .find(|a| a.contains(short) && !a.ends_with("_prob"))
            });
        if let Some(a) = hit {
            let prob = format!("{a}_prob");
            let debias = if ctx.attributes.contains(&prob) {
                prob
            } else {
                a.clone()
            };
            return Some((c.clone(), a.clone(), debias));
        }
    }
    None
}

/// The audit's sentence about an attribute, for rationales.
fn audit_evidence(ctx: &Context<'_>, attribute: &str) -> String {
    let tabs = ctx.audit.and_then(|a| a["cross_tabs"].as_object());
    let found = tabs.and_then(|t| {
        t.iter()
            .find(|(k, _)| {
                k.as_str() == attribute || attribute.contains(k.as_str()) || k.contains(attribute)
            })
            .and_then(|(k, v)| Some((k.clone(), v["train"].as_array()?.first()?.clone())))
    });
    match found {
        Some((k, x)) => match (
            x["p_given_positive"].as_f64(),
            x["p_given_negative"].as_f64(),
            x["auc"].as_f64(),
        ) {
            (Some(p), Some(q), Some(auc)) => format!(
                "the audit finds `{k}` in {:.1}% of {} training images against {:.1}% of the others, and `{k}` alone predicts the label with AUC {auc:.3}",
                100.0 * p,
                x["class"].as_str().unwrap_or("positive"),
                100.0 * q
            ),
            _ => format!("the audit cross-tabulates `{k}` against the label"),
        },
        None => "the request names it as a confounder".into(),
    }
}

/// The class balance the audit found, for rationales.
fn class_evidence(ctx: &Context<'_>) -> Option<String> {
    let classes = ctx.audit?["classes"].as_array()?;
    let counts: Vec<(String, u64)> = classes
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?.to_owned(), c["train"].as_u64()?)))
        .collect();
    let big = counts.iter().max_by_key(|c| c.1)?;
    let small = counts.iter().filter(|c| c.1 > 0).min_by_key(|c| c.1)?;
    Some(format!(
        "the audit counts {} `{}` training images against {} `{}` ({:.1}x)",
        big.1,
        big.0,
        small.1,
        small.0,
        big.1 as f64 / small.1 as f64
    ))
}

/// The best round so far and its validation score, when it was scored.
fn best_scored<'a>(ctx: &Context<'a>) -> Option<(u32, &'a Score)> {
    ctx.rounds
        .iter()
        .rev()
        .find(|r| r.kept)
        .and_then(|r| Some((r.round, r.score.as_ref()?)))
}

/// The best round's validation figures, for rationales.
fn best_evidence(ctx: &Context<'_>) -> String {
    match best_scored(ctx) {
        Some((n, s)) => format!(
            "the best round so far (round {n}) has validation {} {:.4}",
            s.metric, s.value
        ),
        None => "no round has been scored yet".into(),
    }
}

/// The shape of the best round's training curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Curve {
    /// The validation metric peaked in the last epochs of a run that used all its epochs.
    Rising,
    /// It peaked in the first half.
    PeakedEarly,
    /// Anything else, or not known.
    Unknown,
}

/// The best round's training curve, from its training stage's `metrics.json`, and a
/// sentence about it for rationales.
fn curve_evidence(ctx: &Context<'_>) -> (Curve, String) {
    let base = best_evidence(ctx);
    let Some(t) = ctx.training else {
        return (Curve::Unknown, base);
    };
    let (Some(best_epoch), Some(run), Some(best)) = (
        t["best_epoch"].as_u64(),
        t["epochs_run"].as_u64(),
        t["best"].as_f64(),
    ) else {
        return (Curve::Unknown, base);
    };
    let shape = if run >= 2 && best_epoch + 1 >= run && t["stopped_by"] == "epochs" {
        Curve::Rising
    } else if run >= 4 && best_epoch * 2 <= run {
        Curve::PeakedEarly
    } else {
        Curve::Unknown
    };
    let how = match shape {
        Curve::Rising => "still rising when training ended",
        Curve::PeakedEarly => "past its peak for the second half of training",
        Curve::Unknown => "at its best",
    };
    (
        shape,
        format!(
            "{base}; its validation {} was {how} (best {best:.4} at epoch {best_epoch} of {run})",
            t["metric"].as_str().unwrap_or("metric")
        ),
    )
}

/// Whether the round that tried the manifest `patch` makes of `base` was kept: `None` if
/// untried.
fn kept(ctx: &Context<'_>, base: &Value, patch: &[PatchOp]) -> Option<bool> {
    let key = change_key(base, &patch::apply(base, patch).ok()?);
    ctx.rounds.iter().find(|r| r.change == key).map(|r| r.kept)
}

/// The best round's measured reliance on the confounder, when its interval excludes 0 (the
/// output still leans on it, label held fixed), as a sentence for rationales.
fn reliance_evidence(ctx: &Context<'_>) -> Option<String> {
    let (n, s) = best_scored(ctx)?;
    let (attr, p) = s.confound.as_ref()?;
    let (lo, hi) = s.confound_ci?;
    (lo > 0.0 || hi < 0.0).then(|| {
        format!(
            "on validation the best round's output (round {n}) still leans on `{attr}`: partial correlation {p:.3} (95% CI {lo:.3} to {hi:.3}), label held fixed"
        )
    })
}

/// The best round's constraints whose interval lies on the wrong side of the bound, as
/// (metric, sentence).
fn broken_constraints(ctx: &Context<'_>) -> Vec<(String, String)> {
    let Some((n, s)) = best_scored(ctx) else {
        return Vec::new();
    };
    s.constraints
        .iter()
        .filter(|c| c.broken())
        .map(|c| {
            (
                c.metric.clone(),
                format!(
                    "the best round (round {n}) misses the constraint {} {} {} on validation ({:.3}, its interval wholly on the wrong side)",
                    c.metric, c.op, c.bound, c.value
                ),
            )
        })
        .collect()
}

/// The heuristic catalogue, in the order it is walked: each entry a patch and its
/// rationale. Entries that are already in place, not allowed or tried are skipped by the
/// caller.
pub fn catalogue(ctx: &Context<'_>) -> Vec<Candidate> {
    if detector(ctx) {
        return detector_catalogue(ctx);
    }
    let mut out: Vec<Candidate> = Vec::new();
    let w = with(ctx);
    let loss = w.get("loss").cloned().unwrap_or_else(|| json!({}));
    let task = ctx.task;
    let priority = task.and_then(|t| {
        t.priority_class
            .clone()
            .or_else(|| t.positive_class.clone())
    });
    let fn_averse =
        task.is_some_and(|t| t.error_preference == ErrorPreference::MinimizeFalseNegatives);
    let classes = class_evidence(ctx);

    // 0. Detail the network cannot see: when the last feature map is smaller than 4x4, no
    // other technique recovers what the downsampling pooled away.
    let size = num(ctx, "image_size", 64.0) as u64;
    let backbone = w
        .get("backbone")
        .and_then(Value::as_str)
        .unwrap_or("small_cnn")
        .to_owned();
    let stride = if backbone == "small_cnn" { 16 } else { 32 };
    if size / stride < 4 && size < 256 {
        out.push(Candidate {
            patch: vec![set(ctx, "image_size", json!(size * 2))],
            rationale: format!(
                "at {size} px the {backbone}'s last feature map is {side}x{side} ({stride}x downsampling), so fine detail is pooled away before the classifier sees it: {size} -> {} px; {}",
                size * 2,
                best_evidence(ctx),
                side = size / stride
            ),
        });
    }

    // What comes before the request's own moves: the network must be able to see.
    let sighted = out.len();
    let mut push =
        |patch: Vec<PatchOp>, rationale: String| out.push(Candidate { patch, rationale });

    // 1. What the request says matters most.
    if fn_averse || task.is_some_and(|t| t.priority_class.is_some()) {
        let who = priority
            .clone()
            .unwrap_or_else(|| "the priority class".into());
        let why = if fn_averse {
            format!(
                "the request says a missed `{who}` is the worst error (error_preference: minimize_false_negatives)"
            )
        } else {
            format!("the request puts `{who}` first (priority_class)")
        };
        if loss["class_weighted"] != json!(true) {
            push(
                vec![merge(ctx, "loss", json!({"class_weighted": true}))],
                format!(
                    "{why}; {}: weighting the loss by inverse class frequency makes each rare case count as much as the common ones",
                    classes
                        .clone()
                        .unwrap_or_else(|| "the classes are unbalanced".into())
                ),
            );
        }
        if loss["kind"] != json!("focal") {
            push(
                vec![merge(ctx, "loss", json!({"kind": "focal", "gamma": 2.0}))],
                format!(
                    "{why}; {}; focal loss (gamma 2) puts the gradient on the hard, misclassified cases, which is where missed `{who}` cases are",
                    best_evidence(ctx)
                ),
            );
        }
    }

    // 2. The confounder the request names (right after step 0 while the best round's
    // reliance on it is significant).
    let reliance = reliance_evidence(ctx);
    let mut against_confound: Vec<Candidate> = Vec::new();
    if let Some((name, attr, debias_attr)) = confound_attributes(ctx) {
        let mut push = |patch: Vec<PatchOp>, rationale: String| {
            let rationale = match &reliance {
                Some(r) => format!("{rationale}; {r}"),
                None => rationale,
            };
            against_confound.push(Candidate { patch, rationale });
        };
        let evidence = audit_evidence(ctx, &attr);
        let sampler_ok = w
            .get("sampler")
            .is_some_and(|s| s["kind"] == json!("group_balanced"));
        if !sampler_ok {
            push(
                vec![set(
                    ctx,
                    "sampler",
                    json!({"kind": "group_balanced", "attribute": attr}),
                )],
                format!(
                    "the request says the model must not rely on `{name}`, and {evidence}: drawing every label x `{attr}` group equally often removes the shortcut from the training batches"
                ),
            );
        }
        // Gradient reversal, climbing the strength only while the last step was kept.
        let mut climb = true;
        for lambda in [0.1, 0.3, 1.0] {
            if !climb {
                break;
            }
            let step = vec![set(
                ctx,
                "debias",
                json!({"kind": "gradient_reversal", "attribute": debias_attr, "lambda": lambda}),
            )];
            let current = w.get("debias").and_then(|d| d["lambda"].as_f64());
            if current == Some(lambda) {
                continue;
            }
            match kept(ctx, ctx.best, &step) {
                // A step that was not kept (worse, within the noise, or failed) ends the
                // climb.
                Some(false) => climb = false,
                _ => push(
                    step,
                    format!(
                        "the request says the model must not rely on `{name}`; {evidence}. An adversary that predicts `{debias_attr}` from the features, with its gradient reversed (lambda {lambda}), trains the features to carry less of it"
                    ),
                ),
            }
        }
        if w.get("mixup").is_none() {
            push(
                vec![set(ctx, "mixup", json!({"alpha": 0.2}))],
                format!(
                    "mixup (alpha 0.2) blends images and labels, which weakens any single shortcut such as `{attr}` and regularises; {}",
                    best_evidence(ctx)
                ),
            );
        }
        if loss["label_smoothing"].as_f64().unwrap_or(0.0) == 0.0 {
            push(
                vec![merge(ctx, "loss", json!({"label_smoothing": 0.05}))],
                format!(
                    "label smoothing (0.05) keeps the model from betting everything on a confident shortcut such as `{attr}`; {}",
                    best_evidence(ctx)
                ),
            );
        }
    }
    if reliance.is_some() {
        // Pursue the request before anything but letting the network see.
        out.splice(sighted..sighted, against_confound);
    } else {
        out.append(&mut against_confound);
    }

    // 3. Many false positives: a stricter ratio of negatives.
    if binary(ctx)
        && let Some(s) = ctx
            .rounds
            .iter()
            .rev()
            .find(|r| r.kept)
            .and_then(|r| r.score.as_ref())
        && let (Some(sens), Some(spec)) =
            (s.metrics.get("sensitivity"), s.metrics.get("specificity"))
        && *spec + 0.1 < *sens
        && w.get("sampler")
            .is_none_or(|s| s["kind"] != json!("group_balanced"))
    {
        out.push(Candidate {
            patch: vec![set(
                ctx,
                "sampler",
                json!({"kind": "ratio", "negatives_per_positive": 2.0}),
            )],
            rationale: format!(
                "the best round's validation specificity {spec:.3} is well below its sensitivity {sens:.3}: too many false positives; two negatives per positive in each batch shows the model more of what is not a finding"
            ),
        });
    }

    // 4. Optimisation, schedule, augmentation, resolution, batch size and backbone, in
    // an order the best round's training curve suggests.
    out.extend(tuning(ctx));

    // A constraint the best round misses comes before everything: the changes that move
    // its metric.
    let mut first = Vec::new();
    for (metric, why) in broken_constraints(ctx) {
        let base = metric.split('/').next().unwrap_or(&metric);
        if matches!(base, "sensitivity" | "npv" | "sensitivity_at_specificity") {
            if loss["class_weighted"] != json!(true) {
                first.push(Candidate {
                    patch: vec![merge(ctx, "loss", json!({"class_weighted": true}))],
                    rationale: format!(
                        "{why}: weighting the loss by inverse class frequency makes each missed case of a rare class cost more"
                    ),
                });
            }
            if loss["kind"] != json!("focal") {
                first.push(Candidate {
                    patch: vec![merge(ctx, "loss", json!({"kind": "focal", "gamma": 2.0}))],
                    rationale: format!(
                        "{why}: focal loss (gamma 2) puts the gradient on the hard, misclassified cases, where the missed ones are"
                    ),
                });
            }
        } else if matches!(base, "specificity" | "ppv" | "specificity_at_sensitivity")
            && binary(ctx)
            && w.get("sampler")
                .is_none_or(|s| s["kind"] != json!("group_balanced"))
        {
            first.push(Candidate {
                patch: vec![set(
                    ctx,
                    "sampler",
                    json!({"kind": "ratio", "negatives_per_positive": 2.0}),
                )],
                rationale: format!(
                    "{why}: two negatives per positive in each batch shows the model more of what is not a finding"
                ),
            });
        }
    }
    first.append(&mut out);
    first
}

/// Optimisation, schedule, augmentation, resolution, batch size and capacity (the
/// backbone of a classifier, the width of a detector), in an order the best round's
/// training curve suggests.
fn tuning(ctx: &Context<'_>) -> Vec<Candidate> {
    let w = with(ctx);
    let size = num(ctx, "image_size", 64.0) as u64;
    let mut tuning: Vec<(&str, Vec<PatchOp>, String)> = Vec::new();
    let lr = num(ctx, "lr", 1e-3);
    let (shape, evidence) = curve_evidence(ctx);
    for (tag, factor, why) in [
        (
            "lr_down",
            0.3,
            "a smaller learning rate often finds a better minimum once the loss is set",
        ),
        (
            "lr_up",
            3.0,
            "a larger learning rate helps when training has not converged within its epochs",
        ),
    ] {
        let to = (lr * factor * 1e6).round() / 1e6;
        tuning.push((
            tag,
            vec![set(ctx, "lr", json!(to))],
            format!("{why}: lr {lr} -> {to}; {evidence}"),
        ));
    }
    let epochs = num(ctx, "epochs", 10.0) as u64;
    if epochs < 60 {
        tuning.push((
            "longer",
            vec![
                set(ctx, "epochs", json!(epochs * 2)),
                set(ctx, "early_stopping", json!((epochs / 2).max(3))),
            ],
            format!(
                "a longer schedule ({epochs} -> {} epochs, with early stopping on validation) when the curve is still rising; {evidence}",
                epochs * 2
            ),
        ));
    }
    let augment = num(ctx, "augment", 0.5);
    for (tag, to) in [("augment_up", 0.8), ("augment_down", 0.25)] {
        if (augment - to).abs() > 1e-9 {
            tuning.push((
                tag,
                vec![set(ctx, "augment", json!(to))],
                format!(
                    "augmentation strength {augment} -> {to}: {}; {evidence}",
                    if to > augment {
                        "more variety against overfitting a small training set"
                    } else {
                        "less distortion when the findings are small"
                    }
                ),
            ));
        }
    }
    if !detector(ctx) && w.get("ema").is_none() {
        tuning.push((
            "ema",
            vec![set(ctx, "ema", json!({"decay": 0.999}))],
            format!("an exponential moving average of the weights (decay 0.999) smooths the last epochs' noise; {evidence}"),
        ));
    }
    if size < 256 {
        tuning.push((
            "resolution",
            vec![set(ctx, "image_size", json!(size * 2))],
            format!(
                "a higher resolution ({size} -> {} px) shows finer detail, at about four times the cost per image; {evidence}",
                size * 2
            ),
        ));
    }
    let batch = num(ctx, "batch_size", 32.0) as u64;
    for to in [batch / 2, batch * 2] {
        if (8..=256).contains(&to) {
            tuning.push((
                "batch",
                vec![set(ctx, "batch_size", json!(to))],
                format!("batch size {batch} -> {to}; {evidence}"),
            ));
        }
    }
    if detector(ctx) {
        let width = num(ctx, "width", 16.0) as u64;
        if width < 64 {
            tuning.push((
                "backbone",
                vec![set(ctx, "width", json!(width * 2))],
                format!(
                    "a wider detector ({width} -> {} channels in the first stage, doubling with each stage) when its capacity is the limit; {evidence}",
                    width * 2
                ),
            ));
        }
    } else if w
        .get("backbone")
        .and_then(Value::as_str)
        .unwrap_or("small_cnn")
        == "small_cnn"
    {
        tuning.push((
            "backbone",
            vec![set(ctx, "backbone", json!("resnet18"))],
            format!("a deeper backbone (ResNet-18) when the small CNN's capacity is the limit; {evidence}"),
        ));
    }
    // Still rising at the end: train longer and faster first. Peaked early: regularise and
    // slow down first. Otherwise the order above.
    let first: &[&str] = match shape {
        Curve::Rising => &["longer", "lr_up", "resolution"],
        Curve::PeakedEarly => &["augment_up", "ema", "lr_down"],
        Curve::Unknown => &[],
    };
    tuning.sort_by_key(|(tag, _, _)| first.iter().position(|f| f == tag).unwrap_or(first.len()));
    tuning
        .into_iter()
        .map(|(_, patch, rationale)| Candidate { patch, rationale })
        .collect()
}

/// The detector's first change when the audit finds sparse boxes and nothing
/// pseudo-labels them yet: a teacher `detector.train` on the boxed images, a
/// `pseudo_label` stage with its confident boxes, and the training stage reading them.
fn pseudo_labelling(ctx: &Context<'_>) -> Option<Candidate> {
    let w = with(ctx);
    if w.get("from")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
    {
        return None;
    }
    let summary = sparse_boxes(ctx)?;
    let target = finding(ctx);
    let teacher = free_id(ctx, "teacher");
    let pseudo = free_id(ctx, "pseudo");
    let dataset = w.get("dataset").cloned().unwrap_or(Value::Null);
    let mut tw = json!({
        "dataset": dataset,
        "image_size": num(ctx, "image_size", 128.0) as u64,
        "epochs": (num(ctx, "epochs", 30.0) as u64).max(30),
        "early_stopping": 10,
    });
    if let Some(width) = w.get("width") {
        tw["width"] = width.clone();
    }
    Some(Candidate {
        patch: vec![
            PatchOp::Add {
                path: format!("/stages/{teacher}"),
                value: json!({
                    "description": "Learns from the boxed images (and the negatives) to box the other positives.",
                    "uses": "detector.train",
                    "with": tw,
                }),
            },
            PatchOp::Add {
                path: format!("/stages/{pseudo}"),
                value: json!({
                    "description": "The teacher's confident boxes on the positive images that have none.",
                    "uses": "pseudo_label",
                    "with": {"teacher": teacher, "dataset": dataset, "confidence": 0.5, "max_boxes": 3},
                }),
            },
            set(ctx, "from", json!([pseudo])),
        ],
        rationale: format!(
            "the audit finds that {summary}: `{}` learns only from the boxed images and leaves the other `{target}` images out. A teacher (`{teacher}`, trained on the boxed images and the negatives) boxes those positives where it is confident (0.5 or more, `{pseudo}`), and `{}` learns from both; {}",
            ctx.train,
            ctx.train,
            best_evidence(ctx)
        ),
    })
}

/// What the detector finds, for rationales.
fn finding(ctx: &Context<'_>) -> String {
    ctx.task
        .and_then(|t| t.target.clone().or_else(|| t.priority_class.clone()))
        .unwrap_or_else(|| "finding".into())
}

/// The heuristic catalogue for a `detector.train` stage, in the order it is walked.
fn detector_catalogue(ctx: &Context<'_>) -> Vec<Candidate> {
    // 1. Sparse boxes: a teacher on the boxed images labels the image-level positives.
    let mut out: Vec<Candidate> = pseudo_labelling(ctx).into_iter().collect();
    let mut push =
        |patch: Vec<PatchOp>, rationale: String| out.push(Candidate { patch, rationale });
    let w = with(ctx);
    let task = ctx.task;
    let target = finding(ctx);
    let from: Vec<String> = w
        .get("from")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let training = ctx.training;
    let count = |k: &str| training.and_then(|t| t[k].as_u64());

    // 2. Pseudo-labels are a teacher's guesses: softer targets, more negatives, and a
    // lower confidence when the teacher left many positives out.
    if let Some(pseudo) = from.first() {
        let added = match (count("pseudo_labelled"), count("train_with_boxes")) {
            (Some(p), Some(b)) => format!(
                "the best round trained on {b} images with boxes, {p} of them pseudo-labelled"
            ),
            _ => best_evidence(ctx),
        };
        if num(ctx, "label_smoothing", 0.0) == 0.0 {
            push(
                vec![set(ctx, "label_smoothing", json!(0.05))],
                format!(
                    "pseudo-labels are a teacher's guesses, not ground truth: smoothing the objectness and class targets (0.05) keeps `{}` from trusting them fully; {added}",
                    ctx.train
                ),
            );
        }
        if w.get("neg_pos_ratio").is_none() {
            push(
                vec![set(ctx, "neg_pos_ratio", json!(2.0))],
                format!(
                    "the pseudo-labels add many positive images; two background images per image with boxes keeps the detector from firing on every image; {added}"
                ),
            );
        }
        let confidence = ctx.best["stages"][pseudo.as_str()]["with"]["confidence"]
            .as_f64()
            .unwrap_or(0.5);
        if let (Some(left), Some(labelled)) = (
            count("unboxed_positives_left_out"),
            count("pseudo_labelled"),
        ) && left * 2 > labelled
            && confidence > 0.3
        {
            push(
                vec![PatchOp::Add {
                    path: format!("/stages/{pseudo}/with/confidence"),
                    value: json!(0.3),
                }],
                format!(
                    "the teacher boxed {labelled} unboxed positive images at confidence {confidence} and left {left} out: at 0.3 it labels more of them, trading some label noise for coverage"
                ),
            );
        }
    }

    // 3. What the request says matters most: missed findings.
    let fn_averse = task.is_some_and(|t| {
        t.error_preference == ErrorPreference::MinimizeFalseNegatives || t.priority_class.is_some()
    });
    let radius = num(ctx, "center_radius", 2.5);
    if fn_averse && radius < 3.5 {
        let recall = best_metric(ctx, "recall")
            .map(|r| format!("the best round's validation recall is {r:.3}"))
            .unwrap_or_else(|| best_evidence(ctx));
        push(
            vec![set(ctx, "center_radius", json!(radius + 1.0))],
            format!(
                "the request says a missed `{target}` is the worst error; a wider centre radius ({radius} -> {} strides) makes more positions around each box responsible for it, so more of the network learns to fire on a `{target}`; {recall}",
                radius + 1.0
            ),
        );
    }

    // 4. Many false positives: more background per image with boxes.
    if let (Some(precision), Some(recall)) =
        (best_metric(ctx, "precision"), best_metric(ctx, "recall"))
        && precision + 0.1 < recall
        && w.get("neg_pos_ratio").is_none()
    {
        push(
            vec![set(ctx, "neg_pos_ratio", json!(2.0))],
            format!(
                "the best round's validation precision {precision:.3} is well below its recall {recall:.3}: too many false boxes; two background images per image with boxes shows the detector more of what is not a `{target}`"
            ),
        );
    }

    // 5. Loose boxes: the right place, the wrong extent.
    if let (Some(m50), Some(m5095)) = (best_metric(ctx, "map50"), best_metric(ctx, "map50_95"))
        && m50 > 0.0
        && m5095 < 0.5 * m50
    {
        let weight = num(ctx, "box_weight", 2.0);
        push(
            vec![set(ctx, "box_weight", json!(weight * 2.0))],
            format!(
                "the best round finds the boxes (validation mAP@50 {m50:.3}) but places them loosely (mAP@50:95 {m5095:.3}): a heavier box loss ({weight} -> {}) trains tighter boxes",
                weight * 2.0
            ),
        );
    }

    // 6. Tuning, in the order the training curve suggests.
    out.extend(tuning(ctx));
    out
}

/// The heuristic proposer (the default; no network).
#[derive(Debug, Default)]
pub struct Heuristic;

impl Proposer for Heuristic {
    fn name(&self) -> &'static str {
        "heuristic"
    }

    fn propose(&mut self, ctx: &Context<'_>) -> Option<Candidate> {
        let tried = tried(ctx.rounds);
        catalogue(ctx)
            .into_iter()
            .find(|c| fresh(ctx, &c.patch, &tried))
    }
}

/// The action space the random proposer draws from: one parameter of the training stage
/// set to one value of a grid, within the policy.
pub fn action_space(ctx: &Context<'_>) -> Vec<Candidate> {
    if detector(ctx) {
        return detector_space(ctx);
    }
    let mut grid: Vec<(&str, Value)> = Vec::new();
    for lr in [1e-4, 3e-4, 1e-3, 3e-3] {
        grid.push(("lr", json!(lr)));
    }
    for e in [5, 10, 20, 30] {
        grid.push(("epochs", json!(e)));
    }
    for b in [16, 32, 64] {
        grid.push(("batch_size", json!(b)));
    }
    for s in [32, 64, 96, 128] {
        grid.push(("image_size", json!(s)));
    }
    for a in [0.0, 0.25, 0.5, 0.8] {
        grid.push(("augment", json!(a)));
    }
    for wd in [0.0, 0.01, 0.05, 0.1] {
        grid.push(("weight_decay", json!(wd)));
    }
    for b in ["small_cnn", "resnet18"] {
        grid.push(("backbone", json!(b)));
    }
    let kinds: &[&str] = if binary(ctx) {
        &["cross_entropy", "bce", "focal"]
    } else {
        &["cross_entropy", "focal"]
    };
    for k in kinds {
        grid.push(("loss", json!({"kind": k})));
    }
    for ls in [0.0, 0.05, 0.1] {
        grid.push(("loss", json!({"label_smoothing": ls})));
    }
    for cw in [true, false] {
        grid.push(("loss", json!({"class_weighted": cw})));
    }
    grid.push(("sampler", json!({"kind": "uniform"})));
    grid.push(("sampler", json!({"kind": "class_balanced"})));
    if binary(ctx) {
        grid.push((
            "sampler",
            json!({"kind": "ratio", "negatives_per_positive": 2.0}),
        ));
    }
    let confound = confound_attributes(ctx);
    if let Some((_, attr, debias)) = &confound {
        grid.push((
            "sampler",
            json!({"kind": "group_balanced", "attribute": attr}),
        ));
        for l in [0.1, 0.3, 1.0] {
            grid.push((
                "debias",
                json!({"kind": "gradient_reversal", "attribute": debias, "lambda": l}),
            ));
        }
    }
    for a in [0.2, 0.4] {
        grid.push(("mixup", json!({"alpha": a})));
    }
    grid.push(("ema", json!({"decay": 0.999})));
    let mut out: Vec<Candidate> = grid
        .into_iter()
        .map(|(k, v)| {
            let op = if k == "loss" {
                merge(ctx, k, v.clone())
            } else {
                set(ctx, k, v.clone())
            };
            Candidate {
                patch: vec![op],
                rationale: format!(
                    "drawn at random from the action space: {k} = {}",
                    inline(&v)
                ),
            }
        })
        .collect();
    for k in ["debias", "mixup", "ema"] {
        if let Some(op) = unset(ctx, k) {
            out.push(Candidate {
                patch: vec![op],
                rationale: format!("drawn at random from the action space: no {k}"),
            });
        }
    }
    out
}

/// The random proposer's space for a `detector.train` stage: one parameter set to one
/// value of a grid, or the pseudo-labelling stages the heuristic would insert.
fn detector_space(ctx: &Context<'_>) -> Vec<Candidate> {
    let mut grid: Vec<(&str, Value)> = Vec::new();
    for lr in [5e-4, 1e-3, 2e-3, 4e-3] {
        grid.push(("lr", json!(lr)));
    }
    for e in [10, 20, 30, 40] {
        grid.push(("epochs", json!(e)));
    }
    for b in [8, 16, 32] {
        grid.push(("batch_size", json!(b)));
    }
    for s in [64, 96, 128, 160] {
        grid.push(("image_size", json!(s)));
    }
    for a in [0.0, 0.25, 0.5, 0.8] {
        grid.push(("augment", json!(a)));
    }
    for wd in [0.0, 0.01, 0.05, 0.1] {
        grid.push(("weight_decay", json!(wd)));
    }
    for w in [16, 32] {
        grid.push(("width", json!(w)));
    }
    for r in [1.0, 2.0, 3.0] {
        grid.push(("neg_pos_ratio", json!(r)));
    }
    for ls in [0.0, 0.05, 0.1] {
        grid.push(("label_smoothing", json!(ls)));
    }
    for bw in [1.0, 2.0, 4.0] {
        grid.push(("box_weight", json!(bw)));
    }
    for r in [1.5, 2.5, 3.5] {
        grid.push(("center_radius", json!(r)));
    }
    let mut out: Vec<Candidate> = grid
        .into_iter()
        .map(|(k, v)| Candidate {
            patch: vec![set(ctx, k, v.clone())],
            rationale: format!(
                "drawn at random from the action space: {k} = {}",
                inline(&v)
            ),
        })
        .collect();
    if let Some(op) = unset(ctx, "neg_pos_ratio") {
        out.push(Candidate {
            patch: vec![op],
            rationale: "drawn at random from the action space: no neg_pos_ratio".into(),
        });
    }
    // The insertion of pseudo-labelling is in the policy's space too.
    if let Some(c) = pseudo_labelling(ctx) {
        out.push(Candidate {
            patch: c.patch,
            rationale: "drawn at random from the action space: a teacher and a pseudo_label stage feeding the training stage".into(),
        });
    }
    out
}

/// The random proposer: uniform over the untried actions the policy allows, seeded.
#[derive(Debug)]
pub struct Random {
    state: u64,
}

impl Random {
    /// A random proposer drawing from `seed`.
    pub fn new(seed: u64) -> Random {
        Random {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    fn next(&mut self) -> u64 {
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl Proposer for Random {
    fn name(&self) -> &'static str {
        "random"
    }

    fn propose(&mut self, ctx: &Context<'_>) -> Option<Candidate> {
        let tried = tried(ctx.rounds);
        let open: Vec<Candidate> = action_space(ctx)
            .into_iter()
            .filter(|c| fresh(ctx, &c.patch, &tried))
            .collect();
        if open.is_empty() {
            return None;
        }
        // One draw per round, from a stream that depends on the round, so a resumed loop
        // draws what the uninterrupted one would have.
        let mut r = Random {
            state: self.state ^ (ctx.rounds.len() as u64).wrapping_mul(0xd6e8_feb8_6659_fd93),
        };
        let pick = (r.next() % open.len() as u64) as usize;
        open.into_iter().nth(pick)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::journal::{Proposal, State};
    use crate::agent::score::ConstraintCheck;

    fn manifest() -> Value {
        json!({
            "version": 1, "name": "chest",
            "task": {"task": "binary_classification", "modality": "chest_xray", "target": "pneumothorax",
                     "positive_class": "pneumothorax", "objective": {"metric": "auc"}, "confounders": ["chest_drain"]},
            "datasets": {"images": {"format": "siim-acr", "root": "data"}},
            "stages": {
                "prep": {"uses": "command", "with": {"run": "true"}},
                "train": {"uses": "classifier.train", "with": {"dataset": "images", "loss": {"kind": "bce"}}},
                "evaluate": {"uses": "evaluate", "with": {"model": "train", "confound": "drain"}}
            }
        })
    }

    fn audit() -> Value {
        json!({"classes": [{"name": "no_pneumothorax", "train": 311}, {"name": "pneumothorax", "train": 105}],
               "cross_tabs": {"drain": {"train": [{"class": "pneumothorax", "p_given_positive": 0.61, "p_given_negative": 0.074, "auc": 0.768}]}}})
    }

    fn round(n: u32, base: &Value, patch: Patch, value: f64, kept: bool) -> Round {
        let new = patch::apply(base, &patch).unwrap();
        Round {
            round: n,
            state: State::Done,
            kept,
            proposal: Proposal {
                proposer: "heuristic".into(),
                summary: String::new(),
                rationale: String::new(),
                patch,
                base: None,
                notes: Vec::new(),
            },
            diff: String::new(),
            manifest_hash: manifest_hash(&new),
            change: if n == 0 {
                String::new()
            } else {
                change_key(base, &new)
            },
            score: Some(Score {
                metric: "auc".into(),
                value,
                ci: None,
                constraints: vec![],
                confound: None,
                confound_ci: None,
                metrics: Default::default(),
            }),
            evidence: None,
            verdict: String::new(),
            started: String::new(),
            duration_s: 0.0,
            run_id: None,
        }
    }

    #[test]
    fn the_heuristic_starts_from_the_confounder_with_the_audit_as_evidence_and_never_repeats() {
        let best = manifest();
        let audit = audit();
        let policy = Policy::default();
        let attrs = vec!["drain".to_string(), "drain_prob".to_string()];
        let task: TaskSpec = serde_json::from_value(best["task"].clone()).unwrap();
        let mut rounds = vec![round(0, &best, vec![], 0.90, true)];
        fn context<'a>(
            (task, best, policy, audit, attrs): (
                &'a TaskSpec,
                &'a Value,
                &'a Policy,
                &'a Value,
                &'a [String],
            ),
            rounds: &'a [Round],
        ) -> Context<'a> {
            Context {
                task: Some(task),
                best,
                policy,
                train: "train",
                rounds,
                audit: Some(audit),
                attributes: attrs,
                confound: Some("drain"),
                training: None,
            }
        }
        let parts = (&task, &best, &policy, &audit, attrs.as_slice());
        let mut h = Heuristic;
        let first = h.propose(&context(parts, &rounds)).unwrap();
        assert_eq!(
            summarize(&best, &first.patch),
            "train.sampler: + {attribute: drain, kind: group_balanced}"
        );
        assert!(
            first
                .rationale
                .contains("61.0% of pneumothorax training images against 7.4%"),
            "{}",
            first.rationale
        );
        assert!(first.rationale.contains("AUC 0.768"), "{}", first.rationale);
        // Tried and not kept: the next is gradient reversal on the predicted probability.
        rounds.push(round(1, &best, first.patch.clone(), 0.89, false));
        let second = h.propose(&context(parts, &rounds)).unwrap();
        assert_eq!(
            summarize(&best, &second.patch),
            "train.debias: + {attribute: drain_prob, kind: gradient_reversal, lambda: 0.1}"
        );
        // Lambda 0.1 made things worse: the climb stops, and mixup comes next.
        rounds.push(round(2, &best, second.patch.clone(), 0.85, false));
        let third = h.propose(&context(parts, &rounds)).unwrap();
        assert_eq!(
            summarize(&best, &third.patch),
            "train.mixup: + {alpha: 0.2}"
        );
        assert!(
            third.rationale.contains("round 0") && third.rationale.contains("0.9000"),
            "{}",
            third.rationale
        );
        // Walking on, nothing is proposed twice and every proposal stays in the policy.
        let mut seen = HashSet::new();
        for n in 3..60 {
            let Some(c) = h.propose(&context(parts, &rounds)) else {
                break;
            };
            let s = summarize(&best, &c.patch);
            assert!(seen.insert(s.clone()), "{s} proposed twice");
            let new = patch::apply(&best, &c.patch).unwrap();
            policy::check(&policy, &best, &new).unwrap();
            rounds.push(round(n, &best, c.patch, 0.5, false));
        }
        assert!(
            h.propose(&context(parts, &rounds)).is_none(),
            "the catalogue runs out"
        );
    }

    #[test]
    fn the_training_curve_orders_the_tuning() {
        let mut best = manifest();
        best.as_object_mut().unwrap().remove("task");
        let policy = Policy::default();
        let rounds = vec![round(0, &best, vec![], 0.8, true)];
        let first = |training: Option<&Value>| {
            let ctx = Context {
                task: None,
                best: &best,
                policy: &policy,
                train: "train",
                rounds: &rounds,
                audit: None,
                attributes: &[],
                confound: None,
                training,
            };
            let c = Heuristic.propose(&ctx).unwrap();
            (summarize(&best, &c.patch), c.rationale)
        };
        let rising = json!({"metric": "auc", "best": 0.8, "best_epoch": 10, "epochs_run": 10, "stopped_by": "epochs"});
        let (change, why) = first(Some(&rising));
        assert_eq!(change, "train.early_stopping: + 5; train.epochs: + 20");
        assert!(
            why.contains("still rising when training ended (best 0.8000 at epoch 10 of 10)"),
            "{why}"
        );
        let early = json!({"metric": "auc", "best": 0.8, "best_epoch": 3, "epochs_run": 10, "stopped_by": "epochs"});
        let (change, why) = first(Some(&early));
        assert_eq!(change, "train.augment: + 0.8");
        assert!(why.contains("past its peak"), "{why}");
        assert_eq!(first(None).0, "train.lr: + 0.0003");
    }

    #[test]
    fn setting_a_default_is_not_a_change() {
        let best = manifest();
        let set = |k: &str, v: Value| {
            let p = vec![PatchOp::Add {
                path: format!("/stages/train/with/{k}"),
                value: v,
            }];
            same_run(&best, &patch::apply(&best, &p).unwrap())
        };
        assert!(set("batch_size", json!(32)), "32 is the default batch size");
        assert!(!set("batch_size", json!(64)));
        assert!(set("loss", json!({"kind": "bce", "label_smoothing": 0.0})));
        assert!(!set("loss", json!({"kind": "focal"})));
        let policy = Policy::default();
        let rounds = vec![round(0, &best, vec![], 0.9, true)];
        let ctx = Context {
            task: None,
            best: &best,
            policy: &policy,
            train: "train",
            rounds: &rounds,
            audit: None,
            attributes: &[],
            confound: None,
            training: None,
        };
        for c in action_space(&ctx) {
            if fresh(&ctx, &c.patch, &tried(&rounds)) {
                assert!(
                    !same_run(&best, &patch::apply(&best, &c.patch).unwrap()),
                    "{}",
                    summarize(&best, &c.patch)
                );
            }
        }
        assert!(!fresh(
            &ctx,
            &[PatchOp::Add {
                path: "/stages/train/with/batch_size".into(),
                value: json!(32)
            }],
            &tried(&rounds)
        ));
    }

    #[test]
    fn a_preference_against_missed_findings_comes_first() {
        let mut best = manifest();
        best["task"]["error_preference"] = json!("minimize_false_negatives");
        let task: TaskSpec = serde_json::from_value(best["task"].clone()).unwrap();
        let audit = audit();
        let policy = Policy::default();
        let rounds = vec![round(0, &best, vec![], 0.9, true)];
        let ctx = Context {
            task: Some(&task),
            best: &best,
            policy: &policy,
            train: "train",
            rounds: &rounds,
            audit: Some(&audit),
            attributes: &[],
            confound: None,
            training: None,
        };
        let c = Heuristic.propose(&ctx).unwrap();
        assert_eq!(
            summarize(&best, &c.patch),
            "train.loss.class_weighted: + true"
        );
        assert!(
            c.rationale.contains(
                "311 `no_pneumothorax` training images against 105 `pneumothorax` (3.0x)"
            ),
            "{}",
            c.rationale
        );
    }

    #[test]
    fn a_significant_reliance_and_a_missed_constraint_come_before_everything() {
        // A request that puts missed findings first would start with the class weights.
        let mut best = manifest();
        best["task"]["error_preference"] = json!("minimize_false_negatives");
        let task: TaskSpec = serde_json::from_value(best["task"].clone()).unwrap();
        let (audit, policy) = (audit(), Policy::default());
        let attrs = vec!["drain".to_string()];
        let propose = |rounds: &[Round]| {
            Heuristic
                .propose(&Context {
                    task: Some(&task),
                    best: &best,
                    policy: &policy,
                    train: "train",
                    rounds,
                    audit: Some(&audit),
                    attributes: &attrs,
                    confound: Some("drain"),
                    training: None,
                })
                .unwrap()
        };
        let mut start = round(0, &best, vec![], 0.9, true);
        let s = start.score.as_mut().unwrap();
        s.confound = Some(("drain".into(), 0.1));
        s.confound_ci = Some((-0.05, 0.25));
        let c = propose(std::slice::from_ref(&start));
        assert_eq!(
            summarize(&best, &c.patch),
            "train.loss.class_weighted: + true"
        );
        // The reliance is significant: the confounder comes first, and the rationale
        // cites it.
        let s = start.score.as_mut().unwrap();
        s.confound = Some(("drain".into(), 0.3));
        s.confound_ci = Some((0.15, 0.45));
        let c = propose(std::slice::from_ref(&start));
        assert_eq!(
            summarize(&best, &c.patch),
            "train.sampler: + {attribute: drain, kind: group_balanced}"
        );
        assert!(
            c.rationale.contains(
                "still leans on `drain`: partial correlation 0.300 (95% CI 0.150 to 0.450)"
            ),
            "{}",
            c.rationale
        );
        // A specificity the best round misses on its interval comes before that.
        start.score.as_mut().unwrap().constraints = vec![ConstraintCheck {
            metric: "specificity".into(),
            op: ">=".into(),
            bound: 0.8,
            value: 0.6,
            met: false,
            verdict: Some(crate::task::requirements::Verdict::NotMet),
        }];
        let c = propose(std::slice::from_ref(&start));
        assert_eq!(
            summarize(&best, &c.patch),
            "train.sampler: + {kind: ratio, negatives_per_positive: 2.0}"
        );
        assert!(
            c.rationale
                .contains("misses the constraint specificity >= 0.8"),
            "{}",
            c.rationale
        );
    }

    fn wrist() -> Value {
        json!({
            "version": 1, "name": "wrist",
            "task": {"task": "detection", "modality": "wrist_xray", "target": "fracture", "classes": ["fracture"],
                     "priority_class": "fracture", "error_preference": "minimize_false_negatives",
                     "objective": {"metric": "map50"}},
            "datasets": {"images": {"format": "yolo", "root": "data"}},
            "stages": {
                "audit": {"uses": "data.audit", "with": {"dataset": "images"}},
                "train": {"uses": "detector.train", "with": {"dataset": "images", "image_size": 64, "epochs": 20}},
                "evaluate": {"uses": "evaluate", "with": {"model": "train"}}
            }
        })
    }

    #[test]
    fn sparse_boxes_lead_a_detector_to_pseudo_labels_then_to_recall() {
        let best = wrist();
        let task: TaskSpec = serde_json::from_value(best["task"].clone()).unwrap();
        let audit = json!({"supervision": {"kind": "boxes", "summary": "63 of 1371 training images have boxes (41 boxes); 1308 have only image-level labels",
            "splits": {"train": {"images": 1371, "boxed": 63, "image_level_only": 1308, "boxes": 41, "masks": 0}}}});
        let policy = Policy::default();
        let mut rounds = vec![round(0, &best, vec![], 0.40, true)];
        let ctx = |best: &'_ Value, rounds: &'_ [Round], training: Option<&'_ Value>| {
            let c = Context {
                task: Some(&task),
                best,
                policy: &policy,
                train: "train",
                rounds,
                audit: Some(&audit),
                attributes: &[],
                confound: None,
                training,
            };
            Heuristic.propose(&c)
        };
        let first = ctx(&best, &rounds, None).unwrap();
        assert_eq!(
            summarize(&best, &first.patch),
            "stages.pseudo: + a pseudo_label stage; stages.teacher: + a detector.train stage; train.from: + [pseudo]"
        );
        let new = patch::apply(&best, &first.patch).unwrap();
        policy::check(&policy, &best, &new).unwrap();
        assert_eq!(new["stages"]["teacher"]["uses"], "detector.train");
        assert_eq!(new["stages"]["teacher"]["with"]["image_size"], 64);
        assert_eq!(new["stages"]["teacher"]["with"]["epochs"], 30);
        assert_eq!(new["stages"]["pseudo"]["uses"], "pseudo_label");
        assert_eq!(new["stages"]["pseudo"]["with"]["teacher"], "teacher");
        assert_eq!(new["stages"]["train"]["with"]["from"], json!(["pseudo"]));
        assert!(
            first
                .rationale
                .contains("63 of 1371 training images have boxes"),
            "{}",
            first.rationale
        );
        // Kept: the pseudo-labelled student is the best now. Its training left many
        // positives out, so after softer targets and more negatives comes a lower confidence.
        rounds.push(round(1, &best, first.patch.clone(), 0.70, true));
        let training = json!({"pseudo_labelled": 100, "unboxed_positives_left_out": 300, "train_with_boxes": 163});
        let mut seen = Vec::new();
        let mut base = new.clone();
        for n in 2..6 {
            let c = ctx(&base, &rounds, Some(&training)).unwrap();
            let s = summarize(&base, &c.patch);
            let next = patch::apply(&base, &c.patch).unwrap();
            policy::check(&policy, &base, &next).unwrap();
            rounds.push(round(n, &base, c.patch, 0.5, false));
            seen.push((s, c.rationale));
            base = new.clone();
        }
        let names: Vec<&str> = seen.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "train.label_smoothing: + 0.05",
                "train.neg_pos_ratio: + 2.0",
                "pseudo.confidence: 0.5 -> 0.3",
                "train.center_radius: + 3.5",
            ]
        );
        assert!(
            seen[1]
                .1
                .contains("163 images with boxes, 100 of them pseudo-labelled"),
            "{}",
            seen[1].1
        );
        assert!(seen[2].1.contains("left 300 out"), "{}", seen[2].1);
        // The random proposer draws detector parameters, never classifier ones.
        let c = Context {
            task: Some(&task),
            best: &best,
            policy: &policy,
            train: "train",
            rounds: &rounds[..1],
            audit: Some(&audit),
            attributes: &[],
            confound: None,
            training: None,
        };
        for cand in action_space(&c) {
            let next = patch::apply(&best, &cand.patch).unwrap();
            let resolved = resolved(&next["stages"]["train"]);
            assert!(resolved.is_some(), "{}", summarize(&best, &cand.patch));
        }
        assert!(action_space(&c).iter().any(|c| c.patch.len() == 3));
    }

    #[test]
    fn random_draws_are_seeded_untried_and_within_the_policy() {
        let best = manifest();
        let task: TaskSpec = serde_json::from_value(best["task"].clone()).unwrap();
        let policy = Policy {
            allow: Some(vec![
                "/stages/train/with/lr".into(),
                "/stages/train/with/epochs".into(),
            ]),
            ..Policy::default()
        };
        let mut rounds = vec![round(0, &best, vec![], 0.9, true)];
        let draw = |seed: u64, rounds: &[Round]| {
            let ctx = Context {
                task: Some(&task),
                best: &best,
                policy: &policy,
                train: "train",
                rounds,
                audit: None,
                attributes: &[],
                confound: None,
                training: None,
            };
            Random::new(seed).propose(&ctx)
        };
        assert_eq!(draw(1, &rounds), draw(1, &rounds));
        let mut seen = HashSet::new();
        // 4 rates and 4 epoch counts, less lr 0.001 and 10 epochs, the defaults.
        for n in 1..=6 {
            let c = draw(1, &rounds).unwrap();
            let s = summarize(&best, &c.patch);
            assert!(
                s.starts_with("train.lr:") || s.starts_with("train.epochs:"),
                "{s}"
            );
            assert!(seen.insert(s), "drawn twice");
            rounds.push(round(n, &best, c.patch, 0.8, false));
        }
        assert_eq!(draw(1, &rounds), None, "every action tried");
    }
}
