//! AWS faults and load on the operator: throttling, server errors, slow responses, write
//! conflicts, and the number of calls and writes a steady or failing job costs.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::*;

/// Counts the submitted jobs of each resource, by the name in their user metadata.
fn jobs_per_resource(jobs: &[serde_json::Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for job in jobs {
        let name = job["userMetadata"]["mediaconvert.operators.dev/name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        *counts.entry(name).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn throttling_and_server_errors_still_one_job_each() {
    let setup = setup("flaky-aws", timeline(1000, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    // A share of every call fails: throttled, a server error, or (for CreateJob) a lost
    // response after the job was created. Each rule fires a bounded number of times, so
    // the test ends even when the draws are unlucky.
    let rules = [
        json!({"operation": "mediaconvert:CreateJob", "withholdResponse": true, "probability": 0.3, "times": 6}),
        json!({"operation": "*", "status": 429, "errorType": "TooManyRequestsException", "probability": 0.25, "times": 40}),
        json!({"operation": "*", "status": 500, "probability": 0.15, "times": 40}),
    ];
    for rule in rules {
        proxy.fault_operator(namespace, rule).await;
    }
    let api = setup.namespace.jobs();
    let key = format!("{{type: KMS, kmsKeyArn: '{}'}}", setup.seeded.key_arn);
    let names: Vec<String> = (0..6).map(|index| format!("flaky-{index}")).collect();
    for (index, name) in names.iter().enumerate() {
        let encryption = if index % 2 == 0 {
            key.as_str()
        } else {
            "{type: S3}"
        };
        create(&api, &job_yaml(name, encryption, BASE_SETTINGS)).await;
    }

    for name in &names {
        wait_for(&api, name, "Complete", phase_is("Complete")).await;
    }
    let jobs = setup.submitted_jobs().await;
    let counts = jobs_per_resource(&jobs);
    for name in &names {
        assert_eq!(counts.get(name), Some(&1), "jobs per resource: {counts:?}");
    }
    assert_eq!(jobs.len(), names.len());
    let fired = proxy.faults_fired(namespace).await;
    assert!(
        fired >= 3,
        "only {fired} faults fired; the run proves little"
    );
    let log = setup.operator.log_text();
    assert!(!log.contains("panicked"), "operator log:\n{log}");
}

#[tokio::test]
async fn slow_aws_responses_time_out_and_retry() {
    let args = [
        "--aws-attempt-timeout-seconds",
        "1",
        "--aws-operation-timeout-seconds",
        "3",
    ];
    let setup = setup_with("slow-aws", timeline(4000, complete()), &args).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    // Responses that take longer than the test waits: without timeouts the reconcile would
    // hang on the first of them. CreateJob is forwarded at once and only its response is
    // late, so the retry must find the job instead of creating another.
    let rules = [
        json!({"operation": "kms:DescribeKey", "delayMs": 60000, "times": 2}),
        json!({"operation": "mediaconvert:CreateJob", "responseDelayMs": 60000, "times": 1}),
        json!({"operation": "mediaconvert:ListJobs", "delayMs": 60000, "times": 2}),
    ];
    for rule in rules {
        proxy.fault_operator(namespace, rule).await;
    }
    let api = setup.namespace.jobs();
    let encryption = format!("{{type: KMS, kmsKeyArn: '{}'}}", setup.seeded.key_arn);
    let started = tokio::time::Instant::now();
    create(&api, &job_yaml("patient", &encryption, BASE_SETTINGS)).await;

    let done = wait_for(&api, "patient", "Complete", phase_is("Complete")).await;
    let elapsed = started.elapsed();
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    assert_eq!(
        done.status.unwrap().job_id.as_deref(),
        jobs[0]["id"].as_str()
    );
    assert_eq!(proxy.faults_fired(namespace).await, 5);
    assert!(elapsed < Duration::from_secs(40), "took {elapsed:?}");
}

#[tokio::test]
async fn status_conflict_retried_on_fresh_read() {
    let setup = setup("conflict", timeline(500, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    // The key check is slow once, which leaves time to change the resource between the
    // operator's read and its write of the submission token.
    let slow = json!({"operation": "kms:DescribeKey", "delayMs": 2000, "times": 1});
    proxy.fault_operator(namespace, slow).await;
    let api = setup.namespace.jobs();
    let encryption = format!("{{type: KMS, kmsKeyArn: '{}'}}", setup.seeded.key_arn);
    create(&api, &job_yaml("raced", &encryption, BASE_SETTINGS)).await;

    wait_until("the key check to start", || async {
        proxy.call_count(namespace, "kms:DescribeKey").await >= 1
    })
    .await;
    let label = Patch::Merge(json!({"metadata": {"labels": {"team": "promo"}}}));
    api.patch("raced", &PatchParams::default(), &label)
        .await
        .expect("label patch failed");

    let done = wait_for(&api, "raced", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    assert_eq!(
        done.status.unwrap().job_id.as_deref(),
        jobs[0]["id"].as_str()
    );
    let log = setup.operator.log_text();
    assert!(
        log.contains("retrying on a fresh read"),
        "no conflict handled; operator log:\n{log}"
    );
}

#[tokio::test]
async fn steady_job_costs_no_writes() {
    let steady = json!({"steps": [
        {"atMs": 0, "status": "SUBMITTED"},
        {"atMs": 300, "status": "PROGRESSING", "percent": 40, "currentPhase": "TRANSCODING"},
        {"atMs": 600_000, "status": "PROGRESSING", "percent": 40, "currentPhase": "TRANSCODING"},
        {"atMs": 600_100, "status": "COMPLETE"},
    ]});
    let setup = setup("steady", steady).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("steady", "{type: S3}", BASE_SETTINGS)).await;
    let running = wait_for(&api, "steady", "Progressing at 40 %", |job| {
        job.status
            .as_ref()
            .is_some_and(|status| status.job_percent_complete == Some(40))
    })
    .await;

    // MediaConvert reports nothing new for a while: the status sync keeps reading, less
    // often each round (1 s, then 2 s, then the 4 s maximum here), and writes nothing.
    let window = Duration::from_secs(6);
    let reads = || async {
        proxy.call_count(namespace, "mediaconvert:ListJobs").await
            + proxy.call_count(namespace, "mediaconvert:GetJob").await
    };
    let polls_before = reads().await;
    let reconciles_before = setup.operator.log_text().matches("Reconciled").count();
    tokio::time::sleep(window).await;
    let after = api.get("steady").await.expect("get failed");
    assert_eq!(
        after.metadata.resource_version, running.metadata.resource_version,
        "status was written although nothing changed"
    );
    let polls = reads().await - polls_before;
    assert!(
        (1..=4).contains(&polls),
        "{polls} ListJobs and GetJob calls in {window:?}"
    );
    // Only the safety-net requeue at the longest interval reconciles the resource.
    let reconciles = setup.operator.log_text().matches("Reconciled").count() - reconciles_before;
    assert!(reconciles <= 2, "{reconciles} reconciles in {window:?}");
}

#[tokio::test]
async fn failing_checks_back_off() {
    let setup = setup("backoff", timeline(500, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let aws = setup.env.aws().await;
    let key = aws
        .create_key(
            "us-east-1",
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        )
        .await
        .unwrap();
    aws.schedule_key_deletion("us-east-1", &key).await.unwrap();
    let api = setup.namespace.jobs();
    let encryption = format!("{{type: KMS, kmsKeyArn: '{key}'}}");
    let names: Vec<String> = (0..4).map(|index| format!("doomed-{index}")).collect();
    for name in &names {
        create(&api, &job_yaml(name, &encryption, BASE_SETTINGS)).await;
    }
    for name in &names {
        let job = wait_for(&api, name, "Invalid", phase_is("Invalid")).await;
        assert_eq!(condition(&job, "Validated").reason, "KmsKeyPendingDeletion");
    }

    // The fix lies in KMS, so the checks are retried, but with growing delays: with a
    // base of 1 s doubling to a cap of 5 s, a resource checks at most 5 times in 10 s.
    let window = Duration::from_secs(10);
    let before = proxy.call_count(namespace, "kms:DescribeKey").await;
    tokio::time::sleep(window).await;
    let calls = proxy.call_count(namespace, "kms:DescribeKey").await - before;
    let bound = 5 * names.len() as u64;
    assert!(
        calls <= bound,
        "{calls} DescribeKey calls in {window:?} for {} resources",
        names.len()
    );
    assert!(
        setup.submitted_jobs().await.is_empty(),
        "a job was submitted"
    );

    // One Warning Event per outcome, not one per retry.
    let events: Api<Event> = Api::namespaced(setup.env.client.clone(), namespace);
    let listed = events
        .list(&Default::default())
        .await
        .expect("list events failed");
    let warnings: Vec<&Event> = listed
        .items
        .iter()
        .filter(|event| event.reason.as_deref() == Some("KmsKeyPendingDeletion"))
        .collect();
    assert_eq!(warnings.len(), names.len(), "events: {warnings:?}");
    for event in warnings {
        assert!(event.series.is_none(), "event repeated: {event:?}");
    }
}

/// Settings with `count` outputs, as in a large ABR ladder with many audio renditions:
/// each output has a name modifier near S3's 1024-byte key limit and three audio tracks
/// with long stream names, about 3 KiB per output.
fn many_outputs(count: usize) -> String {
    let mut settings = String::from(
        "    Inputs:\n      - FileInput: s3://example-media-in/trailer.mp4\n    OutputGroups:\n      - Name: File Group\n        OutputGroupSettings:\n          Type: FILE_GROUP_SETTINGS\n          FileGroupSettings: {Destination: 's3://example-media-out/ladder/'}\n        Outputs:\n",
    );
    let modifier = "m".repeat(900);
    let stream = "s".repeat(600);
    for index in 0..count {
        settings.push_str(&format!(
            "          - NameModifier: _{index:03}_{modifier}\n            ContainerSettings: {{Container: MP4}}\n            AudioDescriptions:\n"
        ));
        for track in 0..3 {
            settings.push_str(&format!(
                "              - {{StreamName: '{track}{stream}', CodecSettings: {{Codec: AAC}}}}\n"
            ));
        }
    }
    settings
}

#[tokio::test]
async fn large_job_keeps_status_small() {
    let setup = setup("large", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    let settings = many_outputs(300);
    assert!(
        settings.len() > 700 * 1024,
        "settings are only {} bytes",
        settings.len()
    );
    create(&api, &job_yaml("ladder", "{type: S3}", &settings)).await;

    let done = wait_for(&api, "ladder", "Complete", phase_is("Complete")).await;
    let status = done.status.clone().unwrap();
    assert!(status.job_id.is_some());
    let size = serde_json::to_vec(&status).unwrap().len();
    assert!(size < 64 * 1024, "status is {size} bytes");
    let outputs = &status.outputs;
    assert!(outputs.len() < 300, "outputs not capped");
    let shown = outputs.len() - 1;
    let summary = format!("... and {} more", 300 - shown);
    assert_eq!(outputs.last(), Some(&summary));
    assert!(outputs[0].starts_with("s3://example-media-out/ladder/trailer_000_"));
    assert_eq!(setup.submitted_jobs().await.len(), 1);
}

#[tokio::test]
async fn long_error_message_truncated() {
    let message = format!("Unable to write output: {}", "detail ".repeat(3000));
    let error = json!({"status": "ERROR", "errorCode": 1401, "errorMessage": message});
    let setup = setup("long-error", timeline(300, error)).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("verbose", "{type: S3}", BASE_SETTINGS)).await;

    let failed = wait_for(&api, "verbose", "Error", phase_is("Error")).await;
    let status = failed.status.clone().unwrap();
    let kept = status.error_message.unwrap();
    assert!(kept.len() <= 1024, "error message is {} bytes", kept.len());
    assert!(kept.starts_with("Unable to write output"), "{kept}");
    assert!(kept.ends_with("[truncated]"), "{kept}");
    let failed_condition = condition(&failed, "Failed");
    assert!(failed_condition.message.len() <= 1024);
    assert!(
        failed_condition.message.contains("1401"),
        "{}",
        failed_condition.message
    );
    assert!(status.job_id.is_some());
}
