//! The `engine` binary: a thin command line over `engine-core` (and `engine-torch`).

mod apply;
mod cli;
mod commands;
mod data;
mod develop;
mod doctor;
mod evaluate;
mod evidence;
mod history;
mod init;
mod llm;
mod metrics;
mod parse;
mod parse_llm;
mod progress;
mod propose_llm;
mod report;
mod sealed;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Cmd};

/// Exit status when the user's input is wrong (bad manifest, bad flag, missing data).
pub const EXIT_USAGE: u8 = 2;
/// Exit status when a stage or run failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status after an interrupt (128 + SIGINT), as shells expect.
pub const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Validate { manifest } => commands::validate(&manifest),
        Cmd::Plan { manifest, json } => commands::plan(&manifest, json),
        Cmd::Apply {
            manifest,
            json,
            cpus,
            gpus,
            plain,
            executor,
            partition,
        } => apply::apply(&apply::ApplyArgs {
            manifest,
            json,
            cpus,
            gpus,
            plain,
            executor,
            partition,
        }),
        Cmd::Graph { manifest, format } => commands::graph(&manifest, format),
        Cmd::Schema => {
            print!("{}", engine_core::schema::manifest_schema_text());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Doctor { json, device } => doctor::doctor(json, &device),
        Cmd::Metrics(args) => metrics::metrics(args),
        Cmd::Parse(args) => parse::parse(&args),
        Cmd::Test(args) => sealed::test(&args),
        Cmd::Init(args) => init::init(&args),
        Cmd::Synth(args) => data::synth(&args),
        Cmd::Audit(args) => data::audit(&args),
        Cmd::Develop(args) => develop::develop(&args),
        Cmd::History { manifest, json } => history::history(manifest.as_deref(), json),
        Cmd::Explain { round, manifest } => history::explain(round, manifest.as_deref()),
        Cmd::Diff { a, b, manifest } => history::diff(a, b, manifest.as_deref()),
        Cmd::Accept { round, manifest } => history::accept(round, manifest.as_deref()),
        Cmd::Report {
            manifest,
            out,
            test,
        } => report::report(manifest.as_deref(), out.as_deref(), test.as_deref()),
        Cmd::StageExec { job } => commands::stage_exec(&job),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}
