//! `engine-worker`: the libtorch side of the engine. The `engine` binary hands it the work
//! that needs libtorch (`doctor` now, training stages as they land), so that the everyday
//! commands (`validate`, `plan`, a cached `apply`) never pay libtorch's load time.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use serde::Serialize;

/// The libtorch worker of the engine (started by `engine`; rarely run by hand).
#[derive(Debug, Parser)]
#[command(name = "engine-worker", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Report the libtorch runtime and run a short training self-test.
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Device for the self-test: `cpu`, `cuda`, `cuda:N` or `auto`.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Serialize)]
struct Report {
    libtorch: engine_torch::RuntimeInfo,
    self_test: Result<engine_torch::SelfTestReport, String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Doctor { json, device } => doctor(json, &device),
    }
}

fn doctor(json: bool, device: &str) -> ExitCode {
    let device = match engine_torch::parse_device(device) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let report = Report {
        libtorch: engine_torch::runtime_info(),
        self_test: engine_torch::self_test(device).map_err(|e| e.to_string()),
    };
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("error: cannot print the report: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        let t = &report.libtorch;
        println!(
            "libtorch {} ({})",
            t.libtorch_version,
            t.loaded_libtorch
                .as_deref()
                .unwrap_or(&t.build_libtorch_lib)
        );
        println!("cpu threads {}", t.cpu_threads);
        println!(
            "cuda: linked {}, available {}, devices {}, cudnn {}",
            t.cuda_linked, t.cuda_available, t.cuda_device_count, t.cudnn_available
        );
        match &report.self_test {
            Ok(r) => println!(
                "self-test on {}: {} parameters, loss {:.4} -> {:.4} in {} steps ({:.0} ms)",
                r.device, r.parameters, r.initial_loss, r.final_loss, r.steps, r.elapsed_ms
            ),
            Err(e) => println!("self-test FAILED: {e}"),
        }
    }
    if report.self_test.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
