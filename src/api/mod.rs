//! The `MediaConvertJob` custom resource, `mediaconvert.operators.dev/v1alpha1`.
//!
//! Every doc comment on a spec or status field becomes `kubectl explain` text,
//! so it is written for the user of the resource.

mod status;

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use status::{
    CheckResult, CheckStatus, ConditionReason, ConditionType, EncryptionStatus, JobPhase,
    MediaConvertJobStatus, ValidationStatus,
};

/// API group of the resource.
pub const GROUP: &str = "mediaconvert.operators.dev";

/// A transcoding job for AWS Elemental MediaConvert whose outputs are encrypted at rest in S3.
///
/// The operator checks that the encryption will work, submits the job once, follows it to
/// the end and mirrors its state into `status`.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "mediaconvert.operators.dev",
    version = "v1alpha1",
    kind = "MediaConvertJob",
    namespaced,
    shortname = "mcj",
    shortname = "mcjob",
    category = "media",
    doc = "A MediaConvert transcoding job whose S3 outputs the operator encrypts, submits once and follows to the end.",
    status = "MediaConvertJobStatus",
    // A recorded submission token means CreateJob may have run, so the spec is frozen from
    // then on. The token is removed again when MediaConvert rejects the request.
    validation = kube::core::Rule::new(
        "!has(oldSelf.status) || !has(oldSelf.status.submissionToken) || self.spec == oldSelf.spec"
    )
    .message("spec is immutable once the job is submitted to MediaConvert; delete and re-create the resource to change the job")
    .field_path(".spec")
    .reason(kube::core::Reason::FieldValueForbidden),
    printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase"}"#,
    printcolumn = r#"{"name": "Percent", "type": "integer", "jsonPath": ".status.jobPercentComplete"}"#,
    printcolumn = r#"{"name": "Job ID", "type": "string", "jsonPath": ".status.jobId"}"#,
    printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MediaConvertJobSpec {
    /// AWS region that runs the job, such as `us-east-1`. Defaults to the operator's
    /// `--default-region`. The KMS key and every destination bucket must be in this region.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,

    /// ARN of the IAM role that MediaConvert assumes to read inputs and write outputs,
    /// such as `arn:aws:iam::111122223333:role/MediaConvertRole`.
    pub role: String,

    /// MediaConvert queue, as a name or ARN. Defaults to the account's `Default` queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,

    /// Job template, as a name or ARN. Settings given in `settings` override the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_template: Option<String>,

    /// Relative priority of the job in its queue, from -50 to 50. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = -50, max = 50))]
    pub priority: Option<i32>,

    /// Metadata that MediaConvert stores with the job and returns with its state. Keys that
    /// start with `mediaconvert.operators.dev/` are reserved for the operator.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub user_metadata: BTreeMap<String, String>,

    /// Tags put on the MediaConvert job resource.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,

    /// Server-side encryption that the operator writes into every selected S3 output group.
    pub encryption: Box<EncryptionSpec>,

    /// MediaConvert `JobSettings`, as exported from the console or written for the AWS CLI
    /// (`Inputs`, `OutputGroups`, ...), or in the REST API's camelCase spelling. The
    /// settings pass to MediaConvert unchanged, except for the `Encryption` block of each
    /// S3 destination selected by `encryption`. Put only the inner `Settings` object of a
    /// console job export here, and set role and queue in `role` and `queue`.
    #[schemars(schema_with = "settings_schema")]
    pub settings: serde_json::Value,

    /// Policy for failed pre-submission checks: `Enforce` (default)
    /// submits only when every required check passed, `Warn` submits and records the
    /// failures, `Skip` submits without running the checks that call AWS.
    #[serde(default)]
    pub validation: ValidationPolicy,

    /// Fate of a running MediaConvert job when this resource is deleted:
    /// `Cancel` (default) cancels it, `Orphan` leaves it running.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,

    /// Seconds after submission after which a job that has not finished is canceled and
    /// the resource fails with reason `DeadlineExceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,

    /// Seconds after the job finished after which the operator deletes this resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub ttl_seconds_after_finished: Option<i64>,
}

/// Server-side encryption of the job's S3 outputs.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionSpec {
    /// `KMS` encrypts with an AWS KMS key (SSE-KMS); `S3` with S3-managed keys (SSE-S3).
    #[serde(rename = "type")]
    pub encryption_type: EncryptionType,

    /// ARN of the KMS key, or of an alias, in the job's region. With `type: KMS` and no
    /// key, S3 uses the AWS managed key `aws/s3`. Must be absent with `type: S3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_arn: Option<String>,

    /// KMS encryption context, as string pairs. The operator sends it to MediaConvert as
    /// base64-encoded JSON. Only valid with `type: KMS`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub encryption_context: BTreeMap<String, String>,

    /// Names of the output groups to encrypt. Empty selects every output group that
    /// writes to S3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_groups: Vec<String>,

    /// Marks outputs that later jobs read back as inputs, so the job role must also hold
    /// `kms:Decrypt` on the key, which the checks then require.
    #[serde(default)]
    pub allow_reuse_as_input: bool,

    /// IAM principals (role or user ARNs) that must be able to read the outputs. The
    /// checks require `s3:GetObject` on the destinations and `kms:Decrypt` on the key for
    /// each of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub readers: Vec<String>,
}

/// Kind of S3 server-side encryption.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum EncryptionType {
    /// SSE-KMS: `SERVER_SIDE_ENCRYPTION_KMS` in MediaConvert.
    #[default]
    #[serde(rename = "KMS")]
    Kms,
    /// SSE-S3: `SERVER_SIDE_ENCRYPTION_S3` in MediaConvert.
    S3,
}

impl EncryptionType {
    /// Returns the `EncryptionType` value MediaConvert uses for this kind of encryption.
    pub fn mediaconvert_value(self) -> &'static str {
        match self {
            EncryptionType::Kms => "SERVER_SIDE_ENCRYPTION_KMS",
            EncryptionType::S3 => "SERVER_SIDE_ENCRYPTION_S3",
        }
    }
}

/// Effect of failed pre-submission checks on submission.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum ValidationPolicy {
    /// Submit only when every required check passed.
    #[default]
    Enforce,
    /// Submit anyway and record failed checks as warnings.
    Warn,
    /// Submit without the checks that call AWS; offline checks still run.
    Skip,
}

/// Effect of deleting the resource on its MediaConvert job.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Cancel the job if it is still queued or running.
    #[default]
    Cancel,
    /// Leave the job running.
    Orphan,
}

/// Schema of `spec.settings`: any JSON object, kept as it is by the API server.
fn settings_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "description": "MediaConvert JobSettings, passed to CreateJob as they are except for the encryption of selected S3 destinations."
    })
}

impl MediaConvertJob {
    /// Returns the status, or an empty one for a resource that has none yet.
    pub fn status_or_default(&self) -> MediaConvertJobStatus {
        self.status.clone().unwrap_or_default()
    }
}
