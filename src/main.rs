#![forbid(unsafe_code)]

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use mediaconvert_operator::aws::limits::{RateLimits, ServiceRate};
use mediaconvert_operator::aws::{IamClient, KmsClient, MediaConvertClient, S3Client};
use mediaconvert_operator::controller::{self, Context};
use mediaconvert_operator::events::JobEvents;
use mediaconvert_operator::health::Health;
use mediaconvert_operator::leader::{self, Elector, LeaderElectionArgs, LeaseConfig};
use mediaconvert_operator::metrics::Metrics;
use mediaconvert_operator::server;
use mediaconvert_operator::telemetry::{self, LogFormat};
use mediaconvert_operator::validate::{CacheSettings, CachedAws, Checker};

/// Kubernetes operator for AWS Elemental MediaConvert jobs with encrypted outputs.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the controller against the cluster of the current kubeconfig or service account.
    /// A flag given twice takes its last value.
    #[command(args_override_self = true)]
    Run(Box<RunArgs>),
    /// Print the MediaConvertJob CustomResourceDefinition as YAML.
    Crd,
}

#[derive(clap::Args)]
struct RunArgs {
    /// AWS region for jobs that set no spec.region.
    #[arg(long, env = "MCO_DEFAULT_REGION", default_value = "us-east-1")]
    default_region: String,

    /// Watch only these namespaces (repeat the flag or separate with commas); all
    /// namespaces when unset.
    #[arg(
        long = "namespace",
        env = "MCO_NAMESPACE",
        value_delimiter = ',',
        value_parser = parse_namespace
    )]
    namespaces: Vec<String>,

    /// Source of the state of submitted jobs. `batched` reads all in-flight jobs of a
    /// region and queue from ListJobs pages, and `poll` reads each job with GetJob.
    #[arg(long, env = "MCO_STATUS_SYNC", value_enum, default_value = "batched")]
    status_sync: controller::StatusSyncMode,

    /// Seconds between reads of queued or running jobs while they change. The batched
    /// sync doubles the interval while nothing changes, up to --max-poll-interval-seconds.
    #[arg(long, env = "MCO_POLL_INTERVAL_SECONDS", default_value_t = 5)]
    poll_interval_seconds: u64,

    /// Maximum interval of the batched sync, reached while no job changes.
    #[arg(long, env = "MCO_MAX_POLL_INTERVAL_SECONDS", default_value_t = 60)]
    max_poll_interval_seconds: u64,

    /// Seconds before the first retry after a failure; doubles per consecutive failure.
    #[arg(long, env = "MCO_RETRY_BASE_SECONDS", default_value_t = 5)]
    retry_base_seconds: u64,

    /// Maximum seconds between retries.
    #[arg(long, env = "MCO_RETRY_MAX_SECONDS", default_value_t = 300)]
    retry_max_seconds: u64,

    /// Resources reconciled at the same time, per watched namespace. Resources whose job
    /// changed are reconciled beside those, with as many at the same time.
    #[arg(long, env = "MCO_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,

    /// Seconds for which an AWS response of the pre-submission checks is reused by other jobs.
    #[arg(long, env = "MCO_VALIDATION_CACHE_SECONDS", default_value_t = 300)]
    validation_cache_seconds: u64,

    /// Maximum number of AWS responses the pre-submission checks keep.
    #[arg(long, env = "MCO_VALIDATION_CACHE_ENTRIES", default_value_t = 10_000)]
    validation_cache_entries: u64,

    /// Client-side rate of AWS requests per second for one service, as SERVICE=RATE
    /// (mediaconvert, kms, iam or s3), repeatable or comma-separated. Defaults:
    /// mediaconvert=10, kms=50, iam=5, s3=50, per region.
    #[arg(
        long = "aws-rate-limit",
        env = "MCO_AWS_RATE_LIMITS",
        value_delimiter = ','
    )]
    aws_rate_limits: Vec<ServiceRate>,

    /// Seconds one attempt of an AWS call may take before it is abandoned and retried.
    #[arg(long, env = "MCO_AWS_ATTEMPT_TIMEOUT_SECONDS", default_value_t = 20)]
    aws_attempt_timeout_seconds: u64,

    /// Seconds an AWS call may take with all its retries before it fails. The reconcile
    /// is then retried with backoff.
    #[arg(long, env = "MCO_AWS_OPERATION_TIMEOUT_SECONDS", default_value_t = 60)]
    aws_operation_timeout_seconds: u64,

    /// URL of an SQS queue that an EventBridge rule fills with MediaConvert "Job State
    /// Change" events. When set, each event updates its resource at once, and the status
    /// sync only catches what events miss.
    #[arg(long, env = "MCO_EVENTS_QUEUE_URL")]
    events_queue_url: Option<String>,

    /// Region of the events queue; defaults to --default-region.
    #[arg(long, env = "MCO_EVENTS_QUEUE_REGION")]
    events_queue_region: Option<String>,

    /// With --events-queue-url, seconds without an event or a read after which the
    /// batched sync reads a job. MediaConvert sends a STATUS_UPDATE event about once a
    /// minute while a job progresses, but none while it waits in its queue.
    #[arg(long, env = "MCO_EVENTS_STALENESS_SECONDS", default_value_t = 90)]
    events_staleness_seconds: u64,

    /// Log format.
    #[arg(long, env = "MCO_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,

    /// Address of the HTTP server for /metrics, /healthz and /readyz; port 0 picks a free
    /// port, which the start-up log line shows.
    #[arg(long, env = "MCO_METRICS_ADDRESS", default_value = "0.0.0.0:8080")]
    metrics_address: SocketAddr,

    #[command(flatten)]
    leader_election: LeaderElectionArgs,
}

/// Accepts a namespace name: a DNS label of at most 63 lowercase letters, digits and
/// hyphens that starts and ends with a letter or digit.
fn parse_namespace(value: &str) -> Result<String, String> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if valid {
        Ok(value.to_string())
    } else {
        Err(format!(
            "'{value}' is not a namespace name; use at most 63 lowercase letters, digits and hyphens, starting and ending with a letter or digit"
        ))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", mediaconvert_operator::crd_yaml());
            Ok(())
        }
        Command::Run(args) => run(*args).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    telemetry::init(args.log_format);
    mediaconvert_operator::install_crypto_provider();
    // The SDK's default chain supplies credentials (IRSA, Pod Identity, environment) and
    // honours AWS_ENDPOINT_URL and its per-service variants. Without timeouts a call whose
    // response never comes would hold its reconcile, and the resource, forever.
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .operation_attempt_timeout(Duration::from_secs(args.aws_attempt_timeout_seconds.max(1)))
        .operation_timeout(Duration::from_secs(
            args.aws_operation_timeout_seconds.max(1),
        ))
        .build();
    let aws = aws_config::from_env().timeout_config(timeouts).load().await;
    let client = kube::Client::try_default().await?;

    let leader_election = args.leader_election.leader_election;
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::new(leader_election));
    let listener = server::bind(args.metrics_address).await?;
    tracing::info!(address = %listener.local_addr()?, "Serving metrics and probes");
    tokio::spawn(server::serve(listener, metrics.clone(), health.clone()));

    let cache = CacheSettings {
        ttl: Duration::from_secs(args.validation_cache_seconds),
        max_entries: args.validation_cache_entries,
    };
    let limits = Arc::new(RateLimits::new(&args.aws_rate_limits));
    let lookups = CachedAws::new(
        Arc::new(KmsClient::new(aws.clone()).with_limits(limits.clone())),
        Arc::new(S3Client::new(&aws).with_limits(limits.clone())),
        Arc::new(IamClient::new(&aws).with_limits(limits.clone())),
        cache,
    );
    let checker = Checker::new(lookups, args.default_region.clone());
    let settings = controller::Settings {
        status_sync: args.status_sync,
        poll_interval: Duration::from_secs(args.poll_interval_seconds.max(1)),
        max_poll_interval: Duration::from_secs(args.max_poll_interval_seconds.max(1)),
        events_staleness: args
            .events_queue_url
            .as_ref()
            .map(|_| Duration::from_secs(args.events_staleness_seconds.max(1))),
        retry_base: Duration::from_secs(args.retry_base_seconds.max(1)),
        retry_max: Duration::from_secs(args.retry_max_seconds.max(1)),
        concurrency: args.concurrency.max(1),
    };
    let context = Context::new(
        client.clone(),
        Arc::new(MediaConvertClient::new(aws.clone()).with_limits(limits)),
        checker,
        settings,
    )
    .with_telemetry(metrics.clone(), health.clone());
    let events = args.events_queue_url.clone().map(|queue_url| {
        let region = args
            .events_queue_region
            .as_deref()
            .unwrap_or(&args.default_region);
        JobEvents::new(
            &aws,
            region,
            queue_url,
            context.sync.clone(),
            metrics.clone(),
        )
    });
    let controller = {
        let namespaces = args.namespaces.clone();
        async move {
            let controller = controller::run(Arc::new(context), namespaces);
            match events {
                // The events reader stops with the controller, as when leadership is lost.
                Some(events) => {
                    tokio::select! {
                        () = controller => {}
                        () = events.run() => {}
                    }
                }
                None => controller.await,
            }
        }
    };
    tracing::info!(default_region = %args.default_region, namespaces = ?args.namespaces, leader_election, "Starting controller");

    if leader_election {
        let config = LeaseConfig::from_args(&args.leader_election, client.default_namespace())?;
        let elector = Elector::new(client, config);
        leader::lead(elector, &health, &metrics, controller).await?;
    } else {
        metrics.set_leader(true);
        controller.await;
    }
    tracing::info!("Controller stopped");
    Ok(())
}
