//! Unit tests of the Pod hooks over the in-memory side effects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aipam_core::reservation::Reservation;
use kube::core::admission::AdmissionResponse;
use serde_json::{json, Value};

use crate::cache::Cache;
use crate::effects::MemoryEffects;
use crate::pod::PodHooks;
use crate::testkit::{apply_patch, load, pod_create, synced_cache};

const WORLD: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: controller-node-1, labels: {node-subnet: subnet-6}}
---
apiVersion: v1
kind: Node
metadata: {name: worker-node-1, labels: {node-subnet: subnet-7}}
---
apiVersion: v1
kind: Namespace
metadata: {name: zone-demo}
---
apiVersion: v1
kind: Namespace
metadata:
  name: team-a
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["team-a-v4"]'
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: test-ippool-6}
spec:
  subnet: 10.6.0.0/16
  ips: [10.6.168.60-10.6.168.69]
  gateway: 10.6.0.1
  nodeAffinity:
    matchExpressions: [{key: node-subnet, operator: In, values: [subnet-6]}]
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: test-ippool-7}
spec:
  subnet: 10.7.0.0/16
  ips: [10.7.168.60-10.7.168.69]
  gateway: 10.7.0.1
  nodeAffinity:
    matchExpressions: [{key: node-subnet, operator: In, values: [subnet-7]}]
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: team-a-v4}
spec:
  subnet: 10.20.0.0/24
  ips: [10.20.0.10-10.20.0.12]
  gateway: 10.20.0.1
  vlan: 20
  routes: [{dst: 10.99.0.0/16, gw: 10.20.0.254}]
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: backup-v4}
spec:
  subnet: 10.21.0.0/24
  ips: [10.21.0.10-10.21.0.19]
  vlan: 20
---
apiVersion: v1
kind: Namespace
metadata:
  name: opted-out
  labels: {aipam.io/ipam: disabled}
  annotations:
    ipam.spidernet.io/default-ipv4-ippool: '["team-a-v4"]'
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: anywhere-v4}
spec:
  subnet: 10.23.0.0/24
  ips: [10.23.0.10-10.23.0.19]
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: disabled-v4}
spec:
  subnet: 10.22.0.0/24
  ips: [10.22.0.10]
  disable: true
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: v6}
spec:
  subnet: fd00:20::/64
  ips: ["fd00:20::10-fd00:20::11"]
  vlan: 20
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: macvlan-conf, namespace: kube-system}
spec:
  config: '{"cniVersion":"0.3.1","name":"macvlan-conf","plugins":[{"type":"macvlan","master":"ens192","ipam":{"type":"spiderpool"}}]}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: storage, namespace: team-a}
spec:
  config: '{"cniVersion":"0.3.1","type":"macvlan","master":"ens224","ipam":{"type":"spiderpool","default_ipv4_ippool":["backup-v4"]}}'
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: other-ipam, namespace: team-a}
spec:
  config: '{"cniVersion":"0.3.1","type":"macvlan","ipam":{"type":"host-local","subnet":"192.168.0.0/24"}}'
---
apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web-7d4b9c
  namespace: team-a
  ownerReferences:
  - {apiVersion: apps/v1, kind: Deployment, name: web, uid: 11111111-2222-3333-4444-555555555555, controller: true}
spec: {replicas: 3}
"#;

struct World {
    hooks: PodHooks<Arc<MemoryEffects>>,
    effects: Arc<MemoryEffects>,
    cache: Cache,
}

fn world() -> World {
    world_with("")
}

fn world_with(extra: &str) -> World {
    let cache = synced_cache();
    let effects = Arc::new(MemoryEffects::new());
    load(WORLD, &cache, &effects).unwrap();
    load(extra, &cache, &effects).unwrap();
    World {
        hooks: PodHooks::new(cache.clone(), effects.clone()),
        effects,
        cache,
    }
}

/// A Deployment Pod as the ReplicaSet controller sends it: generateName, no name, no uid.
fn deployment_pod(ns: &str, annotations: Value) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": "web-7d4b9c-", "namespace": ns,
            "labels": {"app": "web"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9c",
                "uid": "aaaaaaaa-0000-0000-0000-000000000001", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    })
}

fn statefulset_pod(name: &str) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "name": name, "generateName": "db-", "namespace": "team-a",
            "labels": {"app": "db", "statefulset.kubernetes.io/pod-name": name},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                "uid": "bbbbbbbb-0000-0000-0000-000000000002", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"containers": [{"name": "db", "image": "postgres"}], "hostname": name, "subdomain": "db"}
    })
}

fn daemonset_pod(node: &str) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": "test-app-", "namespace": "zone-demo",
            "labels": {"app": "test-app"},
            "annotations": {
                "ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"test-ippool-7\"]}",
                "v1.multus-cni.io/default-network": "kube-system/macvlan-conf"
            },
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "test-app",
                "uid": "cccccccc-0000-0000-0000-000000000003", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "containers": [{"name": "app", "image": "busybox"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]
            }}}
        }
    })
}

async fn mutate(w: &World, uid: &str, pod: &Value) -> (AdmissionResponse, Value) {
    let req = pod_create(uid, pod, false).unwrap();
    let resp = w.hooks.mutate(&req).await;
    let patched = apply_patch(pod, &resp).unwrap();
    (resp, patched)
}

fn record_of(pod: &Value) -> Reservation {
    Reservation::parse(
        pod["metadata"]["annotations"]["aipam.io/reservation"]
            .as_str()
            .expect("reservation annotation"),
    )
    .unwrap()
}

fn claim_count(w: &World) -> usize {
    w.effects.state().claims.len()
}

#[tokio::test]
async fn host_network_and_skip_annotation_are_left_alone() {
    let w = world();
    let mut pod = deployment_pod("team-a", json!({}));
    pod["spec"]["hostNetwork"] = json!(true);
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed && resp.patch.is_none());
    let pod = deployment_pod("team-a", json!({"aipam.io/skip": "true"}));
    let (resp, _) = mutate(&w, "u2", &pod).await;
    assert!(resp.allowed && resp.patch.is_none());
    assert_eq!(claim_count(&w), 0);
}

#[tokio::test]
async fn deployment_pod_from_generate_name_reserves_and_records() {
    let w = world();
    let mut pod = deployment_pod("team-a", json!({}));
    pod["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("annotations");
    let (resp, patched) = mutate(&w, "705ab4f5-6393-11e8-b7cc-42010a800002", &pod).await;
    assert!(resp.allowed, "{:?}", resp.result);
    // No annotations at all: the patch creates the map.
    let ops: Value = serde_json::from_slice(resp.patch.as_ref().unwrap()).unwrap();
    assert_eq!(ops[0]["op"], "add");
    assert_eq!(ops[0]["path"], "/metadata/annotations");
    let r = record_of(&patched);
    assert_eq!(
        r.id,
        aipam_core::reservation::reservation_id("705ab4f5-6393-11e8-b7cc-42010a800002")
    );
    assert_eq!(r.interfaces.len(), 1);
    assert_eq!(r.interfaces[0].interface, "eth0");
    assert_eq!(r.interfaces[0].ipv4.len(), 1);
    assert_eq!(r.interfaces[0].ipv4[0].pool, "team-a-v4");
    // The claim: named from pool and address, labelled, owner resolved to the Deployment.
    let st = w.effects.state();
    assert_eq!(st.claims.len(), 1);
    let (name, claim) = st.claims.iter().next().unwrap();
    assert_eq!(name, &r.claim_names()[0]);
    assert_eq!(claim.spec.pool, "team-a-v4");
    assert_eq!(claim.spec.interface, "eth0");
    assert_eq!(claim.spec.namespace, "team-a");
    assert_eq!(claim.spec.pod_name, None);
    assert_eq!(claim.spec.reservation, r.id);
    assert!(!claim.spec.provisional);
    let owner = claim.spec.owner.as_ref().unwrap();
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Deployment", "web")
    );
    let labels = claim.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["aipam.io/reservation"], r.id);
    assert_eq!(labels["aipam.io/pool"], "team-a-v4");
    // The cache knows at once.
    assert_eq!(w.cache.used("team-a-v4").len(), 1);
}

#[tokio::test]
async fn annotation_key_is_escaped_when_annotations_exist() {
    let w = world();
    let pod = deployment_pod("team-a", json!({"team": "a"}));
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    let text = String::from_utf8(resp.patch.clone().unwrap()).unwrap();
    assert!(
        text.contains(r#""path":"/metadata/annotations/aipam.io~1reservation""#),
        "{text}"
    );
    assert_eq!(patched["metadata"]["annotations"]["team"], "a");
    record_of(&patched);
}

#[tokio::test]
async fn successive_pods_never_share_an_address_and_exhaustion_is_refused() {
    let w = world();
    let mut seen = Vec::new();
    for i in 0..3 {
        let (resp, patched) = mutate(
            &w,
            &format!("uid-{i}"),
            &deployment_pod("team-a", json!({})),
        )
        .await;
        assert!(resp.allowed);
        let a = record_of(&patched).interfaces[0].ipv4[0].address;
        assert!(!seen.contains(&a));
        seen.push(a);
    }
    let (resp, _) = mutate(&w, "uid-3", &deployment_pod("team-a", json!({}))).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 403);
    assert_eq!(
        resp.result.message,
        "interface eth0: no IPv4 pool from namespace team-a annotation ipam.spidernet.io/default-ipv4-ippool/ipam.spidernet.io/default-ipv6-ippool can serve this Pod: pool team-a-v4: all 3 addresses are in use"
    );
    assert_eq!(claim_count(&w), 3);
    // Spiderpool's allocation series: four allocations, one failed.
    let sp = &w.hooks.metrics.spiderpool;
    assert_eq!((sp.counts.get(), sp.failures.get()), (4, 1));
    assert_eq!(sp.internal_errors.get(), 0);
    assert!(sp.max.get() >= sp.min.get() && sp.latest.get() > 0.0);
}

#[tokio::test]
async fn refusal_lists_every_pool_and_reserves_nothing() {
    let w = world();
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"disabled-v4\", \"nope\", \"v6\"]}"}),
    );
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 403);
    assert_eq!(
        resp.result.message,
        "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: \
         pool disabled-v4: the pool is disabled (spec.disable: true); \
         pool nope: no SpiderIPPool of that name exists; \
         pool v6: it is an IPv6 pool, but an IPv4 pool is needed here"
    );
    assert_eq!(claim_count(&w), 0);
}

#[tokio::test]
async fn malformed_annotation_is_a_bad_request() {
    let w = world();
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": \"x\"}"}),
    );
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 400);
    assert!(
        resp.result
            .message
            .starts_with("annotation ipam.spidernet.io/ippool:"),
        "{}",
        resp.result.message
    );
    assert_eq!(claim_count(&w), 0);
}

#[tokio::test]
async fn a_pod_arriving_with_another_pods_record_gets_its_own() {
    let w = world();
    let pod = deployment_pod("team-a", json!({}));
    let (_, patched) = mutate(&w, "u1", &pod).await;
    let first = record_of(&patched);
    assert_eq!(claim_count(&w), 1);
    // The same Pod manifest, record included (copied with `kubectl get -o yaml`, restored,
    // or the first Pod's own patch seen again): the record is not this Pod's, whatever claims
    // exist for it, so it is replaced.
    let (resp, again) = mutate(&w, "u2", &patched).await;
    // So is anything else found there: the annotation is the webhook's output, not input.
    let mut garbage = pod.clone();
    garbage["metadata"]["annotations"] = json!({"aipam.io/reservation": "garbage"});
    let (garbage_resp, replaced) = mutate(&w, "u3", &garbage).await;
    assert!(garbage_resp.allowed, "{}", garbage_resp.result.message);
    assert_eq!(record_of(&replaced).addresses().len(), 1);
    assert!(resp.allowed, "{}", resp.result.message);
    let second = record_of(&again);
    assert_ne!(second.id, first.id);
    assert_ne!(second.addresses(), first.addresses());
    assert_eq!(claim_count(&w), 3, "the first Pod keeps its claim");
    // A Pod this hook reserves nothing for (skipped, host network) loses the record instead:
    // it must not hold the first Pod's address.
    let mut skipped = patched.clone();
    skipped["metadata"]["annotations"]["aipam.io/skip"] = json!("true");
    let mut host = patched.clone();
    host["spec"]["hostNetwork"] = json!(true);
    for (uid, p) in [("u4", &skipped), ("u5", &host)] {
        let (resp, out) = mutate(&w, uid, p).await;
        assert!(resp.allowed, "{}", resp.result.message);
        assert!(
            out["metadata"]["annotations"]
                .get("aipam.io/reservation")
                .is_none(),
            "{out}"
        );
    }
    assert_eq!(claim_count(&w), 3);
    let st = w.effects.state();
    for r in [&first, &second] {
        for c in r.claim_names() {
            assert_eq!(st.claims[&c].spec.reservation, r.id);
        }
    }
}

#[tokio::test]
async fn dry_run_selects_and_refuses_but_reserves_nothing() {
    let w = world();
    let pod = deployment_pod("team-a", json!({}));
    let req = pod_create("u1", &pod, true).unwrap();
    let resp = w.hooks.mutate(&req).await;
    assert!(resp.allowed && resp.patch.is_none());
    assert_eq!(claim_count(&w), 0);
    let bad = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"nope\"]}"}),
    );
    let resp = w.hooks.mutate(&pod_create("u2", &bad, true).unwrap()).await;
    assert!(!resp.allowed);
    assert!(resp
        .result
        .message
        .ends_with("pool nope: no SpiderIPPool of that name exists"));
    assert_eq!(w.effects.state().create_calls, 0);
    // Dry runs are not allocations.
    assert_eq!(w.hooks.metrics.spiderpool.counts.get(), 0);
}

#[tokio::test]
async fn zone_pod_gets_one_address_per_zone_and_the_union_as_affinity() {
    let w = world();
    let pod = deployment_pod(
        "zone-demo",
        json!({
            "ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"test-ippool-7\"]}",
            "v1.multus-cni.io/default-network": "kube-system/macvlan-conf"
        }),
    );
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&patched);
    let pools: Vec<&str> = r.interfaces[0]
        .ipv4
        .iter()
        .map(|a| a.pool.as_str())
        .collect();
    assert_eq!(pools, vec!["test-ippool-6", "test-ippool-7"]);
    assert!(r.is_provisional());
    assert!(w
        .effects
        .state()
        .claims
        .values()
        .all(|c| c.spec.provisional));
    assert_eq!(
        patched["spec"]["affinity"],
        json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-subnet", "operator": "In", "values": ["subnet-6"]}]},
            {"matchExpressions": [{"key": "node-subnet", "operator": "In", "values": ["subnet-7"]}]}
        ]}}})
    );
}

#[tokio::test]
async fn zones_then_a_pool_for_every_node_need_no_affinity() {
    let w = world();
    let pod = deployment_pod(
        "zone-demo",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"anywhere-v4\", \"test-ippool-7\"]}"}),
    );
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&patched);
    let pools: Vec<&str> = r.interfaces[0]
        .ipv4
        .iter()
        .map(|a| a.pool.as_str())
        .collect();
    // Zone pools sort before the unrestricted one; past it nothing more is needed.
    assert_eq!(pools, vec!["test-ippool-6", "test-ippool-7", "anywhere-v4"]);
    assert!(patched["spec"].get("affinity").is_none());
}

#[tokio::test]
async fn selection_notes_become_warnings() {
    let w = world();
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/subnet": "{\"ipv4\": [\"subnet-6\"]}"}),
    );
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed);
    let warnings = resp.warnings.unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("enableSpiderSubnet"), "{warnings:?}");
}

#[tokio::test]
async fn annotations_spiderpool_would_not_read_are_warned_about_not_refused() {
    // The SpiderSubnet feature is off in this world.
    let w = world();
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"team-a-v4\"]}",
               "ipam.spidernet.io/subnet": "{ipv4: x}",
               "ipam.spidernet.io/ippool-reclaim": "maybe"}),
    );
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let warnings = resp.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("annotation ipam.spidernet.io/subnet: invalid JSON"),
        "{warnings:?}"
    );
    assert!(
        warnings[1]
            .starts_with("annotation ipam.spidernet.io/ippool-reclaim: `maybe` is not a boolean"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn annotations_spiderpool_reads_are_admitted_with_what_was_ignored() {
    let w = world();
    // `cleangateway` belongs to `ippools`; Spiderpool ignores it in `ippool`, and the repeat.
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool":
            "{\"ipv4\": [\"team-a-v4\", \"team-a-v4\"], \"cleangateway\": true}"}),
    );
    let (resp, out) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(record_of(&out).interfaces[0].ipv4[0].pool, "team-a-v4");
    let warnings = resp.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("unknown field `cleangateway` ignored"),
        "{warnings:?}"
    );
    assert!(
        warnings[1].contains("pool `team-a-v4` is listed twice"),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn namespaces_opted_out_are_left_alone() {
    let w = world();
    let (resp, _) = mutate(&w, "u1", &deployment_pod("opted-out", json!({}))).await;
    assert!(resp.allowed && resp.patch.is_none());
    assert_eq!(claim_count(&w), 0);
}

#[tokio::test]
async fn zone_affinity_is_intersected_with_the_pods_own() {
    let w = world();
    let mut pod = deployment_pod(
        "zone-demo",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"test-ippool-7\"]}"}),
    );
    pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]}}});
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let terms = &patched["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
    assert_eq!(
        terms,
        &json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]},
                                  {"key": "node-subnet", "operator": "In", "values": ["subnet-6"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]},
                                  {"key": "node-subnet", "operator": "In", "values": ["subnet-7"]}]}
        ])
    );
}

#[tokio::test]
async fn too_many_affinity_terms_is_refused_and_released() {
    let w = world();
    let mut pod = deployment_pod(
        "zone-demo",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"test-ippool-7\"]}"}),
    );
    let terms: Vec<Value> = (0..40)
        .map(|i| json!({"matchExpressions": [{"key": "rack", "operator": "In", "values": [format!("r{i}")]}]}))
        .collect();
    pod["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}});
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("would have 80 terms"),
        "{}",
        resp.result.message
    );
    assert_eq!(claim_count(&w), 0);
    assert_eq!(w.effects.state().deleted.len(), 2);
    assert!(w.cache.used("test-ippool-6").is_empty());
}

#[tokio::test]
async fn daemonset_pod_gets_its_zones_pool_directly() {
    let w = world();
    let (resp, patched) = mutate(&w, "u1", &daemonset_pod("worker-node-1")).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&patched);
    assert_eq!(r.interfaces[0].ipv4.len(), 1);
    assert_eq!(r.interfaces[0].ipv4[0].pool, "test-ippool-7");
    assert!(!r.is_provisional());
    // The pinned affinity is left as it was.
    assert_eq!(
        patched["spec"]["affinity"],
        daemonset_pod("worker-node-1")["spec"]["affinity"]
    );
    let (_, patched) = mutate(&w, "u2", &daemonset_pod("controller-node-1")).await;
    assert_eq!(
        record_of(&patched).interfaces[0].ipv4[0].pool,
        "test-ippool-6"
    );
}

#[tokio::test]
async fn unknown_node_is_refused() {
    let w = world();
    let (resp, _) = mutate(&w, "u1", &daemonset_pod("ghost")).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.starts_with("node ghost "),
        "{}",
        resp.result.message
    );
    assert_eq!(claim_count(&w), 0);
}

#[tokio::test]
async fn statefulset_pod_keeps_its_address() {
    let w = world();
    let pod = statefulset_pod("db-0");
    let (resp, patched) = mutate(&w, "first", &pod).await;
    assert!(resp.allowed);
    let first = record_of(&patched);
    let addr = first.interfaces[0].ipv4[0].clone();
    // While db-0 exists, a second Pod of that name is refused (its create would fail on the
    // name anyway) and takes nothing from it.
    w.effects.with(|s| s.pods.insert("team-a/db-0".into()));
    let (resp, _) = mutate(&w, "squatter", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "Pod team-a/db-0 already exists and holds the addresses kept for StatefulSet Pods of this name; a Pod of the same name can be created once it is gone"
    );
    assert_eq!(
        w.effects.state().claims[&addr.claim_name()]
            .spec
            .reservation,
        first.id
    );
    // The Pod is deleted and created again with the same name.
    w.effects.with(|s| s.pods.clear());
    let (resp, patched) = mutate(&w, "second", &pod).await;
    assert!(resp.allowed);
    let second = record_of(&patched);
    assert_ne!(first.id, second.id);
    assert_eq!(second.interfaces[0].ipv4, vec![addr.clone()]);
    let st = w.effects.state();
    assert_eq!(st.claims.len(), 1);
    assert_eq!(
        st.claims[&addr.claim_name()]
            .metadata
            .labels
            .as_ref()
            .unwrap()["aipam.io/reservation"],
        second.id
    );
    // Another ordinal does not get it.
    let (_, other) = mutate(&w, "third", &statefulset_pod("db-1")).await;
    assert_ne!(record_of(&other).interfaces[0].ipv4[0], addr);
}

#[tokio::test]
async fn already_exists_races_pick_again() {
    // Another replica took two of the three addresses; this replica's cache has not seen it.
    let w = world();
    for ip in ["10.20.0.10", "10.20.0.11"] {
        let claim = aipam_crds::SpiderIPClaim::new(
            &format!("team-a-v4.{ip}"),
            aipam_crds::SpiderIPClaimSpec {
                pool: "team-a-v4".into(),
                address: ip.into(),
                ip_version: aipam_crds::IpVersion::V4,
                interface: "eth0".into(),
                namespace: "team-a".into(),
                pod_name: None,
                reservation: "r-other".into(),
                owner: None,
                provisional: false,
            },
        );
        w.effects
            .with(|s| s.claims.insert(format!("team-a-v4.{ip}"), claim));
    }
    let (resp, patched) = mutate(&w, "u1", &deployment_pod("team-a", json!({}))).await;
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(
        record_of(&patched).interfaces[0].ipv4[0]
            .address
            .to_string(),
        "10.20.0.12"
    );
    // Now the pool is really full: the next Pod finds out by conflicts, and the message says so.
    let (resp, _) = mutate(&w, "u2", &deployment_pod("team-a", json!({}))).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("all 3 addresses are in use")
            || resp
                .result
                .message
                .contains("pool team-a-v4: no free address left"),
        "{}",
        resp.result.message
    );
    assert!(w.hooks.metrics.claim_conflicts.get() >= 1);
    assert_eq!(
        w.hooks.metrics.spiderpool.conflicts.get(),
        w.hooks.metrics.claim_conflicts.get()
    );
}

#[tokio::test]
async fn full_pool_falls_back_to_the_next_candidate() {
    let w = world();
    for ip in ["10.20.0.10", "10.20.0.11", "10.20.0.12"] {
        let mut claim = aipam_crds::SpiderIPClaim::new(
            &format!("team-a-v4.{ip}"),
            aipam_crds::SpiderIPClaimSpec {
                pool: "team-a-v4".into(),
                address: ip.into(),
                ip_version: aipam_crds::IpVersion::V4,
                interface: "eth0".into(),
                namespace: "team-a".into(),
                pod_name: None,
                reservation: "r-other".into(),
                owner: None,
                provisional: false,
            },
        );
        claim.metadata.name = Some(format!("team-a-v4.{ip}"));
        w.effects
            .with(|s| s.claims.insert(format!("team-a-v4.{ip}"), claim));
    }
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"team-a-v4\", \"backup-v4\"]}"}),
    );
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(record_of(&patched).interfaces[0].ipv4[0].pool, "backup-v4");
}

#[tokio::test]
async fn dual_stack_is_both_or_neither() {
    let w = world_with(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: spiderpool-conf, namespace: aipam-system}
data: {enableIPv4: "true", enableIPv6: "true"}
"#,
    );
    // Both v6 addresses are taken by another replica.
    for ip in ["fd00:20::10", "fd00:20::11"] {
        let addr: std::net::IpAddr = ip.parse().unwrap();
        let name = aipam_core::alloc::claim_name("v6", &addr);
        let claim = aipam_crds::SpiderIPClaim::new(
            &name,
            aipam_crds::SpiderIPClaimSpec {
                pool: "v6".into(),
                address: ip.into(),
                ip_version: aipam_crds::IpVersion::V6,
                interface: "eth0".into(),
                namespace: "team-a".into(),
                pod_name: None,
                reservation: "r-other".into(),
                owner: None,
                provisional: false,
            },
        );
        w.effects.with(|s| s.claims.insert(name.clone(), claim));
    }
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"team-a-v4\"], \"ipv6\": [\"v6\"]}"}),
    );
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "interface eth0: no IPv6 address could be reserved: pool v6: no free address left; nothing was reserved for this Pod, retry or add addresses"
    );
    // The IPv4 address taken first was given back.
    let st = w.effects.state();
    assert_eq!(st.deleted.len(), 1);
    assert!(st.deleted[0].starts_with("team-a-v4."));
    assert!(w.cache.used("team-a-v4").is_empty());
}

/// A Deployment Pod of team-a with two interfaces, each from its own pool: two claim creates.
fn two_interface_pod() -> Value {
    deployment_pod(
        "team-a",
        json!({
            "ipam.spidernet.io/ippools": "[{\"interface\": \"eth0\", \"ipv4\": [\"team-a-v4\"]}, {\"interface\": \"net1\", \"ipv4\": [\"backup-v4\"]}]",
            "k8s.v1.cni.cncf.io/networks": "storage"
        }),
    )
}

#[tokio::test]
async fn api_failure_releases_what_was_taken() {
    let w = world();
    w.effects.with(|s| s.fail_create_at = Some(1));
    let pod = two_interface_pod();
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 500);
    assert!(resp.result.message.contains("injected failure"));
    assert_eq!(claim_count(&w), 0);
    assert_eq!(w.effects.state().deleted.len(), 1);
}

/// A write the API server kept shedding refuses the Pod with 429 (the client comes back later,
/// as for the API server's own 429s) and says so; what was reserved is rolled back.
#[tokio::test]
async fn an_overloaded_api_server_refuses_with_429_and_rolls_back() {
    let w = world();
    w.effects.with(|s| {
        s.fail_create_at = Some(1);
        s.fail_as_overloaded = true;
    });
    let pod = two_interface_pod();
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 429);
    assert!(
        resp.result
            .message
            .contains("no address was reserved: Kubernetes API overloaded"),
        "{}",
        resp.result.message
    );
    assert_eq!(claim_count(&w), 0);
}

/// The rollback deletes a claim only as the object this admission made (a UID precondition):
/// when the claim was collected meanwhile and its address claimed anew under the same name by
/// another admission, the other admission's claim stays.
#[tokio::test]
async fn rollback_leaves_a_claim_made_anew_under_the_same_name() {
    let w = world();
    w.effects.with(|s| {
        s.fail_create_at = Some(1);
        s.remade_before_failure = true;
    });
    let pod = two_interface_pod();
    let (resp, _) = mutate(&w, "u1", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 500);
    assert_eq!(claim_count(&w), 1, "the other admission's claim is kept");
    assert!(w.effects.state().deleted.is_empty());
}

#[tokio::test]
async fn multus_networks_pick_the_interfaces() {
    let w = world();
    // net1 uses this IPAM with a default pool in its CNI configuration; net2 does not.
    let pod = deployment_pod(
        "team-a",
        json!({"k8s.v1.cni.cncf.io/networks": "storage, other-ipam"}),
    );
    let (resp, patched) = mutate(&w, "u1", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&patched);
    let ifaces: Vec<(&str, &str)> = r
        .interfaces
        .iter()
        .map(|i| (i.interface.as_str(), i.ipv4[0].pool.as_str()))
        .collect();
    assert_eq!(ifaces, vec![("eth0", "team-a-v4"), ("net1", "team-a-v4")]);
    // Namespace defaults win over the CNI configuration's; in a namespace without, the
    // network's default_ipv4_ippool serves.
    let w = world();
    let mut pod = deployment_pod(
        "zone-demo",
        json!({"k8s.v1.cni.cncf.io/networks": "team-a/storage@data0"}),
    );
    pod["metadata"]["annotations"]["v1.multus-cni.io/default-network"] =
        json!("kube-system/missing");
    let (resp, _) = mutate(&w, "u2", &pod).await;
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "NetworkAttachmentDefinition kube-system/missing (named by the Pod's Multus annotations) does not exist"
    );
    let pod = deployment_pod(
        "zone-demo",
        json!({"k8s.v1.cni.cncf.io/networks": "team-a/storage@data0"}),
    );
    let mut hooks = PodHooks::new(w.cache.clone(), w.effects.clone());
    hooks.options.interfaces.serve_primary = false;
    let resp = hooks.mutate(&pod_create("u3", &pod, false).unwrap()).await;
    let patched = apply_patch(&pod, &resp).unwrap();
    let r = record_of(&patched);
    assert_eq!(r.interfaces.len(), 1);
    assert_eq!(r.interfaces[0].interface, "data0");
    assert_eq!(r.interfaces[0].ipv4[0].pool, "backup-v4");
}

#[tokio::test]
async fn validation_writes_the_endpoint_and_leaves_the_claim_as_created() {
    let w = world();
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/routes": "[{\"dst\": \"10.98.0.0/16\", \"gw\": \"10.20.0.253\"}]"}),
    );
    let (_, patched) = mutate(&w, "u1", &pod).await;
    let r = record_of(&patched);
    let claims_before = w.effects.state().claims;
    let mut created = patched.clone();
    created["metadata"]["name"] = json!("web-7d4b9c-x2x9z");
    created["metadata"]["uid"] = json!("5c7e0c1a-1111-2222-3333-444455556666");
    let resp = w
        .hooks
        .bind(&pod_create("u1v", &created, false).unwrap())
        .await;
    assert!(resp.allowed && resp.patch.is_none());
    let st = w.effects.state();
    // One write for the Pod: the claim, written once at reservation, is not touched.
    assert_eq!(st.claims, claims_before);
    let ep = serde_json::to_value(&st.endpoints["team-a/web-7d4b9c-x2x9z"]).unwrap();
    let addr = r.interfaces[0].ipv4[0].address;
    assert_eq!(
        ep["status"],
        json!({
            "current": {
                "uid": "5c7e0c1a-1111-2222-3333-444455556666",
                "node": "",
                "ips": [{
                    "interface": "eth0",
                    "ipv4": format!("{addr}/24"),
                    "ipv4Pool": "team-a-v4",
                    "cleanGateway": false,
                    "ipv4Gateway": "10.20.0.1",
                    "vlan": 20,
                    "routes": [{"dst": "10.99.0.0/16", "gw": "10.20.0.254"}, {"dst": "10.98.0.0/16", "gw": "10.20.0.253"}]
                }]
            },
            "ownerControllerType": "Deployment",
            "ownerControllerName": "web"
        })
    );
    // Not owned by the Pod yet: it is not stored when this runs (the operator adopts it).
    assert!(ep["metadata"].get("ownerReferences").is_none());
    // Dry run: nothing bound.
    let w2 = world();
    let resp = w2
        .hooks
        .bind(&pod_create("u2v", &created, true).unwrap())
        .await;
    assert!(resp.allowed);
    assert!(w2.effects.state().endpoints.is_empty());
}

/// Found on the real API server: validating admission runs before the store's create, so a
/// Pod created under a name a live Pod has (by hand, or a generated name that collided and that
/// the API server then retries under another) reached the endpoint write first and replaced
/// the live Pod's endpoint with its own addresses. It is left alone now; an endpoint whose Pod
/// is gone is still replaced.
#[tokio::test]
async fn a_pod_whose_name_is_taken_leaves_the_live_pods_endpoint_alone() {
    let w = world();
    let pod = deployment_pod("team-a", json!({}));
    let bind = |name: &str, uid: &str, patched: &Value| {
        let mut created = patched.clone();
        created["metadata"]["name"] = json!(name);
        created["metadata"]["uid"] = json!(uid);
        pod_create(uid, &created, false).unwrap()
    };
    let (_, first) = mutate(&w, "m1", &pod).await;
    assert!(
        w.hooks
            .bind(&bind("web-a", "uid-live", &first))
            .await
            .allowed
    );
    w.effects.with(|s| s.pods.insert("team-a/web-a".into()));
    let live = w.effects.state().endpoints["team-a/web-a"].clone();

    let (_, second) = mutate(&w, "m2", &pod).await;
    let resp = w.hooks.bind(&bind("web-a", "uid-second", &second)).await;
    assert!(resp.allowed, "the API server answers AlreadyExists, not us");
    assert_eq!(
        w.effects.state().endpoints["team-a/web-a"],
        live,
        "the live Pod keeps its endpoint"
    );

    // Once no Pod of the name lives, the endpoint is the new Pod's.
    w.effects.with(|s| s.pods.clear());
    assert!(
        w.hooks
            .bind(&bind("web-a", "uid-third", &second))
            .await
            .allowed
    );
    let cur = &w.effects.state().endpoints["team-a/web-a"];
    assert_eq!(cur.status.as_ref().unwrap().current.uid, "uid-third");
}

#[tokio::test]
async fn provisional_endpoint_has_no_ips_yet() {
    let w = world();
    let pod = deployment_pod(
        "zone-demo",
        json!({"ipam.spidernet.io/ippool": "{\"ipv4\": [\"test-ippool-6\", \"test-ippool-7\"]}"}),
    );
    let (_, patched) = mutate(&w, "u1", &pod).await;
    let mut created = patched.clone();
    created["metadata"]["name"] = json!("web-1");
    created["metadata"]["uid"] = json!("uid-1");
    w.hooks
        .bind(&pod_create("v", &created, false).unwrap())
        .await;
    let st = w.effects.state();
    let ep = &st.endpoints["zone-demo/web-1"];
    let cur = &ep.status.as_ref().unwrap().current;
    assert_eq!(cur.uid, "uid-1");
    assert!(cur.ips.is_empty());
    assert!(st.claims.values().all(|c| c.spec.provisional));
}

#[tokio::test]
async fn of_two_overlapping_pools_only_the_older_serves() {
    // Two replicas each allowed one of these at the same moment: the cache holds both. The
    // newer one must hand out nothing, or 10.40.0.12 could go to two Pods.
    let w = world_with(
        r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: late, creationTimestamp: "2026-11-30T10:00:05Z"}
spec: {subnet: 10.40.0.0/24, ips: [10.40.0.12-10.40.0.20]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: early, creationTimestamp: "2026-11-30T10:00:04Z"}
spec: {subnet: 10.40.0.0/24, ips: [10.40.0.10-10.40.0.12]}
"#,
    );
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": r#"{"ipv4": ["late"]}"#}),
    );
    let (resp, _) = mutate(&w, "u-late", &pod).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains(
            "pool late: the pool shares addresses with SpiderIPPool early, created before it; it serves no Pod until one of them is changed"
        ),
        "{}",
        resp.result.message
    );
    assert!(w.effects.state().claims.is_empty(), "nothing reserved");
    let pod = deployment_pod(
        "team-a",
        json!({"ipam.spidernet.io/ippool": r#"{"ipv4": ["early"]}"#}),
    );
    let (resp, _) = mutate(&w, "u-early", &pod).await;
    assert!(resp.allowed, "{:?}", resp.result);
}

#[tokio::test]
async fn a_kept_address_taken_over_meanwhile_is_not_taken_twice() {
    // Two admissions race for db-0's kept address (the cache of this replica has not seen the
    // other's take-over): the API server's `test` lets one win; this one reserves anew.
    let w = world();
    let pod = statefulset_pod("db-0");
    let (_, patched) = mutate(&w, "first", &pod).await;
    let kept = record_of(&patched).interfaces[0].ipv4[0].clone();
    w.effects.with(|s| {
        s.claims
            .get_mut(&kept.claim_name())
            .unwrap()
            .spec
            .reservation = "r-winner".into();
    });
    let (resp, patched) = mutate(&w, "second", &pod).await;
    assert!(resp.allowed, "{}", resp.result.message);
    assert_ne!(record_of(&patched).interfaces[0].ipv4[0], kept);
    assert_eq!(
        w.effects.state().claims[&kept.claim_name()]
            .spec
            .reservation,
        "r-winner"
    );
}

#[tokio::test]
async fn a_chosen_address_is_given_or_refused_with_who_holds_it() {
    let w = world();
    let chosen = |v: &str| deployment_pod("team-a", json!({"aipam.io/ip-address": v}));
    let (resp, out) = mutate(&w, "u1", &chosen("10.20.0.12")).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&out);
    assert_eq!(r.interfaces[0].ipv4[0].address.to_string(), "10.20.0.12");
    assert_eq!(r.interfaces[0].ipv4[0].pool, "team-a-v4");
    // Never silently another address.
    let (resp, _) = mutate(&w, "u2", &chosen("10.20.0.12")).await;
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 403);
    assert_eq!(
        resp.result.message,
        format!(
            "interface eth0: the chosen address 10.20.0.12 is held by a Pod of namespace team-a (SpiderIPClaim team-a-v4.10.20.0.12, reservation {}); it is not given to two Pods (delete that Pod, or choose another address)",
            r.id
        )
    );
    let (resp, _) = mutate(&w, "u3", &chosen("10.20.0.99")).await;
    assert_eq!(
        resp.result.message,
        "interface eth0: the chosen address 10.20.0.99 cannot be given: pool team-a-v4: not in its spec.ips; choose an address of a candidate pool that is in its spec.ips, not excluded and not reserved"
    );
    let (resp, _) = mutate(&w, "u4", &chosen(r#"{"net9": ["10.20.0.10"]}"#)).await;
    assert!(
        resp.result
            .message
            .ends_with("names interface net9, which the Pod does not have (its interfaces: eth0)"),
        "{}",
        resp.result.message
    );
    let (resp, _) = mutate(&w, "u5", &chosen("fd00::5")).await;
    assert!(
        resp.result
            .message
            .ends_with("names fd00::5 for interface eth0, which gets no IPv6 address"),
        "{}",
        resp.result.message
    );
    let (resp, _) = mutate(&w, "u6", &chosen("10.20.0.x")).await;
    assert_eq!(resp.result.code, 400);
    // Only the first Pod's claim exists: the refusals reserved nothing.
    assert_eq!(claim_count(&w), 1);
}

const SUBNET_WORLD: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: spiderpool-conf, namespace: aipam-system}
data: {enableSpiderSubnet: "true"}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata: {name: subnet-30, uid: subnet-30-uid}
spec: {ipVersion: 4, subnet: 10.30.0.0/24, ips: [10.30.0.10-10.30.0.40], gateway: 10.30.0.1}
"#;

/// The Deployment web's auto pool as Spiderpool makes it, under a name of its own.
const SPIDERPOOL_AUTO_POOL: &str = r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: made-by-spiderpool
  labels:
    ipam.spidernet.io/owner-spider-subnet: subnet-30
    ipam.spidernet.io/owner-application-gv: apps_v1
    ipam.spidernet.io/owner-application-kind: Deployment
    ipam.spidernet.io/owner-application-namespace: team-a
    ipam.spidernet.io/owner-application-name: web
    ipam.spidernet.io/owner-application-uid: 11111111-2222-3333-4444-555555555555
    ipam.spidernet.io/interface: eth0
    ipam.spidernet.io/ippool-reclaim: "true"
    ipam.spidernet.io/ip-version: IPv4
    ipam.spidernet.io/ippool-cidr: 10-30-0-0-24
spec:
  ipVersion: 4
  subnet: 10.30.0.0/24
  ips: [10.30.0.20-10.30.0.23]
  gateway: 10.30.0.1
  podAffinity:
    matchLabels:
      ipam.spidernet.io/app-api-group: apps
      ipam.spidernet.io/app-api-version: v1
      ipam.spidernet.io/app-kind: Deployment
      ipam.spidernet.io/app-namespace: team-a
      ipam.spidernet.io/app-name: web
"#;

fn subnet_anno(extra: &[(&str, &str)]) -> Value {
    let mut a = json!({"ipam.spidernet.io/subnet": "{\"ipv4\": [\"subnet-30\"]}"});
    for (k, v) in extra {
        a[*k] = json!(v);
    }
    a
}

#[tokio::test]
async fn a_deployment_pod_takes_the_auto_pool_spiderpool_made_found_by_its_labels() {
    let w = world_with(SUBNET_WORLD);
    let (resp, _) = mutate(&w, "u1", &deployment_pod("team-a", subnet_anno(&[]))).await;
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("the SpiderSubnet auto-pool auto4-web-eth0-55555 (4 address(es) from SpiderSubnet subnet-30) does not exist yet"),
        "{}",
        resp.result.message
    );
    load(SPIDERPOOL_AUTO_POOL, &w.cache, &w.effects).unwrap();
    let (resp, pod) = mutate(&w, "u2", &deployment_pod("team-a", subnet_anno(&[]))).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let r = record_of(&pod);
    assert_eq!(r.interfaces[0].ipv4[0].pool, "made-by-spiderpool");
    // No pool is made by the webhook for a built-in workload.
    assert!(w.effects.state().pools.is_empty());
}

/// A Pod of an OpenKruise CloneSet (docs/usage/third-party-controller.md).
fn clone_set_pod(annotations: Value) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {
            "generateName": "custom-kruise-cloneset-", "namespace": "team-a",
            "labels": {"app": "custom-kruise-cloneset"},
            "annotations": annotations,
            "ownerReferences": [{"apiVersion": "apps.kruise.io/v1alpha1", "kind": "CloneSet",
                "name": "custom-kruise-cloneset", "uid": "dddddddd-0000-0000-0000-028d6f4e7a10",
                "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {"containers": [{"name": "c", "image": "busybox"}]}
    })
}

#[tokio::test]
async fn a_third_party_controllers_pod_gets_its_fixed_size_auto_pool_made_at_admission() {
    let w = world_with(SUBNET_WORLD);
    // With the default RBAC the webhook may not create pools: the refusal says what to do.
    w.effects.with(|s| s.forbid_pools = true);
    let fixed = subnet_anno(&[("ipam.spidernet.io/ippool-ip-number", "3")]);
    let (resp, _) = mutate(&w, "u0", &clone_set_pod(fixed.clone())).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("the webhook may not create SpiderIPPools (its default RBAC): grant its ServiceAccount `create` on spiderippools")
            && resp.result.message.contains("ipam.spidernet.io/owner-application-kind=CloneSet"),
        "{}",
        resp.result.message
    );
    w.effects.with(|s| s.forbid_pools = false);
    // Relative sizes cannot be served: the replicas of a CloneSet are not read.
    let (resp, _) = mutate(&w, "u1", &clone_set_pod(subnet_anno(&[]))).await;
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains(
            "the Pod's controller CloneSet team-a/custom-kruise-cloneset is not a Deployment"
        ),
        "{}",
        resp.result.message
    );
    let (resp, pod) = mutate(&w, "u2", &clone_set_pod(fixed.clone())).await;
    assert!(resp.allowed, "{}", resp.result.message);
    let name = "auto4-custom-kruise-cloneset-eth0-028d6";
    assert_eq!(record_of(&pod).interfaces[0].ipv4[0].pool, name);
    let made = w.effects.state().pools[name].clone();
    let labels = made.metadata.labels.clone().unwrap();
    assert_eq!(
        labels["ipam.spidernet.io/owner-application-gv"],
        "apps.kruise.io_v1alpha1"
    );
    assert_eq!(
        labels["ipam.spidernet.io/owner-application-kind"],
        "CloneSet"
    );
    assert_eq!(
        made.metadata.annotations.clone().unwrap()["ipam.spidernet.io/ippool-ip-number"],
        "3"
    );
    assert_eq!(
        made.spec.ips.clone().unwrap(),
        vec!["10.30.0.10-10.30.0.12"]
    );
    assert_eq!(
        made.metadata.owner_references.clone().unwrap()[0].uid,
        "subnet-30-uid"
    );
    // The next Pods use it; it is made once.
    let (resp, pod) = mutate(&w, "u3", &clone_set_pod(fixed.clone())).await;
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(record_of(&pod).interfaces[0].ipv4[0].pool, name);
    assert_eq!(w.effects.state().pools.len(), 1);
    // A subnet too small for the fixed size: refused with what to do.
    let big = subnet_anno(&[("ipam.spidernet.io/ippool-ip-number", "500")]);
    let mut p = clone_set_pod(big);
    p["metadata"]["ownerReferences"][0]["name"] = json!("other");
    let (resp, _) = mutate(&w, "u4", &p).await;
    assert!(!resp.allowed);
    assert!(
        resp.result
            .message
            .contains("SpiderSubnet subnet-30 has 28 free address(es): free some, or ask for fewer with ipam.spidernet.io/ippool-ip-number"),
        "{}",
        resp.result.message
    );
}
