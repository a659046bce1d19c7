//! Helpers for integration tests against the local API server, the AWS emulator and the
//! emulator proxy started by `hack/env-up.sh`.
#![allow(dead_code)]

pub mod chart;
pub mod cluster;
pub mod scrape;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client, ResourceExt};
use mediaconvert_operator::api::MediaConvertJob;
use serde_json::{Value, json};

/// Maximum wait for any condition in a test.
pub const WAIT: Duration = Duration::from_secs(60);

/// The local environment, read from the variables that `hack/env-up.sh` writes.
pub struct Env {
    pub client: Client,
    pub proxy_url: String,
    pub fakecloud_url: String,
}

pub fn required_var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set; run the tests with `make test`, which starts the local API server and AWS emulator")
    })
}

impl Env {
    pub async fn get() -> Self {
        required_var("KUBECONFIG");
        mediaconvert_operator::install_crypto_provider();
        let client = Client::try_default()
            .await
            .expect("failed to build a client from KUBECONFIG");
        Self {
            client,
            proxy_url: required_var("MCO_PROXY_URL"),
            fakecloud_url: required_var("MCO_FAKECLOUD_URL"),
        }
    }

    pub fn proxy(&self) -> Proxy {
        Proxy {
            url: self.proxy_url.clone(),
            http: reqwest::Client::new(),
        }
    }

    pub async fn aws(&self) -> aws_fixtures::Aws {
        aws_fixtures::Aws::connect(&self.fakecloud_url).await
    }

    /// SDK configuration for calls through the emulator proxy, as a script outside the
    /// operator would make them.
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let proxy = required_var("MCO_PROXY_URL");
        aws_config::from_env()
            .endpoint_url(proxy)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .load()
            .await
    }
}

/// A namespace of its own for one test, deleted when dropped.
pub struct TestNamespace {
    pub name: String,
    client: Client,
}

impl TestNamespace {
    pub async fn create(client: &Client, prefix: &str) -> Self {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let name = format!("{prefix}-{suffix}");
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        let api: Api<Namespace> = Api::all(client.clone());
        api.create(&PostParams::default(), &namespace)
            .await
            .expect("failed to create namespace");
        Self {
            name,
            client: client.clone(),
        }
    }

    pub fn jobs(&self) -> Api<MediaConvertJob> {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        // Without a namespace controller, deleting a namespace leaves its objects in etcd;
        // that is harmless for a test environment that is thrown away afterwards.
        let api: Api<Namespace> = Api::all(self.client.clone());
        let name = self.name.clone();
        let handle = tokio::runtime::Handle::try_current();
        if let Ok(handle) = handle {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::default()).await;
            });
        }
    }
}

/// Access key ID of the operator of `namespace`. fakecloud treats every key starting with
/// `test` as the account root, and the emulator proxy can fault and count the calls signed
/// with one key, so each test's AWS traffic is separated from that of tests beside it.
pub fn access_key(namespace: &str) -> String {
    format!("test-{namespace}")
}

/// The operator binary running as a local process for one namespace, killed when dropped.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(namespace: &str) -> Self {
        Self::start_with(namespace, &[])
    }

    pub fn start_with(namespace: &str, extra_args: &[&str]) -> Self {
        Self::start_named(namespace, namespace, extra_args, &[])
    }

    /// Starts an operator for `namespace` on the API server of `kubeconfig`. A restarted
    /// operator appends to the same log.
    pub fn start_against(namespace: &str, kubeconfig: &str, extra_args: &[&str]) -> Self {
        let envs = [("KUBECONFIG", kubeconfig.to_string())];
        Self::start_named(namespace, namespace, extra_args, &envs)
    }

    /// Starts the operator for `namespace` with the test settings plus `extra_args` and
    /// `envs`, logging to `LOG_NAME.log`.
    pub fn start_named(
        log_name: &str,
        namespace: &str,
        extra_args: &[&str],
        envs: &[(&str, String)],
    ) -> Self {
        let mut args: Vec<String> = [
            "run",
            "--namespace",
            namespace,
            "--poll-interval-seconds",
            "1",
            "--max-poll-interval-seconds",
            "4",
            "--retry-base-seconds",
            "1",
            "--retry-max-seconds",
            "5",
        ]
        .iter()
        .chain(extra_args)
        .map(|arg| arg.to_string())
        .collect();
        args.extend(["--metrics-address".into(), "127.0.0.1:0".into()]);
        let mut envs = envs.to_vec();
        envs.insert(0, ("AWS_ACCESS_KEY_ID", access_key(namespace)));
        Self::launch(log_name, &args, &envs)
    }

    /// Starts the operator with exactly `args`, plus `envs`, logging to `LOG_NAME.log`.
    /// The operator uses the shared API server unless `envs` names another `KUBECONFIG`,
    /// and a restarted operator appends to the same log.
    pub fn launch(log_name: &str, args: &[String], envs: &[(&str, String)]) -> Self {
        let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("operator-logs");
        std::fs::create_dir_all(&log_dir).expect("failed to create log dir");
        let log = log_dir.join(format!("{log_name}.log"));
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("failed to open log file");
        let child = Command::new(env!("CARGO_BIN_EXE_mediaconvert-operator"))
            .args(args)
            .env("AWS_ENDPOINT_URL", required_var("MCO_PROXY_URL"))
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("KUBECONFIG", required_var("KUBECONFIG"))
            .env("RUST_LOG", "info,mediaconvert_operator=debug")
            .envs(envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("failed to start the operator");
        Self { child, log }
    }

    /// Waits for the start-up log line and returns the base URL of the metrics server.
    pub async fn metrics_url(&self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let log = self.log_text();
            let address = log
                .lines()
                .find(|line| line.contains("Serving metrics and probes"))
                .and_then(|line| line.split("address=").nth(1))
                .and_then(|rest| rest.split_whitespace().next());
            if let Some(address) = address {
                return format!("http://{address}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the operator did not start its metrics server; log:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Counts the log lines that contain `text`.
    pub fn log_lines_with(&self, text: &str) -> usize {
        self.log_text()
            .lines()
            .filter(|line| line.contains(text))
            .count()
    }

    /// Stops the process at once, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Reports whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Control API of the emulator proxy.
pub struct Proxy {
    pub url: String,
    http: reqwest::Client,
}

impl Proxy {
    async fn get(&self, route: &str) -> Value {
        self.http
            .get(format!("{}/__proxy/{route}", self.url))
            .send()
            .await
            .expect("proxy unreachable")
            .json()
            .await
            .expect("proxy returned invalid JSON")
    }

    async fn post(&self, route: &str, body: &Value) {
        let response = self
            .http
            .post(format!("{}/__proxy/{route}", self.url))
            .json(body)
            .send()
            .await
            .expect("proxy unreachable");
        let status = response.status();
        assert!(
            status.is_success(),
            "POST /__proxy/{route} failed: {status}"
        );
    }

    /// Scripts the timeline of every job whose user metadata names `namespace`.
    pub async fn script_namespace(&self, namespace: &str, timeline: Value) {
        let rule = json!({
            "userMetadata": {"mediaconvert.operators.dev/namespace": namespace},
            "timeline": timeline,
        });
        self.post("timelines/rules", &rule).await;
    }

    /// Appends a fault rule that applies only to jobs of `namespace`.
    pub async fn fault_namespace(&self, namespace: &str, mut rule: Value) {
        rule["userMetadata"] = json!({"mediaconvert.operators.dev/namespace": namespace});
        self.post("faults/rules", &rule).await;
    }

    /// Jobs created upstream whose user metadata names `namespace`.
    pub async fn jobs_in(&self, namespace: &str) -> Vec<Value> {
        let jobs = self.get("jobs").await;
        let jobs = jobs.as_array().cloned().unwrap_or_default();
        jobs.into_iter()
            .filter(|job| job["userMetadata"]["mediaconvert.operators.dev/namespace"] == namespace)
            .collect()
    }

    /// Returns the job with `id` from the proxy's job list, with its scripted status.
    pub async fn get_job(&self, id: &str) -> Value {
        let jobs = self.get("jobs").await;
        let found = jobs
            .as_array()
            .into_iter()
            .flatten()
            .find(|job| job["id"] == id);
        found
            .cloned()
            .unwrap_or_else(|| panic!("proxy has no job {id}"))
    }

    /// Appends a fault rule that applies to every AWS call of the operator of `namespace`,
    /// whatever the operation.
    pub async fn fault_operator(&self, namespace: &str, mut rule: Value) {
        rule["accessKeyId"] = json!(access_key(namespace));
        self.post("faults/rules", &rule).await;
    }

    /// Returns how often the fault rules of `namespace` fired, summed.
    pub async fn faults_fired(&self, namespace: &str) -> u64 {
        let view = self.get("faults").await;
        let key = access_key(namespace);
        view["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|rule| {
                rule["userMetadata"]["mediaconvert.operators.dev/namespace"] == namespace
                    || rule["accessKeyId"] == key.as_str()
            })
            .filter_map(|rule| rule["fired"].as_u64())
            .sum()
    }

    /// Returns the AWS calls of the operator of `namespace` by `service:Operation`,
    /// including those a fault rejected.
    pub async fn calls_of(&self, namespace: &str) -> Value {
        let key = access_key(namespace);
        self.get(&format!("calls?accessKeyId={key}")).await
    }

    /// Returns how often the operator of `namespace` called `operation`.
    pub async fn call_count(&self, namespace: &str, operation: &str) -> u64 {
        self.calls_of(namespace).await[operation]
            .as_u64()
            .unwrap_or_default()
    }
}

/// Waits until `check` returns true, polling it.
pub async fn wait_until<F, Fut>(expected: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {expected}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the named job is gone from the API server.
pub async fn wait_deleted(api: &Api<MediaConvertJob>, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt(name).await.expect("get failed").is_some() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} still present after deletion"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Builds a timeline that queues briefly, progresses over `progress_ms`, then ends in `last`.
pub fn timeline(progress_ms: u64, last: Value) -> Value {
    let mut end = last;
    end["atMs"] = json!(progress_ms + 400);
    json!({"steps": [
        {"atMs": 0, "status": "SUBMITTED"},
        {"atMs": 300, "status": "PROGRESSING", "percent": 0, "currentPhase": "TRANSCODING"},
        {"atMs": progress_ms + 300, "status": "PROGRESSING", "percent": 100, "currentPhase": "UPLOADING"},
        end,
    ]})
}

pub fn complete() -> Value {
    json!({"status": "COMPLETE"})
}

/// Parses a manifest written in YAML.
pub fn manifest(yaml: &str) -> MediaConvertJob {
    serde_yaml::from_str(yaml).expect("test manifest is not a valid MediaConvertJob")
}

/// Settings of most cases: one file group writing MP4 to `example-media-out`.
pub const BASE_SETTINGS: &str = r#"
    Inputs:
      - FileInput: s3://example-media-in/trailer.mp4
    OutputGroups:
      - Name: File Group
        OutputGroupSettings:
          Type: FILE_GROUP_SETTINGS
          FileGroupSettings:
            Destination: s3://example-media-out/trailer/
        Outputs:
          - ContainerSettings: {Container: MP4}
            VideoDescription:
              CodecSettings:
                Codec: H_264
                H264Settings: {RateControlMode: QVBR, MaxBitrate: 5000000}
"#;

/// Creates `job` in its namespace.
pub async fn create(api: &Api<MediaConvertJob>, job: &MediaConvertJob) -> MediaConvertJob {
    api.create(&PostParams::default(), job)
        .await
        .unwrap_or_else(|error| panic!("failed to create {}: {error}", job.name_any()))
}

/// Waits until `check` holds for the named job, polling the API server.
pub async fn wait_for(
    api: &Api<MediaConvertJob>,
    name: &str,
    expected: &str,
    check: impl Fn(&MediaConvertJob) -> bool,
) -> MediaConvertJob {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(job) = api.get(name).await {
            if check(&job) {
                return job;
            }
            last = Some(job);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = last
        .and_then(|job| job.status)
        .map(|status| serde_json::to_string_pretty(&status).unwrap_or_default());
    panic!(
        "timed out waiting for {name} to be {expected}; last status: {}",
        status.unwrap_or_else(|| "none".into())
    );
}

pub fn phase_is(phase: &'static str) -> impl Fn(&MediaConvertJob) -> bool {
    move |job| {
        job.status
            .as_ref()
            .and_then(|s| s.phase)
            .is_some_and(|p| p.to_string() == phase)
    }
}

/// Returns the condition of `kind` on `job`, panicking when it is missing.
pub fn condition(
    job: &MediaConvertJob,
    kind: &str,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let status = job.status.as_ref().expect("job has no status");
    status
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .cloned()
        .unwrap_or_else(|| panic!("no {kind} condition in {:?}", status.conditions))
}

/// Installs the generated CRD by server-side apply and waits until it is established.
pub async fn install_crd(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    use kube::runtime::wait::{await_condition, conditions};

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = mediaconvert_operator::crd();
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply("integration-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the API server rejected the CRD");
    let established = await_condition(crds, &name, conditions::is_crd_established());
    tokio::time::timeout(WAIT, established)
        .await
        .expect("CRD not established in time")
        .expect("watch failed");
}

pub const ROLE: &str = "arn:aws:iam::111122223333:role/MediaConvertRole";

pub struct Setup {
    pub env: Env,
    pub namespace: TestNamespace,
    pub operator: Operator,
    pub seeded: aws_fixtures::Seeded,
}

impl Setup {
    /// Returns the jobs that reached the emulator for this test's namespace.
    pub async fn submitted_jobs(&self) -> Vec<Value> {
        self.env.proxy().jobs_in(&self.namespace.name).await
    }
}

/// Installs the CRD, seeds AWS and creates a fresh namespace whose jobs follow
/// `timeline`, without starting an operator.
pub async fn prepare(prefix: &str, timeline: Value) -> (Env, TestNamespace, aws_fixtures::Seeded) {
    let env = Env::get().await;
    install_crd(&env.client).await;
    let seeded = env
        .aws()
        .await
        .seed_default()
        .await
        .expect("failed to seed AWS state");
    let namespace = TestNamespace::create(&env.client, prefix).await;
    env.proxy()
        .script_namespace(&namespace.name, timeline)
        .await;
    (env, namespace, seeded)
}

/// Starts an operator for a fresh namespace whose jobs follow `timeline`.
pub async fn setup(prefix: &str, timeline: Value) -> Setup {
    setup_with(prefix, timeline, &[]).await
}

/// Like [`setup`], with extra command-line arguments for the operator.
pub async fn setup_with(prefix: &str, timeline: Value, operator_args: &[&str]) -> Setup {
    let (env, namespace, seeded) = prepare(prefix, timeline).await;
    let operator = Operator::start_with(&namespace.name, operator_args);
    Setup {
        env,
        namespace,
        operator,
        seeded,
    }
}

pub fn job_yaml(name: &str, encryption: &str, settings: &str) -> MediaConvertJob {
    manifest(&format!(
        "apiVersion: mediaconvert.operators.dev/v1alpha1
kind: MediaConvertJob
metadata: {{name: {name}}}
spec:
  role: {ROLE}
  encryption: {encryption}
  settings:
{settings}"
    ))
}

/// Returns the `Encryption` block the proxy saw for output group `index` of a submitted job.
pub fn sent_encryption(job: &Value, index: usize) -> Option<Value> {
    let settings = &job["settings"]["outputGroups"][index]["outputGroupSettings"];
    ["fileGroupSettings", "hlsGroupSettings"]
        .iter()
        .find_map(|member| settings.get(*member))
        .and_then(|inner| inner.pointer("/destinationSettings/s3Settings/encryption"))
        .cloned()
}

/// Waits for `name` to be Invalid and returns its failed or undecided check named `check`.
pub async fn invalid_check(
    api: &Api<MediaConvertJob>,
    name: &str,
    check: &str,
) -> (MediaConvertJob, mediaconvert_operator::api::CheckResult) {
    let job = wait_for(api, name, "Invalid", phase_is("Invalid")).await;
    let status = job.status.clone().expect("job has no status");
    let checks = status.validation.map(|v| v.checks).unwrap_or_default();
    let result = checks
        .iter()
        .find(|c| c.name == check)
        .cloned()
        .unwrap_or_else(|| panic!("no {check} check in {checks:?}"));
    (job, result)
}
