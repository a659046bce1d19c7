//! The key check: `kms:DescribeKey` shows an enabled symmetric encryption key that the
//! job's account may use.

use super::cache::{CachedAws, Freshness};
use super::{CheckName, Finding, arn};
use crate::api::ConditionReason;
use crate::aws::{AwsError, ErrorClass, KeyDescription};

/// Describes `key_arn` (a key or alias ARN) and judges it. `Ok(Err(..))` is a failed or
/// undecided check; `Err` a transient AWS failure.
pub async fn check(
    aws: &CachedAws,
    freshness: Freshness,
    region: &str,
    key_arn: &str,
    role_arn: &str,
) -> Result<Result<KeyDescription, Finding>, AwsError> {
    let key = match aws.describe_key(freshness, region, key_arn).await {
        Ok(key) => key,
        Err(error) => return key_error(key_arn, error).map(Err),
    };
    let role_account = arn::parse_role(role_arn)
        .map(|role| role.account.to_string())
        .ok();
    Ok(judge_key(key_arn, key, role_account.as_deref()))
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
pub fn judge_key(
    key_arn: &str,
    key: KeyDescription,
    role_account: Option<&str>,
) -> Result<KeyDescription, Finding> {
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
        let deletion = key
            .deletion_date
            .as_deref()
            .map(|date| format!(" and will be deleted at {date}"))
            .unwrap_or_default();
        return fail(
            reason,
            format!(
                "KMS key {} is in state {}{deletion}; {fix}",
                key.arn, key.state
            ),
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
    Ok(key)
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
            deletion_date: None,
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
