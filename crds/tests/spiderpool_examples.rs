//! Spiderpool's own documented manifests (copied into tests/fixtures/, each file says where from)
//! deserialise into our types and serialise back with no field lost or added.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde::Serialize;
use serde_json::Value;

use aipam_crds::{SpiderEndpoint, SpiderIPPool, SpiderReservedIP, SpiderSubnet};

fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| {
            let yaml = serde_yaml::Value::deserialize(doc).unwrap();
            serde_json::to_value(yaml).unwrap()
        })
        .collect()
}

/// Deserialises `doc` as `T`, serialises it back and compares with the original, the only
/// normalisation being `apiVersion` (older docs say `spiderpool.spidernet.io/v1`).
fn round_trip<T: DeserializeOwned + Serialize>(doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("does not deserialise: {e}\n{doc:#}"));
    let back = serde_json::to_value(&typed).unwrap();
    let mut want = doc.clone();
    want["apiVersion"] = Value::String(aipam_crds::API_VERSION.into());
    assert_eq!(back, want, "round trip changed the object");
    typed
}

fn check_file(name: &str) -> usize {
    let docs = fixture(name);
    assert!(!docs.is_empty(), "{name} has no documents");
    for doc in &docs {
        match doc["kind"].as_str().unwrap() {
            "SpiderIPPool" => {
                round_trip::<SpiderIPPool>(doc);
            }
            "SpiderSubnet" => {
                round_trip::<SpiderSubnet>(doc);
            }
            "SpiderEndpoint" => {
                round_trip::<SpiderEndpoint>(doc);
            }
            "SpiderReservedIP" => {
                round_trip::<SpiderReservedIP>(doc);
            }
            other => panic!("{name}: unexpected kind {other}"),
        }
    }
    docs.len()
}

#[test]
fn every_fixture_round_trips() {
    let dir = format!("{}/tests/fixtures", env!("CARGO_MANIFEST_DIR"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    let total: usize = names.iter().map(|n| check_file(n)).sum();
    assert!(total >= 13, "expected at least 13 documents, found {total}");
}

#[test]
fn ippool_sample_fields() {
    let pool: SpiderIPPool = round_trip(&fixture("ippool-reference-sample.yaml")[0]);
    assert_eq!(pool.metadata.name.as_deref(), Some("master-172"));
    assert_eq!(pool.ip_version(), Some(4));
    assert_eq!(pool.spec.subnet, "172.31.192.0/20");
    assert_eq!(pool.spec.exclude_ips.as_ref().map(Vec::len), Some(2));
    assert_eq!(pool.spec.gateway.as_deref(), Some("172.31.207.253"));
    assert!(pool.spec.is_default());
    assert!(!pool.spec.is_disabled());
    assert!(pool.status.is_none());
}

#[test]
fn affinity_fields() {
    let docs = fixture("ippool-affinity.yaml");
    let pod: SpiderIPPool = round_trip(&docs[0]);
    assert_eq!(
        pod.spec
            .pod_affinity
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|m| m.get("app"))
            .map(String::as_str),
        Some("test-app-3")
    );
    let node: SpiderIPPool = round_trip(&docs[1]);
    let expr = &node.spec.node_affinity.unwrap().match_expressions.unwrap()[0];
    assert_eq!(expr.key, "kubernetes.io/hostname");
    assert_eq!(expr.operator, "In");
    assert_eq!(expr.values, Some(vec!["node1".to_string()]));
    let by_name: SpiderIPPool = round_trip(&docs[2]);
    assert_eq!(by_name.spec.node_name, Some(vec!["node1".to_string()]));
    let ns: SpiderIPPool = round_trip(&docs[4]);
    assert_eq!(ns.spec.namespace_name, Some(vec!["test-ns1".to_string()]));
    let multus: SpiderIPPool = round_trip(&docs[5]);
    assert_eq!(
        multus.spec.multus_name,
        Some(vec!["default/macvlan-vlan0-eth0".to_string()])
    );
    assert_eq!(multus.ip_version(), None);
}

#[test]
fn routes_and_subnet() {
    let docs = fixture("routes.yaml");
    let pool: SpiderIPPool = round_trip(&docs[0]);
    let r = &pool.spec.routes.unwrap()[0];
    assert_eq!(
        (r.dst.as_str(), r.gw.as_str()),
        ("172.18.42.0/24", "172.18.41.1")
    );
    let subnet: SpiderSubnet = round_trip(&fixture("subnet-reference-sample.yaml")[0]);
    assert_eq!(subnet.ip_version(), Some(4));
    assert_eq!(subnet.spec.gateway.as_deref(), Some("172.22.40.1"));
}

#[test]
fn endpoint_without_spec() {
    let doc = &fixture("endpoint-reference-sample.yaml")[0];
    let ep: SpiderEndpoint = round_trip(doc);
    let status = ep.status.as_ref().unwrap();
    assert_eq!(status.owner_controller_type, "Deployment");
    assert_eq!(status.current.node, "dc-test02");
    let eth0 = ep.interface("eth0").unwrap();
    assert_eq!(eth0.ipv4.as_deref(), Some("172.31.199.193/20"));
    assert_eq!(eth0.ipv4_pool.as_deref(), Some("worker-172"));
    assert_eq!(eth0.vlan, Some(0));
    assert_eq!(eth0.clean_gateway, Some(false));
    // Nothing named `spec` appears on the wire.
    assert!(serde_json::to_value(&ep).unwrap().get("spec").is_none());
}

#[test]
fn reservedip_example() {
    let r: SpiderReservedIP = round_trip(&fixture("reservedip-example.yaml")[0]);
    assert_eq!(r.ip_version(), Some(4));
    assert_eq!(
        r.spec.ips,
        Some(vec!["172.18.42.41-172.18.42.49".to_string()])
    );
}

#[test]
fn status_as_the_api_server_returns_it() {
    // A pool as Spiderpool's controller writes it (status fields per IPPoolStatus).
    let doc = serde_json::json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPPool",
        "metadata": {"name": "p", "resourceVersion": "12", "finalizers": ["spiderpool.spidernet.io"]},
        "spec": {"subnet": "10.0.0.0/24", "ips": ["10.0.0.10-10.0.0.20"], "default": false, "disable": false, "vlan": 0},
        "status": {
            "allocatedIPs": "{\"10.0.0.10\":{\"interface\":\"eth0\",\"pod\":\"default/a\",\"podUid\":\"u1\"}}",
            "allocatedIPCount": 1,
            "totalIPCount": 11
        }
    });
    let pool: SpiderIPPool = round_trip(&doc);
    let status = pool.status.unwrap();
    let alloc = status.allocations().unwrap();
    assert_eq!(alloc["10.0.0.10"].namespaced_name, "default/a");
    assert_eq!(alloc["10.0.0.10"].nic, "eth0");
    assert_eq!(status.total_ip_count, Some(11));
    let subnet = serde_json::json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderSubnet",
        "metadata": {"name": "s"},
        "spec": {"subnet": "10.0.0.0/16"},
        "status": {"controlledIPPools": "{}", "allocatedIPCount": 0, "totalIPCount": 65534}
    });
    let _: SpiderSubnet = round_trip(&subnet);
}

#[test]
fn allocations_as_spiderpool_1_writes_them() {
    // Spiderpool 1.x (v2beta1 PoolIPAllocation) writes only the Pod and its UID.
    let status = aipam_crds::IPPoolStatus {
        allocated_ips: Some(
            r#"{"10.6.0.7":{"pod":"team-a/web-0","podUid":"9f1c"},"10.6.0.8":{"pod":"team-a/web-1","podUid":"77aa"}}"#
                .to_string(),
        ),
        ..Default::default()
    };
    let alloc = status.allocations().unwrap();
    assert_eq!(alloc.len(), 2);
    assert_eq!(alloc["10.6.0.7"].namespaced_name, "team-a/web-0");
    assert_eq!(alloc["10.6.0.7"].pod_uid, "9f1c");
    assert_eq!(alloc["10.6.0.7"].nic, "");
}
