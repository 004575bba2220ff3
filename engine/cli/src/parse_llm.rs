//! Reading a request with the parser the user chose: the rule-based parser (the default,
//! no network) or a language model (`--parser llm`), which fills the TaskSpec schema as a
//! tool's input through the Anthropic Messages API or an OpenAI-compatible server. Every
//! reply is checked against the schema and for consistency (`engine_core::task::
//! check_spec`); a refused reply is shown its error once; then, or when the server cannot
//! be reached, the rule-based parser reads the request and a warning says why.

use engine_core::task::{TaskSpec, check_spec, parse_request, task_schema};
use serde_json::Value;

use crate::cli::{LlmArgs, ParserKind};
use crate::llm::{Conversation, LlmConfig, LlmError, Tool, call_tool, repair};

const SYSTEM: &str = "You turn a clinician's request for a medical-imaging model into a \
structured task specification, by calling the `record_task` tool exactly once. Follow the \
request's words, and do not add what it does not say: leave out a field the request does not \
settle, and put a short question in `clarifications` instead of guessing. Names are \
snake_case (`chest_drain`, `basal_cell_carcinoma`). `task` is binary_classification for one \
finding present or absent, multiclass_classification for sorting into several classes, \
detection when the request asks where something is (boxes). For a binary task, \
`positive_class` is the finding. `error_preference` is minimize_false_negatives when missing \
a case is the worse error, minimize_false_positives when false alarms are, else balanced. \
Rates are fractions (0.9, not 90). `constraints` are hard limits the request states (at \
least 90% sensitivity is {metric: sensitivity, op: \">=\", value: 0.9}); an operating point \
(sensitivity at 80% specificity) is the objective sensitivity_at_specificity with \
at_specificity 0.8. `confounders` are things in the images the model must not rely on \
(chest_drain, ruler, skin_marker, text_marker, pacemaker, site), only when the request names \
them.";

/// The tool the model must call: its input is a TaskSpec.
fn tool() -> Tool {
    let mut schema = task_schema();
    if let Some(obj) = schema.as_object_mut() {
        // Identifiers of the checked-in file, not part of the input's shape.
        obj.remove("$id");
        obj.remove("$schema");
    }
    Tool {
        name: "record_task".into(),
        description: "Record the task specification the clinician's request asks for.".into(),
        input_schema: schema,
    }
}

/// Asks the model, checks its reply, and lets it repair a refused reply once.
fn ask(cfg: &LlmConfig, request: &str) -> Result<TaskSpec, String> {
    let mut conv = Conversation::new(SYSTEM, &format!("The clinician's request:\n\n{request}"));
    let tool = tool();
    let mut refused = 0;
    loop {
        let problem = match call_tool(cfg, &mut conv, &tool) {
            Err(LlmError::Transport(m)) => return Err(m),
            Err(LlmError::Reply(m)) => m,
            Ok(v) => match check_spec(&strip_nulls(v)) {
                Ok(spec) => return Ok(spec),
                Err(e) => e,
            },
        };
        refused += 1;
        if refused == 2 {
            return Err(format!(
                "its reply was refused twice; the second time: {problem}"
            ));
        }
        eprintln!("  llm: the reply was refused ({problem}); showing the model why, once");
        repair(cfg, &mut conv, &problem);
    }
}

/// Models often write `null` for a field they leave out; the schema has no nulls.
fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        other => other,
    }
}

/// The TaskSpec of `request` by the chosen parser. The error is a usage problem (exit 2):
/// `--parser llm` without a model or key. A model that fails gives way to the rules, with a
/// warning on standard error.
pub fn read_request(request: &str, parser: ParserKind, llm: &LlmArgs) -> Result<TaskSpec, String> {
    match parser {
        ParserKind::Rules => Ok(parse_request(request)),
        ParserKind::Llm => {
            let cfg = llm.config().map_err(|e| format!("--parser llm: {e}"))?;
            match ask(&cfg, request) {
                Ok(spec) => {
                    eprintln!("read by the language model `{}`", cfg.model);
                    Ok(spec)
                }
                Err(why) => {
                    eprintln!(
                        "warning: the language model `{}` gave no usable reading ({why}); the rule-based parser read the request instead",
                        cfg.model
                    );
                    Ok(parse_request(request))
                }
            }
        }
    }
}
