//! Counts the AWS calls the pre-submission checks spend on many jobs that share one role
//! and one KMS key, through the emulator proxy's per-operation counts.
//!
//! Run with the local environment up (`make bench-validation` starts one):
//! `cargo bench --bench validation_calls -- [JOBS]`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use mediaconvert_operator::api::MediaConvertJobSpec;
use mediaconvert_operator::aws::{IamClient, KmsClient, S3Client};
use mediaconvert_operator::validate::{CacheSettings, CachedAws, Checker, Freshness, Verdict};
use serde_json::{Value, json};

/// Validations in flight at once, as the operator's default concurrency allows.
const CONCURRENCY: usize = 8;

struct Scenario {
    name: &'static str,
    /// Whether each job reads its own input and writes its own folder.
    distinct_objects: bool,
    /// Whether each job gets an empty cache, as without caching.
    cold_cache: bool,
}

#[tokio::main]
async fn main() {
    mediaconvert_operator::install_crypto_provider();
    let jobs: usize = std::env::args()
        .skip(1)
        .find_map(|arg| arg.parse().ok())
        .unwrap_or(1000);
    let proxy = std::env::var("MCO_PROXY_URL")
        .expect("MCO_PROXY_URL is not set; source target/local-env/env from hack/env-up.sh");
    let fixtures = aws_fixtures::Aws::connect(&proxy).await;
    let seeded = fixtures
        .seed_default()
        .await
        .expect("failed to seed AWS state");
    prepare_inputs(&fixtures, jobs).await;
    let config = sdk_config(&proxy).await;

    println!(
        "validation calls for {jobs} jobs sharing role {}",
        seeded.role_arn
    );
    println!(
        "key {}, {CONCURRENCY} validations at a time\n",
        seeded.key_arn
    );
    println!(
        "{:<34} {:>6} {:>9} {:>11} {:>9}",
        "scenario", "jobs", "AWS calls", "calls/job", "seconds"
    );
    let scenarios = [
        Scenario {
            name: "shared objects, cached",
            distinct_objects: false,
            cold_cache: false,
        },
        Scenario {
            name: "own input and folder, cached",
            distinct_objects: true,
            cold_cache: false,
        },
        Scenario {
            name: "own input and folder, no cache",
            distinct_objects: true,
            cold_cache: true,
        },
    ];
    let mut details = Vec::new();
    for scenario in &scenarios {
        let counted = if scenario.cold_cache {
            jobs.min(100)
        } else {
            jobs
        };
        reset_calls(&proxy).await;
        let started = Instant::now();
        run(&config, &seeded, scenario, counted).await;
        let elapsed = started.elapsed();
        let calls = validation_calls(&proxy).await;
        let total: u64 = calls.values().sum();
        println!(
            "{:<34} {:>6} {:>9} {:>11.2} {:>9.1}",
            scenario.name,
            counted,
            total,
            total as f64 / counted as f64,
            elapsed.as_secs_f64()
        );
        details.push((scenario.name, calls));
    }
    println!("\ncalls by operation");
    for (name, calls) in details {
        println!("  {name}: {calls:?}");
    }
}

async fn sdk_config(proxy: &str) -> aws_config::SdkConfig {
    aws_config::from_env()
        .endpoint_url(proxy)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "bench",
        ))
        .load()
        .await
}

/// Uploads one input object per job, for the scenarios with distinct objects.
async fn prepare_inputs(fixtures: &aws_fixtures::Aws, jobs: usize) {
    let keys: Vec<String> = (0..jobs)
        .map(|index| format!("bench/episode-{index}.mp4"))
        .collect();
    let uploads = futures::stream::iter(keys.iter())
        .map(|key| fixtures.put_object("example-media-in", key, "us-east-1"))
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    for upload in uploads {
        upload.expect("failed to upload an input");
    }
}

async fn run(
    config: &aws_config::SdkConfig,
    seeded: &aws_fixtures::Seeded,
    scenario: &Scenario,
    jobs: usize,
) {
    let shared = checker(config);
    let outcomes = futures::stream::iter(0..jobs)
        .map(|index| {
            let checker = if scenario.cold_cache {
                checker(config)
            } else {
                shared.clone()
            };
            let spec = spec(seeded, scenario.distinct_objects.then_some(index));
            async move { checker.run(&spec, Freshness::Cached).await }
        })
        .buffer_unordered(CONCURRENCY)
        .collect::<Vec<_>>()
        .await;
    for outcome in outcomes {
        let outcome = outcome.expect("validation failed to reach AWS");
        if let Verdict::Reject { finding, .. } = outcome.verdict {
            panic!("a benchmark job failed validation: {}", finding.message);
        }
    }
}

fn checker(config: &aws_config::SdkConfig) -> Arc<Checker> {
    let aws = CachedAws::new(
        Arc::new(KmsClient::new(config.clone())),
        Arc::new(S3Client::new(config)),
        Arc::new(IamClient::new(config)),
        CacheSettings {
            ttl: Duration::from_secs(600),
            max_entries: 100_000,
        },
    );
    Arc::new(Checker::new(aws, "us-east-1".into()))
}

fn spec(seeded: &aws_fixtures::Seeded, episode: Option<usize>) -> MediaConvertJobSpec {
    let (input, folder) = match episode {
        Some(index) => (
            format!("bench/episode-{index}.mp4"),
            format!("bench/episode-{index}/"),
        ),
        None => ("trailer.mp4".to_string(), "bench/shared/".to_string()),
    };
    serde_json::from_value(json!({
        "role": seeded.role_arn,
        "encryption": {"type": "KMS", "kmsKeyArn": seeded.key_arn},
        "settings": {
            "Inputs": [{"FileInput": format!("s3://example-media-in/{input}")}],
            "OutputGroups": [{
                "Name": "File Group",
                "OutputGroupSettings": {"Type": "FILE_GROUP_SETTINGS", "FileGroupSettings": {
                    "Destination": format!("s3://example-media-out/{folder}")
                }},
                "Outputs": [{"ContainerSettings": {"Container": "MP4"}}]
            }]
        }
    }))
    .expect("benchmark spec is valid")
}

async fn reset_calls(proxy: &str) {
    let url = format!("{proxy}/__proxy/calls");
    reqwest::Client::new()
        .delete(url)
        .send()
        .await
        .expect("failed to reset proxy counts");
}

/// Calls counted by the proxy, without the MediaConvert ones.
async fn validation_calls(proxy: &str) -> BTreeMap<String, u64> {
    let url = format!("{proxy}/__proxy/calls");
    let counts: BTreeMap<String, Value> = reqwest::get(url)
        .await
        .expect("failed to read proxy counts")
        .json()
        .await
        .expect("proxy counts are not JSON");
    counts
        .into_iter()
        .filter(|(operation, _)| !operation.starts_with("mediaconvert:"))
        .map(|(operation, count)| (operation, count.as_u64().unwrap_or_default()))
        .collect()
}
