//! Role checks: the job role exists, MediaConvert may assume it, and the operator may
//! pass it to MediaConvert.

use super::access::simulation_unknown;
use super::{CheckName, Finding, Run, arn};
use crate::api::ConditionReason;
use crate::aws::{AwsError, ErrorClass, SimulatedDecision, Simulation};
use crate::policy::{Decision, Document, Principal, Request, RequestContext};

const MEDIACONVERT_SERVICE: &str = "mediaconvert.amazonaws.com";

/// Findings of the role checks, and whether the grant checks can run on the role.
pub struct RoleOutcome {
    pub exists: bool,
    pub findings: Vec<Finding>,
}

/// Reads the role with `iam:GetRole` and evaluates its trust policy.
pub async fn check(run: &Run<'_>) -> Result<RoleOutcome, AwsError> {
    let role_arn = run.spec.role.as_str();
    let name = role_arn.rsplit('/').next().unwrap_or_default();
    let role = match run.aws.role(run.freshness, name).await {
        Ok(role) => role,
        Err(error) if matches!(error.class, ErrorClass::AccessDenied | ErrorClass::Invalid) => {
            let finding = Finding::unknown(
                CheckName::RoleExists,
                format!(
                    "the operator may not call iam:GetRole on {role_arn}; grant it to check the role and its trust policy ({})",
                    error.message
                ),
            );
            // The role may well exist, so the grant checks still run.
            return Ok(RoleOutcome {
                exists: true,
                findings: vec![finding],
            });
        }
        Err(error) => return Err(error),
    };
    let role = match role {
        Some(role) if role.arn == role_arn => role,
        found => {
            let elsewhere = found
                .map(|role| format!(" (a role of that name exists as {})", role.arn))
                .unwrap_or_default();
            let finding = Finding::failed(
                CheckName::RoleExists,
                ConditionReason::RoleNotFound,
                format!(
                    "IAM role {role_arn} does not exist{elsewhere}; create it or correct spec.role"
                ),
            );
            return Ok(RoleOutcome {
                exists: false,
                findings: vec![finding],
            });
        }
    };
    let mut exists = Finding::passed(CheckName::RoleExists, path_advice(&role.arn, &role.path));
    if !exists.message.is_empty() {
        exists.reason = ConditionReason::RoleHasPath;
    }
    let findings = vec![exists, judge_trust(role_arn, &role.trust_policy)];
    Ok(RoleOutcome {
        exists: true,
        findings,
    })
}

/// Advice for a role below a path, which has been reported to fail MediaConvert jobs
/// with error 1432; others could not reproduce it, so it does not block.
fn path_advice(role_arn: &str, path: &str) -> String {
    if path.is_empty() || path == "/" {
        return String::new();
    }
    format!(
        "role {role_arn} has the path {path}; MediaConvert has been reported to reject such role ARNs with error 1432 (invalid role), so if the job fails that way, create the role at the root path"
    )
}

/// Evaluates the trust policy for MediaConvert assuming the role.
fn judge_trust(role_arn: &str, trust_policy: &str) -> Finding {
    let check = CheckName::RoleTrustsMediaConvert;
    let document = match Document::parse(trust_policy) {
        Ok(document) => document,
        Err(error) => {
            return Finding::unknown(
                check,
                format!("the trust policy of {role_arn} could not be read: {error}"),
            );
        }
    };
    let principal = Principal::Service(MEDIACONVERT_SERVICE.into());
    let account = arn::parse_role(role_arn)
        .map(|arn| arn.account.to_string())
        .unwrap_or_default();
    let context = RequestContext::default().with("aws:SourceAccount", &account);
    let decision = document.evaluate(&Request {
        principal: &principal,
        action: "sts:AssumeRole",
        resource: role_arn,
        context: &context,
    });
    let fix = format!(
        "add a statement that allows Principal {{\"Service\": \"{MEDIACONVERT_SERVICE}\"}} the action sts:AssumeRole to the trust policy of {role_arn}"
    );
    match decision {
        Decision::Allow { .. } => Finding::passed(check, String::new()),
        Decision::NotAllowed => Finding::failed(
            check,
            ConditionReason::RoleTrustMissingMediaConvert,
            format!(
                "the trust policy of {role_arn} does not let {MEDIACONVERT_SERVICE} assume the role; {fix}"
            ),
        ),
        Decision::Deny { statement } => Finding::failed(
            check,
            ConditionReason::RoleTrustMissingMediaConvert,
            format!(
                "statement {statement:?} of the trust policy of {role_arn} denies {MEDIACONVERT_SERVICE} sts:AssumeRole; remove the Deny or exempt the service"
            ),
        ),
        Decision::Undecided {
            statement,
            condition,
        } => Finding::unknown(
            check,
            format!(
                "statement {statement:?} of the trust policy of {role_arn} has a condition the operator cannot evaluate ({condition}); make sure MediaConvert's requests satisfy it"
            ),
        ),
    }
}

/// Simulates `iam:PassRole` of the job role for the operator's own identity.
pub async fn check_pass_role(run: &Run<'_>) -> Result<Vec<Finding>, AwsError> {
    let check = CheckName::CallerCanPassRole;
    let caller = match run.aws.caller_arn(run.freshness).await {
        Ok(caller) => caller,
        Err(error)
            if error.class != ErrorClass::Transient && error.class != ErrorClass::Throttled =>
        {
            let message = format!(
                "the operator could not read its own identity with sts:GetCallerIdentity: {}",
                error.message
            );
            return Ok(vec![Finding::unknown(check, message)]);
        }
        Err(error) => return Err(error),
    };
    let Some(principal_arn) = simulation_subject(run, &caller).await? else {
        return Ok(vec![Finding::passed(check, String::new())]);
    };
    let simulation = Simulation {
        principal_arn: principal_arn.clone(),
        actions: vec!["iam:PassRole".into()],
        resource_arn: run.spec.role.clone(),
        context: vec![("iam:PassedToService".into(), MEDIACONVERT_SERVICE.into())],
    };
    let results = match run.aws.simulate(run.freshness, &simulation).await {
        Ok(results) => results,
        Err(error) => {
            let message = simulation_unknown(&principal_arn, error)?;
            return Ok(vec![Finding::unknown(check, message)]);
        }
    };
    let allowed = results
        .iter()
        .any(|result| result.decision == SimulatedDecision::Allowed);
    if allowed {
        return Ok(vec![Finding::passed(check, String::new())]);
    }
    Ok(vec![Finding::failed(
        check,
        ConditionReason::CallerCannotPassRole,
        format!(
            "the operator's identity {principal_arn} may not pass {} to MediaConvert; allow it iam:PassRole on that role (with iam:PassedToService {MEDIACONVERT_SERVICE})",
            run.spec.role
        ),
    )])
}

/// IAM principal to simulate for the caller: a user as it is, an assumed role as its role
/// (read with `iam:GetRole` for its path). `None` for the account root, which may pass
/// any role.
async fn simulation_subject(run: &Run<'_>, caller: &str) -> Result<Option<String>, AwsError> {
    if caller.ends_with(":root") {
        return Ok(None);
    }
    let Some(rest) = caller.split(":assumed-role/").nth(1) else {
        return Ok(Some(caller.to_string()));
    };
    let role_name = rest.split('/').next().unwrap_or_default();
    match run.aws.role(run.freshness, role_name).await {
        Ok(Some(role)) => Ok(Some(role.arn)),
        Ok(None) => Ok(Some(caller.to_string())),
        Err(error) if matches!(error.class, ErrorClass::Transient | ErrorClass::Throttled) => {
            Err(error)
        }
        Err(_) => Ok(Some(caller.to_string())),
    }
}
