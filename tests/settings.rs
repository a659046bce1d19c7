//! Settings as users paste them: whole job exports, REST spelling, destinations written
//! in unusual ways, and a large console export that must reach MediaConvert intact.

mod support;

use mediaconvert_operator::api::CheckStatus;
use serde_json::{Map, Value, json};
use support::*;

/// A job export from the console: the real settings sit under `Settings`, next to keys
/// that belong elsewhere in the spec.
const JOB_EXPORT: &str = r#"
    Queue: arn:aws:mediaconvert:us-east-1:111122223333:queues/Default
    Role: arn:aws:iam::111122223333:role/OtherRole
    UserMetadata: {}
    Settings:
      Inputs:
        - FileInput: s3://example-media-in/trailer.mp4
      OutputGroups:
        - Name: File Group
          OutputGroupSettings:
            Type: FILE_GROUP_SETTINGS
            FileGroupSettings: {Destination: "s3://example-media-out/trailer/"}
          Outputs:
            - ContainerSettings: {Container: MP4}
"#;

const TEMPLATE_EXPORT: &str = r#"
    Name: example-template
    Description: HLS ladder
    Settings:
      OutputGroups: []
"#;

const REST_SPELLING: &str = r#"
    inputs:
      - fileInput: s3://example-media-in/trailer.mp4
    outputGroups:
      - name: File Group
        outputGroupSettings:
          type: FILE_GROUP_SETTINGS
          fileGroupSettings: {destination: "s3://example-media-out/rest/"}
        outputs:
          - containerSettings: {container: MP4}
"#;

#[tokio::test]
async fn whole_export_rejected_rest_accepted() {
    let setup = setup("export", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("wrapper", "{type: S3}", JOB_EXPORT)).await;
    create(&api, &job_yaml("template", "{type: S3}", TEMPLATE_EXPORT)).await;
    create(&api, &job_yaml("rest", "{type: S3}", REST_SPELLING)).await;

    let (job, check) = invalid_check(&api, "wrapper", "SettingsShape").await;
    assert_eq!(check.status, CheckStatus::Failed);
    for key in ["Settings", "Role", "Queue", "spec.role", "spec.queue"] {
        assert!(
            check.message.contains(key),
            "{key} missing from: {}",
            check.message
        );
    }
    assert_eq!(condition(&job, "Validated").reason, "SettingsInvalid");

    let (_, check) = invalid_check(&api, "template", "SettingsShape").await;
    assert!(check.message.contains("Name"), "{}", check.message);
    assert!(check.message.contains("Description"), "{}", check.message);

    wait_for(&api, "rest", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(
        jobs.len(),
        1,
        "only the REST spelling may be submitted: {jobs:?}"
    );
    assert_eq!(
        jobs[0]["userMetadata"]["mediaconvert.operators.dev/name"],
        "rest"
    );
    assert_eq!(jobs[0]["settings"]["outputGroups"][0]["name"], "File Group");
}

fn settings_with_destination(destination: &str) -> String {
    BASE_SETTINGS.replace("s3://example-media-out/trailer/", destination)
}

#[tokio::test]
async fn destinations_used_as_written() {
    let setup = setup("destination", timeline(300, complete())).await;
    let api = setup.namespace.jobs();
    let cases = [
        ("joined", "s3://example-media-outtrailer/"),
        ("base-name", "s3://example-media-out/trailer"),
        ("no-scheme", "example-media-out/trailer/"),
    ];
    for (name, destination) in cases {
        let settings = settings_with_destination(destination);
        create(&api, &job_yaml(name, "{type: S3}", &settings)).await;
    }

    let (job, check) = invalid_check(&api, "joined", "DestinationBucketExists").await;
    assert_eq!(check.status, CheckStatus::Failed);
    assert!(
        check.message.contains("example-media-outtrailer"),
        "{}",
        check.message
    );
    assert!(check.message.contains("File Group"), "{}", check.message);
    assert_eq!(condition(&job, "Validated").reason, "BucketNotFound");

    let (_, check) = invalid_check(&api, "no-scheme", "SettingsShape").await;
    assert!(check.message.contains("s3://"), "{}", check.message);

    let done = wait_for(&api, "base-name", "Complete", phase_is("Complete")).await;
    assert_eq!(
        done.status.unwrap().outputs,
        ["s3://example-media-out/trailer.mp4"]
    );
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "only base-name may be submitted: {jobs:?}");
    let sent = &jobs[0]["settings"]["outputGroups"][0]["outputGroupSettings"];
    assert_eq!(
        sent["fileGroupSettings"]["destination"],
        "s3://example-media-out/trailer"
    );
}

/// Members of `JobSettings` whose keys the user chooses.
const USER_KEYED_MAPS: [&str; 4] = [
    "AudioSelectors",
    "AudioSelectorGroups",
    "CaptionSelectors",
    "DynamicAudioSelectors",
];

fn lower_first(key: &str) -> String {
    let mut chars = key.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

/// Asserts that `sent` carries every member and value of `original` under its REST name,
/// with user-chosen map keys unchanged, and nothing else.
fn assert_same_settings(original: &Value, sent: &Value, path: &str) {
    match (original, sent) {
        (Value::Object(original), Value::Object(sent)) => {
            assert_eq!(
                original.len(),
                sent.len(),
                "member count differs at {path}: {:?} vs {:?}",
                original.keys().collect::<Vec<_>>(),
                sent.keys().collect::<Vec<_>>()
            );
            for (key, value) in original {
                let sent_key = lower_first(key);
                let sent_value = sent
                    .get(&sent_key)
                    .unwrap_or_else(|| panic!("{path}.{key} missing as {sent_key}"));
                if USER_KEYED_MAPS.contains(&key.as_str()) {
                    assert_user_keys_kept(value, sent_value, &format!("{path}.{key}"));
                } else {
                    assert_same_settings(value, sent_value, &format!("{path}.{key}"));
                }
            }
        }
        (Value::Array(original), Value::Array(sent)) => {
            assert_eq!(original.len(), sent.len(), "list length differs at {path}");
            for (index, (a, b)) in original.iter().zip(sent).enumerate() {
                assert_same_settings(a, b, &format!("{path}[{index}]"));
            }
        }
        (original, sent) => assert_eq!(original, sent, "value differs at {path}"),
    }
}

fn assert_user_keys_kept(original: &Value, sent: &Value, path: &str) {
    let (Some(original), Some(sent)) = (original.as_object(), sent.as_object()) else {
        panic!("{path} is not a map on both sides");
    };
    let original_keys: Vec<&String> = original.keys().collect();
    let sent_keys: Vec<&String> = sent.keys().collect();
    assert_eq!(
        original_keys, sent_keys,
        "user-chosen keys changed at {path}"
    );
    for (key, value) in original {
        assert_same_settings(value, &sent[key], &format!("{path}[{key:?}]"));
    }
}

/// Removes the `Encryption` block the operator added, and the objects it created to hold it.
fn strip_injected_encryption(settings: &mut Value) -> Vec<Value> {
    let mut removed = Vec::new();
    let groups = settings["outputGroups"]
        .as_array_mut()
        .expect("no outputGroups sent");
    for group in groups {
        let Some(group_settings) = group["outputGroupSettings"].as_object_mut() else {
            continue;
        };
        for inner in group_settings.values_mut().filter_map(Value::as_object_mut) {
            let Some(destination) = inner
                .get_mut("destinationSettings")
                .and_then(Value::as_object_mut)
            else {
                continue;
            };
            let s3 = destination
                .get_mut("s3Settings")
                .and_then(Value::as_object_mut)
                .expect("no s3Settings");
            removed.extend(s3.remove("encryption"));
            if s3.is_empty() {
                destination.remove("s3Settings");
            }
            if destination.is_empty() {
                inner.remove("destinationSettings");
            }
        }
    }
    removed
}

#[tokio::test]
async fn console_export_arrives_field_for_field() {
    let setup = setup("roundtrip", timeline(300, complete())).await;
    // The checks read the export's input object, so it must exist.
    let aws = setup.env.aws().await;
    aws.put_object("example-media-in", "feature.mov", "us-east-1")
        .await
        .expect("failed to upload the input");
    let api = setup.namespace.jobs();
    let export: Value =
        serde_json::from_str(include_str!("fixtures/console-export-abr.json")).unwrap();
    let mut job = job_yaml("feature", "{type: S3}", BASE_SETTINGS);
    job.spec.settings = export.clone();
    create(&api, &job).await;

    wait_for(&api, "feature", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1);
    let mut sent = jobs[0]["settings"].clone();
    let removed = strip_injected_encryption(&mut sent);
    assert_eq!(
        removed,
        vec![json!({"encryptionType": "SERVER_SIDE_ENCRYPTION_S3"}); 3]
    );
    assert_same_settings(&export, &sent, "settings");

    let selectors: &Map<String, Value> = sent["inputs"][0]["audioSelectors"].as_object().unwrap();
    assert!(selectors.contains_key("Director Commentary"));
    assert_eq!(sent["futureJobSetting"]["nested"][0]["level"], 1);
}
