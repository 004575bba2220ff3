//! The semantic parser: a clinician's request in words becomes a TaskSpec.

mod parse;
mod schema;
mod spec;
mod text;
mod vocab;

pub use parse::parse_request;
pub use schema::{TASK_SCHEMA_PATH, task_schema, task_schema_text};
pub use spec::{
    Comparison, Constraint, ErrorPreference, Metric, Modality, Objective, TaskKind, TaskSpec,
};
