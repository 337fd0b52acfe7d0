//! Unit tests of the pool hooks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};

use crate::cache::Cache;
use crate::effects::MemoryEffects;
use crate::pools::PoolHooks;
use crate::testkit::{apply_patch, load, request_of, review_body, synced_cache};

const POOLS: (&str, &str, &str, &str) = (
    "spiderpool.spidernet.io",
    "v2beta1",
    "spiderippools",
    "SpiderIPPool",
);

const WORLD: &str = r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: a}
spec: {ipVersion: 4, subnet: 10.0.0.0/24, ips: [10.0.0.10-10.0.0.20], gateway: 10.0.0.1}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata: {name: s1}
spec: {ipVersion: 4, subnet: 10.0.0.0/24, ips: [10.0.0.2-10.0.0.250], gateway: 10.0.0.1}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPClaim
metadata: {name: a.10.0.0.15}
spec: {pool: a, address: 10.0.0.15, ipVersion: 4, interface: eth0, namespace: team-a, podName: web-1, reservation: r-1}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPClaim
metadata: {name: a.10.0.0.16}
spec: {pool: a, address: 10.0.0.16, ipVersion: 4, interface: eth0, namespace: team-a, reservation: r-2}
"#;

fn world() -> (PoolHooks, Cache) {
    let cache = synced_cache();
    load(WORLD, &cache, &MemoryEffects::new()).unwrap();
    (PoolHooks::new(cache.clone()), cache)
}

fn pool(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
           "metadata": {"name": name}, "spec": spec})
}

fn req(
    resource: (&str, &str, &str, &str),
    op: &str,
    new: Option<&Value>,
    old: Option<&Value>,
) -> kube::core::admission::AdmissionRequest<kube::core::DynamicObject> {
    request_of(&review_body("u", resource, op, None, new, old, false)).unwrap()
}

#[test]
fn mutate_infers_the_version_and_adds_the_finalizer_leaving_ips_alone() {
    let (h, _) = world();
    let p = pool(
        "b",
        json!({"subnet": "fd00::/64", "ips": ["fd00::10-fd00::0020"]}),
    );
    let resp = h.mutate_pool(&req(POOLS, "CREATE", Some(&p), None));
    assert!(resp.allowed);
    let out = apply_patch(&p, &resp).unwrap();
    assert_eq!(out["spec"]["ipVersion"], 6);
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["spiderpool.spidernet.io"])
    );
    assert_eq!(out["spec"]["ips"], json!(["fd00::10-fd00::0020"]));
    // Existing finalizers are kept; an explicit version is not touched.
    let mut p = pool("c", json!({"ipVersion": 4, "subnet": "10.9.0.0/24"}));
    p["metadata"]["finalizers"] = json!(["example.com/keep"]);
    let out = apply_patch(&p, &h.mutate_pool(&req(POOLS, "CREATE", Some(&p), None))).unwrap();
    assert_eq!(
        out["metadata"]["finalizers"],
        json!(["example.com/keep", "spiderpool.spidernet.io"])
    );
    assert_eq!(out["spec"], p["spec"]);
}

#[test]
fn create_refuses_overlaps_with_core_messages() {
    let (h, _) = world();
    let p = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.18-10.0.0.30"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&p), None));
    assert!(!resp.allowed);
    assert_eq!(resp.result.code, 422);
    assert_eq!(
        resp.result.message,
        "SpiderIPPool b is invalid: spec.ips: overlaps SpiderIPPool a on 3 address(es): 10.0.0.18-10.0.0.20"
    );
    let bad = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.1.0.0/24", "ips": ["10.1.0.5"], "gateway": "10.1.0.5"}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&bad), None));
    assert_eq!(
        resp.result.message,
        "SpiderIPPool b is invalid: spec.gateway: 10.1.0.5 is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs"
    );
    let ok = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.1.0.0/24", "ips": ["10.1.0.5"]}),
    );
    assert!(
        h.validate_pool(&req(POOLS, "CREATE", Some(&ok), None))
            .allowed
    );
}

#[test]
fn update_checks_immutables_and_addresses_in_use_skipping_itself() {
    let (h, cache) = world();
    let old = serde_json::to_value(&*cache.pool("a").unwrap().object).unwrap();
    let mut new = old.clone();
    new["spec"]["ips"] = json!(["10.0.0.10-10.0.0.15"]);
    let resp = h.validate_pool(&req(POOLS, "UPDATE", Some(&new), Some(&old)));
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "SpiderIPPool a is invalid: spec.ips: the change would take away 1 address(es) in use: 10.0.0.16; release them first (delete or move their Pods)"
    );
    new["spec"]["ips"] = json!(["10.0.0.10-10.0.0.30"]);
    assert!(
        h.validate_pool(&req(POOLS, "UPDATE", Some(&new), Some(&old)))
            .allowed
    );
    new["spec"]["subnet"] = json!("10.0.0.0/16");
    let resp = h.validate_pool(&req(POOLS, "UPDATE", Some(&new), Some(&old)));
    assert!(resp
        .result
        .message
        .contains("spec.subnet: is immutable: it was 10.0.0.0/24 and cannot become 10.0.0.0/16"));
    // A metadata-only change (the operator removing the finalizer) is not judged.
    let mut meta = old.clone();
    meta["metadata"]["labels"] = json!({"x": "y"});
    assert!(
        h.validate_pool(&req(POOLS, "UPDATE", Some(&meta), Some(&old)))
            .allowed
    );
}

fn set_config(cache: &Cache, data: &str) {
    load(
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: spiderpool-conf, namespace: aipam-system}}\ndata: {data}\n"),
        cache,
        &MemoryEffects::new(),
    )
    .unwrap();
}

#[test]
fn delete_of_a_pool_in_use_is_allowed_with_a_warning_by_default() {
    // Spiderpool's default (enableValidatingResourcesDeletedWebhook: false): the finalizer
    // holds the pool until its addresses are released.
    let (h, cache) = world();
    let mut old = serde_json::to_value(&*cache.pool("a").unwrap().object).unwrap();
    old["metadata"]["finalizers"] = json!(["spiderpool.spidernet.io"]);
    let resp = h.validate_pool(&req(POOLS, "DELETE", None, Some(&old)));
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(
        resp.warnings,
        Some(vec![
            "SpiderIPPool a still has 2 address(es) in use (10.0.0.15-10.0.0.16): it stays Terminating, serving no new Pod, until they are released (finalizer spiderpool.spidernet.io); delete their Pods to release them. Set enableValidatingResourcesDeletedWebhook: true in spiderpool-conf to refuse such deletions instead".to_string()
        ])
    );
    // Without the finalizer the warning says what happens instead.
    old["metadata"]["finalizers"] = json!([]);
    let resp = h.validate_pool(&req(POOLS, "DELETE", None, Some(&old)));
    assert!(resp.allowed);
    assert!(resp.warnings.unwrap()[0].contains("no finalizer"));
    // A pool with nothing in use: no warning.
    cache.claim_deleted("a.10.0.0.15");
    cache.claim_deleted("a.10.0.0.16");
    let resp = h.validate_pool(&req(POOLS, "DELETE", None, Some(&old)));
    assert!(resp.allowed && resp.warnings.is_none());
}

#[test]
fn delete_of_a_pool_in_use_is_refused_with_the_count() {
    let (h, cache) = world();
    set_config(
        &cache,
        "{conf.yml: \"enableValidatingResourcesDeletedWebhook: true\\n\"}",
    );
    let old = serde_json::to_value(&*cache.pool("a").unwrap().object).unwrap();
    let resp = h.validate_pool(&req(POOLS, "DELETE", None, Some(&old)));
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "SpiderIPPool a is invalid: metadata.name: the pool still has 2 address(es) in use (10.0.0.15-10.0.0.16); delete their Pods first, the pool is removed once they are released"
    );
    cache.claim_deleted("a.10.0.0.15");
    cache.claim_deleted("a.10.0.0.16");
    assert!(
        h.validate_pool(&req(POOLS, "DELETE", None, Some(&old)))
            .allowed
    );
}

#[test]
fn delete_of_a_subnet_giving_addresses_is_refused_only_with_the_key() {
    let (h, cache) = world();
    let mut old = json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
        "metadata": {"name": "s1"},
        "spec": {"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.2-10.0.0.250"], "gateway": "10.0.0.1"}});
    old["status"] = json!({"allocatedIPCount": 11, "totalIPCount": 248});
    let r = req(
        (
            "spiderpool.spidernet.io",
            "v2beta1",
            "spidersubnets",
            "SpiderSubnet",
        ),
        "DELETE",
        None,
        Some(&old),
    );
    // Spiderpool's default: allowed.
    let resp = h.validate_subnet(&r);
    assert!(resp.allowed && resp.warnings.is_none());
    set_config(
        &cache,
        "{enableValidatingResourcesDeletedWebhook: \"true\"}",
    );
    let resp = h.validate_subnet(&r);
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "SpiderSubnet s1 is invalid: metadata.name: the subnet still gives 11 address(es) to its pools (a); delete or shrink those pools first (enableValidatingResourcesDeletedWebhook is true in spiderpool-conf)"
    );
    // Nothing given out: allowed.
    old["status"] = json!({"allocatedIPCount": 0});
    let r = req(
        (
            "spiderpool.spidernet.io",
            "v2beta1",
            "spidersubnets",
            "SpiderSubnet",
        ),
        "DELETE",
        None,
        Some(&old),
    );
    assert!(h.validate_subnet(&r).allowed);
}

#[test]
fn pools_outside_every_subnet_are_admitted_with_a_warning_when_the_feature_is_on() {
    let (h, cache) = world();
    load(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: spiderpool-conf, namespace: aipam-system}\ndata: {enableSpiderSubnet: \"true\"}\n",
        &cache,
        &MemoryEffects::new(),
    )
    .unwrap();
    let p = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.5.0.0/24", "ips": ["10.5.0.5"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&p), None));
    assert!(resp.allowed, "{}", resp.result.message);
    assert_eq!(
        resp.warnings.unwrap_or_default(),
        ["SpiderIPPool b: spec.subnet: no SpiderSubnet has subnet 10.5.0.0/24: the pool is controlled by no SpiderSubnet (the SpiderSubnet feature is on, and the subnet's addresses are not checked)"]
    );
    // Inside a SpiderSubnet of its CIDR, it must fit the subnet's free addresses.
    let p = pool(
        "c",
        json!({"ipVersion": 4, "subnet": "10.0.0.0/24", "ips": ["10.0.0.251"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&p), None));
    assert!(!resp.allowed);
    assert!(
        resp.result.message.contains("not free in SpiderSubnet s1"),
        "{}",
        resp.result.message
    );
}

#[test]
fn subnets_may_not_overlap() {
    let (h, _) = world();
    let s = json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
        "metadata": {"name": "s2"}, "spec": {"subnet": "10.0.0.0/16", "ips": ["10.0.1.1"]}});
    let r = req(
        (
            "spiderpool.spidernet.io",
            "v2beta1",
            "spidersubnets",
            "SpiderSubnet",
        ),
        "CREATE",
        Some(&s),
        None,
    );
    let resp = h.validate_subnet(&r);
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "SpiderSubnet s2 is invalid: spec.subnet: 10.0.0.0/16 overlaps SpiderSubnet s1 (10.0.0.0/24)"
    );
}

#[test]
fn reserving_an_address_held_by_a_pod_warns_naming_it() {
    let (h, _) = world();
    let r = json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderReservedIP",
        "metadata": {"name": "keep"}, "spec": {"ipVersion": 4, "ips": ["10.0.0.14-10.0.0.16"]}});
    let rr = req(
        (
            "spiderpool.spidernet.io",
            "v2beta1",
            "spiderreservedips",
            "SpiderReservedIP",
        ),
        "CREATE",
        Some(&r),
        None,
    );
    let resp = h.validate_reserved_ip(&rr);
    assert!(resp.allowed);
    assert_eq!(
        resp.warnings.unwrap_or_default(),
        [
            "SpiderReservedIP keep: spec.ips: 10.0.0.15 is held by Pod team-a/web-1 (SpiderIPClaim a.10.0.0.15, pool a); it stays with that Pod and is not handed out again once released",
            "SpiderReservedIP keep: spec.ips: 10.0.0.16 is held by a Pod being created in namespace team-a (reservation r-2) (SpiderIPClaim a.10.0.0.16, pool a); it stays with that Pod and is not handed out again once released",
        ]
    );
    let free = json!({"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderReservedIP",
        "metadata": {"name": "keep"}, "spec": {"ips": ["10.0.0.30"]}});
    let rr = req(
        (
            "spiderpool.spidernet.io",
            "v2beta1",
            "spiderreservedips",
            "SpiderReservedIP",
        ),
        "CREATE",
        Some(&free),
        None,
    );
    assert!(h.validate_reserved_ip(&rr).allowed);
}

#[test]
fn a_pool_allowed_moments_ago_counts_for_overlaps_before_its_watch_event() {
    // `kubectl apply -f pools/`: rack-c is allowed, and rack-d arrives before the cache has
    // seen rack-c. Both passing would let two pools hand out 10.30.0.20 twice.
    let (h, _) = world();
    let c = pool(
        "rack-c",
        json!({"ipVersion": 4, "subnet": "10.30.0.0/24", "ips": ["10.30.0.10-10.30.0.20"]}),
    );
    assert!(
        h.validate_pool(&req(POOLS, "CREATE", Some(&c), None))
            .allowed
    );
    let d = pool(
        "rack-d",
        json!({"ipVersion": 4, "subnet": "10.30.0.0/24", "ips": ["10.30.0.20-10.30.0.30"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&d), None));
    assert!(!resp.allowed);
    assert_eq!(
        resp.result.message,
        "SpiderIPPool rack-d is invalid: spec.ips: overlaps SpiderIPPool rack-c on 1 address(es): 10.30.0.20"
    );
    // Re-applying rack-c itself is not an overlap with its own earlier admission.
    assert!(
        h.validate_pool(&req(POOLS, "CREATE", Some(&c), None))
            .allowed
    );
}

#[test]
fn what_spiderpool_accepts_is_admitted_with_warnings_kubectl_prints() {
    let (h, _) = world();
    // A broadcast gateway and a repeated node name: Spiderpool admits both.
    let p = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.1.0.0/24", "ips": ["10.1.0.5"],
               "gateway": "10.1.0.255", "nodeName": ["n1", "n1"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&p), None));
    assert!(resp.allowed, "{}", resp.result.message);
    let warnings = resp.warnings.unwrap_or_default();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with(
            "SpiderIPPool b: spec.gateway: 10.1.0.255 is the broadcast address of 10.1.0.0/24"
        ),
        "{warnings:?}"
    );
    assert_eq!(
        warnings[1],
        "SpiderIPPool b: spec.nodeName[1]: n1 appears twice; the repeat changes nothing"
    );
    // Host bits: refused on create, as Spiderpool does ...
    let sloppy = pool(
        "c",
        json!({"ipVersion": 4, "subnet": "10.2.0.7/24", "ips": ["10.2.0.10"]}),
    );
    let resp = h.validate_pool(&req(POOLS, "CREATE", Some(&sloppy), None));
    assert!(!resp.allowed);
    // ... but a pool an older Spiderpool stored that way can still be updated.
    let mut edited = sloppy.clone();
    edited["spec"]["ips"] = json!(["10.2.0.10-10.2.0.11"]);
    let resp = h.validate_pool(&req(POOLS, "UPDATE", Some(&edited), Some(&sloppy)));
    assert!(resp.allowed, "{}", resp.result.message);
    let warnings = resp.warnings.unwrap_or_default();
    assert!(
        warnings[0].starts_with(
            "SpiderIPPool c: spec.subnet: 10.2.0.7/24 has host bits set; read as 10.2.0.0/24"
        ),
        "{warnings:?}"
    );
}

#[test]
fn mutate_links_a_pool_to_its_subnet_and_inherits_as_spiderpool_does() {
    let (h, cache) = world();
    load(
        r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: spiderpool-conf, namespace: aipam-system}
data: {enableSpiderSubnet: "true"}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderSubnet
metadata: {name: s2, uid: s2-uid}
spec:
  ipVersion: 4
  subnet: 10.2.0.0/24
  ips: [10.2.0.2-10.2.0.250]
  gateway: 10.2.0.1
  vlan: 20
  routes: [{dst: 10.99.0.0/16, gw: 10.2.0.254}]
"#,
        &cache,
        &MemoryEffects::new(),
    )
    .unwrap();
    let p = pool(
        "b",
        json!({"ipVersion": 4, "subnet": "10.2.0.0/24", "ips": ["10.2.0.5"]}),
    );
    let out = apply_patch(&p, &h.mutate_pool(&req(POOLS, "CREATE", Some(&p), None))).unwrap();
    assert_eq!(
        out["metadata"]["labels"],
        json!({"ipam.spidernet.io/ippool-cidr": "10-2-0-0-24",
               "ipam.spidernet.io/owner-spider-subnet": "s2"})
    );
    assert_eq!(
        out["metadata"]["ownerReferences"],
        json!([{"apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
                "name": "s2", "uid": "s2-uid", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(out["spec"]["gateway"], "10.2.0.1");
    assert_eq!(
        out["spec"]["routes"],
        json!([{"dst": "10.99.0.0/16", "gw": "10.2.0.254"}])
    );
    assert!(
        out["spec"].get("vlan").is_none(),
        "the VLAN is not inherited"
    );
    // Its own gateway and an explicit empty route list are kept; an auto pool linked already
    // gets nothing but what it lacks of the CIDR label.
    let mut own = pool(
        "c",
        json!({"ipVersion": 4, "subnet": "10.2.0.0/24", "ips": ["10.2.0.6"],
               "gateway": "10.2.0.9", "routes": []}),
    );
    own["metadata"]["labels"] = json!({"team": "a"});
    let out = apply_patch(
        &own,
        &h.mutate_pool(&req(POOLS, "CREATE", Some(&own), None)),
    )
    .unwrap();
    assert_eq!(out["spec"]["gateway"], "10.2.0.9");
    assert_eq!(out["spec"]["routes"], json!([]));
    assert_eq!(out["metadata"]["labels"]["team"], "a");
    assert_eq!(
        out["metadata"]["labels"]["ipam.spidernet.io/owner-spider-subnet"],
        "s2"
    );
    let mut linked = pool(
        "d",
        json!({"ipVersion": 4, "subnet": "10.2.0.0/24", "ips": ["10.2.0.7"]}),
    );
    linked["metadata"]["labels"] = json!({"ipam.spidernet.io/owner-spider-subnet": "s2",
        "ipam.spidernet.io/ippool-cidr": "10-2-0-0-24"});
    linked["metadata"]["ownerReferences"] = json!([{"apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderSubnet", "name": "s2", "uid": "s2-uid", "controller": true}]);
    let out = apply_patch(
        &linked,
        &h.mutate_pool(&req(POOLS, "CREATE", Some(&linked), None)),
    )
    .unwrap();
    assert!(out["spec"].get("gateway").is_none());
    assert_eq!(out["metadata"]["labels"], linked["metadata"]["labels"]);
}
