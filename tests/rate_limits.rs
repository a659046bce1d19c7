//! Client-side rate limits against a proxy that throttles like an AWS quota.

mod support;

use serde_json::json;
use support::*;

const JOBS: usize = 8;

/// Builds a rule that returns `TooManyRequestsException` to this test's MediaConvert calls
/// beyond `per_second` in any second.
fn quota(per_second: u32) -> serde_json::Value {
    json!({"operation": "mediaconvert:*", "status": 429,
           "errorType": "TooManyRequestsException", "abovePerSecond": per_second})
}

async fn apply_burst(setup: &Setup) {
    let api = setup.namespace.jobs();
    for index in 0..JOBS {
        create(
            &api,
            &job_yaml(&format!("episode-{index}"), "{type: S3}", BASE_SETTINGS),
        )
        .await;
    }
    for index in 0..JOBS {
        wait_for(
            &api,
            &format!("episode-{index}"),
            "Complete",
            phase_is("Complete"),
        )
        .await;
    }
}

#[tokio::test]
async fn paced_burst_meets_no_throttling() {
    let args = ["--aws-rate-limit", "mediaconvert=2"];
    let setup = setup_with("paced", timeline(300, complete()), &args).await;
    // The operator sends at most 2 requests a second after a burst of 2, so a quota of
    // 5 leaves room for requests that reach the proxy closer together than they left.
    setup
        .env
        .proxy()
        .fault_operator(&setup.namespace.name, quota(5))
        .await;

    apply_burst(&setup).await;
    let throttled = setup.env.proxy().faults_fired(&setup.namespace.name).await;
    assert_eq!(throttled, 0, "the proxy throttled {throttled} requests");
    assert_eq!(setup.submitted_jobs().await.len(), JOBS);
}

#[tokio::test]
async fn throttling_storm_completes_each_once() {
    let setup = setup("storm", timeline(300, complete())).await;
    setup
        .env
        .proxy()
        .fault_operator(&setup.namespace.name, quota(3))
        .await;

    apply_burst(&setup).await;
    let throttled = setup.env.proxy().faults_fired(&setup.namespace.name).await;
    assert!(throttled > 0, "the quota never throttled");
    let jobs = setup.submitted_jobs().await;
    assert_eq!(
        jobs.len(),
        JOBS,
        "expected one job per resource, got {jobs:?}"
    );
    let mut uids: Vec<&str> = jobs
        .iter()
        .filter_map(|job| job["userMetadata"]["mediaconvert.operators.dev/uid"].as_str())
        .collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), JOBS, "a resource has more than one job");
}
