//! The operator against an API server that restarts or expires its watches. Each test
//! runs its own etcd and kube-apiserver, so tests beside it keep the shared server.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cluster::PrivateCluster;
use support::*;

/// A private cluster with the CRD, a namespace whose jobs follow `timeline`, seeded AWS
/// fixtures and an operator for that namespace.
struct PrivateSetup {
    env: Env,
    // Dropped in field order: the namespace needs the API server, and the operator goes
    // before the cluster it watches.
    namespace: TestNamespace,
    operator: Operator,
    cluster: PrivateCluster,
}

impl PrivateSetup {
    async fn start(prefix: &str, timeline: Value) -> Self {
        Self::start_with(prefix, timeline, &[]).await
    }

    async fn start_with(prefix: &str, timeline: Value, etcd_args: &[&str]) -> Self {
        let env = Env::get().await;
        env.aws()
            .await
            .seed_default()
            .await
            .expect("failed to seed AWS state");
        let cluster = PrivateCluster::start(etcd_args).await;
        install_crd(&cluster.client).await;
        let namespace = TestNamespace::create(&cluster.client, prefix).await;
        env.proxy()
            .script_namespace(&namespace.name, timeline)
            .await;
        let operator = Operator::start_against(&namespace.name, &cluster.kubeconfig_path(), &[]);
        Self {
            env,
            namespace,
            operator,
            cluster,
        }
    }

    async fn submitted_jobs(&self) -> Vec<Value> {
        self.env.proxy().jobs_in(&self.namespace.name).await
    }
}

#[tokio::test]
async fn api_server_restart_mid_run_completes_all() {
    let mut setup = PrivateSetup::start("restart", timeline(4000, complete())).await;
    let api = setup.namespace.jobs();
    let names: Vec<String> = (0..4).map(|index| format!("steady-{index}")).collect();
    for name in &names {
        create(&api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await;
    }
    for name in &names {
        wait_for(&api, name, "Progressing", phase_is("Progressing")).await;
    }

    // The jobs keep transcoding while the API server is gone.
    setup.cluster.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(3)).await;
    setup.cluster.start_apiserver().await;
    create(
        &api,
        &job_yaml("after-restart", "{type: S3}", BASE_SETTINGS),
    )
    .await;

    for name in names.iter().map(String::as_str).chain(["after-restart"]) {
        let done = wait_for(&api, name, "Complete", phase_is("Complete")).await;
        assert_eq!(condition(&done, "Ready").status, "True", "{name}");
    }
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), names.len() + 1, "jobs: {jobs:?}");
    assert!(setup.operator.is_running(), "the operator exited");
}

#[tokio::test]
async fn watch_expiry_recovers_without_restart() {
    let mut setup = PrivateSetup::start("watch-expiry", timeline(3000, complete())).await;
    let api = setup.namespace.jobs();
    create(&api, &job_yaml("watch-a", "{type: S3}", BASE_SETTINGS)).await;
    wait_for(&api, "watch-a", "Progressing", phase_is("Progressing")).await;

    // While the API server is down, etcd moves on and compacts away the history the operator's
    // watch would resume from, and the emulator completes the first job.
    setup.cluster.stop_apiserver();
    setup.cluster.expire_history(20).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    setup.cluster.start_apiserver().await;
    create(&api, &job_yaml("watch-b", "{type: S3}", BASE_SETTINGS)).await;

    wait_for(&api, "watch-a", "Complete", phase_is("Complete")).await;
    wait_for(&api, "watch-b", "Complete", phase_is("Complete")).await;
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 2, "jobs resubmitted after the relist: {jobs:?}");
    assert!(setup.operator.is_running(), "the operator exited");
    // The API server's 410 Gone for the compacted resource version reached the operator
    // as a warning, so the test did expire the watch.
    let log = setup.operator.log_text();
    let expired = log
        .lines()
        .filter(|line| line.contains("Watch of MediaConvertJobs failed"))
        .any(|line| line.contains("too old resource version"));
    assert!(
        expired,
        "no warning for the expired watch; operator log:\n{log}"
    );
}

/// Settings of `count` outputs with name modifiers near S3's 1024-byte key limit, whose
/// output paths together exceed what the status keeps.
fn long_named_outputs(count: usize) -> String {
    let mut settings = String::from(
        "    Inputs:\n      - FileInput: s3://example-media-in/trailer.mp4\n    OutputGroups:\n      - Name: File Group\n        OutputGroupSettings:\n          Type: FILE_GROUP_SETTINGS\n          FileGroupSettings: {Destination: 's3://example-media-out/ladder/'}\n        Outputs:\n",
    );
    let modifier = "m".repeat(900);
    for index in 0..count {
        settings.push_str(&format!(
            "          - NameModifier: _{index:03}_{modifier}\n            ContainerSettings: {{Container: MP4}}\n"
        ));
    }
    settings
}

#[tokio::test]
async fn oversized_status_trimmed_not_retried() {
    // The same object in the shared API server gives its stored size, with the metadata
    // and managed fields the API server adds.
    let manifest = job_yaml("huge", "{type: S3}", &long_named_outputs(60));
    let env = Env::get().await;
    install_crd(&env.client).await;
    let probe = TestNamespace::create(&env.client, "size-probe").await;
    let stored = create(&probe.jobs(), &manifest).await;
    let size = serde_json::to_vec(&stored).unwrap().len();
    // Room for the status of every phase but the last, whose output paths add 16 KiB.
    let limit = format!("--max-request-bytes={}", size + 12 * 1024);

    let setup = PrivateSetup::start_with("oversized", timeline(300, complete()), &[&limit]).await;
    let api = setup.namespace.jobs();
    create(&api, &manifest).await;

    let done = wait_for(&api, "huge", "Complete and trimmed", |job| {
        phase_is("Complete")(job)
            && job
                .status
                .as_ref()
                .is_some_and(|status| status.conditions.iter().any(|c| c.type_ == "StatusTrimmed"))
    })
    .await;
    let trimmed = condition(&done, "StatusTrimmed");
    assert_eq!(trimmed.status, "True");
    assert_eq!(trimmed.reason, "StatusTooLarge");
    let status = done.status.clone().unwrap();
    let jobs = setup.submitted_jobs().await;
    assert_eq!(jobs.len(), 1, "jobs: {jobs:?}");
    assert_eq!(status.job_id.as_deref(), jobs[0]["id"].as_str());
    assert!(status.outputs.is_empty());
    assert_eq!(condition(&done, "Ready").status, "True");

    // A finished job's status is not written again, so the refusal does not repeat.
    let refusals = || {
        setup
            .operator
            .log_text()
            .matches("Status too large")
            .count()
    };
    let seen = refusals();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(refusals(), seen, "the oversized write is retried");
    assert!(seen >= 1, "no refused write logged");
}
