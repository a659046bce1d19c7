//! Lifecycle under faults: interrupted submissions, rejected requests, deadlines,
//! TTLs and deletion policies.

mod support;

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use support::*;

#[tokio::test]
async fn lost_create_response_adopts_job() {
    let setup = setup("lost-response", timeline(2000, complete())).await;
    // Every CreateJob attempt reaches the emulator, but its response is replaced by a 500,
    // as if the operator died before recording the job id.
    let rule =
        json!({"operation": "mediaconvert:CreateJob", "withholdResponse": true, "times": 10});
    setup
        .env
        .proxy()
        .fault_namespace(&setup.namespace.name, rule)
        .await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("lost", "{type: S3}", BASE_SETTINGS)).await;

    let done = wait_for(&api, "lost", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    assert_eq!(
        done.status.unwrap().job_id.as_deref(),
        jobs[0]["id"].as_str()
    );
    assert!(setup.env.proxy().faults_fired(&setup.namespace.name).await >= 1);
    let log = setup.operator.log_text();
    assert!(
        log.contains("Found the job of an interrupted submission"),
        "operator log:\n{log}"
    );
}

#[tokio::test]
async fn rejected_settings_wait_for_edit() {
    let setup = setup("bad-request", timeline(500, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let message = "/outputGroups/0/outputs/0: Should have at least 1 ContainerSettings";
    let rule = json!({"operation": "mediaconvert:CreateJob", "status": 400, "errorType": "BadRequestException", "message": message, "times": 1});
    proxy.fault_namespace(namespace, rule).await;
    let api = setup.namespace.jobs();
    // One job MediaConvert rejects, and one the operator's own checks reject before
    // anything is sent: an output group with an empty outputs list.
    create(&api, &job_yaml("rejected", "{type: S3}", BASE_SETTINGS)).await;
    let no_outputs = BASE_SETTINGS
        .split("        Outputs:")
        .next()
        .unwrap()
        .to_string()
        + "        Outputs: []\n";
    create(&api, &job_yaml("no-outputs", "{type: S3}", &no_outputs)).await;

    let job = wait_for(&api, "rejected", "Invalid", phase_is("Invalid")).await;
    let submitted = condition(&job, "Submitted");
    assert_eq!(submitted.status, "False");
    assert_eq!(submitted.reason, "CreateJobRejected");
    assert!(submitted.message.contains(message), "{}", submitted.message);
    assert_eq!(condition(&job, "Failed").status, "True");
    assert_eq!(job.status.as_ref().unwrap().submission_token, None);
    let (_, shape) = invalid_check(&api, "no-outputs", "SettingsShape").await;
    assert_eq!(format!("{:?}", shape.status), "Failed");
    assert!(shape.message.contains("File Group"), "{}", shape.message);

    // Retrying would call CreateJob again; give the operator time to get it wrong.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CreateJob").await,
        1,
        "CreateJob was retried without an edit"
    );
    assert!(setup.submitted_jobs().await.is_empty());

    // Nothing was submitted, so the spec may change, and each edit is one new attempt.
    let raise_priority = Patch::Merge(json!({"spec": {"priority": 5}}));
    api.patch("rejected", &PatchParams::default(), &raise_priority)
        .await
        .expect("edit of a rejected job refused");
    let settings: serde_json::Value =
        serde_yaml::from_str(&BASE_SETTINGS.replace("\n    ", "\n")).unwrap();
    let add_output = Patch::Merge(json!({"spec": {"settings": settings}}));
    api.patch("no-outputs", &PatchParams::default(), &add_output)
        .await
        .expect("edit of an invalid job refused");
    for name in ["rejected", "no-outputs"] {
        let done = wait_for(&api, name, "Complete", phase_is("Complete")).await;
        assert_eq!(done.status.unwrap().observed_generation, Some(2), "{name}");
    }
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CreateJob").await,
        3
    );
    assert_eq!(setup.submitted_jobs().await.len(), 2);
}

#[tokio::test]
async fn server_error_on_create_job_retried_once() {
    let setup = setup("create-5xx", timeline(500, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    // Rejected before reaching the emulator: 500 and 503, as MediaConvert sends them.
    for status in [500, 503] {
        let rule = json!({"operation": "mediaconvert:CreateJob", "status": status, "times": 1});
        proxy.fault_namespace(namespace, rule).await;
    }
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("retried", "{type: S3}", BASE_SETTINGS)).await;

    let done = wait_for(&api, "retried", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    assert_eq!(
        done.status.unwrap().job_id.as_deref(),
        jobs[0]["id"].as_str()
    );
    assert_eq!(proxy.faults_fired(namespace).await, 2);
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CreateJob").await,
        3
    );
}

/// Creates `name` and kills the operator after MediaConvert created its job but before
/// the operator received the CreateJob response.
async fn crash_after_create_job(setup: &mut Setup, name: &str) {
    // CreateJob reaches the emulator at once, but its response is held back long enough
    // for the operator to be killed before it can record the job id.
    let rule = json!({"operation": "mediaconvert:CreateJob", "responseDelayMs": 30000, "times": 1});
    setup
        .env
        .proxy()
        .fault_operator(&setup.namespace.name, rule)
        .await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await;
    wait_until("the job to reach the emulator", || async {
        setup.submitted_jobs().await.len() == 1
    })
    .await;
    setup.operator.kill();
}

#[tokio::test]
async fn crash_after_create_job_adopts_job() {
    let mut setup = setup("crash-after", timeline(1500, complete())).await;
    let namespace = setup.namespace.name.clone();
    let api = setup.namespace.jobs();
    crash_after_create_job(&mut setup, "crashed").await;
    let interrupted = api.get("crashed").await.expect("get failed");
    let status = interrupted
        .status
        .clone()
        .expect("no status after submission");
    assert_eq!(status.job_id, None, "the kill came too late");
    let token = status
        .submission_token
        .expect("no submission token recorded");

    setup.operator = Operator::start(&namespace);
    let done = wait_for(&api, "crashed", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    let status = done.status.unwrap();
    assert_eq!(status.job_id.as_deref(), jobs[0]["id"].as_str());
    assert_eq!(jobs[0]["clientRequestToken"], token.as_str());
    let log = setup.operator.log_text();
    assert!(
        log.contains("Found the job of an interrupted submission"),
        "operator log:\n{log}"
    );
}

#[tokio::test]
async fn crash_before_create_job_submits_once() {
    let mut setup = setup("crash-before", timeline(1500, complete())).await;
    let namespace = setup.namespace.name.clone();
    let proxy = setup.env.proxy();
    // CreateJob waits in the proxy before it is forwarded, so the operator dies after
    // recording its token but before MediaConvert saw the request. The held request may
    // still arrive later, as a slow network delivers it, with the same token. The
    // restarted operator must also survive ListJobs being throttled.
    let hold_ms = 6000;
    let hold = json!({"operation": "mediaconvert:CreateJob", "delayMs": hold_ms, "times": 1});
    proxy.fault_operator(&namespace, hold).await;
    let throttle = json!({"operation": "mediaconvert:ListJobs", "status": 429, "times": 2});
    proxy.fault_operator(&namespace, throttle).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("early", "{type: S3}", BASE_SETTINGS)).await;

    wait_until("CreateJob to reach the proxy", || async {
        proxy.call_count(&namespace, "mediaconvert:CreateJob").await == 1
    })
    .await;
    setup.operator.kill();
    let killed_at = tokio::time::Instant::now();
    let interrupted = api.get("early").await.expect("get failed");
    let status = interrupted
        .status
        .clone()
        .expect("no status after submission");
    assert!(status.submission_token.is_some(), "no token: {status:?}");
    assert_eq!(status.job_id, None);
    assert!(setup.submitted_jobs().await.is_empty());

    setup.operator = Operator::start(&namespace);
    let done = wait_for(&api, "early", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    assert_eq!(
        done.status.unwrap().job_id.as_deref(),
        jobs[0]["id"].as_str()
    );
    // The hold and both throttles fired, and the lookup went on past them.
    assert_eq!(proxy.faults_fired(&namespace).await, 3);
    let lookups = proxy.call_count(&namespace, "mediaconvert:ListJobs").await;
    assert!(lookups >= 3, "{lookups} ListJobs calls");

    // Once the held request is through, MediaConvert's token window still leaves one job.
    tokio::time::sleep_until(killed_at + Duration::from_millis(hold_ms + 1000)).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "the delayed request created a job: {jobs:?}");
}

#[tokio::test]
async fn deletion_during_interrupted_submission_cancels_job() {
    let mut setup = setup("crash-delete", timeline(600_000, complete())).await;
    let namespace = setup.namespace.name.clone();
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    crash_after_create_job(&mut setup, "abandoned").await;

    // Deleted while no operator runs and the status names no job.
    api.delete("abandoned", &DeleteParams::default())
        .await
        .expect("delete failed");
    setup.operator = Operator::start(&namespace);
    wait_deleted(&api, "abandoned").await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
    let id = jobs[0]["id"].as_str().unwrap();
    assert_eq!(proxy.get_job(id).await["status"], "CANCELED");
    assert_eq!(
        proxy.call_count(&namespace, "mediaconvert:CancelJob").await,
        1
    );
}

#[tokio::test]
async fn canceled_job_ends_canceled() {
    let setup = setup("canceled", timeline(500, json!({"status": "CANCELED"}))).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("stopped", "{type: S3}", BASE_SETTINGS)).await;

    let canceled = wait_for(&api, "stopped", "Canceled", phase_is("Canceled")).await;
    let failed = condition(&canceled, "Failed");
    assert_eq!(failed.status, "True");
    assert_eq!(failed.reason, "JobCanceled");
    assert_eq!(condition(&canceled, "Ready").status, "False");
    assert_eq!(condition(&canceled, "Complete").status, "False");
    let status = canceled.status.unwrap();
    assert!(status.finished_at.is_some(), "no finish time: {status:?}");
    assert_eq!(setup.submitted_jobs().await.len(), 1);
}

#[tokio::test]
async fn vanished_job_reported_not_polled() {
    // Polling reads the job with GetJob alone, so a GetJob fault makes it vanish; the
    // batched sync would still find it in the proxy's listings.
    let polling = ["--status-sync", "poll"];
    let setup = setup_with("vanished", timeline(600_000, complete()), &polling).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("expired", "{type: S3}", BASE_SETTINGS)).await;
    let running = wait_for(&api, "expired", "Progressing", phase_is("Progressing")).await;
    let job_id = running.status.unwrap().job_id.unwrap();

    // MediaConvert deletes jobs after its retention period and returns 404 from then on.
    let gone = json!({"operation": "mediaconvert:GetJob", "status": 404, "errorType": "NotFoundException", "message": format!("Job {job_id} not found")});
    proxy.fault_operator(namespace, gone).await;
    let lost = wait_for(&api, "expired", "Error", phase_is("Error")).await;
    let failed = condition(&lost, "Failed");
    assert_eq!(failed.status, "True");
    assert_eq!(failed.reason, "JobNotFound");
    assert!(failed.message.contains(&job_id), "{}", failed.message);
    assert!(failed.message.contains("retention"), "{}", failed.message);
    assert_eq!(lost.status.unwrap().job_id, Some(job_id));

    let polled = proxy.call_count(namespace, "mediaconvert:GetJob").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:GetJob").await,
        polled,
        "a vanished job is still polled"
    );

    // Nothing is left to cancel, so deletion does not wait for AWS.
    api.delete("expired", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "expired").await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CancelJob").await,
        0
    );
}

#[tokio::test]
async fn finalizer_released_without_waiting_for_aws() {
    let setup = setup("release", timeline(600_000, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("running", "{type: S3}", BASE_SETTINGS)).await;
    let no_groups = "    Inputs: [{FileInput: 's3://example-media-in/trailer.mp4'}]\n";
    create(&api, &job_yaml("never-valid", "{type: S3}", no_groups)).await;
    let running = wait_for(&api, "running", "Progressing", phase_is("Progressing")).await;
    let running_id = running.status.unwrap().job_id.unwrap();
    wait_for(&api, "never-valid", "Invalid", phase_is("Invalid")).await;

    // A job that never passed validation has nothing in AWS to clean up.
    api.delete("never-valid", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "never-valid").await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CancelJob").await,
        0
    );

    // A running job is canceled once, and the finalizer goes as soon as MediaConvert
    // accepted the cancellation.
    api.delete("running", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "running").await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CancelJob").await,
        1
    );
    assert_eq!(proxy.get_job(&running_id).await["status"], "CANCELED");
}

#[tokio::test]
async fn deadline_cancels_job() {
    let setup = setup("deadline", timeline(600_000, complete())).await;
    let api = setup.namespace.jobs();
    let mut job = job_yaml("slow", "{type: S3}", BASE_SETTINGS);
    job.spec.active_deadline_seconds = Some(3);
    create(&api, &job).await;

    let canceled = wait_for(&api, "slow", "Canceled", phase_is("Canceled")).await;
    let failed = condition(&canceled, "Failed");
    assert_eq!(failed.status, "True");
    assert_eq!(failed.reason, "DeadlineExceeded");
    assert!(
        failed.message.contains("activeDeadlineSeconds"),
        "{}",
        failed.message
    );
    let job_id = canceled.status.unwrap().job_id.unwrap();
    assert_eq!(
        setup.env.proxy().get_job(&job_id).await["status"],
        "CANCELED"
    );
}

#[tokio::test]
async fn ttl_deletes_finished_resource() {
    let setup = setup("ttl", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    let mut job = job_yaml("short-lived", "{type: S3}", BASE_SETTINGS);
    job.spec.ttl_seconds_after_finished = Some(2);
    create(&api, &job).await;

    wait_for(&api, "short-lived", "Complete", phase_is("Complete")).await;
    wait_deleted(&api, "short-lived").await;
}

/// With the longest sync interval, a finished resource is still deleted soon after its
/// TTL, not at the next periodic reconcile.
#[tokio::test]
async fn ttl_kept_with_long_interval() {
    let args = ["--max-poll-interval-seconds", "60"];
    let setup = setup_with("ttl-long", timeline(300, complete()), &args).await;
    let api = setup.namespace.jobs();
    let mut job = job_yaml("short-lived", "{type: S3}", BASE_SETTINGS);
    job.spec.ttl_seconds_after_finished = Some(2);
    create(&api, &job).await;

    wait_for(&api, "short-lived", "Complete", phase_is("Complete")).await;
    let complete_at = std::time::Instant::now();
    wait_deleted(&api, "short-lived").await;
    let waited = complete_at.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(20),
        "deleted {waited:?} after Complete, with a TTL of 2 s"
    );
}

#[tokio::test]
async fn orphan_policy_leaves_job_running() {
    let setup = setup("orphan", timeline(600_000, complete())).await;
    let api = setup.namespace.jobs();
    let mut job = job_yaml("kept", "{type: S3}", BASE_SETTINGS);
    job.spec.deletion_policy = mediaconvert_operator::api::DeletionPolicy::Orphan;
    create(&api, &job).await;
    let running = wait_for(&api, "kept", "Progressing", phase_is("Progressing")).await;
    let job_id = running.status.unwrap().job_id.unwrap();

    api.delete("kept", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "kept").await;
    assert_eq!(
        setup.env.proxy().get_job(&job_id).await["status"],
        "PROGRESSING"
    );
}

#[tokio::test]
async fn deleting_finished_job_calls_no_aws() {
    let setup = setup("delete-done", timeline(300, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("done", "{type: S3}", BASE_SETTINGS)).await;
    wait_for(&api, "done", "Complete", phase_is("Complete")).await;
    let calls = proxy.calls_of(namespace).await;

    api.delete("done", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "done").await;
    assert_eq!(
        proxy.calls_of(namespace).await,
        calls,
        "deletion called AWS"
    );
}

#[tokio::test]
async fn failed_cancel_retried_and_explained() {
    let setup = setup("cancel-fails", timeline(600_000, complete())).await;
    let namespace = &setup.namespace.name;
    let proxy = setup.env.proxy();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("stubborn", "{type: S3}", BASE_SETTINGS)).await;
    let running = wait_for(&api, "stubborn", "Progressing", phase_is("Progressing")).await;
    let job_id = running.status.unwrap().job_id.unwrap();

    // MediaConvert is unreachable for the first attempts of CancelJob.
    let outage = json!({"operation": "mediaconvert:CancelJob", "status": 503, "times": 3});
    proxy.fault_operator(namespace, outage).await;
    api.delete("stubborn", &DeleteParams::default())
        .await
        .expect("delete failed");

    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(setup.env.client.clone(), namespace);
    wait_until("a CancelFailed event", || async {
        let listed = events
            .list(&Default::default())
            .await
            .expect("list events failed");
        listed.items.iter().any(|event| {
            event.reason.as_deref() == Some("CancelFailed")
                && event
                    .note
                    .as_deref()
                    .is_some_and(|note| note.contains(&job_id))
        })
    })
    .await;
    wait_deleted(&api, "stubborn").await;
    assert_eq!(
        proxy.call_count(namespace, "mediaconvert:CancelJob").await,
        4
    );
    assert_eq!(proxy.get_job(&job_id).await["status"], "CANCELED");
}
