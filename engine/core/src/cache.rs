//! The cache key: one struct holding every input that can change a stage's result,
//! hashed with blake3. Nothing else (resources, executor, workspace paths, YAML
//! comments or key order) may enter it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::to_canonical_string;

/// Version of the cache's format and of the key's meaning. Bump it whenever a field
/// changes meaning, so that no entry written under the old meaning is ever reused.
pub const CACHE_FORMAT: u32 = 2;

/// Everything a stage's result depends on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    /// [`CACHE_FORMAT`] when the key was made.
    pub cache_format: u32,
    /// The stage kind.
    pub kind: String,
    /// The version of that kind's implementation.
    pub kind_version: u32,
    /// The stage's resolved parameters, canonical JSON.
    pub params: Value,
    /// Keys of the stages it reads from, by stage id.
    pub upstream: BTreeMap<String, String>,
    /// Fingerprints of the datasets it reads, by dataset name.
    pub datasets: BTreeMap<String, String>,
    /// Fingerprints of its declared input files, by pattern as written.
    pub inputs: BTreeMap<String, String>,
    /// The stage's seed.
    pub seed: u64,
    /// The manifest's TaskSpec, for the kinds whose results depend on the request
    /// ([`crate::manifest::StageKind::reads_task`]: an evaluation's verdicts and threshold);
    /// absent otherwise, so that other kinds' keys do not change with the request's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<Value>,
    /// The TaskSpec's objective, for the kinds that pick their best epoch by it
    /// ([`crate::manifest::StageKind::reads_objective`]); absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub objective: Option<Value>,
}

impl CacheKey {
    /// The key's digest: 32 hex digits of blake3 over the key's canonical JSON.
    pub fn digest(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        let hash = blake3::hash(to_canonical_string(&value).as_bytes());
        hash.to_hex()[..32].to_owned()
    }

    /// What changed from `old` to `self`, in words, one item per changed field.
    pub fn changes_from(&self, old: &CacheKey) -> Vec<String> {
        let mut out = Vec::new();
        if self.cache_format != old.cache_format {
            out.push(format!(
                "cache format {} → {}",
                old.cache_format, self.cache_format
            ));
        }
        if self.kind != old.kind {
            out.push(format!("kind `{}` → `{}`", old.kind, self.kind));
        } else if self.kind_version != old.kind_version {
            out.push(format!(
                "implementation of `{}` v{} → v{}",
                self.kind, old.kind_version, self.kind_version
            ));
        }
        let mut params = Vec::new();
        diff_values("", &old.params, &self.params, &mut params);
        if !params.is_empty() {
            out.push(format!("params changed: {}", params.join(", ")));
        }
        diff_maps("upstream", &old.upstream, &self.upstream, &mut out);
        diff_maps("dataset", &old.datasets, &self.datasets, &mut out);
        diff_maps("input", &old.inputs, &self.inputs, &mut out);
        if self.seed != old.seed {
            out.push(format!("seed {} → {}", old.seed, self.seed));
        }
        if self.task != old.task {
            out.push("the task (the request's requirements) changed".to_owned());
        }
        out
    }
}

fn diff_maps(
    what: &str,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    out: &mut Vec<String>,
) {
    for (k, v) in new {
        match old.get(k) {
            None => out.push(format!("{what} `{k}` added")),
            Some(o) if o != v => out.push(format!("{what} `{k}` changed")),
            Some(_) => {}
        }
    }
    for k in old.keys() {
        if !new.contains_key(k) {
            out.push(format!("{what} `{k}` removed"));
        }
    }
}

/// Dotted paths of the leaves that differ between two JSON values.
fn diff_values(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_values(&sub, x, y, out),
                    _ => out.push(sub),
                }
            }
        }
        (a, b) if a != b => out.push(if path.is_empty() {
            "(all)".to_owned()
        } else {
            path.to_owned()
        }),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn base() -> CacheKey {
        CacheKey {
            cache_format: CACHE_FORMAT,
            kind: "command".into(),
            kind_version: 1,
            params: json!({"run": "echo hi", "outputs": ["a.txt"]}),
            upstream: BTreeMap::from([("prep".into(), "k1".into())]),
            datasets: BTreeMap::from([("siim".into(), "d1".into())]),
            inputs: BTreeMap::from([("script.py".into(), "i1".into())]),
            seed: 7,
            task: None,
            objective: None,
        }
    }

    fn differs(change: impl FnOnce(&mut CacheKey)) -> bool {
        let a = base();
        let mut b = base();
        change(&mut b);
        a.digest() != b.digest()
    }

    #[test]
    fn cache_format_changes_the_key() {
        assert!(differs(|k| k.cache_format += 1));
    }

    #[test]
    fn kind_changes_the_key() {
        assert!(differs(|k| k.kind = "classifier.train".into()));
    }

    #[test]
    fn kind_version_changes_the_key() {
        assert!(differs(|k| k.kind_version += 1));
    }

    #[test]
    fn params_change_the_key() {
        assert!(differs(|k| k.params["run"] = json!("echo bye")));
        assert!(differs(|k| k.params["outputs"] = json!(["b.txt"])));
    }

    #[test]
    fn upstream_keys_change_the_key() {
        assert!(differs(|k| {
            k.upstream.insert("prep".into(), "k2".into());
        }));
        assert!(differs(|k| {
            k.upstream.insert("other".into(), "k1".into());
        }));
    }

    #[test]
    fn dataset_fingerprints_change_the_key() {
        assert!(differs(|k| {
            k.datasets.insert("siim".into(), "d2".into());
        }));
    }

    #[test]
    fn input_fingerprints_change_the_key() {
        assert!(differs(|k| {
            k.inputs.insert("script.py".into(), "i2".into());
        }));
    }

    #[test]
    fn seed_changes_the_key() {
        assert!(differs(|k| k.seed = 8));
    }

    #[test]
    fn the_task_changes_the_key_of_kinds_that_read_it() {
        let spec = json!({"task": "binary_classification", "modality": "chest_xray"});
        assert!(differs(|k| k.task = Some(spec.clone())));
        let mut with = base();
        with.task = Some(spec.clone());
        let mut other = with.clone();
        other.task.as_mut().unwrap()["constraints"] =
            json!([{"metric": "sensitivity", "op": ">=", "value": 0.9}]);
        assert_ne!(with.digest(), other.digest());
        assert_eq!(
            other.changes_from(&with),
            ["the task (the request's requirements) changed"]
        );
    }

    #[test]
    fn a_key_without_a_task_keeps_its_digest() {
        // Kinds that do not read the task serialise no `task` field, so their entries from
        // before the field existed are still found.
        let text = serde_json::to_string(&base()).unwrap();
        assert!(!text.contains("task"));
    }

    #[test]
    fn explains_what_changed() {
        let mut b = base();
        b.params["run"] = json!("echo bye");
        b.upstream.insert("prep".into(), "k2".into());
        b.seed = 9;
        assert_eq!(
            b.changes_from(&base()),
            [
                "params changed: run",
                "upstream `prep` changed",
                "seed 7 → 9"
            ]
        );
    }

    proptest! {
        // The digest depends on content only: rebuilding the params object with its
        // keys inserted in any order gives the same digest.
        #[test]
        fn key_order_of_params_never_matters(pairs in proptest::collection::btree_map("[a-z]{1,6}", 0i64..100, 0..8), seed in any::<u64>()) {
            let mut forward = serde_json::Map::new();
            for (k, v) in &pairs { forward.insert(k.clone(), json!(v)); }
            let mut backward = serde_json::Map::new();
            for (k, v) in pairs.iter().rev() { backward.insert(k.clone(), json!(v)); }
            let mut a = base(); a.params = Value::Object(forward); a.seed = seed;
            let mut b = base(); b.params = Value::Object(backward); b.seed = seed;
            prop_assert_eq!(a.digest(), b.digest());
        }
    }
}
