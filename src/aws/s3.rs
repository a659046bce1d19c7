//! Amazon S3: where destination buckets are, how they encrypt by default, what their
//! policies demand, and how input objects are encrypted.

use std::sync::Arc;

use super::limits::{RateLimits, Service};
use super::{AwsError, ErrorClass};

#[async_trait::async_trait]
pub trait S3: Send + Sync {
    /// Returns the region of `bucket`, or `None` when the bucket does not exist.
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError>;

    /// Returns the default encryption of `bucket` in `region` (`s3:GetBucketEncryption`),
    /// `None` when it has none configured.
    async fn default_encryption(
        &self,
        region: &str,
        bucket: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError>;

    /// Returns the bucket policy document, `None` when the bucket has no policy.
    async fn bucket_policy(&self, region: &str, bucket: &str) -> Result<Option<String>, AwsError>;

    /// Returns how an object is encrypted (`s3:HeadObject`), `None` when it does not exist.
    async fn object_encryption(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError>;
}

/// Server-side encryption of an object or of a bucket's default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectEncryption {
    /// `AES256`, `aws:kms` or `aws:kms:dsse`; empty when unencrypted.
    pub algorithm: String,
    /// KMS key id or ARN for the `aws:kms` algorithms.
    pub kms_key_id: Option<String>,
}

impl ObjectEncryption {
    pub fn uses_kms(&self) -> bool {
        self.algorithm.starts_with("aws:kms")
    }
}

/// [`S3`] over the AWS SDK.
pub struct S3Client {
    config: aws_config::SdkConfig,
    client: aws_sdk_s3::Client,
    limits: Arc<RateLimits>,
}

impl S3Client {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            client: Self::build(config, None),
            config: config.clone(),
            limits: Arc::new(RateLimits::unlimited()),
        }
    }

    /// Makes every call wait for a token of the shared rate limits first.
    pub fn with_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = limits;
        self
    }

    fn build(config: &aws_config::SdkConfig, region: Option<&str>) -> aws_sdk_s3::Client {
        // Path-style addressing keeps bucket names out of host names, which emulators
        // and custom endpoints need; AWS accepts it for every bucket name it allows.
        let mut builder = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .interceptor(crate::metrics::AwsCallMetrics);
        if let Some(region) = region {
            builder = builder.region(aws_sdk_s3::config::Region::new(region.to_string()));
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    /// Waits for a rate-limit token, then returns a client for calls about a bucket,
    /// which S3 serves only in the bucket's region.
    async fn regional(&self, region: &str) -> aws_sdk_s3::Client {
        self.limits.acquire(Service::S3, region).await;
        Self::build(&self.config, Some(region))
    }
}

/// Turns a "not found" class of error into `None`.
fn absent_when_not_found<T>(
    result: Result<T, AwsError>,
    not_found_codes: &[&str],
) -> Result<Option<T>, AwsError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error)
            if error.class == ErrorClass::NotFound
                || error
                    .code
                    .as_deref()
                    .is_some_and(|code| not_found_codes.contains(&code)) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

#[async_trait::async_trait]
impl S3 for S3Client {
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError> {
        let home = self.config.region().map(|region| region.to_string());
        self.limits
            .acquire(Service::S3, home.as_deref().unwrap_or("us-east-1"))
            .await;
        let result = self
            .client
            .get_bucket_location()
            .bucket(bucket)
            .send()
            .await;
        match result {
            // S3 reports buckets in us-east-1 with an empty location constraint.
            Ok(output) => Ok(Some(
                output
                    .location_constraint()
                    .map(|constraint| constraint.as_str())
                    .filter(|constraint| !constraint.is_empty())
                    .unwrap_or("us-east-1")
                    .to_string(),
            )),
            Err(error) => {
                let error = AwsError::from_sdk("GetBucketLocation", error);
                if error.class == ErrorClass::NotFound {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    async fn default_encryption(
        &self,
        region: &str,
        bucket: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError> {
        let result = self
            .regional(region)
            .await
            .get_bucket_encryption()
            .bucket(bucket)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetBucketEncryption", error));
        let not_found = ["ServerSideEncryptionConfigurationNotFoundError"];
        let Some(output) = absent_when_not_found(result, &not_found)? else {
            return Ok(None);
        };
        let rule = output
            .server_side_encryption_configuration()
            .and_then(|configuration| configuration.rules().first())
            .and_then(|rule| rule.apply_server_side_encryption_by_default());
        Ok(rule.map(|rule| ObjectEncryption {
            algorithm: rule.sse_algorithm().as_str().to_string(),
            kms_key_id: rule.kms_master_key_id().map(str::to_string),
        }))
    }

    async fn bucket_policy(&self, region: &str, bucket: &str) -> Result<Option<String>, AwsError> {
        let result = self
            .regional(region)
            .await
            .get_bucket_policy()
            .bucket(bucket)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("GetBucketPolicy", error));
        let policy = absent_when_not_found(result, &["NoSuchBucketPolicy"])?;
        Ok(policy.and_then(|output| output.policy().map(str::to_string)))
    }

    async fn object_encryption(
        &self,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError> {
        let result = self
            .regional(region)
            .await
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|error| AwsError::from_sdk("HeadObject", error));
        let Some(output) = absent_when_not_found(result, &[])? else {
            return Ok(None);
        };
        Ok(Some(ObjectEncryption {
            algorithm: output
                .server_side_encryption()
                .map(|algorithm| algorithm.as_str().to_string())
                .unwrap_or_default(),
            kms_key_id: output.ssekms_key_id().map(str::to_string),
        }))
    }
}
