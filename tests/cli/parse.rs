//! `engine parse`: the TaskSpec as JSON and as a summary, and an empty request refused with
//! exit code 2 and a hint.

use serde_json::Value;

use crate::support::Workspace;

const PNEUMOTHORAX: &str = "I want a model that flags pneumothorax on chest X-rays. Chest drains \
    are put in after the diagnosis, so the model must not rely on the drains.";

#[test]
fn json_is_the_task_spec() {
    let r = Workspace::new()
        .run(&["parse", PNEUMOTHORAX, "--json"])
        .code(0);
    let v: Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout));
    assert_eq!(v["task"], "binary_classification");
    assert_eq!(v["modality"], "chest_xray");
    assert_eq!(v["target"], "pneumothorax");
    assert_eq!(v["positive_class"], "pneumothorax");
    assert_eq!(v["error_preference"], "balanced");
    assert_eq!(v["objective"], serde_json::json!({"metric": "auc"}));
    assert_eq!(v["confounders"], serde_json::json!(["chest_drain"]));
    // Empty optional fields are left out, so the JSON stays short.
    assert!(v.get("clarifications").is_none() && v.get("constraints").is_none());
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/task.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    assert!(schema_names_every_key(&schema, &v));
}

/// Every key of the TaskSpec is a property the checked-in schema names (the full validation
/// runs in engine-core's tests).
fn schema_names_every_key(schema: &Value, spec: &Value) -> bool {
    let props = schema["properties"].as_object().unwrap();
    spec.as_object()
        .unwrap()
        .keys()
        .all(|k| props.contains_key(k))
}

#[test]
fn summary_lists_the_fields_and_the_open_questions() {
    let r = Workspace::new().run(&["parse", "flag melanoma"]).code(0);
    assert!(
        r.stdout.contains("task             binary_classification"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("target           melanoma"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("open questions:"), "{}", r.stdout);
    assert!(r.stdout.contains("Which kind of images"), "{}", r.stdout);
}

#[test]
fn an_empty_request_is_a_usage_error_with_a_hint() {
    let r = Workspace::new().run(&["parse", "  "]).code(2);
    assert!(r.stdout.is_empty());
    assert!(r.stderr.contains("the request is empty"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"), "{}", r.stderr);
}
