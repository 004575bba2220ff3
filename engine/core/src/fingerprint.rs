//! Content fingerprints of input files and datasets, memoised by (path, size, mtime, inode)
//! so that checking an unchanged 25,000-file dataset costs stat calls, not reads.

use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use globset::{Glob, GlobMatcher};
use rustc_hash::FxHashMap;
use walkdir::WalkDir;

const MAGIC: &[u8; 8] = b"ENGFP01\n";

/// Files modified this recently are hashed but not memoised: a write in the same
/// timestamp tick as the hash could otherwise go unnoticed (git's "racy clean" problem).
const RACY_WINDOW_NS: i128 = 2_000_000_000;

/// A blake3 digest.
pub type Digest = [u8; 32];

/// Hex form of a digest.
pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            size: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ino: meta.ino(),
        }
    }
}

/// Why a fingerprint could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum FingerprintError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A glob pattern matched nothing.
    #[error("`{0}` matches no file")]
    NoMatch(String),
    /// A glob pattern is malformed.
    #[error("`{0}` is not a valid glob pattern")]
    BadPattern(String),
}

/// The memo of file content hashes, stored in the workspace.
#[derive(Debug)]
pub struct FingerprintDb {
    path: Option<PathBuf>,
    // Keyed by the path's bytes: hashing a `Path` parses its components, which showed up
    // in profiles of a no-op plan over 25,000 files.
    entries: FxHashMap<OsString, (Stamp, Digest)>,
    dirty: bool,
}

impl FingerprintDb {
    /// A memo that is never saved.
    pub fn in_memory() -> FingerprintDb {
        FingerprintDb {
            path: None,
            entries: FxHashMap::default(),
            dirty: false,
        }
    }

    /// Opens the memo at `path`; a missing or unreadable memo starts empty.
    pub fn open(path: &Path) -> FingerprintDb {
        let entries = std::fs::read(path)
            .ok()
            .and_then(|b| decode(&b))
            .unwrap_or_default();
        FingerprintDb {
            path: Some(path.to_path_buf()),
            entries,
            dirty: false,
        }
    }

    /// Writes the memo back if it changed (atomically: a temporary file, then a rename).
    pub fn save(&mut self) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.dirty {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(16 + self.entries.len() * 96);
        buf.extend_from_slice(MAGIC);
        for (p, (s, d)) in &self.entries {
            let bytes = p.as_os_str().as_encoded_bytes();
            buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            buf.extend_from_slice(bytes);
            buf.extend_from_slice(&s.size.to_le_bytes());
            buf.extend_from_slice(&s.mtime_ns.to_le_bytes());
            buf.extend_from_slice(&s.ino.to_le_bytes());
            buf.extend_from_slice(d);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        io::Write::write_all(&mut tmp, &buf)?;
        tmp.persist(path).map_err(|e| e.error)?;
        self.dirty = false;
        Ok(())
    }

    /// Fingerprint of a file or a directory tree (every file under it, by relative path).
    pub fn tree(&mut self, root: &Path) -> Result<Digest, FingerprintError> {
        let files = list_files(root, None)?;
        self.combine(root, &files)
    }

    /// Fingerprint of the files under `base` that `pattern` (relative to `base`) names: a plain
    /// path (file or directory) or a glob. A pattern that names nothing is an error.
    pub fn pattern(&mut self, base: &Path, pattern: &str) -> Result<Digest, FingerprintError> {
        if !is_glob(pattern) {
            let path = base.join(pattern);
            if !path.exists() {
                return Err(FingerprintError::NoMatch(pattern.to_owned()));
            }
            let files = list_files(&path, None)?;
            return self.combine(&path, &files);
        }
        let matcher = Glob::new(pattern)
            .map_err(|_| FingerprintError::BadPattern(pattern.to_owned()))?
            .compile_matcher();
        let prefix = literal_prefix(pattern);
        let start = base.join(&prefix);
        if !start.exists() {
            return Err(FingerprintError::NoMatch(pattern.to_owned()));
        }
        let files = list_files(&start, Some((base, &matcher)))?;
        if files.is_empty() {
            return Err(FingerprintError::NoMatch(pattern.to_owned()));
        }
        self.combine(base, &files)
    }

    fn combine(
        &mut self,
        root: &Path,
        files: &[(PathBuf, Metadata)],
    ) -> Result<Digest, FingerprintError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let mut missing: Vec<usize> = Vec::new();
        let mut digests: Vec<Option<Digest>> = Vec::with_capacity(files.len());
        for (i, (path, meta)) in files.iter().enumerate() {
            let stamp = Stamp::of(meta);
            match self.entries.get(path.as_os_str()) {
                Some((s, d)) if *s == stamp => digests.push(Some(*d)),
                _ => {
                    digests.push(None);
                    missing.push(i);
                }
            }
        }
        let hashed = hash_files_parallel(files, &missing)?;
        for (i, d) in missing.iter().zip(hashed) {
            digests[*i] = Some(d);
            let (path, meta) = &files[*i];
            let stamp = Stamp::of(meta);
            if now - stamp.mtime_ns > RACY_WINDOW_NS {
                self.entries.insert(path.as_os_str().to_owned(), (stamp, d));
                self.dirty = true;
            }
        }
        let mut h = blake3::Hasher::new();
        h.update(b"tree\0");
        for ((path, meta), d) in files.iter().zip(digests) {
            let rel = path.strip_prefix(root).unwrap_or(path);
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(b"\0");
            h.update(&meta.len().to_le_bytes());
            h.update(&d.unwrap_or([0; 32]));
        }
        Ok(*h.finalize().as_bytes())
    }
}

/// Hash of one file's content, read in full.
pub fn hash_file(path: &Path) -> Result<Digest, FingerprintError> {
    let io_err = |source| FingerprintError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    let mut h = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io_err)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(*h.finalize().as_bytes())
}

fn hash_files_parallel(
    files: &[(PathBuf, Metadata)],
    which: &[usize],
) -> Result<Vec<Digest>, FingerprintError> {
    if which.len() < 64 {
        return which.iter().map(|i| hash_file(&files[*i].0)).collect();
    }
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(8);
    let chunk = which.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = which
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|i| hash_file(&files[*i].0))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(which.len());
        for h in handles {
            match h.join() {
                Ok(r) => out.extend(r?),
                Err(_) => {
                    return Err(FingerprintError::Io {
                        path: PathBuf::new(),
                        source: io::Error::other("a hashing thread panicked"),
                    });
                }
            }
        }
        Ok(out)
    })
}

/// Every file under `root` (or `root` itself if it is a file), sorted by path, following symlinks.
fn list_files(
    root: &Path,
    filter: Option<(&Path, &GlobMatcher)>,
) -> Result<Vec<(PathBuf, Metadata)>, FingerprintError> {
    let mut out = Vec::new();
    for entry in WalkDir::new(root).follow_links(true).sort_by_file_name() {
        let entry = entry.map_err(|e| FingerprintError::Io {
            path: e
                .path()
                .map_or_else(|| root.to_path_buf(), Path::to_path_buf),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("a symlink loop")),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        if let Some((base, matcher)) = filter {
            let rel = entry.path().strip_prefix(base).unwrap_or(entry.path());
            if !matcher.is_match(rel) {
                continue;
            }
        }
        let meta = entry.metadata().map_err(|e| FingerprintError::Io {
            path: entry.path().to_path_buf(),
            source: e
                .into_io_error()
                .unwrap_or_else(|| io::Error::other("cannot stat")),
        })?;
        out.push((entry.into_path(), meta));
    }
    Ok(out)
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

/// The directories of a glob before its first wildcard: where the walk starts.
fn literal_prefix(pattern: &str) -> PathBuf {
    let mut prefix = PathBuf::new();
    let parts: Vec<&str> = pattern.split('/').collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        if is_glob(part) {
            break;
        }
        prefix.push(part);
    }
    prefix
}

fn decode(bytes: &[u8]) -> Option<FxHashMap<OsString, (Stamp, Digest)>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    // Each entry takes at least 68 bytes plus its path: size the map once.
    let mut out = FxHashMap::with_capacity_and_hasher(rest.len() / 100, Default::default());
    let mut at = 0usize;
    let take = |at: &mut usize, n: usize| -> Option<&[u8]> {
        let s = rest.get(*at..*at + n)?;
        *at += n;
        Some(s)
    };
    while at < rest.len() {
        let len = u32::from_le_bytes(take(&mut at, 4)?.try_into().ok()?) as usize;
        let path = take(&mut at, len)?;
        let size = u64::from_le_bytes(take(&mut at, 8)?.try_into().ok()?);
        let mtime_ns = i128::from_le_bytes(take(&mut at, 16)?.try_into().ok()?);
        let ino = u64::from_le_bytes(take(&mut at, 8)?.try_into().ok()?);
        let digest: Digest = take(&mut at, 32)?.try_into().ok()?;
        let path = OsStr::from_bytes(path).to_owned();
        out.insert(
            path,
            (
                Stamp {
                    size,
                    mtime_ns,
                    ino,
                },
                digest,
            ),
        );
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, content: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    #[test]
    fn tree_fingerprint_follows_content_and_names() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "a/x.txt", "1");
        write(d.path(), "a/y.txt", "2");
        let mut db = FingerprintDb::in_memory();
        let first = db.tree(&d.path().join("a")).unwrap();
        assert_eq!(first, db.tree(&d.path().join("a")).unwrap());
        write(d.path(), "a/y.txt", "3");
        let changed = db.tree(&d.path().join("a")).unwrap();
        assert_ne!(first, changed);
        std::fs::rename(d.path().join("a/y.txt"), d.path().join("a/z.txt")).unwrap();
        assert_ne!(changed, db.tree(&d.path().join("a")).unwrap());
    }

    #[test]
    fn globs_select_files_and_an_empty_match_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "data/1.csv", "a");
        write(d.path(), "data/2.txt", "b");
        let mut db = FingerprintDb::in_memory();
        let csv = db.pattern(d.path(), "data/*.csv").unwrap();
        write(d.path(), "data/2.txt", "changed");
        assert_eq!(csv, db.pattern(d.path(), "data/*.csv").unwrap());
        write(d.path(), "data/3.csv", "c");
        assert_ne!(csv, db.pattern(d.path(), "data/*.csv").unwrap());
        assert!(matches!(
            db.pattern(d.path(), "data/*.json"),
            Err(FingerprintError::NoMatch(_))
        ));
        assert!(matches!(
            db.pattern(d.path(), "nothing.txt"),
            Err(FingerprintError::NoMatch(_))
        ));
    }

    #[test]
    fn the_memo_round_trips_and_is_trusted_only_for_settled_files() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "f.txt", "hello");
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(d.path().join("f.txt"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        write(d.path(), "fresh.txt", "new");
        let memo_dir = tempfile::tempdir().unwrap();
        let memo = memo_dir.path().join("memo");
        let mut db = FingerprintDb::open(&memo);
        let digest = db.tree(d.path()).unwrap();
        db.save().unwrap();
        let reopened = FingerprintDb::open(&memo);
        assert_eq!(
            reopened.entries.len(),
            1,
            "only the settled file is memoised"
        );
        let mut reopened = reopened;
        assert_eq!(digest, reopened.tree(d.path()).unwrap());
    }

    #[test]
    fn a_corrupt_memo_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("memo"), b"ENGFP01\n\xff\xff").unwrap();
        assert!(
            FingerprintDb::open(&d.path().join("memo"))
                .entries
                .is_empty()
        );
    }
}
