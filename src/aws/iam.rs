//! AWS IAM and STS: the job role, its trust policy, and simulated permissions.

use std::sync::Arc;

use aws_sdk_iam::types::{ContextEntry, ContextKeyTypeEnum, PolicyEvaluationDecisionType};

use super::limits::{RateLimits, Service};
use super::{AwsError, ErrorClass};

/// A role as `iam:GetRole` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleDescription {
    pub arn: String,
    /// Path of the role, `/` for a role at the root.
    pub path: String,
    /// Trust policy document, already URL-decoded.
    pub trust_policy: String,
}

/// Decision of `iam:SimulatePrincipalPolicy` for one action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SimulatedDecision {
    Allowed,
    /// A statement denies the action explicitly.
    ExplicitDeny,
    /// No statement allows the action.
    ImplicitDeny,
}

/// Simulated decision for one action, with the policies whose statements decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimulatedAction {
    pub action: String,
    pub decision: SimulatedDecision,
    /// Ids of the policies that matched, such as an inline policy name.
    pub matched_policies: Vec<String>,
}

/// Simulation request: a principal calling actions on one resource.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Simulation {
    pub principal_arn: String,
    pub actions: Vec<String>,
    pub resource_arn: String,
    /// Condition keys and values of the request, such as `kms:ViaService`.
    pub context: Vec<(String, String)>,
}

#[async_trait::async_trait]
pub trait Iam: Send + Sync {
    /// Describes a role by name; `None` when it does not exist.
    async fn get_role(&self, name: &str) -> Result<Option<RoleDescription>, AwsError>;

    /// Simulates the identity policies of a principal (`iam:SimulatePrincipalPolicy`).
    async fn simulate(&self, simulation: &Simulation) -> Result<Vec<SimulatedAction>, AwsError>;

    /// ARN of the identity the operator calls AWS as (`sts:GetCallerIdentity`).
    async fn caller_arn(&self) -> Result<String, AwsError>;
}

/// [`Iam`] over the AWS SDK.
pub struct IamClient {
    iam: aws_sdk_iam::Client,
    sts: aws_sdk_sts::Client,
    limits: Arc<RateLimits>,
}

/// IAM is a global service, so one bucket serves it.
const IAM_REGION: &str = "global";

impl IamClient {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            iam: aws_sdk_iam::Client::from_conf(
                aws_sdk_iam::config::Builder::from(config)
                    .interceptor(crate::metrics::AwsCallMetrics)
                    .build(),
            ),
            sts: aws_sdk_sts::Client::from_conf(
                aws_sdk_sts::config::Builder::from(config)
                    .interceptor(crate::metrics::AwsCallMetrics)
                    .build(),
            ),
            limits: Arc::new(RateLimits::unlimited()),
        }
    }

    /// Makes every call wait for a token of the shared rate limits first.
    pub fn with_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = limits;
        self
    }
}

#[async_trait::async_trait]
impl Iam for IamClient {
    async fn get_role(&self, name: &str) -> Result<Option<RoleDescription>, AwsError> {
        self.limits.acquire(Service::Iam, IAM_REGION).await;
        let result = self.iam.get_role().role_name(name).send().await;
        let output = match result {
            Ok(output) => output,
            Err(error) => {
                let error = AwsError::from_sdk("GetRole", error);
                return match error.class {
                    ErrorClass::NotFound => Ok(None),
                    _ => Err(error),
                };
            }
        };
        let Some(role) = output.role() else {
            return Ok(None);
        };
        let document = role.assume_role_policy_document().unwrap_or_default();
        Ok(Some(RoleDescription {
            arn: role.arn().to_string(),
            path: role.path().to_string(),
            trust_policy: url_decode(document),
        }))
    }

    async fn simulate(&self, simulation: &Simulation) -> Result<Vec<SimulatedAction>, AwsError> {
        let context = simulation.context.iter().map(|(key, value)| {
            ContextEntry::builder()
                .context_key_name(key)
                .context_key_type(ContextKeyTypeEnum::String)
                .context_key_values(value)
                .build()
        });
        let mut results = Vec::new();
        let mut marker = None;
        loop {
            self.limits.acquire(Service::Iam, IAM_REGION).await;
            let output = self
                .iam
                .simulate_principal_policy()
                .policy_source_arn(&simulation.principal_arn)
                .set_action_names(Some(simulation.actions.clone()))
                .resource_arns(&simulation.resource_arn)
                .set_context_entries(Some(context.clone().collect()))
                .set_marker(marker)
                .send()
                .await
                .map_err(|error| AwsError::from_sdk("SimulatePrincipalPolicy", error))?;
            for result in output.evaluation_results() {
                results.push(SimulatedAction {
                    action: result.eval_action_name().to_string(),
                    decision: match result.eval_decision() {
                        PolicyEvaluationDecisionType::Allowed => SimulatedDecision::Allowed,
                        PolicyEvaluationDecisionType::ExplicitDeny => {
                            SimulatedDecision::ExplicitDeny
                        }
                        _ => SimulatedDecision::ImplicitDeny,
                    },
                    matched_policies: result
                        .matched_statements()
                        .iter()
                        .filter_map(|statement| statement.source_policy_id())
                        .map(str::to_string)
                        .collect(),
                });
            }
            match output.marker().filter(|_| output.is_truncated()) {
                Some(next) => marker = Some(next.to_string()),
                None => return Ok(results),
            }
        }
    }

    async fn caller_arn(&self) -> Result<String, AwsError> {
        let output = self
            .sts
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetCallerIdentity", error))?;
        Ok(output.arn().unwrap_or_default().to_string())
    }
}

/// Decodes the percent-encoding IAM applies to policy documents in `GetRole`.
fn url_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::url_decode;

    #[test]
    fn trust_policy_decoded() {
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%7D";
        assert_eq!(url_decode(encoded), r#"{"Version":"2012-10-17"}"#);
        let plain = r#"{"Statement": []}"#;
        assert_eq!(url_decode(plain), plain);
    }
}
