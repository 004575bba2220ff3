//! The semantic parser: a clinician's request in words becomes a TaskSpec; and the
//! requirements of a TaskSpec checked against what an evaluation measured.

mod check;
mod parse;
pub mod requirements;
mod schema;
mod spec;
mod text;
mod vocab;

pub use check::check_spec;
pub use parse::parse_request;

/// The finding or diagnosis a dataset's class name denotes (`MEL` is `melanoma`, `nv` is
/// `nevus`), by the parser's vocabulary; `None` when it names none.
pub fn label_of(class_name: &str) -> Option<String> {
    let words = text::tokenize(&class_name.replace('_', " "));
    vocab::vocab()
        .labels
        .iter()
        .find(|(phrase, _)| *phrase == words)
        .map(|(_, label)| label.clone())
}
pub use schema::{TASK_SCHEMA_PATH, task_schema, task_schema_text};
pub use spec::{
    Comparison, Constraint, ErrorPreference, Metric, Modality, Objective, TaskKind, TaskSpec,
};
