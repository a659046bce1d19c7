//! Checks that need no AWS call: ARN syntax, regions, encryption fields, settings shape.

use std::collections::BTreeMap;

use crate::api::{ConditionReason, EncryptionType, MediaConvertJobSpec};
use crate::settings::{NormalizedSettings, encode_encryption_context};

use super::arn;
use super::{CheckName, Finding};

/// User metadata keys with this prefix are written by the operator.
pub const RESERVED_METADATA_PREFIX: &str = "mediaconvert.operators.dev/";

/// A spec that passed the offline checks.
#[derive(Debug)]
pub struct OfflinePlan {
    pub region: String,
    /// Region of the KMS key named in the spec, when one is named.
    pub key_region: Option<String>,
    pub settings: NormalizedSettings,
}

/// Runs the offline checks on `spec`, in order, stopping at the first failure.
pub fn check(spec: &MediaConvertJobSpec, default_region: &str) -> Result<OfflinePlan, Finding> {
    let region = spec
        .region
        .clone()
        .unwrap_or_else(|| default_region.to_string());
    let key_region = check_fields(spec, &region)?;
    let settings = NormalizedSettings::parse(&spec.settings, spec.job_template.is_some()).map_err(
        |error| {
            Finding::failed(
                CheckName::SettingsShape,
                ConditionReason::SettingsInvalid,
                error.to_string(),
            )
        },
    )?;
    Ok(OfflinePlan {
        region,
        key_region,
        settings,
    })
}

fn spec_invalid(message: String) -> Finding {
    Finding::failed(CheckName::SpecValid, ConditionReason::SpecInvalid, message)
}

/// Checks ARNs, regions and encryption fields, and returns the key's region.
fn check_fields(spec: &MediaConvertJobSpec, region: &str) -> Result<Option<String>, Finding> {
    if !arn::is_region(region) {
        return Err(spec_invalid(format!(
            "spec.region {region:?} is not an AWS region; use a name such as us-east-1"
        )));
    }
    arn::parse_role(&spec.role).map_err(|error| spec_invalid(format!("spec.role: {error}")))?;
    if let Some(queue) = &spec.queue {
        let queue_region = arn::parse_queue(queue)
            .map_err(|error| spec_invalid(format!("spec.queue: {error}")))?;
        if let Some(queue_region) = queue_region.filter(|queue_region| *queue_region != region) {
            return Err(spec_invalid(format!(
                "spec.queue is in region {queue_region}, but the job runs in {region}; use a queue in {region} or set spec.region to {queue_region}"
            )));
        }
    }
    if let Some(key) = spec
        .user_metadata
        .keys()
        .find(|key| key.starts_with(RESERVED_METADATA_PREFIX))
    {
        return Err(spec_invalid(format!(
            "spec.userMetadata key {key:?} uses the reserved prefix {RESERVED_METADATA_PREFIX}; rename it"
        )));
    }
    check_encryption(spec, region)
}

fn check_encryption(spec: &MediaConvertJobSpec, region: &str) -> Result<Option<String>, Finding> {
    let encryption = &spec.encryption;
    match (encryption.encryption_type, &encryption.kms_key_arn) {
        (EncryptionType::S3, Some(key)) => Err(spec_invalid(format!(
            "spec.encryption.kmsKeyArn is {key:?}, but type S3 uses S3-managed keys; remove kmsKeyArn or set type: KMS"
        ))),
        (EncryptionType::S3, None) if !encryption.encryption_context.is_empty() => Err(spec_invalid(
            "spec.encryption.encryptionContext is set, but type S3 has no KMS key to bind it to; remove it or set type: KMS".into(),
        )),
        (EncryptionType::S3, None) => Ok(None),
        (EncryptionType::Kms, None) => {
            check_context(&encryption.encryption_context)?;
            Ok(None)
        }
        (EncryptionType::Kms, Some(key)) => {
            let arn = arn::parse_key(key).map_err(|error| spec_invalid(format!("spec.encryption.kmsKeyArn: {error}")))?;
            if arn.region != region {
                return Err(Finding::failed(
                    CheckName::KeyRegionMatchesBucket,
                    ConditionReason::KeyRegionMismatch,
                    format!(
                        "KMS key {key} is in region {}, but the job runs in {region}; S3 needs the key in the destination bucket's region, so use a key (or a multi-Region replica) in {region}",
                        arn.region
                    ),
                ));
            }
            check_context(&encryption.encryption_context)?;
            Ok(Some(arn.region.to_string()))
        }
    }
}

/// Longest encoded encryption context accepted. S3 receives the context in the
/// `x-amz-server-side-encryption-context` header, and S3 limits the headers of a PUT
/// request to 8 KB in all.
const MAX_ENCODED_CONTEXT: usize = 8192;

/// Checks the encryption context: KMS rejects empty keys and empty values.
fn check_context(context: &BTreeMap<String, String>) -> Result<(), Finding> {
    let invalid = |message: String| {
        Finding::failed(
            CheckName::EncryptionContextValid,
            ConditionReason::EncryptionContextInvalid,
            message,
        )
    };
    if let Some((_, value)) = context.iter().find(|(key, _)| key.is_empty()) {
        return Err(invalid(format!(
            "spec.encryption.encryptionContext has an empty key (value {value:?}); every key must be a non-empty string"
        )));
    }
    if let Some((key, _)) = context.iter().find(|(_, value)| value.is_empty()) {
        return Err(invalid(format!(
            "spec.encryption.encryptionContext key {key:?} has an empty value, which KMS rejects; give it a value or remove the key"
        )));
    }
    let encoded = encode_encryption_context(context).len();
    if encoded > MAX_ENCODED_CONTEXT {
        return Err(invalid(format!(
            "spec.encryption.encryptionContext is {encoded} bytes once encoded, more than the {MAX_ENCODED_CONTEXT} bytes S3 accepts in a request header; shorten it"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::EncryptionSpec;

    fn spec() -> MediaConvertJobSpec {
        serde_json::from_value(json!({
            "role": "arn:aws:iam::111122223333:role/MediaConvertRole",
            "encryption": {"type": "KMS", "kmsKeyArn": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"},
            "settings": {"OutputGroups": [{"Name": "File Group", "Outputs": [{}],
                "OutputGroupSettings": {"FileGroupSettings": {"Destination": "s3://example-media-out/trailer/"}}}]}
        }))
        .unwrap()
    }

    #[test]
    fn valid_spec_passes() {
        let plan = check(&spec(), "us-east-1").unwrap();
        assert_eq!(plan.region, "us-east-1");
        assert_eq!(plan.key_region.as_deref(), Some("us-east-1"));
    }

    #[test]
    fn malformed_role_named() {
        let mut spec = spec();
        spec.role = "MediaConvertRole".into();
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.reason, ConditionReason::SpecInvalid);
        assert!(finding.message.contains("spec.role"), "{}", finding.message);
        assert!(
            finding.message.contains("MediaConvertRole"),
            "{}",
            finding.message
        );
    }

    #[test]
    fn s3_with_key_rejected() {
        let mut spec = spec();
        spec.encryption.encryption_type = EncryptionType::S3;
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert!(finding.message.contains("kmsKeyArn"), "{}", finding.message);
    }

    #[test]
    fn key_in_other_region_rejected() {
        let mut spec = spec();
        spec.region = Some("us-west-2".into());
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.reason, ConditionReason::KeyRegionMismatch);
        assert!(finding.message.contains("us-west-2"), "{}", finding.message);
    }

    #[test]
    fn reserved_metadata_rejected() {
        let mut spec = spec();
        spec.user_metadata
            .insert("mediaconvert.operators.dev/uid".into(), "x".into());
        assert_eq!(
            check(&spec, "us-east-1").unwrap_err().reason,
            ConditionReason::SpecInvalid
        );
    }

    #[test]
    fn aws_managed_key_needs_no_arn() {
        let mut spec = spec();
        *spec.encryption = EncryptionSpec::default();
        assert_eq!(check(&spec, "us-east-1").unwrap().key_region, None);
    }

    #[test]
    fn missing_output_groups_named() {
        let mut spec = spec();
        spec.settings = json!({"Inputs": []});
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.check, CheckName::SettingsShape);
        assert!(
            finding.message.contains("OutputGroups"),
            "{}",
            finding.message
        );
    }

    #[test]
    fn empty_context_value_named() {
        let mut spec = spec();
        spec.encryption.encryption_context = [
            ("project".into(), "trailer".into()),
            ("team".into(), String::new()),
        ]
        .into();
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.check, CheckName::EncryptionContextValid);
        assert_eq!(finding.reason, ConditionReason::EncryptionContextInvalid);
        assert!(finding.message.contains("\"team\""), "{}", finding.message);
    }

    #[test]
    fn empty_context_key_rejected() {
        let mut spec = spec();
        spec.encryption.kms_key_arn = None;
        spec.encryption.encryption_context = [(String::new(), "x".into())].into();
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.reason, ConditionReason::EncryptionContextInvalid);
        assert!(finding.message.contains("empty key"), "{}", finding.message);
    }

    #[test]
    fn oversized_context_rejected() {
        let mut spec = spec();
        spec.encryption.encryption_context = [("notes".into(), "x".repeat(7000))].into();
        let finding = check(&spec, "us-east-1").unwrap_err();
        assert_eq!(finding.reason, ConditionReason::EncryptionContextInvalid);
        assert!(finding.message.contains("8192"), "{}", finding.message);
    }
}
