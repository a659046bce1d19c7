//! Measures what following many running jobs costs the operator, with the batched
//! `ListJobs` sync, with that sync as a fallback behind job state change events from an
//! SQS queue, and with `GetJob` polling per resource as the baseline: AWS calls,
//! Kubernetes API writes, latencies, and the operator process's peak memory and CPU.
//!
//! `make bench-sync` runs it. It expects the local environment of `hack/env-up.sh`, an
//! emulator proxy started with `--local-jobs` at `MCO_BENCH_PROXY_URL`, and the operator
//! binary at `MCO_BENCH_OPERATOR`. Each run gets a fresh namespace, a fresh operator
//! process and a fresh access key, whose calls the proxy counts apart.

mod cluster;
mod operator;
mod proxy;
mod report;
mod run;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// Runs the status sync benchmark against the local environment.
#[derive(Parser)]
struct Args {
    /// Numbers of resources. Each size runs once per mode.
    #[arg(default_values_t = [100, 1000, 10000])]
    sizes: Vec<usize>,

    /// Modes to run for each size, in order: `batched`, `events` (batched, with job events
    /// from an SQS queue) or `poll`.
    #[arg(long, value_delimiter = ',', default_value = "batched,events,poll")]
    modes: Vec<String>,

    /// The operator's --poll-interval-seconds, the same in both modes.
    #[arg(long, default_value_t = 5)]
    poll_interval_seconds: u64,

    /// Seconds each job spends PROGRESSING before it completes.
    #[arg(long, default_value_t = 60)]
    progress_seconds: u64,

    /// In mode `events`, minimum seconds between two STATUS_UPDATE events of a job.
    #[arg(long, default_value_t = 20)]
    status_update_seconds: u64,

    /// The operator's --concurrency.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,

    /// Seconds a run may take until every resource is Complete, plus 100 ms per resource.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,

    /// `--bench`, which `cargo bench` passes to every bench target.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Current time in epoch milliseconds.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970");
    since_epoch.as_millis() as i64
}

fn required_var(name: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set; run the benchmark with `make bench-sync`"))
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    for mode in &args.modes {
        assert!(
            matches!(mode.as_str(), "batched" | "events" | "poll"),
            "unknown mode {mode:?}; use batched, events or poll"
        );
    }
    mediaconvert_operator::install_crypto_provider();
    required_var("KUBECONFIG");
    let client = kube::Client::try_default()
        .await
        .expect("failed to build a client from KUBECONFIG");
    let fixtures = aws_fixtures::Aws::connect(&required_var("MCO_FAKECLOUD_URL")).await;
    let seeded = fixtures
        .seed_default()
        .await
        .expect("failed to create the role, key and buckets in the emulator");
    let log_dir = PathBuf::from(required_var("MCO_BENCH_LOG_DIR"));
    std::fs::create_dir_all(&log_dir)
        .unwrap_or_else(|error| panic!("failed to create {}: {error}", log_dir.display()));

    let bench = run::Bench {
        client,
        proxy: proxy::Proxy::new(required_var("MCO_BENCH_PROXY_URL")),
        operator_binary: PathBuf::from(required_var("MCO_BENCH_OPERATOR")),
        log_dir,
        role_arn: seeded.role_arn,
        key_arn: seeded.key_arn,
        poll_interval: Duration::from_secs(args.poll_interval_seconds.max(1)),
        progress: Duration::from_secs(args.progress_seconds),
        status_update: Duration::from_secs(args.status_update_seconds),
        aws: fixtures,
        concurrency: args.concurrency,
        base_timeout: Duration::from_secs(args.timeout_seconds),
    };
    println!(
        "status sync benchmark: sizes {:?}, modes {:?}, poll interval {} s, jobs progress {} s, \
         STATUS_UPDATE every {} s in mode events, concurrency {}",
        args.sizes,
        args.modes,
        args.poll_interval_seconds,
        args.progress_seconds,
        args.status_update_seconds,
        args.concurrency
    );
    let mut all = Vec::new();
    for &size in &args.sizes {
        for mode in &args.modes {
            let (result, leftovers) = bench.run(size, mode).await;
            all.push(report::print_run(&result, bench.poll_interval));
            leftovers.delete(&bench.aws).await;
        }
    }
    report::print_summary(&all, bench.poll_interval);
    let failed = all.iter().filter(|figures| !figures.one_job_each).count();
    assert!(
        failed == 0,
        "{failed} runs did not have exactly one job per resource"
    );
}
