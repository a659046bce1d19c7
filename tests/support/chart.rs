//! Installing the Helm chart into the local API server and running the operator under the
//! identity of the chart's ServiceAccount.

use std::path::{Path, PathBuf};
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use super::{Operator, required_var};

/// Path of the chart in this repository.
pub const CHART: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/charts/mediaconvert-operator");

/// Full name of a release's objects, as the chart's `fullname` helper builds it.
pub fn fullname(release: &str) -> String {
    format!("{release}-mediaconvert-operator")
}

/// Runs a command and returns its stdout, panicking with its stderr when it fails.
pub fn run(program: &Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|error| panic!("failed to run {}: {error}", program.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} {args:?} failed: {stderr}",
        program.display()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn helm_bin() -> PathBuf {
    PathBuf::from(required_var("MCO_HELM_BIN"))
}

pub fn kubectl_bin() -> PathBuf {
    PathBuf::from(required_var("MCO_KUBE_BIN_DIR")).join("kubectl")
}

/// Installs the chart as `release` into `namespace`, with `--set` values `sets`.
/// Only the templates are installed when the CRD already exists, as Helm skips it then.
pub fn install(release: &str, namespace: &str, sets: &[&str]) {
    let mut args = vec!["install", release, CHART, "--namespace", namespace];
    for set in sets {
        args.extend(["--set", set]);
    }
    run(&helm_bin(), &args);
}

/// Values that make the operator quick enough for tests: one-second polls and retries.
pub const FAST_VALUES: [&str; 4] = [
    "operator.pollIntervalSeconds=1",
    "operator.retryBaseSeconds=1",
    "operator.retryMaxSeconds=5",
    "operator.logFormat=text",
];

/// Returns the container arguments of the release's Deployment as the API server stores
/// them, with the metrics server moved to a free loopback port.
pub async fn deployment_args(client: &Client, namespace: &str, release: &str) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let deployment = deployments
        .get(&fullname(release))
        .await
        .expect("the chart's Deployment is missing");
    let container = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .and_then(|pod| pod.containers.into_iter().next())
        .expect("the Deployment has no container");
    container
        .args
        .unwrap_or_default()
        .into_iter()
        .map(|arg| {
            if arg.starts_with("--metrics-address=") {
                "--metrics-address=127.0.0.1:0".to_string()
            } else {
                arg
            }
        })
        .collect()
}

/// Writes a kubeconfig that reaches the local API server with a token of the
/// ServiceAccount `account` in `namespace`, and returns its path.
pub fn service_account_kubeconfig(namespace: &str, account: &str) -> PathBuf {
    let token = run(
        &kubectl_bin(),
        &[
            "create",
            "token",
            account,
            "--namespace",
            namespace,
            "--duration",
            "1h",
        ],
    );
    let mut kubeconfig = Kubeconfig::read_from(required_var("KUBECONFIG"))
        .expect("failed to read the admin kubeconfig");
    for named in &mut kubeconfig.auth_infos {
        if let Some(auth) = named.auth_info.as_mut() {
            *auth = Default::default();
            auth.token = Some(token.trim().to_string().into());
        }
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubeconfigs");
    std::fs::create_dir_all(&dir).expect("failed to create the kubeconfig dir");
    let path = dir.join(format!("{namespace}-{account}.yaml"));
    let yaml = serde_yaml::to_string(&kubeconfig).expect("kubeconfig does not serialize");
    std::fs::write(&path, yaml).expect("failed to write the kubeconfig");
    path
}

/// Builds a client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Client {
    let kubeconfig = Kubeconfig::read_from(path).expect("failed to read kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("invalid kubeconfig");
    Client::try_from(config).expect("failed to build a client")
}

/// Starts the operator with the release's Deployment arguments, authenticated as the
/// release's ServiceAccount.
pub async fn start_as_service_account(
    client: &Client,
    namespace: &str,
    release: &str,
    pod_name: &str,
) -> Operator {
    let args = deployment_args(client, namespace, release).await;
    let kubeconfig = service_account_kubeconfig(namespace, &fullname(release));
    let envs = [
        ("KUBECONFIG", kubeconfig.display().to_string()),
        ("POD_NAME", pod_name.to_string()),
    ];
    Operator::launch(&format!("{namespace}-{pod_name}"), &args, &envs)
}

/// Returns the verbs the ServiceAccount `account` of `namespace` may use there, per
/// resource.
pub fn allowed_verbs(
    namespace: &str,
    account: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    allowed_verbs_as(
        namespace,
        &format!("system:serviceaccount:{namespace}:{account}"),
    )
}

/// Returns the verbs `user` may use in `namespace`, per resource, from
/// `kubectl auth can-i --list`.
pub fn allowed_verbs_as(
    namespace: &str,
    user: &str,
) -> std::collections::BTreeMap<String, Vec<String>> {
    let listing = run(
        &kubectl_bin(),
        &[
            "auth",
            "can-i",
            "--list",
            "--namespace",
            namespace,
            "--as",
            user,
        ],
    );
    // Rows: RESOURCE  NON-RESOURCE-URLS  RESOURCE-NAMES  [VERB ...]
    listing
        .lines()
        .skip(1)
        .filter_map(|line| {
            let resource = line.split_whitespace().next()?.to_string();
            let verbs = line.rsplit_once('[')?.1.trim_end().trim_end_matches(']');
            let mut verbs: Vec<String> = verbs.split_whitespace().map(str::to_string).collect();
            verbs.sort();
            Some((resource, verbs))
        })
        .collect()
}

/// Returns `kubectl auth can-i VERB RESOURCE` for the ServiceAccount `account` of
/// `namespace` in that namespace.
pub fn can_i(namespace: &str, account: &str, verb: &str, resource: &str) -> bool {
    let user = format!("system:serviceaccount:{namespace}:{account}");
    can_i_as(namespace, &user, verb, resource)
}

/// Returns `kubectl auth can-i VERB RESOURCE` for `user` in `namespace`.
pub fn can_i_as(namespace: &str, user: &str, verb: &str, resource: &str) -> bool {
    let output = Command::new(kubectl_bin())
        .args([
            "auth",
            "can-i",
            verb,
            resource,
            "--namespace",
            namespace,
            "--as",
            user,
        ])
        .output()
        .expect("failed to run kubectl auth can-i");
    String::from_utf8_lossy(&output.stdout).trim() == "yes"
}

/// Rewrites the rules of a Role, as an administrator who broke the chart's RBAC would.
pub async fn edit_role(
    client: &Client,
    namespace: &str,
    name: &str,
    edit: impl FnOnce(&mut Vec<k8s_openapi::api::rbac::v1::PolicyRule>),
) {
    let roles: Api<Role> = Api::namespaced(client.clone(), namespace);
    let mut role = roles.get(name).await.expect("role not found");
    let mut rules = role.rules.take().unwrap_or_default();
    edit(&mut rules);
    role.rules = Some(rules);
    roles
        .replace(name, &PostParams::default(), &role)
        .await
        .expect("failed to replace the role");
}
