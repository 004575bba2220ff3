//! The lock file beside a manifest: the resolved key and output hashes of every stage of
//! its last runs, like `dvc.lock`, so a reviewer can see exactly what produced what.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Format version of the lock file.
pub const LOCK_VERSION: u32 = 1;

/// The lock file of one manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LockRecord {
    /// [`LOCK_VERSION`].
    pub version: u32,
    /// The manifest's file name.
    pub manifest: String,
    /// Per stage: what its last successful run resolved to.
    pub stages: BTreeMap<String, LockedStage>,
}

/// One stage in the lock file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LockedStage {
    /// The stage kind.
    pub kind: String,
    /// The cache key digest.
    pub key: String,
    /// blake3 of each declared output.
    pub outputs: BTreeMap<String, String>,
}

/// Where the lock file of the manifest at `manifest` lives: `pipeline.yaml` → `pipeline.lock`.
/// A manifest with another extension keeps it (`pipeline.txt` → `pipeline.txt.lock`), so the
/// lock file can never be the manifest itself.
pub fn lock_path(manifest: &Path) -> PathBuf {
    match manifest.extension().and_then(|e| e.to_str()) {
        Some("yaml" | "yml") => manifest.with_extension("lock"),
        _ => {
            let mut name = manifest.as_os_str().to_owned();
            name.push(".lock");
            PathBuf::from(name)
        }
    }
}

impl LockRecord {
    /// Reads the lock file; a missing or unreadable one reads as empty.
    pub fn read(manifest: &Path) -> LockRecord {
        std::fs::read_to_string(lock_path(manifest))
            .ok()
            .and_then(|t| serde_norway::from_str::<LockRecord>(&t).ok())
            .filter(|r| r.version == LOCK_VERSION)
            .unwrap_or_default()
    }

    /// Writes the lock file atomically.
    pub fn write(&self, manifest: &Path) -> std::io::Result<()> {
        let body = serde_norway::to_string(self).map_err(std::io::Error::other)?;
        let text = format!(
            "# Written by `engine apply`: the cache key and output hashes each stage last resolved to.\n# Do not edit; commit it beside the manifest.\n{body}"
        );
        crate::store::write_atomic(&lock_path(manifest), text.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_file_is_never_the_manifest() {
        assert_eq!(
            lock_path(Path::new("a/pipeline.yaml")),
            Path::new("a/pipeline.lock")
        );
        assert_eq!(lock_path(Path::new("p.yml")), Path::new("p.lock"));
        assert_eq!(lock_path(Path::new("p.lock")), Path::new("p.lock.lock"));
        assert_eq!(lock_path(Path::new("manifest")), Path::new("manifest.lock"));
    }
}
