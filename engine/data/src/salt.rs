//! Salted hashes: how patients, and DICOM image ids, appear in anything the engine writes.
//! The salt is 32 random bytes kept in the workspace (`.engine/salt`), so the same patient
//! gets the same name across runs of one workspace, and nobody without the salt can test a
//! guessed patient id against a report.

use std::io::{Read, Write};
use std::path::Path;

/// A workspace's salt.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt([u8; 32]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

impl Salt {
    /// A salt from fixed bytes (tests).
    pub fn from_bytes(bytes: [u8; 32]) -> Salt {
        Salt(bytes)
    }

    /// The salt of the workspace `dir` (`dir/.engine/salt`), made on first use.
    pub fn for_workspace(dir: &Path) -> std::io::Result<Salt> {
        Salt::load_or_create(&dir.join(".engine").join("salt"))
    }

    /// The salt kept in the file `path`, made on first use.
    pub fn load_or_create(path: &Path) -> std::io::Result<Salt> {
        let engine_dir = path.parent().unwrap_or(Path::new("."));
        let path = path.to_path_buf();
        if let Ok(bytes) = std::fs::read(&path)
            && let Ok(arr) = <[u8; 32]>::try_from(bytes.as_slice())
        {
            return Ok(Salt(arr));
        }
        std::fs::create_dir_all(engine_dir)?;
        let mut fresh = [0u8; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut fresh)?;
        // Written aside and linked into place, so two processes agree on one salt.
        let tmp = engine_dir.join(format!(".salt.{}.tmp", std::process::id()));
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&fresh)?;
            f.sync_all()?;
        }
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(Salt(fresh)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let bytes = std::fs::read(&path)?;
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map(Salt)
                    .map_err(|_| {
                        std::io::Error::other(format!("{} is not a 32-byte salt", path.display()))
                    })
            }
            Err(e) => Err(e),
        }
    }

    /// `prefix-` and 12 hex digits of the keyed hash of `id`.
    pub fn hash(&self, prefix: &str, id: &str) -> String {
        let mut h = blake3::Hasher::new_keyed(&self.0);
        h.update(prefix.as_bytes());
        h.update(b"\0");
        h.update(id.as_bytes());
        format!("{prefix}-{}", &h.finalize().to_hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_salt_is_made_once_and_hashes_are_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let a = Salt::for_workspace(dir.path()).unwrap();
        let b = Salt::for_workspace(dir.path()).unwrap();
        assert_eq!(a, b);
        let other = Salt::from_bytes([7; 32]);
        assert_ne!(a.hash("pt", "SYNTH^1"), other.hash("pt", "SYNTH^1"));
        assert_eq!(a.hash("pt", "x"), b.hash("pt", "x"));
        assert_ne!(a.hash("pt", "x"), a.hash("img", "x"));
        assert!(a.hash("pt", "x").starts_with("pt-"));
    }
}
