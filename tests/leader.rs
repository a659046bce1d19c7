//! Leader election: of two operator processes one reconciles, and when it is killed the
//! other takes over and every job is still submitted exactly once.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use support::*;

const LEASE: &str = "mediaconvert-operator";
const LEASE_SECONDS: u64 = 4;

fn elected(namespace: &str, pod_name: &str) -> Operator {
    let lease_seconds = LEASE_SECONDS.to_string();
    let args = [
        "--leader-election",
        "--leader-election-namespace",
        namespace,
        "--leader-election-lease-duration-seconds",
        &lease_seconds,
        "--leader-election-renew-deadline-seconds",
        "3",
        "--leader-election-retry-period-seconds",
        "1",
    ];
    let log_name = format!("{namespace}-{pod_name}");
    let envs = [("POD_NAME", pod_name.to_string())];
    Operator::start_named(&log_name, namespace, &args, &envs)
}

/// Waits until the lease names a holder whose identity starts with one of `candidates`,
/// and returns that candidate.
async fn wait_for_holder(leases: &Api<Lease>, candidates: &[&'static str]) -> &'static str {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let holder = leases
            .get_opt(LEASE)
            .await
            .expect("failed to read the lease")
            .and_then(|lease| lease.spec?.holder_identity);
        let found = holder.as_deref().and_then(|holder| {
            candidates
                .iter()
                .find(|candidate| holder.starts_with(&format!("{candidate}_")))
        });
        if let Some(candidate) = found {
            return candidate;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no holder among {candidates:?}; lease holder is {holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn killed_leader_hands_over_without_resubmitting() {
    let env = Env::get().await;
    install_crd(&env.client).await;
    env.aws()
        .await
        .seed_default()
        .await
        .expect("failed to seed AWS state");
    let namespace = TestNamespace::create(&env.client, "leader").await;
    let ns = namespace.name.as_str();
    env.proxy()
        .script_namespace(ns, timeline(4000, complete()))
        .await;

    let mut operators =
        BTreeMap::from([("op-a", elected(ns, "op-a")), ("op-b", elected(ns, "op-b"))]);
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), ns);
    let leader = wait_for_holder(&leases, &["op-a", "op-b"]).await;
    let standby = if leader == "op-a" { "op-b" } else { "op-a" };

    let api = namespace.jobs();
    let names = ["first", "second", "third", "fourth"];
    for name in names {
        create(&api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await;
    }
    for name in names {
        wait_for(&api, name, "Progressing", phase_is("Progressing")).await;
    }

    // The standby has reconciled nothing while the leader ran.
    let standby_url = operators[standby].metrics_url().await;
    let standby_metrics = support::scrape::metrics(&standby_url).await;
    assert_eq!(
        standby_metrics.sum("mediaconvert_operator_reconciles_total", &[]),
        0.0
    );
    assert_eq!(standby_metrics.value("mediaconvert_operator_leader"), 0.0);

    let killed_at = Instant::now();
    operators.get_mut(leader).expect("leader process").kill();
    // Jobs created while no process leads wait for the new leader.
    for name in ["fifth", "sixth"] {
        create(&api, &job_yaml(name, "{type: S3}", BASE_SETTINGS)).await;
    }
    let new_leader = wait_for_holder(&leases, &[standby]).await;
    let takeover = killed_at.elapsed();
    assert_eq!(new_leader, standby);
    // A standby may wait a whole lease duration after the last renewal it saw, plus one
    // retry period to notice.
    assert!(
        takeover <= Duration::from_secs(LEASE_SECONDS + 2),
        "takeover took {takeover:?}"
    );

    let all = names.iter().chain(&["fifth", "sixth"]);
    for name in all.clone() {
        wait_for(&api, name, "Complete", phase_is("Complete")).await;
    }
    let jobs = env.proxy().jobs_in(ns).await;
    for name in all {
        let count = jobs
            .iter()
            .filter(|job| job["userMetadata"]["mediaconvert.operators.dev/name"] == *name)
            .count();
        assert_eq!(count, 1, "{name} has {count} jobs in the emulator");
    }
    println!("takeover after the leader was killed: {takeover:?}");
}
