//! `/metrics`, `/healthz` and `/readyz` of a running operator.

mod support;

use std::time::Duration;

use support::scrape::{self, Samples};
use support::*;

#[tokio::test]
async fn metrics_after_run_show_series() {
    let setup = setup("metrics", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    let kms = format!("{{type: KMS, kmsKeyArn: '{}'}}", setup.seeded.alias_arn);
    create(&api, &job_yaml("encrypted", &kms, BASE_SETTINGS)).await;
    let missing_key =
        "{type: KMS, kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:alias/no-such-key'}";
    create(&api, &job_yaml("missing-key", missing_key, BASE_SETTINGS)).await;
    wait_for(&api, "encrypted", "Complete", phase_is("Complete")).await;
    wait_for(&api, "missing-key", "Invalid", phase_is("Invalid")).await;

    let url = setup.operator.metrics_url().await;
    let samples = scrape::metrics(&url).await;
    let successes = samples.value("mediaconvert_operator_reconciles_total{outcome=\"success\"}");
    assert!(successes >= 2.0, "{samples:?}");
    let timed = samples.value("mediaconvert_operator_reconcile_duration_seconds_count");
    let counted = samples.sum("mediaconvert_operator_reconciles_total", &[]);
    assert_eq!(timed, counted, "every reconcile is timed");

    let create_job = [
        "service=\"MediaConvert\"",
        "operation=\"CreateJob\"",
        "outcome=\"success\"",
    ];
    let aws = "mediaconvert_operator_aws_requests_total";
    assert_eq!(samples.sum(aws, &create_job), 1.0, "{samples:?}");
    let list_jobs = ["operation=\"ListJobs\"", "outcome=\"success\""];
    assert!(samples.sum(aws, &list_jobs) >= 1.0, "{samples:?}");
    assert!(samples.sum(aws, &["service=\"KMS\"", "operation=\"DescribeKey\""]) >= 2.0);
    assert!(samples.sum(aws, &["service=\"S3\"", "operation=\"GetBucketLocation\""]) >= 1.0);
    let timed_calls = samples.sum(
        "mediaconvert_operator_aws_request_duration_seconds_count",
        &[],
    );
    assert_eq!(
        timed_calls,
        samples.sum(aws, &[]),
        "every AWS call is timed"
    );

    let phase = |name: &str| {
        samples.value(&format!(
            "mediaconvert_operator_resources{{phase=\"{name}\"}}"
        ))
    };
    assert_eq!(phase("Complete"), 1.0, "{samples:?}");
    assert_eq!(phase("Invalid"), 1.0, "{samples:?}");
    let failures =
        samples.value("mediaconvert_operator_validation_failures_total{reason=\"KmsKeyNotFound\"}");
    assert!(failures >= 1.0, "{samples:?}");
    assert_eq!(samples.value("mediaconvert_operator_leader"), 1.0);

    assert_eq!(scrape::probe(&url, "/healthz").await.0, 200);
    assert_eq!(scrape::probe(&url, "/readyz").await.0, 200);
}

fn reconciles(samples: &Samples) -> f64 {
    samples.sum("mediaconvert_operator_reconciles_total", &[])
}

/// A finished job needs no more work: over a minute its reconcile count barely moves,
/// although the operator polls running jobs every second.
#[tokio::test]
async fn idle_resource_stays_quiet() {
    let setup = setup("idle", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("done", "{type: S3}", BASE_SETTINGS)).await;
    wait_for(&api, "done", "Complete", phase_is("Complete")).await;

    let url = setup.operator.metrics_url().await;
    // The status write of the last poll may still start one more pass.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = reconciles(&scrape::metrics(&url).await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = reconciles(&scrape::metrics(&url).await);
    assert!(
        after - before <= 1.0,
        "{} reconciles of an idle resource in a minute",
        after - before
    );
    println!("reconciles of an idle resource in 60 s: {}", after - before);
}
