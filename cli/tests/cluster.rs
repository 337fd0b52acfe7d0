//! `aipamctl status` and `aipamctl inspect` run as processes against the API stand-in, with
//! pools, claims, endpoints and Pods created directly (no webhook, no operator): the figures and
//! reasons a user reads.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Output;

use aipam_apiserver::{ApiServer, ApiServerHandle, ServerOptions};
use kube::api::{Api, Patch, PatchParams};
use serde_json::{json, Value};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Cluster {
    server: ApiServerHandle,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a, labels: {team: a}}
---
apiVersion: v1
kind: Node
metadata: {name: node-1, labels: {zone: a}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: small-v4}
spec: {subnet: 10.1.0.0/24, ips: [10.1.0.10-10.1.0.13]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: team-b-v4}
spec:
  subnet: 10.2.0.0/24
  ips: [10.2.0.10-10.2.0.19]
  namespaceAffinity: {matchLabels: {team: b}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: zone-b-v4}
spec:
  subnet: 10.3.0.0/24
  ips: [10.3.0.10-10.3.0.109]
  nodeAffinity: {matchLabels: {zone: b}}
"#;

fn claim(name: &str, pool: &str, addr: &str, reservation: &str, pod: Option<&str>) -> Value {
    let mut spec = json!({
        "pool": pool, "address": addr, "ipVersion": 4, "interface": "eth0",
        "namespace": "team-a", "reservation": reservation,
    });
    if let Some(name) = pod {
        spec["podName"] = json!(name);
    }
    json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPClaim",
        "metadata": {"name": name}, "spec": spec,
    })
}

/// Pools, a Pod `web` holding one address, a claim of a Pod `old` that is gone (its endpoint is
/// left), a young reservation no Pod carries yet.
async fn cluster() -> Cluster {
    let server = ApiServer::start(ServerOptions {
        crd_dir: Some(repo().join("config/crd")),
        ..ServerOptions::default()
    })
    .await
    .unwrap();
    server.apply_yaml(OBJECTS).await.unwrap();
    let pod = server
        .apply_object(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "web", "namespace": "team-a",
                "annotations": {
                    "ipam.spidernet.io/ippool": "{\"ipv4\": [\"team-b-v4\", \"zone-b-v4\", \"small-v4\"]}",
                    "aipam.io/reservation": "{\"id\":\"r-web\",\"interfaces\":[{\"interface\":\"eth0\",\"ipv4\":[{\"pool\":\"small-v4\",\"address\":\"10.1.0.10\"}]}]}"
                }
            },
            "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "x"}]}
        }))
        .await
        .unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    server
        .apply_object(claim(
            "small-v4.10.1.0.10",
            "small-v4",
            "10.1.0.10",
            "r-web",
            Some("web"),
        ))
        .await
        .unwrap();
    server
        .apply_object(claim(
            "small-v4.10.1.0.11",
            "small-v4",
            "10.1.0.11",
            "r-old",
            Some("old"),
        ))
        .await
        .unwrap();
    server
        .apply_object(claim(
            "small-v4.10.1.0.12",
            "small-v4",
            "10.1.0.12",
            "r-new",
            None,
        ))
        .await
        .unwrap();
    let client = server.in_process_client();
    // The operator's last count, which lags behind the claims.
    let pools: Api<aipam_crds::SpiderIPPool> = Api::all(client);
    pools
        .patch_status(
            "small-v4",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatedIPCount": 1, "totalIPCount": 4}})),
        )
        .await
        .unwrap();
    for (name, pod_uid, ip, id) in [
        ("web", uid.as_str(), "10.1.0.10/24", "r-web"),
        ("old", "uid-old", "10.1.0.11/24", "r-old"),
    ] {
        server
            .apply_object(json!({
                "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderEndpoint",
                "metadata": {"name": name, "namespace": "team-a",
                    "labels": {"aipam.io/reservation": id}},
                "status": {
                    "current": {"uid": pod_uid, "node": "node-1", "ips": [
                        {"interface": "eth0", "ipv4": ip, "ipv4Pool": "small-v4", "vlan": 0}
                    ]},
                    "ownerControllerType": "Pod", "ownerControllerName": name
                }
            }))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    Cluster {
        server,
        _dir: dir,
        kubeconfig,
    }
}

/// Runs the built binary (blocking, off the server's runtime threads).
async fn aipamctl(args: &[&str], env_kubeconfig: Option<&Path>) -> Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let env = env_kubeconfig.map(Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_aipamctl"));
        cmd.args(&args).env_remove("KUBECONFIG");
        if let Some(p) = env {
            cmd.env("KUBECONFIG", p);
        }
        cmd.output().unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `aipamctl inspect POD -n team-a -o json`, parsed.
async fn inspect_json(kubeconfig: &str, pod: &str) -> Value {
    let out = stdout(
        &aipamctl(
            &[
                "inspect",
                pod,
                "-n",
                "team-a",
                "--kubeconfig",
                kubeconfig,
                "-o",
                "json",
            ],
            None,
        )
        .await,
    );
    serde_json::from_str(&out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_claims_and_names_what_the_collector_will_reclaim() {
    let c = cluster().await;
    let kc = c.kubeconfig.to_str().unwrap();
    let json_out = stdout(&aipamctl(&["status", "--kubeconfig", kc, "-o", "json"], None).await);
    let s: Value = serde_json::from_str(&json_out).unwrap();
    let small = s["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "small-v4")
        .unwrap();
    assert_eq!(small["used"], 3);
    assert_eq!(small["held"], 1);
    assert_eq!(small["free"], 1);
    assert_eq!(small["total"], 4);
    assert_eq!(small["statusAllocated"], 1);
    let zone = s["pools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "zone-b-v4")
        .unwrap();
    assert_eq!(
        (zone["used"].as_u64(), zone["total"].as_u64()),
        (Some(0), Some(100))
    );
    assert_eq!(
        s["endpoints"],
        json!([{"namespace": "team-a", "endpoints": 2, "ipv4": 2, "ipv6": 0}])
    );
    // The gone Pod's claim and the young reservation: no live Pod holds them.
    let unheld: Vec<&str> = s["unheld"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["claim"].as_str().unwrap())
        .collect();
    assert_eq!(unheld, ["small-v4.10.1.0.11", "small-v4.10.1.0.12"]);
    // Both claims are young here (made a moment ago), so both wait for the grace period: the
    // gone Pod's named as such (its endpoint names the reservation), the other as never seen;
    // the endpoint of the gone Pod after its grace period too. The live Pod's claim stays.
    let reclaim: Vec<(String, String, bool)> = s["reclaim"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["notBefore"].is_null(),
            )
        })
        .collect();
    assert_eq!(
        reclaim,
        vec![
            (
                "small-v4.10.1.0.11".to_string(),
                "pod_gone".to_string(),
                false
            ),
            (
                "small-v4.10.1.0.12".to_string(),
                "never_appeared".to_string(),
                false
            ),
            ("team-a/old".to_string(), "pod_absent".to_string(), false),
        ]
    );
    assert!(s["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().starts_with(
            "pool small-v4: status.allocatedIPCount is 1 but 3 SpiderIPClaim(s) hold its addresses"
        )));

    // The table a human reads, through KUBECONFIG this time.
    let text = stdout(&aipamctl(&["status"], Some(&c.kubeconfig)).await);
    let line = text
        .lines()
        .find(|l| l.starts_with("small-v4"))
        .unwrap_or_else(|| panic!("{text}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        ["small-v4", "4", "10.1.0.0/24", "3", "1", "4"],
        "{line}"
    );
    assert!(line.contains("[###############-----]  75%"), "{line}");
    assert!(
        text.contains("its Pod was admitted (its SpiderEndpoint names the reservation)"),
        "{text}"
    );

    // The operator may run with another grace period: the young reservation then goes at
    // the next scan.
    let no_grace = stdout(
        &aipamctl(
            &[
                "status",
                "--kubeconfig",
                kc,
                "--reservation-grace-seconds",
                "0",
                "-o",
                "json",
            ],
            None,
        )
        .await,
    );
    let ng: Value = serde_json::from_str(&no_grace).unwrap();
    assert_eq!(ng["graceSeconds"], 0);
    let young = ng["reclaim"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "small-v4.10.1.0.12")
        .unwrap();
    assert_eq!(
        (young["reason"].as_str(), young["notBefore"].is_null()),
        (Some("never_appeared"), true)
    );

    // YAML carries the same document.
    let yaml = stdout(&aipamctl(&["status", "--kubeconfig", kc, "-o", "yaml"], None).await);
    let from_yaml: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(from_yaml["pools"], s["pools"]);
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_the_rule_the_exclusions_and_what_the_pod_holds() {
    let c = cluster().await;
    let kc = c.kubeconfig.to_str().unwrap();
    let i = inspect_json(kc, "web").await;
    assert_eq!(i["node"], "node-1");
    assert_eq!(i["reservation"], "r-web");
    let eth0 = &i["interfaces"][0];
    assert_eq!(eth0["interface"], "eth0");
    assert_eq!(eth0["rule"], "Pod annotation ipam.spidernet.io/ippool");
    let v4 = &eth0["families"][0];
    // Free: 4 addresses, minus the two other claims (its own is not counted).
    assert_eq!(
        v4["candidates"],
        json!([{"pool": "small-v4", "zone": false, "free": 2}])
    );
    assert_eq!(
        v4["excluded"],
        json!([
            {"pool": "team-b-v4", "reason": "the namespace's labels do not match its spec.namespaceAffinity (team=b)"},
            {"pool": "zone-b-v4", "reason": "node node-1 does not match its spec.nodeAffinity (zone=b)"}
        ])
    );
    assert_eq!(i["claims"].as_array().unwrap().len(), 1);
    assert_eq!(i["claims"][0]["address"], "10.1.0.10");
    assert_eq!(i["claims"][0]["phase"], "Bound");
    assert_eq!(i["claims"][0]["outcome"], "kept");
    assert_eq!(
        i["endpoint"],
        json!([{"interface": "eth0", "ipv4": "10.1.0.10/24 (small-v4)", "ipv6": null}])
    );

    let text = stdout(
        &aipamctl(
            &["inspect", "web", "-n", "team-a", "--kubeconfig", kc],
            None,
        )
        .await,
    );
    assert!(
        text.contains("interface eth0: pools from Pod annotation ipam.spidernet.io/ippool"),
        "{text}"
    );
    assert!(
        text.contains("IPv4 candidate 1: small-v4 (2 free)"),
        "{text}"
    );
    assert!(
        text.contains("IPv4 excluded:    team-b-v4: the namespace's labels do not match its spec.namespaceAffinity (team=b)"),
        "{text}"
    );
    assert!(text.contains("eth0: 10.1.0.10/24 (small-v4)"), "{text}");

    // A named context is used; an unknown one is an error that names it.
    let ctx = stdout(
        &aipamctl(
            &[
                "inspect",
                "web",
                "-n",
                "team-a",
                "--kubeconfig",
                kc,
                "--context",
                "aipam",
            ],
            None,
        )
        .await,
    );
    assert!(ctx.contains("Pod team-a/web"), "{ctx}");
    let bad = aipamctl(
        &[
            "inspect",
            "web",
            "-n",
            "team-a",
            "--kubeconfig",
            kc,
            "--context",
            "nope",
        ],
        None,
    )
    .await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("nope"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    // An absent Pod is an error the script can see.
    let missing = aipamctl(
        &["inspect", "nope", "-n", "team-a", "--kubeconfig", kc],
        None,
    )
    .await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("Pod team-a/nope not found"));
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_explains_a_refusal_when_every_pool_is_excluded() {
    let c = cluster().await;
    c.server
        .apply_object(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "stray", "namespace": "team-a",
                "annotations": {"ipam.spidernet.io/ippool": "{\"ipv4\": [\"team-b-v4\"]}"}
            },
            "spec": {"containers": [{"name": "c", "image": "x"}]}
        }))
        .await
        .unwrap();
    let kc = c.kubeconfig.to_str().unwrap();
    let text = stdout(
        &aipamctl(
            &["inspect", "stray", "-n", "team-a", "--kubeconfig", kc],
            None,
        )
        .await,
    );
    assert!(
        text.contains("A Pod like this one would be refused now:"),
        "{text}"
    );
    assert!(
        text.contains("interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool team-b-v4: the namespace's labels do not match its spec.namespaceAffinity (team=b)"),
        "{text}"
    );
    assert!(text.contains("no SpiderIPClaim"), "{text}");
    c.server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn free_shows_the_free_ranges_and_who_holds_what() {
    let c = cluster().await;
    let kc = c.kubeconfig.to_str().unwrap();
    let out = aipamctl(&["free", "small-v4", "--kubeconfig", kc], None).await;
    let text = stdout(&out);
    assert!(
        text.starts_with(
            "small-v4  10.1.0.0/24  total 4  used 3  free 1 (25%)\n  free: 10.1.0.13\n"
        ),
        "{text}"
    );
    assert!(
        text.contains("10.1.0.10                               eth0   team-a/web"),
        "{text}"
    );
    assert!(
        text.contains("10.1.0.12                               eth0   reservation r-new waits for its Pod in namespace team-a"),
        "{text}"
    );
    let j: Value = serde_json::from_str(&stdout(
        &aipamctl(&["free", "--kubeconfig", kc, "-o", "json"], None).await,
    ))
    .unwrap();
    let zone = j
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "zone-b-v4")
        .unwrap();
    assert_eq!(zone["freeRanges"], json!(["10.3.0.10-10.3.0.109"]));
    assert_eq!(zone["free"], 100);
    let missing = aipamctl(&["free", "no-such-pool", "--kubeconfig", kc], None).await;
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no SpiderIPPool named no-such-pool"));
    drop(c.server);
}

#[tokio::test]
async fn a_missing_kubeconfig_is_reported_not_panicked() {
    let o = aipamctl(&["status", "--kubeconfig", "/nonexistent/kubeconfig"], None).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("kubeconfig: /nonexistent/kubeconfig"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_an_unscheduled_pod_on_a_multus_network_shows_its_zone_pools() {
    let c = cluster().await;
    c.server
        .apply_yaml(include_str!(
            "../../e2e/fixtures/00-network-attachment-definition-crd.yaml"
        ))
        .await
        .unwrap();
    c.server
        .apply_yaml(
            r#"
apiVersion: v1
kind: Node
metadata: {name: node-2, labels: {zone: b}}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: zone-a-v4}
spec:
  subnet: 10.4.0.0/24
  ips: [10.4.0.10-10.4.0.19]
  nodeAffinity: {matchLabels: {zone: a}}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: macvlan-conf, namespace: kube-system}
spec:
  config: '{"cniVersion": "0.3.1", "name": "macvlan-conf", "plugins": [{"type": "macvlan", "master": "ens192", "ipam": {"type": "spiderpool"}}]}'
---
apiVersion: v1
kind: Pod
metadata:
  name: pending
  namespace: team-a
  annotations:
    ipam.spidernet.io/ippool: '{"ipv4": ["zone-a-v4", "zone-b-v4"]}'
    v1.multus-cni.io/default-network: kube-system/macvlan-conf
spec:
  containers: [{name: c, image: x}]
"#,
        )
        .await
        .unwrap();
    let kc = c.kubeconfig.to_str().unwrap();
    let out = stdout(
        &aipamctl(
            &[
                "inspect",
                "pending",
                "-n",
                "team-a",
                "--kubeconfig",
                kc,
                "-o",
                "yaml",
            ],
            None,
        )
        .await,
    );
    let i: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(i["node"], Value::Null);
    assert_eq!(i["refused"], Value::Null, "{out}");
    assert_eq!(i["interfaces"][0]["network"], "kube-system/macvlan-conf");
    assert_eq!(
        i["interfaces"][0]["families"][0]["candidates"],
        json!([
            {"pool": "zone-a-v4", "zone": true, "free": 10},
            {"pool": "zone-b-v4", "zone": true, "free": 100}
        ])
    );
    let text = stdout(
        &aipamctl(
            &["inspect", "pending", "-n", "team-a", "--kubeconfig", kc],
            None,
        )
        .await,
    );
    assert!(text.contains("no node known, as at admission"), "{text}");
    assert!(
        text.contains("IPv4 candidate 2: zone-b-v4 (100 free, zone pool)"),
        "{text}"
    );
    c.server.shutdown().await;
}

/// The controller `inspect` names is the webhook's (`aipam_rules::owner`): a ReplicaSet gives
/// way to its Deployment, a Job to its CronJob; one without stands, and so does a StatefulSet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_names_the_pods_top_controller() {
    let c = cluster().await;
    // Made in order, each owned (by its real UID, or the stand-in collects it) by the one
    // before it where `owner` says so; Pods last.
    let template = json!({"metadata": {"labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}});
    let replicated = |replicas: u32| {
        json!({"replicas": replicas, "selector": {"matchLabels": {"app": "x"}},
            "template": template})
    };
    let objects = [
        ("apps/v1", "Deployment", "front", None, replicated(3)),
        (
            "apps/v1",
            "ReplicaSet",
            "front-5d8",
            Some("front"),
            replicated(3),
        ),
        ("apps/v1", "ReplicaSet", "solo", None, replicated(1)),
        (
            "batch/v1",
            "CronJob",
            "nightly",
            None,
            json!({"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}}),
        ),
        (
            "batch/v1",
            "Job",
            "nightly-28",
            Some("nightly"),
            json!({"template": template}),
        ),
        ("apps/v1", "StatefulSet", "db", None, replicated(2)),
    ];
    let mut uids: std::collections::BTreeMap<&str, (&str, &str, String)> = Default::default();
    for (api_version, kind, name, owner, spec) in objects {
        let mut meta = json!({"name": name, "namespace": "team-a"});
        if let Some(o) = owner {
            let (a, k, uid) = &uids[o];
            meta["ownerReferences"] = json!([{"apiVersion": a, "kind": k, "name": o,
                "uid": uid, "controller": true}]);
        }
        let made = c
            .server
            .apply_object(json!({"apiVersion": api_version, "kind": kind,
                "metadata": meta, "spec": spec}))
            .await
            .unwrap();
        let uid = made["metadata"]["uid"].as_str().unwrap().to_string();
        uids.insert(name, (api_version, kind, uid));
    }
    let kc = c.kubeconfig.to_str().unwrap();
    for (pod, owner, shown) in [
        ("front-1", "front-5d8", "Deployment/front"),
        ("solo-1", "solo", "ReplicaSet/solo"),
        ("nightly-1", "nightly-28", "CronJob/nightly"),
        ("db-0", "db", "StatefulSet/db"),
    ] {
        let (api_version, kind, uid) = &uids[owner];
        c.server
            .apply_object(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": pod, "namespace": "team-a",
                    "ownerReferences": [{"apiVersion": api_version, "kind": kind,
                        "name": owner, "uid": uid, "controller": true}]
                },
                "spec": {"containers": [{"name": "c", "image": "x"}]}
            }))
            .await
            .unwrap();
        let i = inspect_json(kc, pod).await;
        assert_eq!(i["owner"], shown, "{pod}: {i}");
    }
    c.server.shutdown().await;
}

#[tokio::test]
async fn offline_commands_speak_yaml_too() {
    let plan = stdout(&aipamctl(&["plan", "-o", "yaml"], None).await);
    let p: Value = serde_yaml::from_str(&plan).unwrap();
    let backup = p["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pod"] == "sample-backup")
        .unwrap();
    assert_eq!(
        backup["interfaces"][0]["ipv4"][0]["pool"],
        "default-v4-ippool"
    );
    let refused = p["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["pod"] == "my-deploy-1")
        .unwrap();
    assert!(refused["refused"]
        .as_str()
        .unwrap()
        .contains("pool default-v4-ippool: the namespace's labels do not match its spec.namespaceAffinity (foo=bar)"));
    let validate = stdout(&aipamctl(&["validate", "-o", "yaml"], None).await);
    let v: Value = serde_yaml::from_str(&validate).unwrap();
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["errors"].as_array().unwrap().is_empty()));
}
