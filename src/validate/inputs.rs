//! Input checks: each S3 input exists, and one encrypted with SSE-KMS has a key the job
//! role may decrypt with.

use super::access::{self, RoleKeyUse};
use super::{CheckName, Finding, Run};
use crate::api::ConditionReason;
use crate::aws::{AwsError, ErrorClass};
use crate::settings::S3Object;

/// Reads each S3 input with `s3:HeadObject` and checks its KMS key, if any.
pub async fn check(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let inputs = run.settings.s3_inputs();
    if inputs.is_empty() {
        return Ok(Vec::new());
    }
    let mut findings = Vec::new();
    for input in &inputs {
        if let Some(finding) = check_input(run, input).await? {
            findings.push(finding);
        }
    }
    if findings.is_empty() {
        findings.push(Finding::passed(CheckName::InputKeyUsable, String::new()));
    }
    Ok(findings)
}

async fn check_input(run: &Run<'_>, input: &S3Object) -> Result<Option<Finding>, AwsError> {
    let check = CheckName::InputKeyUsable;
    let not_found = || {
        Finding::failed(
            check,
            ConditionReason::InputNotFound,
            format!(
                "input {} does not exist; upload it or correct Inputs[].FileInput (the operator checks again, so a later upload is picked up)",
                input.uri
            ),
        )
    };
    let region = match run.aws.bucket_region(run.freshness, &input.bucket).await {
        Ok(Some(region)) => region,
        Ok(None) => return Ok(Some(not_found())),
        Err(error) if matches!(error.class, ErrorClass::AccessDenied | ErrorClass::Invalid) => {
            return Ok(Some(denied(input, "s3:GetBucketLocation", &error)));
        }
        Err(error) => return Err(error),
    };
    let encryption = match run
        .aws
        .object_encryption(run.freshness, &region, &input.bucket, &input.key)
        .await
    {
        Ok(Some(encryption)) => encryption,
        Ok(None) => return Ok(Some(not_found())),
        Err(error) if matches!(error.class, ErrorClass::AccessDenied | ErrorClass::Invalid) => {
            return Ok(Some(denied(input, "s3:GetObject", &error)));
        }
        Err(error) => return Err(error),
    };
    let uses_kms = encryption.uses_kms();
    let Some(key_id) = encryption.kms_key_id.filter(|_| uses_kms) else {
        return Ok(None);
    };
    let prefix = format!("input {} is encrypted with KMS key {key_id}", input.uri);
    let message = match access::role_use_of(run, &key_id, &region, &["kms:Decrypt"]).await? {
        RoleKeyUse::Usable => return Ok(None),
        RoleKeyUse::Undecided(why) => {
            return Ok(Some(Finding::unknown(check, format!("{prefix}; {why}"))));
        }
        RoleKeyUse::KeyUnusable(why) => format!("{prefix}, but {why}"),
        RoleKeyUse::Refused(_) => format!(
            "{prefix}, which role {} may not use for kms:Decrypt (by the key policy or the role's IAM policies); allow the role kms:Decrypt on that key",
            run.spec.role
        ),
    };
    Ok(Some(Finding::failed(
        check,
        ConditionReason::InputKeyNotUsable,
        message,
    )))
}

fn denied(input: &S3Object, action: &str, error: &AwsError) -> Finding {
    Finding::unknown(
        CheckName::InputKeyUsable,
        format!(
            "the operator may not call {action} on input {}; grant it to check how the input is encrypted ({})",
            input.uri, error.message
        ),
    )
}
