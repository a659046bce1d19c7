//! Following many jobs: the batched sync against per-job polling, and a burst of
//! submissions whose endpoint lookups would be throttled.

mod support;

use serde_json::{Value, json};
use support::*;

/// Reads of job state by the operator of `namespace`: ListJobs pages and GetJob calls.
async fn reads(proxy: &Proxy, namespace: &str) -> (u64, u64) {
    let calls = proxy.calls_of(namespace).await;
    let count = |operation: &str| calls[operation].as_u64().unwrap_or_default();
    (count("mediaconvert:ListJobs"), count("mediaconvert:GetJob"))
}

async fn apply_all(api: &kube::Api<mediaconvert_operator::api::MediaConvertJob>, names: &[String]) {
    let creates = names
        .iter()
        .map(|name| async move { create(api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await });
    futures::future::join_all(creates).await;
}

async fn wait_all_complete(
    api: &kube::Api<mediaconvert_operator::api::MediaConvertJob>,
    names: &[String],
) {
    for name in names {
        wait_for(api, name, "Complete", phase_is("Complete")).await;
    }
}

/// Asserts that each resource has exactly one job.
fn assert_one_job_each(jobs: &[Value], expected: usize) {
    let mut uids: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job["userMetadata"]["mediaconvert.operators.dev/uid"].as_str())
        .collect();
    assert_eq!(
        uids.len(),
        expected,
        "expected {expected} jobs, got {}",
        uids.len()
    );
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), expected, "a resource has more than one job");
}

#[tokio::test]
async fn batched_sync_reads_pages_and_stops_when_idle() {
    const JOBS: usize = 40;
    const PROGRESS_MS: u64 = 6_000;
    let setup = setup("batched", timeline(PROGRESS_MS, complete())).await;
    let api = setup.namespace.jobs();
    let names: Vec<String> = (0..JOBS)
        .map(|index| format!("episode-{index:02}"))
        .collect();

    apply_all(&api, &names).await;
    wait_all_complete(&api, &names).await;

    let proxy = setup.env.proxy();
    let (list_pages, get_jobs) = reads(&proxy, &setup.namespace.name).await;
    // Polling each job every second for the 6.7 s of its timeline would take about
    // 7 GetJob calls per job, 280 in all. Each round of the batched sync reads the 40
    // jobs from 2 or 3 pages.
    let total = list_pages + get_jobs;
    assert!(
        total < JOBS as u64 * 2,
        "the sync made {list_pages} ListJobs and {get_jobs} GetJob calls for {JOBS} jobs"
    );
    assert!(list_pages > 0, "the sync never listed jobs");
    assert_one_job_each(&setup.submitted_jobs().await, JOBS);
    for name in &names {
        let job = api.get(name).await.expect("get failed");
        let status = job.status.expect("status");
        assert_eq!(status.job_percent_complete, Some(100), "{name}");
        assert!(status.finished_at.is_some(), "{name} has no finish time");
    }

    let samples = support::scrape::metrics(&setup.operator.metrics_url().await).await;
    let followed = samples.value("mediaconvert_operator_status_sync_jobs");
    assert_eq!(followed, 0.0, "finished jobs are still followed");

    // With nothing in flight the sync makes no call at all.
    let before = proxy.calls_of(&setup.namespace.name).await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    let after = proxy.calls_of(&setup.namespace.name).await;
    assert_eq!(
        before, after,
        "the operator called AWS with no job in flight"
    );
}

#[tokio::test]
async fn batched_sync_records_error_and_progress() {
    let steps = json!({"steps": [
        {"atMs": 0, "status": "SUBMITTED"},
        {"atMs": 300, "status": "PROGRESSING", "percent": 10, "currentPhase": "TRANSCODING"},
        {"atMs": 2_300, "status": "PROGRESSING", "percent": 60, "currentPhase": "TRANSCODING"},
        {"atMs": 10_000, "status": "PROGRESSING", "percent": 60, "currentPhase": "TRANSCODING"},
        {"atMs": 10_300, "status": "ERROR", "errorCode": 1040,
         "errorMessage": "Input file s3://example-media-in/missing.mp4 not found"},
    ]});
    let setup = setup("sync-error", steps).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("trailer", "{type: S3}", BASE_SETTINGS)).await;

    let progressing = wait_for(&api, "trailer", "Progressing", |job| {
        job.status
            .as_ref()
            .and_then(|status| status.job_percent_complete)
            .is_some_and(|percent| percent > 10)
    })
    .await;
    assert_eq!(
        progressing
            .status
            .expect("status")
            .phase
            .map(|p| p.to_string())
            .as_deref(),
        Some("Progressing")
    );
    let failed = wait_for(&api, "trailer", "Error", phase_is("Error")).await;
    let status = failed.status.expect("status");
    assert_eq!(status.error_code, Some(1040));
    assert!(
        status
            .error_message
            .as_deref()
            .is_some_and(|message| message.contains("missing.mp4")),
        "{status:?}"
    );
}

#[tokio::test]
async fn poll_mode_reads_each_job_with_get_job() {
    let setup = setup_with(
        "polling",
        timeline(1_500, complete()),
        &["--status-sync", "poll"],
    )
    .await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("trailer", "{type: S3}", BASE_SETTINGS)).await;
    wait_for(&api, "trailer", "Complete", phase_is("Complete")).await;

    let (list_pages, get_jobs) = reads(&setup.env.proxy(), &setup.namespace.name).await;
    assert!(get_jobs >= 1, "polling never read the job");
    assert_eq!(list_pages, 0, "polling listed jobs");
}

/// Fifty jobs applied at once while DescribeEndpoints is throttled: the operator uses the
/// regional endpoint and never calls it, so every job is submitted once.
#[tokio::test]
async fn burst_of_fifty_never_calls_describe_endpoints() {
    const JOBS: usize = 50;
    let setup = setup("c16-burst", timeline(300, complete())).await;
    let proxy = setup.env.proxy();
    proxy
        .fault_operator(
            &setup.namespace.name,
            json!({"operation": "mediaconvert:DescribeEndpoints", "status": 429,
                   "errorType": "TooManyRequestsException", "abovePerSecond": 0}),
        )
        .await;
    let api = setup.namespace.jobs();
    let names: Vec<String> = (1..=JOBS)
        .map(|index| format!("c16-burst-{index:02}"))
        .collect();

    apply_all(&api, &names).await;
    wait_all_complete(&api, &names).await;

    let describe = proxy
        .call_count(&setup.namespace.name, "mediaconvert:DescribeEndpoints")
        .await;
    assert_eq!(describe, 0, "the operator called DescribeEndpoints");
    let creates = proxy
        .call_count(&setup.namespace.name, "mediaconvert:CreateJob")
        .await;
    assert_eq!(creates, JOBS as u64, "expected one CreateJob per resource");
    assert_one_job_each(&setup.submitted_jobs().await, JOBS);
}

/// A job that finishes while a burst of new resources waits for the only reconcile slot
/// shows `Complete` within seconds, not after the burst has been submitted.
#[tokio::test]
async fn finish_shown_during_submission_burst() {
    const BURST: usize = 120;
    let args = [
        "--concurrency",
        "1",
        "--aws-rate-limit",
        "mediaconvert=2",
        "--poll-interval-seconds",
        "1",
        "--max-poll-interval-seconds",
        "1",
    ];
    let setup = setup_with("burst-finish", timeline(2_000, complete()), &args).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("first", "{type: S3}", BASE_SETTINGS)).await;
    let submitted = wait_for(&api, "first", "submitted", |job| {
        job.status
            .as_ref()
            .is_some_and(|status| status.job_id.is_some())
    })
    .await;
    let job_id = submitted
        .status
        .and_then(|status| status.job_id)
        .expect("job id");

    let names: Vec<String> = (0..BURST)
        .map(|index| format!("burst-{index:02}"))
        .collect();
    apply_all(&api, &names).await;
    wait_for(&api, "first", "Complete", phase_is("Complete")).await;
    let shown_ms = mediaconvert_operator::controller::sync::now_ms();

    // Two CreateJob calls per second submit the burst over about 60 s.
    let resources = api.list(&Default::default()).await.expect("list resources");
    let waiting = resources
        .items
        .iter()
        .filter(|job| {
            job.status
                .as_ref()
                .is_none_or(|status| status.job_id.is_none())
        })
        .count();
    assert!(
        waiting >= BURST / 2,
        "only {waiting} resources still waited for submission"
    );
    let job = setup.env.proxy().get_job(&job_id).await;
    let finished_ms = job["finishedMs"].as_i64().expect("finish time");
    let delay_ms = shown_ms - finished_ms;
    assert!(
        delay_ms < 20_000,
        "Complete was shown {delay_ms} ms after the job finished"
    );
}
