//! Reviewing a developer-loop history: `engine history`, `engine explain N`,
//! `engine diff A B` and `engine accept N`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use engine_core::agent::diff::unified;
use engine_core::agent::journal::{Journal, Round, State};
use engine_core::agent::score::Paired;
use serde_json::json;

use crate::EXIT_USAGE;

/// The change of each round's objective against the best round before it.
fn deltas(rounds: &[Round]) -> Vec<Option<f64>> {
    let mut best: Option<f64> = None;
    rounds
        .iter()
        .map(|r| {
            let v = r.score.as_ref().map(|s| s.value);
            let d = v.zip(best).map(|(v, b)| v - b);
            if r.kept {
                best = v;
            }
            d
        })
        .collect()
}

/// The rounds as a table: round, state, kept, objective, change against the best, change.
pub fn table(rounds: &[Round]) -> String {
    let metric = rounds
        .iter()
        .find_map(|r| r.score.as_ref().map(|s| s.metric.clone()))
        .unwrap_or_else(|| "score".into());
    let w = metric.len().max(9);
    let mut out = format!(
        "{:>5}  {:<9}  {:<4}  {:>w$}  {:>8}  {:>6}  change\n",
        "round", "state", "kept", metric, "vs best", "secs"
    );
    for (r, d) in rounds.iter().zip(deltas(rounds)) {
        out.push_str(&format!(
            "{:>5}  {:<9}  {:<4}  {:>w$}  {:>8}  {:>6.0}  {}\n",
            r.round,
            r.state.as_str(),
            if r.kept { "yes" } else { "" },
            r.score
                .as_ref()
                .map_or("-".into(), |s| format!("{:.4}", s.value)),
            d.map_or("-".into(), |d| format!("{d:+.4}")),
            r.duration_s,
            r.proposal.summary
        ));
    }
    out
}

/// When no round meets every constraint: the rounds no other round beats on both the
/// objective and the shortfall, for the clinician to choose from with `engine accept`.
pub fn print_frontier(rounds: &[Round]) {
    let scored: Vec<(&Round, f64, f64)> = rounds
        .iter()
        .filter(|r| r.state == State::Done)
        .filter_map(|r| r.score.as_ref().map(|s| (r, s.value, s.shortfall())))
        .collect();
    let frontier: Vec<&(&Round, f64, f64)> = scored
        .iter()
        .filter(|(_, v, f)| {
            !scored
                .iter()
                .any(|(_, v2, f2)| (v2 >= v && f2 <= f) && (v2 > v || f2 < f))
        })
        .collect();
    println!(
        "no round meets every constraint; the trade-offs found (no other round is better on both):"
    );
    for (r, v, f) in frontier {
        println!(
            "  round {:>3}: {} {v:.4}, constraints short by {f:.3}  ({})",
            r.round,
            r.score.as_ref().map_or("", |s| s.metric.as_str()),
            r.proposal.summary
        );
    }
    println!("choose one with `engine accept N MANIFEST`; it becomes the best manifest");
}

/// The history of `manifest`, or the only history in the current directory.
pub(crate) fn find(manifest: Option<&Path>) -> Result<(Journal, PathBuf), String> {
    if let Some(m) = manifest {
        let dir = match m.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = dir
            .canonicalize()
            .map_err(|e| format!("{}: {e}", dir.display()))?;
        let j = Journal::for_manifest(&dir, m);
        if !j.exists() {
            return Err(format!(
                "{} has no history yet (hint: `engine develop {}` starts one)",
                m.display(),
                m.display()
            ));
        }
        return Ok((j, m.to_path_buf()));
    }
    let root = Path::new(".engine").join("develop");
    let mut found: Vec<String> = std::fs::read_dir(&root)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.path().join("develop.json").is_file())
                .filter_map(|e| {
                    let text = std::fs::read_to_string(e.path().join("develop.json")).ok()?;
                    let h: engine_core::agent::journal::Header =
                        serde_json::from_str(&text).ok()?;
                    Some(h.manifest)
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.dedup();
    match found.as_slice() {
        [one] => find(Some(Path::new(one))),
        [] => Err("no developer-loop history in this directory (hint: run `engine develop MANIFEST`, or name the manifest)".into()),
        many => Err(format!("several histories here ({}); name the manifest", many.join(", "))),
    }
}

fn open(manifest: Option<&Path>) -> Result<(Journal, PathBuf, Vec<Round>), ExitCode> {
    let (j, m) = find(manifest).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let (rounds, _) = j.rounds().map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    Ok((j, m, rounds))
}

fn round_of(rounds: &[Round], n: u32) -> Result<&Round, ExitCode> {
    rounds.get(n as usize).ok_or_else(|| {
        eprintln!(
            "error: there is no round {n}; the history has rounds 0 to {}",
            rounds.len().saturating_sub(1)
        );
        ExitCode::from(EXIT_USAGE)
    })
}

/// How many rounds looked at the validation split, and what that means for its figures.
pub(crate) fn looks_sentence(k: usize) -> String {
    format!(
        "{k} round(s) were scored on the validation split and the best was chosen there: its validation figures are optimistic by selection, the more so the more rounds; the sealed test's are not"
    )
}

/// [`looks_sentence`] for a history's rounds.
pub(crate) fn looks(rounds: &[Round]) -> String {
    looks_sentence(Journal::looks(rounds))
}

/// `engine history`.
pub fn history(manifest: Option<&Path>, as_json: bool) -> anyhow::Result<ExitCode> {
    let (j, m, rounds) = match open(manifest) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let accepted = j.accepted();
    if as_json {
        let rows: Vec<_> = rounds
            .iter()
            .zip(deltas(&rounds))
            .map(|(r, d)| {
                json!({
                    "round": r.round,
                    "state": r.state,
                    "kept": r.kept,
                    "proposer": r.proposal.proposer,
                    "change": r.proposal.summary,
                    "metric": r.score.as_ref().map(|s| s.metric.clone()),
                    "value": r.score.as_ref().map(|s| s.value),
                    "vs_best": d,
                    "feasible": r.score.as_ref().map(|s| s.feasible()),
                    "verdict": r.verdict,
                    "evidence": r.evidence,
                    "duration_s": r.duration_s,
                })
            })
            .collect();
        let best = Journal::best(&rounds).map(|b| b.round);
        println!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"manifest": m, "rounds": rows, "best": best, "accepted": accepted,
                    "chosen": j.chosen(&rounds), "validation_looks": Journal::looks(&rounds)})
            )?
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("history of {} ({} round(s))", m.display(), rounds.len());
    print!("{}", table(&rounds));
    if let Some(b) = Journal::best(&rounds) {
        println!("best: round {}", b.round);
    }
    if let Some(a) = accepted {
        println!(
            "accepted by the clinician: round {a} (the best manifest, `engine test` and the report use it)"
        );
    }
    println!("{}", looks(&rounds));
    Ok(ExitCode::SUCCESS)
}

/// The acceptance rule's level in the history's round 0 manifest (the policy cannot change
/// in later rounds).
fn policy_alpha(j: &Journal) -> f64 {
    std::fs::read_to_string(j.manifest_of(0))
        .ok()
        .and_then(|t| serde_norway::from_str::<engine_core::manifest::Manifest>(&t).ok())
        .and_then(|m| m.policy)
        .unwrap_or_default()
        .alpha
}

/// `engine explain N`.
pub fn explain(n: u32, manifest: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (j, _, rounds) = match open(manifest) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let r = match round_of(&rounds, n) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    println!(
        "round {}: {} by the {} proposer",
        r.round,
        r.state.as_str(),
        r.proposal.proposer
    );
    println!("change: {}", r.proposal.summary);
    if let Some(b) = r.proposal.base {
        println!("made to: round {b}'s manifest");
    }
    for note in &r.proposal.notes {
        println!("note: {note}");
    }
    println!("why: {}", r.proposal.rationale);
    println!(
        "verdict: {}{}",
        if r.kept { "KEPT: " } else { "not kept: " },
        r.verdict
    );
    println!(
        "started {}, took {:.1} s{}",
        r.started,
        r.duration_s,
        r.run_id
            .as_ref()
            .map(|id| format!(", run {id}"))
            .unwrap_or_default()
    );
    if let Some(s) = &r.score {
        println!("validation metrics:");
        for (k, v) in &s.metrics {
            let mark = if *k == s.metric { "  <- objective" } else { "" };
            println!("  {k:<40} {v:.4}{mark}");
        }
        for c in &s.constraints {
            println!(
                "  constraint {} {} {}: {:.4} {}",
                crate::metrics::terminal_safe(&c.metric),
                c.op,
                c.bound,
                c.value,
                match c.verdict {
                    Some(v) => format!("({} on its interval)", v.shout()),
                    None if c.met => "met".to_owned(),
                    None => "NOT met".to_owned(),
                }
            );
        }
    }
    if let Some(ev) = &r.evidence {
        println!(
            "paired tests on the validation images (one-sided, level {}):",
            policy_alpha(&j)
        );
        let lines = ev
            .objective
            .iter()
            .chain(&ev.constraints)
            .map(Paired::describe)
            .chain(ev.reliance.iter().map(Paired::describe))
            .chain(ev.missing.iter().map(|m| format!("not compared: {m}")));
        for line in lines {
            println!("  {}", crate::metrics::terminal_safe(&line));
        }
    }
    if !r.proposal.patch.is_empty() {
        println!("patch: {}", serde_json::to_string(&r.proposal.patch)?);
    }
    if !r.diff.is_empty() {
        print!("{}", r.diff);
    }
    println!("manifest: {}", j.manifest_of(r.round).display());
    Ok(ExitCode::SUCCESS)
}

/// `engine diff A B`.
pub fn diff(a: u32, b: u32, manifest: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (j, m, rounds) = match open(manifest) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    for n in [a, b] {
        if let Err(c) = round_of(&rounds, n) {
            return Ok(c);
        }
    }
    let read = |n: u32| std::fs::read_to_string(j.manifest_of(n)).ok();
    let (Some(ta), Some(tb)) = (read(a), read(b)) else {
        eprintln!(
            "error: round {} was refused before it had a manifest; pick rounds that ran",
            if read(a).is_none() { a } else { b }
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let name = m
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    print!(
        "{}",
        unified(
            &ta,
            &tb,
            &format!("{name} (round {a})"),
            &format!("{name} (round {b})")
        )
    );
    Ok(ExitCode::SUCCESS)
}

/// `engine accept N`: the clinician's choice of round becomes the best manifest.
pub fn accept(n: u32, manifest: Option<&Path>) -> anyhow::Result<ExitCode> {
    let (j, m, rounds) = match open(manifest) {
        Ok(x) => x,
        Err(c) => return Ok(c),
    };
    let r = match round_of(&rounds, n) {
        Ok(r) => r,
        Err(c) => return Ok(c),
    };
    if r.state != State::Done {
        eprintln!(
            "error: round {n} {}; only a round that ran and was scored can be accepted",
            r.state.as_str()
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let text = std::fs::read_to_string(j.manifest_of(n))?;
    let best = crate::develop::best_path(&m);
    engine_core::store::write_atomic(&best, text.as_bytes())?;
    j.accept(n)?;
    println!(
        "round {n} accepted; {} now holds its manifest",
        best.display()
    );
    Ok(ExitCode::SUCCESS)
}
