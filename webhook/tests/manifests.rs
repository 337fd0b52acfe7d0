#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The manifests in config/webhook/ match what the server serves, and hack/gen-certs.sh makes a
//! certificate the server loads.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use aipam_webhook::Hook;
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn docs(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(repo().join("config/webhook").join(file)).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn op_name(o: &kube::core::admission::Operation) -> String {
    format!("{o:?}").to_uppercase()
}

#[test]
fn webhook_configurations_match_the_router() {
    let service = docs("service.yaml")
        .into_iter()
        .find(|d| d["kind"] == "Service")
        .unwrap();
    assert_eq!(service["spec"]["ports"][0]["port"], 443);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 9443);
    let svc_name = service["metadata"]["name"].as_str().unwrap();
    let svc_ns = service["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(svc_ns, "aipam-system");

    let mut served: BTreeSet<String> = BTreeSet::new();
    for config in docs("webhooks.yaml") {
        let mutating = match config["kind"].as_str().unwrap() {
            "MutatingWebhookConfiguration" => true,
            "ValidatingWebhookConfiguration" => false,
            other => panic!("unexpected kind {other}"),
        };
        for wh in config["webhooks"].as_array().unwrap() {
            let name = wh["name"].as_str().unwrap();
            let cc = &wh["clientConfig"]["service"];
            assert_eq!(cc["name"], svc_name, "{name}");
            assert_eq!(cc["namespace"], svc_ns, "{name}");
            assert_eq!(cc["port"], 443, "{name}");
            let path = cc["path"].as_str().unwrap();
            let hook = Hook::ALL
                .into_iter()
                .find(|h| h.path() == path)
                .unwrap_or_else(|| panic!("{name}: path {path} is not served"));
            // The guard's path serves two configurations: Pod (and pods/status) UPDATE, and
            // a Binding carrying the reservation annotation.
            let binding_guard = name == "pods-binding.validate.aipam.io";
            assert!(
                served.insert(path.to_string()) || binding_guard,
                "{path} registered twice"
            );
            assert_eq!(hook.is_mutating(), mutating, "{name}: {path}");
            assert_eq!(wh["admissionReviewVersions"], json!(["v1"]), "{name}");
            assert_eq!(wh["sideEffects"], "NoneOnDryRun", "{name}");
            // The endpoint write at validation only speeds things up (the operator does it too),
            // so its failure must not fail the Pod; everything that reserves or judges fails
            // closed.
            let policy = if hook == Hook::ValidatePod {
                "Ignore"
            } else {
                "Fail"
            };
            assert_eq!(wh["failurePolicy"], policy, "{name}");
            assert_eq!(wh["timeoutSeconds"], 10, "{name}");
            assert!(wh.get("objectSelector").is_none(), "{name}");
            if hook == Hook::MutatePod {
                // A record present at creation is always replaced; a reinvocation would
                // reserve twice.
                assert_eq!(wh["reinvocationPolicy"], "Never");
            }
            let exprs = wh["namespaceSelector"]["matchExpressions"]
                .as_array()
                .unwrap();
            assert!(exprs.contains(&json!({"key": "kubernetes.io/metadata.name", "operator": "NotIn", "values": ["kube-system", "aipam-system"]})), "{name}");
            assert!(
                exprs.contains(
                    &json!({"key": "aipam.io/ipam", "operator": "NotIn", "values": ["disabled"]})
                ),
                "{name}"
            );
            let rules = wh["rules"].as_array().unwrap();
            assert_eq!(rules.len(), 1, "{name}");
            let rule = &rules[0];
            let (group, version, resource) = hook.resource();
            assert_eq!(rule["apiGroups"], json!([group]), "{name}");
            assert_eq!(rule["apiVersions"], json!([version]), "{name}");
            let ops: Vec<String> = hook.operations().iter().map(op_name).collect();
            if binding_guard {
                assert_eq!(rule["resources"], json!(["pods/binding"]), "{name}");
                assert_eq!(rule["operations"], json!(["CREATE"]), "{name}");
            } else if hook == Hook::GuardPod {
                // A real API server keeps metadata changes made through pods/status.
                assert_eq!(
                    rule["resources"],
                    json!([resource, "pods/status"]),
                    "{name}"
                );
                assert_eq!(rule["operations"], json!(ops), "{name}");
            } else {
                assert_eq!(rule["resources"], json!([resource]), "{name}");
                assert_eq!(rule["operations"], json!(ops), "{name}");
            }
        }
    }
    let all: BTreeSet<String> = Hook::ALL.iter().map(|h| h.path().to_string()).collect();
    assert_eq!(served, all, "every served path is registered");
}

/// Every (path, resource, operation) the configurations send is accepted by the router itself,
/// and every other operation on that path is refused as not registered.
#[tokio::test]
async fn the_router_serves_what_the_configurations_send() {
    use tower::ServiceExt;
    let cache = aipam_webhook::testkit::synced_cache();
    let effects = std::sync::Arc::new(aipam_webhook::MemoryEffects::new());
    let app = std::sync::Arc::new(aipam_webhook::App::new(cache, effects));
    let router = aipam_webhook::router(app);
    let kinds = [
        ("pods", "Pod"),
        ("pods/binding", "Binding"),
        ("spiderippools", "SpiderIPPool"),
        ("spidersubnets", "SpiderSubnet"),
        ("spiderreservedips", "SpiderReservedIP"),
    ];
    for config in docs("webhooks.yaml") {
        for wh in config["webhooks"].as_array().unwrap() {
            let path = wh["clientConfig"]["service"]["path"].as_str().unwrap();
            let rule = &wh["rules"][0];
            let group = rule["apiGroups"][0].as_str().unwrap();
            let version = rule["apiVersions"][0].as_str().unwrap();
            let resource = rule["resources"][0].as_str().unwrap();
            let kind = kinds.iter().find(|(r, _)| *r == resource).unwrap().1;
            let registered: Vec<&str> = rule["operations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o.as_str().unwrap())
                .collect();
            for op in ["CREATE", "UPDATE", "DELETE"] {
                let obj = json!({"apiVersion": if group.is_empty() { version.to_string() } else { format!("{group}/{version}") },
                    "kind": kind, "metadata": {"name": "x", "namespace": "default"}, "spec": {}});
                let (plural, sub) = match resource.split_once('/') {
                    Some((r, s)) => (r, Some(s)),
                    None => (resource, None),
                };
                let mut body = aipam_webhook::testkit::review_body(
                    "u",
                    (group, version, plural, kind),
                    op,
                    Some("default"),
                    (op != "DELETE").then_some(&obj),
                    (op != "CREATE").then_some(&obj),
                    true,
                );
                if let Some(sub) = sub {
                    body["request"]["subResource"] = json!(sub);
                }
                let req = axum::http::Request::post(path)
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                let resp = router.clone().oneshot(req).await.unwrap();
                assert_eq!(resp.status(), 200, "{path} {op}");
                let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                let msg = v["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                let refused_as_unregistered = msg.contains(" only, not ");
                assert_eq!(
                    refused_as_unregistered,
                    !registered.contains(&op),
                    "{path} {kind} {op}: {msg}"
                );
            }
        }
    }
}

#[test]
fn rbac_grants_what_the_webhook_uses_and_no_wildcards() {
    let mut grants: BTreeSet<(String, String, String)> = BTreeSet::new();
    for d in docs("rbac.yaml") {
        if d["kind"] != "ClusterRole" && d["kind"] != "Role" {
            continue;
        }
        for rule in d["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for v in rule["verbs"].as_array().unwrap() {
                        let (g, r, v) = (
                            g.as_str().unwrap(),
                            r.as_str().unwrap(),
                            v.as_str().unwrap(),
                        );
                        assert!(!g.contains('*') && !r.contains('*') && !v.contains('*'));
                        grants.insert((g.to_string(), r.to_string(), v.to_string()));
                    }
                }
            }
        }
    }
    let sp = "spiderpool.spidernet.io";
    let mut need: Vec<(&str, &str, &str)> = Vec::new();
    for r in [
        "spiderippools",
        "spidersubnets",
        "spiderreservedips",
        "spideripclaims",
    ] {
        for v in ["get", "list", "watch"] {
            need.push((sp, r, v));
        }
    }
    for v in ["create", "delete", "patch"] {
        need.push((sp, "spideripclaims", v));
    }
    for v in ["get", "create", "update", "patch"] {
        need.push((sp, "spiderendpoints", v));
    }
    for (g, r) in [
        ("", "namespaces"),
        ("", "nodes"),
        ("", "configmaps"),
        ("apps", "replicasets"),
        ("batch", "jobs"),
        ("k8s.cni.cncf.io", "network-attachment-definitions"),
    ] {
        for v in ["get", "list", "watch"] {
            need.push((g, r, v));
        }
    }
    for (g, r, v) in need {
        assert!(
            grants.contains(&(g.to_string(), r.to_string(), v.to_string())),
            "missing {v} on {r}.{g}"
        );
    }
}

#[test]
fn gen_certs_makes_a_pair_the_server_loads() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("openssl not installed: skipping");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .arg(repo().join("hack/gen-certs.sh"))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let bundle = stdout.trim().strip_prefix("caBundle: ").unwrap();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(bundle)
        .unwrap();
    assert_eq!(ca, std::fs::read(dir.path().join("ca.crt")).unwrap());
    let _ = rustls::crypto::ring::default_provider().install_default();
    aipam_webhook::tls::ReloadingCert::load(
        &dir.path().join("tls.crt"),
        &dir.path().join("tls.key"),
    )
    .unwrap();
}
