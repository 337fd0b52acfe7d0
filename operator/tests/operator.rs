#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The operator's controllers driven through the kube client against the API stand-in
//! (`aipam-apiserver`). The webhook is played by the test: it creates the claims and the Pod
//! with its reservation annotation exactly as the contract says, and (optionally) binds the
//! claims and writes the endpoint as the validating webhook does.
//!
//! Every scenario ends with [`check_invariants`]: pool counters equal the live claims, and no
//! address is held twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aipam_apiserver::{ApiServer, ApiServerHandle, ServerOptions};
use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim, SpiderIPPool, SpiderSubnet};
use aipam_operator::collect::scan_with;
use aipam_operator::leader::{Elector, LeaseConfig};
use aipam_operator::{start, Metrics, Running, Settings};
use aipam_rules::counters::held_twice;
use aipam_rules::world::{Rules, World};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

// ---- the stand-in and the cluster's furniture ------------------------------------------------

async fn server() -> (ApiServerHandle, Client) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let crds = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/crd");
    let opts = ServerOptions {
        crd_dir: Some(crds),
        bookmark_interval: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let s = ApiServer::start(opts).await.unwrap();
    let c = s.client().await.unwrap();
    let ns: Api<Namespace> = Api::all(c.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "apps"}})).unwrap(),
    )
    .await
    .unwrap();
    for (node, zone) in [("n6", "z6"), ("n7", "z7")] {
        add_node(&c, node, zone).await;
    }
    let pools: Api<SpiderIPPool> = Api::all(c.clone());
    for (name, subnet, ips, zone) in [
        ("p6", "10.6.0.0/16", "10.6.0.10-10.6.0.19", Some("z6")),
        ("p7", "10.7.0.0/16", "10.7.0.10-10.7.0.19", Some("z7")),
        ("flat", "10.9.0.0/24", "10.9.0.10-10.9.0.29", None),
    ] {
        let mut spec = json!({"ipVersion": 4, "subnet": subnet, "ips": [ips],
            "gateway": subnet.replace(".0/", ".1/").split('/').next().unwrap()});
        if let Some(z) = zone {
            spec["nodeAffinity"] =
                json!({"matchExpressions": [{"key": "zone", "operator": "In", "values": [z]}]});
        }
        let pool: SpiderIPPool = serde_json::from_value(json!({
            "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        pools.create(&PostParams::default(), &pool).await.unwrap();
    }
    (s, c)
}

async fn add_node(c: &Client, name: &str, zone: &str) {
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name, "labels": {"zone": zone}}}))
                .unwrap(),
        )
        .await
        .unwrap();
    set_node_ready(c, name, true).await;
}

async fn set_node_ready(c: &Client, name: &str, ready: bool) {
    let nodes: Api<Node> = Api::all(c.clone());
    let st = json!({"status": {"conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}});
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
}

fn settings(grace_secs: i64) -> Settings {
    Settings {
        rules: Rules {
            grace: SignedDuration::from_secs(grace_secs),
            stateful_set: true,
            ..Rules::default()
        },
        gc_interval: Duration::from_millis(300),
        status_interval: Duration::from_millis(100),
        scan_debounce: Duration::from_millis(20),
        autopool_interval: Duration::from_millis(200),
        ..Settings::default()
    }
}

async fn operator(c: &Client, grace_secs: i64) -> Running {
    start(c.clone(), settings(grace_secs), Metrics::new()).await
}

async fn eventually<F, Fut>(what: &str, timeout: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let start = Instant::now();
    loop {
        match f().await {
            Ok(()) => return,
            Err(e) if start.elapsed() > timeout => {
                panic!("{what}: still not true after {timeout:?}: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn claims_api(c: &Client) -> Api<SpiderIPClaim> {
    Api::all(c.clone())
}

fn pods_api(c: &Client) -> Api<Pod> {
    Api::namespaced(c.clone(), "apps")
}

fn eps_api(c: &Client) -> Api<SpiderEndpoint> {
    Api::namespaced(c.clone(), "apps")
}

async fn all_claims(c: &Client) -> Vec<SpiderIPClaim> {
    claims_api(c)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
}

// ---- the webhook, played by the test ---------------------------------------------------------

/// What the test admits.
struct Admit<'a> {
    name: &'a str,
    generate: bool,
    addrs: Vec<(&'a str, &'a str)>,
    owner: Option<(&'a str, &'a str)>,
    /// UID of the (real) owner: the Pod gets an ownerReference (the API server collects Pods
    /// whose owner does not exist, so only real owners are referenced).
    owner_uid: Option<String>,
    node: Option<&'a str>,
}

fn admit(name: &str, addrs: &[(&'static str, &'static str)]) -> Admit<'static> {
    Admit {
        name: Box::leak(name.to_string().into_boxed_str()),
        generate: false,
        addrs: addrs.to_vec(),
        owner: None,
        owner_uid: None,
        node: None,
    }
}

static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn new_id() -> String {
    format!(
        "r-{:08x}{:08x}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// The mutating webhook: claims first, then the record that names them.
async fn reserve(c: &Client, a: &Admit<'_>) -> Reservation {
    let id = new_id();
    let record = Reservation {
        id: id.clone(),
        interfaces: vec![ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: a
                .addrs
                .iter()
                .map(|(p, ip)| ReservedAddress {
                    pool: p.to_string(),
                    address: ip.parse().unwrap(),
                })
                .collect(),
            ipv6: vec![],
        }],
    };
    let provisional = record.is_provisional();
    for addr in record.addresses() {
        let claim = claim_for(
            addr,
            &ClaimTarget {
                namespace: "apps",
                pod_name: if a.generate { None } else { Some(a.name) },
                interface: "eth0",
                reservation: &id,
                owner: a.owner.map(|(k, n)| ClaimOwner {
                    kind: k.to_string(),
                    name: n.to_string(),
                    uid: format!("{n}-uid"),
                }),
                provisional,
            },
        );
        claims_api(c)
            .create(&PostParams::default(), &claim)
            .await
            .unwrap();
    }
    record
}

/// The Pod as the mutating webhook leaves it.
async fn create_pod(c: &Client, a: &Admit<'_>, record: &Reservation) -> Pod {
    let mut meta = json!({"annotations": {ANNO_RESERVATION: record.to_annotation()}});
    if a.generate {
        meta["generateName"] = json!(format!("{}-", a.name));
    } else {
        meta["name"] = json!(a.name);
    }
    if let (Some((kind, name)), Some(uid)) = (a.owner, &a.owner_uid) {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": name,
            "uid": uid, "controller": true}]);
    }
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 1});
    if let Some(n) = a.node {
        spec["nodeName"] = json!(n);
    }
    let pod: Pod = serde_json::from_value(json!({"metadata": meta, "spec": spec})).unwrap();
    pods_api(c)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

async fn admit_pod(c: &Client, a: &Admit<'_>) -> (Pod, Reservation) {
    let r = reserve(c, a).await;
    let p = create_pod(c, a, &r).await;
    (p, r)
}

/// Deletes a Pod as the kubelet would finish it (grace 0).
async fn delete_pod(c: &Client, name: &str) {
    let _ = pods_api(c)
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
}

async fn bind_to_node(c: &Client, pod: &str, node: &str) {
    let body = json!({
        "apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}
    });
    let _: serde_json::Value = pods_api(c)
        .create_subresource("binding", pod, &PostParams::default(), &body)
        .await
        .unwrap();
}

fn name_of(p: &Pod) -> String {
    p.metadata.name.clone().unwrap()
}

fn uid_of(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap()
}

// ---- checks -----------------------------------------------------------------------------------

/// Pool counters equal the live claims; no address is held twice.
async fn check_invariants(c: &Client) {
    let claims = all_claims(c).await;
    assert!(
        held_twice(claims.iter()).is_empty(),
        "an address is held twice"
    );
    // No two endpoints hand out the same address, and every address an endpoint hands out is
    // held by a claim.
    let held: std::collections::BTreeSet<String> =
        claims.iter().map(|c| c.spec.address.clone()).collect();
    let mut given = std::collections::BTreeSet::new();
    for ep in eps_api(c).list(&ListParams::default()).await.unwrap().items {
        for d in ep.status.map(|s| s.current.ips).unwrap_or_default() {
            for ip in [d.ipv4, d.ipv6].into_iter().flatten() {
                let addr = ip.split('/').next().unwrap().to_string();
                assert!(given.insert(addr.clone()), "{addr} is in two endpoints");
                assert!(
                    held.contains(&addr),
                    "{addr} is in an endpoint but held by no claim"
                );
            }
        }
    }
    let mut per_pool: BTreeMap<String, i64> = BTreeMap::new();
    for cl in &claims {
        *per_pool.entry(cl.spec.pool.clone()).or_default() += 1;
    }
    let pools: Api<SpiderIPPool> = Api::all(c.clone());
    let want = per_pool.clone();
    eventually(
        "pool counters equal the live claims",
        Duration::from_secs(5),
        || {
            let pools = pools.clone();
            let want = want.clone();
            async move {
                for p in pools.list(&ListParams::default()).await.unwrap().items {
                    let name = p.metadata.name.clone().unwrap();
                    let st = p.status.clone().unwrap_or_default();
                    let expect = want.get(&name).copied().unwrap_or(0);
                    if st.allocated_ip_count != Some(expect) {
                        return Err(format!(
                            "{name}: allocatedIPCount {:?}, claims {expect}",
                            st.allocated_ip_count
                        ));
                    }
                    if st.total_ip_count.is_none() {
                        return Err(format!("{name}: no totalIPCount"));
                    }
                    if st.allocated_ips.is_some() {
                        return Err(format!("{name}: allocatedIPs written"));
                    }
                }
                Ok(())
            }
        },
    )
    .await;
}

async fn wait_bound(c: &Client, pod: &Pod, record: &Reservation) {
    let names = record.claim_names();
    // The claims hold the addresses for the Pod's reservation, as the webhook made them.
    for n in &names {
        let cl = claims_api(c).get(n).await.unwrap();
        assert_eq!(cl.spec.reservation, record.id, "{n}");
        assert_eq!(
            Some(cl.spec.namespace.as_str()),
            pod.metadata.namespace.as_deref()
        );
    }

    eventually(
        &format!("endpoint of {}", name_of(pod)),
        Duration::from_secs(5),
        || {
            let api = eps_api(c);
            let name = name_of(pod);
            let uid = uid_of(pod);
            async move {
                let ep = api.get_opt(&name).await.unwrap().ok_or("no endpoint")?;
                let cur = ep.status.map(|s| s.current).ok_or("no status")?;
                if cur.uid != uid {
                    return Err(format!("endpoint uid {}", cur.uid));
                }
                Ok(())
            }
        },
    )
    .await;
}

async fn wait_gone(c: &Client, names: &[String]) {
    let names = names.to_vec();
    eventually("claims released", Duration::from_secs(8), || {
        let api = claims_api(c);
        let names = names.clone();
        async move {
            for n in &names {
                if api.get_opt(n).await.unwrap().is_some() {
                    return Err(format!("{n} still there"));
                }
            }
            Ok(())
        }
    })
    .await;
}

// ---- scenarios --------------------------------------------------------------------------------

#[tokio::test]
async fn deployment_scale_up_then_down() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let mut pods = Vec::new();
    for i in 0..5 {
        let ip: &'static str = Box::leak(format!("10.9.0.{}", 10 + i).into_boxed_str());
        let mut a = admit("web", &[("flat", ip)]);
        a.generate = true;
        a.owner = Some(("ReplicaSet", "web-5d8"));
        a.node = Some(if i % 2 == 0 { "n6" } else { "n7" });
        pods.push(admit_pod(&c, &a).await);
    }
    for (p, r) in &pods {
        wait_bound(&c, p, r).await;
    }
    let ep = eps_api(&c).get(&name_of(&pods[0].0)).await.unwrap();
    let ips = ep.status.unwrap().current.ips;
    assert_eq!(ips[0].ipv4.as_deref(), Some("10.9.0.10/24"));
    assert_eq!(ips[0].ipv4_gateway.as_deref(), Some("10.9.0.1"));
    check_invariants(&c).await;
    // Scale down to 2.
    let mut released = Vec::new();
    for (p, r) in &pods[2..] {
        delete_pod(&c, &name_of(p)).await;
        released.extend(r.claim_names());
    }
    wait_gone(&c, &released).await;
    eventually(
        "endpoints of the deleted Pods removed",
        Duration::from_secs(5),
        || {
            let api = eps_api(&c);
            let names: Vec<String> = pods[2..].iter().map(|(p, _)| name_of(p)).collect();
            async move {
                for n in names {
                    if api.get_opt(&n).await.unwrap().is_some() {
                        return Err(format!("endpoint {n} still there"));
                    }
                }
                Ok(())
            }
        },
    )
    .await;
    assert_eq!(all_claims(&c).await.len(), 2);
    check_invariants(&c).await;
    let metrics = op.ctx.metrics.encode();
    assert!(
        metrics.contains("aipam_operator_releases_total{reason=\"pod_gone\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("aipam_operator_pool_allocated_ips{pool=\"flat\"} 2"),
        "{metrics}"
    );
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn stateful_set_pod_restarts_with_its_address_until_scaled_down() {
    let (s, c) = server().await;
    let sets: Api<StatefulSet> = Api::namespaced(c.clone(), "apps");
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "spec": {"replicas": 2, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
            "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let sts = sets.create(&PostParams::default(), &sts).await.unwrap();
    let op = operator(&c, 120).await;
    let mut a = admit("db-1", &[("flat", "10.9.0.21")]);
    a.owner = Some(("StatefulSet", "db"));
    a.owner_uid = sts.metadata.uid.clone();
    a.node = Some("n6");
    let (p1, r1) = admit_pod(&c, &a).await;
    wait_bound(&c, &p1, &r1).await;
    let claim = r1.claim_names()[0].clone();

    // The Pod is deleted (restart): the address stays, waiting for the next db-1.
    delete_pod(&c, "db-1").await;
    eventually(
        "claim kept for the next Pod",
        Duration::from_secs(5),
        || {
            let api = claims_api(&c);
            let eps = eps_api(&c);
            let claim = claim.clone();
            async move {
                let cl = api.get_opt(&claim).await.unwrap().ok_or("claim deleted")?;
                if eps.get_opt("db-1").await.unwrap().is_some() {
                    return Err(format!("{} kept, endpoint not yet gone", cl.spec.address));
                }
                Ok(())
            }
        },
    )
    .await;
    assert!(
        eps_api(&c).get_opt("db-1").await.unwrap().is_none(),
        "endpoint of the old Pod removed"
    );
    // Long after the grace period, still kept (a full scan runs every 300 ms here).
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(claims_api(&c).get_opt(&claim).await.unwrap().is_some());

    // The webhook admits the next db-1: it takes the same claim under a new reservation.
    let id = new_id();
    let patch =
        json!({"metadata": {"labels": {"aipam.io/reservation": id}}, "spec": {"reservation": id}});
    claims_api(&c)
        .patch(&claim, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r2 = Reservation { id, ..r1.clone() };
    let p2 = create_pod(&c, &a, &r2).await;
    wait_bound(&c, &p2, &r2).await;
    let ep = eps_api(&c).get("db-1").await.unwrap();
    assert_eq!(
        ep.status.unwrap().current.ips[0].ipv4.as_deref(),
        Some("10.9.0.21/24")
    );
    check_invariants(&c).await;

    // Scaled to 1: ordinal 1 goes, its address with it.
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    delete_pod(&c, "db-1").await;
    wait_gone(&c, &[claim]).await;
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn pod_deleted_while_pending_releases_at_once() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let mut a = admit("pending", &[("p6", "10.6.0.11"), ("p7", "10.7.0.11")]);
    a.generate = true;
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    // Provisional, not scheduled: an endpoint without addresses.
    let ep = eps_api(&c).get(&name_of(&p)).await.unwrap();
    assert!(ep.status.unwrap().current.ips.is_empty());
    delete_pod(&c, &name_of(&p)).await;
    // Well within the 120 s grace period: the Pod was seen, so its claims go now.
    wait_gone(&c, &r.claim_names()).await;
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_finished_job_pod_gives_its_address_back() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let mut a = admit("job-x", &[("flat", "10.9.0.20")]);
    a.node = Some("n6");
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    let st = json!({"status": {"phase": "Succeeded"}});
    pods_api(&c)
        .patch_status("job-x", &PatchParams::default(), &Patch::Merge(&st))
        .await
        .unwrap();
    wait_gone(&c, &r.claim_names()).await;
    eventually(
        "endpoint of the finished Pod removed",
        Duration::from_secs(5),
        || {
            let api = eps_api(&c);
            async move {
                match api.get_opt("job-x").await.unwrap() {
                    None => Ok(()),
                    Some(_) => Err("still there".to_string()),
                }
            }
        },
    )
    .await;
    // The Pod object itself stays (its Job keeps it); it holds nothing any more.
    assert!(pods_api(&c).get_opt("job-x").await.unwrap().is_some());
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn late_binding_of_a_zone_pod() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let a = admit("zonal", &[("p6", "10.6.0.12"), ("p7", "10.7.0.12")]);
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    let t0 = Instant::now();
    bind_to_node(&c, "zonal", "n7").await;
    eventually(
        "endpoint filled for node n7",
        Duration::from_secs(5),
        || {
            let api = eps_api(&c);
            async move {
                let ep = api.get("zonal").await.unwrap();
                let cur = ep.status.unwrap().current;
                match (
                    cur.node.as_str(),
                    cur.ips.first().and_then(|i| i.ipv4.clone()),
                ) {
                    ("n7", Some(ip)) if ip == "10.7.0.12/16" => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        },
    )
    .await;
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(2), "late binding took {took:?}");
    wait_gone(&c, &["p6.10.6.0.12".to_string()]).await;
    let kept = claims_api(&c).get("p7.10.7.0.12").await.unwrap();
    assert!(!kept.spec.provisional);
    let pod = pods_api(&c).get("zonal").await.unwrap();
    let rec = Reservation::parse(&pod.metadata.annotations.unwrap()[ANNO_RESERVATION]).unwrap();
    assert_eq!(rec.claim_names(), vec!["p7.10.7.0.12".to_string()]);
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn node_deleted_releases_its_stuck_terminating_pods() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let mut a = admit("stuck", &[("flat", "10.9.0.13")]);
    a.node = Some("n6");
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    // The node dies; the Pod is deleted gracefully and nobody confirms (no kubelet).
    let nodes: Api<Node> = Api::all(c.clone());
    nodes.delete("n6", &DeleteParams::default()).await.unwrap();
    pods_api(&c)
        .delete("stuck", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    assert!(pods_api(&c)
        .get("stuck")
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    // deletionTimestamp (now + 1 s) + terminationGracePeriodSeconds (1 s): released after ~2 s.
    wait_gone(&c, &r.claim_names()).await;
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

/// Spiderpool's SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED: on by default,
/// so a Pod stuck Terminating on a Ready node gives its address back after its grace period;
/// switched off, it keeps it while it exists.
#[tokio::test]
async fn a_pod_stuck_terminating_on_a_ready_node_follows_the_gc_switch() {
    let (s, c) = server().await;
    let mut off = settings(120);
    off.rules.gc_terminating_on_ready_node = false;
    let op = start(c.clone(), off, Metrics::new()).await;
    let mut a = admit("held", &[("flat", "10.9.0.13")]);
    a.node = Some("n6");
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    // The node stays Ready; the Pod is deleted gracefully but a finalizer holds it (as a
    // stuck controller's would).
    pods_api(&c)
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold"]}})),
        )
        .await
        .unwrap();
    pods_api(&c)
        .delete("held", &DeleteParams::default().grace_period(1))
        .await
        .unwrap();
    // Well past deletionTimestamp (now + 1 s) + 1 s, several scans later: still held.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for n in r.claim_names() {
        assert!(
            claims_api(&c).get_opt(&n).await.unwrap().is_some(),
            "{n} released"
        );
    }
    op.stop().await;
    // The default: released.
    let op = operator(&c, 120).await;
    wait_gone(&c, &r.claim_names()).await;
    check_invariants(&c).await;
    op.stop().await;
    pods_api(&c)
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    s.shutdown().await;
}

#[tokio::test]
async fn operator_restarted_in_the_middle() {
    let (s, c) = server().await;
    let op = operator(&c, 2).await;
    let mut a = admit("a", &[("flat", "10.9.0.14")]);
    a.node = Some("n6");
    let (pa, ra) = admit_pod(&c, &a).await;
    wait_bound(&c, &pa, &ra).await;
    op.stop().await;

    // While the operator is down: a Pod goes, another comes, a reservation is left behind.
    delete_pod(&c, "a").await;
    let mut b = admit("b", &[("flat", "10.9.0.15")]);
    b.node = Some("n7");
    let (pb, rb) = admit_pod(&c, &b).await;
    let orphan = reserve(&c, &admit("never", &[("flat", "10.9.0.16")])).await;

    let op = operator(&c, 2).await;
    wait_bound(&c, &pb, &rb).await;
    wait_gone(&c, &ra.claim_names()).await;
    wait_gone(&c, &orphan.claim_names()).await;
    assert_eq!(all_claims(&c).await.len(), 1);
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn the_collector_never_takes_an_address_whose_pod_is_being_created() {
    let (s, c) = server().await;
    // Grace 2 s; a full scan every 300 ms and one after every Pod deletion.
    let op = operator(&c, 2).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..12u32 {
        let c = c.clone();
        tasks.spawn(async move {
            let ip: &'static str = Box::leak(format!("10.9.0.{}", 10 + i).into_boxed_str());
            let mut a = admit("race", &[("flat", ip)]);
            a.generate = true;
            let r = reserve(&c, &a).await;
            // The API server stores the Pod some time after the webhook reserved, always
            // within the webhook timeout (here: within the grace period).
            let nanos = u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            );
            tokio::time::sleep(Duration::from_millis((nanos ^ (u64::from(i) * 7919)) % 700)).await;
            let p = create_pod(&c, &a, &r).await;
            (p, r)
        });
    }
    // And reservations whose Pod never comes.
    let mut lost = Vec::new();
    for i in 0..3u32 {
        let ip: &'static str = Box::leak(format!("10.9.0.{}", 25 + i).into_boxed_str());
        lost.extend(
            reserve(&c, &admit("lost", &[("flat", ip)]))
                .await
                .claim_names(),
        );
    }
    let mut pods = Vec::new();
    while let Some(r) = tasks.join_next().await {
        pods.push(r.unwrap());
    }
    for (p, r) in &pods {
        wait_bound(&c, p, r).await;
    }
    wait_gone(&c, &lost).await;
    // Well past the grace period: every Pod still holds exactly its address.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for (_, r) in &pods {
        for n in r.claim_names() {
            assert!(
                claims_api(&c).get_opt(&n).await.unwrap().is_some(),
                "{n} of a live Pod was collected"
            );
        }
    }
    assert_eq!(all_claims(&c).await.len(), pods.len());
    let m = op.ctx.metrics.encode();
    assert!(
        m.contains("aipam_operator_collections_total{reason=\"never_appeared\"} 3"),
        "{m}"
    );
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_stale_cache_is_checked_live_before_anything_is_deleted() {
    let (s, c) = server().await;
    // Grace 0: only the live read stands between the collector and the address.
    let running = start(c.clone(), settings(0), Metrics::new()).await;
    let ctx = running.ctx.clone();
    running.stop().await;
    let mut a = admit("fresh", &[("flat", "10.9.0.17")]);
    a.generate = true;
    let (p, r) = admit_pod(&c, &a).await;
    let claims = all_claims(&c).await;
    // The cache has not seen the Pod: an empty world.
    let report = scan_with(&ctx, World::new(vec![]), &claims, &[] as &[SpiderEndpoint])
        .await
        .unwrap();
    assert!(report.deleted.is_empty(), "{report:?}");
    assert_eq!(report.spared_by_live_read, r.claim_names());
    assert!(claims_api(&c)
        .get_opt(&r.claim_names()[0])
        .await
        .unwrap()
        .is_some());
    // Once the Pod is really gone, the same scan collects.
    delete_pod(&c, &name_of(&p)).await;
    let report = scan_with(&ctx, World::new(vec![]), &claims, &[] as &[SpiderEndpoint])
        .await
        .unwrap();
    assert_eq!(report.deleted.len(), 1, "{report:?}");
    s.shutdown().await;
}

#[tokio::test]
async fn a_pool_in_use_keeps_its_finalizer_until_its_addresses_are_released() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let pools: Api<SpiderIPPool> = Api::all(c.clone());
    eventually("finalizer added", Duration::from_secs(5), || {
        let pools = pools.clone();
        async move {
            let p = pools.get("flat").await.unwrap();
            if p.metadata
                .finalizers
                .unwrap_or_default()
                .iter()
                .any(|f| f == "spiderpool.spidernet.io")
            {
                Ok(())
            } else {
                Err("no finalizer".into())
            }
        }
    })
    .await;
    let mut a = admit("user", &[("flat", "10.9.0.18")]);
    a.node = Some("n6");
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    check_invariants(&c).await;
    let total = pools
        .get("flat")
        .await
        .unwrap()
        .status
        .unwrap()
        .total_ip_count;
    assert_eq!(total, Some(20));
    // The SpiderSubnet the pool lies in counts what its pools took.
    let subnets: Api<SpiderSubnet> = Api::all(c.clone());
    let sn: SpiderSubnet = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
        "metadata": {"name": "s9"},
        "spec": {"ipVersion": 4, "subnet": "10.9.0.0/24", "ips": ["10.9.0.2-10.9.0.100"], "gateway": "10.9.0.1"}
    }))
    .unwrap();
    subnets.create(&PostParams::default(), &sn).await.unwrap();
    let counts = |want: (i64, i64)| {
        let subnets = subnets.clone();
        move || {
            let subnets = subnets.clone();
            async move {
                let st = subnets.get("s9").await.unwrap().status.unwrap_or_default();
                match (st.allocated_ip_count, st.total_ip_count) {
                    (Some(a), Some(t)) if (a, t) == want => Ok(()),
                    other => Err(format!("{other:?}")),
                }
            }
        }
    };
    eventually("subnet counters", Duration::from_secs(5), counts((20, 99))).await;
    pools
        .delete("flat", &DeleteParams::default())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let held = pools.get("flat").await.unwrap();
    assert!(held.metadata.deletion_timestamp.is_some());
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "default");
    let evs = events.list(&ListParams::default()).await.unwrap().items;
    assert!(
        evs.iter().any(|e| e.reason.as_deref() == Some("PoolInUse")),
        "{evs:?}"
    );
    delete_pod(&c, "user").await;
    eventually(
        "pool deleted once its address is released",
        Duration::from_secs(8),
        || {
            let pools = pools.clone();
            async move {
                match pools.get_opt("flat").await.unwrap() {
                    None => Ok(()),
                    Some(_) => Err("still there".into()),
                }
            }
        },
    )
    .await;
    eventually(
        "subnet counters after the pool went",
        Duration::from_secs(5),
        counts((0, 99)),
    )
    .await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn the_periodic_resync_puts_back_what_was_changed_behind_its_back() {
    let (s, c) = server().await;
    let op = operator(&c, 120).await;
    let mut a = admit("steady", &[("flat", "10.9.0.19")]);
    a.node = Some("n7");
    let (p, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &p, &r).await;
    // Someone deletes the endpoint: no Pod event follows.
    eps_api(&c)
        .delete("steady", &DeleteParams::default())
        .await
        .unwrap();
    wait_bound(&c, &p, &r).await;
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn a_subnet_annotated_deployment_gets_an_auto_pool_that_follows_its_replicas() {
    use k8s_openapi::api::apps::v1::Deployment;
    let (s, c) = server().await;
    let subnets: Api<SpiderSubnet> = Api::all(c.clone());
    let sn: SpiderSubnet = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
        "metadata": {"name": "s9"},
        "spec": {"ipVersion": 4, "subnet": "10.9.0.0/24", "ips": ["10.9.0.2-10.9.0.100"], "gateway": "10.9.0.1"}
    }))
    .unwrap();
    subnets.create(&PostParams::default(), &sn).await.unwrap();
    let mut st = settings(120);
    st.ipam.enable_spider_subnet = true;
    let op = start(c.clone(), st, Metrics::new()).await;
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "apps");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"},
                "annotations": {"ipam.spidernet.io/subnet": "{\"ipv4\":[\"s9\"]}"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    let uid = d.metadata.uid.clone().unwrap();
    let name =
        aipam_core::auto_pool::pool_name(aipam_core::ranges::IpFamily::V4, "web", "eth0", &uid);
    let pools: Api<SpiderIPPool> = Api::all(c.clone());
    let size = |want: u128| {
        let pools = pools.clone();
        let name = name.clone();
        move || {
            let pools = pools.clone();
            let name = name.clone();
            async move {
                let p = pools.get_opt(&name).await.unwrap().ok_or("no pool")?;
                let ips =
                    aipam_core::ranges::IpSet::parse_list(&p.spec.ips.clone().unwrap_or_default())
                        .unwrap();
                let flat = aipam_core::ranges::IpSet::parse_list(&["10.9.0.10-10.9.0.29"]).unwrap();
                assert!(
                    !ips.overlaps(&flat),
                    "auto-pool took addresses of pool flat: {ips}"
                );
                if ips.len() == want {
                    Ok(())
                } else {
                    Err(format!("{} addresses", ips.len()))
                }
            }
        }
    };
    eventually(
        "auto-pool with replicas + 1 addresses",
        Duration::from_secs(5),
        size(3),
    )
    .await;
    let pool = pools.get(&name).await.unwrap();
    // As Spiderpool makes it: the podAffinity names the Deployment, the labels find it, the
    // SpiderSubnet controls it.
    let aff = pool
        .spec
        .pod_affinity
        .clone()
        .unwrap()
        .match_labels
        .unwrap();
    assert_eq!(aff["ipam.spidernet.io/app-kind"], "Deployment");
    assert_eq!(aff["ipam.spidernet.io/app-name"], "web");
    let labels = pool.metadata.labels.clone().unwrap();
    assert_eq!(labels["ipam.spidernet.io/owner-application-gv"], "apps_v1");
    assert_eq!(labels["ipam.spidernet.io/owner-application-uid"], uid);
    assert_eq!(labels["ipam.spidernet.io/ip-version"], "IPv4");
    assert_eq!(labels["ipam.spidernet.io/ippool-cidr"], "10-9-0-0-24");
    let owner = &pool.metadata.owner_references.clone().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("SpiderSubnet", "s9")
    );
    assert_eq!(pool.spec.gateway.as_deref(), Some("10.9.0.1"));
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 4}})),
    )
    .await
    .unwrap();
    eventually("grown to 5", Duration::from_secs(5), size(5)).await;
    // A Pod of the application holds an address of the pool; scaling to 0 keeps that one.
    let p = pools.get(&name).await.unwrap();
    let ips = aipam_core::ranges::IpSet::parse_list(&p.spec.ips.unwrap()).unwrap();
    let last: &'static str = Box::leak(ips.last().unwrap().to_string().into_boxed_str());
    let pool_name: &'static str = Box::leak(name.clone().into_boxed_str());
    let mut a = admit("web-abc", &[(pool_name, last)]);
    a.node = Some("n6");
    let (pod, r) = admit_pod(&c, &a).await;
    wait_bound(&c, &pod, &r).await;
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 0}})),
    )
    .await
    .unwrap();
    eventually(
        "shrunk to the held address",
        Duration::from_secs(5),
        size(1),
    )
    .await;
    let p = pools.get(&name).await.unwrap();
    assert_eq!(p.spec.ips.unwrap(), vec![last.to_string()]);
    check_invariants(&c).await;
    // The application goes: its pool goes once its address is released.
    deps.delete("web", &DeleteParams::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(pools
        .get(&name)
        .await
        .unwrap()
        .metadata
        .deletion_timestamp
        .is_some());
    delete_pod(&c, "web-abc").await;
    eventually("auto-pool reclaimed", Duration::from_secs(8), || {
        let pools = pools.clone();
        let name = name.clone();
        async move {
            match pools.get_opt(&name).await.unwrap() {
                None => Ok(()),
                Some(_) => Err("still there".to_string()),
            }
        }
    })
    .await;
    check_invariants(&c).await;
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn an_auto_pool_spiderpool_made_is_adopted_not_duplicated() {
    use k8s_openapi::api::apps::v1::Deployment;
    let (s, c) = server().await;
    let subnets: Api<SpiderSubnet> = Api::all(c.clone());
    let sn: SpiderSubnet = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderSubnet",
        "metadata": {"name": "s9"},
        "spec": {"ipVersion": 4, "subnet": "10.9.0.0/24", "ips": ["10.9.0.2-10.9.0.100"], "gateway": "10.9.0.1"}
    }))
    .unwrap();
    let sn = subnets.create(&PostParams::default(), &sn).await.unwrap();
    // The cluster as Spiderpool left it: the Deployment, and its auto pool with Spiderpool's
    // name, labels, ownerReference and podAffinity, holding 2 addresses for replicas 1 + 1.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "apps");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"},
                "annotations": {"ipam.spidernet.io/subnet": "{\"ipv4\":[\"s9\"]}"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]}}}
    }))
    .unwrap();
    let d = deps.create(&PostParams::default(), &d).await.unwrap();
    let uid = d.metadata.uid.clone().unwrap();
    let last = uid.rsplit('-').next().unwrap();
    let name = format!("auto4-web-eth0-{}", &last[..5]);
    let pools: Api<SpiderIPPool> = Api::all(c.clone());
    let made: SpiderIPPool = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1", "kind": "SpiderIPPool",
        "metadata": {
            "name": name,
            "labels": {
                "ipam.spidernet.io/owner-spider-subnet": "s9",
                "ipam.spidernet.io/owner-application-gv": "apps_v1",
                "ipam.spidernet.io/owner-application-kind": "Deployment",
                "ipam.spidernet.io/owner-application-namespace": "apps",
                "ipam.spidernet.io/owner-application-name": "web",
                "ipam.spidernet.io/owner-application-uid": uid,
                "ipam.spidernet.io/interface": "eth0",
                "ipam.spidernet.io/ippool-reclaim": "true",
                "ipam.spidernet.io/ip-version": "IPv4",
                "ipam.spidernet.io/ippool-cidr": "10-9-0-0-24",
            },
            "annotations": {"ipam.spidernet.io/ippool-ip-number": "+1"},
            "ownerReferences": [{"apiVersion": "spiderpool.spidernet.io/v2beta1",
                "kind": "SpiderSubnet", "name": "s9", "uid": sn.metadata.uid.clone().unwrap(),
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {"ipVersion": 4, "subnet": "10.9.0.0/24", "ips": ["10.9.0.50-10.9.0.51"],
            "gateway": "10.9.0.1",
            "podAffinity": {"matchLabels": {
                "ipam.spidernet.io/app-api-group": "apps",
                "ipam.spidernet.io/app-api-version": "v1",
                "ipam.spidernet.io/app-kind": "Deployment",
                "ipam.spidernet.io/app-namespace": "apps",
                "ipam.spidernet.io/app-name": "web"}}},
    }))
    .unwrap();
    pools.create(&PostParams::default(), &made).await.unwrap();
    let mut st = settings(120);
    st.ipam.enable_spider_subnet = true;
    let op = start(c.clone(), st, Metrics::new()).await;
    // Scaled up: the adopted pool grows from its own addresses; no second pool appears.
    deps.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"spec": {"replicas": 3}})),
    )
    .await
    .unwrap();
    eventually(
        "the adopted pool grown to 4",
        Duration::from_secs(5),
        || {
            let pools = pools.clone();
            let name = name.clone();
            async move {
                let p = pools.get(&name).await.unwrap();
                let n = aipam_core::ranges::IpSet::parse_list(&p.spec.ips.unwrap_or_default())
                    .unwrap()
                    .len();
                if n == 4 {
                    Ok(())
                } else {
                    Err(format!("{n} addresses"))
                }
            }
        },
    )
    .await;
    let all = pools.list(&ListParams::default()).await.unwrap();
    let names: Vec<String> = all
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .filter(|n| n.starts_with("auto"))
        .collect();
    assert_eq!(names, vec![name.clone()], "one auto pool, Spiderpool's");
    let p = pools.get(&name).await.unwrap();
    let ips = p.spec.ips.unwrap();
    assert!(ips.iter().any(|r| r.contains("10.9.0.50")), "{ips:?}");
    op.stop().await;
    s.shutdown().await;
}

#[tokio::test]
async fn only_one_replica_leads_and_the_other_takes_over() {
    let (s, c) = server().await;
    let cfg = |id: &str| {
        let mut l = LeaseConfig::new("kube-system", "aipam-operator", id);
        l.lease_duration = Duration::from_secs(2);
        l.renew_deadline = Duration::from_millis(1000);
        l.retry_period = Duration::from_millis(200);
        l
    };
    let mut a = Elector::new(c.clone(), cfg("a"));
    let mut b = Elector::new(c.clone(), cfg("b"));
    assert!(a.try_acquire_or_renew().await.unwrap());
    assert!(!b.try_acquire_or_renew().await.unwrap());
    assert!(a.try_acquire_or_renew().await.unwrap(), "the holder renews");
    // a stops renewing: b takes over once the lease has not moved for its duration.
    let t0 = Instant::now();
    b.acquire().await;
    assert!(
        t0.elapsed() >= Duration::from_millis(1900),
        "took over too early: {:?}",
        t0.elapsed()
    );
    assert!(!a.try_acquire_or_renew().await.unwrap(), "a lost it");
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(c.clone(), "kube-system");
    let l = leases.get("aipam-operator").await.unwrap().spec.unwrap();
    assert_eq!(l.holder_identity.as_deref(), Some("b"));
    assert_eq!(l.lease_transitions, Some(1));
    // Released on shutdown: a takes it at once.
    b.release().await.unwrap();
    let t0 = Instant::now();
    a.acquire().await;
    assert!(t0.elapsed() < Duration::from_millis(1000));
    // The work runs only while leading.
    let out = a.lead(async { 42 }).await.unwrap();
    assert_eq!(out, 42);
    s.shutdown().await;
}

#[tokio::test]
async fn a_pool_crossing_the_fullness_threshold_gets_an_event_and_a_metric_each_way() {
    let (s, c) = server().await;
    let op = operator(&c, 600).await;
    // 9 of p6's 10 addresses: 90%, the default threshold.
    let ips: Vec<String> = (10..19).map(|i| format!("10.6.0.{i}")).collect();
    for (i, ip) in ips.iter().enumerate() {
        let ip: &'static str = Box::leak(ip.clone().into_boxed_str());
        reserve(&c, &admit(&format!("fill-{i}"), &[("p6", ip)])).await;
    }
    let metrics = op.ctx.metrics.clone();
    eventually("the pool above its threshold", Duration::from_secs(5), || {
        let text = metrics.encode();
        async move {
            (text.contains("aipam_operator_pool_above_fullness_threshold{pool=\"p6\"} 1")
                && text.contains(
                    "aipam_operator_pool_fullness_threshold_crossings_total{pool=\"p6\",direction=\"up\"} 1",
                ))
            .then_some(())
            .ok_or(text)
        }
    })
    .await;
    // Two released: 70%, back under.
    for n in ["p6.10.6.0.10", "p6.10.6.0.11"] {
        claims_api(&c)
            .delete(n, &DeleteParams::default())
            .await
            .unwrap();
    }
    eventually("the pool back under its threshold", Duration::from_secs(5), || {
        let text = metrics.encode();
        async move {
            (text.contains("aipam_operator_pool_above_fullness_threshold{pool=\"p6\"} 0")
                && text.contains(
                    "aipam_operator_pool_fullness_threshold_crossings_total{pool=\"p6\",direction=\"down\"} 1",
                ))
            .then_some(())
            .ok_or(text)
        }
    })
    .await;
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::all(c.clone());
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("p6"))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(
        reasons.contains(&"PoolNearlyFull".to_string()),
        "{reasons:?}"
    );
    assert!(
        reasons.contains(&"PoolBelowThreshold".to_string()),
        "{reasons:?}"
    );
    op.stop().await;
    s.shutdown().await;
}
