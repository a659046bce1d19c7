//! AWS KMS: describing the key that encrypts the outputs and reading its policy.

use std::sync::Arc;

use aws_sdk_kms::types::{KeyManagerType, KeySpec, KeyState, KeyUsageType};
use aws_smithy_types::date_time::Format as DateTimeFormat;

use super::AwsError;
use super::limits::{RateLimits, Service};

/// Key metadata from `kms:DescribeKey`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDescription {
    /// Key ARN, also when the request named an alias.
    pub arn: String,
    pub account_id: String,
    pub state: String,
    pub usage: String,
    pub spec: String,
    /// `AWS` for AWS managed keys such as `aws/s3`, `CUSTOMER` otherwise.
    pub manager: String,
    /// When a key in state `PendingDeletion` will be deleted, in RFC 3339.
    pub deletion_date: Option<String>,
}

impl KeyDescription {
    pub fn is_aws_managed(&self) -> bool {
        self.manager == KeyManagerType::Aws.as_str()
    }

    pub fn is_symmetric_encryption_key(&self) -> bool {
        self.usage == KeyUsageType::EncryptDecrypt.as_str()
            && self.spec == KeySpec::SymmetricDefault.as_str()
    }

    pub fn is_enabled(&self) -> bool {
        self.state == KeyState::Enabled.as_str()
    }
}

#[async_trait::async_trait]
pub trait Kms: Send + Sync {
    /// Describes a key by key ARN, alias ARN, key id or alias name.
    async fn describe_key(&self, region: &str, key_id: &str) -> Result<KeyDescription, AwsError>;

    /// Returns the key policy document (`kms:GetKeyPolicy`, policy name `default`).
    async fn key_policy(&self, region: &str, key_arn: &str) -> Result<String, AwsError>;
}

/// [`Kms`] over the AWS SDK, one client per region.
pub struct KmsClient {
    config: aws_config::SdkConfig,
    limits: Arc<RateLimits>,
}

impl KmsClient {
    pub fn new(config: aws_config::SdkConfig) -> Self {
        Self {
            config,
            limits: Arc::new(RateLimits::unlimited()),
        }
    }

    /// Makes every call wait for a token of the shared rate limits first.
    pub fn with_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = limits;
        self
    }

    fn client(&self, region: &str) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::config::Builder::from(&self.config)
            .region(aws_sdk_kms::config::Region::new(region.to_string()))
            .interceptor(crate::metrics::AwsCallMetrics)
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    /// Waits for a rate-limit token, then returns the client for `region`.
    async fn limited(&self, region: &str) -> aws_sdk_kms::Client {
        self.limits.acquire(Service::Kms, region).await;
        self.client(region)
    }
}

#[async_trait::async_trait]
impl Kms for KmsClient {
    async fn describe_key(&self, region: &str, key_id: &str) -> Result<KeyDescription, AwsError> {
        let output = self
            .limited(region)
            .await
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("DescribeKey", error))?;
        let metadata = output.key_metadata();
        let text = |value: Option<&str>| value.unwrap_or_default().to_string();
        Ok(KeyDescription {
            arn: text(metadata.and_then(|m| m.arn())),
            account_id: text(metadata.and_then(|m| m.aws_account_id())),
            state: text(metadata.and_then(|m| m.key_state()).map(KeyState::as_str)),
            usage: text(
                metadata
                    .and_then(|m| m.key_usage())
                    .map(KeyUsageType::as_str),
            ),
            spec: text(metadata.and_then(|m| m.key_spec()).map(KeySpec::as_str)),
            manager: text(
                metadata
                    .and_then(|m| m.key_manager())
                    .map(KeyManagerType::as_str),
            ),
            deletion_date: metadata
                .and_then(|m| m.deletion_date())
                .and_then(|date| date.fmt(DateTimeFormat::DateTime).ok()),
        })
    }

    async fn key_policy(&self, region: &str, key_arn: &str) -> Result<String, AwsError> {
        let output = self
            .limited(region)
            .await
            .get_key_policy()
            .key_id(key_arn)
            .policy_name("default")
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetKeyPolicy", error))?;
        Ok(output.policy().unwrap_or_default().to_string())
    }
}
