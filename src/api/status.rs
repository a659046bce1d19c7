//! Status of a `MediaConvertJob`: phase, job state, checks and conditions.

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Observed state of the job, written by the operator.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MediaConvertJobStatus {
    /// Generation of the spec that this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Lifecycle phase: Pending, Validating, Invalid, Submitting, Submitted, Progressing,
    /// Complete, Error or Canceled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<JobPhase>,

    /// Token sent as `ClientRequestToken` with `CreateJob`. It is recorded before the call
    /// so that a restarted operator finds the job instead of submitting it again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submission_token: Option<String>,

    /// AWS region the job was submitted in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// MediaConvert job id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,

    /// MediaConvert job ARN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_arn: Option<String>,

    /// Queue ARN the job runs on, as MediaConvert reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,

    /// When MediaConvert accepted the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,

    /// When MediaConvert started transcoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,

    /// When the job reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,

    /// Progress of the job in percent while it transcodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_percent_complete: Option<i32>,

    /// MediaConvert's current phase of the job: PROBING, TRANSCODING or UPLOADING.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_phase: Option<String>,

    /// Error code reported by MediaConvert for a failed job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,

    /// Error message reported by MediaConvert, or the reason the operator rejected the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,

    /// Files the job wrote, as `s3://` URIs reported by MediaConvert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<String>,

    /// Encryption applied to the outputs, as sent to MediaConvert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Box<EncryptionStatus>>,

    /// Results of the checks run before submission.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Box<ValidationStatus>>,

    /// Standard conditions: Validated, Submitted, Complete, Failed and Ready, plus
    /// StatusTrimmed when the status had to be shortened to fit the API server's limit.
    ///
    /// Reasons of `Validated`: ChecksPassed, ChecksSkipped, ChecksFailedWarn,
    /// SettingsInvalid, SpecInvalid, EncryptionContextInvalid, EncryptionConflict,
    /// KmsKeyNotFound, KmsKeyDisabled, KmsKeyPendingDeletion, KmsKeyPendingImport,
    /// KmsKeyUnavailable, KmsKeyNotSymmetric, AwsManagedKeyCrossAccount,
    /// KeyRegionMismatch, BucketNotFound, RoleNotFound, RoleTrustMissingMediaConvert,
    /// RoleMissingKmsGrant, KeyPolicyDeniesRole, RoleMissingS3Grant,
    /// BucketPolicyConflict, BucketKeyNotUsable, InputNotFound, InputKeyNotUsable,
    /// ReaderCannotDecrypt, CallerCannotPassRole, ValidationUnknown and AwsUnavailable.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Lifecycle phase of a `MediaConvertJob`.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum JobPhase {
    /// Seen by the operator, nothing checked yet.
    Pending,
    /// Checks are running, or are retried after a failure that IAM or KMS may fix.
    Validating,
    /// The spec cannot be submitted as it is. The `Validated` condition gives the reason.
    Invalid,
    /// The submission token is recorded and `CreateJob` is in flight.
    Submitting,
    /// MediaConvert accepted the job and it waits in its queue.
    Submitted,
    /// MediaConvert is transcoding.
    Progressing,
    /// The job finished and wrote its outputs.
    Complete,
    /// MediaConvert reported an error, or the job disappeared from MediaConvert.
    Error,
    /// The job was canceled.
    Canceled,
}

impl MediaConvertJobStatus {
    /// Region of the submitted job, or `fallback` for a status written before the region
    /// was recorded.
    pub fn region_or(&self, fallback: String) -> String {
        self.region.clone().unwrap_or(fallback)
    }
}

impl JobPhase {
    /// Reports whether no further change is expected for this spec generation.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobPhase::Complete | JobPhase::Error | JobPhase::Canceled | JobPhase::Invalid
        )
    }
}

impl fmt::Display for JobPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Encryption the operator wrote into the job's S3 output groups.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionStatus {
    /// `KMS` or `S3`.
    #[serde(rename = "type")]
    pub encryption_type: crate::api::EncryptionType,

    /// Key ARN that `kms:DescribeKey` resolved the spec's key or alias to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,

    /// Region of the KMS key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_region: Option<String>,

    /// Names of the output groups that received the encryption settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_groups: Vec<String>,
}

/// Results of the pre-submission checks.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ValidationStatus {
    /// When the checks last ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Time>,

    /// One entry per check, in the order they ran.
    #[serde(default)]
    pub checks: Vec<CheckResult>,
}

/// Outcome of one named check.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// Stable name of the check, such as `KmsKeyUsable`.
    pub name: String,

    /// Passed, Failed or Unknown.
    pub status: CheckStatus,

    /// Problem and fix. Empty when the check passed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// Outcome of a check.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum CheckStatus {
    /// The check ran and found no problem.
    Passed,
    /// The check found a problem that blocks the job under `Enforce`.
    Failed,
    /// The check could not decide, for example because the operator lacks a permission.
    Unknown,
}

/// Condition types set on a `MediaConvertJob`. The variant name is the condition `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    /// True when every required check passed for the current spec.
    Validated,
    /// True once MediaConvert accepted the job.
    Submitted,
    /// True once the job completed.
    Complete,
    /// True when the job is Invalid, Error or Canceled, or missed its deadline.
    Failed,
    /// True only when the job completed, as GitOps health checks expect.
    Ready,
    /// True when the API server refused the full status as too large, so the operator
    /// wrote one without outputs, checks and long messages.
    StatusTrimmed,
}

impl fmt::Display for ConditionType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Machine-readable reasons on conditions and Events. The variant name is the `reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionReason {
    /// Every required check passed.
    ChecksPassed,
    /// Checks were skipped by `validation: Skip`.
    ChecksSkipped,
    /// Some checks failed but `validation: Warn` lets the job run.
    ChecksFailedWarn,
    /// `spec.settings` has the wrong shape, such as a whole job export.
    SettingsInvalid,
    /// A spec field such as an ARN or region is malformed or inconsistent.
    SpecInvalid,
    /// The settings already carry encryption that differs from `spec.encryption`.
    EncryptionConflict,
    /// The KMS key does not exist.
    KmsKeyNotFound,
    /// The KMS key is disabled.
    KmsKeyDisabled,
    /// The KMS key is scheduled for deletion.
    KmsKeyPendingDeletion,
    /// The KMS key waits for imported key material.
    KmsKeyPendingImport,
    /// The KMS key's custom key store is unavailable.
    KmsKeyUnavailable,
    /// The KMS key is not a symmetric encryption key.
    KmsKeyNotSymmetric,
    /// The KMS key is an AWS managed key of another account than the job role's.
    AwsManagedKeyCrossAccount,
    /// The KMS key is in another region than the job or a destination bucket.
    KeyRegionMismatch,
    /// A destination bucket does not exist.
    BucketNotFound,
    /// `spec.encryption.encryptionContext` has an empty key or value, a reserved key, or
    /// is too long.
    EncryptionContextInvalid,
    /// The job role does not exist.
    RoleNotFound,
    /// The job role's trust policy does not let `mediaconvert.amazonaws.com` assume it.
    RoleTrustMissingMediaConvert,
    /// The job role's IAM policies do not allow, or deny, a KMS action on the key.
    RoleMissingKmsGrant,
    /// The key policy denies the job role, or neither names it nor delegates to its
    /// account.
    KeyPolicyDeniesRole,
    /// The job role may not write a destination or read an input in S3.
    RoleMissingS3Grant,
    /// A destination bucket's policy denies writes with the encryption the job requests.
    BucketPolicyConflict,
    /// A destination bucket encrypts by default with a KMS key that the job role cannot
    /// use, and an output group falls back to that default.
    BucketKeyNotUsable,
    /// An S3 input object does not exist.
    InputNotFound,
    /// An S3 input object is encrypted with a KMS key that the job role cannot decrypt with.
    InputKeyNotUsable,
    /// A principal in `spec.encryption.readers` cannot read or decrypt the outputs.
    ReaderCannotDecrypt,
    /// The operator's own identity may not pass the job role to MediaConvert
    /// (`iam:PassRole`).
    CallerCannotPassRole,
    /// Advice only: the job role's ARN has a path, which MediaConvert has been reported
    /// to reject.
    RoleHasPath,
    /// A check could not be decided.
    ValidationUnknown,
    /// An AWS call of the checks failed in a way that is retried (throttling, 5xx, network).
    AwsUnavailable,
    /// The submission token is recorded and `CreateJob` is being called.
    Submitting,
    /// MediaConvert accepted the job.
    JobSubmitted,
    /// The resource follows an existing job named by its adoption annotation.
    JobAdopted,
    /// The adoption annotation names a job that MediaConvert does not know.
    AdoptedJobNotFound,
    /// MediaConvert rejected `CreateJob` as a bad request.
    CreateJobRejected,
    /// MediaConvert denied `CreateJob`, for example because the operator may not pass the
    /// job role (`iam:PassRole`).
    CreateJobDenied,
    /// The job is waiting in its queue.
    JobQueued,
    /// The job is transcoding.
    JobProgressing,
    /// The job completed.
    JobComplete,
    /// MediaConvert reported an error.
    JobError,
    /// The job was canceled.
    JobCanceled,
    /// MediaConvert has no job with the recorded id, for example after its retention ended.
    JobNotFound,
    /// The job has not finished yet.
    JobNotFinished,
    /// The job ran longer than `activeDeadlineSeconds` and was canceled.
    DeadlineExceeded,
    /// The API server refused the full status because the object would exceed its size
    /// limit.
    StatusTooLarge,
}

impl fmt::Display for ConditionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}
