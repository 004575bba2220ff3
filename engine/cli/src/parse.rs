//! `engine parse "REQUEST"`: a clinician's request in words becomes a TaskSpec, printed as a
//! readable summary with the questions the request leaves open, or as JSON.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use engine_core::task::TaskSpec;

use crate::EXIT_USAGE;
use crate::cli::ParseArgs;

/// Parses the request and prints the TaskSpec.
pub fn parse(args: &ParseArgs) -> anyhow::Result<ExitCode> {
    let (request, json) = (args.request.as_str(), args.json);
    if request.trim().is_empty() {
        eprintln!(
            "error: the request is empty (hint: describe the model in words, e.g. engine parse \"flag pneumothorax on chest X-rays\")"
        );
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    let spec = match crate::parse_llm::read_request(request, args.parser, &args.llm) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let text = if json {
        let mut t = serde_json::to_string_pretty(&spec)?;
        t.push('\n');
        t
    } else {
        summary(&spec)
    };
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

/// The TaskSpec as lines a clinician can read.
fn summary(spec: &TaskSpec) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: &str| {
        let _ = writeln!(out, "{label:<17}{value}");
    };
    line("task", spec.task.as_str());
    line("modality", spec.modality.as_str());
    line("target", spec.target.as_deref().unwrap_or("(not stated)"));
    if !spec.classes.is_empty() {
        line("classes", &spec.classes.join(", "));
    }
    if let Some(c) = &spec.positive_class {
        line("positive class", c);
    }
    if let Some(c) = &spec.negative_class {
        line("negative class", c);
    }
    if let Some(c) = &spec.priority_class {
        line("priority class", c);
    }
    line("errors", spec.error_preference.as_str());
    if let Some(o) = &spec.objective {
        let mut text = o.metric.as_str().to_owned();
        if let Some(c) = &o.class {
            let _ = write!(text, " of {c}");
        }
        if let Some(x) = o.at_specificity {
            let _ = write!(text, " at specificity {x}");
        }
        if let Some(x) = o.at_sensitivity {
            let _ = write!(text, " at sensitivity {x}");
        }
        line("objective", &text);
    }
    for c in &spec.constraints {
        line(
            "constraint",
            &format!("{} {} {}", c.metric.as_str(), c.op.as_str(), c.value),
        );
    }
    line(
        "confounders",
        &if spec.confounders.is_empty() {
            "(none named)".to_owned()
        } else {
            spec.confounders.join(", ")
        },
    );
    if !spec.clarifications.is_empty() {
        let _ = writeln!(out, "\nopen questions:");
        for q in &spec.clarifications {
            let _ = writeln!(out, "  - {q}");
        }
    }
    out
}
