//! The `data.audit` stage kind's parameters. It is run by the `engine-data` crate, which
//! reads images; the core only declares and plans it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a `data.audit` stage leaves in its output directory.
pub const OUTPUTS: &[&str] = &["audit.json", "summary.md"];

/// Parameters of a `data.audit` stage.
///
/// It writes `audit.json` (counts per class and split, patients per split, image sizes and
/// channels, exact duplicates, the supervision structure, a cross-tab of every attribute
/// against the label, excluded images, warnings) and `summary.md`, the same in plain words.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// The dataset to audit.
    #[schemars(length(min = 1))]
    pub dataset: String,
    /// Stages whose output holds `attributes.csv` (`image_id` plus one column per attribute,
    /// such as predicted drain probabilities); those attributes are audited too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("uniqueItems" = true))]
    pub from: Vec<String>,
}
