//! The checked-in schema is the one the types generate, and every shipped manifest validates.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn checked_in_schema_matches_the_types() {
    let path = repo().join(engine_core::schema::MANIFEST_SCHEMA_PATH);
    let generated = engine_core::schema::manifest_schema_text();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the Rust types; regenerate it with `BLESS=1 cargo test -p engine-core --test schema` (or `engine schema > {}`) and commit it",
        path.display(),
        engine_core::schema::MANIFEST_SCHEMA_PATH
    );
}

#[test]
fn the_schema_is_a_valid_draft_7_schema() {
    let schema = engine_core::schema::manifest_schema();
    assert!(jsonschema::draft7::meta::is_valid(&schema));
    jsonschema::draft7::new(&schema).unwrap();
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        // Hidden folders hold a workspace's records (`.engine/`, written by an example's
        // run.sh), not shipped manifests.
        if p.is_dir() && e.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml")
            && std::fs::read_to_string(&p)
                .is_ok_and(|t| t.contains("version:") && t.contains("stages:"))
        {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_manifest_validates() {
    let mut files = Vec::new();
    yaml_files(&repo().join("manifests"), &mut files);
    yaml_files(&repo().join("examples"), &mut files);
    assert!(
        !files.is_empty(),
        "no manifests found under manifests/ or examples/"
    );
    let schema = engine_core::schema::manifest_schema();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    for f in files {
        // An example's data is written by its run.sh, so here it is held to the schema;
        // tests/cli/init.rs loads and runs it with its data.
        if f.with_file_name("run.sh").is_file() {
            let text = std::fs::read_to_string(&f).unwrap();
            let value: serde_json::Value = serde_norway::from_str(&text).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{}:\n{}", f.display(), errors.join("\n"));
            continue;
        }
        if let Err(invalid) = engine_core::load::load(&f) {
            panic!("{} does not validate:\n{}", f.display(), invalid.render());
        }
    }
}
