//! The local executor's launcher: each stage is a child process of the engine binary
//! (`engine stage-exec JOB`) in its own process group, its output copied to the stage's
//! log; time limits and interrupts stop the whole group.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Write};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::task::JoinSet;

use super::{Budget, Ended, ExecOptions, Launcher, Sink, StageLaunch, keep_tail, last_output};
use crate::events::Outcome;

/// Runs stages as child processes within the machine's CPU and GPU budget.
#[derive(Debug)]
pub(crate) struct LocalLauncher {
    opts: ExecOptions,
}

impl LocalLauncher {
    pub(crate) fn new(opts: ExecOptions) -> LocalLauncher {
        LocalLauncher { opts }
    }
}

impl Launcher for LocalLauncher {
    fn budget(&self) -> Option<Budget> {
        Some(Budget {
            cpus: self.opts.cpus,
            gpus: self.opts.gpus.clone(),
        })
    }

    async fn launch(self: Arc<Self>, stage: StageLaunch) -> io::Result<Ended> {
        self.supervise(stage).await
    }
}

impl LocalLauncher {
    async fn supervise(&self, launch: StageLaunch) -> io::Result<Ended> {
        let id = launch.job.stage.clone();
        let log_path = launch.log.clone();
        let log = Arc::new(Mutex::new(File::create(&log_path)?));
        let tail: Arc<Mutex<VecDeque<String>>> = Arc::new(Mutex::new(VecDeque::new()));

        let mut cmd = Command::new(&self.opts.program);
        cmd.args(&self.opts.program_args)
            .arg(&launch.job_file)
            .env(
                "CUDA_VISIBLE_DEVICES",
                launch
                    .gpus
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .env("OMP_NUM_THREADS", launch.cpus.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd.spawn()?;
        let pgid = child.id().map(|p| Pid::from_raw(p as i32));
        let mut readers = JoinSet::new();
        if let Some(out) = child.stdout.take() {
            readers.spawn(pump(
                out,
                id.clone(),
                log.clone(),
                tail.clone(),
                launch.sink.clone(),
            ));
        }
        if let Some(err) = child.stderr.take() {
            readers.spawn(pump(
                err,
                id.clone(),
                log.clone(),
                tail.clone(),
                launch.sink.clone(),
            ));
        }

        let deadline = async {
            match launch.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending::<()>().await,
            }
        };
        let mut cancel = launch.cancel.clone();
        let cancelled = async move {
            loop {
                if *cancel.borrow() {
                    return;
                }
                if cancel.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let (status, stopped) = tokio::select! {
            s = child.wait() => (Some(s?), None),
            _ = deadline => (None, Some(Outcome::TimedOut)),
            _ = cancelled => (None, Some(Outcome::Cancelled)),
        };
        let status = match status {
            Some(s) => s,
            None => stop(&mut child, pgid, self.opts.grace).await?,
        };
        // Readers end at end-of-file; a grandchild that escaped the process group could keep
        // a pipe open, so do not wait for them forever.
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while readers.join_next().await.is_some() {}
        })
        .await;
        if let Some(pg) = pgid {
            // Whatever is left of the stage's process group goes with it.
            let _ = killpg(pg, Signal::SIGKILL);
        }

        let last_lines = || tail.lock().map(|t| last_output(&t)).unwrap_or_default();
        let log_hint = format!(" (log: {})", log_path.display());
        Ok(match stopped {
            Some(Outcome::TimedOut) => {
                let limit = launch.timeout.map_or(0.0, |t| t.as_secs_f64() / 60.0);
                (
                    Outcome::TimedOut,
                    Some(format!(
                        "stopped after its time limit of {limit} min{log_hint}"
                    )),
                )
            }
            Some(o) => (o, Some("stopped: the run was interrupted".into())),
            None if status.success() => (Outcome::Succeeded, None),
            None => {
                use std::os::unix::process::ExitStatusExt;
                let how = match (status.code(), status.signal()) {
                    (Some(c), _) => format!("exited with status {c}"),
                    (None, Some(sig)) => format!("was killed by signal {sig}"),
                    _ => "failed".to_owned(),
                };
                (
                    Outcome::Failed,
                    Some(format!("{how}{}{log_hint}", last_lines())),
                )
            }
        })
    }
}

/// Asks the stage's process group to stop, then forces it after `grace`.
async fn stop(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    grace: Duration,
) -> io::Result<std::process::ExitStatus> {
    if let Some(pg) = pgid {
        let _ = killpg(pg, Signal::SIGTERM);
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            if let Some(pg) = pgid {
                let _ = killpg(pg, Signal::SIGKILL);
            }
            child.kill().await.ok();
            child.wait().await
        }
    }
}

/// Copies a child's output into its log, keeps the last lines, and forwards progress lines.
async fn pump<R: AsyncRead + Unpin>(
    stream: R,
    stage: String,
    log: Arc<Mutex<File>>,
    tail: Arc<Mutex<VecDeque<String>>>,
    sink: Arc<Sink>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Ok(mut f) = log.lock() {
                    let _ = f.write_all(&buf);
                }
                let line = String::from_utf8_lossy(&buf);
                let progress = tail
                    .lock()
                    .ok()
                    .and_then(|mut t| keep_tail(&mut t, &stage, line.trim_end()));
                if let Some(ev) = progress {
                    sink.emit(ev);
                }
            }
        }
    }
}
