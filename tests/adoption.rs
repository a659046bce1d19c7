//! Adoption of a job that was created outside the operator.

mod support;

use std::collections::BTreeMap;

use kube::api::ObjectMeta;
use mediaconvert_operator::aws::{JobRequest, MediaConvert, MediaConvertClient};
use mediaconvert_operator::controller::adopt::ADOPT_ANNOTATION;
use mediaconvert_operator::settings::{EncryptionPlan, NormalizedSettings};
use support::*;

/// Submits a job straight to MediaConvert, as a script would, tagged with the test's
/// namespace so the proxy scripts its timeline.
async fn submit_outside(setup: &Setup) -> String {
    let template = job_yaml("outside", "{type: S3}", BASE_SETTINGS);
    let plan = EncryptionPlan {
        spec: &template.spec.encryption,
        resolved_key_arn: None,
    };
    let settings = NormalizedSettings::parse(&template.spec.settings, false)
        .and_then(|settings| settings.prepare(&plan))
        .expect("settings are valid");
    let metadata = BTreeMap::from([(
        "mediaconvert.operators.dev/namespace".to_string(),
        setup.namespace.name.clone(),
    )]);
    let request = JobRequest {
        region: "us-east-1".into(),
        role: ROLE.into(),
        queue: None,
        job_template: None,
        priority: None,
        user_metadata: metadata,
        tags: BTreeMap::new(),
        client_request_token: uuid::Uuid::new_v4().to_string(),
        settings: settings.json,
    };
    let client = MediaConvertClient::new(setup.env.sdk_config().await);
    client
        .create_job(&request)
        .await
        .expect("CreateJob failed")
        .id
}

fn adopting(name: &str, job_id: &str) -> mediaconvert_operator::api::MediaConvertJob {
    let mut job = job_yaml(name, "{type: S3}", BASE_SETTINGS);
    let annotations = BTreeMap::from([(ADOPT_ANNOTATION.to_string(), job_id.to_string())]);
    job.metadata = ObjectMeta {
        annotations: Some(annotations),
        ..job.metadata
    };
    job
}

#[tokio::test]
async fn adopted_job_followed_without_create() {
    let setup = setup("adopt", timeline(800, complete())).await;
    let job_id = submit_outside(&setup).await;
    let api = setup.namespace.jobs();
    create(&api, &adopting("adopted", &job_id)).await;

    let done = wait_for(&api, "adopted", "Complete", phase_is("Complete")).await;
    let status = done.status.expect("no status");
    assert_eq!(status.job_id.as_deref(), Some(job_id.as_str()));
    assert_eq!(condition_reason(&status, "Validated"), "JobAdopted");
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "the operator created a job: {jobs:?}");
}

#[tokio::test]
async fn unknown_adopted_job_invalid() {
    let setup = setup("adopt-missing", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &adopting("ghost", "1700000000000-nosuch")).await;

    let job = wait_for(&api, "ghost", "Invalid", phase_is("Invalid")).await;
    let failed = condition(&job, "Failed");
    assert_eq!(failed.reason, "AdoptedJobNotFound");
    assert!(
        failed.message.contains("1700000000000-nosuch"),
        "{}",
        failed.message
    );
    assert!(setup.submitted_jobs().await.is_empty());
}

fn condition_reason(
    status: &mediaconvert_operator::api::MediaConvertJobStatus,
    kind: &str,
) -> String {
    status
        .conditions
        .iter()
        .find(|condition| condition.type_ == kind)
        .map(|condition| condition.reason.clone())
        .unwrap_or_default()
}
