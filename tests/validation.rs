//! Pre-submission checks against IAM, KMS and S3 state in the emulator. Each mistake ends
//! the resource with its own reason and no job under `Enforce`. A fix in AWS lets the job
//! through on the next retry without a spec edit.

mod support;

use aws_sdk_kms::types::{KeySpec, KeyUsageType};
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use mediaconvert_operator::api::{CheckStatus, MediaConvertJob};
use serde_json::{Value, json};
use support::*;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

/// A job role, key and buckets of one test, named after its namespace so tests running
/// side by side do not share AWS state.
struct Kit {
    setup: Setup,
    aws: aws_fixtures::Aws,
    role_name: String,
    role_arn: String,
}

fn mediaconvert_trust() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "mediaconvert.amazonaws.com"},
        "Action": "sts:AssumeRole"
    }]})
}

/// Builds a role policy with S3 reads and writes, plus `kms_actions` on every key if any.
fn role_policy(kms_actions: &[&str]) -> Value {
    let mut statements = vec![json!(
        {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*/*"}
    )];
    if !kms_actions.is_empty() {
        statements.push(json!({"Effect": "Allow", "Action": kms_actions, "Resource": "*"}));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

const ALL_KMS: [&str; 3] = ["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"];

/// Builds a key policy with only the account-root statement, which delegates to IAM.
fn root_key_policy() -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "Enable IAM User Permissions", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")},
        "Action": "kms:*", "Resource": "*"
    }]})
}

impl Kit {
    async fn new(prefix: &str) -> Self {
        Self::with_role(prefix, "/", &mediaconvert_trust(), &role_policy(&ALL_KMS)).await
    }

    async fn with_role(prefix: &str, path: &str, trust: &Value, policy: &Value) -> Self {
        Self::with_operator_args(prefix, path, trust, policy, &[]).await
    }

    async fn with_operator_args(
        prefix: &str,
        path: &str,
        trust: &Value,
        policy: &Value,
        args: &[&str],
    ) -> Self {
        let mut setup = setup(prefix, timeline(300, complete())).await;
        if !args.is_empty() {
            setup.operator.kill();
            setup.operator = Operator::start_with(&setup.namespace.name, args);
        }
        let aws = setup.env.aws().await;
        let role_name = setup.namespace.name.clone();
        let role_arn = aws
            .create_role(&role_name, path, trust, policy)
            .await
            .expect("failed to create the job role");
        Self {
            setup,
            aws,
            role_name,
            role_arn,
        }
    }

    async fn key(&self) -> String {
        self.aws
            .create_key_with_policy(REGION, &root_key_policy())
            .await
            .expect("failed to create key")
    }

    /// Creates a bucket of this test only, in us-east-1.
    async fn bucket(&self, suffix: &str) -> String {
        let name = format!("{}-{suffix}", self.setup.namespace.name);
        self.aws
            .ensure_bucket(&name, REGION)
            .await
            .expect("failed to create bucket");
        name
    }

    fn api(&self) -> Api<MediaConvertJob> {
        self.setup.namespace.jobs()
    }

    fn job(
        &self,
        name: &str,
        extra_spec: &str,
        encryption: &str,
        settings: &str,
    ) -> MediaConvertJob {
        manifest(&format!(
            "apiVersion: mediaconvert.operators.dev/v1alpha1
kind: MediaConvertJob
metadata: {{name: {name}}}
spec:
  role: {role}
{extra_spec}
  encryption: {encryption}
  settings:
{settings}",
            role = self.role_arn
        ))
    }

    async fn submit(&self, name: &str, encryption: &str) {
        let job = self.job(name, "", encryption, BASE_SETTINGS);
        create(&self.api(), &job).await;
    }

    /// Waits for `name` to end Invalid with `reason` on `check`, with no job submitted.
    async fn expect_rejected(&self, name: &str, check: &str, reason: &str) -> String {
        let (job, result) = invalid_check(&self.api(), name, check).await;
        let validated = condition(&job, "Validated");
        assert_eq!(validated.status, "False");
        assert_eq!(validated.reason, reason, "{}", validated.message);
        assert_eq!(result.status, CheckStatus::Failed, "{}", result.message);
        let jobs = self.setup.submitted_jobs().await;
        assert!(jobs.is_empty(), "jobs were submitted: {jobs:?}");
        result.message
    }

    async fn expect_complete_once(&self, name: &str) -> MediaConvertJob {
        let job = wait_for(&self.api(), name, "Complete", phase_is("Complete")).await;
        let jobs = self.setup.submitted_jobs().await;
        assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
        job
    }

    /// Waits for a Warning Event with `reason` in the test's namespace. Events are
    /// written after the status, so they may lag behind the phase.
    async fn expect_warning(&self, reason: &str) {
        let events: Api<Event> =
            Api::namespaced(self.setup.env.client.clone(), &self.setup.namespace.name);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let listed = events.list(&Default::default()).await.expect("list events");
            let seen: Vec<(String, String)> = listed
                .items
                .into_iter()
                .map(|event| {
                    let kind = event.type_.unwrap_or_default();
                    (event.reason.unwrap_or_default(), kind)
                })
                .collect();
            if seen.contains(&(reason.to_string(), "Warning".to_string())) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no Warning event {reason} among {seen:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
}

fn kms(key: &str) -> String {
    format!("{{type: KMS, kmsKeyArn: '{key}'}}")
}

fn check_status(job: &MediaConvertJob, name: &str) -> Option<CheckStatus> {
    let validation = job.status.as_ref()?.validation.as_ref()?;
    let check = validation.checks.iter().find(|check| check.name == name)?;
    Some(check.status)
}

#[tokio::test]
async fn usable_key_and_role_pass_every_check() {
    let kit = Kit::new("checks-pass").await;
    let key = kit.key().await;
    kit.submit("fine", &kms(&key)).await;

    let job = kit.expect_complete_once("fine").await;
    for check in [
        "KmsKeyUsable",
        "DestinationBucketExists",
        "KeyRegionMatchesBucket",
        "RoleExists",
        "RoleTrustsMediaConvert",
        "KeyPolicyAllowsRole",
        "RoleGrantsKms",
        "RoleGrantsS3",
        "BucketPolicyAllowsWrite",
        "InputKeyUsable",
        "CallerCanPassRole",
    ] {
        assert_eq!(
            check_status(&job, check),
            Some(CheckStatus::Passed),
            "{check} in {:?}",
            job.status.as_ref().unwrap().validation
        );
    }
}

#[tokio::test]
async fn missing_data_key_grant_fixed_in_iam() {
    let policy = role_policy(&["kms:Encrypt"]);
    let kit = Kit::with_role("no-datakey", "/", &mediaconvert_trust(), &policy).await;
    let key = kit.key().await;
    kit.submit("no-datakey", &kms(&key)).await;

    let message = kit
        .expect_rejected("no-datakey", "RoleGrantsKms", "RoleMissingKmsGrant")
        .await;
    assert!(message.contains(&kit.role_arn), "{message}");
    assert!(message.contains("kms:GenerateDataKey"), "{message}");
    assert!(message.contains(&key), "{message}");
    assert!(message.contains("role policy"), "{message}");
    kit.expect_warning("RoleMissingKmsGrant").await;

    // The fix happens in IAM only; the next retry passes and submits once.
    kit.aws
        .put_role_policy(&kit.role_name, &role_policy(&ALL_KMS))
        .await
        .unwrap();
    kit.expect_complete_once("no-datakey").await;
}

#[tokio::test]
async fn missing_grant_under_warn_submits_once() {
    let policy = role_policy(&["kms:Encrypt"]);
    let kit = Kit::with_role("warn-datakey", "/", &mediaconvert_trust(), &policy).await;
    let key = kit.key().await;
    let job = kit.job("warned", "  validation: Warn", &kms(&key), BASE_SETTINGS);
    create(&kit.api(), &job).await;

    let done = kit.expect_complete_once("warned").await;
    assert_eq!(
        check_status(&done, "RoleGrantsKms"),
        Some(CheckStatus::Failed)
    );
    assert_eq!(condition(&done, "Validated").reason, "ChecksFailedWarn");
    kit.expect_warning("RoleMissingKmsGrant").await;
}

#[tokio::test]
async fn explicit_deny_in_role_policy_named() {
    let mut policy = role_policy(&ALL_KMS);
    policy["Statement"]
        .as_array_mut()
        .unwrap()
        .push(json!({"Effect": "Deny", "Action": "kms:GenerateDataKey*", "Resource": "*"}));
    let kit = Kit::with_role("role-deny", "/", &mediaconvert_trust(), &policy).await;
    let key = kit.key().await;
    kit.submit("denied", &kms(&key)).await;

    let message = kit
        .expect_rejected("denied", "RoleGrantsKms", "RoleMissingKmsGrant")
        .await;
    assert!(message.contains("explicitly denies"), "{message}");
    assert!(message.contains("kms:GenerateDataKey"), "{message}");
}

#[tokio::test]
async fn key_policy_without_role_or_root_rejected() {
    let kit = Kit::new("key-policy").await;
    let admin_only = json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "AdminsOnly", "Effect": "Allow",
        "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/KeyAdmin")},
        "Action": "kms:*", "Resource": "*"
    }]});
    let key = kit
        .aws
        .create_key_with_policy(REGION, &admin_only)
        .await
        .unwrap();
    kit.submit("locked", &kms(&key)).await;

    let message = kit
        .expect_rejected("locked", "KeyPolicyAllowsRole", "KeyPolicyDeniesRole")
        .await;
    assert!(message.contains(&key), "{message}");
    assert!(message.contains("root"), "{message}");
}

#[tokio::test]
async fn key_policy_naming_role_needs_no_iam_grant() {
    // The role policy has no KMS statement, but the key policy names the role itself.
    let policy = role_policy(&[]);
    let kit = Kit::with_role("key-grant", "/", &mediaconvert_trust(), &policy).await;
    let direct = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:root")}, "Action": "kms:Describe*", "Resource": "*"},
        {"Sid": "JobRole", "Effect": "Allow", "Principal": {"AWS": kit.role_arn.clone()},
         "Action": ["kms:Encrypt", "kms:GenerateDataKey*"], "Resource": "*"}
    ]});
    let key = kit
        .aws
        .create_key_with_policy(REGION, &direct)
        .await
        .unwrap();
    kit.submit("direct", &kms(&key)).await;

    let job = kit.expect_complete_once("direct").await;
    assert_eq!(
        check_status(&job, "RoleGrantsKms"),
        Some(CheckStatus::Passed)
    );
}

#[tokio::test]
async fn trust_without_mediaconvert_rejected() {
    let trust = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"
    }]});
    let kit = Kit::with_role("trust", "/", &trust, &role_policy(&ALL_KMS)).await;
    kit.submit("untrusted", "{type: S3}").await;

    let message = kit
        .expect_rejected(
            "untrusted",
            "RoleTrustsMediaConvert",
            "RoleTrustMissingMediaConvert",
        )
        .await;
    assert!(message.contains("mediaconvert.amazonaws.com"), "{message}");
    assert!(message.contains(&kit.role_arn), "{message}");
}

#[tokio::test]
async fn missing_role_rejected() {
    let kit = Kit::new("no-role").await;
    let ghost = format!("arn:aws:iam::{ACCOUNT}:role/{}-ghost", kit.role_name);
    let job = manifest(&format!(
        "apiVersion: mediaconvert.operators.dev/v1alpha1
kind: MediaConvertJob
metadata: {{name: ghost}}
spec:
  role: {ghost}
  encryption: {{type: S3}}
  settings:
{BASE_SETTINGS}"
    ));
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("ghost", "RoleExists", "RoleNotFound")
        .await;
    assert!(message.contains(&ghost), "{message}");
}

#[tokio::test]
async fn role_without_s3_write_rejected() {
    let policy = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"}
    ]});
    let kit = Kit::with_role("no-put", "/", &mediaconvert_trust(), &policy).await;
    kit.submit("read-only", "{type: S3}").await;

    let message = kit
        .expect_rejected("read-only", "RoleGrantsS3", "RoleMissingS3Grant")
        .await;
    assert!(message.contains("s3:PutObject"), "{message}");
    assert!(message.contains("example-media-out"), "{message}");
}

#[tokio::test]
async fn role_path_warns_but_submits() {
    let kit = Kit::with_role(
        "role-path",
        "/media/transcode/",
        &mediaconvert_trust(),
        &role_policy(&ALL_KMS),
    )
    .await;
    assert!(
        kit.role_arn.contains("/media/transcode/"),
        "{}",
        kit.role_arn
    );
    kit.submit("pathed", "{type: S3}").await;

    kit.expect_complete_once("pathed").await;
    kit.expect_warning("RoleHasPath").await;
}

/// Settings with a selected file group and an unselected thumbnail group writing to
/// `thumbs`.
fn two_group_settings(thumbs: &str) -> String {
    format!(
        r#"    Inputs:
      - FileInput: s3://example-media-in/trailer.mp4
    OutputGroups:
      - Name: File Group
        OutputGroupSettings:
          Type: FILE_GROUP_SETTINGS
          FileGroupSettings: {{Destination: "s3://example-media-out/trailer/"}}
        Outputs:
          - ContainerSettings: {{Container: MP4}}
      - Name: Thumbnails
        OutputGroupSettings:
          Type: FILE_GROUP_SETTINGS
          FileGroupSettings: {{Destination: "s3://{thumbs}/trailer/"}}
        Outputs:
          - ContainerSettings: {{Container: RAW}}"#
    )
}

#[tokio::test]
async fn bucket_default_key_role_cannot_use() {
    let policy = role_policy(&[]);
    let kit = Kit::with_role("bucket-key", "/", &mediaconvert_trust(), &policy).await;
    let thumbs = kit.bucket("thumbs").await;
    let key = kit.key().await;
    kit.aws
        .put_bucket_encryption(REGION, &thumbs, Some(&key))
        .await
        .unwrap();
    let encryption = "{type: S3, outputGroups: [File Group]}";
    let job = kit.job("thumbs", "", encryption, &two_group_settings(&thumbs));
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("thumbs", "BucketDefaultKeyUsable", "BucketKeyNotUsable")
        .await;
    assert!(message.contains("Thumbnails"), "{message}");
    assert!(!message.contains("File Group"), "{message}");
    assert!(message.contains(&key), "{message}");
    assert!(message.contains("kms:GenerateDataKey"), "{message}");

    // With SSE-S3 as the default, the unselected group needs no key.
    kit.aws
        .put_bucket_encryption(REGION, &thumbs, None)
        .await
        .unwrap();
    kit.expect_complete_once("thumbs").await;
}

fn require_encryption_policy(bucket: &str, condition: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "RequireEncryption", "Effect": "Deny", "Principal": "*",
        "Action": "s3:PutObject", "Resource": format!("arn:aws:s3:::{bucket}/*"),
        "Condition": condition
    }]})
}

fn one_group_settings(bucket: &str) -> String {
    format!(
        r#"    OutputGroups:
      - Name: File Group
        OutputGroupSettings:
          Type: FILE_GROUP_SETTINGS
          FileGroupSettings: {{Destination: "s3://{bucket}/trailer/"}}
        Outputs:
          - ContainerSettings: {{Container: MP4}}"#
    )
}

#[tokio::test]
async fn bucket_policy_demanding_kms_rejects_sse_s3() {
    let kit = Kit::new("bucket-policy").await;
    let bucket = kit.bucket("out").await;
    let condition = json!({"StringNotEquals": {"s3:x-amz-server-side-encryption": "aws:kms"}});
    kit.aws
        .put_bucket_policy(
            REGION,
            &bucket,
            &require_encryption_policy(&bucket, condition),
        )
        .await
        .unwrap();
    let job = kit.job("sse-s3", "", "{type: S3}", &one_group_settings(&bucket));
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("sse-s3", "BucketPolicyAllowsWrite", "BucketPolicyConflict")
        .await;
    assert!(message.contains(&bucket), "{message}");
    assert!(message.contains("aws:kms"), "{message}");
    assert!(message.contains("AES256"), "{message}");
}

#[tokio::test]
async fn bucket_policy_demanding_other_key_named() {
    let kit = Kit::new("bucket-key-id").await;
    let bucket = kit.bucket("out").await;
    let key = kit.key().await;
    let required = kit.key().await;
    let condition =
        json!({"StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": required}});
    kit.aws
        .put_bucket_policy(
            REGION,
            &bucket,
            &require_encryption_policy(&bucket, condition),
        )
        .await
        .unwrap();
    let job = kit.job("other-key", "", &kms(&key), &one_group_settings(&bucket));
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected(
            "other-key",
            "BucketPolicyAllowsWrite",
            "BucketPolicyConflict",
        )
        .await;
    assert!(message.contains(&required), "{message}");
}

#[tokio::test]
async fn input_key_role_cannot_decrypt() {
    let kit = Kit::new("input-key").await;
    let inputs = kit.bucket("in").await;
    // The input's key admits only a key administrator, not the job role.
    let locked = json!({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"AWS": format!("arn:aws:iam::{ACCOUNT}:role/KeyAdmin")},
        "Action": "kms:*", "Resource": "*"
    }]});
    let input_key = kit
        .aws
        .create_key_with_policy(REGION, &locked)
        .await
        .unwrap();
    kit.aws
        .put_encrypted_object(REGION, &inputs, "source.mp4", &input_key)
        .await
        .unwrap();
    let settings = BASE_SETTINGS.replace(
        "s3://example-media-in/trailer.mp4",
        &format!("s3://{inputs}/source.mp4"),
    );
    let job = kit.job("sealed-input", "", "{type: S3}", &settings);
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("sealed-input", "InputKeyUsable", "InputKeyNotUsable")
        .await;
    assert!(message.contains("source.mp4"), "{message}");
    assert!(message.contains("kms:Decrypt"), "{message}");
}

#[tokio::test]
async fn missing_input_rejected_until_uploaded() {
    let kit = Kit::new("no-input").await;
    let inputs = kit.bucket("in").await;
    let settings = BASE_SETTINGS.replace(
        "s3://example-media-in/trailer.mp4",
        &format!("s3://{inputs}/late.mp4"),
    );
    let job = kit.job("late", "", "{type: S3}", &settings);
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("late", "InputKeyUsable", "InputNotFound")
        .await;
    assert!(message.contains("late.mp4"), "{message}");
    kit.aws
        .put_object(&inputs, "late.mp4", REGION)
        .await
        .unwrap();
    kit.expect_complete_once("late").await;
}

#[tokio::test]
async fn reader_without_decrypt_rejected() {
    let kit = Kit::new("reader").await;
    let reader_name = format!("{}-reader", kit.role_name);
    let read_only_s3 = json!({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::*/*"}
    ]});
    let reader = kit
        .aws
        .create_role(&reader_name, "/", &mediaconvert_trust(), &read_only_s3)
        .await
        .unwrap();
    let key = kit.key().await;
    let encryption = format!("{{type: KMS, kmsKeyArn: '{key}', readers: ['{reader}']}}");
    kit.submit("unreadable", &encryption).await;

    let message = kit
        .expect_rejected("unreadable", "ReadersCanDecrypt", "ReaderCannotDecrypt")
        .await;
    assert!(message.contains(&reader), "{message}");
    assert!(message.contains("kms:Decrypt"), "{message}");

    kit.aws
        .put_role_policy(&reader_name, &role_policy(&["kms:Decrypt"]))
        .await
        .unwrap();
    kit.expect_complete_once("unreadable").await;
}

#[tokio::test]
async fn reuse_as_input_requires_decrypt() {
    let policy = role_policy(&["kms:Encrypt", "kms:GenerateDataKey"]);
    let kit = Kit::with_role("reuse", "/", &mediaconvert_trust(), &policy).await;
    let key = kit.key().await;
    let encryption = format!("{{type: KMS, kmsKeyArn: '{key}', allowReuseAsInput: true}}");
    kit.submit("reused", &encryption).await;

    let message = kit
        .expect_rejected("reused", "RoleGrantsKms", "RoleMissingKmsGrant")
        .await;
    assert!(message.contains("kms:Decrypt"), "{message}");
    assert!(!message.contains("kms:GenerateDataKey"), "{message}");
}

#[tokio::test]
async fn key_pending_deletion_recovers_once_restored() {
    let kit = Kit::new("pending-deletion").await;
    let key = kit.key().await;
    kit.aws.schedule_key_deletion(REGION, &key).await.unwrap();
    kit.submit("doomed", &kms(&key)).await;

    let message = kit
        .expect_rejected("doomed", "KmsKeyUsable", "KmsKeyPendingDeletion")
        .await;
    assert!(message.contains("will be deleted at"), "{message}");
    assert!(message.contains("CancelKeyDeletion"), "{message}");

    kit.aws.cancel_key_deletion(REGION, &key).await.unwrap();
    kit.aws.enable_key(REGION, &key).await.unwrap();
    kit.expect_complete_once("doomed").await;
}

#[tokio::test]
async fn keys_not_for_encryption_rejected() {
    let kit = Kit::new("key-specs").await;
    let cases = [
        (KeySpec::Rsa4096, KeyUsageType::EncryptDecrypt, "RSA_4096"),
        (
            KeySpec::Hmac256,
            KeyUsageType::GenerateVerifyMac,
            "GENERATE_VERIFY_MAC",
        ),
        (
            KeySpec::EccNistP256,
            KeyUsageType::SignVerify,
            "SIGN_VERIFY",
        ),
    ];
    for (index, (spec, usage, shown)) in cases.into_iter().enumerate() {
        let key = kit.aws.create_key(REGION, spec, usage).await.unwrap();
        let name = format!("asymmetric-{index}");
        kit.submit(&name, &kms(&key)).await;
        let message = kit
            .expect_rejected(&name, "KmsKeyUsable", "KmsKeyNotSymmetric")
            .await;
        assert!(message.contains(shown), "{message}");
        assert!(message.contains("SYMMETRIC_DEFAULT"), "{message}");
    }
}

#[tokio::test]
async fn group_bucket_in_other_region_named() {
    let kit = Kit::new("bucket-region").await;
    let west = format!("{}-west", kit.setup.namespace.name);
    kit.aws.ensure_bucket(&west, "us-west-2").await.unwrap();
    let key = kit.key().await;
    let settings = two_group_settings(&west);
    let job = kit.job("split", "", &kms(&key), &settings);
    create(&kit.api(), &job).await;

    let message = kit
        .expect_rejected("split", "KeyRegionMatchesBucket", "KeyRegionMismatch")
        .await;
    assert!(message.contains(&west), "{message}");
    assert!(message.contains("Thumbnails"), "{message}");
    assert!(message.contains("us-west-2"), "{message}");
    assert!(!message.contains("example-media-out"), "{message}");
}

#[tokio::test]
async fn key_result_expires_with_cache() {
    let kit = Kit::with_operator_args(
        "cache-ttl",
        "/",
        &mediaconvert_trust(),
        &role_policy(&ALL_KMS),
        &["--validation-cache-seconds", "2"],
    )
    .await;
    let key = kit.key().await;
    kit.submit("first", &kms(&key)).await;
    kit.expect_complete_once("first").await;

    kit.aws.disable_key(REGION, &key).await.unwrap();
    // Waiting out the cache's time to live is the behaviour under test.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    kit.submit("second", &kms(&key)).await;
    let (job, _) = invalid_check(&kit.api(), "second", "KmsKeyUsable").await;
    assert_eq!(condition(&job, "Validated").reason, "KmsKeyDisabled");
}

#[tokio::test]
async fn encryption_context_checked_and_encoded() {
    let kit = Kit::new("context").await;
    let key = kit.key().await;
    let empty_value = format!(
        "{{type: KMS, kmsKeyArn: '{key}', encryptionContext: {{project: trailer, team: ''}}}}"
    );
    kit.submit("empty-value", &empty_value).await;
    let (job, check) = invalid_check(&kit.api(), "empty-value", "EncryptionContextValid").await;
    assert_eq!(
        condition(&job, "Validated").reason,
        "EncryptionContextInvalid"
    );
    assert!(check.message.contains("\"team\""), "{}", check.message);

    let s3_with_context = "{type: S3, encryptionContext: {project: trailer}}";
    kit.submit("s3-context", s3_with_context).await;
    let (job, _) = invalid_check(&kit.api(), "s3-context", "SpecValid").await;
    assert!(
        condition(&job, "Validated")
            .message
            .contains("encryptionContext")
    );

    let accented = format!("{{type: KMS, kmsKeyArn: '{key}', encryptionContext: {{title: Café}}}}");
    kit.submit("accented", &accented).await;
    wait_for(&kit.api(), "accented", "Complete", phase_is("Complete")).await;
    let jobs = kit.setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let sent = sent_encryption(&jobs[0], 0).expect("no encryption sent");
    let encoded = sent["kmsEncryptionContext"].as_str().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), r#"{"title":"Café"}"#);
}

#[tokio::test]
async fn denied_pass_role_retried_until_granted() {
    let kit = Kit::new("pass-role").await;
    let message = format!(
        "User: arn:aws:sts::{ACCOUNT}:assumed-role/mediaconvert-operator/session is not authorized to perform: iam:PassRole on resource: {}",
        kit.role_arn
    );
    let rule = json!({"operation": "mediaconvert:CreateJob", "status": 403,
        "errorType": "AccessDeniedException", "message": message, "times": 2});
    kit.setup
        .env
        .proxy()
        .fault_namespace(&kit.setup.namespace.name, rule)
        .await;
    kit.submit("pass", "{type: S3}").await;

    let denied = wait_for(&kit.api(), "pass", "CreateJobDenied", |job| {
        job.status.as_ref().is_some_and(|status| {
            status
                .conditions
                .iter()
                .any(|condition| condition.reason == "CreateJobDenied")
        })
    })
    .await;
    let submitted = condition(&denied, "Submitted");
    assert!(
        submitted.message.contains("iam:PassRole"),
        "{}",
        submitted.message
    );
    kit.expect_complete_once("pass").await;
}

#[tokio::test]
async fn key_disabled_after_submission_ends_error() {
    let message = "Unable to write to output file: KMS key is disabled (KMS.DisabledException)";
    let error = json!({"status": "ERROR", "errorCode": 1401, "errorMessage": message});
    let setup = setup("key-disabled-late", timeline(1500, error)).await;
    let aws = setup.env.aws().await;
    let key = aws
        .create_key_with_policy(REGION, &root_key_policy())
        .await
        .unwrap();
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("late", &kms(&key), BASE_SETTINGS)).await;

    wait_for(&api, "late", "Submitted", |job| {
        job.status
            .as_ref()
            .is_some_and(|status| status.job_id.is_some())
    })
    .await;
    aws.disable_key(REGION, &key).await.unwrap();
    let failed = wait_for(&api, "late", "Error", phase_is("Error")).await;
    let status = failed.status.clone().unwrap();
    assert_eq!(status.error_code, Some(1401));
    assert_eq!(status.error_message.as_deref(), Some(message));
    assert_eq!(condition(&failed, "Failed").reason, "JobError");

    // A failed job is final: the operator does not submit it again on its own.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "expected exactly one job, got {jobs:?}");
}

#[tokio::test]
async fn denied_checks_unknown_naming_permission() {
    let kit = Kit::new("operator-denied").await;
    let key = kit.key().await;
    let proxy = kit.setup.env.proxy();
    for operation in ["iam:SimulatePrincipalPolicy", "s3:GetBucketPolicy"] {
        let rule = json!({"operation": operation, "status": 403, "errorType": "AccessDenied",
            "message": format!("not authorized to perform {operation}")});
        proxy.fault_operator(&kit.setup.namespace.name, rule).await;
    }

    // Without the simulation the customer key cannot be proven usable, so Enforce blocks.
    kit.submit("unproven", &kms(&key)).await;
    let (job, check) = invalid_check(&kit.api(), "unproven", "RoleGrantsKms").await;
    assert_eq!(check.status, CheckStatus::Unknown);
    assert!(
        check.message.contains("iam:SimulatePrincipalPolicy"),
        "{}",
        check.message
    );
    assert_eq!(condition(&job, "Validated").reason, "ValidationUnknown");
    let policy = check_status(&job, "BucketPolicyAllowsWrite");
    assert_eq!(policy, Some(CheckStatus::Unknown));
    assert!(kit.setup.submitted_jobs().await.is_empty());

    // With S3-managed keys nothing depends on the key, so the job runs and the undecided
    // checks stay visible.
    kit.submit("managed", "{type: S3}").await;
    let done = kit.expect_complete_once("managed").await;
    assert_eq!(
        check_status(&done, "RoleGrantsS3"),
        Some(CheckStatus::Unknown)
    );
    assert_eq!(
        check_status(&done, "BucketPolicyAllowsWrite"),
        Some(CheckStatus::Unknown)
    );
}
