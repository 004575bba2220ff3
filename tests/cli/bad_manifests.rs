//! Every manifest in `tests/bad-manifests/` is refused with exit code 2 and exactly the
//! messages in its `.stderr` snapshot. `BLESS=1` rewrites the snapshots; review the diff.

use std::path::{Path, PathBuf};

use crate::support::engine;

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/bad-manifests")
}

fn check(dir: &Path, name: &str, snapshot: &Path, failures: &mut Vec<String>) {
    let out = engine()
        .args(["validate", name])
        .current_dir(dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let code = out.status.code();
    if code != Some(2) {
        failures.push(format!("{name}: exit code {code:?}, want 2\n{stderr}"));
    }
    if !out.stdout.is_empty() {
        failures.push(format!(
            "{name}: printed to stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(snapshot, &stderr).unwrap();
        return;
    }
    let want = std::fs::read_to_string(snapshot).unwrap_or_default();
    if want != stderr {
        failures.push(format!(
            "{name}: stderr differs from {}\n--- want\n{want}\n--- got\n{stderr}",
            snapshot.display()
        ));
    }
}

#[test]
fn bad_manifests_are_refused_with_their_snapshot_messages() {
    let dir = folder();
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 25, "only {} bad manifests", names.len());
    let mut failures = Vec::new();
    for name in &names {
        let snapshot = dir.join(name.replace(".yaml", ".stderr"));
        check(&dir, name, &snapshot, &mut failures);
    }
    assert!(
        failures.is_empty(),
        "{} of {} failed:\n\n{}",
        failures.len(),
        names.len(),
        failures.join("\n\n")
    );
}

/// A 10 MB manifest is refused from its size alone, before it is read.
#[test]
fn a_ten_megabyte_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut text = String::from("version: 1\nname: big\nstages:\n");
    let mut i = 0;
    while text.len() < 10_000_000 {
        text.push_str(&format!(
            "  s{i}:\n    uses: command\n    with: {{run: \"echo {i}\"}}\n"
        ));
        i += 1;
    }
    std::fs::write(tmp.path().join("big.yaml"), text).unwrap();
    let mut failures = Vec::new();
    check(
        tmp.path(),
        "big.yaml",
        &folder().join("big.stderr"),
        &mut failures,
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Missing files and directories are user errors too.
#[test]
fn missing_and_directory_paths_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = engine()
        .args(["validate", "nope.yaml"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "nope.yaml: cannot read the manifest: no such file (hint: check the path)\n"
    );
    let out = engine()
        .args(["plan", "."])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is a directory"));
}
