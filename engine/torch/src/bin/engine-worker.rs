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
    /// Run one stage job that needs libtorch (started by `engine stage-exec`).
    #[command(hide = true)]
    StageExec {
        /// The job file the executor wrote.
        job: std::path::PathBuf,
    },
    /// Predict the sealed test split with a trained model (started by `engine test`, the
    /// only caller allowed to open it); records the opening in the workspace.
    #[command(hide = true)]
    TestPredict {
        /// The model's stage job, written by `engine test`.
        job: std::path::PathBuf,
        /// Where the predictions CSV goes.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Why the test split is opened (recorded).
        #[arg(long)]
        purpose: String,
        /// Device: `cpu`, `cuda`, `cuda:N` or `auto`.
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Benchmark the image path: decode, resize and cache on the first epoch, then augment
    /// on the device every epoch; prints one JSON line per epoch (bench/image-pipeline.sh).
    BenchImages {
        /// Directory of JPEG or PNG images (searched recursively).
        dir: std::path::PathBuf,
        /// Where the decoded-image cache goes (emptied first).
        #[arg(long)]
        cache: std::path::PathBuf,
        /// Resolution.
        #[arg(long, default_value_t = 224)]
        size: usize,
        /// Channels of the cache: 3 (RGB) or 1 (grey, as for radiographs).
        #[arg(long, default_value = "3", value_parser = channels_arg())]
        channels: usize,
        /// Epochs.
        #[arg(long, default_value_t = 3)]
        epochs: u64,
        /// Batch size.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Decoding threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Device: `cpu`, `cuda`, `cuda:N` or `auto`.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Benchmark training speed: a network trained with AdamW and cross-entropy on random
    /// images, the same loop as bench/train_speed.py; prints one JSON line.
    BenchTrain {
        /// The network (`resnet18`, `resnet50`, `efficientnet_b0`, `convnext_tiny`,
        /// `small_cnn`).
        #[arg(long, default_value = "resnet18")]
        backbone: String,
        /// Resolution.
        #[arg(long, default_value_t = 128)]
        size: i64,
        /// Batch size.
        #[arg(long, default_value_t = 32)]
        batch: i64,
        /// Timed steps.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Untimed steps first.
        #[arg(long, default_value_t = 3)]
        warmup: usize,
        /// libtorch CPU threads.
        #[arg(long, default_value_t = 2)]
        threads: i32,
        /// Device: `cpu`, `cuda`, `cuda:N` or `auto`.
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
        Cmd::StageExec { job } => stage_exec(&job),
        Cmd::TestPredict {
            job,
            out,
            purpose,
            device,
        } => {
            let result = engine_core::job::StageJob::read(&job)
                .and_then(|j| engine_torch::sealed::test_predictions(&j, &out, &purpose, &device));
            match result {
                Ok(n) => {
                    println!("predicted {n} test images");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Cmd::BenchTrain {
            backbone,
            size,
            batch,
            steps,
            warmup,
            threads,
            device,
        } => match bench_train(&backbone, size, batch, steps, warmup, threads, &device) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
        Cmd::BenchImages {
            dir,
            cache,
            size,
            channels,
            epochs,
            batch,
            threads,
            device,
        } => match bench_images(
            &dir,
            &cache,
            (size, channels),
            epochs,
            batch,
            threads,
            &device,
        ) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(1)
            }
        },
    }
}

/// Runs a libtorch stage job: exit 0, 1 when the stage failed, 2 when the job is unreadable.
fn stage_exec(path: &std::path::Path) -> ExitCode {
    let job = match engine_core::job::StageJob::read(path) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match job.kind {
        engine_core::manifest::StageKind::ClassifierTrain => engine_torch::train::run_stage(&job),
        engine_core::manifest::StageKind::ModelPredict => engine_torch::predict::run_stage(&job),
        engine_core::manifest::StageKind::DetectorTrain => engine_torch::detect::run_stage(&job),
        engine_core::manifest::StageKind::PseudoLabel => engine_torch::pseudo::run_stage(&job),
        other => Err(format!("`{}` is not a libtorch stage", other.as_str())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: stage `{}`: {e}", job.stage);
            ExitCode::from(1)
        }
    }
}

/// `--channels`: 1 or 3.
fn channels_arg() -> impl clap::builder::TypedValueParser<Value = usize> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(["1", "3"]).map(|v| if v == "1" { 1 } else { 3 })
}

/// One epoch over the images of `dir` per line of output; the first epoch builds the cache
/// of `size` pixels and `channels` channels.
fn bench_images(
    dir: &std::path::Path,
    cache: &std::path::Path,
    (size, channels): (usize, usize),
    epochs: u64,
    batch: usize,
    threads: usize,
    device: &str,
) -> Result<(), String> {
    use engine_torch::images::{Augment, DeviceImages, epoch_order};
    use std::time::Instant;
    let device = engine_torch::parse_device(device).map_err(|e| e.to_string())?;
    let paths: Vec<std::path::PathBuf> =
        engine_data::read::list_files(dir, dir, engine_data::read::IMAGE_EXTENSIONS)
            .into_iter()
            .map(|p| dir.join(p))
            .collect();
    if paths.is_empty() {
        return Err(format!("no images under {}", dir.display()));
    }
    let _ = std::fs::remove_dir_all(cache);
    let ids: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    let id_refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let key = engine_data::imagecache::key("bench", &id_refs, size, channels);
    let aug = Augment::default();
    let mut images = None;
    for epoch in 0..epochs {
        let started = Instant::now();
        if images.is_none() {
            let info = match engine_data::imagecache::open(cache, &key) {
                Some(i) => i,
                None => {
                    engine_data::imagecache::build(
                        cache,
                        &key,
                        &paths,
                        size,
                        channels,
                        threads,
                        &|_| {},
                    )
                    .map_err(|e| e.to_string())?
                    .0
                }
            };
            images = Some(DeviceImages::load(&info, device, u64::MAX).map_err(|e| e.to_string())?);
        }
        let Some(imgs) = images.as_ref() else { break };
        let order = epoch_order(imgs.len(), 0, epoch);
        let mut checksum = 0.0;
        for (k, chunk) in order.chunks(batch).enumerate() {
            let (x, _) = aug
                .apply_indices(imgs, None, chunk, epoch, (k * batch) as u64)
                .map_err(|e| e.to_string())?;
            checksum += x.sum(engine_torch::tch::Kind::Float).double_value(&[]);
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{}",
            serde_json::json!({"epoch": epoch + 1, "images": imgs.len(), "seconds": secs, "images_per_s": imgs.len() as f64 / secs, "checksum": checksum})
        );
    }
    Ok(())
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

/// Trains `backbone` on random `batch x 3 x size x size` images for `warmup + steps` steps
/// and prints the timed steps' images per second and median step time as one JSON line.
fn bench_train(
    backbone: &str,
    size: i64,
    batch: i64,
    steps: usize,
    warmup: usize,
    threads: i32,
    device: &str,
) -> Result<(), String> {
    use engine_torch::tch::nn::{self, ModuleT, OptimizerConfig};
    use engine_torch::tch::{Kind, Tensor};
    use std::time::Instant;
    if steps == 0 || batch < 1 || size < 32 {
        return Err("--steps and --batch must be at least 1, --size at least 32".into());
    }
    let device = engine_torch::parse_device(device).map_err(|e| e.to_string())?;
    let kind: engine_core::stages::train::Backbone =
        serde_json::from_value(serde_json::Value::String(backbone.to_owned()))
            .map_err(|_| format!("unknown backbone `{backbone}`"))?;
    engine_torch::tch::set_num_threads(threads);
    engine_torch::tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let net = engine_torch::nets::Net::new(&vs.root(), kind, 3, 2);
    let mut opt = nn::AdamW::default()
        .build(&vs, 1e-3)
        .map_err(|e| e.to_string())?;
    let x = Tensor::randn([batch, 3, size, size], (Kind::Float, device));
    let y = Tensor::randint(2, [batch], (Kind::Int64, device));
    let mut times = Vec::with_capacity(steps);
    for i in 0..warmup + steps {
        let started = Instant::now();
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
        // Wait for the device, as the peer's `loss.item()` does.
        let _ = loss.double_value(&[]);
        if i >= warmup {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    let total: f64 = times.iter().sum();
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "{}",
        serde_json::json!({
            "side": "engine",
            "backbone": backbone,
            "size": size,
            "batch": batch,
            "steps": steps,
            "threads": threads,
            "images_per_second": (batch as f64 * steps as f64) / total,
            "median_step_seconds": median,
        })
    );
    Ok(())
}
