//! The operator under test, a release build started as a child process for one
//! namespace, and its peak memory and CPU time read from `/proc`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Client-side AWS rate per service, far above what a run sends, so that the figures
/// show the status sync and not the operator's rate limiter.
const RATE_LIMITS: &str = "mediaconvert=100000,kms=100000,iam=100000,s3=100000";

/// Command line and environment of the operator of one run.
pub struct Launch<'a> {
    pub binary: &'a Path,
    pub namespace: &'a str,
    /// `--status-sync`: `batched` or `poll`.
    pub status_sync: &'a str,
    /// `--events-queue-url`, when the operator reads job events.
    pub events_queue_url: Option<&'a str>,
    pub poll_interval: Duration,
    pub concurrency: u16,
    pub proxy_url: &'a str,
    pub access_key_id: &'a str,
    pub log: PathBuf,
}

pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

/// Peak resident memory and CPU time of the operator process so far.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// `VmHWM` of `/proc/PID/status`, in KiB.
    pub peak_rss_kib: u64,
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
}

impl Operator {
    pub fn start(launch: &Launch<'_>) -> Self {
        let log_file = std::fs::File::create(&launch.log)
            .unwrap_or_else(|error| panic!("failed to create {}: {error}", launch.log.display()));
        let poll_interval = launch.poll_interval.as_secs().to_string();
        let concurrency = launch.concurrency.to_string();
        let mut args = vec![
            "run",
            "--namespace",
            launch.namespace,
            "--status-sync",
            launch.status_sync,
            "--poll-interval-seconds",
            &poll_interval,
            "--concurrency",
            &concurrency,
            "--aws-rate-limit",
            RATE_LIMITS,
            "--metrics-address",
            "127.0.0.1:0",
        ];
        if let Some(url) = launch.events_queue_url {
            args.extend(["--events-queue-url", url]);
        }
        let child = Command::new(launch.binary)
            .args(args)
            .env("AWS_ENDPOINT_URL", launch.proxy_url)
            .env("AWS_ACCESS_KEY_ID", launch.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {}: {error}", launch.binary.display()));
        Self {
            child,
            log: launch.log.clone(),
        }
    }

    /// Waits until `/readyz` returns 200, which the operator does once its watch has
    /// listed the namespace's resources.
    pub async fn wait_ready(&mut self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let http = reqwest::Client::new();
        loop {
            if let Some(address) = self.metrics_address() {
                let ready = http.get(format!("http://{address}/readyz")).send().await;
                if ready.is_ok_and(|response| response.status().is_success()) {
                    return;
                }
            }
            if let Ok(Some(exit)) = self.child.try_wait() {
                panic!(
                    "the operator exited with {exit} before it was ready; see {}",
                    self.log.display()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator was not ready within {timeout:?}; see {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Address of the metrics server, from the operator's start-up log line.
    fn metrics_address(&self) -> Option<String> {
        let log = std::fs::read_to_string(&self.log).ok()?;
        let line = log
            .lines()
            .find(|line| line.contains("Serving metrics and probes"))?;
        let address = line.split("address=").nth(1)?.split_whitespace().next()?;
        Some(address.to_string())
    }

    /// Fails when the operator has exited, which would leave a run waiting in vain.
    pub fn assert_running(&mut self) {
        if let Ok(Some(exit)) = self.child.try_wait() {
            panic!(
                "the operator exited with {exit} during the run; see {}",
                self.log.display()
            );
        }
    }

    pub fn usage(&self) -> Usage {
        let pid = self.child.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_else(|error| panic!("failed to read /proc/{pid}/status: {error}"));
        let peak_rss_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
            .expect("/proc/PID/status has no VmHWM line");
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_else(|error| panic!("failed to read /proc/{pid}/stat: {error}"));
        Usage {
            peak_rss_kib,
            cpu_seconds: cpu_ticks(&stat) as f64 / clock_ticks_per_second() as f64,
        }
    }
}

/// Kills the process, also when a run panics, so that no operator outlives its run.
impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sums `utime` and `stime`, fields 14 and 15 of `/proc/PID/stat`, in clock ticks. The
/// command name in field 2 may contain spaces, so fields are counted after its `)`.
fn cpu_ticks(stat: &str) -> u64 {
    let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |index: usize| -> u64 {
        fields
            .get(index)
            .and_then(|value| value.parse().ok())
            .expect("/proc/PID/stat has fewer fields than expected")
    };
    // The slice starts at field 3 (state), so field 14 is at index 11.
    field(11) + field(12)
}

/// Clock ticks per second of `/proc` times, from `getconf CLK_TCK`.
fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("failed to run getconf CLK_TCK");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK printed no number")
}
