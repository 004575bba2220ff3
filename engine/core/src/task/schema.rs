//! The TaskSpec's JSON Schema, generated from the Rust types and checked in under `schemas/`.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::task::spec::TaskSpec;

/// Where the generated schema is checked in, relative to the repository root.
pub const TASK_SCHEMA_PATH: &str = "schemas/task.schema.json";

/// Generates the TaskSpec schema (draft 7).
pub fn task_schema() -> Value {
    let generator = SchemaSettings::draft07().into_generator();
    let mut root = generator.into_root_schema_for::<TaskSpec>().to_value();
    if let Some(obj) = root.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!("https://engine.invalid/schemas/task.schema.json"),
        );
    }
    root
}

/// The schema as the text checked in under `schemas/`.
pub fn task_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&task_schema()).unwrap_or_default();
    text.push('\n');
    text
}
