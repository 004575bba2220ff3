//! The developer loop's parts that need no process or network: JSON Patch, the policy that
//! limits what a round may change, the format-preserving rewrite of the manifest text, and
//! unified diffs.

pub mod diff;
pub mod journal;
pub mod patch;
pub mod policy;
pub mod propose;
pub mod rewrite;
pub mod score;
