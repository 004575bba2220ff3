//! The semantic parser on the five reference requests and on many other phrasings, each
//! checked field by field against the TaskSpec it must produce; and the checked-in TaskSpec
//! schema against the types.

use std::path::{Path, PathBuf};

use engine_core::task::{TaskSpec, parse_request};
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/requests")
}

/// One request and the fields its TaskSpec must have. `asks` is not a TaskSpec field: a
/// word that one of the clarification questions must contain.
#[derive(Debug, serde::Deserialize)]
struct Case {
    request: String,
    expected: serde_json::Map<String, Value>,
}

/// The differences between a parsed TaskSpec and the expected fields; an empty list
/// expected matches a field left out.
fn differences(spec: &TaskSpec, expected: &serde_json::Map<String, Value>) -> Vec<String> {
    let got = serde_json::to_value(spec).unwrap();
    let mut out = Vec::new();
    for (key, want) in expected {
        if key == "asks" {
            let word = want.as_str().unwrap_or_default().to_lowercase();
            if !spec
                .clarifications
                .iter()
                .any(|q| q.to_lowercase().contains(&word))
            {
                out.push(format!(
                    "no clarification mentions {word:?}: {:?}",
                    spec.clarifications
                ));
            }
            continue;
        }
        let have = got.get(key).cloned().unwrap_or(Value::Null);
        let empty = |v: &Value| v.is_null() || v.as_array().is_some_and(Vec::is_empty);
        if !(have == *want || empty(&have) && empty(want)) {
            out.push(format!("{key}: got {have}, want {want}"));
        }
    }
    out
}

fn check(cases: &[(String, Case)], require_no_questions: bool) {
    let mut failures = Vec::new();
    for (name, case) in cases {
        let spec = parse_request(&case.request);
        let mut diffs = differences(&spec, &case.expected);
        if require_no_questions && !spec.clarifications.is_empty() {
            diffs.push(format!("unexpected questions: {:?}", spec.clarifications));
        }
        if !diffs.is_empty() {
            failures.push(format!(
                "{name}: {}\n  {}\n  parsed: {}",
                case.request.trim(),
                diffs.join("\n  "),
                serde_json::to_string(&spec).unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests parsed wrongly:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn the_five_reference_requests_parse_as_expected() {
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(fixtures()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(|c: char| c.is_ascii_digit()) && name.ends_with(".yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            cases.push((name, serde_norway::from_str::<Case>(&text).unwrap()));
        }
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(cases.len(), 5, "the five reference requests");
    check(&cases, true);
}

#[test]
fn other_phrasings_parse_as_expected() {
    let text = std::fs::read_to_string(fixtures().join("phrasings.yaml")).unwrap();
    let list: Vec<Case> = serde_norway::from_str(&text).unwrap();
    assert!(list.len() >= 40, "only {} phrasings", list.len());
    let cases: Vec<(String, Case)> = list
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("phrasing {}", i + 1), c))
        .collect();
    check(&cases, false);
}

#[test]
fn every_parse_validates_against_the_task_schema() {
    let schema = engine_core::task::task_schema();
    let validator = jsonschema::draft7::new(&schema).unwrap();
    let text = std::fs::read_to_string(fixtures().join("phrasings.yaml")).unwrap();
    let list: Vec<Case> = serde_norway::from_str(&text).unwrap();
    for request in list.iter().map(|c| c.request.as_str()).chain([
        "",
        "   ",
        "?!",
        "at 500% specificity",
        "(((",
        "≥≥≥ 0.9.9.9",
    ]) {
        let spec = serde_json::to_value(parse_request(request)).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&spec)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{request:?} -> {spec}: {errors:?}");
        // The JSON reads back (deny_unknown_fields) to the same TaskSpec.
        let back: TaskSpec = serde_json::from_value(spec.clone()).unwrap();
        assert_eq!(serde_json::to_value(back).unwrap(), spec);
    }
}

#[test]
fn an_empty_request_asks_what_to_do() {
    let spec = parse_request("  ");
    assert!(!spec.clarifications.is_empty());
}

#[test]
fn checked_in_task_schema_matches_the_types() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(engine_core::task::TASK_SCHEMA_PATH);
    let generated = engine_core::task::task_schema_text();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{} is out of date with the Rust types; regenerate it with `BLESS=1 cargo test -p engine-core --test task` and commit it",
        path.display()
    );
    assert!(jsonschema::draft7::meta::is_valid(
        &engine_core::task::task_schema()
    ));
}

const WORDS: &[&str] = &[
    "melanoma",
    "not",
    "at",
    "least",
    "80",
    "%",
    "0.9",
    "specificity",
    "sensitivity",
    ",",
    "or",
    "rather",
    "than",
    "miss",
    "false",
    "alarm",
    "fine",
    "chest",
    "x-ray",
    "drain",
    "boxes",
    "(",
    ")",
    "eight",
    "groups",
    "nevus",
    ";",
    "no",
    ">=",
    "1e309",
    "-5",
    "hospital",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Whatever a user types, the parser answers with a TaskSpec that fits the schema.
    #[test]
    fn any_text_parses_without_panicking(text in "\\PC{0,300}") {
        let spec = serde_json::to_value(parse_request(&text)).unwrap();
        proptest::prop_assert!(spec["task"].is_string());
    }

    #[test]
    fn any_soup_of_known_words_parses_to_a_valid_spec(
        words in proptest::collection::vec(proptest::sample::select(WORDS), 0..40)
    ) {
        let schema = engine_core::task::task_schema();
        let validator = jsonschema::draft7::new(&schema).unwrap();
        let spec = serde_json::to_value(parse_request(&words.join(" "))).unwrap();
        proptest::prop_assert!(validator.is_valid(&spec), "{}", spec);
    }
}
