//! A bounded, expiring cache of AWS responses, shared by every validation.
//!
//! Jobs that share a role, key and buckets need one round of AWS calls between them.
//! A response that failed a job must not fail its retry once the user fixed IAM or KMS,
//! so a retry accepts only responses fetched after its previous attempt ([`Freshness`]).

use std::any::Any;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::aws::{
    AwsError, ErrorClass, Iam, KeyDescription, Kms, ObjectEncryption, RoleDescription, S3,
    SimulatedAction, Simulation,
};

/// Limits of the cache.
#[derive(Clone, Copy, Debug)]
pub struct CacheSettings {
    /// Time for which a response is reused.
    pub ttl: Duration,
    /// Maximum number of responses kept. The least recently used are evicted first.
    pub max_entries: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(300),
            max_entries: 10_000,
        }
    }
}

/// Oldest cached response a validation run accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Freshness {
    /// Any cached response within its time to live.
    #[default]
    Cached,
    /// Only responses fetched after this time, such as the previous failed attempt.
    FetchedAfter(SystemTime),
}

struct Entry {
    fetched_at: SystemTime,
    /// A `Result<T, AwsError>` for the `T` of the operation named in the key.
    answer: Box<dyn Any + Send + Sync>,
}

/// The AWS clients the checks read from, behind the shared cache.
#[derive(Clone)]
pub struct CachedAws {
    kms: Arc<dyn Kms>,
    s3: Arc<dyn S3>,
    iam: Arc<dyn Iam>,
    entries: moka::future::Cache<String, Arc<Entry>>,
}

impl CachedAws {
    pub fn new(
        kms: Arc<dyn Kms>,
        s3: Arc<dyn S3>,
        iam: Arc<dyn Iam>,
        settings: CacheSettings,
    ) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.max_entries)
            .time_to_live(settings.ttl)
            .build();
        Self {
            kms,
            s3,
            iam,
            entries,
        }
    }

    /// Returns the cached answer for `key`, or fetches it. Concurrent misses on one key
    /// share a single call. Answers that will not change on a retry (not found, access
    /// denied, invalid) are cached like successes; throttling and transient failures are
    /// not.
    async fn answer<T, F>(&self, key: String, freshness: Freshness, fetch: F) -> Result<T, AwsError>
    where
        T: Clone + Send + Sync + 'static,
        F: Future<Output = Result<T, AwsError>> + Send,
    {
        if let Some(entry) = self.entries.get(&key).await {
            let fresh = match freshness {
                Freshness::Cached => true,
                Freshness::FetchedAfter(time) => entry.fetched_at > time,
            };
            if let (true, Some(answer)) =
                (fresh, entry.answer.downcast_ref::<Result<T, AwsError>>())
            {
                return answer.clone();
            }
            self.entries.invalidate(&key).await;
        }
        let load = async {
            let fetched_at = SystemTime::now();
            let answer = match fetch.await {
                Err(error)
                    if matches!(error.class, ErrorClass::Throttled | ErrorClass::Transient) =>
                {
                    return Err(error);
                }
                answer => answer,
            };
            Ok(Arc::new(Entry {
                fetched_at,
                answer: Box::new(answer),
            }))
        };
        let entry = self
            .entries
            .try_get_with(key, load)
            .await
            .map_err(|error: Arc<AwsError>| (*error).clone())?;
        match entry.answer.downcast_ref::<Result<T, AwsError>>() {
            Some(answer) => answer.clone(),
            None => Err(AwsError::internal(
                "cache entry contains a response of another type",
            )),
        }
    }

    pub async fn describe_key(
        &self,
        freshness: Freshness,
        region: &str,
        key: &str,
    ) -> Result<KeyDescription, AwsError> {
        let cache_key = format!("kms:DescribeKey {region} {key}");
        self.answer(cache_key, freshness, self.kms.describe_key(region, key))
            .await
    }

    pub async fn key_policy(
        &self,
        freshness: Freshness,
        region: &str,
        key_arn: &str,
    ) -> Result<String, AwsError> {
        let cache_key = format!("kms:GetKeyPolicy {region} {key_arn}");
        self.answer(cache_key, freshness, self.kms.key_policy(region, key_arn))
            .await
    }

    pub async fn bucket_region(
        &self,
        freshness: Freshness,
        bucket: &str,
    ) -> Result<Option<String>, AwsError> {
        let cache_key = format!("s3:GetBucketLocation {bucket}");
        self.answer(cache_key, freshness, self.s3.bucket_region(bucket))
            .await
    }

    pub async fn default_encryption(
        &self,
        freshness: Freshness,
        region: &str,
        bucket: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError> {
        let cache_key = format!("s3:GetBucketEncryption {bucket}");
        let fetch = self.s3.default_encryption(region, bucket);
        self.answer(cache_key, freshness, fetch).await
    }

    pub async fn bucket_policy(
        &self,
        freshness: Freshness,
        region: &str,
        bucket: &str,
    ) -> Result<Option<String>, AwsError> {
        let cache_key = format!("s3:GetBucketPolicy {bucket}");
        self.answer(cache_key, freshness, self.s3.bucket_policy(region, bucket))
            .await
    }

    pub async fn object_encryption(
        &self,
        freshness: Freshness,
        region: &str,
        bucket: &str,
        key: &str,
    ) -> Result<Option<ObjectEncryption>, AwsError> {
        let cache_key = format!("s3:HeadObject {bucket}/{key}");
        let fetch = self.s3.object_encryption(region, bucket, key);
        self.answer(cache_key, freshness, fetch).await
    }

    pub async fn role(
        &self,
        freshness: Freshness,
        name: &str,
    ) -> Result<Option<RoleDescription>, AwsError> {
        let cache_key = format!("iam:GetRole {name}");
        self.answer(cache_key, freshness, self.iam.get_role(name))
            .await
    }

    pub async fn simulate(
        &self,
        freshness: Freshness,
        simulation: &Simulation,
    ) -> Result<Vec<SimulatedAction>, AwsError> {
        let cache_key = format!("iam:SimulatePrincipalPolicy {simulation:?}");
        self.answer(cache_key, freshness, self.iam.simulate(simulation))
            .await
    }

    pub async fn caller_arn(&self, freshness: Freshness) -> Result<String, AwsError> {
        let cache_key = "sts:GetCallerIdentity".to_string();
        self.answer(cache_key, freshness, self.iam.caller_arn())
            .await
    }
}
