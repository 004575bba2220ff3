//! The manifest's JSON Schema, generated from the Rust types: the truth that validation,
//! editors and the agent's action space all read.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::manifest::{Manifest, StageKind};
use crate::stages::audit::AuditParams;
use crate::stages::command::CommandParams;
use crate::stages::evaluate::EvaluateParams;
use crate::stages::predict::PredictParams;
use crate::stages::train::TrainParams;

/// Where the generated schema is checked in, relative to the repository root.
pub const MANIFEST_SCHEMA_PATH: &str = "schemas/manifest.schema.json";

/// Generates the manifest schema: the types' schema, plus one `if`/`then` per stage kind
/// that binds `with` to that kind's parameters.
pub fn manifest_schema() -> Value {
    let mut generator = SchemaSettings::draft07().into_generator();
    let mut kind_params: Vec<(StageKind, Value)> = Vec::new();
    for kind in StageKind::ALL {
        let schema = match kind {
            StageKind::DataAudit => generator.subschema_for::<AuditParams>(),
            StageKind::ClassifierTrain => generator.subschema_for::<TrainParams>(),
            StageKind::ModelPredict => generator.subschema_for::<PredictParams>(),
            StageKind::DetectorTrain => {
                generator.subschema_for::<crate::stages::detect::DetectorParams>()
            }
            StageKind::PseudoLabel => {
                generator.subschema_for::<crate::stages::pseudo::PseudoLabelParams>()
            }
            StageKind::Evaluate => generator.subschema_for::<EvaluateParams>(),
            StageKind::Command => generator.subschema_for::<CommandParams>(),
        };
        kind_params.push((*kind, schema.to_value()));
    }
    let mut root = generator.into_root_schema_for::<Manifest>().to_value();
    let branches: Vec<Value> = kind_params
        .into_iter()
        .map(|(kind, params)| {
            json!({
                "if": {"properties": {"uses": {"const": kind.as_str()}}, "required": ["uses"]},
                "then": {"properties": {"with": params}}
            })
        })
        .collect();
    if let Some(stage) = root
        .pointer_mut("/definitions/Stage")
        .and_then(Value::as_object_mut)
    {
        stage.insert("allOf".into(), Value::Array(branches));
    }
    if let Some(obj) = root.as_object_mut() {
        obj.insert(
            "$id".into(),
            json!("https://engine.invalid/schemas/manifest.schema.json"),
        );
    }
    root
}

/// The schema as the text checked in under `schemas/`.
pub fn manifest_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&manifest_schema()).unwrap_or_default();
    text.push('\n');
    text
}

/// The names of the properties an object at `pointer` (a JSON pointer into `instance`) may have,
/// read from the schema, for "did you mean" hints.
pub fn allowed_properties(schema: &Value, instance: &Value, pointer: &str) -> Vec<String> {
    let mut node = resolve(schema, schema).clone();
    let mut inst = instance;
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        let merged = merged_properties(schema, &node, inst);
        let next_inst = match inst {
            Value::Object(m) => m.get(&seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        let next = if let Some(p) = merged.get(&seg) {
            Some(p.clone())
        } else if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
            Some(ap.clone())
        } else {
            node.get("items").cloned()
        };
        match (next, next_inst) {
            (Some(n), Some(i)) => {
                node = resolve(schema, &n).clone();
                inst = i;
            }
            _ => return Vec::new(),
        }
    }
    let mut names: Vec<String> = merged_properties(schema, &node, inst)
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

fn resolve<'a>(root: &'a Value, node: &'a Value) -> &'a Value {
    let mut n = node;
    for _ in 0..16 {
        // schemars wraps a documented `$ref` as `allOf: [{$ref}]`; look through both.
        let target = n
            .get("$ref")
            .or_else(|| match n.get("allOf").and_then(Value::as_array) {
                Some(all) if all.len() == 1 => all[0].get("$ref"),
                _ => None,
            });
        match target
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|p| root.pointer(p))
        {
            Some(t) => n = t,
            None => break,
        }
    }
    n
}

/// Properties of a schema node, including those its `allOf` `if`/`then` branches add for this instance.
fn merged_properties(
    root: &Value,
    node: &Value,
    instance: &Value,
) -> serde_json::Map<String, Value> {
    let mut props = node
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if let Some(branches) = node.get("allOf").and_then(Value::as_array) {
        for b in branches {
            let applies = b
                .pointer("/if/properties")
                .and_then(Value::as_object)
                .map(|conds| {
                    conds
                        .iter()
                        .all(|(k, c)| match (c.get("const"), instance.get(k)) {
                            (Some(want), Some(have)) => want == have,
                            _ => false,
                        })
                })
                .unwrap_or(false);
            if applies && let Some(extra) = b.pointer("/then/properties").and_then(Value::as_object)
            {
                for (k, v) in extra {
                    props.insert(k.clone(), resolve(root, v).clone());
                }
            }
        }
    }
    props
}
