use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::*;
use crate::api::{EncryptionSpec, EncryptionType};

const KEY_ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

fn console_settings() -> Value {
    serde_yaml::from_str(
        r#"
Inputs:
  - FileInput: s3://example-media-in/trailer.mp4
    AudioSelectors:
      Audio Selector 1: {DefaultSelection: DEFAULT, Tracks: [1]}
      commentary: {Tracks: [2]}
    CaptionSelectors:
      English CC: {SourceSettings: {SourceType: EMBEDDED}}
OutputGroups:
  - Name: File Group
    OutputGroupSettings:
      Type: FILE_GROUP_SETTINGS
      FileGroupSettings:
        Destination: s3://example-media-out/trailer/
    Outputs:
      - ContainerSettings: {Container: MP4}
        VideoDescription:
          CodecSettings:
            Codec: H_264
            H264Settings: {RateControlMode: QVBR, MaxBitrate: 5000000}
  - Name: Apple HLS
    OutputGroupSettings:
      Type: HLS_GROUP_SETTINGS
      HlsGroupSettings:
        Destination: s3://example-media-out/hls/
        SegmentLength: 6
    Outputs:
      - NameModifier: _720p
        ContainerSettings: {Container: M3U8}
FutureMember: {SomeField: 1}
"#,
    )
    .unwrap()
}

fn kms_spec() -> EncryptionSpec {
    EncryptionSpec {
        encryption_type: EncryptionType::Kms,
        kms_key_arn: Some(KEY_ARN.into()),
        ..EncryptionSpec::default()
    }
}

fn encryption_of(prepared: &PreparedSettings, group: usize) -> Option<&Value> {
    let groups = prepared.json["outputGroups"].as_array().unwrap();
    let settings = &groups[group]["outputGroupSettings"];
    let inner = ["fileGroupSettings", "hlsGroupSettings"]
        .iter()
        .find_map(|member| settings.get(*member))?;
    inner.pointer("/destinationSettings/s3Settings/encryption")
}

#[test]
fn normalize_lowers_member_names() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let json = Value::Object(normalized.json.clone());
    assert!(
        json.pointer("/outputGroups/0/outputGroupSettings/fileGroupSettings/destination")
            .is_some()
    );
    assert!(
        json.pointer(
            "/outputGroups/0/outputs/0/videoDescription/codecSettings/h264Settings/maxBitrate"
        )
        .is_some()
    );
    assert_eq!(json["futureMember"], json!({"someField": 1}));
}

#[test]
fn normalize_keeps_selector_names() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let input = &normalized.json["inputs"][0];
    let selectors = input["audioSelectors"].as_object().unwrap();
    assert!(selectors.contains_key("Audio Selector 1"));
    assert!(selectors.contains_key("commentary"));
    assert_eq!(selectors["Audio Selector 1"]["defaultSelection"], "DEFAULT");
    assert!(
        input["captionSelectors"]
            .as_object()
            .unwrap()
            .contains_key("English CC")
    );
}

#[test]
fn normalize_keeps_values() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let group = &normalized.json["outputGroups"][0];
    assert_eq!(group["name"], "File Group");
    assert_eq!(group["outputGroupSettings"]["type"], "FILE_GROUP_SETTINGS");
}

#[test]
fn normalize_is_idempotent_on_rest_spelling() {
    let first = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let rest = Value::Object(first.json.clone());
    let second = NormalizedSettings::parse(&rest, false).unwrap();
    assert_eq!(first, second);
}

#[test]
fn duplicate_spellings_rejected() {
    let settings = json!({"OutputGroups": [], "outputGroups": []});
    let error = NormalizedSettings::parse(&settings, false).unwrap_err();
    assert!(matches!(error, Error::DuplicateMember { .. }), "{error}");
}

#[test]
fn non_object_settings_rejected() {
    for (settings, found) in [(json!("Inputs"), "a string"), (json!([1]), "a list")] {
        let error = NormalizedSettings::parse(&settings, false).unwrap_err();
        assert_eq!(error, Error::SettingsNotAnObject { found });
    }
}

#[test]
fn job_export_rejected_with_keys() {
    let export = json!({
        "Queue": "arn:aws:mediaconvert:us-east-1:111122223333:queues/Default",
        "Role": "arn:aws:iam::111122223333:role/OtherRole",
        "UserMetadata": {},
        "Settings": console_settings(),
    });
    let error = NormalizedSettings::parse(&export, false).unwrap_err();
    let Error::WrappedExport { keys } = &error else {
        panic!("unexpected error {error}");
    };
    assert_eq!(keys, &["Queue", "Role", "Settings", "UserMetadata"]);
    assert!(error.to_string().contains("spec.role"));
}

#[test]
fn template_export_rejected() {
    let export = json!({"Name": "t", "Description": "d", "Settings": console_settings()});
    let error = NormalizedSettings::parse(&export, false).unwrap_err();
    assert!(
        matches!(error, Error::WrappedExport { ref keys } if keys.contains(&"Name".to_string()))
    );
}

#[test]
fn missing_output_groups_rejected() {
    let settings = json!({"Inputs": [{"FileInput": "s3://example-media-in/a.mp4"}]});
    assert_eq!(
        NormalizedSettings::parse(&settings, false).unwrap_err(),
        Error::NoOutputGroups
    );
    assert!(NormalizedSettings::parse(&settings, true).is_ok());
}

#[test]
fn empty_outputs_rejected() {
    let settings = json!({"OutputGroups": [{"Name": "File Group", "Outputs": [],
        "OutputGroupSettings": {"FileGroupSettings": {"Destination": "s3://b/p/"}}}]});
    let error = NormalizedSettings::parse(&settings, false).unwrap_err();
    assert!(matches!(error, Error::EmptyOutputGroup { ref group, .. } if group == "File Group"));
}

#[test]
fn destination_without_scheme_rejected() {
    let settings = json!({"OutputGroups": [{"Name": "File Group", "Outputs": [{}],
        "OutputGroupSettings": {"FileGroupSettings": {"Destination": "example-media-out/trailer/"}}}]});
    let error = NormalizedSettings::parse(&settings, false).unwrap_err();
    assert!(
        matches!(error, Error::DestinationNotS3 { ref destination, .. } if destination == "example-media-out/trailer/")
    );
}

#[test]
fn destinations_listed_verbatim() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let uris: Vec<_> = normalized
        .destinations()
        .iter()
        .map(|d| d.uri.as_str())
        .collect();
    assert_eq!(
        uris,
        [
            "s3://example-media-out/trailer/",
            "s3://example-media-out/hls/"
        ]
    );
    assert_eq!(normalized.destinations()[1].group, "Apple HLS");
    assert_eq!(normalized.destinations()[1].bucket, "example-media-out");
}

#[test]
fn s3_bucket_parsing() {
    assert_eq!(
        parse_s3_bucket("s3://example-media-out/trailer").as_deref(),
        Some("example-media-out")
    );
    assert_eq!(
        parse_s3_bucket("s3://example-media-outtrailer/").as_deref(),
        Some("example-media-outtrailer")
    );
    assert_eq!(parse_s3_bucket("s3:///x"), None);
    assert_eq!(parse_s3_bucket("https://example-media-out/x"), None);
}

#[test]
fn kms_injected_into_every_group() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let prepared = normalized.prepare(&plan).unwrap();
    let expected = json!({"encryptionType": "SERVER_SIDE_ENCRYPTION_KMS", "kmsKeyArn": KEY_ARN});
    assert_eq!(encryption_of(&prepared, 0), Some(&expected));
    assert_eq!(encryption_of(&prepared, 1), Some(&expected));
    assert_eq!(prepared.encrypted_groups, ["File Group", "Apple HLS"]);
}

#[test]
fn only_selected_group_encrypted() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let spec = EncryptionSpec {
        output_groups: vec!["Apple HLS".into()],
        ..kms_spec()
    };
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let prepared = normalized.prepare(&plan).unwrap();
    assert_eq!(encryption_of(&prepared, 0), None);
    assert!(encryption_of(&prepared, 1).is_some());
    assert_eq!(prepared.encrypted_groups, ["Apple HLS"]);
}

#[test]
fn unknown_group_name_rejected() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let spec = EncryptionSpec {
        output_groups: vec!["HLS".into()],
        ..kms_spec()
    };
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let error = normalized.prepare(&plan).unwrap_err();
    assert!(
        matches!(error, Error::UnknownOutputGroup { ref available, .. } if available.len() == 2)
    );
}

#[test]
fn sse_s3_has_no_key() {
    let normalized = NormalizedSettings::parse(&console_settings(), false).unwrap();
    let spec = EncryptionSpec {
        encryption_type: EncryptionType::S3,
        ..EncryptionSpec::default()
    };
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: None,
    };
    let prepared = normalized.prepare(&plan).unwrap();
    let expected = json!({"encryptionType": "SERVER_SIDE_ENCRYPTION_S3"});
    assert_eq!(encryption_of(&prepared, 0), Some(&expected));
}

#[test]
fn encryption_context_base64_json() {
    let context = BTreeMap::from([("project".to_string(), "trailer".to_string())]);
    let encoded = encode_encryption_context(&context);
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(decoded, br#"{"project":"trailer"}"#);
}

#[test]
fn conflicting_encryption_reported() {
    let mut settings = console_settings();
    settings["OutputGroups"][0]["OutputGroupSettings"]["FileGroupSettings"]["DestinationSettings"] =
        json!({"S3Settings": {"Encryption": {"EncryptionType": "SERVER_SIDE_ENCRYPTION_S3"}}});
    let normalized = NormalizedSettings::parse(&settings, false).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let error = normalized.prepare(&plan).unwrap_err();
    assert!(matches!(error, Error::EncryptionConflict { ref group, .. } if group == "File Group"));
}

#[test]
fn matching_encryption_accepted() {
    let mut settings = console_settings();
    settings["OutputGroups"][0]["OutputGroupSettings"]["FileGroupSettings"]["DestinationSettings"] = json!(
        {"S3Settings": {"StorageClass": "STANDARD_IA", "Encryption": {"EncryptionType": "SERVER_SIDE_ENCRYPTION_KMS", "KmsKeyArn": KEY_ARN}}});
    let normalized = NormalizedSettings::parse(&settings, false).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let prepared = normalized.prepare(&plan).unwrap();
    let s3 = prepared
        .json
        .pointer(
            "/outputGroups/0/outputGroupSettings/fileGroupSettings/destinationSettings/s3Settings",
        )
        .unwrap();
    assert_eq!(s3["storageClass"], "STANDARD_IA");
}

#[test]
fn null_s3_settings_replaced() {
    let mut settings = console_settings();
    settings["OutputGroups"][0]["OutputGroupSettings"]["FileGroupSettings"]["DestinationSettings"] =
        json!({"S3Settings": null});
    let normalized = NormalizedSettings::parse(&settings, false).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let prepared = normalized.prepare(&plan).unwrap();
    assert!(encryption_of(&prepared, 0).is_some());
}

#[test]
fn scalar_destination_settings_rejected() {
    let mut settings = console_settings();
    settings["OutputGroups"][0]["OutputGroupSettings"]["FileGroupSettings"]["DestinationSettings"] =
        json!("s3");
    let normalized = NormalizedSettings::parse(&settings, false).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let error = normalized.prepare(&plan).unwrap_err();
    assert!(
        matches!(error, Error::NotAnObject { ref path, .. } if path.contains("destinationSettings")),
        "{error}"
    );
}

#[test]
fn template_without_groups_has_nothing_to_encrypt() {
    let settings = json!({"Inputs": [{"FileInput": "s3://example-media-in/a.mp4"}]});
    let normalized = NormalizedSettings::parse(&settings, true).unwrap();
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    assert_eq!(
        normalized.prepare(&plan).unwrap_err(),
        Error::NothingToEncrypt
    );
}

#[test]
fn group_type_selects_settings_member() {
    let mut settings = console_settings();
    // A leftover file group block beside the HLS block that the type selects.
    settings["OutputGroups"][1]["OutputGroupSettings"]["FileGroupSettings"] =
        json!({"Destination": "s3://example-media-other/leftover/"});
    let normalized = NormalizedSettings::parse(&settings, false).unwrap();
    assert_eq!(
        normalized.destinations()[1].uri,
        "s3://example-media-out/hls/"
    );
    let spec = kms_spec();
    let plan = EncryptionPlan {
        spec: &spec,
        resolved_key_arn: Some(KEY_ARN),
    };
    let prepared = normalized.prepare(&plan).unwrap();
    let group = &prepared.json["outputGroups"][1]["outputGroupSettings"];
    assert!(
        group
            .pointer("/hlsGroupSettings/destinationSettings/s3Settings/encryption")
            .is_some()
    );
    assert!(
        group
            .pointer("/fileGroupSettings/destinationSettings")
            .is_none()
    );
}

#[test]
fn screaming_snake_matches_group_types() {
    assert_eq!(
        screaming_snake("dashIsoGroupSettings"),
        "DASH_ISO_GROUP_SETTINGS"
    );
    assert_eq!(
        screaming_snake("msSmoothGroupSettings"),
        "MS_SMOOTH_GROUP_SETTINGS"
    );
    assert_eq!(screaming_snake("hlsGroupSettings"), "HLS_GROUP_SETTINGS");
}
