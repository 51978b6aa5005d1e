//! Child processes of a local control plane: output to a log file, killed on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

/// A running binary. Dropping it kills the process and reaps it, so nothing outlives the
/// control plane that started it, including when a test panics.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `binary` with `args`, sending stdout and stderr to `<log_dir>/<name>.log`.
    pub fn spawn(name: &str, binary: &Path, args: &[String], log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(binary)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        tracing::debug!(name, pid = child.id(), log = %log.display(), "started");
        Ok(Self {
            name: name.to_string(),
            child,
            log,
        })
    }

    /// Fails with the end of the log when the process has exited.
    pub fn check_running(&mut self) -> Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited ({status}); last lines of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(40)
            ),
        }
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to `limit` for the process to exit, as a graceful stop
    /// does; fails (and the drop kills it) if it is still running then.
    pub fn terminate(mut self, limit: std::time::Duration) -> Result<std::process::ExitStatus> {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .context("running kill -TERM")?;
        anyhow::ensure!(sent.success(), "kill -TERM {} failed", self.child.id());
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait()? {
                tracing::debug!(name = %self.name, %status, "exited after SIGTERM");
                return Ok(status);
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "{} still runs {limit:?} after SIGTERM",
                self.name
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Err(error) = self.child.kill() {
            tracing::warn!(name = %self.name, %error, "could not kill");
        }
        let _ = self.child.wait();
        tracing::debug!(name = %self.name, "stopped");
    }
}

/// Memory and CPU time of a process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Resources {
    /// VmRSS.
    pub rss_kib: u64,
    /// VmHWM: the peak RSS.
    pub hwm_kib: u64,
    /// User + system time so far.
    pub cpu_seconds: f64,
}

/// What process `pid` holds and has used so far, from `/proc/<pid>/status` and
/// `/proc/<pid>/stat`.
pub fn resources(pid: u32) -> Result<Resources> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (utime, stime) = (ticks(11), ticks(12));
    Ok(Resources {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_seconds: (utime + stime) as f64 / clock_ticks_per_second(),
    })
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
