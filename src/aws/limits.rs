//! Client-side rate limits: one token bucket per AWS service and region, shared by every
//! reconcile, so a burst of new resources stays under the account's request quotas
//! instead of running into throttling.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// AWS services the operator calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    MediaConvert,
    Kms,
    Iam,
    S3,
}

impl Service {
    const ALL: [Service; 4] = [
        Service::MediaConvert,
        Service::Kms,
        Service::Iam,
        Service::S3,
    ];

    fn name(self) -> &'static str {
        match self {
            Service::MediaConvert => "mediaconvert",
            Service::Kms => "kms",
            Service::Iam => "iam",
            Service::S3 => "s3",
        }
    }

    /// Requests per second allowed when no flag sets a rate. These are estimates kept
    /// below the default AWS quotas of each service's busiest operation, so raise them
    /// when the account has higher quotas.
    fn default_rate(self) -> u32 {
        match self {
            Service::MediaConvert => 10,
            Service::Kms => 50,
            Service::Iam => 5,
            Service::S3 => 50,
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A rate for one service, written `SERVICE=REQUESTS_PER_SECOND` (`kms=20`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServiceRate {
    pub service: Service,
    pub per_second: NonZeroU32,
}

impl FromStr for ServiceRate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, rate) = text.split_once('=').ok_or_else(|| {
            format!("invalid rate {text:?}; write SERVICE=REQUESTS_PER_SECOND, such as kms=20")
        })?;
        let service = Service::ALL
            .into_iter()
            .find(|service| service.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown service {name:?} in {text:?}; use mediaconvert, kms, iam or s3")
            })?;
        let per_second = rate.trim().parse::<NonZeroU32>().map_err(|_| {
            format!("invalid rate {rate:?} in {text:?}; give a whole number above 0")
        })?;
        Ok(Self {
            service,
            per_second,
        })
    }
}

/// Token buckets per service and region, created on first use.
pub struct RateLimits {
    rates: HashMap<Service, NonZeroU32>,
    buckets: Mutex<HashMap<(Service, String), Arc<DefaultDirectRateLimiter>>>,
}

impl RateLimits {
    /// Builds the limits from the defaults, overridden by `overrides`.
    pub fn new(overrides: &[ServiceRate]) -> Self {
        let mut rates: HashMap<Service, NonZeroU32> = Service::ALL
            .into_iter()
            .map(|service| {
                (
                    service,
                    NonZeroU32::new(service.default_rate()).unwrap_or(NonZeroU32::MIN),
                )
            })
            .collect();
        for rate in overrides {
            rates.insert(rate.service, rate.per_second);
        }
        Self {
            rates,
            buckets: Mutex::default(),
        }
    }

    /// Limits without any configured rate, for tests and tools that need none.
    pub fn unlimited() -> Self {
        let rates = Service::ALL
            .into_iter()
            .map(|service| (service, NonZeroU32::MAX))
            .collect();
        Self {
            rates,
            buckets: Mutex::default(),
        }
    }

    /// Waits until a request to `service` in `region` fits its rate.
    pub async fn acquire(&self, service: Service, region: &str) {
        let bucket = self.bucket(service, region);
        bucket.until_ready().await;
    }

    fn bucket(&self, service: Service, region: &str) -> Arc<DefaultDirectRateLimiter> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let rate = self.rates.get(&service).copied().unwrap_or(NonZeroU32::MAX);
        buckets
            .entry((service, region.to_string()))
            .or_insert_with(|| Arc::new(RateLimiter::direct(Quota::per_second(rate))))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parsed() {
        let rate: ServiceRate = "KMS=20".parse().unwrap();
        assert_eq!(rate.service, Service::Kms);
        assert_eq!(rate.per_second.get(), 20);
        assert!(
            "kms"
                .parse::<ServiceRate>()
                .unwrap_err()
                .contains("SERVICE=")
        );
        assert!(
            "sqs=3"
                .parse::<ServiceRate>()
                .unwrap_err()
                .contains("unknown service")
        );
        assert!(
            "s3=0"
                .parse::<ServiceRate>()
                .unwrap_err()
                .contains("above 0")
        );
    }

    #[test]
    fn bucket_holds_one_second_of_requests() {
        let limits = RateLimits::new(&["iam=10".parse().unwrap()]);
        let bucket = limits.bucket(Service::Iam, "us-east-1");
        for request in 0..10 {
            assert!(bucket.check().is_ok(), "request {request} was limited");
        }
        assert!(bucket.check().is_err(), "the 11th request was not limited");
    }

    #[test]
    fn regions_have_own_buckets() {
        let limits = RateLimits::new(&["s3=1".parse().unwrap()]);
        assert!(limits.bucket(Service::S3, "us-east-1").check().is_ok());
        assert!(limits.bucket(Service::S3, "us-east-1").check().is_err());
        assert!(limits.bucket(Service::S3, "us-west-2").check().is_ok());
    }

    #[test]
    fn defaults_apply_without_overrides() {
        let limits = RateLimits::new(&[]);
        let bucket = limits.bucket(Service::Iam, "us-east-1");
        let allowed = (0..100).take_while(|_| bucket.check().is_ok()).count();
        assert_eq!(allowed as u32, Service::Iam.default_rate());
    }
}
