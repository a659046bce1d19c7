//! End-to-end runs: manifests applied to a real API server, jobs submitted to the AWS
//! emulator through the proxy, status followed to the end.

mod support;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use mediaconvert_operator::api::MediaConvertJob;
use serde_json::json;
use support::*;

#[tokio::test]
async fn customer_key_job_completes_encrypted() {
    let setup = setup("kms-key", timeline(1500, complete())).await;
    let api = setup.namespace.jobs();
    let aws = setup.env.aws().await;
    let key_arn = aws
        .create_key(
            "us-east-1",
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        )
        .await
        .unwrap();
    let alias = format!("alias/{}", setup.namespace.name);
    let alias_arn = aws
        .ensure_alias("us-east-1", &alias, &key_arn)
        .await
        .unwrap();
    let encryption =
        format!("{{type: KMS, kmsKeyArn: '{alias_arn}', encryptionContext: {{project: trailer}}}}");
    create(&api, &job_yaml("trailer", &encryption, BASE_SETTINGS)).await;

    let done = wait_for(&api, "trailer", "Complete", phase_is("Complete")).await;
    let status = done.status.clone().unwrap();
    assert!(status.job_id.is_some(), "no job id in {status:?}");
    assert_eq!(status.job_percent_complete, Some(100));
    assert_eq!(condition(&done, "Ready").status, "True");
    assert_eq!(condition(&done, "Failed").status, "False");
    assert_eq!(
        status.outputs,
        ["s3://example-media-out/trailer/trailer.mp4"]
    );
    let encryption_status = status.encryption.unwrap();
    assert_eq!(
        encryption_status.kms_key_arn.as_deref(),
        Some(key_arn.as_str())
    );

    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected one CreateJob, got {jobs:?}");
    let sent = sent_encryption(&jobs[0], 0).expect("no encryption sent");
    assert_eq!(sent["encryptionType"], "SERVER_SIDE_ENCRYPTION_KMS");
    assert_eq!(sent["kmsKeyArn"], key_arn.as_str());
    // base64 of {"project":"trailer"}
    assert_eq!(sent["kmsEncryptionContext"], "eyJwcm9qZWN0IjoidHJhaWxlciJ9");
    assert_eq!(
        jobs[0]["userMetadata"]["mediaconvert.operators.dev/name"],
        "trailer"
    );
    assert_eq!(
        jobs[0]["userMetadata"]["mediaconvert.operators.dev/uid"],
        done.metadata.uid.unwrap().as_str()
    );
    assert!(
        jobs[0]["clientRequestToken"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}

#[tokio::test]
async fn percent_rises_while_progressing() {
    let setup = setup("progress", timeline(4000, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("rising", "{type: S3}", BASE_SETTINGS)).await;

    let midway = wait_for(&api, "rising", "Progressing between 1 and 99 %", |job| {
        let status = job.status.as_ref();
        let percent = status
            .and_then(|s| s.job_percent_complete)
            .unwrap_or_default();
        status
            .and_then(|s| s.phase)
            .is_some_and(|p| p.to_string() == "Progressing")
            && (1..100).contains(&percent)
    })
    .await;
    assert!(
        midway.status.unwrap().current_phase.is_some(),
        "no current phase while progressing"
    );
    wait_for(&api, "rising", "Complete", phase_is("Complete")).await;
}

#[tokio::test]
async fn sse_s3_job_completes() {
    let setup = setup("sse-s3", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("s3-managed", "{type: S3}", BASE_SETTINGS)).await;

    wait_for(&api, "s3-managed", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        sent_encryption(&jobs[0], 0),
        Some(json!({"encryptionType": "SERVER_SIDE_ENCRYPTION_S3"}))
    );
}

#[tokio::test]
async fn aws_managed_key_job_completes() {
    let setup = setup("aws-managed", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("managed", "{type: KMS}", BASE_SETTINGS)).await;

    wait_for(&api, "managed", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        sent_encryption(&jobs[0], 0),
        Some(json!({"encryptionType": "SERVER_SIDE_ENCRYPTION_KMS"}))
    );
}

const TWO_GROUPS: &str = r#"
    Inputs:
      - FileInput: s3://example-media-in/trailer.mp4
        AudioSelectors:
          Audio Selector 1: {DefaultSelection: DEFAULT}
    OutputGroups:
      - Name: Apple HLS
        OutputGroupSettings:
          Type: HLS_GROUP_SETTINGS
          HlsGroupSettings: {Destination: "s3://example-media-out/hls/", SegmentLength: 6, MinSegmentLength: 0}
        Outputs:
          - NameModifier: _720p
            ContainerSettings: {Container: M3U8}
      - Name: File Group
        OutputGroupSettings:
          Type: FILE_GROUP_SETTINGS
          FileGroupSettings: {Destination: "s3://example-media-out/mp4/"}
        Outputs:
          - ContainerSettings: {Container: MP4}
"#;

#[tokio::test]
async fn only_selected_group_encrypted() {
    let setup = setup("selected", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    let encryption = format!(
        "{{type: KMS, kmsKeyArn: '{}', outputGroups: [Apple HLS]}}",
        setup.seeded.key_arn
    );
    create(&api, &job_yaml("hls-only", &encryption, TWO_GROUPS)).await;

    let done = wait_for(&api, "hls-only", "Complete", phase_is("Complete")).await;
    assert_eq!(
        done.status.unwrap().encryption.unwrap().output_groups,
        ["Apple HLS"]
    );
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1);
    let hls = sent_encryption(&jobs[0], 0).expect("HLS group not encrypted");
    assert_eq!(hls["kmsKeyArn"], setup.seeded.key_arn.as_str());
    assert_eq!(sent_encryption(&jobs[0], 1), None);
    let selectors = &jobs[0]["settings"]["inputs"][0]["audioSelectors"];
    assert!(
        selectors.get("Audio Selector 1").is_some(),
        "selector name changed: {selectors}"
    );
}

#[tokio::test]
async fn error_job_reports_code() {
    let error = json!({"status": "ERROR", "errorCode": 1401, "errorMessage": "Unable to write to output file s3://example-media-out/trailer/trailer.mp4"});
    let setup = setup("error", timeline(500, error)).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("broken", "{type: S3}", BASE_SETTINGS)).await;

    let failed = wait_for(&api, "broken", "Error", phase_is("Error")).await;
    let status = failed.status.clone().unwrap();
    assert_eq!(status.error_code, Some(1401));
    assert!(status.error_message.unwrap().contains("Unable to write"));
    let failed_condition = condition(&failed, "Failed");
    assert_eq!(failed_condition.status, "True");
    assert_eq!(failed_condition.reason, "JobError");
    for fact in ["1401", "Unable to write to output file"] {
        assert!(
            failed_condition.message.contains(fact),
            "{}",
            failed_condition.message
        );
    }
    assert_eq!(condition(&failed, "Ready").status, "False");
}

#[tokio::test]
async fn deleting_running_job_cancels_it() {
    let setup = setup("cancel", timeline(600_000, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("long", "{type: S3}", BASE_SETTINGS)).await;
    let running = wait_for(&api, "long", "Progressing", phase_is("Progressing")).await;
    let job_id = running.status.unwrap().job_id.unwrap();

    api.delete("long", &DeleteParams::default())
        .await
        .expect("delete failed");
    wait_deleted(&api, "long").await;
    let aws_job = setup.env.proxy().get_job(&job_id).await;
    assert_eq!(
        aws_job["status"], "CANCELED",
        "job after deletion: {aws_job}"
    );
}

#[tokio::test]
async fn offline_mistakes_end_invalid_without_submitting() {
    let setup = setup("invalid", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    let cases = [
        (
            "no-groups",
            "{type: S3}",
            "    Inputs: [{FileInput: 's3://example-media-in/trailer.mp4'}]\n",
            "SettingsInvalid",
            "OutputGroups",
        ),
        (
            "no-scheme",
            "{type: S3}",
            &BASE_SETTINGS.replace(
                "s3://example-media-out/trailer/",
                "example-media-out/trailer/",
            ),
            "SettingsInvalid",
            "s3://",
        ),
        (
            "s3-with-key",
            "{type: S3, kmsKeyArn: 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab'}",
            BASE_SETTINGS,
            "SpecInvalid",
            "kmsKeyArn",
        ),
    ];
    for (name, encryption, settings, _, _) in &cases {
        create(&api, &job_yaml(name, encryption, settings)).await;
    }
    let mut bad_role = job_yaml("bad-role", "{type: S3}", BASE_SETTINGS);
    bad_role.spec.role = "MediaConvertRole".into();
    create(&api, &bad_role).await;

    for (name, _, _, reason, fact) in
        cases
            .iter()
            .chain([&("bad-role", "", "", "SpecInvalid", "spec.role")])
    {
        let job = wait_for(&api, name, "Invalid", phase_is("Invalid")).await;
        let validated = condition(&job, "Validated");
        assert_eq!(validated.status, "False", "{name}");
        assert_eq!(validated.reason, *reason, "{name}");
        assert!(
            validated.message.contains(fact),
            "{name}: {}",
            validated.message
        );
        assert_eq!(condition(&job, "Failed").status, "True", "{name}");
    }
    assert!(
        setup.submitted_jobs().await.is_empty(),
        "a job was submitted"
    );
}

#[tokio::test]
async fn disabled_key_ends_invalid() {
    let setup = setup("disabled-key", timeline(500, complete())).await;
    let aws = setup.env.aws().await;
    let key = aws
        .create_key(
            "us-east-1",
            KeySpec::SymmetricDefault,
            KeyUsageType::EncryptDecrypt,
        )
        .await
        .unwrap();
    aws.disable_key("us-east-1", &key).await.unwrap();
    let api = setup.namespace.jobs();
    create(
        &api,
        &job_yaml(
            "disabled",
            &format!("{{type: KMS, kmsKeyArn: '{key}'}}"),
            BASE_SETTINGS,
        ),
    )
    .await;

    let job = wait_for(&api, "disabled", "Invalid", phase_is("Invalid")).await;
    let validated = condition(&job, "Validated");
    assert_eq!(validated.reason, "KmsKeyDisabled");
    assert!(validated.message.contains(&key), "{}", validated.message);
    let check = job
        .status
        .unwrap()
        .validation
        .unwrap()
        .checks
        .into_iter()
        .find(|c| c.name == "KmsKeyUsable")
        .unwrap();
    assert_eq!(format!("{:?}", check.status), "Failed");
    assert!(
        setup.submitted_jobs().await.is_empty(),
        "a job was submitted"
    );
}

#[tokio::test]
async fn settings_of_wrong_type_rejected_by_api_server() {
    let env = Env::get().await;
    install_crd(&env.client).await;
    let namespace = TestNamespace::create(&env.client, "wrong-type").await;
    let api: kube::Api<kube::api::DynamicObject> = kube::Api::namespaced_with(
        env.client.clone(),
        &namespace.name,
        &kube::api::ApiResource::erase::<MediaConvertJob>(&()),
    );
    for (name, settings) in [
        ("string", json!("Inputs: []")),
        ("list", json!([{"Inputs": []}])),
    ] {
        let object: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "mediaconvert.operators.dev/v1alpha1",
            "kind": "MediaConvertJob",
            "metadata": {"name": name},
            "spec": {"role": ROLE, "encryption": {"type": "S3"}, "settings": settings}
        }))
        .unwrap();
        let error = api
            .create(&Default::default(), &object)
            .await
            .expect_err("API server accepted bad settings");
        let kube::Error::Api(status) = error else {
            panic!("unexpected error {error}");
        };
        assert_eq!(status.code, 422, "{name}: {status:?}");
        assert!(
            status.message.contains("spec.settings"),
            "{name}: {}",
            status.message
        );
    }
}

#[tokio::test]
async fn bad_resource_does_not_block_others() {
    let setup = setup("isolation", timeline(500, complete())).await;
    let api = setup.namespace.jobs();
    let wrapped = format!(
        "    Settings:\n{}",
        BASE_SETTINGS.replace("\n    ", "\n      ")
    );
    create(&api, &job_yaml("wrapped", "{type: S3}", &wrapped)).await;
    create(&api, &job_yaml("good", "{type: S3}", BASE_SETTINGS)).await;

    wait_for(&api, "wrapped", "Invalid", phase_is("Invalid")).await;
    wait_for(&api, "good", "Complete", phase_is("Complete")).await;
    assert!(setup.operator.log_text().contains("Starting controller"));
    assert!(!setup.operator.log_text().contains("panicked"));
}

#[tokio::test]
async fn spec_frozen_after_submission_only() {
    let setup = setup("immutable", timeline(600_000, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("running", "{type: S3}", BASE_SETTINGS)).await;
    let no_groups = "    Inputs: [{FileInput: 's3://example-media-in/trailer.mp4'}]\n";
    create(&api, &job_yaml("fixable", "{type: S3}", no_groups)).await;
    wait_for(&api, "running", "Progressing", phase_is("Progressing")).await;
    wait_for(&api, "fixable", "Invalid", phase_is("Invalid")).await;

    let edit = Patch::Merge(json!({"spec": {"priority": 10}}));
    let error = api
        .patch("running", &PatchParams::default(), &edit)
        .await
        .expect_err("edit accepted");
    let kube::Error::Api(status) = error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(status.code, 422);
    assert!(status.message.contains("immutable"), "{}", status.message);
    assert!(status.message.contains("re-create"), "{}", status.message);

    // Nothing was submitted for the invalid job, so an edit is accepted and starts over.
    let settings: serde_json::Value =
        serde_yaml::from_str(&BASE_SETTINGS.replace("\n    ", "\n")).unwrap();
    let fix = Patch::Merge(json!({"spec": {"settings": settings}}));
    api.patch("fixable", &PatchParams::default(), &fix)
        .await
        .expect("edit of an unsubmitted job rejected");
    let fixed = wait_for(&api, "fixable", "Progressing", phase_is("Progressing")).await;
    assert_eq!(condition(&fixed, "Validated").status, "True");
    assert_eq!(setup.submitted_jobs().await.len(), 2);
}

#[tokio::test]
async fn transitions_emit_events() {
    let setup = setup("events", timeline(1000, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("noted", "{type: S3}", BASE_SETTINGS)).await;
    wait_for(&api, "noted", "Complete", phase_is("Complete")).await;

    let events: Api<Event> = Api::namespaced(setup.env.client.clone(), &setup.namespace.name);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let listed = events
            .list(&Default::default())
            .await
            .expect("list events failed");
        let reasons: Vec<String> = listed
            .items
            .iter()
            .filter_map(|e| e.reason.clone())
            .collect();
        let expected = ["Submitted", "Progressing", "Complete"];
        if expected
            .iter()
            .all(|reason| reasons.iter().any(|r| r == reason))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "events {reasons:?} lack one of {expected:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}
