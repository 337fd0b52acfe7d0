#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The rules, on snapshots built with `mk_pod` / `mk_claim`.

use std::collections::BTreeMap;

use aipam_core::labels::{LabelSelector, LabelSelectorRequirement};
use aipam_core::model::{NodeInfo, Pool};
use aipam_core::ranges::IpSet;
use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION};
use aipam_crds::endpoint::{PodIPAllocation, WorkloadEndpointStatus};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::core::ObjectMeta;

use super::*;

fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

fn ra(pool: &str, ip: &str) -> ReservedAddress {
    ReservedAddress {
        pool: pool.to_string(),
        address: ip.parse().unwrap(),
    }
}

fn record(id: &str, v4: &[(&str, &str)]) -> Reservation {
    Reservation {
        id: id.to_string(),
        interfaces: vec![ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: v4.iter().map(|(p, a)| ra(p, a)).collect(),
            ipv6: vec![],
        }],
    }
}

/// A Pod builder.
struct PodB(Pod);

fn mk_pod(ns: &str, name: &str, uid: &str) -> PodB {
    PodB(Pod {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            uid: Some(uid.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(Default::default()),
        status: Some(Default::default()),
    })
}

impl PodB {
    fn reservation(mut self, r: &Reservation) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNO_RESERVATION.to_string(), r.to_annotation());
        self
    }
    fn node(mut self, n: &str) -> Self {
        self.0.spec.as_mut().unwrap().node_name = Some(n.to_string());
        self
    }
    fn phase(mut self, p: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = Some(p.to_string());
        self
    }
    fn deleting(mut self, since: Timestamp, grace: i64) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(since));
        self.0
            .spec
            .as_mut()
            .unwrap()
            .termination_grace_period_seconds = Some(grace);
        self
    }
    fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                uid: format!("{name}-uid"),
                controller: Some(true),
                block_owner_deletion: None,
            },
        ]);
        self
    }
    fn view(&self) -> PodView {
        PodView::from_pod(&self.0).unwrap()
    }
}

/// A claim builder.
struct ClaimB(SpiderIPClaim);

fn mk_claim(pool: &str, ip: &str, ns: &str, reservation: &str) -> ClaimB {
    let mut c = claim_for(
        &ra(pool, ip),
        &ClaimTarget {
            namespace: ns,
            pod_name: None,
            interface: "eth0",
            reservation,
            owner: None,
            provisional: false,
        },
    );
    c.metadata.creation_timestamp = Some(Time(t(0)));
    ClaimB(c)
}

impl ClaimB {
    /// The Pod's name, as the webhook records it when known at admission.
    fn pod(mut self, name: &str) -> Self {
        self.0.spec.pod_name = Some(name.to_string());
        self
    }
    fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0.spec.owner = Some(ClaimOwner {
            kind: kind.to_string(),
            name: name.to_string(),
            uid: format!("{name}-uid"),
        });
        self
    }
    fn provisional(mut self) -> Self {
        self.0.spec.provisional = true;
        self
    }
}

fn rules() -> Rules {
    Rules {
        grace: SignedDuration::from_secs(120),
        stateful_set: true,
    }
}

fn world(pods: &[&PodB]) -> World {
    World::new(pods.iter().map(|p| p.view()).collect())
}

fn delete(why: Why, pod_absent: bool) -> ClaimVerdict {
    ClaimVerdict::Delete { why, pod_absent }
}

#[test]
fn a_reservation_whose_pod_never_appeared_waits_for_the_grace_period() {
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").0;
    let w = world(&[]);
    assert_eq!(
        judge_claim(&c, &w, t(30), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(120), &rules()),
        delete(Why::NeverAppeared, true)
    );
}

#[test]
fn a_claim_whose_pod_exists_is_kept_whatever_its_age() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let pod = mk_pod("ns", "web-abc", "u1").reservation(&r);
    // Found by the reservation id the Pod carries (a generateName Pod: no name on the claim).
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").0;
    assert_eq!(
        judge_claim(&c, &world(&[&pod]), t(9999), &rules()),
        ClaimVerdict::Keep
    );
    // A Pod of another namespace carrying the same id does not hold it.
    let elsewhere = mk_pod("other", "web-abc", "u9").reservation(&r);
    assert_eq!(
        judge_claim(&c, &world(&[&elsewhere]), t(9999), &rules()),
        delete(Why::NeverAppeared, true)
    );
}

#[test]
fn a_young_claim_whose_pod_is_absent_is_never_deleted_unless_the_pod_was_seen_gone() {
    // Admitted, not stored yet (or the cache has not seen it): absent Pod, young claim.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("web-abc").0;
    let w = world(&[]);
    assert_eq!(
        judge_claim(&c, &w, t(5), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(121), &rules()),
        delete(Why::NeverAppeared, true)
    );
    // An endpoint names the reservation: its Pod existed, so it is gone, not never seen.
    let mut w = world(&[]);
    w.endpoint_reservations.insert("r-1".to_string());
    assert_eq!(
        judge_claim(&c, &w, t(5), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(121), &rules()),
        delete(Why::PodGone, true)
    );
    // Seen deleted (by reservation id, whatever the name): released at once.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-9").0;
    let mut w = world(&[]);
    w.gone_reservations
        .insert("r-9".to_string(), ("web-x".to_string(), "u9".to_string()));
    assert_eq!(
        judge_claim(&c, &w, t(1), &rules()),
        delete(Why::PodGone, true)
    );
}

#[test]
fn finished_pods_release_their_addresses() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("job-x").0;
    for phase in ["Succeeded", "Failed"] {
        let pod = mk_pod("ns", "job-x", "u1").reservation(&r).phase(phase);
        assert_eq!(
            judge_claim(&c, &world(&[&pod]), t(1), &rules()),
            delete(Why::PodTerminal, false)
        );
    }
    let pod = mk_pod("ns", "job-x", "u1").reservation(&r).phase("Running");
    assert_eq!(
        judge_claim(&c, &world(&[&pod]), t(1), &rules()),
        ClaimVerdict::Keep
    );
}

#[test]
fn stateless_pods_stuck_terminating_on_a_dead_node_are_released_after_their_grace() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("web-1").0;
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n1")
        .deleting(t(100), 30);
    let mut w = world(&[&pod]);
    w.nodes_ready.insert("n1".to_string(), false);
    assert_eq!(judge_claim(&c, &w, t(129), &rules()), ClaimVerdict::Keep);
    assert_eq!(
        judge_claim(&c, &w, t(130), &rules()),
        delete(Why::StuckTerminating, false)
    );
    // Node Ready: the kubelet will finish the deletion; nothing to do.
    w.nodes_ready.insert("n1".to_string(), true);
    assert_eq!(judge_claim(&c, &w, t(500), &rules()), ClaimVerdict::Keep);
    // Node deleted: counts as not Ready.
    w.nodes_ready.clear();
    assert_eq!(
        judge_claim(&c, &w, t(500), &rules()),
        delete(Why::StuckTerminating, false)
    );
    // A StatefulSet Pod is never released while it exists.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1")
        .pod("web-1")
        .owner("StatefulSet", "web")
        .0;
    assert_eq!(judge_claim(&c, &w, t(500), &rules()), ClaimVerdict::Keep);
}

/// Found by e2e/tests/chaos.rs: a StatefulSet Pod made again while its kept address's pool
/// was full was admitted with another address; the old claim was then kept "for the next Pod"
/// as long as the set lived, so the ordinal held two addresses.
#[test]
fn a_stateful_set_address_is_released_when_the_ordinals_new_pod_holds_another() {
    let c = mk_claim("zb", "10.91.0.21", "ns", "r-old")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    let set = SetState {
        replicas: 2,
        deleting: false,
    };
    let next = mk_pod("ns", "db-1", "u-new")
        .reservation(&record("r-new", &[("za", "10.90.0.13")]))
        .owned_by("StatefulSet", "db");
    let mut w = world(&[&next]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    assert_eq!(
        judge_claim(&c, &w, t(1), &rules()),
        delete(Why::PodGone, true)
    );
    // The new Pod took this very claim over: kept.
    let took = mk_pod("ns", "db-1", "u-new")
        .reservation(&record("r-new", &[("zb", "10.91.0.21")]))
        .owned_by("StatefulSet", "db");
    let mut w = world(&[&took]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    let taken = mk_claim("zb", "10.91.0.21", "ns", "r-new")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    assert_eq!(judge_claim(&taken, &w, t(1), &rules()), ClaimVerdict::Keep);
    // No Pod of that name (yet): kept for it, however old.
    let mut w = world(&[]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    assert_eq!(judge_claim(&c, &w, t(9999), &rules()), ClaimVerdict::Keep);
}

#[test]
fn stateful_set_addresses_are_kept_for_the_next_pod_until_the_set_scales_below_the_ordinal() {
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1")
        .pod("db-2")
        .owner("StatefulSet", "db")
        .0;
    let mut w = world(&[]);
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 3,
            deleting: false,
        },
    );
    assert_eq!(judge_claim(&c, &w, t(1), &rules()), ClaimVerdict::Keep);
    assert_eq!(judge_claim(&c, &w, t(9999), &rules()), ClaimVerdict::Keep);
    // Scaled to 2: ordinal 2 is no longer wanted.
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 2,
            deleting: false,
        },
    );
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetScaledDown, true)
    );
    // ... but a young reservation not known gone waits for the grace period...
    assert_eq!(
        judge_claim(&c, &w, t(10), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    // ... unless its Pod was seen deleted.
    let mut seen = w.clone();
    seen.gone_reservations
        .insert("r-1".into(), ("db-2".into(), "u1".into()));
    assert_eq!(
        judge_claim(&c, &seen, t(10), &rules()),
        delete(Why::StatefulSetScaledDown, true)
    );
    // Set deleted, or being deleted.
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 3,
            deleting: true,
        },
    );
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetGone, true)
    );
    w.stateful_sets.clear();
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetGone, true)
    );
    // The rule switched off (enableStatefulSet: false): an ordinary Pod.
    let off = Rules {
        stateful_set: false,
        ..rules()
    };
    let mut w = world(&[]);
    w.endpoint_reservations.insert("r-1".into());
    assert_eq!(
        judge_claim(&c, &w, t(9999), &off),
        delete(Why::PodGone, true)
    );
    // The next Pod of the name took it under a new reservation: kept.
    let r = record("r-2", &[("p", "10.0.0.5")]);
    let next = mk_pod("ns", "db-2", "u2").reservation(&r);
    let retaken = mk_claim("p", "10.0.0.5", "ns", "r-2")
        .pod("db-2")
        .owner("StatefulSet", "db")
        .0;
    assert_eq!(
        judge_claim(&retaken, &world(&[&next]), t(9999), &rules()),
        ClaimVerdict::Keep
    );
    assert_eq!(ordinal("db", "db-12"), Some(12));
    assert_eq!(ordinal("db", "dbx-1"), None);
    assert_eq!(ordinal("db", "db-"), None);
}

#[test]
fn zone_alternatives_the_pod_no_longer_lists_are_released() {
    let kept = record("r-1", &[("p7", "10.7.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1").reservation(&kept).node("n7");
    let alt = mk_claim("p6", "10.6.0.5", "ns", "r-1")
        .pod("web-1")
        .provisional()
        .0;
    assert_eq!(
        judge_claim(&alt, &world(&[&pod]), t(1), &rules()),
        delete(Why::ZoneAlternative, false)
    );
    let mine = mk_claim("p7", "10.7.0.5", "ns", "r-1").pod("web-1").0;
    assert_eq!(
        judge_claim(&mine, &world(&[&pod]), t(1), &rules()),
        ClaimVerdict::Keep
    );
}

fn mk_endpoint(ns: &str, name: &str, uid: &str, created: Timestamp) -> SpiderEndpoint {
    SpiderEndpoint {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            creation_timestamp: Some(Time(created)),
            ..ObjectMeta::default()
        },
        spec: Default::default(),
        status: Some(WorkloadEndpointStatus {
            current: PodIPAllocation {
                uid: uid.to_string(),
                node: String::new(),
                ips: vec![],
            },
            owner_controller_type: "Pod".to_string(),
            owner_controller_name: name.to_string(),
        }),
    }
}

#[test]
fn endpoints_live_as_long_as_a_pod_of_their_name() {
    let ep = mk_endpoint("ns", "web-1", "u1", t(0));
    let pod = mk_pod("ns", "web-1", "u1").node("n1");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&pod]), t(999), &rules()),
        EndpointVerdict::Keep
    );
    // Next Pod of the same name (StatefulSet): binding rewrites it; never deleted.
    let next = mk_pod("ns", "web-1", "u2");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&next]), t(999), &rules()),
        EndpointVerdict::Keep
    );
    assert_eq!(
        judge_endpoint(&ep, &world(&[]), t(10), &rules()),
        EndpointVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_endpoint(&ep, &world(&[]), t(120), &rules()),
        EndpointVerdict::Delete { pod_absent: true }
    );
    let mut w = world(&[]);
    w.gone_uids.insert("u1".into());
    assert_eq!(
        judge_endpoint(&ep, &w, t(1), &rules()),
        EndpointVerdict::Delete { pod_absent: true }
    );
    let done = mk_pod("ns", "web-1", "u1").phase("Succeeded");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&done]), t(1), &rules()),
        EndpointVerdict::Delete { pod_absent: false }
    );
    let sts_done = mk_pod("ns", "web-1", "u1")
        .phase("Failed")
        .owned_by("StatefulSet", "web");
    assert_eq!(
        judge_endpoint(&ep, &world(&[&sts_done]), t(1), &rules()),
        EndpointVerdict::Keep
    );
}

fn zone_pool(name: &str, subnet: &str, zone: &str) -> Pool {
    let mut p = Pool::new(
        name,
        subnet.parse().unwrap(),
        IpSet::from_net(&subnet.parse().unwrap()),
    );
    p.gateway = Some(
        subnet
            .parse::<ipnet::IpNet>()
            .unwrap()
            .hosts()
            .next()
            .unwrap(),
    );
    p.node_affinity = Some(LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![LabelSelectorRequirement {
            key: "zone".to_string(),
            operator: "In".to_string(),
            values: vec![zone.to_string()],
        }],
    });
    p
}

fn pools() -> BTreeMap<String, Pool> {
    [
        zone_pool("p6", "10.6.0.0/16", "z6"),
        zone_pool("p7", "10.7.0.0/16", "z7"),
    ]
    .into_iter()
    .map(|p| (p.name.clone(), p))
    .collect()
}

fn by_name(cs: Vec<SpiderIPClaim>) -> BTreeMap<String, SpiderIPClaim> {
    cs.into_iter()
        .map(|c| (c.metadata.name.clone().unwrap(), c))
        .collect()
}

fn node(name: &str, zone: &str) -> NodeInfo {
    NodeInfo {
        name: name.to_string(),
        labels: [("zone".to_string(), zone.to_string())].into(),
    }
}

#[test]
fn binding_writes_the_endpoint_once_and_never_the_claims() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    let claims = by_name(vec![mk_claim("p6", "10.6.0.5", "ns", "r-1").0]);
    let plan = plan_binding(&pod, &claims, None, &pools(), Some(&node("n6", "z6")));
    assert!(plan.settle.is_empty() && plan.recreate.is_empty());
    let ep = plan.endpoint.clone().unwrap();
    assert_eq!(ep.uid, "u1");
    assert_eq!(ep.node, "n6");
    assert_eq!(ep.ips[0].ipv4.as_deref(), Some("10.6.0.5/16"));
    assert_eq!(ep.ips[0].ipv4_gateway.as_deref(), Some("10.6.0.1"));
    assert!(plan.release.is_empty() && plan.new_record.is_none() && plan.warnings.is_empty());
    // The same status, but not owned by the Pod yet (the webhook wrote it before the Pod was
    // stored): written once more, for the owner.
    let mut endpoint = mk_endpoint("ns", "web-1", "u1", t(0));
    endpoint.status.as_mut().unwrap().current = ep;
    let plan = plan_binding(
        &pod,
        &claims,
        Some(&endpoint),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(plan.endpoint.is_some());
    // Not scheduled yet: the owner waits for the node, so both go in one write.
    let unscheduled = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&unscheduled, &claims, Some(&endpoint), &pools(), None);
    assert!(plan.is_empty(), "{plan:?}");
    // Once carried out, the plan is empty: binding is idempotent.
    endpoint.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: "web-1".into(),
            uid: "u1".into(),
            ..Default::default()
        },
    ]);
    let plan = plan_binding(
        &pod,
        &claims,
        Some(&endpoint),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(plan.is_empty(), "{plan:?}");
    // A Pod not scheduled yet whose endpoint names the node it is pinned to (a DaemonSet Pod,
    // as the webhook writes it): the node is not blanked, nothing to write.
    let pinned = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&pinned, &claims, Some(&endpoint), &pools(), None);
    assert!(plan.is_empty(), "{plan:?}");
}

#[test]
fn late_binding_keeps_the_zone_of_the_node_and_releases_the_other() {
    let r = record("r-1", &[("p6", "10.6.0.5"), ("p7", "10.7.0.5")]);
    let claims = by_name(vec![
        mk_claim("p6", "10.6.0.5", "ns", "r-1")
            .pod("web-1")
            .provisional()
            .0,
        mk_claim("p7", "10.7.0.5", "ns", "r-1")
            .pod("web-1")
            .provisional()
            .0,
    ]);
    // Not scheduled yet: endpoint without addresses, nothing released.
    let pending = mk_pod("ns", "web-1", "u1").reservation(&r).view();
    let plan = plan_binding(&pending, &claims, None, &pools(), None);
    assert!(plan.release.is_empty() && plan.new_record.is_none());
    assert!(plan.endpoint.as_ref().unwrap().ips.is_empty());
    assert!(plan.settle.is_empty());
    // Scheduled on a z7 node.
    let bound = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n7")
        .view();
    let plan = plan_binding(&bound, &claims, None, &pools(), Some(&node("n7", "z7")));
    assert!(plan.late_bound);
    assert_eq!(plan.release, vec!["p6.10.6.0.5".to_string()]);
    assert_eq!(plan.new_record, Some(record("r-1", &[("p7", "10.7.0.5")])));
    assert_eq!(plan.settle, vec!["p7.10.7.0.5".to_string()]);
    let ep = plan.endpoint.unwrap();
    assert_eq!(
        (ep.node.as_str(), ep.ips[0].ipv4.as_deref()),
        ("n7", Some("10.7.0.5/16"))
    );
    // A node no reserved zone serves: a warning, the endpoint stays empty, nothing released.
    let plan = plan_binding(
        &bound,
        &claims,
        None,
        &pools(),
        Some(&node("n7", "elsewhere")),
    );
    assert_eq!(plan.warnings[0].reason, "NoZoneServesNode");
    assert!(plan.release.is_empty() && plan.new_record.is_none());
    assert!(plan.endpoint.unwrap().ips.is_empty());
}

#[test]
fn binding_recreates_missing_claims_and_reports_taken_ones() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    // A claim the endpoint already gives this Pod went missing: recreated.
    let mut ep = mk_endpoint("ns", "web-1", "u1", t(0));
    ep.status.as_mut().unwrap().current.ips = vec![aipam_crds::endpoint::IPAllocationDetail {
        nic: "eth0".to_string(),
        ipv4: Some("10.6.0.5/24".to_string()),
        ..Default::default()
    }];
    let plan = plan_binding(
        &pod,
        &BTreeMap::new(),
        Some(&ep),
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(
        plan.recreate,
        vec![("p6.10.6.0.5".to_string(), ra("p6", "10.6.0.5"))]
    );
    let other = by_name(vec![mk_claim("p6", "10.6.0.5", "ns", "r-other").0]);
    let plan = plan_binding(&pod, &other, None, &pools(), Some(&node("n6", "z6")));
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    assert!(plan.settle.is_empty() && plan.recreate.is_empty());
}

/// Found by e2e/tests/chaos.rs: two admissions of the same StatefulSet Pod name raced; the one
/// whose Pod lost the name race had taken the kept address over last, so the stored Pod's record
/// named a claim carrying a dead admission's id.
#[test]
fn a_stateful_set_pod_takes_back_its_address_stranded_under_a_dead_admission() {
    let r = record("r-stored", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "db-1", "u1")
        .reservation(&r)
        .node("n6")
        .owned_by("StatefulSet", "db")
        .view();
    let stranded = mk_claim("p6", "10.6.0.5", "ns", "r-lost")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![stranded.clone()]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(
        plan.take_back,
        vec![("p6.10.6.0.5".to_string(), "r-lost".to_string())]
    );
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    assert_eq!(
        plan.endpoint.unwrap().ips[0].ipv4.as_deref(),
        Some("10.6.0.5/16")
    );
    // Not for a Pod of another name, nor of another controller: that address is taken.
    for other in [
        mk_pod("ns", "db-2", "u2")
            .reservation(&r)
            .owned_by("StatefulSet", "db"),
        mk_pod("ns", "db-1", "u2")
            .reservation(&r)
            .owned_by("StatefulSet", "other"),
        mk_pod("ns", "db-1", "u2").reservation(&r),
    ] {
        let plan = plan_binding(
            &other.view(),
            &by_name(vec![stranded.clone()]),
            None,
            &pools(),
            Some(&node("n6", "z6")),
        );
        assert!(plan.take_back.is_empty());
        assert_eq!(plan.warnings[0].reason, "AddressTaken");
    }
}

#[test]
fn a_rewritten_annotation_never_conjures_or_steals_an_address() {
    // Should a Pod's annotation be rewritten despite the guard (a namespace the webhooks skip):
    // to an address nobody holds...
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n6")
        .view();
    let plan = plan_binding(
        &pod,
        &BTreeMap::new(),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert!(
        plan.recreate.is_empty(),
        "no claim is made on the annotation's word"
    );
    assert_eq!(plan.warnings[0].reason, "ClaimMissing");
    assert!(
        plan.endpoint.unwrap().ips.is_empty(),
        "nothing recorded for the CNI"
    );
    // ...to another Pod's address (held under that Pod's reservation id)...
    let victim = mk_claim("p6", "10.6.0.5", "ns", "r-victim").pod("web-2").0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![victim.clone()]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    assert!(plan.settle.is_empty());
    assert!(plan.endpoint.unwrap().ips.is_empty());
    // ...or to another namespace's claim.
    let elsewhere = mk_claim("p6", "10.6.0.5", "other-ns", "r-1").0;
    let plan = plan_binding(
        &pod,
        &by_name(vec![elsewhere]),
        None,
        &pools(),
        Some(&node("n6", "z6")),
    );
    assert_eq!(plan.warnings[0].reason, "AddressTaken");
    // A zone record naming the victim's address as an alternative never releases it.
    let zones = Reservation {
        id: "r-1".to_string(),
        interfaces: vec![aipam_core::reservation::ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: vec![ra("p6", "10.6.0.5"), ra("p7", "10.7.0.5")],
            ipv6: vec![],
        }],
    };
    let attacker = mk_pod("ns", "web-1", "u1")
        .reservation(&zones)
        .node("n7")
        .view();
    let plan = plan_binding(
        &attacker,
        &by_name(vec![victim]),
        None,
        &pools(),
        Some(&node("n7", "z7")),
    );
    assert!(plan.release.is_empty(), "{:?}", plan.release);
}

#[test]
fn counters_and_double_holding() {
    let cs = [
        mk_claim("p6", "10.6.0.5", "ns", "a").0,
        mk_claim("p6", "10.6.0.6", "ns", "b").0,
        mk_claim("p7", "10.7.0.5", "ns", "c").0,
    ];
    let n = allocated_per_pool(cs.iter());
    assert_eq!((n["p6"], n["p7"]), (2, 1));
    assert!(held_twice(cs.iter()).is_empty());
    let dup = [cs[0].clone(), cs[0].clone()];
    assert_eq!(held_twice(dup.iter()), vec!["10.6.0.5".to_string()]);
}

#[test]
fn pod_views_read_the_pod() {
    let r = record("r-1", &[("p6", "10.6.0.5")]);
    let v = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n1")
        .phase("Running")
        .owned_by("ReplicaSet", "web-5d8")
        .view();
    assert_eq!(v.reservation, Some(r));
    assert_eq!(v.node.as_deref(), Some("n1"));
    assert_eq!(
        v.controller,
        Some(("ReplicaSet".to_string(), "web-5d8".to_string()))
    );
    assert_eq!(v.grace_seconds, 30);
    assert!(!v.is_terminal());
}

#[test]
fn subnet_counters_count_what_pools_took() {
    use aipam_core::validate::{validate_subnet, SubnetDraft};
    let subnet = validate_subnet(&SubnetDraft {
        name: "s9".into(),
        subnet: "10.9.0.0/24".into(),
        ips: vec!["10.9.0.2-10.9.0.100".into()],
        exclude_ips: vec!["10.9.0.90-10.9.0.100".into()],
        gateway: Some("10.9.0.1".into()),
        ..SubnetDraft::default()
    })
    .unwrap();
    let a = Pool::new(
        "a",
        "10.9.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.9.0.10-10.9.0.29"]).unwrap(),
    );
    let b = Pool::new(
        "b",
        "10.9.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.9.0.80-10.9.0.95"]).unwrap(),
    );
    let other = Pool::new(
        "o",
        "10.8.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.8.0.10-10.8.0.29"]).unwrap(),
    );
    // 99 - 11 excluded = 88; a takes 20, b 10 of its 16 (6 are excluded).
    assert_eq!(subnet_counts(&subnet, [&a, &b, &other]), (30, 88));
}
