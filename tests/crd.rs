//! The committed CRD matches the Rust types, and the real API server accepts it.

mod support;

const CRD_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/crds/mediaconvert.operators.dev_mediaconvertjobs.yaml"
);

#[test]
fn committed_crd_is_current() {
    let committed = std::fs::read_to_string(CRD_PATH).expect("crds/ file is missing");
    let generated = mediaconvert_operator::crd_yaml();
    assert!(
        committed == generated,
        "{CRD_PATH} is stale; regenerate it with `make crds`"
    );
}

#[test]
fn chart_crd_matches_generated() {
    let chart_path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/charts/mediaconvert-operator/crds/mediaconvert.operators.dev_mediaconvertjobs.yaml"
    );
    let in_chart = std::fs::read(chart_path).expect("the chart's CRD file is missing");
    let committed = std::fs::read(CRD_PATH).expect("crds/ file is missing");
    assert!(
        in_chart == committed,
        "{chart_path} differs from {CRD_PATH}; refresh both with `make crds`"
    );
}

#[tokio::test]
async fn api_server_accepts_crd() {
    let env = support::Env::get().await;
    support::install_crd(&env.client).await;
}

#[tokio::test]
async fn kubectl_explain_shows_field_docs() {
    let env = support::Env::get().await;
    support::install_crd(&env.client).await;
    let kubectl = format!(
        "{}/kubectl",
        std::env::var("MCO_KUBE_BIN_DIR").expect("MCO_KUBE_BIN_DIR is not set")
    );
    // The API server publishes a new CRD's schema to discovery and OpenAPI a moment after it
    // is established, so kubectl, with a cache of its own, retries until the schema is there.
    let cache = tempfile::tempdir().expect("failed to create a kubectl cache dir");
    let deadline = std::time::Instant::now() + support::WAIT;
    loop {
        let output = std::process::Command::new(&kubectl)
            .args([
                "explain",
                "mediaconvertjob.spec.encryption.kmsKeyArn",
                "--cache-dir",
            ])
            .arg(cache.path())
            .output()
            .expect("failed to run kubectl");
        let text = String::from_utf8_lossy(&output.stdout);
        if output.status.success() {
            assert!(text.contains("AWS managed key"), "{text}");
            return;
        }
        let error = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(
            std::time::Instant::now() < deadline,
            "kubectl explain failed: {error}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
