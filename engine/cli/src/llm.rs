//! A client for tool calls to language models: the Anthropic Messages API (a tool with an
//! `input_schema`, forced with `tool_choice`) and the OpenAI-compatible chat-completions
//! API that OpenAI, Ollama, vLLM and llama.cpp serve (a function tool, forced likewise;
//! a JSON reply in the message text is accepted from servers that ignore tools).
//!
//! Requests time out; 429, 5xx, time-outs and broken connections are retried with
//! exponential backoff (honouring a short `Retry-After`). The API key comes from the
//! environment and is sent only in its header: it is never printed, logged or recorded.

use std::time::Duration;

use serde_json::{Value, json};

/// Which API shape a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Anthropic's Messages API (`POST {url}/v1/messages`).
    Anthropic,
    /// OpenAI-compatible chat completions (`POST {url}/chat/completions`).
    Openai,
}

/// Where and how to reach the model.
#[derive(Clone)]
pub struct LlmConfig {
    /// The API shape.
    pub api: Api,
    /// The server's base URL.
    pub url: String,
    /// The model's name.
    pub model: String,
    key: Option<String>,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Retries after a 429, a 5xx, a time-out or a broken connection.
    pub retries: u32,
    /// The first retry's wait; each later one doubles it.
    pub backoff: Duration,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LlmConfig")
            .field("api", &self.api)
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl LlmConfig {
    /// The configuration from flags, falling back on `ENGINE_LLM_API`, `ENGINE_LLM_URL`,
    /// `ENGINE_LLM_MODEL`, and the key in `ENGINE_LLM_API_KEY`, else `ANTHROPIC_API_KEY` or
    /// `OPENAI_API_KEY` for the API in use. The error says what is missing.
    pub fn resolve(
        api: Option<Api>,
        url: Option<String>,
        model: Option<String>,
        timeout_s: f64,
    ) -> Result<LlmConfig, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let api = match api {
            Some(a) => a,
            None => match env("ENGINE_LLM_API").as_deref() {
                None | Some("anthropic") => Api::Anthropic,
                Some("openai") => Api::Openai,
                Some(other) => {
                    return Err(format!(
                        "ENGINE_LLM_API is `{other}`; it must be `anthropic` or `openai`"
                    ));
                }
            },
        };
        let url = url.or_else(|| env("ENGINE_LLM_URL")).unwrap_or_else(|| {
            match api {
                Api::Anthropic => "https://api.anthropic.com",
                Api::Openai => "https://api.openai.com/v1",
            }
            .into()
        });
        let model = model.or_else(|| env("ENGINE_LLM_MODEL")).ok_or(
            "name the model with --llm-model or ENGINE_LLM_MODEL (for example the model your server serves)",
        )?;
        let key = env("ENGINE_LLM_API_KEY").or_else(|| match api {
            Api::Anthropic => env("ANTHROPIC_API_KEY"),
            Api::Openai => env("OPENAI_API_KEY"),
        });
        if api == Api::Anthropic && key.is_none() {
            return Err(
                "the Anthropic API needs a key: set ANTHROPIC_API_KEY (or ENGINE_LLM_API_KEY)"
                    .into(),
            );
        }
        if !(timeout_s > 0.0 && timeout_s <= 3600.0) {
            return Err("--llm-timeout must be between 0 and 3600 seconds".into());
        }
        let backoff_ms = env("ENGINE_LLM_BACKOFF_MS")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000u64);
        Ok(LlmConfig {
            api,
            url: url.trim_end_matches('/').to_owned(),
            model,
            key,
            timeout: Duration::from_secs_f64(timeout_s),
            retries: 3,
            backoff: Duration::from_millis(backoff_ms.min(60_000)),
        })
    }
}

/// A tool the model must call.
#[derive(Clone, Debug)]
pub struct Tool {
    /// Its name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// The JSON Schema of its input.
    pub input_schema: Value,
}

/// A conversation in the API's own message shapes.
#[derive(Clone, Debug)]
pub struct Conversation {
    system: String,
    messages: Vec<Value>,
    /// The id of the last tool call, for the reply to it.
    last_call: Option<String>,
}

impl Conversation {
    /// A conversation with a system prompt and the first user message.
    pub fn new(system: &str, user: &str) -> Conversation {
        Conversation {
            system: system.into(),
            messages: vec![json!({"role": "user", "content": user})],
            last_call: None,
        }
    }
}

/// Why a call gave no tool input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LlmError {
    /// The server could not be reached, or kept failing after the retries.
    Transport(String),
    /// The server answered, but not with a usable tool call.
    Reply(String),
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmError::Transport(m) | LlmError::Reply(m) => f.write_str(m),
        }
    }
}

fn agent(cfg: &LlmConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(cfg.timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Shortens a server's text for an error message.
fn excerpt(text: &str) -> String {
    let t: String = text.chars().take(300).collect();
    if t.len() < text.len() {
        format!("{t}...")
    } else {
        t
    }
}

/// POSTs `body` and returns the reply's JSON, retrying what is worth retrying.
fn post(cfg: &LlmConfig, path: &str, body: &Value) -> Result<Value, LlmError> {
    let url = format!("{}{path}", cfg.url);
    let agent = agent(cfg);
    let text = body.to_string();
    let mut last = String::new();
    for attempt in 0..=cfg.retries {
        if attempt > 0 {
            let wait = cfg.backoff * 2u32.saturating_pow(attempt - 1);
            std::thread::sleep(wait);
        }
        let mut req = agent.post(&url).header("content-type", "application/json");
        match cfg.api {
            Api::Anthropic => {
                req = req.header("anthropic-version", "2023-06-01");
                if let Some(k) = &cfg.key {
                    req = req.header("x-api-key", k);
                }
            }
            Api::Openai => {
                if let Some(k) = &cfg.key {
                    req = req.header("authorization", format!("Bearer {k}"));
                }
            }
        }
        let mut resp = match req.send(text.as_str()) {
            Ok(r) => r,
            Err(e) => {
                last = match e {
                    ureq::Error::Timeout(_) => {
                        format!("no answer within {:.0} s", cfg.timeout.as_secs_f64())
                    }
                    other => format!("cannot reach {url}: {other}"),
                };
                eprintln!("  llm: {last}; retrying ({}/{})", attempt + 1, cfg.retries);
                continue;
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok());
        let body = resp.body_mut().read_to_string().unwrap_or_default();
        if status == 429 || status >= 500 {
            last = format!("the server answered {status}: {}", excerpt(&body));
            if attempt < cfg.retries {
                eprintln!("  llm: {last}; retrying ({}/{})", attempt + 1, cfg.retries);
                if let Some(s) = retry_after.filter(|s| *s > 0.0 && *s <= 30.0) {
                    std::thread::sleep(Duration::from_secs_f64(s));
                }
            }
            continue;
        }
        if !(200..300).contains(&status) {
            return Err(LlmError::Transport(format!(
                "the server answered {status}: {} (check the URL, the model name and the key)",
                excerpt(&body)
            )));
        }
        return serde_json::from_str(&body).map_err(|e| {
            LlmError::Reply(format!("the reply is not JSON ({e}): {}", excerpt(&body)))
        });
    }
    Err(LlmError::Transport(format!(
        "gave up after {} retries: {last}",
        cfg.retries
    )))
}

/// Asks the model to call `tool`; returns the tool's input (a JSON value) and keeps the
/// exchange in `conv`, so that [`repair`] can answer it.
pub fn call_tool(cfg: &LlmConfig, conv: &mut Conversation, tool: &Tool) -> Result<Value, LlmError> {
    match cfg.api {
        Api::Anthropic => {
            let body = json!({
                "model": cfg.model,
                "max_tokens": 2048,
                "system": conv.system,
                "messages": conv.messages,
                "tools": [{"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}],
                "tool_choice": {"type": "tool", "name": tool.name},
            });
            let reply = post(cfg, "/v1/messages", &body)?;
            let content = reply["content"].as_array().cloned().unwrap_or_default();
            // The API refuses an assistant turn without content; keep the turn all the same.
            let turn = if content.is_empty() {
                json!("(no answer)")
            } else {
                Value::Array(content.clone())
            };
            conv.messages
                .push(json!({"role": "assistant", "content": turn}));
            let call = content
                .iter()
                .find(|c| c["type"] == "tool_use" && c["name"] == tool.name.as_str())
                .ok_or_else(|| {
                    LlmError::Reply(format!(
                        "the reply calls no `{}` tool: {}",
                        tool.name,
                        excerpt(&reply.to_string())
                    ))
                })?;
            conv.last_call = call["id"].as_str().map(str::to_owned);
            Ok(call["input"].clone())
        }
        Api::Openai => {
            let mut messages = vec![json!({"role": "system", "content": conv.system})];
            messages.extend(conv.messages.iter().cloned());
            let body = json!({
                "model": cfg.model,
                "messages": messages,
                "tools": [{"type": "function", "function": {"name": tool.name, "description": tool.description, "parameters": tool.input_schema}}],
                "tool_choice": {"type": "function", "function": {"name": tool.name}},
            });
            let reply = post(cfg, "/chat/completions", &body)?;
            let message = reply["choices"][0]["message"].clone();
            if message.is_null() {
                return Err(LlmError::Reply(format!(
                    "the reply has no message: {}",
                    excerpt(&reply.to_string())
                )));
            }
            conv.messages.push(message.clone());
            let call = message["tool_calls"].as_array().and_then(|calls| {
                calls
                    .iter()
                    .find(|c| c["function"]["name"] == tool.name.as_str())
                    .cloned()
            });
            let arguments = match &call {
                Some(c) => {
                    conv.last_call = c["id"].as_str().map(str::to_owned);
                    c["function"]["arguments"].clone()
                }
                // Servers without tool support may answer with the JSON in the text.
                None => {
                    conv.last_call = None;
                    message["content"].clone()
                }
            };
            match arguments {
                Value::String(s) => serde_json::from_str(
                    s.trim()
                        .trim_start_matches("```json")
                        .trim_matches('`')
                        .trim(),
                )
                .map_err(|e| {
                    LlmError::Reply(format!(
                        "the tool call's arguments are not JSON ({e}): {}",
                        excerpt(&s)
                    ))
                }),
                Value::Object(_) => Ok(arguments),
                _ => Err(LlmError::Reply(format!(
                    "the reply calls no `{}` tool",
                    tool.name
                ))),
            }
        }
    }
}

/// Tells the model why its last answer was refused, so that the next [`call_tool`] can do
/// better.
pub fn repair(cfg: &LlmConfig, conv: &mut Conversation, error: &str) {
    let text = format!("That was refused: {error}\nCall the tool again with a corrected answer.");
    match (cfg.api, conv.last_call.take()) {
        (Api::Anthropic, Some(id)) => conv.messages.push(json!({
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": id, "content": text, "is_error": true}],
        })),
        (Api::Openai, Some(id)) => conv
            .messages
            .push(json!({"role": "tool", "tool_call_id": id, "content": text})),
        (_, None) => conv.messages.push(json!({"role": "user", "content": text})),
    }
}
