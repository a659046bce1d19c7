//! The Helm chart: it lints, renders pods that pass the restricted Pod Security Standard,
//! installs into the real API server, and its ServiceAccount can run a job to the end but
//! cannot read Secrets.

mod support;

use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use support::chart::{self, CHART, FAST_VALUES};
use support::*;

#[test]
fn chart_lints_in_both_modes() {
    let helm = chart::helm_bin();
    chart::run(&helm, &["lint", "--strict", CHART]);
    chart::run(
        &helm,
        &[
            "lint",
            "--strict",
            CHART,
            "--set",
            "watchNamespaces={media,promo}",
        ],
    );
}

/// Runs `helm template` on the chart with one `--set` value.
fn template_with(value: &str) -> std::process::Output {
    std::process::Command::new(chart::helm_bin())
        .args(["template", "r", CHART, "--set", value])
        .output()
        .expect("failed to run helm")
}

#[test]
fn schema_rejects_invalid_namespace() {
    let output = template_with("watchNamespaces={Media_Jobs}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an invalid namespace rendered");
    assert!(stderr.contains("/watchNamespaces/0"), "{stderr}");
}

/// Renders the chart as release `r` in namespace `ops`, optionally only one template.
fn render(only: Option<&str>, sets: &[&str]) -> String {
    let mut args = vec!["template", "r", CHART, "--namespace", "ops"];
    if let Some(template) = only {
        args.extend(["--show-only", template]);
    }
    for set in sets {
        args.extend(["--set", set]);
    }
    chart::run(&chart::helm_bin(), &args)
}

#[test]
fn namespaced_mode_renders_no_cluster_role() {
    let rendered = render(None, &["watchNamespaces={a,b}"]);
    assert!(!rendered.contains("kind: ClusterRole"), "{rendered}");
    assert!(rendered.contains("--namespace=a,b"), "{rendered}");
    let roles = rendered
        .lines()
        .filter(|line| *line == "kind: Role")
        .count();
    // One per watched namespace, one for the Lease.
    assert_eq!(roles, 3, "{rendered}");
}

#[test]
fn irsa_role_annotates_service_account() {
    let arn = "arn:aws:iam::111122223333:role/mediaconvert-operator";
    let set = format!("serviceAccount.roleArn={arn}");
    let rendered = render(Some("templates/serviceaccount.yaml"), &[&set]);
    assert!(
        rendered.contains(&format!("eks.amazonaws.com/role-arn: {arn}")),
        "{rendered}"
    );
}

#[test]
fn service_monitor_renders_when_enabled() {
    let rendered = render(
        Some("templates/servicemonitor.yaml"),
        &["metrics.serviceMonitor.enabled=true"],
    );
    assert!(rendered.contains("kind: ServiceMonitor"), "{rendered}");
    assert!(rendered.contains("port: metrics"), "{rendered}");
}

#[test]
fn events_queue_renders_flags_only_when_set() {
    let deployment = Some("templates/deployment.yaml");
    let plain = render(deployment, &[]);
    assert!(plain.contains("--status-sync=batched"), "{plain}");
    assert!(!plain.contains("--events-queue-url"), "{plain}");
    assert!(!plain.contains("--events-staleness-seconds"), "{plain}");

    let url = "https://sqs.eu-west-1.amazonaws.com/111122223333/mediaconvert-job-events";
    let queue = format!("events.queueUrl={url}");
    let rendered = render(deployment, &[&queue, "events.queueRegion=eu-west-1"]);
    assert!(
        rendered.contains(&format!("--events-queue-url={url}")),
        "{rendered}"
    );
    assert!(
        rendered.contains("--events-queue-region=eu-west-1"),
        "{rendered}"
    );
    assert!(
        rendered.contains("--events-staleness-seconds=90"),
        "{rendered}"
    );
}

#[test]
fn schema_rejects_unknown_status_sync() {
    let output = template_with("operator.statusSync=events");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "an unknown sync mode rendered");
    assert!(stderr.contains("statusSync"), "{stderr}");
}

/// The API server's PodSecurity admission judges a pod built from the rendered template
/// in a namespace that enforces the restricted profile. The dry run creates nothing.
#[tokio::test]
async fn pod_template_passes_restricted_profile() {
    let env = Env::get().await;
    let namespace = TestNamespace::create(&env.client, "psa").await;
    let namespaces: Api<Namespace> = Api::all(env.client.clone());
    let labels = serde_json::json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    namespaces
        .patch(
            &namespace.name,
            &PatchParams::default(),
            &Patch::Merge(&labels),
        )
        .await
        .expect("failed to label the namespace");

    let rendered = chart::run(
        &chart::helm_bin(),
        &[
            "template",
            "r",
            CHART,
            "--show-only",
            "templates/deployment.yaml",
        ],
    );
    let deployment: k8s_openapi::api::apps::v1::Deployment =
        serde_yaml::from_str(&rendered).expect("the Deployment does not parse");
    let template = deployment.spec.expect("no spec").template;
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("operator-dry-run".into()),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        ..Pod::default()
    };
    let pods: Api<Pod> = Api::namespaced(env.client.clone(), &namespace.name);
    pods.create(
        &PostParams {
            dry_run: true,
            ..PostParams::default()
        },
        &pod,
    )
    .await
    .expect("the restricted profile rejected the chart's pod");
}

#[tokio::test]
async fn installed_chart_runs_job_as_service_account() {
    let (env, namespace, _) = prepare("helm", timeline(500, complete())).await;
    let ns = namespace.name.as_str();

    let watch = format!("watchNamespaces={{{ns}}}");
    let mut sets = vec![watch.as_str(), "replicaCount=1"];
    sets.extend(FAST_VALUES);
    chart::install("op", ns, &sets);
    let operator = chart::start_as_service_account(&env.client, ns, "op", "op-0").await;

    let api = namespace.jobs();
    create(&api, &job_yaml("trailer", "{type: S3}", BASE_SETTINGS)).await;
    let done = wait_for(&api, "trailer", "Complete", phase_is("Complete")).await;
    assert_eq!(condition(&done, "Ready").status, "True");
    assert_eq!(env.proxy().jobs_in(ns).await.len(), 1);

    // The same identity is refused Secrets, by the authorizer and by the API server.
    let account = chart::fullname("op");
    assert!(!chart::can_i(ns, &account, "get", "secrets"));
    assert!(!chart::can_i(ns, &account, "list", "secrets"));
    let kubeconfig = chart::service_account_kubeconfig(ns, &account);
    let as_operator = chart::client_from(&kubeconfig).await;
    let secrets: Api<Secret> = Api::namespaced(as_operator, ns);
    let error = secrets
        .get("anything")
        .await
        .expect_err("the operator's identity read a Secret");
    assert!(
        matches!(&error, kube::Error::Api(status) if status.code == 403),
        "expected 403 Forbidden, got {error:?}"
    );
    drop(operator);
}

#[tokio::test]
async fn cluster_mode_grants_every_namespace() {
    let env = Env::get().await;
    install_crd(&env.client).await;
    let namespace = TestNamespace::create(&env.client, "helm-cluster").await;
    let other = TestNamespace::create(&env.client, "helm-other").await;
    let ns = namespace.name.as_str();
    // The release name carries the namespace, because ClusterRoles are cluster-wide.
    let release = ns.to_string();
    chart::install(&release, ns, &["replicaCount=1"]);
    let account = chart::fullname(&release);
    let user = format!("system:serviceaccount:{ns}:{account}");

    for target in [ns, other.name.as_str()] {
        let verbs = chart::allowed_verbs_as(target, &user);
        let jobs = verbs
            .get("mediaconvertjobs.mediaconvert.operators.dev")
            .unwrap_or_else(|| panic!("no mediaconvertjobs rule in {target}: {verbs:?}"));
        assert_eq!(jobs, &["delete", "get", "list", "patch", "update", "watch"]);
        assert!(!verbs.contains_key("secrets"), "{verbs:?}");
    }
    // The Lease stays in the release namespace.
    assert!(chart::can_i(ns, &account, "create", "leases"));
    assert!(!chart::can_i_as(&other.name, &user, "create", "leases"));
}
