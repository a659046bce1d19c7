//! Lifecycle under faults: interrupted submissions, rejected requests, deadlines,
//! TTLs and deletion policies.

mod support;

use std::time::Duration;

use kube::api::DeleteParams;
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
async fn bad_request_is_final() {
    let setup = setup("bad-request", timeline(500, complete())).await;
    let message = "/outputGroups/0/outputs/0: Should have at least 1 ContainerSettings";
    let rule = json!({"operation": "mediaconvert:CreateJob", "status": 400, "errorType": "BadRequestException", "message": message});
    setup
        .env
        .proxy()
        .fault_namespace(&setup.namespace.name, rule)
        .await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("rejected", "{type: S3}", BASE_SETTINGS)).await;

    let job = wait_for(&api, "rejected", "Invalid", phase_is("Invalid")).await;
    let submitted = condition(&job, "Submitted");
    assert_eq!(submitted.status, "False");
    assert_eq!(submitted.reason, "CreateJobRejected");
    assert!(submitted.message.contains(message), "{}", submitted.message);
    assert_eq!(job.status.as_ref().unwrap().submission_token, None);
    // Retrying would call CreateJob again; give the operator time to get it wrong.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        setup.env.proxy().faults_fired(&setup.namespace.name).await,
        1,
        "CreateJob was retried"
    );
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
