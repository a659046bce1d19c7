//! Reader checks: each principal in `spec.encryption.readers` can read the outputs and
//! decrypt them, so the encrypted outputs stay usable downstream.

use super::access::{self, KeyUse, Summary, simulation_unknown};
use super::grants::destination_arn;
use super::{CheckName, Finding, Run};
use crate::api::{ConditionReason, EncryptionType};
use crate::aws::{AwsError, SimulatedDecision, Simulation};
use crate::policy::Principal;

/// Checks every reader; no finding when the spec names none.
pub async fn check(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let mut findings = Vec::new();
    for reader in &run.spec.encryption.readers {
        findings.extend(check_reader(run, reader).await?);
    }
    if !run.spec.encryption.readers.is_empty() && findings.is_empty() {
        findings.push(Finding::passed(CheckName::ReadersCanDecrypt, String::new()));
    }
    Ok(findings)
}

async fn check_reader(run: &Run<'_>, reader: &str) -> Result<Vec<Finding>, AwsError> {
    let mut findings = Vec::new();
    if let Some(finding) = check_decrypt(run, reader).await? {
        findings.push(finding);
    }
    if let Some(finding) = check_get_object(run, reader).await? {
        findings.push(finding);
    }
    Ok(findings)
}

fn cannot_read(reader: &str, message: String) -> Finding {
    Finding::failed(
        CheckName::ReadersCanDecrypt,
        ConditionReason::ReaderCannotDecrypt,
        format!("reader {reader} {message}"),
    )
}

async fn check_decrypt(run: &Run<'_>, reader: &str) -> Result<Option<Finding>, AwsError> {
    if run.spec.encryption.encryption_type == EncryptionType::S3 {
        return Ok(None);
    }
    let reader_account = Principal::aws(reader).account().to_string();
    let Some(key) = run.key else {
        // The AWS managed key aws/s3 serves only principals of its own account.
        let role_account = Principal::aws(&run.spec.role).account().to_string();
        if run.spec.encryption.kms_key_arn.is_none() && reader_account != role_account {
            let message = format!(
                "is in account {reader_account}, but the outputs are encrypted with the AWS managed key aws/s3 of account {role_account}, which other accounts cannot use; name a customer managed key in spec.encryption.kmsKeyArn and grant the reader kms:Decrypt on it"
            );
            return Ok(Some(cannot_read(reader, message)));
        }
        return Ok(None);
    };
    let key_use = KeyUse {
        principal: reader,
        key,
        actions: &["kms:Decrypt"],
        region: run.region,
        encryption_context: &run.spec.encryption.encryption_context,
    };
    let access = access::evaluate(run.aws, run.freshness, &key_use).await?;
    Ok(match access.summary() {
        Summary::Granted => None,
        Summary::Refused(_) => Some(cannot_read(
            reader,
            format!(
                "may not use kms:Decrypt on {} (by the key policy or its IAM policies), so it cannot read the encrypted outputs; grant it kms:Decrypt on that key",
                key.arn
            ),
        )),
        Summary::Undecided(why) => Some(Finding::unknown(
            CheckName::ReadersCanDecrypt,
            format!("reader {reader}: {why}"),
        )),
    })
}

async fn check_get_object(run: &Run<'_>, reader: &str) -> Result<Option<Finding>, AwsError> {
    let mut refused = Vec::new();
    for destination in run.settings.destinations() {
        let resource = destination_arn(&destination.uri);
        let simulation = Simulation {
            principal_arn: reader.to_string(),
            actions: vec!["s3:GetObject".into()],
            resource_arn: resource.clone(),
            context: Vec::new(),
        };
        let results = match run.aws.simulate(run.freshness, &simulation).await {
            Ok(results) => results,
            Err(error) => {
                let why = simulation_unknown(reader, error)?;
                return Ok(Some(Finding::unknown(CheckName::ReadersCanDecrypt, why)));
            }
        };
        if !results
            .iter()
            .any(|result| result.decision == SimulatedDecision::Allowed)
        {
            refused.push(resource);
        }
    }
    if refused.is_empty() {
        return Ok(None);
    }
    let message = format!(
        "may not call s3:GetObject on {}; grant it in the reader's IAM policies",
        refused.join(", ")
    );
    Ok(Some(cannot_read(reader, message)))
}
