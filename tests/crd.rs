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

#[tokio::test]
async fn api_server_accepts_crd() {
    let env = support::Env::get().await;
    support::install_crd(&env.client).await;
}
