//! The services under test, run as the real release binaries in processes of
//! their own, so their memory is theirs alone: peak RSS is the kernel's
//! high-water mark (`VmHWM`), sampled until the process is stopped. CPU time
//! is the kernel's too: `utime + stime` from `/proc/<pid>/stat`, all threads.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

/// A binary built next to this one (`target/release/<name>`).
pub fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let path = me.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} is missing: build it with `cargo build --release --bins` (bench/run does)",
            path.display()
        );
    }
    Ok(path)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running child process and its peak RSS so far.
pub struct Service {
    pub name: String,
    child: Child,
    pid: u32,
    peak_kib: Arc<AtomicU64>,
}

impl Service {
    /// Starts `program` with `args` and `env`, its output appended to `log`.
    pub fn start(
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, String)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let out =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("child pid")?;
        let peak_kib = Arc::new(AtomicU64::new(0));
        let sampler = peak_kib.clone();
        tokio::spawn(async move {
            while let Some(kib) = vm_hwm_kib(pid) {
                sampler.fetch_max(kib, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            peak_kib,
        })
    }

    /// Peak resident memory so far, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        if let Some(kib) = vm_hwm_kib(self.pid) {
            self.peak_kib.fetch_max(kib, Ordering::Relaxed);
        }
        self.peak_kib.load(Ordering::Relaxed) as f64 / 1024.0
    }

    /// CPU time (user + system, every thread) the process has used so far,
    /// and with `children`, that of its live descendants too (uvicorn's
    /// workers); `None` once it has exited.
    pub fn cpu_seconds(&self, children: bool) -> Option<f64> {
        let pids = if children {
            descendants(self.pid)
        } else {
            vec![self.pid]
        };
        let ticks: u64 = pids.iter().filter_map(|&p| cpu_ticks(p)).sum();
        cpu_ticks(self.pid)?;
        Some(ticks as f64 / clock_ticks_per_second())
    }

    /// Stops the process and every process below it (uvicorn's workers
    /// outlive their supervisor otherwise), all with SIGKILL.
    pub async fn stop_with_children(self) {
        let below: Vec<String> = descendants(self.pid)
            .into_iter()
            .skip(1)
            .map(|p| p.to_string())
            .collect();
        self.stop().await;
        if !below.is_empty() {
            let _ = Command::new("kill")
                .arg("-KILL")
                .args(&below)
                .status()
                .await;
        }
    }

    /// Waits for the process to exit by itself; fails on a non-zero exit.
    pub async fn wait(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .with_context(|| format!("{} did not finish within {timeout:?}", self.name))??;
        if !status.success() {
            bail!("{} exited with {status}", self.name);
        }
        Ok(())
    }

    /// The exit status, if the process has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Stops the process (SIGKILL: its shutdown is not what is measured) and
    /// returns its peak RSS in MiB.
    pub async fn stop(mut self) -> f64 {
        let peak = self.peak_rss_mib();
        let _ = self.child.kill().await;
        peak
    }
}

/// `VmHWM` of a live process, in KiB; `None` once it has exited.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `utime + stime` of a live process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_stat_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Fields 14 and 15 of `/proc/<pid>/stat`. The command name (field 2) is in
/// parentheses and may hold spaces and parentheses itself, so the count
/// starts after the last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 14 is fields[11].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `pid` and every live process below it.
fn descendants(pid: u32) -> Vec<u32> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        let tasks = std::fs::read_dir(format!("/proc/{}/task", all[i]));
        for task in tasks.into_iter().flatten().flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
        i += 1;
    }
    all
}

/// `sysconf(_SC_CLK_TCK)`, asked of `getconf` once; 100 on Linux in practice.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Polls `url` until it answers 200, or fails after `timeout`.
pub async fn wait_ready(url: &str, timeout: Duration) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("{url} was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_peak_rss() {
        let kib = vm_hwm_kib(std::process::id()).expect("VmHWM of a live process");
        assert!(kib > 0);
    }

    #[test]
    fn cpu_ticks_are_read_past_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (web (worker) 1) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    1234 56 0 0 20 0 3 0 100 1000000 500 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(1234 + 56));
    }

    #[test]
    fn this_process_has_used_some_cpu_time() {
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_ticks(std::process::id()).unwrap() > 0);
    }

    #[test]
    fn a_process_that_does_not_exist_has_none() {
        assert_eq!(vm_hwm_kib(u32::MAX), None);
    }
}
