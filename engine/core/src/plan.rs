//! The plan: every stage's cache key, computed before anything runs, and whether it is
//! cached or must run, with the reason.

use std::collections::BTreeMap;

use crate::cache::{CACHE_FORMAT, CacheKey};
use crate::diag::{Diagnostic, Diagnostics};
use crate::fingerprint::{FingerprintDb, FingerprintError, hex};
use crate::load::{Invalid, LoadedManifest};
use crate::record::LockRecord;
use crate::source::push_segment;
use crate::store::Store;

/// Whether a stage must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// A complete entry for its key exists.
    Cached,
    /// It must run.
    Run,
}

/// One stage of the plan.
#[derive(Clone, Debug, serde::Serialize)]
pub struct StagePlan {
    /// Stage id.
    pub id: String,
    /// Kind name.
    pub kind: String,
    /// The full key.
    pub key: CacheKey,
    /// The key's digest.
    pub digest: String,
    /// Cached or to run.
    pub status: Status,
    /// Why it must run (empty when cached).
    pub reasons: Vec<String>,
}

/// The plan of a manifest, stages in topological order.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Plan {
    /// The stages.
    pub stages: Vec<StagePlan>,
}

impl Plan {
    /// The plan of one stage.
    pub fn stage(&self, id: &str) -> Option<&StagePlan> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// How many stages are cached and how many must run.
    pub fn counts(&self) -> (usize, usize) {
        let cached = self
            .stages
            .iter()
            .filter(|s| s.status == Status::Cached)
            .count();
        (cached, self.stages.len() - cached)
    }
}

/// Computes every stage's key and status. Input and dataset fingerprints come from `fp`.
pub fn make_plan(
    m: &LoadedManifest,
    store: &Store,
    fp: &mut FingerprintDb,
) -> Result<Plan, Invalid> {
    let lock = LockRecord::read(&m.path);
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut dataset_fps: BTreeMap<String, String> = BTreeMap::new();
    for (name, ds) in &m.manifest.datasets {
        match fp.tree(&m.dir.join(&ds.root)) {
            Ok(d) => {
                // The declaration (how the files are read and split) and the files' content;
                // the description does not change what a stage reads.
                let mut decl = ds.clone();
                decl.description = None;
                let decl = crate::canonical::canonicalize(
                    serde_json::to_value(&decl).unwrap_or(serde_json::Value::Null),
                );
                let mut h = blake3::Hasher::new();
                h.update(decl.to_string().as_bytes());
                h.update(b"\0");
                h.update(&d);
                dataset_fps.insert(name.clone(), h.finalize().to_hex()[..32].to_owned());
            }
            Err(e) => errors.push(
                m.diagnostic(
                    &format!("{}/root", push_segment("/datasets", name)),
                    format!("dataset `{name}`: {e}"),
                )
                .hint("check that the dataset's files are readable"),
            ),
        }
    }
    let mut digests: BTreeMap<String, String> = BTreeMap::new();
    let mut stages = Vec::new();
    for id in m.dag.order() {
        let stage = &m.manifest.stages[id];
        let params = &m.params[id];
        let mut inputs = BTreeMap::new();
        for (pattern, field) in params.input_files() {
            match fp.pattern(&m.dir, pattern) {
                Ok(d) => {
                    inputs.insert(pattern.to_owned(), hex(&d)[..32].to_owned());
                }
                Err(e) => {
                    let hint = match e {
                        FingerprintError::NoMatch(_) => {
                            "create the file, or correct the path (relative to the manifest's directory)"
                        }
                        _ => "check that the file is readable",
                    };
                    let what = match field.rsplit_once('/') {
                        Some(("with/inputs", _)) => "input".to_owned(),
                        _ => format!("`{}`", field.trim_start_matches("with/")),
                    };
                    errors.push(
                        m.diagnostic(
                            &format!("{}/{field}", push_segment("/stages", id)),
                            format!("stage `{id}`: {what} {e}"),
                        )
                        .hint(hint),
                    );
                }
            }
        }
        let upstream: BTreeMap<String, String> = params
            .stage_references()
            .into_iter()
            .filter(|r| r.data)
            .filter_map(|r| {
                digests
                    .get(r.target)
                    .map(|d| (r.target.to_owned(), d.clone()))
            })
            .collect();
        let datasets: BTreeMap<String, String> = params
            .dataset_references()
            .into_iter()
            .filter_map(|r| {
                dataset_fps
                    .get(r.target)
                    .map(|d| (r.target.to_owned(), d.clone()))
            })
            .collect();
        let key = CacheKey {
            cache_format: CACHE_FORMAT,
            kind: stage.uses.as_str().to_owned(),
            kind_version: stage.uses.implementation_version(),
            params: params.canonical_json(),
            upstream,
            datasets,
            inputs,
            seed: m.seed_of(id),
            task: stage
                .uses
                .reads_task()
                .then(|| {
                    m.manifest
                        .task
                        .as_ref()
                        .map(|t| serde_json::to_value(t).unwrap_or_default())
                })
                .flatten(),
            objective: stage
                .uses
                .reads_objective()
                .then(|| {
                    let o = m.manifest.task.as_ref()?.objective.as_ref()?;
                    serde_json::to_value(o).ok()
                })
                .flatten(),
        };
        let digest = key.digest();
        digests.insert(id.clone(), digest.clone());
        let (status, reasons) = if store.is_complete(&digest) {
            (Status::Cached, Vec::new())
        } else {
            (Status::Run, reasons_to_run(store, &lock, id, &key, &digest))
        };
        stages.push(StagePlan {
            id: id.clone(),
            kind: key.kind.clone(),
            key,
            digest,
            status,
            reasons,
        });
    }
    if !errors.is_empty() {
        return Err(Invalid {
            diagnostics: Diagnostics(errors).finish(),
            source: Some(m.source.clone()),
        });
    }
    Ok(Plan { stages })
}

fn reasons_to_run(
    store: &Store,
    lock: &LockRecord,
    id: &str,
    key: &CacheKey,
    digest: &str,
) -> Vec<String> {
    let Some(last) = lock.stages.get(id) else {
        return vec!["never run".to_owned()];
    };
    if last.key == digest {
        return vec!["its cache entry is missing".to_owned()];
    }
    match store.read_key(&last.key) {
        Some(old) => {
            let changes = key.changes_from(&old);
            if changes.is_empty() { vec!["its key changed".to_owned()] } else { changes }
        }
        None => vec!["its key changed since the last run (the previous entry is gone, so the change cannot be named)".to_owned()],
    }
}
