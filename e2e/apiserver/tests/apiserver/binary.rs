//! The `aipam-apiserver` binary: kubeconfig out, CRDs at start, stops on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use kube::api::{Api, ListParams};

#[tokio::test]
async fn binary_writes_kubeconfig_applies_crds_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    let crds = dir.path().join("crds");
    std::fs::create_dir(&crds).unwrap();
    std::fs::write(crds.join("widgets.yaml"), super::common::WIDGETS_CRD).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_aipam-apiserver"))
        .args([
            "--kubeconfig-out",
            kc.to_str().unwrap(),
            "--crd-dir",
            crds.to_str().unwrap(),
            "--port",
            "0",
            "--webhook-service",
            "aipam-system/aipam-webhook=127.0.0.1:9443",
            "--fault-delay-ms",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !kc.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no kubeconfig written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = std::fs::read_to_string(&kc).unwrap();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&text).unwrap(),
        &Default::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let widgets: Api<kube::api::DynamicObject> =
        Api::all_with(client.clone(), &super::common::widget_ar());
    assert!(widgets
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .is_empty());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not stop on SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
