//! The LLM proposer: a language model, given the TaskSpec, the best manifest, the audit's
//! findings and the results so far, answers through a tool with a JSON Patch and a
//! rationale. Every reply is checked as any proposal is (the patch applies, the policy
//! allows it, the rewritten manifest passes its checks, the change was not tried before);
//! a refused reply is shown its reason and may try again, twice; then the heuristic
//! proposer makes this round's change, and the record says so.

use engine_core::agent::patch::Patch;
use engine_core::agent::propose::{Candidate, Context, Heuristic, Proposer, fresh, tried};
use serde::Deserialize;
use serde_json::json;

use crate::llm::{Conversation, LlmConfig, LlmError, Tool, call_tool, repair};

/// Replies refused before the proposer gives the round to the heuristic one.
const REPAIRS: usize = 2;

/// The LLM proposer.
#[derive(Debug)]
pub struct LlmProposer {
    cfg: LlmConfig,
}

/// What the LLM proposer came to.
#[derive(Debug)]
pub struct Outcome {
    /// The change.
    pub candidate: Candidate,
    /// Who made it: `llm`, or `heuristic` when the model's replies were all refused.
    pub proposer: &'static str,
    /// The refused replies and failures, in order.
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reply {
    patch: Patch,
    rationale: String,
}

const SYSTEM: &str = "You improve a medical-imaging model by changing its pipeline manifest, one \
change per round. Each round you propose exactly one change (one idea, as a JSON Patch of at most \
a few operations) with a rationale that cites evidence: a figure of the data audit or a metric of \
an earlier round. The change runs on the training and validation splits and is kept only if \
validation improves. You can never add or edit a `command` stage, change the datasets or their \
splits, the task, the request or the policy, and you never see the test split.";

/// The tool the model must call; its schema follows RFC 6902 and names the paths the
/// policy allows.
fn tool(allowed: &str) -> Tool {
    Tool {
        name: "propose_change".into(),
        description:
            "Propose one change to the manifest as an RFC 6902 JSON Patch, with its rationale."
                .into(),
        input_schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["patch", "rationale"],
            "properties": {
                "patch": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": 8,
                    "description": format!("RFC 6902 operations on the manifest as JSON (pointers like /stages/train/with/lr). {allowed}"),
                    "items": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["op", "path"],
                        "properties": {
                            "op": {"enum": ["add", "remove", "replace", "move", "copy", "test"]},
                            "path": {"type": "string", "pattern": "^/"},
                            "from": {"type": "string", "pattern": "^/"},
                            "value": {}
                        }
                    }
                },
                "rationale": {
                    "type": "string",
                    "minLength": 1,
                    "description": "Why this change, citing the evidence (an audit figure, an earlier round's metric)."
                }
            }
        }),
    }
}

fn allowed_text(ctx: &Context<'_>) -> String {
    match &ctx.policy.allow {
        Some(p) => format!("Only these paths may change: {}.", p.join(", ")),
        None => "Only the parameters (`with`) of classifier.train and evaluate stages may change, and catalogue stages (not `command`) may be inserted.".into(),
    }
}

fn prompt(ctx: &Context<'_>, best_text: &str) -> String {
    let mut out = String::new();
    if let Some(t) = ctx.task {
        out.push_str(&format!(
            "The task (TaskSpec):\n{}\n\n",
            serde_json::to_string_pretty(t).unwrap_or_default()
        ));
    }
    out.push_str(&format!(
        "The best manifest so far:\n```yaml\n{best_text}```\n\n"
    ));
    if let Some(a) = ctx.audit {
        let findings = json!({
            "classes": a["classes"],
            "cross_tabs": a["cross_tabs"],
            "supervision": a["supervision"],
            "warnings": a["warnings"],
        });
        out.push_str(&format!("The data audit's findings:\n{findings}\n\n"));
    }
    out.push_str(&format!(
        "The stage to improve is `{}`; attributes it can use: {}.\n",
        ctx.train,
        if ctx.attributes.is_empty() {
            "none".into()
        } else {
            ctx.attributes.join(", ")
        }
    ));
    let schema = schemars::schema_for!(engine_core::stages::train::TrainParams);
    out.push_str(&format!(
        "Its parameters follow this JSON Schema:\n{}\n\n",
        serde_json::to_string(&schema).unwrap_or_default()
    ));
    out.push_str(
        "The rounds so far (the objective on validation; never repeat a change already tried):\n",
    );
    for r in ctx.rounds {
        out.push_str(&format!(
            "- round {} [{}] {}: {} -> {}{}\n",
            r.round,
            r.state.as_str(),
            r.proposal.summary,
            r.score.as_ref().map_or("no score".into(), |s| format!(
                "{} {:.4}",
                s.metric, s.value
            )),
            if r.kept { "KEPT; " } else { "" },
            r.verdict
        ));
    }
    out.push_str(&format!(
        "\n{}\nCall propose_change with one change.",
        allowed_text(ctx)
    ));
    out
}

impl LlmProposer {
    /// A proposer that asks the model `cfg` names.
    pub fn new(cfg: LlmConfig) -> LlmProposer {
        LlmProposer { cfg }
    }

    /// The next change: the model's, checked by `check` (which realises the patch on the
    /// manifest text), else the heuristic proposer's. `None` when neither has one.
    pub fn propose(
        &self,
        ctx: &Context<'_>,
        best_text: &str,
        check: impl Fn(&Patch) -> Result<(), String>,
    ) -> Option<Outcome> {
        let tool = tool(&allowed_text(ctx));
        let mut conv = Conversation::new(SYSTEM, &prompt(ctx, best_text));
        let tried = tried(ctx.rounds);
        let mut notes = Vec::new();
        for attempt in 0..=REPAIRS {
            let reply = match call_tool(&self.cfg, &mut conv, &tool) {
                Ok(v) => v,
                Err(LlmError::Transport(e)) => {
                    notes.push(format!("the model could not be asked: {e}"));
                    break;
                }
                Err(LlmError::Reply(e)) => {
                    notes.push(format!("reply {}: {e}", attempt + 1));
                    repair(&self.cfg, &mut conv, &e);
                    continue;
                }
            };
            let checked = serde_json::from_value::<Reply>(reply)
                .map_err(|e| format!("the reply does not fit the tool's schema: {e}"))
                .and_then(|r| {
                    if r.rationale.trim().is_empty() {
                        return Err("the rationale is empty; say why, citing the evidence".into());
                    }
                    check(&r.patch)?;
                    if !fresh(ctx, &r.patch, &tried) {
                        return Err("this change (or the manifest it makes) was already tried in an earlier round".into());
                    }
                    Ok(r)
                });
            match checked {
                Ok(r) => {
                    return Some(Outcome {
                        candidate: Candidate {
                            patch: r.patch,
                            rationale: r.rationale,
                        },
                        proposer: "llm",
                        notes,
                    });
                }
                Err(e) => {
                    notes.push(format!("reply {} refused: {e}", attempt + 1));
                    repair(&self.cfg, &mut conv, &e);
                }
            }
        }
        eprintln!(
            "warning: the language model gave no usable change ({}); the heuristic proposer makes this round's",
            notes.last().map_or("no reply", String::as_str)
        );
        let candidate = Heuristic.propose(ctx)?;
        Some(Outcome {
            candidate,
            proposer: "heuristic",
            notes,
        })
    }
}
