//! The workspace store under `.engine/`: complete cache entries, in-progress entries,
//! run records, the fingerprint memo and the workspace lock.
//!
//! An entry is built in `tmp/` and renamed into `cache/<key>/` only after its stage
//! succeeded, so `cache/` never holds a partial entry, whatever happens to the process.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cache::CacheKey;

/// Name of the store directory inside a workspace.
pub const STORE_DIR: &str = ".engine";

/// What is recorded about a complete cache entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// The stage that produced it.
    pub stage: String,
    /// The run that produced it.
    pub run_id: String,
    /// When it finished (RFC 3339, UTC).
    pub finished_at: String,
    /// How long the stage ran, in seconds.
    pub duration_s: f64,
    /// blake3 of each declared output, by path under `out/`.
    pub outputs: BTreeMap<String, String>,
    /// The engine version that wrote it.
    pub engine_version: String,
}

/// An entry being built.
#[derive(Debug)]
pub struct Pending {
    dir: PathBuf,
    digest: String,
}

impl Pending {
    /// Where the stage writes its outputs.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// The in-progress directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// The store of one workspace.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// The store of the workspace at `workspace` (nothing is created).
    pub fn at(workspace: &Path) -> Store {
        Store {
            root: workspace.join(STORE_DIR),
        }
    }

    /// Creates the store's directories if needed.
    pub fn create(&self) -> io::Result<()> {
        for sub in ["cache", "tmp", "runs"] {
            fs::create_dir_all(self.root.join(sub))?;
        }
        let ignore = self.root.join(".gitignore");
        if !ignore.exists() {
            fs::write(
                ignore,
                "# Written by engine: the store holds caches and run records, not sources.\n*\n",
            )?;
        }
        Ok(())
    }

    /// The `.engine` directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of the entry with this key digest.
    pub fn entry(&self, digest: &str) -> PathBuf {
        self.root.join("cache").join(digest)
    }

    /// The outputs of the entry with this key digest.
    pub fn out_dir(&self, digest: &str) -> PathBuf {
        self.entry(digest).join("out")
    }

    /// Whether a complete entry exists for this key digest.
    pub fn is_complete(&self, digest: &str) -> bool {
        self.entry(digest).join("meta.json").is_file()
    }

    /// The key recorded beside an entry, if there is one.
    pub fn read_key(&self, digest: &str) -> Option<CacheKey> {
        let text = fs::read_to_string(self.entry(digest).join("key.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The metadata recorded beside an entry, if there is one.
    pub fn read_meta(&self, digest: &str) -> Option<EntryMeta> {
        let text = fs::read_to_string(self.entry(digest).join("meta.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Starts building the entry for `digest`.
    pub fn begin(&self, digest: &str, run_id: &str, stage: &str) -> io::Result<Pending> {
        let dir = self
            .root
            .join("tmp")
            .join(format!("{digest}.{run_id}.{stage}"));
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
        fs::create_dir_all(dir.join("out"))?;
        Ok(Pending {
            dir,
            digest: digest.to_owned(),
        })
    }

    /// Records the key and metadata and moves the entry into the cache in one rename.
    /// If a complete entry appeared meanwhile, that one is kept and this one discarded.
    pub fn commit(
        &self,
        pending: Pending,
        key: &CacheKey,
        meta: &EntryMeta,
    ) -> io::Result<PathBuf> {
        write_json(&pending.dir.join("key.json"), key)?;
        write_json(&pending.dir.join("meta.json"), meta)?;
        sync_dir(&pending.dir);
        let target = self.entry(&pending.digest);
        match fs::rename(&pending.dir, &target) {
            Ok(()) => {
                sync_dir(&self.root.join("cache"));
                Ok(target)
            }
            Err(_) if self.is_complete(&pending.digest) => {
                fs::remove_dir_all(&pending.dir)?;
                Ok(target)
            }
            Err(e) => Err(e),
        }
    }

    /// Throws away an entry being built.
    pub fn discard(&self, pending: Pending) {
        let _ = fs::remove_dir_all(&pending.dir);
    }

    /// Removes leftovers of interrupted runs. Only call while holding the workspace lock.
    pub fn clean_tmp(&self) {
        if let Ok(entries) = fs::read_dir(self.root.join("tmp")) {
            for e in entries.flatten() {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    /// Where the fingerprint memo lives.
    pub fn fingerprint_memo(&self) -> PathBuf {
        self.root.join("fingerprints.bin")
    }

    /// The record directory of a run.
    pub fn run_dir(&self, run_id: &str) -> PathBuf {
        self.root.join("runs").join(run_id)
    }

    /// Takes the workspace lock, calling `waiting` with the holder's description if
    /// another process holds it, then waiting for it.
    pub fn lock(&self, holder: &str, waiting: impl FnOnce(&str)) -> io::Result<WorkspaceLock> {
        self.create()?;
        let path = self.root.join("lock");
        let mut file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut other = String::new();
                let _ = file.read_to_string(&mut other);
                waiting(other.trim());
                file.lock()?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(holder.as_bytes())?;
        file.flush()?;
        Ok(WorkspaceLock { _file: file })
    }
}

/// Held while a run writes to the workspace; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct WorkspaceLock {
    _file: File,
}

/// Writes JSON to a file atomically and durably (synced before the rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, text.as_bytes())
}

/// Writes JSON to a file atomically but without waiting for the disk: for run records,
/// which are useful but never trusted the way cache entries are.
pub fn write_json_unsynced<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(text.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Writes bytes to a file through a temporary file, a sync and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(f) = File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CACHE_FORMAT;

    fn key() -> CacheKey {
        CacheKey {
            cache_format: CACHE_FORMAT,
            kind: "command".into(),
            kind_version: 1,
            params: serde_json::json!({}),
            upstream: BTreeMap::new(),
            datasets: BTreeMap::new(),
            inputs: BTreeMap::new(),
            seed: 0,
            task: None,
            objective: None,
        }
    }

    fn meta() -> EntryMeta {
        EntryMeta {
            stage: "a".into(),
            run_id: "r".into(),
            finished_at: "t".into(),
            duration_s: 0.0,
            outputs: BTreeMap::new(),
            engine_version: "0".into(),
        }
    }

    #[test]
    fn an_entry_appears_only_when_committed() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::at(d.path());
        store.create().unwrap();
        let k = key();
        let digest = k.digest();
        let p = store.begin(&digest, "r", "a").unwrap();
        fs::write(p.out_dir().join("x"), "1").unwrap();
        assert!(!store.is_complete(&digest));
        assert!(!store.entry(&digest).exists());
        store.commit(p, &k, &meta()).unwrap();
        assert!(store.is_complete(&digest));
        assert_eq!(store.read_key(&digest), Some(k));
        assert_eq!(
            fs::read_to_string(store.out_dir(&digest).join("x")).unwrap(),
            "1"
        );
    }

    #[test]
    fn a_discarded_or_interrupted_entry_leaves_nothing_in_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::at(d.path());
        store.create().unwrap();
        let p = store.begin("abc", "r", "a").unwrap();
        store.discard(p);
        let _interrupted = store.begin("def", "r", "b").unwrap();
        store.clean_tmp();
        assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(fs::read_dir(store.root().join("cache")).unwrap().count(), 0);
    }

    #[test]
    fn a_second_commit_of_the_same_key_keeps_the_first() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::at(d.path());
        store.create().unwrap();
        let k = key();
        let digest = k.digest();
        let p1 = store.begin(&digest, "r1", "a").unwrap();
        let p2 = store.begin(&digest, "r2", "a").unwrap();
        fs::write(p1.out_dir().join("x"), "first").unwrap();
        fs::write(p2.out_dir().join("x"), "second").unwrap();
        store.commit(p1, &k, &meta()).unwrap();
        store.commit(p2, &k, &meta()).unwrap();
        assert_eq!(
            fs::read_to_string(store.out_dir(&digest).join("x")).unwrap(),
            "first"
        );
    }
}
