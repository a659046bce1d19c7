//! A private etcd and kube-apiserver for one test.
//!
//! Tests that stop the API server or expire its watches would break the watches and
//! requests of every test running beside them on the shared server from
//! `hack/env-up.sh`. Such a test starts its own pair from the same cached binaries,
//! with the shared environment's certificates and admin token, so the operator and
//! kubeconfig work as they do against the shared server. The flags are those of
//! `hack/env-up.sh`. The pair is started from Rust rather than by that script, because
//! the test must stop and start the API server on the same port while etcd keeps
//! running. The script instead manages one whole environment per state directory, with
//! a lock, fakecloud and a proxy that such a test does not need.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::{Value, json};

use super::{WAIT, required_var};

/// etcd and kube-apiserver processes, killed when dropped, with their data in a
/// temporary directory.
pub struct PrivateCluster {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Option<Child>,
    etcd_url: String,
    apiserver_port: u16,
    /// Kubeconfig of the cluster's admin, for the operator process.
    pub kubeconfig: PathBuf,
    pub client: Client,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("no free port");
    listener.local_addr().expect("no local address").port()
}

fn spawn(binary: &Path, args: &[String], log: &Path) -> Child {
    let log_file = std::fs::File::create(log).expect("failed to create log file");
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {}: {error}", binary.display()))
}

impl PrivateCluster {
    /// Starts etcd and kube-apiserver and waits until the API server serves requests.
    /// `etcd_args` are added to etcd's command line.
    pub async fn start(etcd_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("private-cluster-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("failed to create a directory for the cluster");
        let (client_port, peer_port) = (free_port(), free_port());
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let mut args = vec![
            "--name=private".to_string(),
            format!("--data-dir={}", dir.path().join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={peer_url}"),
            format!("--initial-advertise-peer-urls={peer_url}"),
            format!("--initial-cluster=private={peer_url}"),
            "--unsafe-no-fsync".to_string(),
        ];
        args.extend(etcd_args.iter().map(|arg| arg.to_string()));
        let etcd_bin = PathBuf::from(required_var("MCO_ETCD_BIN_DIR")).join("etcd");
        let etcd = spawn(&etcd_bin, &args, &dir.path().join("etcd.log"));

        let apiserver_port = free_port();
        let kubeconfig = dir.path().join("kubeconfig");
        let shared = std::fs::read_to_string(required_var("KUBECONFIG"))
            .expect("failed to read the shared kubeconfig");
        std::fs::write(&kubeconfig, with_server_port(&shared, apiserver_port))
            .expect("failed to write the kubeconfig");
        let client = client_for(&kubeconfig).await;

        let mut cluster = Self {
            dir,
            etcd,
            apiserver: None,
            etcd_url,
            apiserver_port,
            kubeconfig,
            client,
        };
        cluster.start_apiserver().await;
        cluster
    }

    /// Path of the kubeconfig as a string, for the operator's environment.
    pub fn kubeconfig_path(&self) -> String {
        self.kubeconfig.display().to_string()
    }

    /// Starts kube-apiserver on the cluster's port and waits until it serves requests.
    pub async fn start_apiserver(&mut self) {
        let pki = PathBuf::from(required_var("MCO_ENV_DIR")).join("pki");
        let pki_file = |name: &str| pki.join(name).display().to_string();
        let args = vec![
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={}", self.apiserver_port),
            format!("--etcd-servers={}", self.etcd_url),
            format!("--tls-cert-file={}", pki_file("kube-apiserver.crt")),
            format!("--tls-private-key-file={}", pki_file("kube-apiserver.key")),
            format!("--client-ca-file={}", pki_file("ca.crt")),
            format!("--token-auth-file={}", pki_file("tokens.csv")),
            "--authorization-mode=RBAC".to_string(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".to_string(),
            "--api-audiences=https://kubernetes.default.svc.cluster.local".to_string(),
            format!(
                "--service-account-key-file={}",
                pki_file("service-account.pub")
            ),
            format!(
                "--service-account-signing-key-file={}",
                pki_file("service-account.key")
            ),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--profiling=false".to_string(),
        ];
        let binary = PathBuf::from(required_var("MCO_KUBE_BIN_DIR")).join("kube-apiserver");
        let log = self.dir.path().join("kube-apiserver.log");
        // Appends, so the log of a restarted server follows that of the first.
        let log_file = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&log)
            .expect("failed to open the API server log");
        let child = Command::new(&binary)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("failed to start kube-apiserver");
        self.apiserver = Some(child);
        self.wait_ready(&log).await;
    }

    async fn wait_ready(&mut self, log: &Path) {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        while namespaces.get("default").await.is_err() {
            let exited = self
                .apiserver
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten());
            let tail = || std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                exited.is_none(),
                "kube-apiserver exited: {exited:?}\n{}",
                tail()
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "kube-apiserver not ready in time; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Kills kube-apiserver, as a crash or a node failure would. etcd keeps running.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn etcd_call(&self, route: &str, body: Value) -> Value {
        reqwest::Client::new()
            .post(format!("{}/v3/{route}", self.etcd_url))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|error| panic!("etcd {route} failed: {error}"))
            .json()
            .await
            .expect("etcd returned invalid JSON")
    }

    /// Writes `count` keys outside the API server's prefix, then compacts etcd's history
    /// up to the newest revision. A watch that resumes from an older resource version then
    /// gets 410 Gone and must list again.
    pub async fn expire_history(&self, count: usize) {
        let encode = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
        let mut revision = 0;
        for index in 0..count {
            let put = json!({"key": encode("/test/filler"), "value": encode(&index.to_string())});
            let reply = self.etcd_call("kv/put", put).await;
            revision = reply["header"]["revision"]
                .as_str()
                .and_then(|text| text.parse::<u64>().ok())
                .expect("etcd put returned no revision");
        }
        let compact = json!({"revision": revision.to_string(), "physical": true});
        self.etcd_call("kv/compaction", compact).await;
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
    }
}

/// Returns `kubeconfig` with the port of its `server:` URL replaced.
fn with_server_port(kubeconfig: &str, port: u16) -> String {
    kubeconfig
        .lines()
        .map(|line| match line.trim_start().strip_prefix("server: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}server: https://127.0.0.1:{port}")
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn client_for(kubeconfig: &Path) -> Client {
    let file = Kubeconfig::read_from(kubeconfig).expect("invalid kubeconfig");
    let config = Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .expect("invalid kubeconfig");
    Client::try_from(config).expect("failed to build a client")
}
