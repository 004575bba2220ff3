//! `engine parse --parser llm` (and `engine init --parser llm`) against a real HTTP server
//! started by the test (`crate::llm::serve`), speaking the Anthropic Messages and the
//! OpenAI chat-completions shapes, with recorded replies that fail as models and servers do:
//! 429, 500, a time-out, arguments that are not JSON, a reply outside the TaskSpec schema.

use std::time::Duration;

use serde_json::{Value, json};

use crate::llm::{KEY, Reply, Server, ok, serve, status};
use crate::support::{Workspace, engine};

const REQUEST: &str = "Flag pneumothorax on chest X-rays. Missing one is much worse than a \
    false alarm, and it must not rely on the chest tubes.";

/// What the model answers: a TaskSpec in its own wording (a plural, a null).
fn reading() -> Value {
    json!({
        "task": "binary_classification",
        "modality": "chest_xray",
        "target": "pneumothorax",
        "positive_class": "pneumothorax",
        "negative_class": null,
        "error_preference": "minimize_false_negatives",
        "objective": {"metric": "sensitivity_at_specificity", "at_specificity": 0.8},
        "confounders": ["chest_tubes"]
    })
}

/// The reading once checked: nulls dropped, the confounder in the vocabulary's name.
fn checked() -> Value {
    json!({
        "task": "binary_classification",
        "modality": "chest_xray",
        "target": "pneumothorax",
        "positive_class": "pneumothorax",
        "error_preference": "minimize_false_negatives",
        "objective": {"metric": "sensitivity_at_specificity", "at_specificity": 0.8},
        "confounders": ["chest_drain"]
    })
}

fn anthropic_call(id: &str, input: Value) -> Reply {
    ok(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "test-model",
        "content": [
            {"type": "text", "text": "Recording the task."},
            {"type": "tool_use", "id": id, "name": "record_task", "input": input}
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 10, "output_tokens": 10}
    }))
}

fn openai_message(message: Value) -> Reply {
    ok(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "test-model",
        "choices": [{"index": 0, "finish_reason": "stop", "message": message}]
    }))
}

fn openai_call(id: &str, arguments: &str) -> Reply {
    openai_message(json!({
        "role": "assistant", "content": null,
        "tool_calls": [{"id": id, "type": "function", "function": {"name": "record_task", "arguments": arguments}}]
    }))
}

/// `engine ARGS --parser llm ...` against `server`, in `dir`; exit code, stdout, stderr.
fn run_llm(
    dir: &Workspace,
    args: &[&str],
    api: &str,
    server: &Server,
    env: &[(&str, &str)],
) -> (i32, String, String) {
    let mut cmd = engine();
    cmd.args(args)
        .args([
            "--parser",
            "llm",
            "--llm-api",
            api,
            "--llm-url",
            &server.url,
        ])
        .args(["--llm-model", "test-model", "--llm-timeout", "1"])
        .current_dir(dir.path())
        .env("ENGINE_LLM_BACKOFF_MS", "10")
        .env_remove("ENGINE_LLM_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("OPENAI_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn rules(ws: &Workspace) -> Value {
    serde_json::from_str(&ws.run(&["parse", REQUEST, "--json"]).code(0).stdout).unwrap()
}

#[test]
fn anthropic_fills_the_schema_tool_and_a_refused_reply_is_shown_its_error_once() {
    let ws = Workspace::new();
    let mut wrong = reading();
    wrong["task"] = json!("segmentation");
    let server = serve(vec![
        status(429, vec![("retry-after", "0")]),
        anthropic_call("toolu_1", wrong),
        anthropic_call("toolu_2", reading()),
    ]);
    let (code, stdout, stderr) = run_llm(
        &ws,
        &["parse", REQUEST, "--json"],
        "anthropic",
        &server,
        &[("ANTHROPIC_API_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    let spec: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(spec, checked());
    assert!(
        stderr.contains("refused") && stderr.contains("/task"),
        "{stderr}"
    );
    assert!(
        stderr.contains("read by the language model `test-model`"),
        "{stderr}"
    );

    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "a 429, a refused reply, a good one");
    for s in &seen {
        assert_eq!(s.path, "/v1/messages");
        assert_eq!(s.header("x-api-key"), Some(KEY));
        assert_eq!(s.header("anthropic-version"), Some("2023-06-01"));
        let b = &s.body;
        assert_eq!(b["model"], "test-model");
        assert_eq!(b["tools"][0]["name"], "record_task");
        // The TaskSpec schema is the tool's input schema.
        let schema = &b["tools"][0]["input_schema"];
        assert_eq!(schema["type"], "object");
        assert!(
            schema["properties"]["error_preference"].is_object(),
            "{schema}"
        );
        assert!(schema["definitions"]["Metric"].is_object(), "{schema}");
        assert_eq!(
            b["tool_choice"],
            json!({"type": "tool", "name": "record_task"})
        );
        assert!(b["system"].as_str().unwrap().contains("snake_case"));
        assert!(
            b["messages"][0]["content"]
                .as_str()
                .unwrap()
                .contains(REQUEST)
        );
    }
    // The repair answers the refused call with its validation error.
    let repair = &seen[2].body["messages"][2];
    assert_eq!(repair["role"], "user");
    let result = &repair["content"][0];
    assert_eq!(result["type"], "tool_result");
    assert_eq!(result["tool_use_id"], "toolu_1");
    assert_eq!(result["is_error"], true);
    assert!(
        result["content"].as_str().unwrap().contains("/task"),
        "{result}"
    );
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
}

#[test]
fn an_openai_compatible_server_is_retried_and_repaired_and_may_answer_in_text() {
    let ws = Workspace::new();
    // Servers without tool support answer in the message text, often fenced.
    let in_text = openai_message(json!({
        "role": "assistant",
        "content": format!("```json\n{}\n```", reading())
    }));
    let server = serve(vec![
        status(500, vec![]),
        openai_call("call_1", "{\"task\": \"binary_classification\", "),
        in_text,
    ]);
    let (code, stdout, stderr) = run_llm(
        &ws,
        &["parse", REQUEST, "--json"],
        "openai",
        &server,
        &[("OPENAI_API_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    let spec: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(spec, checked());
    assert!(stderr.contains("not JSON"), "{stderr}");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    for s in &seen {
        assert_eq!(s.path, "/chat/completions");
        assert_eq!(
            s.header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        let b = &s.body;
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["tools"][0]["type"], "function");
        assert_eq!(b["tools"][0]["function"]["name"], "record_task");
        assert!(b["tools"][0]["function"]["parameters"]["properties"]["task"].is_object());
        assert_eq!(
            b["tool_choice"],
            json!({"type": "function", "function": {"name": "record_task"}})
        );
    }
    let repair = &seen[2].body["messages"][3];
    assert_eq!(repair["role"], "tool");
    assert_eq!(repair["tool_call_id"], "call_1");
    assert!(repair["content"].as_str().unwrap().contains("not JSON"));
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
}

#[test]
fn a_model_that_fails_gives_way_to_the_rules_with_a_warning() {
    let ws = Workspace::new();
    let by_rules = rules(&ws);
    // The rules read this request differently, so the output tells who read it.
    assert_ne!(by_rules, checked());
    let slow = Reply {
        delay: Duration::from_secs(3),
        ..anthropic_call("toolu_slow", reading())
    };
    // Time-outs until the retries run out.
    let server = serve(vec![slow.clone(), slow.clone(), slow.clone(), slow]);
    let (code, stdout, stderr) = run_llm(
        &ws,
        &["parse", REQUEST, "--json"],
        "anthropic",
        &server,
        &[("ANTHROPIC_API_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), by_rules);
    assert!(
        stderr.contains("warning:")
            && stderr.contains("no answer within")
            && stderr.contains("rule-based parser"),
        "{stderr}"
    );

    // Two replies outside the schema: one repair, then the rules.
    let mut wrong = reading();
    wrong["confounders"] = json!(["Chest Tubes"]);
    let mut inconsistent = reading();
    inconsistent["objective"] = json!({"metric": "map50"});
    let server = serve(vec![
        openai_call("call_1", &wrong.to_string()),
        openai_call("call_2", &inconsistent.to_string()),
    ]);
    let (code, stdout, stderr) =
        run_llm(&ws, &["parse", REQUEST, "--json"], "openai", &server, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap(), by_rules);
    assert!(
        stderr.contains("/confounders/0")
            && stderr.contains("refused twice")
            && stderr.contains("detection metric"),
        "{stderr}"
    );
    assert_eq!(server.seen.lock().unwrap().len(), 2, "exactly one repair");

    // What the user must supply is a usage error, not a fall-back.
    let server = serve(vec![]);
    let (code, _, stderr) = run_llm(&ws, &["parse", REQUEST], "anthropic", &server, &[]);
    assert_eq!(code, 2);
    assert!(stderr.contains("ANTHROPIC_API_KEY"), "{stderr}");
    let out = engine()
        .args(["parse", REQUEST, "--parser", "llm", "--llm-api", "openai"])
        .current_dir(ws.path())
        .env_remove("ENGINE_LLM_MODEL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--llm-model"));
    assert!(server.seen.lock().unwrap().is_empty());
}

#[test]
fn init_builds_the_manifest_from_the_models_reading() {
    let ws = Workspace::new();
    ws.run(&[
        "synth", "chest", "--out", "data", "--n", "60", "--size", "32", "--neatx", "0", "--seed",
        "3",
    ])
    .code(0);
    let server = serve(vec![anthropic_call("toolu_1", reading())]);
    let (code, _, stderr) = run_llm(
        &ws,
        &["init", REQUEST, "--data", "data", "-o", "pipeline.yaml"],
        "anthropic",
        &server,
        &[("ANTHROPIC_API_KEY", KEY)],
    );
    assert_eq!(code, 0, "{stderr}");
    let manifest: Value = serde_norway::from_str(&ws.read("pipeline.yaml")).unwrap();
    assert_eq!(manifest["task"], checked());
    assert!(!ws.read("pipeline.yaml").contains(KEY));
}
