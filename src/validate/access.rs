//! Whether a principal may use a KMS key through S3: the key policy, read with
//! `kms:GetKeyPolicy` and evaluated here, combined with the principal's IAM policies,
//! simulated with `iam:SimulatePrincipalPolicy`.

use std::collections::BTreeMap;

use super::cache::{CachedAws, Freshness};
use super::{Run, key};
use crate::aws::{AwsError, ErrorClass, KeyDescription, SimulatedDecision, Simulation};
use crate::policy::{Decision, Document, Grant, Principal, Request, RequestContext};

/// A principal's use of a key through S3.
pub struct KeyUse<'a> {
    /// ARN of the role or user.
    pub principal: &'a str,
    pub key: &'a KeyDescription,
    pub actions: &'a [&'a str],
    /// Region of the bucket, whose S3 endpoint calls KMS.
    pub region: &'a str,
    pub encryption_context: &'a BTreeMap<String, String>,
}

/// Outcome for one action.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActionAccess {
    Granted,
    /// A key policy statement denies the action.
    KeyPolicyDenies {
        statement: String,
    },
    /// The key policy neither names the principal nor delegates to its account.
    KeyPolicyMissing,
    /// An IAM policy of the principal denies the action.
    IdentityDenies {
        policies: Vec<String>,
    },
    /// The key policy delegates to IAM, and no IAM policy allows the action.
    IdentityMissing,
    /// The result depends on something the operator cannot see on `side`, described by `why`.
    Undecided {
        side: Side,
        why: String,
    },
}

/// Half of a KMS permission that a result is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The key policy.
    KeyPolicy,
    /// The principal's IAM policies.
    Identity,
}

/// Access of one principal to one key, action by action.
pub struct KeyAccess {
    pub actions: Vec<(String, ActionAccess)>,
}

impl KeyAccess {
    /// Actions whose outcome satisfies `filter`.
    pub fn actions_where(&self, filter: impl Fn(&ActionAccess) -> bool) -> Vec<&str> {
        self.actions
            .iter()
            .filter(|(_, access)| filter(access))
            .map(|(action, _)| action.as_str())
            .collect()
    }

    /// First undecided outcome on `side`, with its explanation.
    pub fn undecided(&self, side: Side) -> Option<&str> {
        self.actions.iter().find_map(|(_, access)| match access {
            ActionAccess::Undecided { side: found, why } if *found == side => Some(why.as_str()),
            _ => None,
        })
    }

    /// Folds the actions into one result. It is refused when any action is refused,
    /// undecided when any is undecided, and granted otherwise.
    pub fn summary(&self) -> Summary<'_> {
        let refused = self.actions_where(|access| {
            !matches!(
                access,
                ActionAccess::Granted | ActionAccess::Undecided { .. }
            )
        });
        if !refused.is_empty() {
            return Summary::Refused(refused);
        }
        match self
            .undecided(Side::KeyPolicy)
            .or_else(|| self.undecided(Side::Identity))
        {
            Some(why) => Summary::Undecided(why),
            None => Summary::Granted,
        }
    }
}

/// Overall result of a [`KeyAccess`].
pub enum Summary<'a> {
    Granted,
    /// These actions are denied or not allowed.
    Refused(Vec<&'a str>),
    /// Nothing is refused, but this could not be decided.
    Undecided(&'a str),
}

/// Key-side decision for every action, or why it is unknown.
enum KeySide {
    Decisions(Vec<Decision>),
    Unknown(String),
}

/// Identity-side decision for every action, or why it is unknown.
enum IdentitySide {
    Decisions(Vec<(SimulatedDecision, Vec<String>)>),
    Unknown(String),
}

/// Whether the job role may use a key that S3 names, such as a bucket default key or the
/// key of an input object.
pub enum RoleKeyUse {
    Usable,
    /// The key itself is unusable, for example missing or disabled, as the text explains.
    KeyUnusable(String),
    /// The key is fine but these actions are refused to the role.
    Refused(String),
    Undecided(String),
}

/// Describes `key_id` in `region` and evaluates the job role's use of it for `actions`.
pub async fn role_use_of(
    run: &Run<'_>,
    key_id: &str,
    region: &str,
    actions: &[&str],
) -> Result<RoleKeyUse, AwsError> {
    let described = key::check(run.aws, run.freshness, region, key_id, &run.spec.role).await?;
    let key = match described {
        Ok(key) => key,
        Err(finding) => return Ok(RoleKeyUse::KeyUnusable(finding.message)),
    };
    let key_use = KeyUse {
        principal: &run.spec.role,
        key: &key,
        actions,
        region,
        encryption_context: &BTreeMap::new(),
    };
    let access = evaluate(run.aws, run.freshness, &key_use).await?;
    Ok(match access.summary() {
        Summary::Granted => RoleKeyUse::Usable,
        Summary::Refused(refused) => RoleKeyUse::Refused(refused.join(", ")),
        Summary::Undecided(why) => RoleKeyUse::Undecided(why.to_string()),
    })
}

/// Evaluates `key_use`. Transient AWS failures are returned as `Err`.
pub async fn evaluate(
    aws: &CachedAws,
    freshness: Freshness,
    key_use: &KeyUse<'_>,
) -> Result<KeyAccess, AwsError> {
    let key_side = key_side(aws, freshness, key_use).await?;
    let identity_side = identity_side(aws, freshness, key_use).await?;
    let principal = Principal::aws(key_use.principal);
    let same_account = principal.account() == key_use.key.account_id;
    let actions = key_use
        .actions
        .iter()
        .enumerate()
        .map(|(index, action)| {
            let key = match &key_side {
                KeySide::Decisions(decisions) => Ok(&decisions[index]),
                KeySide::Unknown(why) => Err(why.as_str()),
            };
            let identity = match &identity_side {
                IdentitySide::Decisions(decisions) => Ok(&decisions[index]),
                IdentitySide::Unknown(why) => Err(why.as_str()),
            };
            (action.to_string(), combine(key, identity, same_account))
        })
        .collect();
    Ok(KeyAccess { actions })
}

/// Combines the two sides the way KMS does. A Deny on either side wins. Within the key's
/// account a key policy grant to the principal itself suffices, and otherwise both sides
/// must allow.
fn combine(
    key: Result<&Decision, &str>,
    identity: Result<&(SimulatedDecision, Vec<String>), &str>,
    same_account: bool,
) -> ActionAccess {
    if let Ok(Decision::Deny { statement }) = key {
        return ActionAccess::KeyPolicyDenies {
            statement: statement.clone(),
        };
    }
    if let Ok((SimulatedDecision::ExplicitDeny, policies)) = identity {
        return ActionAccess::IdentityDenies {
            policies: policies.clone(),
        };
    }
    let undecided = |side, why: String| ActionAccess::Undecided { side, why };
    let grant = match key {
        Ok(Decision::Allow { grant, .. }) => *grant,
        Ok(Decision::NotAllowed | Decision::Deny { .. }) => return ActionAccess::KeyPolicyMissing,
        Ok(Decision::Undecided {
            statement,
            condition,
        }) => {
            return undecided(
                Side::KeyPolicy,
                format!(
                    "key policy statement {statement:?} has a condition the operator cannot evaluate ({condition})"
                ),
            );
        }
        Err(why) => return undecided(Side::KeyPolicy, why.to_string()),
    };
    if grant == Grant::Principal && same_account {
        return ActionAccess::Granted;
    }
    match identity {
        Ok((SimulatedDecision::Allowed, _)) => ActionAccess::Granted,
        Ok(_) => ActionAccess::IdentityMissing,
        Err(why) => undecided(Side::Identity, why.to_string()),
    }
}

async fn key_side(
    aws: &CachedAws,
    freshness: Freshness,
    key_use: &KeyUse<'_>,
) -> Result<KeySide, AwsError> {
    let key = key_use.key;
    let key_region = key.arn.split(':').nth(3).unwrap_or(key_use.region);
    let text = match aws.key_policy(freshness, key_region, &key.arn).await {
        Ok(text) => text,
        Err(error) if error.class == ErrorClass::AccessDenied => {
            return Ok(KeySide::Unknown(format!(
                "the operator may not call kms:GetKeyPolicy on {}; grant it to read the key policy ({})",
                key.arn, error.message
            )));
        }
        Err(error) if matches!(error.class, ErrorClass::NotFound | ErrorClass::Invalid) => {
            return Ok(KeySide::Unknown(format!(
                "KMS returned no policy for key {}: {}",
                key.arn, error.message
            )));
        }
        Err(error) => return Err(error),
    };
    let document = match Document::parse(&text) {
        Ok(document) => document,
        Err(error) => {
            return Ok(KeySide::Unknown(format!(
                "the policy of key {} could not be read: {error}",
                key.arn
            )));
        }
    };
    let principal = Principal::aws(key_use.principal);
    let context = kms_context(&principal, key_use);
    let decisions = key_use
        .actions
        .iter()
        .map(|action| {
            document.evaluate(&Request {
                principal: &principal,
                action,
                resource: &key.arn,
                context: &context,
            })
        })
        .collect();
    Ok(KeySide::Decisions(decisions))
}

/// Condition keys of the KMS request that S3 makes for the principal.
fn kms_context(principal: &Principal, key_use: &KeyUse<'_>) -> RequestContext {
    let mut context = RequestContext::default()
        .with("kms:CallerAccount", principal.account())
        .with(
            "kms:ViaService",
            &format!("s3.{}.amazonaws.com", key_use.region),
        )
        .with("aws:PrincipalArn", key_use.principal)
        .with("aws:PrincipalAccount", principal.account())
        .with("aws:SecureTransport", "true");
    if !key_use.encryption_context.is_empty() {
        let keys = key_use.encryption_context.keys().cloned().collect();
        context = context.with_values("kms:EncryptionContextKeys", keys);
        for (key, value) in key_use.encryption_context {
            context = context.with(&format!("kms:EncryptionContext:{key}"), value);
        }
    }
    context
}

async fn identity_side(
    aws: &CachedAws,
    freshness: Freshness,
    key_use: &KeyUse<'_>,
) -> Result<IdentitySide, AwsError> {
    let principal = Principal::aws(key_use.principal);
    let simulation = Simulation {
        principal_arn: key_use.principal.to_string(),
        actions: key_use.actions.iter().map(|a| a.to_string()).collect(),
        resource_arn: key_use.key.arn.clone(),
        context: vec![
            (
                "kms:ViaService".into(),
                format!("s3.{}.amazonaws.com", key_use.region),
            ),
            ("kms:CallerAccount".into(), principal.account().to_string()),
        ],
    };
    let results = match aws.simulate(freshness, &simulation).await {
        Ok(results) => results,
        Err(error) => {
            return simulation_unknown(key_use.principal, error).map(IdentitySide::Unknown);
        }
    };
    let decisions = key_use
        .actions
        .iter()
        .map(|action| {
            results
                .iter()
                .find(|result| result.action.eq_ignore_ascii_case(action))
                .map(|result| (result.decision, result.matched_policies.clone()))
                .unwrap_or((SimulatedDecision::ImplicitDeny, Vec::new()))
        })
        .collect();
    Ok(IdentitySide::Decisions(decisions))
}

/// Explains a failed simulation, or passes a transient error on.
pub fn simulation_unknown(principal: &str, error: AwsError) -> Result<String, AwsError> {
    match error.class {
        ErrorClass::AccessDenied => Ok(format!(
            "the operator may not call iam:SimulatePrincipalPolicy for {principal}; grant it to check the IAM policies ({})",
            error.message
        )),
        ErrorClass::NotFound | ErrorClass::Invalid => Ok(format!(
            "IAM could not simulate the policies of {principal}, which is not an IAM role or user of the operator's account: {}",
            error.message
        )),
        _ => Err(error),
    }
}
