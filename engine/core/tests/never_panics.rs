//! Whatever text a user hands the loader, it answers with a manifest or diagnostics, never
//! a panic: random text, and valid manifests with random damage.

use std::path::Path;

use proptest::prelude::*;

const VALID: &str = r#"version: 1
name: words
seed: 3
datasets:
  words: {format: files, root: .}
stages:
  count:
    uses: command
    with:
      run: echo hi > "$ENGINE_OUT/x"
      inputs: ["*.txt"]
      datasets: [words]
      outputs: [x]
    resources: {cpus: 2, timeout_minutes: 1.5}
  top:
    uses: command
    with: {run: "true", from: [count], env: {A: b}}
    needs: [count]
"#;

fn load(text: String) {
    if let Err(invalid) = engine_core::load::load_text(Path::new("fuzz.yaml"), text) {
        assert!(
            !invalid.diagnostics.0.is_empty(),
            "an invalid manifest must say why"
        );
        let _ = invalid.render();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,400}") {
        load(text);
    }

    #[test]
    fn yaml_like_text_never_panics(text in "([a-z_]{1,8}: ?|- |  |\\{|\\}|\\[|\\]|, |&a |\\*a|---\n|\n|\t|\"|'|#|!!str |[0-9.]{1,4}|~|\\?){0,80}") {
        load(text);
    }

    #[test]
    fn damaged_valid_manifests_never_panic(at in 0usize..VALID.len(), cut in 0usize..40, insert in "(\\PC|\n|\t|: |- ){0,6}") {
        let mut text = VALID.to_owned();
        let at = (0..=at).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
        let end = (at + cut).min(text.len());
        let end = (end..=text.len()).find(|i| text.is_char_boundary(*i)).unwrap_or(text.len());
        text.replace_range(at..end, &insert);
        load(text);
    }
}

#[test]
fn the_undamaged_manifest_loads() {
    let m = engine_core::load::load_text(Path::new("ok.yaml"), VALID.to_owned()).unwrap();
    assert_eq!(m.dag.order(), ["count", "top"]);
}
