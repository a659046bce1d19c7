//! Checks run before a job is submitted, so that encryption mistakes surface in the
//! resource instead of as a failed upload after a paid transcode.

mod access;
pub mod arn;
mod buckets;
pub mod cache;
mod grants;
mod inputs;
mod key;
pub mod offline;
mod readers;
mod role;

use std::fmt;

use crate::api::{
    CheckResult, CheckStatus, ConditionReason, EncryptionStatus, EncryptionType,
    MediaConvertJobSpec, ValidationPolicy,
};
use crate::aws::{AwsError, KeyDescription};
use crate::settings::{EncryptionPlan, NormalizedSettings, PreparedSettings};

pub use cache::{CacheSettings, CachedAws, Freshness};

/// Stable names of the checks, as they appear in `status.validation.checks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckName {
    /// ARN syntax of role, key and queue; region names; encryption fields.
    SpecValid,
    /// The encryption context has non-empty keys and values and fits in a request.
    EncryptionContextValid,
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
    /// `iam:GetRole` finds the job role at the ARN in the spec.
    RoleExists,
    /// The job role's trust policy lets `mediaconvert.amazonaws.com` assume it.
    RoleTrustsMediaConvert,
    /// The key policy lets the job role use the key, directly or through IAM.
    KeyPolicyAllowsRole,
    /// The job role's IAM policies allow the KMS actions S3 needs on the key.
    RoleGrantsKms,
    /// The job role's IAM policies allow `s3:PutObject` on the destinations and
    /// `s3:GetObject` on the inputs.
    RoleGrantsS3,
    /// No destination bucket policy denies writes with the job's encryption.
    BucketPolicyAllowsWrite,
    /// Groups without encryption fall back to a bucket default key the role can use.
    BucketDefaultKeyUsable,
    /// S3 inputs exist, and those encrypted with KMS can be decrypted by the job role.
    InputKeyUsable,
    /// Every principal in `spec.encryption.readers` can read and decrypt the outputs.
    ReadersCanDecrypt,
    /// The operator's identity may pass the job role to MediaConvert.
    CallerCanPassRole,
}

impl CheckName {
    /// Reports whether an undecided result blocks the job under `Enforce`: only for the
    /// checks that prove a customer managed key will work.
    fn required_when_unknown(self, customer_key: bool) -> bool {
        customer_key
            && matches!(
                self,
                CheckName::KmsKeyUsable | CheckName::KeyPolicyAllowsRole | CheckName::RoleGrantsKms
            )
    }
}

impl fmt::Display for CheckName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Result of one check, with the condition reason it maps to when it did not pass.
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

    /// A passed check; `message` is empty or adds what the user should know.
    fn passed(check: CheckName, message: String) -> Self {
        Self {
            check,
            status: CheckStatus::Passed,
            reason: ConditionReason::ChecksPassed,
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

/// A job that may be submitted: settings prepared with the encryption it will carry.
/// Only [`Checker::run`] and [`Checker::rebuild`] build one.
#[derive(Clone, Debug)]
pub struct ValidatedJob {
    pub region: String,
    pub settings: PreparedSettings,
    pub encryption: EncryptionStatus,
    /// Failed or undecided checks that `validation: Warn` let through.
    pub warnings: Vec<Finding>,
    /// Passed checks with advice worth a Warning Event, such as a role path.
    pub advisories: Vec<Finding>,
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
    aws: CachedAws,
    default_region: String,
}

/// State of one validation run, shared by its steps.
struct Run<'a> {
    aws: &'a CachedAws,
    freshness: Freshness,
    spec: &'a MediaConvertJobSpec,
    region: &'a str,
    settings: &'a NormalizedSettings,
    prepared: &'a PreparedSettings,
    /// The customer managed key, when the spec names one and it passed its check.
    key: Option<&'a KeyDescription>,
}

impl Checker {
    pub fn new(aws: CachedAws, default_region: String) -> Self {
        Self {
            aws,
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
        Ok(validated(
            spec,
            plan,
            settings,
            resolved_key_arn,
            Vec::new(),
        ))
    }

    /// Runs every check for `spec`. Transient AWS failures return `Err`, so the caller
    /// retries the whole run with backoff instead of recording a verdict.
    pub async fn run(
        &self,
        spec: &MediaConvertJobSpec,
        freshness: Freshness,
    ) -> Result<Outcome, AwsError> {
        let plan = match offline::check(spec, &self.default_region) {
            Ok(plan) => plan,
            Err(finding) => return Ok(reject(Vec::new(), finding, false)),
        };
        let mut findings = vec![
            Finding::passed(CheckName::SpecValid, String::new()),
            Finding::passed(CheckName::EncryptionContextValid, String::new()),
            Finding::passed(CheckName::SettingsShape, String::new()),
        ];
        if spec.validation == ValidationPolicy::Skip {
            return Ok(self.skip_online(spec, plan, findings));
        }

        // The key comes first: the settings carry its resolved ARN, and the grant checks
        // need its account.
        let key = match self.customer_key(spec, &plan, freshness).await? {
            Some(Ok(key)) => {
                findings.push(Finding::passed(CheckName::KmsKeyUsable, String::new()));
                Some(key)
            }
            Some(Err(finding)) => {
                findings.push(finding);
                None
            }
            None => None,
        };
        let resolved_key_arn = key
            .as_ref()
            .map(|key| key.arn.clone())
            .or_else(|| spec.encryption.kms_key_arn.clone());
        if resolved_key_arn
            .as_deref()
            .is_some_and(|arn| arn.contains(":alias/"))
        {
            return Ok(unresolved_alias(findings));
        }
        let prepared = match prepare(&plan.settings, spec, resolved_key_arn.as_deref()) {
            Ok(prepared) => prepared,
            Err(finding) => return Ok(reject(results(&findings), finding, false)),
        };
        findings.push(Finding::passed(
            CheckName::EncryptionSettings,
            String::new(),
        ));

        let run = Run {
            aws: &self.aws,
            freshness,
            spec,
            region: &plan.region,
            settings: &plan.settings,
            prepared: &prepared,
            key: key.as_ref(),
        };
        findings.extend(run.online_checks().await?);
        Ok(decide(spec, plan, prepared, resolved_key_arn, findings))
    }

    /// Describes the customer managed key named in the spec; `None` without one.
    async fn customer_key(
        &self,
        spec: &MediaConvertJobSpec,
        plan: &offline::OfflinePlan,
        freshness: Freshness,
    ) -> Result<Option<Result<KeyDescription, Finding>>, AwsError> {
        let (EncryptionType::Kms, Some(key_arn)) = (
            spec.encryption.encryption_type,
            spec.encryption.kms_key_arn.as_deref(),
        ) else {
            return Ok(None);
        };
        let region = plan.key_region.as_deref().unwrap_or(&plan.region);
        key::check(&self.aws, freshness, region, key_arn, &spec.role)
            .await
            .map(Some)
    }

    /// Prepares a job under `validation: Skip`, which makes no AWS calls. An alias ARN
    /// cannot be resolved then, and MediaConvert accepts key ARNs only.
    fn skip_online(
        &self,
        spec: &MediaConvertJobSpec,
        plan: offline::OfflinePlan,
        findings: Vec<Finding>,
    ) -> Outcome {
        let key_arn = spec.encryption.kms_key_arn.as_deref();
        if let Some(alias) = key_arn.filter(|arn| arn.contains(":alias/")) {
            let finding = Finding::failed(
                CheckName::KmsKeyUsable,
                ConditionReason::SpecInvalid,
                format!(
                    "spec.encryption.kmsKeyArn {alias} is an alias ARN, which MediaConvert does not accept, and validation: Skip forbids the kms:DescribeKey call that resolves it; name the key ARN, or use validation: Warn"
                ),
            );
            return reject(results(&findings), finding, false);
        }
        let prepared = match prepare(&plan.settings, spec, key_arn) {
            Ok(prepared) => prepared,
            Err(finding) => return reject(results(&findings), finding, false),
        };
        let job = validated(spec, plan, prepared, key_arn, Vec::new());
        Outcome {
            checks: results(&findings),
            verdict: Verdict::Submit(Box::new(job)),
        }
    }
}

impl Run<'_> {
    /// Runs the checks that need the prepared settings, in the order they are reported.
    async fn online_checks(&self) -> Result<Vec<Finding>, AwsError> {
        let mut findings = buckets::check_locations(self).await?;
        let role = role::check(self).await?;
        let role_exists = role.exists;
        findings.extend(role.findings);
        if role_exists {
            findings.extend(grants::check_kms(self).await?);
            findings.extend(grants::check_s3(self).await?);
        }
        findings.extend(buckets::check_policies(self).await?);
        if role_exists {
            findings.extend(buckets::check_default_keys(self).await?);
            findings.extend(inputs::check(self).await?);
        }
        findings.extend(readers::check(self).await?);
        findings.extend(role::check_pass_role(self).await?);
        Ok(findings)
    }
}

/// Turns the findings into a verdict under the spec's policy. The first blocking finding
/// gives the reason; the others stay visible in the check list.
fn decide(
    spec: &MediaConvertJobSpec,
    plan: offline::OfflinePlan,
    prepared: PreparedSettings,
    resolved_key_arn: Option<String>,
    findings: Vec<Finding>,
) -> Outcome {
    let customer_key = spec.encryption.encryption_type == EncryptionType::Kms
        && spec.encryption.kms_key_arn.is_some();
    let blocks = |finding: &Finding| match finding.status {
        CheckStatus::Passed => false,
        CheckStatus::Failed => true,
        CheckStatus::Unknown => finding.check.required_when_unknown(customer_key),
    };
    let checks = results(&findings);
    if spec.validation == ValidationPolicy::Enforce
        && let Some(finding) = findings.iter().find(|finding| blocks(finding))
    {
        return Outcome {
            checks,
            verdict: Verdict::Reject {
                finding: finding.clone(),
                retry: true,
            },
        };
    }
    let (advisories, rest): (Vec<Finding>, Vec<Finding>) = findings
        .into_iter()
        .partition(|finding| finding.status == CheckStatus::Passed);
    let mut job = validated(spec, plan, prepared, resolved_key_arn.as_deref(), rest);
    job.advisories = advisories
        .into_iter()
        .filter(|finding| !finding.message.is_empty())
        .collect();
    Outcome {
        checks,
        verdict: Verdict::Submit(Box::new(job)),
    }
}

/// Rejects a job whose alias ARN could not be resolved, because MediaConvert accepts key
/// ARNs only, whatever the validation policy.
fn unresolved_alias(findings: Vec<Finding>) -> Outcome {
    let key_finding = findings
        .iter()
        .find(|finding| finding.check == CheckName::KmsKeyUsable)
        .cloned();
    let mut finding = key_finding.unwrap_or_else(|| {
        Finding::unknown(CheckName::KmsKeyUsable, "the alias was not resolved".into())
    });
    finding.message.push_str(
        "; MediaConvert accepts key ARNs only, so the job waits until kms:DescribeKey resolves the alias",
    );
    reject(results(&findings), finding, true)
}

fn validated(
    spec: &MediaConvertJobSpec,
    plan: offline::OfflinePlan,
    settings: PreparedSettings,
    resolved_key_arn: Option<&str>,
    warnings: Vec<Finding>,
) -> ValidatedJob {
    let encryption = EncryptionStatus {
        encryption_type: spec.encryption.encryption_type,
        kms_key_arn: resolved_key_arn.map(str::to_string),
        key_region: plan.key_region.clone(),
        output_groups: settings.encrypted_groups.clone(),
    };
    ValidatedJob {
        region: plan.region,
        settings,
        encryption,
        warnings,
        advisories: Vec::new(),
    }
}

fn results(findings: &[Finding]) -> Vec<CheckResult> {
    findings.iter().map(Finding::to_result).collect()
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
