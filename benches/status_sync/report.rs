//! Figures of a run, computed from its raw results, and their printing: per run, then a
//! table of all runs and the ratios of batched and events to poll for each size.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::run::{RunResult, one_job_per_resource};

/// Read operations of the status sync.
const READS: [&str; 2] = ["mediaconvert:GetJob", "mediaconvert:ListJobs"];

/// Operations of the job events reader.
const EVENT_CALLS: [&str; 3] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessageBatch",
    "sqs:DeleteMessage",
];

/// Figures of one run.
pub struct Figures {
    pub size: usize,
    pub mode: String,
    pub reads_per_job: f64,
    /// Read calls per second from the first CreateJob to the last job's finish.
    pub reads_per_second: f64,
    /// Read calls per in-flight job per poll interval: the reads divided by the jobs'
    /// summed lifetimes (CreateJob to finish) in poll intervals.
    pub reads_per_job_interval: f64,
    pub writes_per_job: f64,
    /// SQS receive and delete calls of the events reader per resource.
    pub event_calls_per_job: f64,
    /// Milliseconds from the create request to the proxy recording CreateJob.
    pub apply_to_create_ms: Percentiles,
    /// Milliseconds from the scripted finish to the watch showing `Complete`.
    pub finish_to_complete_ms: Percentiles,
    pub peak_rss_mib: f64,
    pub cpu_seconds: f64,
    pub one_job_each: bool,
}

#[derive(Clone, Copy, Default)]
pub struct Percentiles {
    pub p50: i64,
    pub p99: i64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `values`; zero when there are none.
    fn of(mut values: Vec<i64>) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        values.sort_unstable();
        let rank = |percent: usize| {
            let index = (values.len() * percent).div_ceil(100).max(1) - 1;
            values[index]
        };
        Self {
            p50: rank(50),
            p99: rank(99),
        }
    }
}

/// Prints the figures of one run with its calls and writes by kind, and returns them.
pub fn print_run(result: &RunResult, poll_interval: Duration) -> Figures {
    let figures = figures(result, poll_interval);
    let size = result.size as f64;
    match one_job_per_resource(result) {
        Ok(()) => println!(
            "  check: one job per resource: ok ({} jobs for {} resources)",
            result.jobs.len(),
            result.created.len()
        ),
        Err(problems) => println!("  check: one job per resource: FAILED, {problems}"),
    }

    println!("  AWS calls per job: {}", per_job(&result.calls, size));
    println!(
        "  read calls (GetJob + ListJobs): {:.2} per job, {:.1} per second in flight, \
         {:.3} per job per {} s interval",
        figures.reads_per_job,
        figures.reads_per_second,
        figures.reads_per_job_interval,
        poll_interval.as_secs()
    );
    println!(
        "  Kubernetes API writes per job: {:.2} ({})",
        figures.writes_per_job,
        per_job(&operator_writes(result), size)
    );

    let (apply, finish) = (figures.apply_to_create_ms, figures.finish_to_complete_ms);
    println!(
        "  apply to CreateJob: p50 {} ms, p99 {} ms",
        apply.p50, apply.p99
    );
    println!(
        "  job finish to Complete: p50 {} ms, p99 {} ms",
        finish.p50, finish.p99
    );
    println!(
        "  operator: peak RSS {:.1} MiB, CPU {:.1} s",
        figures.peak_rss_mib, figures.cpu_seconds
    );
    figures
}

fn per_job<'a>(counts: impl IntoIterator<Item = (&'a String, &'a u64)>, size: f64) -> String {
    let mut text = String::new();
    for (name, count) in counts {
        if !text.is_empty() {
            text.push_str(", ");
        }
        let _ = write!(text, "{name} {:.2}", *count as f64 / size);
    }
    text
}

/// Returns the run's API writes without the benchmark's own creates of the resources.
fn operator_writes(result: &RunResult) -> std::collections::BTreeMap<String, u64> {
    let mut writes = result.writes.0.clone();
    if let Some(creates) = writes.get_mut("mediaconvertjobs POST") {
        *creates = creates.saturating_sub(result.created.len() as u64);
    }
    writes.retain(|_, count| *count > 0);
    writes
}

/// Sums the run's calls of `operations`.
fn count(result: &RunResult, operations: &[&str]) -> u64 {
    let calls = operations
        .iter()
        .map(|operation| result.calls.get(*operation));
    calls.map(|count| count.copied().unwrap_or_default()).sum()
}

fn figures(result: &RunResult, poll_interval: Duration) -> Figures {
    let size = result.size as f64;
    let reads = count(result, &READS);
    let first_created = result.jobs.iter().map(|job| job.created_ms).min();
    let last_finished = result.jobs.iter().filter_map(|job| job.finished_ms).max();
    let in_flight_ms = match (first_created, last_finished) {
        (Some(first), Some(last)) => (last - first).max(1),
        _ => 1,
    };
    let lifetimes_ms: i64 = result
        .jobs
        .iter()
        .filter_map(|job| Some(job.finished_ms? - job.created_ms))
        .sum();
    let intervals = lifetimes_ms as f64 / poll_interval.as_millis() as f64;
    let writes: u64 = operator_writes(result).values().sum();
    Figures {
        size: result.size,
        mode: result.mode.clone(),
        reads_per_job: reads as f64 / size,
        reads_per_second: reads as f64 * 1000.0 / in_flight_ms as f64,
        reads_per_job_interval: reads as f64 / intervals.max(1.0),
        writes_per_job: writes as f64 / size,
        event_calls_per_job: count(result, &EVENT_CALLS) as f64 / size,
        apply_to_create_ms: Percentiles::of(apply_to_create(result)),
        finish_to_complete_ms: Percentiles::of(finish_to_complete(result)),
        peak_rss_mib: result.usage.peak_rss_kib as f64 / 1024.0,
        cpu_seconds: result.usage.cpu_seconds,
        one_job_each: one_job_per_resource(result).is_ok(),
    }
}

fn apply_to_create(result: &RunResult) -> Vec<i64> {
    let sent_by_uid: HashMap<&str, i64> = result
        .created
        .values()
        .map(|created| (created.uid.as_str(), created.sent_ms))
        .collect();
    result
        .jobs
        .iter()
        .filter_map(|job| {
            let uid = job.user_metadata.get(crate::proxy::UID_KEY)?;
            Some(job.created_ms - sent_by_uid.get(uid.as_str())?)
        })
        .collect()
}

fn finish_to_complete(result: &RunResult) -> Vec<i64> {
    let finished_by_uid: HashMap<&str, i64> = result
        .jobs
        .iter()
        .filter_map(|job| {
            let uid = job.user_metadata.get(crate::proxy::UID_KEY)?;
            Some((uid.as_str(), job.finished_ms?))
        })
        .collect();
    result
        .created
        .iter()
        .filter_map(|(name, created)| {
            let complete = result.complete_ms.get(name)?;
            Some(complete - finished_by_uid.get(created.uid.as_str())?)
        })
        .collect()
}

/// Prints every run as a Markdown table, then batched and events divided by poll for each
/// size.
pub fn print_summary(all: &[Figures], poll_interval: Duration) {
    let interval = poll_interval.as_secs();
    println!(
        "\n| N | mode | reads/job | reads/s | reads/job/{interval} s | writes/job | SQS calls/job | apply to CreateJob p50/p99 ms | finish to Complete p50/p99 ms | peak RSS MiB | CPU s | one job each |"
    );
    println!("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for figures in all {
        let (apply, finish) = (figures.apply_to_create_ms, figures.finish_to_complete_ms);
        println!(
            "| {} | {} | {:.2} | {:.1} | {:.3} | {:.2} | {:.2} | {} / {} | {} / {} | {:.1} | {:.1} | {} |",
            figures.size,
            figures.mode,
            figures.reads_per_job,
            figures.reads_per_second,
            figures.reads_per_job_interval,
            figures.writes_per_job,
            figures.event_calls_per_job,
            apply.p50,
            apply.p99,
            finish.p50,
            finish.p99,
            figures.peak_rss_mib,
            figures.cpu_seconds,
            if figures.one_job_each { "yes" } else { "NO" },
        );
    }
    print_ratios(all);
}

fn print_ratios(all: &[Figures]) {
    let find = |size: usize, mode: &str| {
        all.iter()
            .find(|figures| figures.size == size && figures.mode == mode)
    };
    let mut sizes: Vec<usize> = all.iter().map(|figures| figures.size).collect();
    sizes.dedup();
    for size in sizes {
        let Some(poll) = find(size, "poll") else {
            continue;
        };
        for mode in ["batched", "events"] {
            if let Some(figures) = find(size, mode) {
                print_ratio(size, figures, poll);
            }
        }
    }
}

fn print_ratio(size: usize, figures: &Figures, poll: &Figures) {
    let ratio = |a: f64, b: f64| if b == 0.0 { f64::NAN } else { a / b };
    println!(
        "\n{} / poll at N={size}: read calls {:.3}, reads per second {:.3}, \
         writes {:.2}, apply to CreateJob p50 {:.2}, finish to Complete p50 {:.2}, \
         peak RSS {:.2}, CPU {:.2}",
        figures.mode,
        ratio(figures.reads_per_job, poll.reads_per_job),
        ratio(figures.reads_per_second, poll.reads_per_second),
        ratio(figures.writes_per_job, poll.writes_per_job),
        ratio(
            figures.apply_to_create_ms.p50 as f64,
            poll.apply_to_create_ms.p50 as f64
        ),
        ratio(
            figures.finish_to_complete_ms.p50 as f64,
            poll.finish_to_complete_ms.p50 as f64
        ),
        ratio(figures.peak_rss_mib, poll.peak_rss_mib),
        ratio(figures.cpu_seconds, poll.cpu_seconds),
    );
}
