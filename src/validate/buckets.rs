//! Destination bucket checks: existence and region, bucket policy, default encryption.

use std::collections::BTreeSet;

use super::access::{self, RoleKeyUse};
use super::grants::destination_arn;
use super::{CheckName, Finding, Run, arn};
use crate::api::ConditionReason;
use crate::aws::{AwsError, ErrorClass};
use crate::policy::{Decision, Document, Principal, Request, RequestContext};
use crate::settings::{Destination, WriteEncryption};

const SSE_HEADER: &str = "s3:x-amz-server-side-encryption";
const SSE_KEY_HEADER: &str = "s3:x-amz-server-side-encryption-aws-kms-key-id";

/// Checks that each destination bucket exists and sits in the key's region.
pub async fn check_locations(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let mut findings = Vec::new();
    for destination in distinct_buckets(run.settings.destinations()) {
        match run.aws.bucket_region(run.freshness, &destination.bucket).await {
            Ok(Some(region)) => findings.extend(region_finding(run, destination, &region)),
            Ok(None) => findings.push(Finding::failed(
                CheckName::DestinationBucketExists,
                ConditionReason::BucketNotFound,
                format!(
                    "bucket {} from output group {:?} (destination {}) does not exist; create it or correct the destination",
                    destination.bucket, destination.group, destination.uri
                ),
            )),
            Err(error) => findings.push(location_error(destination, error)?),
        }
    }
    let mut checks = vec![CheckName::DestinationBucketExists];
    if run.key.is_some() {
        checks.push(CheckName::KeyRegionMatchesBucket);
    }
    for check in checks {
        if !findings.iter().any(|finding| finding.check == check) {
            findings.push(Finding::passed(check, String::new()));
        }
    }
    Ok(findings)
}

fn distinct_buckets(destinations: &[Destination]) -> Vec<&Destination> {
    let mut seen = BTreeSet::new();
    destinations
        .iter()
        .filter(|destination| seen.insert(destination.bucket.clone()))
        .collect()
}

fn location_error(destination: &Destination, error: AwsError) -> Result<Finding, AwsError> {
    match error.class {
        ErrorClass::Invalid => Ok(Finding::failed(
            CheckName::DestinationBucketExists,
            ConditionReason::BucketNotFound,
            format!(
                "S3 rejected bucket {} from output group {:?} (destination {}): {}; correct the destination",
                destination.bucket, destination.group, destination.uri, error.message
            ),
        )),
        ErrorClass::AccessDenied => Ok(Finding::unknown(
            CheckName::DestinationBucketExists,
            format!(
                "the operator may not call s3:GetBucketLocation on bucket {}; grant it to the operator's role ({})",
                destination.bucket, error.message
            ),
        )),
        _ => Err(error),
    }
}

fn region_finding(
    run: &Run<'_>,
    destination: &Destination,
    bucket_region: &str,
) -> Option<Finding> {
    let key = run.key?;
    let key_region = arn::parse_key(&key.arn).ok()?.region;
    (key_region != bucket_region).then(|| {
        Finding::failed(
            CheckName::KeyRegionMatchesBucket,
            ConditionReason::KeyRegionMismatch,
            format!(
                "KMS key {} is in region {key_region}, but bucket {} of output group {:?} is in {bucket_region}; S3 needs the key in the bucket's region, so use a key (or a multi-Region replica) in {bucket_region}",
                key.arn, destination.bucket, destination.group
            ),
        )
    })
}

/// Evaluates each destination bucket's policy for the writes of each output group, with
/// the encryption headers MediaConvert will send.
pub async fn check_policies(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let check = CheckName::BucketPolicyAllowsWrite;
    let mut findings = Vec::new();
    for bucket in distinct_buckets(run.settings.destinations()) {
        let Ok(Some(region)) = run.aws.bucket_region(run.freshness, &bucket.bucket).await else {
            continue;
        };
        let text = match run
            .aws
            .bucket_policy(run.freshness, &region, &bucket.bucket)
            .await
        {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(error) if error.class == ErrorClass::AccessDenied => {
                findings.push(Finding::unknown(
                    check,
                    format!(
                        "the operator may not call s3:GetBucketPolicy on bucket {}; grant it to check the policy ({})",
                        bucket.bucket, error.message
                    ),
                ));
                continue;
            }
            Err(error) if error.class == ErrorClass::NotFound => continue,
            Err(error) => return Err(error),
        };
        let document = match Document::parse(&text) {
            Ok(document) => document,
            Err(error) => {
                let message = format!(
                    "the policy of bucket {} could not be read: {error}",
                    bucket.bucket
                );
                findings.push(Finding::unknown(check, message));
                continue;
            }
        };
        let writers = run
            .settings
            .destinations()
            .iter()
            .filter(|destination| destination.bucket == bucket.bucket);
        findings.extend(writers.filter_map(|destination| judge_write(run, &document, destination)));
    }
    if findings.is_empty() {
        findings.push(Finding::passed(check, String::new()));
    }
    Ok(findings)
}

fn judge_write(run: &Run<'_>, policy: &Document, destination: &Destination) -> Option<Finding> {
    let encryption = run.prepared.write_encryption(&destination.group);
    let principal = Principal::aws(&run.spec.role);
    let context = write_context(&principal, &encryption);
    let resource = destination_arn(&destination.uri);
    let decision = policy.evaluate(&Request {
        principal: &principal,
        action: "s3:PutObject",
        resource: &resource,
        context: &context,
    });
    let check = CheckName::BucketPolicyAllowsWrite;
    let writes_with = describe_write(&encryption);
    match decision {
        Decision::Deny { statement } => {
            let demands = policy
                .statement(&statement)
                .map(|found| found.conditions_text())
                .filter(|text| !text.is_empty())
                .map(|text| format!(" when {text}"))
                .unwrap_or_default();
            Some(Finding::failed(
                check,
                ConditionReason::BucketPolicyConflict,
                format!(
                    "statement {statement:?} of the policy of bucket {} denies s3:PutObject{demands}, and output group {:?} writes with {writes_with}; make spec.encryption match what the bucket policy requires, or change the policy",
                    destination.bucket, destination.group
                ),
            ))
        }
        Decision::Undecided {
            statement,
            condition,
        } => Some(Finding::unknown(
            check,
            format!(
                "statement {statement:?} of the policy of bucket {} may deny the writes of output group {:?} ({writes_with}), depending on a condition the operator cannot evaluate ({condition})",
                destination.bucket, destination.group
            ),
        )),
        Decision::Allow { .. } | Decision::NotAllowed => None,
    }
}

/// Condition keys of the `PutObject` requests MediaConvert makes for the role.
fn write_context(principal: &Principal, encryption: &WriteEncryption) -> RequestContext {
    let arn = match principal {
        Principal::Aws { arn, .. } => arn.as_str(),
        Principal::Service(service) => service.as_str(),
    };
    let mut context = RequestContext::default()
        .with("aws:SecureTransport", "true")
        .with("aws:PrincipalArn", arn)
        .with("aws:PrincipalAccount", principal.account());
    context = match encryption.header() {
        Some(header) => context.with(SSE_HEADER, header),
        None => context.without(SSE_HEADER),
    };
    match &encryption.kms_key_arn {
        Some(key) => context.with(SSE_KEY_HEADER, key),
        None => context.without(SSE_KEY_HEADER),
    }
}

fn describe_write(encryption: &WriteEncryption) -> String {
    match (encryption.header(), &encryption.kms_key_arn) {
        (Some(header), Some(key)) => format!("{SSE_HEADER} {header} and key {key}"),
        (Some(header), None) => format!("{SSE_HEADER} {header}"),
        (None, _) => "no encryption header (the bucket default applies)".into(),
    }
}

/// Checks that output groups without encryption of their own can use the bucket's
/// default key, because S3 applies that key to writes without an encryption header.
pub async fn check_default_keys(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let check = CheckName::BucketDefaultKeyUsable;
    let mut findings = Vec::new();
    let mut applies = false;
    for destination in run.settings.destinations() {
        if run
            .prepared
            .write_encryption(&destination.group)
            .encryption_type
            .is_some()
        {
            continue;
        }
        applies = true;
        let Ok(Some(region)) = run
            .aws
            .bucket_region(run.freshness, &destination.bucket)
            .await
        else {
            continue;
        };
        let default = run
            .aws
            .default_encryption(run.freshness, &region, &destination.bucket)
            .await;
        let key_id = match default {
            Ok(Some(default)) if default.uses_kms() => default.kms_key_id,
            Ok(_) => continue,
            Err(error) if error.class == ErrorClass::AccessDenied => {
                findings.push(Finding::unknown(
                    check,
                    format!(
                        "the operator may not call s3:GetBucketEncryption on bucket {}; grant it to check the default encryption that output group {:?} falls back to ({})",
                        destination.bucket, destination.group, error.message
                    ),
                ));
                continue;
            }
            Err(error) => return Err(error),
        };
        // Without a key id the default is the AWS managed key aws/s3, which every
        // principal of the account may use through S3.
        let Some(key_id) = key_id else { continue };
        if let Some(finding) = judge_default_key(run, destination, &region, &key_id).await? {
            findings.push(finding);
        }
    }
    if applies && findings.is_empty() {
        findings.push(Finding::passed(check, String::new()));
    }
    Ok(findings)
}

async fn judge_default_key(
    run: &Run<'_>,
    destination: &Destination,
    region: &str,
    key_id: &str,
) -> Result<Option<Finding>, AwsError> {
    let check = CheckName::BucketDefaultKeyUsable;
    let context = format!(
        "output group {:?} sets no encryption, so S3 encrypts its objects in bucket {} with the bucket's default key {key_id}",
        destination.group, destination.bucket
    );
    let fix = "select the group in spec.encryption.outputGroups, or let the role use the key";
    let actions = ["kms:GenerateDataKey", "kms:Encrypt"];
    let message = match access::role_use_of(run, key_id, region, &actions).await? {
        RoleKeyUse::Usable => return Ok(None),
        RoleKeyUse::Undecided(why) => {
            return Ok(Some(Finding::unknown(check, format!("{context}; {why}"))));
        }
        RoleKeyUse::KeyUnusable(why) => format!("{context}, but {why}; {fix}"),
        RoleKeyUse::Refused(refused) => format!(
            "{context}, but role {} may not use it for {refused}; {fix}",
            run.spec.role
        ),
    };
    Ok(Some(Finding::failed(
        check,
        ConditionReason::BucketKeyNotUsable,
        message,
    )))
}
