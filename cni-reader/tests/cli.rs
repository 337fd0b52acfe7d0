//! The real `spiderpool` binary run as a process, with `CNI_*` variables and stdin, against the
//! HTTPS fixture: every command and every result version.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
const UID: &str = "5e0d5b6c-1111-4c1e-9a51-0123456789ab";

fn eth0_v4() -> Value {
    json!([{
        "interface": "eth0", "ipv4": "10.6.168.60/16", "ipv4Pool": "pool-v4",
        "ipv4Gateway": "10.6.0.1", "vlan": 0, "cleanGateway": false,
        "routes": [{"dst": "172.18.42.0/24", "gw": "10.6.0.254"}]
    }])
}

fn env_with(
    mut env: Vec<(String, String)>,
    key: &str,
    value: Option<&str>,
) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    if let Some(v) = value {
        env.push((key.to_string(), v.to_string()));
    }
    env
}

#[test]
fn add_single_stack_every_version() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let kc = f.kubeconfig();
    for v in VERSIONS {
        let run = run_plugin(
            &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
            &net_conf(v, &kc, json!({})),
        );
        let r = run.ok();
        assert_eq!(r["cniVersion"], v);
        assert!(
            r.get("interfaces").is_none(),
            "IPAM plugins return no interfaces: {r}"
        );
        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 1);
        assert_eq!(ips[0]["address"], "10.6.168.60/16");
        assert_eq!(ips[0]["gateway"], "10.6.0.1");
        assert!(ips[0].get("interface").is_none());
        if v.starts_with("0.") {
            assert_eq!(ips[0]["version"], "4", "{v}: {r}");
        } else {
            assert!(ips[0].get("version").is_none(), "{v}: {r}");
        }
        assert_eq!(
            r["routes"],
            json!([{"dst": "172.18.42.0/24", "gw": "10.6.0.254"}, {"dst": "0.0.0.0/0", "gw": "10.6.0.1"}])
        );
        assert_eq!(r["dns"], json!({}));
        // Logs never go to stdout: it holds exactly one JSON document.
        assert_eq!(run.stdout.lines().count(), 1, "{run:?}");
    }
}

#[test]
fn add_dual_stack() {
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "dual",
        endpoint(
            "ns1",
            "dual",
            UID,
            json!([{"interface": "eth0", "ipv4": "10.7.0.10/24", "ipv4Pool": "v4", "ipv4Gateway": "10.7.0.1",
                    "ipv6": "fd00:7::a/64", "ipv6Pool": "v6", "ipv6Gateway": "fd00:7::1"}]),
        ),
    );
    for v in ["0.3.1", "1.0.0"] {
        let r = run_plugin(
            &cni_env("ADD", "ns1", "dual", UID, "eth0"),
            &net_conf(v, &f.kubeconfig(), json!({})),
        )
        .ok();
        let ips = r["ips"].as_array().unwrap();
        assert_eq!(ips.len(), 2, "{r}");
        assert_eq!(ips[0]["address"], "10.7.0.10/24");
        assert_eq!(ips[1]["address"], "fd00:7::a/64");
        assert_eq!(ips[1]["gateway"], "fd00:7::1");
        if v == "0.3.1" {
            assert_eq!(ips[1]["version"], "6");
        }
        assert_eq!(
            r["routes"],
            json!([{"dst": "0.0.0.0/0", "gw": "10.7.0.1"}, {"dst": "::/0", "gw": "fd00:7::1"}])
        );
    }
}

#[test]
fn add_two_interfaces_default_route_only_on_eth0() {
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "multi",
        endpoint(
            "ns1",
            "multi",
            UID,
            json!([
                {"interface": "eth0", "ipv4": "10.6.168.61/16", "ipv4Pool": "a", "ipv4Gateway": "10.6.0.1", "cleanGateway": false},
                {"interface": "net1", "ipv4": "10.8.0.5/24", "ipv4Pool": "b", "ipv4Gateway": "10.8.0.1", "cleanGateway": true,
                 "routes": [{"dst": "10.9.0.0/16", "gw": "10.8.0.1"}], "vlan": 100}
            ]),
        ),
    );
    let kc = f.kubeconfig();
    let eth0 = run_plugin(
        &cni_env("ADD", "ns1", "multi", UID, "eth0"),
        &net_conf("1.0.0", &kc, json!({})),
    )
    .ok();
    assert_eq!(eth0["ips"][0]["address"], "10.6.168.61/16");
    assert_eq!(
        eth0["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}])
    );
    let net1 = run_plugin(
        &cni_env("ADD", "ns1", "multi", UID, "net1"),
        &net_conf("1.0.0", &kc, json!({})),
    )
    .ok();
    assert_eq!(net1["ips"][0]["address"], "10.8.0.5/24");
    assert_eq!(net1["ips"][0]["gateway"], "10.8.0.1");
    assert_eq!(
        net1["routes"],
        json!([{"dst": "10.9.0.0/16", "gw": "10.8.0.1"}])
    );
}

#[test]
fn add_late_binding_endpoint_appears_within_timeout() {
    let f = Fixture::start();
    f.put_endpoint_after(
        "ns1",
        "late",
        endpoint("ns1", "late", UID, eth0_v4()),
        Duration::from_millis(1500),
    );
    let run = run_plugin(
        &cni_env("ADD", "ns1", "late", UID, "eth0"),
        &net_conf("0.3.1", &f.kubeconfig(), json!({"timeout_seconds": 8})),
    );
    let r = run.ok();
    assert_eq!(r["ips"][0]["address"], "10.6.168.60/16");
    assert!(
        run.elapsed >= Duration::from_millis(1500),
        "{:?}",
        run.elapsed
    );
    assert!(run.elapsed < Duration::from_secs(5), "{:?}", run.elapsed);
    assert!(f.requests() >= 2);
}

#[test]
fn add_late_binding_interface_entry_appears_later() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "nic", endpoint("ns1", "nic", UID, eth0_v4()));
    let mut both = eth0_v4();
    both.as_array_mut()
        .unwrap()
        .push(json!({"interface": "net1", "ipv4": "10.8.0.6/24", "ipv4Pool": "b"}));
    f.put_endpoint_after(
        "ns1",
        "nic",
        endpoint("ns1", "nic", UID, both),
        Duration::from_millis(800),
    );
    let r = run_plugin(
        &cni_env("ADD", "ns1", "nic", UID, "net1"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({"timeout_seconds": 5})),
    )
    .ok();
    assert_eq!(r["ips"][0]["address"], "10.8.0.6/24");
    assert!(r["ips"][0].get("gateway").is_none());
    assert_eq!(r["routes"], json!([]));
}

#[test]
fn add_never_reserved_fails_with_11_within_timeout() {
    let f = Fixture::start();
    let run = run_plugin(
        &cni_env("ADD", "ns1", "ghost", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({"timeout_seconds": 1.5})),
    );
    let e = run.err(11);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("ns1/ghost") && msg.contains("eth0") && msg.contains("webhook"),
        "{msg}"
    );
    assert!(msg.contains("operator"), "{msg}");
    assert!(
        e["details"].as_str().unwrap().contains("no SpiderEndpoint"),
        "{e}"
    );
    assert_eq!(e["cniVersion"], "1.0.0");
    assert!(
        run.elapsed >= Duration::from_millis(1500),
        "{:?}",
        run.elapsed
    );
    assert!(
        run.elapsed < Duration::from_millis(4000),
        "{:?}",
        run.elapsed
    );
    assert!(f.requests() >= 3, "retried with back-off: {}", f.requests());
}

#[test]
fn add_uid_mismatch_waits_then_11_and_succeeds_once_rebound() {
    let f = Fixture::start();
    let old = "00000000-dead-beef-0000-000000000000";
    f.put_endpoint("ns1", "sts-0", endpoint("ns1", "sts-0", old, eth0_v4()));
    let run = run_plugin(
        &cni_env("ADD", "ns1", "sts-0", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({"timeout_seconds": 1})),
    );
    let e = run.err(11);
    assert!(
        e["details"].as_str().unwrap().contains("earlier Pod"),
        "{e}"
    );
    // Re-bound by the operator while the plugin waits.
    f.put_endpoint_after(
        "ns1",
        "sts-0",
        endpoint("ns1", "sts-0", UID, eth0_v4()),
        Duration::from_millis(700),
    );
    let r = run_plugin(
        &cni_env("ADD", "ns1", "sts-0", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({"timeout_seconds": 5})),
    )
    .ok();
    assert_eq!(r["ips"][0]["address"], "10.6.168.60/16");
}

#[test]
fn add_retries_through_503() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    f.fail_next_with_503(2);
    run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({"timeout_seconds": 5})),
    )
    .ok();
    assert_eq!(f.requests(), 3);
}

#[test]
fn add_with_chunked_responses_and_client_certificate() {
    let f = Fixture::start();
    f.set_chunked(true);
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let r = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig_client_cert(), json!({})),
    )
    .ok();
    assert_eq!(r["ips"][0]["address"], "10.6.168.60/16");
}

#[test]
fn add_unauthorized_is_100_at_once_naming_server_and_credential() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let run = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf(
            "1.0.0",
            &f.kubeconfig_bad_token(),
            json!({"timeout_seconds": 10}),
        ),
    );
    let e = run.err(100);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("401") && msg.contains(&f.server()) && msg.contains("bearer token"),
        "{msg}"
    );
    assert!(!run.stdout.contains("not-the-token") && !run.stderr.contains("not-the-token"));
    assert!(
        run.elapsed < Duration::from_secs(5),
        "no waiting on 401: {:?}",
        run.elapsed
    );
}

#[test]
fn add_forbidden_is_101() {
    let f = Fixture::start();
    f.forbid_token("weak-token");
    let kc = f.kubeconfig_with_token("kubeconfig-weak", "weak-token");
    let e = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", &kc, json!({})),
    )
    .err(101);
    assert!(e["msg"].as_str().unwrap().contains("ClusterRole"), "{e}");
    assert!(
        e["details"]
            .as_str()
            .unwrap()
            .contains("cannot get resource"),
        "{e}"
    );
}

#[test]
fn add_unreachable_server_is_11() {
    let f = Fixture::start();
    let run = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf(
            "1.0.0",
            &f.kubeconfig_unreachable(),
            json!({"timeout_seconds": 1}),
        ),
    );
    let e = run.err(11);
    assert!(
        e["details"].as_str().unwrap().contains("cannot connect"),
        "{e}"
    );
    assert!(run.elapsed < Duration::from_secs(4), "{:?}", run.elapsed);
}

#[test]
fn add_untrusted_server_certificate_is_104_at_once() {
    let f = Fixture::start();
    let run = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf(
            "1.0.0",
            &f.kubeconfig_wrong_ca(),
            json!({"timeout_seconds": 10}),
        ),
    );
    let e = run.err(104);
    assert!(e["msg"].as_str().unwrap().contains("not trusted"), "{e}");
    assert!(run.elapsed < Duration::from_secs(5));
}

#[test]
fn add_missing_kubeconfig_is_104() {
    let e = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf(
            "1.0.0",
            std::path::Path::new("/nonexistent/kubeconfig"),
            json!({}),
        ),
    )
    .err(104);
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("/nonexistent/kubeconfig"),
        "{e}"
    );
}

#[test]
fn add_malformed_reservation_is_103() {
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "bad",
        endpoint(
            "ns1",
            "bad",
            UID,
            json!([{"interface": "eth0", "ipv4": "10.6.168.60"}]),
        ),
    );
    let e = run_plugin(
        &cni_env("ADD", "ns1", "bad", UID, "eth0"),
        &net_conf("1.0.0", &f.kubeconfig(), json!({})),
    )
    .err(103);
    assert!(e["msg"].as_str().unwrap().contains("prefix length"), "{e}");
}

#[test]
fn malformed_stdin_is_6() {
    let e = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        "{\"cniVersion\": ",
    )
    .err(6);
    assert_eq!(e["cniVersion"], "1.1.0");
    run_plugin(&cni_env("DEL", "ns1", "web-0", UID, "eth0"), "not json").err(6);
}

#[test]
fn unknown_version_is_1() {
    let kc = std::path::Path::new("/nonexistent");
    for v in ["0.2.0", "0.1.0", "9.9.9", ""] {
        let e = run_plugin(
            &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
            &net_conf(v, kc, json!({})),
        )
        .err(1);
        assert!(e["details"].as_str().unwrap().contains("1.1.0"), "{e}");
    }
    // CHECK needs 0.4.0+, STATUS and GC 1.1.0+.
    run_plugin(
        &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
        &net_conf("0.3.1", kc, json!({})),
    )
    .err(1);
    run_plugin(
        &cni_env("STATUS", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", kc, json!({})),
    )
    .err(1);
    run_plugin(
        &cni_env("GC", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", kc, json!({})),
    )
    .err(1);
}

#[test]
fn missing_env_is_4() {
    let kc = std::path::Path::new("/nonexistent");
    let conf = net_conf("1.0.0", kc, json!({}));
    let base = cni_env("ADD", "ns1", "web-0", UID, "eth0");
    for var in ["CNI_CONTAINERID", "CNI_IFNAME", "CNI_NETNS", "CNI_PATH"] {
        let e = run_plugin(&env_with(base.clone(), var, None), &conf).err(4);
        assert!(e["msg"].as_str().unwrap().contains(var), "{e}");
    }
    let e = run_plugin(
        &env_with(
            base.clone(),
            "CNI_ARGS",
            Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1"),
        ),
        &conf,
    )
    .err(4);
    assert!(e["msg"].as_str().unwrap().contains("K8S_POD_NAME"), "{e}");
    run_plugin(
        &env_with(base.clone(), "CNI_IFNAME", Some("this-name-is-too-long")),
        &conf,
    )
    .err(4);
    run_plugin(&env_with(base.clone(), "CNI_COMMAND", Some("FROB")), &conf).err(4);
    // No CNI_COMMAND at all: run by hand; says what it is on stderr, nothing on stdout.
    let run = run_plugin(&[], "");
    assert_eq!(run.exit, Some(0));
    assert!(run.stdout.is_empty());
    assert!(
        run.stderr.contains("CNI protocol versions supported"),
        "{run:?}"
    );
}

#[test]
fn invalid_network_config_is_7() {
    let env = cni_env("ADD", "ns1", "web-0", UID, "eth0");
    run_plugin(
        &env,
        r#"{"cniVersion":"1.0.0","name":"n","type":"macvlan"}"#,
    )
    .err(7);
    run_plugin(
        &env,
        r#"{"cniVersion":"1.0.0","type":"macvlan","ipam":{"type":"spiderpool"}}"#,
    )
    .err(7);
    run_plugin(&env, r#"{"cniVersion":"1.0.0","name":"n","ipam":{"type":"spiderpool","timeout_seconds":"soon"}}"#).err(7);
}

#[test]
fn del_succeeds_whatever_the_api_says() {
    let f = Fixture::start();
    for kc in [
        f.kubeconfig(),
        f.kubeconfig_unreachable(),
        f.kubeconfig_bad_token(),
    ] {
        for v in VERSIONS {
            let run = run_plugin(
                &cni_env("DEL", "ns1", "gone", UID, "eth0"),
                &net_conf(v, &kc, json!({})),
            );
            assert_eq!(run.exit, Some(0), "{run:?}");
            assert!(run.stdout.is_empty(), "{run:?}");
        }
    }
    // DEL without CNI_NETNS and without Pod arguments (the sandbox is already gone).
    let env = env_with(
        env_with(
            cni_env("DEL", "ns1", "gone", UID, "eth0"),
            "CNI_NETNS",
            None,
        ),
        "CNI_ARGS",
        None,
    );
    let run = run_plugin(&env, &net_conf("0.3.1", &f.kubeconfig(), json!({})));
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert_eq!(f.requests(), 0, "DEL never calls the API");
}

fn prev_result(addresses: &[&str]) -> Value {
    json!({
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "0a:58:0a:06:a8:3c", "sandbox": "/var/run/netns/aipam-test"}],
        "ips": addresses.iter().map(|a| json!({"address": a, "gateway": "10.6.0.1", "interface": 0})).collect::<Vec<_>>(),
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.6.0.1"}],
        "dns": {}
    })
}

fn check_conf(v: &str, kc: &std::path::Path, prev: Value) -> String {
    let mut c: Value = serde_json::from_str(&net_conf(v, kc, json!({}))).unwrap();
    c["prevResult"] = prev;
    c.to_string()
}

#[test]
fn check_ok_mismatch_and_gone() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let kc = f.kubeconfig();
    for v in ["0.4.0", "1.0.0", "1.1.0"] {
        let run = run_plugin(
            &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
            &check_conf(v, &kc, prev_result(&["10.6.168.60/16"])),
        );
        assert_eq!(run.exit, Some(0), "{run:?}");
        assert!(run.stdout.is_empty());
    }
    let e = run_plugin(
        &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
        &check_conf("1.0.0", &kc, prev_result(&["10.6.168.99/16"])),
    )
    .err(105);
    let msg = e["msg"].as_str().unwrap();
    assert!(
        msg.contains("10.6.168.99/16") && msg.contains("10.6.168.60/16"),
        "{msg}"
    );
    // Same address, other prefix: a mismatch too.
    run_plugin(
        &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
        &check_conf("1.0.0", &kc, prev_result(&["10.6.168.60/24"])),
    )
    .err(105);
    // The Pod was replaced by another of the same name.
    run_plugin(
        &cni_env("CHECK", "ns1", "web-0", "other-uid", "eth0"),
        &check_conf("1.0.0", &kc, prev_result(&["10.6.168.60/16"])),
    )
    .err(105);
    f.delete_endpoint("ns1", "web-0");
    let e = run_plugin(
        &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
        &check_conf("1.0.0", &kc, prev_result(&["10.6.168.60/16"])),
    )
    .err(105);
    assert!(e["msg"].as_str().unwrap().contains("gone"), "{e}");
    // No prevResult: invalid configuration.
    run_plugin(
        &cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
        &net_conf("1.0.0", &kc, json!({})),
    )
    .err(7);
}

#[test]
fn version_reports_supported_versions() {
    for (stdin, echoed) in [
        (r#"{"cniVersion":"0.3.1"}"#, "0.3.1"),
        (r#"{"cniVersion":"1.0.0"}"#, "1.0.0"),
        (r#"{"cniVersion":"0.2.0"}"#, "1.1.0"),
        ("", "1.1.0"),
    ] {
        let r = run_plugin(&[("CNI_COMMAND".into(), "VERSION".into())], stdin).ok();
        assert_eq!(r["cniVersion"], echoed);
        assert_eq!(r["supportedVersions"], json!(VERSIONS));
    }
}

#[test]
fn status_ok_and_not_available() {
    let f = Fixture::start();
    let env = vec![
        ("CNI_COMMAND".to_string(), "STATUS".to_string()),
        ("CNI_PATH".to_string(), "/opt/cni/bin".to_string()),
    ];
    let run = run_plugin(&env, &net_conf("1.1.0", &f.kubeconfig(), json!({})));
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert!(run.stdout.is_empty());
    let e = run_plugin(
        &env,
        &net_conf("1.1.0", &f.kubeconfig_bad_token(), json!({})),
    )
    .err(50);
    assert!(e["msg"].as_str().unwrap().contains("401"), "{e}");
    run_plugin(
        &env,
        &net_conf(
            "1.1.0",
            &f.kubeconfig_unreachable(),
            json!({"timeout_seconds": 1}),
        ),
    )
    .err(50);
    run_plugin(
        &env,
        &net_conf("1.1.0", std::path::Path::new("/nonexistent"), json!({})),
    )
    .err(50);
}

#[test]
fn gc_is_a_no_op() {
    let f = Fixture::start();
    let mut c: Value =
        serde_json::from_str(&net_conf("1.1.0", &f.kubeconfig(), json!({}))).unwrap();
    c["cni.dev/valid-attachments"] = json!([{"containerID": "abc", "ifname": "eth0"}]);
    let run = run_plugin(
        &[
            ("CNI_COMMAND".into(), "GC".into()),
            ("CNI_PATH".into(), "/opt/cni/bin".into()),
        ],
        &c.to_string(),
    );
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert!(run.stdout.is_empty());
    assert_eq!(f.requests(), 0);
}

#[test]
fn logs_go_to_the_log_file_never_stdout() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let log = f.dir.path().join("logs/spiderpool.log");
    let run = run_plugin(
        &cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        &net_conf(
            "0.3.1",
            &f.kubeconfig(),
            json!({"log_file_path": log, "log_level": "DEBUG", "log_file_max_size": 100}),
        ),
    );
    run.ok();
    assert_eq!(run.stdout.lines().count(), 1);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("reservation found"), "{text}");
    assert!(!text.contains(&f.token), "the token is never logged");
    // Without a log file, errors are logged on stderr.
    let run = run_plugin(
        &cni_env("ADD", "ns1", "nobody", UID, "eth0"),
        &net_conf("0.3.1", &f.kubeconfig(), json!({"timeout_seconds": 0})),
    );
    run.err(11);
    assert!(run.stderr.contains("no reservation"), "{run:?}");
}

/// Figures for the README: whole-process time of one ADD against the fixture on loopback.
/// `cargo test -p aipam-cni --release --test cli -- --ignored --nocapture bench_add`
#[test]
#[ignore]
fn bench_add_median_of_50() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let env = cni_env("ADD", "ns1", "web-0", UID, "eth0");
    let conf = net_conf("1.0.0", &f.kubeconfig(), json!({}));
    run_plugin(&env, &conf).ok();
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            let run = run_plugin(&env, &conf);
            assert_eq!(run.exit, Some(0));
            run.elapsed
        })
        .collect();
    times.sort();
    println!(
        "ADD whole-process time over 50 runs (spawn to exit, measured here): min {:?}, median {:?}, p90 {:?}, max {:?}",
        times[0], times[25], times[45], times[49]
    );
    // The same with hyperfine, when installed (apt-get install hyperfine): it subtracts the time
    // of the shell that feeds stdin.
    let conf_file = f.dir.path().join("add.json");
    std::fs::write(&conf_file, &conf).unwrap();
    let report = f.dir.path().join("hyperfine.json");
    let cmd = format!("{} < {}", plugin_bin().display(), conf_file.display());
    let status = std::process::Command::new("hyperfine")
        .args([
            "--runs",
            "50",
            "--warmup",
            "3",
            "--style",
            "basic",
            "--export-json",
        ])
        .arg(&report)
        .arg(&cmd)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status();
    match status {
        Ok(s) if s.success() => {
            let v: Value =
                serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
            println!(
                "hyperfine: median {:.2} ms, mean {:.2} ms ± {:.2} ms over 50 runs",
                v["results"][0]["median"].as_f64().unwrap() * 1e3,
                v["results"][0]["mean"].as_f64().unwrap() * 1e3,
                v["results"][0]["stddev"].as_f64().unwrap() * 1e3
            );
        }
        other => println!("hyperfine not available ({other:?}); see the figures above"),
    }
}

#[test]
fn runtime_config_args_and_unknown_fields_are_ignored() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, eth0_v4()));
    let mut c: Value = serde_json::from_str(&net_conf(
        "1.0.0",
        &f.kubeconfig(),
        json!({"default_ipv4_ippool": ["other-pool"], "cleangateway": true, "ipam_unix_socket_path": "/var/run/spidernet/spiderpool.sock",
               "log_file_max_count": 7, "routes": [{"dst": "1.2.3.0/24"}]}),
    ))
    .unwrap();
    c["runtimeConfig"] =
        json!({"ips": ["10.99.0.1/24"], "mac": "0a:00:00:00:00:01", "podAnnotations": {"a": "b"}});
    c["args"] = json!({"cni": {"ips": ["10.99.0.2"]}});
    c["somethingNew"] = json!({"x": 1});
    let env = env_with(
        cni_env("ADD", "ns1", "web-0", UID, "eth0"),
        "CNI_ARGS",
        Some(&format!("K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0;K8S_POD_UID={UID};IgnoreUnknown=true;FOO=bar;")),
    );
    let r = run_plugin(&env, &c.to_string()).ok();
    // The reservation decides, not runtimeConfig.ips or the ipam section's pool hints.
    assert_eq!(
        r["ips"],
        json!([{"address": "10.6.168.60/16", "gateway": "10.6.0.1"}])
    );
}
