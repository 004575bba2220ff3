//! Benchmark of the bootstrap of a binary AUC (bench/bootstrap-auc.sh runs it): reads a
//! predictions CSV, then times `--resamples` bootstrap resamples of the AUC in-process
//! and prints one JSON line with the point estimate, the interval and the seconds.
//!
//! Usage: cargo run --release -p engine-core --example bootstrap_auc -- FILE.csv [RESAMPLES] [REPEATS]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use engine_core::metrics::predictions::read_binary;
use engine_core::metrics::{BinaryData, BinaryOptions, Bootstrap, Units};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first().map(PathBuf::from) else {
        eprintln!("usage: bootstrap_auc FILE.csv [RESAMPLES] [REPEATS]");
        return ExitCode::from(2);
    };
    let number =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let (resamples, repeats) = (number(1, 2000), number(2, 5).max(1));
    let preds = match read_binary(&path, None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let bootstrap = Bootstrap {
        resamples,
        ..Bootstrap::default()
    };
    let units = Units::Items(preds.probs.len());
    let time = |f: &dyn Fn() -> f64| {
        let mut times = Vec::with_capacity(repeats);
        let mut last = f64::NAN;
        for _ in 0..repeats {
            let t = Instant::now();
            last = f();
            times.push(t.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        (times[times.len() / 2], times[0], last)
    };
    // The AUC alone, sorting included (as a fresh evaluation would).
    let (median, min, _) = time(&|| {
        let data = BinaryData::new(&preds.positive, &preds.probs).expect("checked by the reader");
        let est = data.bootstrap_auc(&units, &bootstrap).expect("units match");
        est.ci.map_or(f64::NAN, |c| c.0)
    });
    let data = BinaryData::new(&preds.positive, &preds.probs).expect("checked by the reader");
    let est = data.bootstrap_auc(&units, &bootstrap).expect("units match");
    // Every binary metric (what `engine metrics --task binary` computes).
    let (all_median, all_min, _) = time(&|| {
        let all = data
            .bootstrap(&BinaryOptions::default(), &units, &bootstrap)
            .expect("units match");
        all[0].value
    });
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (lo, hi) = est.ci.unwrap_or((f64::NAN, f64::NAN));
    println!(
        "{{\"n\": {}, \"resamples\": {resamples}, \"repeats\": {repeats}, \"threads\": {threads}, \"auc\": {}, \"ci\": [{lo}, {hi}], \"auc_seconds_median\": {median}, \"auc_seconds_min\": {min}, \"all_metrics_seconds_median\": {all_median}, \"all_metrics_seconds_min\": {all_min}}}",
        preds.probs.len(),
        est.value
    );
    ExitCode::SUCCESS
}
