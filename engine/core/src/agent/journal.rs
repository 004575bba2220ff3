//! The developer loop's records: an append-only results table (`rounds.jsonl`, one JSON
//! line per finished round, written with one `write` and synced), and per round a folder
//! with the proposal, the full manifest and its diff, written before the round runs.
//!
//! Resuming after Ctrl-C or `kill -9`: the rounds in the table are done; a proposal
//! without a row is the round that was cut short, and it runs again as it was proposed
//! (the cache keeps whatever of it had finished), so no round is lost or counted twice. A
//! last line cut short by a kill mid-write is dropped, and that round runs again.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::agent::patch::Patch;
use crate::agent::score::{Evidence, Score};

/// How a round ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// It ran and was scored.
    Done,
    /// A stage failed, or the scoring could not read the evaluation.
    Failed,
    /// It ran past the time budget of a run.
    TimedOut,
    /// The patch did not apply, broke the schema or the policy, and never ran.
    Rejected,
}

impl State {
    /// The name shown in tables.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Done => "done",
            State::Failed => "failed",
            State::TimedOut => "timed out",
            State::Rejected => "rejected",
        }
    }
}

/// A round's proposal, saved before it runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Which proposer made it (`initial` for round 0).
    pub proposer: String,
    /// The change in a line, for tables.
    pub summary: String,
    /// Why, citing the evidence.
    pub rationale: String,
    /// The JSON Patch on the best manifest of its time.
    pub patch: Patch,
    /// The round whose manifest the patch was applied to.
    #[serde(default)]
    pub base: Option<u32>,
    /// What happened on the way (for example a language model's refused replies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// One row of the results table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// From 0 (the manifest as the clinician wrote it).
    pub round: u32,
    /// How it ended.
    pub state: State,
    /// Whether it became the best.
    pub kept: bool,
    /// What was proposed.
    #[serde(flatten)]
    pub proposal: Proposal,
    /// The unified diff against the base round's manifest.
    #[serde(default)]
    pub diff: String,
    /// The blake3 hash of the manifest's canonical JSON (what "already tried" compares).
    #[serde(default)]
    pub manifest_hash: String,
    /// The identity of the change (`propose::change_key`), so that no change is tried twice.
    #[serde(default)]
    pub change: String,
    /// The validation score, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<Score>,
    /// The paired tests against the best round (and round 0 and the plain control) that it
    /// was judged on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
    /// Why it was or was not kept, or why it failed.
    pub verdict: String,
    /// When it started (RFC 3339, UTC).
    pub started: String,
    /// How long it took, in seconds.
    pub duration_s: f64,
    /// The engine run that executed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// The header of a history: which manifest it develops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The manifest's file name.
    pub manifest: String,
    /// The blake3 hash of its text when the history began.
    pub initial_text_hash: String,
    /// When the history began.
    pub created: String,
}

/// The hash that identifies a manifest's content (comments and layout aside).
pub fn manifest_hash(value: &Value) -> String {
    blake3::hash(crate::canonical::to_canonical_string(value).as_bytes())
        .to_hex()
        .to_string()
}

/// The records of one manifest's developer loop, under `.engine/develop/<stem>/`.
#[derive(Clone, Debug)]
pub struct Journal {
    dir: PathBuf,
}

impl Journal {
    /// The records of the manifest at `manifest` in the workspace `workspace`.
    pub fn for_manifest(workspace: &Path, manifest: &Path) -> Journal {
        let stem = manifest
            .file_stem()
            .map_or_else(|| "manifest".into(), |s| s.to_string_lossy().into_owned());
        Journal {
            dir: workspace.join(".engine").join("develop").join(stem),
        }
    }

    /// The folder of the records.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn table(&self) -> PathBuf {
        self.dir.join("rounds.jsonl")
    }

    /// Whether a history exists.
    pub fn exists(&self) -> bool {
        self.dir.join("develop.json").is_file()
    }

    /// The header, if a history exists.
    pub fn header(&self) -> Option<Header> {
        let text = std::fs::read_to_string(self.dir.join("develop.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Starts a history (the folder must not hold one).
    pub fn create(&self, header: &Header) -> std::io::Result<()> {
        std::fs::create_dir_all(self.dir.join("rounds"))?;
        crate::store::write_json(&self.dir.join("develop.json"), header)
    }

    /// Moves the history aside (to `<stem>.<time>`), for a fresh start; returns where.
    pub fn archive(&self) -> std::io::Result<PathBuf> {
        let stamp = crate::clock::new_run_id();
        let name = format!(
            "{}.{stamp}",
            self.dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        let to = self.dir.with_file_name(name);
        std::fs::rename(&self.dir, &to)?;
        Ok(to)
    }

    /// The finished rounds, in order, for readers: a last line without its line end (being
    /// written, or cut short by a kill) is left out, and the file is not touched.
    pub fn rounds(&self) -> Result<(Vec<Round>, Option<String>), String> {
        self.read(false)
    }

    /// The finished rounds, for the developer loop, which holds the workspace lock: a last
    /// line cut short by a kill mid-write is removed from the file and reported.
    pub fn rounds_repaired(&self) -> Result<(Vec<Round>, Option<String>), String> {
        self.read(true)
    }

    fn read(&self, repair: bool) -> Result<(Vec<Round>, Option<String>), String> {
        let path = self.table();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let mut rows = Vec::new();
        let mut good = 0usize;
        let mut torn = None;
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let complete = line.ends_with('\n');
            // Lines are written whole with their line end, so only the last can lack it.
            match (serde_json::from_str::<Round>(line.trim_end()), complete) {
                (Ok(r), true) => {
                    rows.push(r);
                    good += line.len();
                }
                (_, false) => {
                    torn = Some(format!(
                        "the last line of {} was cut short (the loop was killed while writing it); that round runs again",
                        path.display()
                    ));
                }
                (Err(e), true) => {
                    return Err(format!(
                        "{} line {}: not a round record: {e}",
                        path.display(),
                        i + 1
                    ));
                }
            }
        }
        if torn.is_some() && repair {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
            f.set_len(good as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot repair {}: {e}", path.display()))?;
        }
        for (i, r) in rows.iter().enumerate() {
            if r.round as usize != i {
                return Err(format!(
                    "{}: row {} holds round {}; the table has been edited by hand",
                    path.display(),
                    i + 1,
                    r.round
                ));
            }
        }
        Ok((rows, torn))
    }

    /// Appends a finished round: one write of one line, then a sync.
    pub fn append(&self, round: &Round) -> std::io::Result<()> {
        let mut line = serde_json::to_string(round).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.table())?;
        f.write_all(line.as_bytes())?;
        f.sync_all()
    }

    /// The folder of round `n`.
    pub fn round_dir(&self, n: u32) -> PathBuf {
        self.dir.join("rounds").join(format!("{n:03}"))
    }

    /// The manifest round `n` ran.
    pub fn manifest_of(&self, n: u32) -> PathBuf {
        self.round_dir(n).join("manifest.yaml")
    }

    /// Saves round `n`'s proposal, manifest text and diff before it runs. The proposal is
    /// written last, so a proposal on disk always has its manifest beside it.
    pub fn save_pending(
        &self,
        n: u32,
        proposal: &Proposal,
        manifest: Option<&str>,
        diff: &str,
    ) -> std::io::Result<()> {
        let dir = self.round_dir(n);
        std::fs::create_dir_all(&dir)?;
        let _ = std::fs::remove_file(dir.join("manifest.yaml"));
        if let Some(text) = manifest {
            crate::store::write_atomic(&dir.join("manifest.yaml"), text.as_bytes())?;
        }
        crate::store::write_atomic(&dir.join("diff.patch"), diff.as_bytes())?;
        crate::store::write_json(&dir.join("proposal.json"), proposal)
    }

    /// Round `n`'s saved proposal with its manifest text (none when it was refused) and
    /// diff, if it was saved.
    pub fn pending(&self, n: u32) -> Option<(Proposal, Option<String>, String)> {
        let dir = self.round_dir(n);
        let p: Proposal =
            serde_json::from_str(&std::fs::read_to_string(dir.join("proposal.json")).ok()?).ok()?;
        let text = std::fs::read_to_string(dir.join("manifest.yaml")).ok();
        let diff = std::fs::read_to_string(dir.join("diff.patch")).unwrap_or_default();
        Some((p, text, diff))
    }

    /// The round the clinician chose with `engine accept`, if any.
    pub fn accepted(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.dir.join("accepted.json")).ok()?;
        let v: Value = serde_json::from_str(&text).ok()?;
        v["round"].as_u64().and_then(|r| u32::try_from(r).ok())
    }

    /// Records the clinician's choice of round `n`.
    pub fn accept(&self, n: u32) -> std::io::Result<()> {
        crate::store::write_json(
            &self.dir.join("accepted.json"),
            &serde_json::json!({"round": n, "at": crate::clock::now_rfc3339()}),
        )
    }

    /// The best round: the last one kept.
    pub fn best(rounds: &[Round]) -> Option<&Round> {
        rounds.iter().rev().find(|r| r.kept)
    }

    /// The round that stands for the history: the one the clinician accepted, else the
    /// loop's best. The best manifest file, `engine test` and the report all name it.
    pub fn chosen(&self, rounds: &[Round]) -> Option<u32> {
        self.accepted()
            .or_else(|| Journal::best(rounds).map(|r| r.round))
    }

    /// How many rounds were scored on the validation split: each such look lets the
    /// choice of the best round fit that split's noise.
    pub fn looks(rounds: &[Round]) -> usize {
        rounds.iter().filter(|r| r.score.is_some()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(n: u32) -> Round {
        Round {
            round: n,
            state: State::Done,
            kept: n == 0,
            proposal: Proposal {
                proposer: "heuristic".into(),
                summary: "lr 0.001 -> 0.0003".into(),
                rationale: "because".into(),
                patch: Vec::new(),
                base: None,
                notes: Vec::new(),
            },
            diff: String::new(),
            manifest_hash: "h".into(),
            change: String::new(),
            score: None,
            evidence: None,
            verdict: "kept".into(),
            started: "2026-11-22T00:00:00.000Z".into(),
            duration_s: 1.0,
            run_id: None,
        }
    }

    #[test]
    fn rows_append_read_back_and_a_torn_last_line_is_dropped_once() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::for_manifest(tmp.path(), Path::new("pipeline.yaml"));
        j.create(&Header {
            manifest: "pipeline.yaml".into(),
            initial_text_hash: "x".into(),
            created: "now".into(),
        })
        .unwrap();
        assert_eq!(j.header().unwrap().manifest, "pipeline.yaml");
        for n in 0..3 {
            j.append(&row(n)).unwrap();
        }
        let (rows, torn) = j.rounds().unwrap();
        assert_eq!((rows.len(), torn), (3, None));
        assert_eq!(Journal::best(&rows).unwrap().round, 0);
        // A kill in the middle of writing round 3's line.
        let line = serde_json::to_string(&row(3)).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(j.table())
            .unwrap();
        f.write_all(&line.as_bytes()[..line.len() / 2]).unwrap();
        let (rows, torn) = j.rounds().unwrap();
        assert_eq!(rows.len(), 3);
        assert!(torn.is_some(), "a reader skips the partial line");
        assert!(
            j.rounds().unwrap().1.is_some(),
            "and leaves the file as it is"
        );
        let (rows, torn) = j.rounds_repaired().unwrap();
        assert_eq!(rows.len(), 3);
        assert!(torn.unwrap().contains("cut short"));
        let (rows, torn) = j.rounds().unwrap();
        assert_eq!((rows.len(), torn), (3, None), "the loop repaired the file");
        j.append(&row(3)).unwrap();
        assert_eq!(j.rounds().unwrap().0.len(), 4);
    }

    #[test]
    fn a_hand_edited_table_is_an_error_not_a_guess() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::for_manifest(tmp.path(), Path::new("p.yaml"));
        std::fs::create_dir_all(j.dir()).unwrap();
        j.append(&row(0)).unwrap();
        j.append(&row(2)).unwrap();
        assert!(j.rounds().unwrap_err().contains("edited by hand"));
        std::fs::write(j.table(), "not json\n{}\n").unwrap();
        assert!(j.rounds().unwrap_err().contains("line 1"));
    }

    #[test]
    fn pending_proposals_survive_with_their_manifest() {
        let tmp = tempfile::tempdir().unwrap();
        let j = Journal::for_manifest(tmp.path(), Path::new("p.yaml"));
        let p = row(1).proposal;
        j.save_pending(1, &p, Some("version: 1\n"), "--- a\n")
            .unwrap();
        let (q, text, diff) = j.pending(1).unwrap();
        assert_eq!(
            (q, text.as_deref(), diff.as_str()),
            (p, Some("version: 1\n"), "--- a\n")
        );
        assert!(j.pending(2).is_none());
    }
}
