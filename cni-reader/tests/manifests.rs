//! config/cni/: the manifests parse, the ClusterRole grants only `get` on spiderendpoints, the
//! example NetworkAttachmentDefinition uses `"ipam": {"type": "spiderpool"}`, and the installer
//! script of the DaemonSet, run for real in a temporary directory, installs the binary and writes
//! a kubeconfig (0600 in a 0700 directory) that the binary then uses against the fixture.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::{json, Value};

fn manifest(name: &str) -> Vec<serde_yaml::Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config/cni")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap()
}

#[test]
fn cluster_role_grants_only_get_on_spiderendpoints() {
    let docs: Vec<Value> = manifest("rbac.yaml").iter().map(to_json).collect();
    let role = docs.iter().find(|d| d["kind"] == "ClusterRole").unwrap();
    assert_eq!(
        role["rules"],
        json!([{"apiGroups": ["spiderpool.spidernet.io"], "resources": ["spiderendpoints"], "verbs": ["get"]}])
    );
    let binding = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRoleBinding")
        .unwrap();
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "aipam-cni", "namespace": "aipam-system"}])
    );
    let sa = docs.iter().find(|d| d["kind"] == "ServiceAccount").unwrap();
    assert_eq!(sa["metadata"]["namespace"], "aipam-system");
}

#[test]
fn macvlan_nad_uses_the_spiderpool_ipam_type() {
    let docs: Vec<Value> = manifest("macvlan-nad.yaml").iter().map(to_json).collect();
    assert_eq!(docs[0]["kind"], "NetworkAttachmentDefinition");
    let config: Value = serde_json::from_str(docs[0]["spec"]["config"].as_str().unwrap()).unwrap();
    assert_eq!(config["plugins"][0]["type"], "macvlan");
    assert_eq!(config["plugins"][0]["ipam"], json!({"type": "spiderpool"}));
}

fn daemonset() -> Value {
    let docs: Vec<Value> = manifest("daemonset.yaml").iter().map(to_json).collect();
    docs.into_iter().find(|d| d["kind"] == "DaemonSet").unwrap()
}

#[test]
fn daemonset_mounts_host_paths_and_an_expiring_token() {
    let ds = daemonset();
    assert_eq!(ds["metadata"]["namespace"], "aipam-system");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], "aipam-cni");
    assert_eq!(spec["automountServiceAccountToken"], false);
    let volumes = spec["volumes"].as_array().unwrap();
    let host_paths: Vec<&str> = volumes
        .iter()
        .filter_map(|v| v["hostPath"]["path"].as_str())
        .collect();
    assert_eq!(host_paths, vec!["/opt/cni/bin", "/etc/cni/net.d"]);
    let token = volumes.iter().find(|v| v["name"] == "token").unwrap();
    let expiry = token["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"]
        .as_u64()
        .unwrap();
    assert!((600..=86400).contains(&expiry), "{expiry}");
}

#[test]
fn installer_script_installs_the_binary_and_a_kubeconfig_the_binary_uses() {
    let ds = daemonset();
    let container = &ds["spec"]["template"]["spec"]["containers"][0];
    let cmd = container["command"].as_array().unwrap();
    assert_eq!(cmd[0], "/bin/sh");
    let script = cmd[2].as_str().unwrap();

    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "web-0",
        endpoint(
            "ns1",
            "web-0",
            "u-1",
            json!([{"interface": "eth0", "ipv4": "10.6.168.60/16", "ipv4Gateway": "10.6.0.1"}]),
        ),
    );
    let host = tempfile::tempdir().unwrap();
    let sa = host.path().join("sa");
    std::fs::create_dir_all(&sa).unwrap();
    std::fs::write(sa.join("token"), &f.token).unwrap();
    // The fixture's CA, as the kube-root-ca.crt ConfigMap would project it.
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(f.kubeconfig()).unwrap()).unwrap();
    let ca_b64 = kc["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .unwrap()
        .to_string();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca_b64)
        .unwrap();
    std::fs::write(sa.join("ca.crt"), ca).unwrap();

    let bin_dir = host.path().join("opt/cni/bin");
    let net_d = host.path().join("etc/cni/net.d");
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AIPAM_BIN_SRC", plugin_bin())
        .env("AIPAM_HOST_BIN_DIR", &bin_dir)
        .env("AIPAM_HOST_CONF_DIR", &net_d)
        .env("AIPAM_TOKEN_DIR", &sa)
        .env("AIPAM_API_SERVER", f.server())
        .env("AIPAM_INSTALL_ONCE", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let installed = bin_dir.join("spiderpool");
    assert_eq!(
        std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let conf_dir = net_d.join("spiderpool.d");
    assert_eq!(
        std::fs::metadata(&conf_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let kubeconfig = conf_dir.join("kubeconfig");
    assert_eq!(
        std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read_dir(&conf_dir).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains("tmp")));

    // The installed binary, with the written kubeconfig, reads the reservation.
    let env = cni_env("ADD", "ns1", "web-0", "u-1", "eth0");
    let conf = net_conf("0.3.1", &kubeconfig, json!({}));
    let output = Command::new(&installed)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(conf.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let r: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(r["ips"][0]["address"], "10.6.168.60/16");

    // The loop: a rotated token is written into the kubeconfig within one refresh period, and
    // SIGTERM stops the installer.
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AIPAM_BIN_SRC", plugin_bin())
        .env("AIPAM_HOST_BIN_DIR", &bin_dir)
        .env("AIPAM_HOST_CONF_DIR", &net_d)
        .env("AIPAM_TOKEN_DIR", &sa)
        .env("AIPAM_API_SERVER", f.server())
        .env("AIPAM_REFRESH_SECONDS", "1")
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    std::fs::write(sa.join("token"), "rotated-token").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut rotated = false;
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(&kubeconfig)
            .unwrap()
            .contains("rotated-token")
        {
            rotated = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(rotated, "the installer loop did not rewrite the kubeconfig");
    assert!(
        status.success(),
        "SIGTERM ends the installer cleanly: {status:?}"
    );
    assert_eq!(
        std::fs::metadata(&kubeconfig).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
