//! Amazon S3: where destination buckets are.

use super::{AwsError, ErrorClass};

#[async_trait::async_trait]
pub trait S3: Send + Sync {
    /// Returns the region of `bucket`, or `None` when the bucket does not exist.
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError>;
}

/// [`S3`] over the AWS SDK.
pub struct S3Client {
    client: aws_sdk_s3::Client,
}

impl S3Client {
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        // Path-style addressing keeps bucket names out of host names, which emulators
        // and custom endpoints need; AWS accepts it for every bucket name it allows.
        let config = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(true)
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
        }
    }
}

#[async_trait::async_trait]
impl S3 for S3Client {
    async fn bucket_region(&self, bucket: &str) -> Result<Option<String>, AwsError> {
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
}
