//! End-to-end tests of the `engine` binary: one test binary, one module per area.

mod apply;
mod bad_manifests;
mod data;
mod detect;
mod develop;
mod init;
mod llm;
mod metrics;
mod parse;
mod parse_llm;
mod plan;
mod report;
mod slurm;
mod support;
mod train;
