//! `engine develop`: the developer loop (the paper's Algorithm 1 in manifest terms).
//!
//! Round 0 runs the manifest as written. Each later round asks the proposer for one change
//! to the best manifest so far, checks it (the patch applies, the policy allows it, the
//! rewritten text passes every check of `engine validate`), saves it, runs it (only what
//! the change touches re-runs; the rest is cached), scores the scoring `evaluate` stage's
//! validation metrics under the TaskSpec, and keeps it when the acceptance rule
//! (`engine_core::agent::score`) says it is better. Every round, kept or not, is a row of
//! the append-only table in `.engine/develop/<manifest>/`; the best manifest is always the
//! plain file `<manifest>.best.yaml` beside the original, which is never modified.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use engine_core::agent::diff::unified;
use engine_core::agent::journal::{Header, Journal, Proposal, Round, State, manifest_hash};
use engine_core::agent::patch;
use engine_core::agent::propose::{self, Candidate, Context, Heuristic, Proposer, Random};
use engine_core::agent::score::{self, Evidence, Score};
use engine_core::agent::{policy, rewrite};
use engine_core::events::{Outcome, RunStatus};
use engine_core::load::{LoadedManifest, load_text};
use engine_core::manifest::{Policy, StageParams};
use engine_core::store::Store;
use serde_json::Value;

use crate::apply::{Ran, Runner, RunnerError, choose_reporter, lock_workspace};
use crate::cli::{DevelopArgs, ProposerKind};
use crate::commands::load_or_report;
use crate::evidence::{self, Judging, Validation};
use crate::propose_llm::LlmProposer;
use crate::{EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE};

/// The stages a history scores: the `evaluate` stage and the training stage it reads.
#[derive(Debug, Clone)]
pub struct Scoring {
    /// The `evaluate` stage.
    pub evaluate: String,
    /// The training stage (`classifier.train` or `detector.train`) it evaluates.
    pub train: String,
    /// The attribute it analyses as a confounder.
    pub confound: Option<String>,
}

/// Finds the scoring stages of a manifest: `policy.score`, else its only `evaluate` stage
/// without a baseline.
pub fn scoring(m: &LoadedManifest) -> Result<Scoring, String> {
    let named = m.manifest.policy.as_ref().and_then(|p| p.score.clone());
    let candidates: Vec<&String> = m
        .params
        .iter()
        .filter(|(id, p)| match p {
            StageParams::Evaluate(e) => named.as_ref().map_or(e.baseline.is_none(), |n| n == *id),
            _ => false,
        })
        .map(|(id, _)| id)
        .collect();
    let id = match candidates.as_slice() {
        [one] => (*one).clone(),
        [] => {
            return Err(
                "the manifest has no `evaluate` stage to score rounds with (hint: add one that evaluates the training stage, as `engine init` writes it)"
                    .into(),
            );
        }
        many => {
            return Err(format!(
                "the manifest has {} `evaluate` stages ({}); name the one that scores rounds (hint: add `policy: {{score: STAGE}}`)",
                many.len(),
                many.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    };
    let Some(StageParams::Evaluate(e)) = m.params.get(&id) else {
        return Err(format!("`{id}` is not an evaluate stage"));
    };
    Ok(Scoring {
        evaluate: id,
        train: e.model.clone(),
        confound: e.confound.clone(),
    })
}

/// Makes `<stem>.best.yaml` hold the manifest of round `chosen`, unless the file holds
/// something no round ran (an edit by hand, which is left alone); returns what a reader
/// should know, if anything.
pub(crate) fn publish_best(
    journal: &Journal,
    manifest: &Path,
    rounds: &[Round],
    chosen: u32,
) -> anyhow::Result<Option<String>> {
    let path = best_path(manifest);
    let text = std::fs::read_to_string(journal.manifest_of(chosen)).with_context(|| {
        format!(
            "cannot read round {chosen}'s manifest {}",
            journal.manifest_of(chosen).display()
        )
    })?;
    let current = std::fs::read_to_string(&path).ok();
    if current.as_deref() == Some(text.as_str()) {
        return Ok(None);
    }
    if let Some(cur) = &current {
        let a_round = rounds.iter().any(|r| {
            std::fs::read_to_string(journal.manifest_of(r.round)).is_ok_and(|t| &t == cur)
        });
        if !a_round {
            return Ok(Some(format!(
                "{} holds a manifest no round ran (edited by hand?), so it is left as it is; round {chosen}'s manifest is {} (hint: move the file aside and the loop writes it again)",
                path.display(),
                journal.manifest_of(chosen).display()
            )));
        }
    }
    engine_core::store::write_atomic(&path, text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(None)
}

/// `<stem>.best.yaml` beside the manifest.
pub fn best_path(manifest: &Path) -> PathBuf {
    let stem = manifest
        .file_stem()
        .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
    manifest.with_file_name(format!("{stem}.best.yaml"))
}

fn text_hash(text: &str) -> String {
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

fn label(manifest: &Path, round: u32) -> String {
    let name = manifest
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    format!("{name} (round {round})")
}

/// The folder where `stage`'s outputs under the manifest's current settings are cached.
fn cached_dir(m: &LoadedManifest, store: &Store, stage: &str) -> Option<PathBuf> {
    let mut fp = engine_core::fingerprint::FingerprintDb::open(&store.fingerprint_memo());
    let plan = engine_core::plan::make_plan(m, store, &mut fp).ok()?;
    let dir = store.out_dir(&plan.stage(stage)?.digest);
    dir.is_dir().then_some(dir)
}

/// A JSON file that `stage` left in the cache under the manifest's current settings.
fn cached_json(m: &LoadedManifest, store: &Store, stage: &str, file: &str) -> Option<Value> {
    let text = std::fs::read_to_string(cached_dir(m, store, stage)?.join(file)).ok()?;
    serde_json::from_str(&text).ok()
}

/// The validation predictions of round `r`, from its record; a history begun before
/// records kept them finds them in the cache, and keeps them from then on.
fn validation_of(
    journal: &Journal,
    manifest: &Path,
    store: &Store,
    train: &str,
    r: u32,
) -> Result<Validation, String> {
    let record = journal.round_dir(r).join(evidence::KEPT);
    if let Some(v) = Validation::in_dir(&record) {
        return Ok(v);
    }
    let gone = || {
        format!(
            "the validation predictions of round {r} are neither in its record nor in the cache (hint: copy {} beside {} and `engine apply` the copy: the cache then holds them again)",
            journal.manifest_of(r).display(),
            manifest.display()
        )
    };
    let text = std::fs::read_to_string(journal.manifest_of(r)).map_err(|_| gone())?;
    let m = load_text(manifest, text).map_err(|_| gone())?;
    let found = cached_dir(&m, store, train)
        .and_then(|d| Validation::in_dir(&d))
        .ok_or_else(gone)?;
    Ok(found.keep(&record).unwrap_or(found))
}

/// The plain control's validation predictions in a finished run: the baseline of an
/// evaluation of the scored training stage.
fn control_of(
    m: &LoadedManifest,
    train: &str,
    summary: &engine_core::exec::RunSummary,
) -> Option<(String, PathBuf)> {
    let id = m.params.values().find_map(|p| match p {
        StageParams::Evaluate(e) if e.model == train => e.baseline.clone(),
        _ => None,
    })?;
    let dir = summary.stages.get(&id)?.outputs.clone()?;
    let preds = dir.join("predictions.csv");
    preds.is_file().then_some((id, preds))
}

/// The paired comparisons of a round (its validation predictions `mine`) with the best
/// round, and, for its reliance on the confounder, with round 0 and the plain control.
fn gather_evidence(
    judging: &Judging,
    score: &Score,
    mine: &Validation,
    best: u32,
    round: impl Fn(u32) -> Result<Validation, String>,
    control: Option<(String, PathBuf)>,
) -> Evidence {
    let mut ev = Evidence::default();
    match round(best) {
        Ok(b) => judging.against(score, mine, &b, &format!("round {best}"), &mut ev),
        Err(e) => ev.missing.push(e),
    }
    let (Some(_), Some(p)) = (judging.confound, mine.predictions()) else {
        return ev;
    };
    let mut references = vec![(best, format!("round {best}"))];
    if best != 0 {
        references.push((0, "round 0".to_owned()));
    }
    let mut others: Vec<(PathBuf, String)> = Vec::new();
    for (r, name) in references {
        match round(r) {
            Ok(v) => match v.predictions() {
                Some(q) => others.push((q.to_path_buf(), name)),
                None => ev.missing.push(format!("{name} is not a classifier")),
            },
            Err(e) => ev.missing.push(e),
        }
    }
    if let Some((id, preds)) = control {
        others.push((preds, format!("the plain control `{id}`")));
    }
    for (q, name) in others {
        match judging.reliance(p, &q, &name) {
            Ok(t) => ev.reliance.push(t),
            Err(e) => ev.missing.push(format!(
                "the reliance could not be compared with {name}: {e}"
            )),
        }
    }
    ev
}

/// The data audit of the training dataset, from the cache, when the manifest has one.
fn audit_of(m: &LoadedManifest, store: &Store, train: &str) -> Option<Value> {
    let dataset = match m.params.get(train)? {
        StageParams::ClassifierTrain(t) => &t.dataset,
        StageParams::DetectorTrain(t) => &t.dataset,
        _ => return None,
    };
    let id = m.params.iter().find_map(|(id, p)| match p {
        StageParams::DataAudit(a) if &a.dataset == dataset => Some(id.clone()),
        _ => None,
    })?;
    cached_json(m, store, &id, "audit.json")
}

fn attributes_of(m: &LoadedManifest, train: &str) -> Vec<String> {
    match m.params.get(train) {
        Some(StageParams::ClassifierTrain(t)) => {
            engine_core::load::train_attributes(&m.manifest.datasets, &m.params, t)
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// A proposal checked all the way: the new manifest's text, or why it was refused.
fn realise(
    manifest: &Path,
    best_text: &str,
    best_value: &Value,
    policy: &Policy,
    candidate: &Candidate,
) -> Result<(String, Value), String> {
    let new = patch::apply(best_value, &candidate.patch)
        .map_err(|e| format!("the patch does not apply: {e}"))?;
    policy::check(policy, best_value, &new).map_err(|e| format!("refused by the policy: {e}"))?;
    let text = rewrite::rewrite(best_text, &new).map_err(|e| e.to_string())?;
    load_text(manifest, text.clone()).map_err(|invalid| {
        format!(
            "the changed manifest does not pass its checks:\n{}",
            invalid.render()
        )
    })?;
    Ok((text, new))
}

fn fmt_score(s: &Score) -> String {
    let ci =
        s.ci.map(|(lo, hi)| format!(" [{lo:.3}, {hi:.3}]"))
            .unwrap_or_default();
    let confound = s
        .confound
        .as_ref()
        .map(|(a, p)| format!(", partial correlation with {a} {p:.3}"))
        .unwrap_or_default();
    let constraints: Vec<String> = s
        .constraints
        .iter()
        .map(|c| {
            format!(
                ", {} {:.3} {} {} {}",
                c.metric,
                c.value,
                c.op,
                c.bound,
                if c.met { "met" } else { "NOT met" }
            )
        })
        .collect();
    format!(
        "{} {:.4}{ci}{confound}{}",
        s.metric,
        s.value,
        constraints.concat()
    )
}

fn indent(text: &str, pad: &str) -> String {
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

enum Answer {
    Yes,
    No,
    Edit,
    Quit,
    Interrupted,
}

/// Opens `text` in the clinician's editor ($VISUAL, else $EDITOR, else vi) as `path`, and
/// returns the edited text when it changed.
fn edit_in_editor(path: &Path, text: &str) -> anyhow::Result<Option<String>> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("cannot start the editor `{editor}`"))?;
    if !status.success() {
        anyhow::bail!("the editor `{editor}` failed ({status})");
    }
    let edited = std::fs::read_to_string(path)?;
    Ok((edited != text).then_some(edited))
}

/// Asks at the terminal; Ctrl-C (which the runner catches) ends the wait too.
fn ask(question: &str, runner: &Runner) -> Answer {
    let mut out = std::io::stderr();
    loop {
        let _ = write!(out, "{question} [y]es / [n]o / [e]dit / [q]uit: ");
        let _ = out.flush();
        // Read on a thread, so that an interrupt is noticed while the line is awaited.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let read = std::io::stdin().lock().read_line(&mut line);
            let _ = tx.send(read.map(|n| (n, line)));
        });
        let line = loop {
            if runner.interrupted() {
                return Answer::Interrupted;
            }
            let got = rx.recv_timeout(Duration::from_millis(100));
            // Ctrl-C at a terminal may also end the input; the interrupt wins.
            if runner.interrupted() {
                return Answer::Interrupted;
            }
            match got {
                Ok(Ok((0, _)) | Err(_)) => return Answer::Quit,
                Ok(Ok((_, line))) => break line,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Answer::Quit,
            }
        };
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Answer::Yes,
            "n" | "no" => return Answer::No,
            "e" | "edit" => return Answer::Edit,
            "q" | "quit" => return Answer::Quit,
            _ => {
                let _ = writeln!(out, "answer y, n, e or q");
            }
        }
    }
}

/// Runs `engine develop`.
pub fn develop(args: &DevelopArgs) -> anyhow::Result<ExitCode> {
    let usage = |msg: String| {
        eprintln!("error: {msg}");
        Ok(ExitCode::from(EXIT_USAGE))
    };
    let bad_minutes = |m: Option<f64>| m.is_some_and(|m| !(0.0..=1e7).contains(&m) || m == 0.0);
    if bad_minutes(args.run_minutes) || bad_minutes(args.budget_minutes) {
        return usage(
            "--run-minutes and --budget-minutes must be positive numbers of minutes".into(),
        );
    }
    let machine = match crate::apply::Machine::from_flags(
        args.cpus,
        args.gpus.as_deref(),
        args.executor,
        args.partition.is_some(),
    ) {
        Ok(machine) => machine,
        Err(line) => {
            eprintln!("{line}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let llm = match args.proposer {
        ProposerKind::Llm => match args.llm.config() {
            Ok(cfg) => Some(LlmProposer::new(cfg)),
            Err(e) => return usage(format!("--proposer llm: {e}")),
        },
        _ => None,
    };
    let m0 = match load_or_report(&args.manifest) {
        Ok(m) => m,
        Err(code) => return Ok(code),
    };
    let scoring = match scoring(&m0) {
        Ok(s) => s,
        Err(e) => return usage(format!("{}: {e}", args.manifest.display())),
    };
    if serde_norway::from_str::<Value>(&m0.source)
        .ok()
        .and_then(|v| v["version"].as_u64())
        != Some(u64::from(engine_core::manifest::MANIFEST_VERSION))
    {
        return usage(format!(
            "{}: the manifest is in an older format; rounds rewrite its text, so save it in format version {} first",
            args.manifest.display(),
            engine_core::manifest::MANIFEST_VERSION
        ));
    }
    let policy = m0.manifest.policy.clone().unwrap_or_default();
    let task = m0.manifest.task.clone();
    let confounded = task.as_ref().is_some_and(|t| !t.confounders.is_empty());
    let judging = match m0.params.get(&scoring.evaluate) {
        Some(StageParams::Evaluate(e)) => Judging {
            task: task.as_ref(),
            options: engine_core::metrics::BinaryOptions {
                at_specificity: e.at_specificity,
                at_sensitivity: e.at_sensitivity,
            },
            confound: scoring.confound.as_deref(),
            bootstrap: engine_core::metrics::Bootstrap {
                resamples: e.bootstrap as usize,
                seed: m0.seed_of(&scoring.evaluate),
                ..engine_core::metrics::Bootstrap::default()
            },
        },
        _ => return usage(format!("`{}` is not an evaluate stage", scoring.evaluate)),
    };
    let gpus = match machine.gpus_for(&m0) {
        Ok(g) => g,
        Err(line) => {
            eprintln!("{line}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };

    let store = Store::at(&m0.dir);
    store
        .create()
        .with_context(|| format!("cannot create the store {}", store.root().display()))?;
    let holder = format!(
        "pid {} running `engine develop {}`",
        std::process::id(),
        args.manifest.display()
    );
    let _lock = lock_workspace(&store, &m0.dir, &holder)?;

    let journal = Journal::for_manifest(&m0.dir, &args.manifest);
    let initial_hash = text_hash(&m0.source);
    if journal.exists() {
        let same = journal
            .header()
            .is_some_and(|h| h.initial_text_hash == initial_hash);
        if args.restart || !same {
            if !args.restart {
                return usage(format!(
                    "{} changed since its history in {} began (hint: `--restart` keeps the old history aside and begins a new one; to continue from the best round, develop {} instead)",
                    args.manifest.display(),
                    journal.dir().display(),
                    best_path(&args.manifest).display()
                ));
            }
            let to = journal
                .archive()
                .context("cannot move the old history aside")?;
            eprintln!("the old history is kept in {}", to.display());
        }
    }
    if !journal.exists() {
        journal
            .create(&Header {
                manifest: args
                    .manifest
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                initial_text_hash: initial_hash,
                created: engine_core::clock::now_rfc3339(),
            })
            .with_context(|| format!("cannot create {}", journal.dir().display()))?;
    }
    let (mut rounds, torn) = match journal.rounds_repaired() {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    if let Some(w) = torn {
        eprintln!("note: {w}");
    }
    if let Some(chosen) = journal.chosen(&rounds) {
        // A loop stopped between recording a round and writing the best file left the
        // previous round's manifest there: the record decides.
        if let Some(note) = publish_best(&journal, &args.manifest, &rounds, chosen)? {
            eprintln!("note: {note}");
        }
    }
    if let Some(a) = journal.accepted() {
        println!(
            "round {a} is the clinician's choice (`engine accept`): {}, `engine test` and the report use it until another round is accepted; the loop searches on, and a round it keeps is offered, not applied",
            best_path(&args.manifest).display()
        );
    }
    if !rounds.is_empty() {
        let best = Journal::best(&rounds);
        println!(
            "resuming the history in {}: {} round(s) recorded{}",
            journal.dir().display(),
            rounds.len(),
            best.and_then(|b| Some(format!(
                ", best round {} ({})",
                b.round,
                fmt_score(b.score.as_ref()?)
            )))
            .unwrap_or_default()
        );
    }

    let reporter = choose_reporter(false, args.plain);
    let runner = match Runner::new(
        machine.cpus,
        gpus,
        args.executor,
        args.partition.clone(),
        reporter,
    ) {
        Ok(r) => r,
        Err(RunnerError::Usage(e)) => return usage(e),
        Err(RunnerError::Other(e)) => return Err(e),
    };
    let mut proposer: Box<dyn Proposer> = match args.proposer {
        ProposerKind::Heuristic | ProposerKind::Llm => Box::new(Heuristic),
        ProposerKind::Random => Box::new(Random::new(args.seed)),
    };
    let started = Instant::now();
    let limit = args.run_minutes.map(|m| Duration::from_secs_f64(m * 60.0));
    let mut audit: Option<Value> = None;
    let mut stopped_by = "the round limit";

    'rounds: while rounds.len() as u32 <= args.rounds {
        let n = rounds.len() as u32;
        if let Some(b) = args.budget_minutes
            && started.elapsed().as_secs_f64() > b * 60.0
        {
            stopped_by = "the time budget";
            break;
        }
        let best = Journal::best(&rounds).cloned();
        if n > 0 && best.is_none() {
            eprintln!(
                "error: round 0 (the manifest as written) did not succeed, so there is nothing to improve (hint: fix it with `engine apply`, then `engine develop --restart`)"
            );
            return Ok(ExitCode::from(EXIT_FAILED));
        }
        // Within the minimum improvement of the objective's maximum (1: every objective is
        // a rate or an area), no round can gain enough to be kept.
        if let Some(s) = best.as_ref().and_then(|b| b.score.as_ref())
            && s.feasible()
            && s.value + policy.min_improvement > 1.0 + 1e-12
            && journal.pending(n).is_none()
        {
            stopped_by = "the objective, within the policy's minimum improvement of its maximum on validation (no round could be kept)";
            break;
        }
        // The proposal: saved earlier and cut short, or a new one.
        let (proposal, text, diff) = match journal.pending(n) {
            Some(saved) => {
                println!("round {n}: resuming the saved proposal");
                saved
            }
            None if n == 0 => {
                let p = Proposal {
                    proposer: "initial".into(),
                    summary: "the manifest as written".into(),
                    rationale: "the starting point".into(),
                    patch: Vec::new(),
                    base: None,
                    notes: Vec::new(),
                };
                journal.save_pending(0, &p, Some(&m0.source), "")?;
                (p, Some(m0.source.clone()), String::new())
            }
            None => {
                let b = best.as_ref().map_or(0, |b| b.round);
                let best_text =
                    std::fs::read_to_string(journal.manifest_of(b)).with_context(|| {
                        format!(
                            "cannot read the best round's manifest {}",
                            journal.manifest_of(b).display()
                        )
                    })?;
                let best_value: Value = serde_norway::from_str(&best_text)
                    .context("the best round's manifest is not YAML")?;
                let best_m = match load_text(&args.manifest, best_text.clone()) {
                    Ok(m) => m,
                    Err(invalid) => {
                        eprintln!("{}", invalid.render());
                        return Ok(ExitCode::from(EXIT_USAGE));
                    }
                };
                if audit.is_none() {
                    audit = audit_of(&best_m, &store, &scoring.train);
                }
                let attributes = attributes_of(&best_m, &scoring.train);
                let training = cached_json(&best_m, &store, &scoring.train, "metrics.json");
                let ctx = Context {
                    task: task.as_ref(),
                    best: &best_value,
                    policy: &policy,
                    train: &scoring.train,
                    rounds: &rounds,
                    audit: audit.as_ref(),
                    attributes: &attributes,
                    confound: scoring.confound.as_deref(),
                    training: training.as_ref(),
                };
                let outcome = match &llm {
                    Some(l) => l
                        .propose(&ctx, &best_text, |patch| {
                            let c = Candidate {
                                patch: patch.clone(),
                                rationale: String::new(),
                            };
                            realise(&args.manifest, &best_text, &best_value, &policy, &c).map(drop)
                        })
                        .map(|o| (o.candidate, o.proposer.to_owned(), o.notes)),
                    None => proposer
                        .propose(&ctx)
                        .map(|c| (c, proposer.name().to_owned(), Vec::new())),
                };
                let Some((candidate, who, notes)) = outcome else {
                    stopped_by = "the proposer, which has nothing left to try";
                    break;
                };
                let p = Proposal {
                    proposer: who,
                    summary: propose::summarize(&best_value, &candidate.patch),
                    rationale: candidate.rationale.clone(),
                    patch: candidate.patch.clone(),
                    base: Some(b),
                    notes,
                };
                match realise(&args.manifest, &best_text, &best_value, &policy, &candidate) {
                    Ok((text, _)) => {
                        let diff = unified(
                            &best_text,
                            &text,
                            &label(&args.manifest, b),
                            &label(&args.manifest, n),
                        );
                        journal.save_pending(n, &p, Some(&text), &diff)?;
                        (p, Some(text), diff)
                    }
                    Err(why) => {
                        journal.save_pending(n, &p, None, &format!("refused: {why}\n"))?;
                        (p, None, format!("refused: {why}\n"))
                    }
                }
            }
        };
        println!("\nround {n}  [{}]  {}", proposal.proposer, proposal.summary);
        if n > 0 {
            for note in &proposal.notes {
                println!("  note: {note}");
            }
            println!("  why: {}", proposal.rationale);
            print!("{}", indent(&diff, "  "));
        }
        let round_start = engine_core::clock::now_rfc3339();
        let t0 = Instant::now();
        let base_value = best
            .as_ref()
            .and_then(|b| std::fs::read_to_string(journal.manifest_of(b.round)).ok())
            .and_then(|t| serde_norway::from_str::<Value>(&t).ok());
        let mut row = Round {
            round: n,
            state: State::Rejected,
            kept: false,
            proposal: proposal.clone(),
            diff: diff.clone(),
            manifest_hash: String::new(),
            change: String::new(),
            score: None,
            evidence: None,
            verdict: String::new(),
            started: round_start,
            duration_s: 0.0,
            run_id: None,
        };
        let Some(mut text) = text else {
            // A refused change counts as tried, so that it is not proposed again.
            if let Some(base) = &base_value
                && let Ok(v) = patch::apply(base, &proposal.patch)
            {
                row.change = propose::change_key(base, &v);
            }
            row.verdict = diff.trim().trim_start_matches("refused: ").to_owned();
            println!("  REFUSED: {}", row.verdict);
            journal.append(&row)?;
            rounds.push(row);
            continue;
        };
        let mut value: Value =
            serde_norway::from_str(&text).context("a round's manifest is not YAML")?;
        row.manifest_hash = manifest_hash(&value);
        if let Some(base) = &base_value {
            row.change = propose::change_key(base, &value);
        }
        if args.approve && n > 0 {
            loop {
                match ask(&format!("run round {n}?"), &runner) {
                    Answer::Yes => break,
                    Answer::No => {
                        row.verdict = "declined by the clinician".into();
                        println!("  declined");
                        journal.append(&row)?;
                        rounds.push(row);
                        continue 'rounds;
                    }
                    Answer::Quit => {
                        stopped_by = "the clinician";
                        break 'rounds;
                    }
                    Answer::Interrupted => {
                        println!(
                            "\ninterrupted: round {n} is saved and is asked again on the next `engine develop`"
                        );
                        return Ok(ExitCode::from(EXIT_INTERRUPTED));
                    }
                    Answer::Edit => {
                        let (Some(base), Some(b)) = (&base_value, best.as_ref()) else {
                            continue;
                        };
                        let base_text = std::fs::read_to_string(journal.manifest_of(b.round))?;
                        let edit_path = journal.round_dir(n).join("edit.yaml");
                        let edited = match edit_in_editor(&edit_path, &text) {
                            Ok(Some(t)) => t,
                            Ok(None) => {
                                println!("  unchanged");
                                continue;
                            }
                            Err(e) => {
                                println!("  {e:#}");
                                continue;
                            }
                        };
                        let checked = serde_norway::from_str::<Value>(&edited)
                            .map_err(|e| format!("not YAML: {e}"))
                            .and_then(|v| {
                                policy::check(&policy, base, &v)?;
                                load_text(&args.manifest, edited.clone())
                                    .map_err(|i| i.render())?;
                                Ok(v)
                            });
                        let v = match checked {
                            Ok(v) => v,
                            Err(e) => {
                                println!("  the edit is refused, and the proposal stands: {e}");
                                continue;
                            }
                        };
                        let patch = propose::patch_between(base, &v);
                        row.proposal.notes.push(format!(
                            "edited by the clinician; the {} proposer had proposed: {}",
                            row.proposal.proposer, row.proposal.summary
                        ));
                        row.proposal.proposer = "clinician".into();
                        row.proposal.summary = propose::summarize(base, &patch);
                        row.proposal.patch = patch;
                        row.diff = unified(
                            &base_text,
                            &edited,
                            &label(&args.manifest, b.round),
                            &label(&args.manifest, n),
                        );
                        text = edited;
                        value = v;
                        row.manifest_hash = manifest_hash(&value);
                        row.change = propose::change_key(base, &value);
                        journal.save_pending(n, &row.proposal, Some(&text), &row.diff)?;
                        println!("  edited: {}", row.proposal.summary);
                        print!("{}", indent(&row.diff, "  "));
                    }
                }
            }
        }
        let mut m = match load_text(&args.manifest, text.clone()) {
            Ok(m) => m,
            Err(invalid) => {
                row.verdict = format!(
                    "the manifest does not pass its checks: {}",
                    invalid.render()
                );
                journal.append(&row)?;
                rounds.push(row);
                continue;
            }
        };
        // The round's lock record and events name the round's own manifest file.
        m.path = journal.manifest_of(n);
        let ran = runner.run(&m, &store, limit)?;
        if runner.interrupted() {
            println!(
                "\ninterrupted: round {n} is saved and runs again on the next `engine develop`"
            );
            return Ok(ExitCode::from(EXIT_INTERRUPTED));
        }
        row.duration_s = t0.elapsed().as_secs_f64();
        match ran {
            Ran::Invalid(invalid) => {
                row.state = State::Failed;
                row.verdict = format!("could not be planned: {}", invalid.render());
            }
            Ran::Done(summary, timed_out) => {
                row.run_id = Some(summary.run_id.clone());
                if timed_out {
                    row.state = State::TimedOut;
                    row.verdict = format!(
                        "stopped at the time limit of {} minutes per run",
                        args.run_minutes.unwrap_or_default()
                    );
                } else if summary.status != RunStatus::Succeeded {
                    row.state = State::Failed;
                    let failed: Vec<String> = summary
                        .stages
                        .iter()
                        .filter(|(_, s)| matches!(s.outcome, Outcome::Failed | Outcome::TimedOut))
                        .map(|(id, s)| {
                            format!("{id}: {}", s.message.as_deref().unwrap_or("failed"))
                        })
                        .collect();
                    row.verdict = format!("the run failed ({})", failed.join("; "));
                } else {
                    let metrics = summary
                        .stages
                        .get(&scoring.evaluate)
                        .and_then(|s| s.outputs.clone())
                        .map(|d| d.join("metrics.json"));
                    let scored = metrics
                        .ok_or_else(|| {
                            format!("the scoring stage `{}` left no outputs", scoring.evaluate)
                        })
                        .and_then(|p| {
                            std::fs::read_to_string(&p)
                                .map_err(|e| format!("cannot read {}: {e}", p.display()))
                        })
                        .and_then(|t| serde_json::from_str::<Value>(&t).map_err(|e| e.to_string()))
                        .and_then(|v| score::score(task.as_ref(), &v));
                    match scored {
                        Err(e) => {
                            row.state = State::Failed;
                            row.verdict = format!("cannot score the round: {e}");
                        }
                        Ok(s) => {
                            row.state = State::Done;
                            // The validation predictions stay in the round's record, for
                            // the paired comparisons of later rounds.
                            let mine = summary
                                .stages
                                .get(&scoring.train)
                                .and_then(|st| st.outputs.clone())
                                .and_then(|d| Validation::in_dir(&d))
                                .ok_or_else(|| {
                                    format!("`{}` left no validation predictions", scoring.train)
                                })
                                .and_then(|v| {
                                    v.keep(&journal.round_dir(n).join(evidence::KEPT)).map_err(
                                        |e| format!("cannot keep the validation predictions: {e}"),
                                    )
                                });
                            match best
                                .as_ref()
                                .and_then(|b| Some((b.round, b.score.as_ref()?)))
                            {
                                None => {
                                    row.kept = true;
                                    row.verdict = "the starting point".into();
                                }
                                Some((b, bs)) => {
                                    let ev = match &mine {
                                        Ok(mine) => gather_evidence(
                                            &judging,
                                            &s,
                                            mine,
                                            b,
                                            |r| {
                                                validation_of(
                                                    &journal,
                                                    &args.manifest,
                                                    &store,
                                                    &scoring.train,
                                                    r,
                                                )
                                            },
                                            control_of(&m, &scoring.train, &summary),
                                        ),
                                        Err(e) => Evidence {
                                            missing: vec![e.clone()],
                                            ..Evidence::default()
                                        },
                                    };
                                    let (kept, why) =
                                        score::judge(&s, bs, &ev, &policy, confounded);
                                    row.kept = kept;
                                    row.verdict = why;
                                    row.evidence = Some(ev);
                                }
                            }
                            row.score = Some(s);
                        }
                    }
                }
            }
        }
        match (&row.score, row.state) {
            (Some(s), _) => println!(
                "  {}  {}: {}",
                fmt_score(s),
                if row.kept { "KEPT" } else { "not kept" },
                row.verdict
            ),
            (None, state) => println!("  {}: {}", state.as_str().to_uppercase(), row.verdict),
        }
        // The row first: a kill before the best file is written is repaired from it.
        journal.append(&row)?;
        let kept = row.kept;
        rounds.push(row);
        if kept {
            match journal.accepted() {
                Some(a) => println!(
                    "  the clinician's choice, round {a}, stands (`engine accept {n}` chooses this round instead)"
                ),
                None => {
                    if let Some(note) = publish_best(&journal, &args.manifest, &rounds, n)? {
                        eprintln!("note: {note}");
                    }
                }
            }
        }
    }

    println!(
        "\nstopped by {stopped_by} after {} round(s)",
        rounds.len().saturating_sub(1)
    );
    print!("{}", crate::history::table(&rounds));
    match Journal::best(&rounds) {
        Some(b) => {
            println!(
                "best: round {}{}{}",
                b.round,
                b.score
                    .as_ref()
                    .map(|s| format!(" ({})", fmt_score(s)))
                    .unwrap_or_default(),
                if journal.accepted().is_none() {
                    format!("; its manifest is {}", best_path(&args.manifest).display())
                } else {
                    String::new()
                }
            );
            println!("{}", crate::history::looks(&rounds));
            if let Some(a) = journal.accepted().filter(|a| *a != b.round) {
                println!(
                    "the clinician's choice remains round {a}: {} holds its manifest, and `engine test` and the report use it (`engine accept {}` to choose the loop's best)",
                    best_path(&args.manifest).display(),
                    b.round
                );
            }
            if b.score.as_ref().is_some_and(|s| !s.feasible()) {
                crate::history::print_frontier(&rounds);
            }
            println!(
                "review: `engine history {0}`, `engine explain N {0}`, `engine diff A B {0}`",
                args.manifest.display()
            );
        }
        None => println!("no round succeeded"),
    }
    Ok(ExitCode::SUCCESS)
}
