//! Grant checks for the job role: KMS actions on the output key, `s3:PutObject` on the
//! destinations and `s3:GetObject` on the inputs.

use std::collections::BTreeSet;

use super::access::{self, ActionAccess, KeyAccess, KeyUse, Side, simulation_unknown};
use super::{CheckName, Finding, Run};
use crate::api::ConditionReason;
use crate::aws::{AwsError, SimulatedDecision, Simulation};
use crate::settings::S3Object;

/// KMS actions S3 performs for a writer of SSE-KMS objects.
const WRITE_ACTIONS: [&str; 2] = ["kms:Encrypt", "kms:GenerateDataKey"];
/// The same, for outputs that later jobs read back as inputs.
const WRITE_AND_READ_ACTIONS: [&str; 3] = ["kms:Encrypt", "kms:GenerateDataKey", "kms:Decrypt"];

/// Checks the key policy and the role's IAM policies for the output key.
pub async fn check_kms(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let Some(key) = run.key else {
        return Ok(Vec::new());
    };
    let actions: &[&str] = if run.spec.encryption.allow_reuse_as_input {
        &WRITE_AND_READ_ACTIONS
    } else {
        &WRITE_ACTIONS
    };
    let key_use = KeyUse {
        principal: &run.spec.role,
        key,
        actions,
        region: run.region,
        encryption_context: &run.spec.encryption.encryption_context,
    };
    let access = access::evaluate(run.aws, run.freshness, &key_use).await?;
    Ok(vec![
        key_policy_finding(&key_use, &access),
        identity_finding(&key_use, &access),
    ])
}

fn key_policy_finding(key_use: &KeyUse<'_>, access: &KeyAccess) -> Finding {
    let check = CheckName::KeyPolicyAllowsRole;
    let (role, key) = (key_use.principal, &key_use.key.arn);
    for (action, outcome) in &access.actions {
        if let ActionAccess::KeyPolicyDenies { statement } = outcome {
            return Finding::failed(
                check,
                ConditionReason::KeyPolicyDeniesRole,
                format!(
                    "statement {statement:?} of the key policy of {key} denies {action} to {role}; change that statement or use another key"
                ),
            );
        }
    }
    let missing = access.actions_where(|outcome| *outcome == ActionAccess::KeyPolicyMissing);
    if !missing.is_empty() {
        return Finding::failed(
            check,
            ConditionReason::KeyPolicyDeniesRole,
            format!(
                "the key policy of {key} neither allows {role} {missing:?} nor delegates to IAM in account {} (the account-root statement); add the role, or the root delegation, to the key policy",
                crate::policy::Principal::aws(role).account()
            ),
        );
    }
    match access.undecided(Side::KeyPolicy) {
        Some(why) => Finding::unknown(check, why.to_string()),
        None => Finding::passed(check, String::new()),
    }
}

fn identity_finding(key_use: &KeyUse<'_>, access: &KeyAccess) -> Finding {
    let check = CheckName::RoleGrantsKms;
    let (role, key) = (key_use.principal, &key_use.key.arn);
    for (action, outcome) in &access.actions {
        if let ActionAccess::IdentityDenies { policies } = outcome {
            return Finding::failed(
                check,
                ConditionReason::RoleMissingKmsGrant,
                format!(
                    "an IAM policy of {role} ({}) explicitly denies {action} on {key}; remove the Deny from the role's policies",
                    policies.join(", ")
                ),
            );
        }
    }
    let missing = access.actions_where(|outcome| *outcome == ActionAccess::IdentityMissing);
    if !missing.is_empty() {
        return Finding::failed(
            check,
            ConditionReason::RoleMissingKmsGrant,
            format!(
                "the IAM policies of {role} do not allow {} on {key}; add {} on that key to the role policy",
                missing.join(", "),
                missing.join(" and ")
            ),
        );
    }
    match access.undecided(Side::Identity) {
        Some(why) => Finding::unknown(check, why.to_string()),
        None => Finding::passed(check, String::new()),
    }
}

/// Simulates `s3:PutObject` on every destination and `s3:GetObject` on every S3 input.
pub async fn check_s3(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let check = CheckName::RoleGrantsS3;
    let mut requests = BTreeSet::new();
    for destination in run.settings.destinations() {
        let encryption = run.prepared.write_encryption(&destination.group);
        requests.insert((
            "s3:PutObject",
            destination_arn(&destination.uri),
            encryption,
        ));
    }
    for input in run.settings.s3_inputs() {
        requests.insert(("s3:GetObject", input.arn(), Default::default()));
    }
    let mut denied = Vec::new();
    for (action, resource, encryption) in requests {
        let mut context = Vec::new();
        if let Some(header) = encryption.header() {
            context.push((
                "s3:x-amz-server-side-encryption".to_string(),
                header.to_string(),
            ));
        }
        if let Some(key) = encryption.kms_key_arn {
            context.push((
                "s3:x-amz-server-side-encryption-aws-kms-key-id".to_string(),
                key,
            ));
        }
        let simulation = Simulation {
            principal_arn: run.spec.role.clone(),
            actions: vec![action.to_string()],
            resource_arn: resource.clone(),
            context,
        };
        let results = match run.aws.simulate(run.freshness, &simulation).await {
            Ok(results) => results,
            Err(error) => {
                let message = simulation_unknown(&run.spec.role, error)?;
                return Ok(vec![Finding::unknown(check, message)]);
            }
        };
        let allowed = results
            .iter()
            .any(|result| result.decision == SimulatedDecision::Allowed);
        if !allowed {
            denied.push(format!("{action} on {resource}"));
        }
    }
    if denied.is_empty() {
        return Ok(vec![Finding::passed(check, String::new())]);
    }
    Ok(vec![Finding::failed(
        check,
        ConditionReason::RoleMissingS3Grant,
        format!(
            "the IAM policies of {} do not allow {}; add these to the role policy",
            run.spec.role,
            denied.join(", ")
        ),
    )])
}

/// ARN standing for the objects written below a destination such as `s3://bucket/dir/`.
pub fn destination_arn(uri: &str) -> String {
    match S3Object::parse(uri) {
        Some(object) => format!("{}*", object.arn()),
        None => {
            let bucket = uri.trim_start_matches("s3://").trim_end_matches('/');
            format!("arn:aws:s3:::{bucket}/*")
        }
    }
}
