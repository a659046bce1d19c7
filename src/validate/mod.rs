//! Checks run before a job is submitted, so that encryption mistakes surface in the
//! resource instead of as a failed upload after a paid transcode.

pub mod arn;
pub mod offline;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use crate::api::{
    CheckResult, CheckStatus, ConditionReason, EncryptionStatus, EncryptionType,
    MediaConvertJobSpec, ValidationPolicy,
};
use crate::aws::{AwsError, ErrorClass, KeyDescription, Kms, S3};
use crate::settings::{EncryptionPlan, NormalizedSettings, PreparedSettings};

/// Stable names of the checks, as they appear in `status.validation.checks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckName {
    /// ARN syntax of role, key and queue; region names; encryption fields.
    SpecValid,
    /// `spec.settings` is a JSON object of `JobSettings` with output groups and S3 URIs.
    SettingsShape,
    /// `kms:DescribeKey` shows an enabled symmetric encryption key.
    KmsKeyUsable,
    /// Every destination bucket exists.
    DestinationBucketExists,
    /// The KMS key is in the region of the job and of every destination bucket.
    KeyRegionMatchesBucket,
    /// The settings carry no encryption that differs from `spec.encryption`.
    EncryptionSettings,
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A failed or undecided check, with the condition reason it maps to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub check: CheckName,
    pub status: CheckStatus,
    pub reason: ConditionReason,
    pub message: String,
}

impl Finding {
    pub fn failed(check: CheckName, reason: ConditionReason, message: String) -> Self {
        Self {
            check,
            status: CheckStatus::Failed,
            reason,
            message,
        }
    }

    fn unknown(check: CheckName, message: String) -> Self {
        Self {
            check,
            status: CheckStatus::Unknown,
            reason: ConditionReason::ValidationUnknown,
            message,
        }
    }

    fn to_result(&self) -> CheckResult {
        CheckResult {
            name: self.check.to_string(),
            status: self.status,
            message: self.message.clone(),
        }
    }
}

fn passed(check: CheckName) -> CheckResult {
    CheckResult {
        name: check.to_string(),
        status: CheckStatus::Passed,
        message: String::new(),
    }
}

/// A job that may be submitted: settings prepared with the encryption it will carry.
/// Only [`Checker::run`] builds one.
#[derive(Clone, Debug)]
pub struct ValidatedJob {
    pub region: String,
    pub settings: PreparedSettings,
    pub encryption: EncryptionStatus,
    /// Failed or undecided checks that `validation: Warn` let through.
    pub warnings: Vec<Finding>,
}

/// Decision of the checks.
#[derive(Debug)]
pub enum Verdict {
    /// Submit the job.
    Submit(Box<ValidatedJob>),
    /// Do not submit. `retry` is true when the fix happens in AWS rather than in the spec.
    Reject { finding: Finding, retry: bool },
}

/// Results of one validation run.
#[derive(Debug)]
pub struct Outcome {
    pub checks: Vec<CheckResult>,
    pub verdict: Verdict,
}

/// Runs the checks against AWS.
pub struct Checker {
    kms: Arc<dyn Kms>,
    s3: Arc<dyn S3>,
    default_region: String,
}

impl Checker {
    pub fn new(kms: Arc<dyn Kms>, s3: Arc<dyn S3>, default_region: String) -> Self {
        Self {
            kms,
            s3,
            default_region,
        }
    }

    /// Region a job runs in: its own, or the operator's default.
    pub fn region_of(&self, spec: &MediaConvertJobSpec) -> String {
        spec.region
            .clone()
            .unwrap_or_else(|| self.default_region.clone())
    }

    /// Rebuilds the request of a job that passed validation before, without AWS calls,
    /// using the key ARN resolved then.
    pub fn rebuild(
        &self,
        spec: &MediaConvertJobSpec,
        resolved_key_arn: Option<&str>,
    ) -> Result<ValidatedJob, Finding> {
        let plan = offline::check(spec, &self.default_region)?;
        let settings = prepare(&plan.settings, spec, resolved_key_arn)?;
        let encryption = EncryptionStatus {
            encryption_type: spec.encryption.encryption_type,
            kms_key_arn: resolved_key_arn.map(str::to_string),
            key_region: plan.key_region.clone(),
            output_groups: settings.encrypted_groups.clone(),
        };
        Ok(ValidatedJob {
            region: plan.region,
            settings,
            encryption,
            warnings: Vec::new(),
        })
    }

    /// Runs every check for `spec`. Transient AWS failures return `Err`, so the caller
    /// retries the whole run with backoff instead of recording a verdict.
    pub async fn run(&self, spec: &MediaConvertJobSpec) -> Result<Outcome, AwsError> {
        let mut checks = Vec::new();
        let plan = match offline::check(spec, &self.default_region) {
            Ok(plan) => plan,
            Err(finding) => return Ok(reject(checks, finding, false)),
        };
        checks.push(passed(CheckName::SpecValid));
        checks.push(passed(CheckName::SettingsShape));

        let mut warnings = Vec::new();
        let key = if spec.validation == ValidationPolicy::Skip {
            None
        } else {
            match self.check_key(spec, &plan).await? {
                Ok(key) => {
                    // Without a customer key (SSE-S3 or aws/s3) there is nothing to check.
                    if key.is_some() {
                        checks.push(passed(CheckName::KmsKeyUsable));
                    }
                    key
                }
                Err(finding) => match admit(spec.validation, finding, &mut checks, &mut warnings) {
                    Ok(()) => None,
                    Err(finding) => return Ok(reject(checks, finding, true)),
                },
            }
        };
        if spec.validation != ValidationPolicy::Skip {
            let findings = self.check_buckets(spec, &plan, key.as_ref()).await?;
            let mut applicable = vec![CheckName::DestinationBucketExists];
            if key.is_some() {
                applicable.push(CheckName::KeyRegionMatchesBucket);
            }
            for check in applicable {
                if !findings.iter().any(|finding| finding.check == check) {
                    checks.push(passed(check));
                }
            }
            for finding in findings {
                if let Err(finding) = admit(spec.validation, finding, &mut checks, &mut warnings) {
                    return Ok(reject(checks, finding, true));
                }
            }
        }

        let resolved_key_arn = key
            .as_ref()
            .map(|key| key.arn.clone())
            .or_else(|| spec.encryption.kms_key_arn.clone());
        if let Some(alias) = resolved_key_arn
            .as_deref()
            .filter(|arn| arn.contains(":alias/"))
        {
            let finding = Finding::failed(
                CheckName::KmsKeyUsable,
                ConditionReason::SpecInvalid,
                format!(
                    "spec.encryption.kmsKeyArn {alias} is an alias ARN, which MediaConvert does not accept, and the operator could not resolve it with kms:DescribeKey; name the key ARN, or let the KmsKeyUsable check run"
                ),
            );
            let retry = spec.validation != ValidationPolicy::Skip;
            return Ok(reject(checks, finding, retry));
        }
        let prepared = prepare(&plan.settings, spec, resolved_key_arn.as_deref());
        let settings = match prepared {
            Ok(settings) => settings,
            Err(finding) => return Ok(reject(checks, finding, false)),
        };
        checks.push(passed(CheckName::EncryptionSettings));

        let encryption = EncryptionStatus {
            encryption_type: spec.encryption.encryption_type,
            kms_key_arn: resolved_key_arn,
            key_region: plan.key_region.clone(),
            output_groups: settings.encrypted_groups.clone(),
        };
        Ok(Outcome {
            checks,
            verdict: Verdict::Submit(Box::new(ValidatedJob {
                region: plan.region,
                settings,
                encryption,
                warnings,
            })),
        })
    }

    /// Describes the key named in the spec. `Ok(Err(..))` is a failed or undecided check.
    async fn check_key(
        &self,
        spec: &MediaConvertJobSpec,
        plan: &offline::OfflinePlan,
    ) -> Result<Result<Option<KeyDescription>, Finding>, AwsError> {
        let (EncryptionType::Kms, Some(key_arn)) = (
            spec.encryption.encryption_type,
            spec.encryption.kms_key_arn.as_deref(),
        ) else {
            return Ok(Ok(None));
        };
        let region = plan.key_region.as_deref().unwrap_or(&plan.region);
        let key = match self.kms.describe_key(region, key_arn).await {
            Ok(key) => key,
            Err(error) => return key_error(key_arn, error).map(Err),
        };
        let role_account = arn::parse_role(&spec.role)
            .map(|role| role.account.to_string())
            .ok();
        Ok(judge_key(key_arn, key, role_account.as_deref()))
    }

    /// Checks that each destination bucket exists and sits in the key's region.
    async fn check_buckets(
        &self,
        spec: &MediaConvertJobSpec,
        plan: &offline::OfflinePlan,
        key: Option<&KeyDescription>,
    ) -> Result<Vec<Finding>, AwsError> {
        let mut findings = Vec::new();
        let mut seen = BTreeSet::new();
        for destination in plan.settings.destinations() {
            if !seen.insert(destination.bucket.clone()) {
                continue;
            }
            let region = match self.s3.bucket_region(&destination.bucket).await {
                Ok(region) => region,
                Err(error) if error.class == ErrorClass::Invalid => {
                    findings.push(Finding::failed(
                        CheckName::DestinationBucketExists,
                        ConditionReason::BucketNotFound,
                        format!(
                            "S3 rejected bucket {} from output group {:?} (destination {}): {}; correct the destination",
                            destination.bucket, destination.group, destination.uri, error.message
                        ),
                    ));
                    continue;
                }
                Err(error) if error.class == ErrorClass::AccessDenied => {
                    findings.push(Finding::unknown(
                        CheckName::DestinationBucketExists,
                        format!(
                            "the operator may not call s3:GetBucketLocation on bucket {}; grant it to the operator's role ({})",
                            destination.bucket, error.message
                        ),
                    ));
                    continue;
                }
                Err(error) => return Err(error),
            };
            let Some(bucket_region) = region else {
                findings.push(Finding::failed(
                    CheckName::DestinationBucketExists,
                    ConditionReason::BucketNotFound,
                    format!(
                        "bucket {} from output group {:?} (destination {}) does not exist; create it or correct the destination",
                        destination.bucket, destination.group, destination.uri
                    ),
                ));
                continue;
            };
            let key_region = key
                .and_then(|key| arn::parse_key(&key.arn).ok())
                .map(|arn| arn.region.to_string());
            if let Some(key_region) = key_region.filter(|key_region| *key_region != bucket_region) {
                findings.push(Finding::failed(
                    CheckName::KeyRegionMatchesBucket,
                    ConditionReason::KeyRegionMismatch,
                    format!(
                        "KMS key {} is in region {key_region}, but bucket {} of output group {:?} is in {bucket_region}; S3 needs the key in the bucket's region, so use a key (or a multi-Region replica) in {bucket_region}",
                        spec.encryption.kms_key_arn.as_deref().unwrap_or_default(),
                        destination.bucket,
                        destination.group
                    ),
                ));
            }
        }
        Ok(findings)
    }
}

/// Records a finding; returns it back when it blocks submission under `policy`.
fn admit(
    policy: ValidationPolicy,
    finding: Finding,
    checks: &mut Vec<CheckResult>,
    warnings: &mut Vec<Finding>,
) -> Result<(), Finding> {
    checks.push(finding.to_result());
    let blocks = policy == ValidationPolicy::Enforce;
    if blocks {
        return Err(finding);
    }
    warnings.push(finding);
    Ok(())
}

fn reject(mut checks: Vec<CheckResult>, finding: Finding, retry: bool) -> Outcome {
    if !checks
        .iter()
        .any(|check| check.name == finding.check.to_string())
    {
        checks.push(finding.to_result());
    }
    Outcome {
        checks,
        verdict: Verdict::Reject { finding, retry },
    }
}

fn prepare(
    settings: &NormalizedSettings,
    spec: &MediaConvertJobSpec,
    resolved_key_arn: Option<&str>,
) -> Result<PreparedSettings, Finding> {
    let plan = EncryptionPlan {
        spec: &spec.encryption,
        resolved_key_arn,
    };
    settings.prepare(&plan).map_err(|error| {
        let reason = match error {
            crate::settings::Error::EncryptionConflict { .. } => {
                ConditionReason::EncryptionConflict
            }
            _ => ConditionReason::SettingsInvalid,
        };
        Finding::failed(CheckName::EncryptionSettings, reason, error.to_string())
    })
}

/// Maps a `DescribeKey` failure to a finding, or passes a transient error on.
fn key_error(key_arn: &str, error: AwsError) -> Result<Finding, AwsError> {
    match error.class {
        ErrorClass::NotFound => Ok(Finding::failed(
            CheckName::KmsKeyUsable,
            ConditionReason::KmsKeyNotFound,
            format!(
                "KMS key {key_arn} does not exist; check the key ARN and region in spec.encryption.kmsKeyArn"
            ),
        )),
        ErrorClass::Invalid => Ok(Finding::failed(
            CheckName::KmsKeyUsable,
            ConditionReason::KmsKeyNotFound,
            format!(
                "KMS rejected key {key_arn}: {}; check spec.encryption.kmsKeyArn",
                error.message
            ),
        )),
        ErrorClass::AccessDenied => Ok(Finding::unknown(
            CheckName::KmsKeyUsable,
            format!(
                "the operator may not call kms:DescribeKey on {key_arn}; grant it in the operator's IAM policy and the key policy ({})",
                error.message
            ),
        )),
        _ => Err(error),
    }
}

/// Judges a described key: enabled, symmetric, and not an AWS managed key of another account.
fn judge_key(
    key_arn: &str,
    key: KeyDescription,
    role_account: Option<&str>,
) -> Result<Option<KeyDescription>, Finding> {
    let fail = |reason, message| Err(Finding::failed(CheckName::KmsKeyUsable, reason, message));
    let state_reason = match key.state.as_str() {
        "Enabled" => None,
        "Disabled" => Some((
            ConditionReason::KmsKeyDisabled,
            "enable it with kms:EnableKey or name another key",
        )),
        "PendingDeletion" | "PendingReplicaDeletion" => Some((
            ConditionReason::KmsKeyPendingDeletion,
            "cancel the deletion with kms:CancelKeyDeletion and enable it, or name another key",
        )),
        "PendingImport" => Some((
            ConditionReason::KmsKeyPendingImport,
            "import its key material or name another key",
        )),
        _ => Some((
            ConditionReason::KmsKeyUnavailable,
            "wait until it is Enabled or name another key",
        )),
    };
    if let Some((reason, fix)) = state_reason {
        return fail(
            reason,
            format!("KMS key {} is in state {}; {fix}", key.arn, key.state),
        );
    }
    if !key.is_symmetric_encryption_key() {
        return fail(
            ConditionReason::KmsKeyNotSymmetric,
            format!(
                "KMS key {} has key spec {} and key usage {}, but S3 encrypts only with symmetric encryption keys (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT); name such a key",
                key.arn, key.spec, key.usage
            ),
        );
    }
    if key.is_aws_managed() && role_account.is_some_and(|account| account != key.account_id) {
        return fail(
            ConditionReason::AwsManagedKeyCrossAccount,
            format!(
                "KMS key {key_arn} is an AWS managed key of account {}, which other accounts cannot use; use a customer managed key",
                key.account_id
            ),
        );
    }
    Ok(Some(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn key(state: &str, usage: &str, spec: &str, manager: &str) -> KeyDescription {
        KeyDescription {
            arn: KEY.into(),
            account_id: "111122223333".into(),
            state: state.into(),
            usage: usage.into(),
            spec: spec.into(),
            manager: manager.into(),
        }
    }

    fn rejection(described: KeyDescription, role_account: &str) -> Finding {
        judge_key(KEY, described, Some(role_account)).expect_err("key accepted")
    }

    #[test]
    fn usable_key_accepted() {
        let described = key(
            "Enabled",
            "ENCRYPT_DECRYPT",
            "SYMMETRIC_DEFAULT",
            "CUSTOMER",
        );
        assert!(judge_key(KEY, described, Some("111122223333")).is_ok());
    }

    #[test]
    fn key_states_have_own_reasons() {
        let cases = [
            ("Disabled", ConditionReason::KmsKeyDisabled, "kms:EnableKey"),
            (
                "PendingDeletion",
                ConditionReason::KmsKeyPendingDeletion,
                "CancelKeyDeletion",
            ),
            (
                "PendingImport",
                ConditionReason::KmsKeyPendingImport,
                "import",
            ),
            ("Unavailable", ConditionReason::KmsKeyUnavailable, "Enabled"),
        ];
        for (state, reason, fix) in cases {
            let finding = rejection(
                key(state, "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", "CUSTOMER"),
                "111122223333",
            );
            assert_eq!(finding.reason, reason, "{state}");
            assert!(
                finding.message.contains(state),
                "{state}: {}",
                finding.message
            );
            assert!(
                finding.message.contains(fix),
                "{state}: {}",
                finding.message
            );
        }
    }

    #[test]
    fn asymmetric_and_mac_keys_rejected() {
        for (usage, spec) in [
            ("ENCRYPT_DECRYPT", "RSA_4096"),
            ("GENERATE_VERIFY_MAC", "HMAC_256"),
            ("SIGN_VERIFY", "ECC_NIST_P256"),
        ] {
            let finding = rejection(key("Enabled", usage, spec, "CUSTOMER"), "111122223333");
            assert_eq!(
                finding.reason,
                ConditionReason::KmsKeyNotSymmetric,
                "{spec}"
            );
            assert!(finding.message.contains(spec), "{}", finding.message);
            assert!(
                finding.message.contains("SYMMETRIC_DEFAULT"),
                "{}",
                finding.message
            );
        }
    }

    #[test]
    fn aws_managed_key_of_other_account_rejected() {
        let described = key("Enabled", "ENCRYPT_DECRYPT", "SYMMETRIC_DEFAULT", "AWS");
        let finding = rejection(described.clone(), "444455556666");
        assert_eq!(finding.reason, ConditionReason::AwsManagedKeyCrossAccount);
        assert!(judge_key(KEY, described, Some("111122223333")).is_ok());
    }
}
