//! `engine doctor`: what this installation is and whether libtorch trains on it.

use std::process::ExitCode;

use serde::Serialize;

#[derive(Serialize)]
struct Report {
    engine_version: &'static str,
    #[cfg(feature = "torch")]
    libtorch: engine_torch::RuntimeInfo,
    #[cfg(feature = "torch")]
    self_test: Result<engine_torch::SelfTestReport, String>,
}

/// Runs `engine doctor`.
pub fn doctor(json: bool, device: &str) -> anyhow::Result<ExitCode> {
    #[cfg(feature = "torch")]
    let (libtorch, self_test) = {
        let info = engine_torch::runtime_info();
        let test = engine_torch::parse_device(device)
            .and_then(engine_torch::self_test)
            .map_err(|e| e.to_string());
        (info, test)
    };
    #[cfg(not(feature = "torch"))]
    let _ = device;
    let report = Report {
        engine_version: env!("CARGO_PKG_VERSION"),
        #[cfg(feature = "torch")]
        libtorch,
        #[cfg(feature = "torch")]
        self_test,
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("engine {}", report.engine_version);
        #[cfg(feature = "torch")]
        {
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
                "cuda linked {}, available {}, devices {}",
                t.cuda_linked, t.cuda_available, t.cuda_device_count
            );
            match &report.self_test {
                Ok(r) => println!(
                    "self-test on {}: loss {:.4} -> {:.4} in {} steps ({:.0} ms)",
                    r.device, r.initial_loss, r.final_loss, r.steps, r.elapsed_ms
                ),
                Err(e) => println!("self-test FAILED: {e}"),
            }
        }
        #[cfg(not(feature = "torch"))]
        println!("built without libtorch (feature `torch`): training stages are unavailable");
    }
    #[cfg(feature = "torch")]
    if report.self_test.is_err() {
        return Ok(ExitCode::from(crate::EXIT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}
