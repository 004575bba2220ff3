//! Showing a run: progress bars on a terminal, plain lines elsewhere. Only this crate
//! knows about terminals; the core only emits events.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use engine_core::events::{Event, Outcome, Reporter};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress bars, one per running stage.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    /// Bars drawn on standard error.
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn line(&self, text: String) {
        // println through MultiProgress keeps the bars below the log lines.
        let _ = self.multi.println(text);
    }
}

fn spinner_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:<16.bold} {elapsed:>4} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner:.cyan} {prefix:<16.bold} {elapsed:>4} [{bar:24.cyan/blue}] {percent:>3}% eta {eta} {wide_msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Reporter for Bars {
    fn on_event(&self, event: &Event) {
        match event {
            Event::RunStarted {
                run_id,
                stages,
                to_run,
                ..
            } => {
                self.line(format!(
                    "run {run_id}: {} stages, {to_run} to run",
                    stages.len()
                ));
            }
            Event::StageCached { stage, .. } => self.line(format!("  cached   {stage}")),
            Event::StageStarted {
                stage, cpus, gpus, ..
            } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(spinner_style());
                bar.set_prefix(stage.clone());
                bar.set_message(resources(*cpus, gpus));
                bar.enable_steady_tick(Duration::from_millis(120));
                if let Ok(mut bars) = self.bars.lock() {
                    bars.insert(stage.clone(), bar);
                }
            }
            Event::StageProgress {
                stage,
                fraction,
                message,
            } => {
                if let Ok(bars) = self.bars.lock()
                    && let Some(bar) = bars.get(stage)
                {
                    if let Some(f) = fraction {
                        if bar.length().is_none() {
                            bar.set_length(1000);
                            bar.set_style(bar_style());
                        }
                        bar.set_position((f * 1000.0) as u64);
                    }
                    bar.set_message(message.clone());
                }
            }
            Event::StageFinished {
                stage,
                outcome,
                duration_s,
                message,
            } => {
                if let Ok(mut bars) = self.bars.lock()
                    && let Some(bar) = bars.remove(stage)
                {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                self.line(finished_line(
                    stage,
                    *outcome,
                    *duration_s,
                    message.as_deref(),
                ));
            }
            Event::RunFinished { .. } => {}
        }
    }
}

/// Plain lines on standard error, progress at most every few seconds per stage.
pub struct Lines {
    last_progress: Mutex<HashMap<String, Instant>>,
}

impl Lines {
    /// A plain-line reporter.
    pub fn new() -> Lines {
        Lines {
            last_progress: Mutex::new(HashMap::new()),
        }
    }
}

impl Reporter for Lines {
    fn on_event(&self, event: &Event) {
        let line = match event {
            Event::RunStarted {
                run_id,
                stages,
                to_run,
                ..
            } => {
                format!("run {run_id}: {} stages, {to_run} to run", stages.len())
            }
            Event::StageCached { stage, .. } => format!("  cached   {stage}"),
            Event::StageStarted {
                stage, cpus, gpus, ..
            } => format!("  start    {stage} ({})", resources(*cpus, gpus)),
            Event::StageProgress {
                stage,
                fraction,
                message,
            } => {
                let now = Instant::now();
                let Ok(mut last) = self.last_progress.lock() else {
                    return;
                };
                let due = last
                    .get(stage)
                    .is_none_or(|t| now.duration_since(*t) >= Duration::from_secs(5));
                if !due {
                    return;
                }
                last.insert(stage.clone(), now);
                match fraction {
                    Some(f) => format!("  progress {stage} {:>3.0}% {message}", f * 100.0),
                    None => format!("  progress {stage} {message}"),
                }
            }
            Event::StageFinished {
                stage,
                outcome,
                duration_s,
                message,
            } => finished_line(stage, *outcome, *duration_s, message.as_deref()),
            Event::RunFinished { .. } => return,
        };
        eprintln!("{line}");
    }
}

fn resources(cpus: u32, gpus: &[u32]) -> String {
    if gpus.is_empty() {
        format!("{cpus} cpu")
    } else {
        format!(
            "{cpus} cpu, gpu {}",
            gpus.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

fn finished_line(stage: &str, outcome: Outcome, duration_s: f64, message: Option<&str>) -> String {
    let tag = match outcome {
        Outcome::Cached => "cached",
        Outcome::Succeeded => "done",
        Outcome::Failed => "FAILED",
        Outcome::TimedOut => "TIMEOUT",
        Outcome::Cancelled => "stopped",
        Outcome::Skipped => "skipped",
    };
    match message {
        Some(m) => format!("  {tag:<8} {stage} ({duration_s:.1}s): {m}"),
        None => format!("  {tag:<8} {stage} ({duration_s:.1}s)"),
    }
}
