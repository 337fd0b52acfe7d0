//! The decisions, as pure functions over snapshots: which Pod holds a claim, what to write into
//! a Pod's endpoint, what to release, what to collect, given Pods, claims, endpoints, StatefulSets, nodes and the time. The controllers only
//! gather the inputs and carry out the answers, so every rule here is tested without a server.

use std::collections::{BTreeMap, BTreeSet};

use aipam_core::annotations::{parse_routes, Route, ANNO_ROUTES};
use aipam_core::model::{NodeInfo, Pool};
use aipam_core::reservation::{Reservation, ReservedAddress, ANNO_RESERVATION, LABEL_RESERVATION};
use aipam_crds::endpoint::{PodIPAllocation, WorkloadEndpointStatus};
use aipam_crds::record::endpoint_ips;
use aipam_crds::{SpiderEndpoint, SpiderIPClaim};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// The kind of top controller whose Pods keep their addresses by name.
pub const STATEFUL_SET: &str = "StatefulSet";

/// What the rules need to know of a Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodView {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// UID.
    pub uid: String,
    /// The reservation record of its annotation, if readable.
    pub reservation: Option<Reservation>,
    /// `spec.nodeName`.
    pub node: Option<String>,
    /// `status.phase`.
    pub phase: Option<String>,
    /// `metadata.deletionTimestamp`.
    pub deleting_since: Option<Timestamp>,
    /// `spec.terminationGracePeriodSeconds` (30 when unset).
    pub grace_seconds: i64,
    /// The controller owner reference: (kind, name).
    pub controller: Option<(String, String)>,
    /// `ipam.spidernet.io/routes`, when readable.
    pub routes: Vec<Route>,
}

impl PodView {
    /// Reads a Pod. `None` for a Pod without name or UID (never true of a stored Pod).
    pub fn from_pod(pod: &Pod) -> Option<PodView> {
        let meta = &pod.metadata;
        let annotations = meta.annotations.as_ref();
        let reservation = annotations
            .and_then(|a| a.get(ANNO_RESERVATION))
            .and_then(|v| Reservation::parse(v).ok());
        let routes = annotations
            .and_then(|a| a.get(ANNO_ROUTES))
            .and_then(|v| parse_routes(v).ok())
            .unwrap_or_default();
        let controller = meta.owner_references.as_ref().and_then(|refs| {
            refs.iter()
                .find(|r| r.controller == Some(true))
                .map(|r| (r.kind.clone(), r.name.clone()))
        });
        let spec = pod.spec.as_ref();
        Some(PodView {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            reservation,
            node: spec
                .and_then(|s| s.node_name.clone())
                .filter(|n| !n.is_empty()),
            phase: pod.status.as_ref().and_then(|s| s.phase.clone()),
            deleting_since: meta.deletion_timestamp.as_ref().map(|t| t.0),
            grace_seconds: spec
                .and_then(|s| s.termination_grace_period_seconds)
                .unwrap_or(30),
            controller,
            routes,
        })
    }

    /// Succeeded or Failed: its containers will not run again.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase.as_deref(), Some("Succeeded") | Some("Failed"))
    }

    /// The reservation id, if any.
    pub fn reservation_id(&self) -> Option<&str> {
        self.reservation.as_ref().map(|r| r.id.as_str())
    }
}

/// The ordinal of a StatefulSet Pod (`<set>-<n>`).
pub fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

/// Settings the decisions depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// A claim whose Pod is absent is never deleted before it is this old (from its
    /// creationTimestamp), unless its Pod is known to have existed and gone.
    pub grace: SignedDuration,
    /// StatefulSet Pods keep their addresses by name.
    pub stateful_set: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            grace: SignedDuration::from_secs(120),
            stateful_set: true,
        }
    }
}

/// A StatefulSet as the rules see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetState {
    /// `spec.replicas` (1 when unset).
    pub replicas: i64,
    /// The set is being deleted.
    pub deleting: bool,
}

/// Everything the collector looks at, indexed.
#[derive(Clone, Debug, Default)]
pub struct World {
    pods: Vec<PodView>,
    by_reservation: BTreeMap<String, usize>,
    by_name: BTreeMap<(String, String), usize>,
    /// StatefulSets by (namespace, name).
    pub stateful_sets: BTreeMap<(String, String), SetState>,
    /// Node readiness by name (a node absent from the map is gone).
    pub nodes_ready: BTreeMap<String, bool>,
    /// UIDs of Pods seen deleted: their endpoints go at once, without waiting for the grace
    /// period.
    pub gone_uids: BTreeSet<String>,
    /// Reservation ids of Pods seen deleted, with the Pod's (name, UID): their claims go at
    /// once, and the release is reported on the Pod.
    pub gone_reservations: BTreeMap<String, (String, String)>,
    /// Reservation ids some SpiderEndpoint names (label `aipam.io/reservation`): a Pod carried
    /// them, so a claim of one whose Pod is absent is a Pod gone, not one that never appeared.
    pub endpoint_reservations: BTreeSet<String>,
}

impl World {
    /// Indexes the Pods.
    pub fn new(pods: Vec<PodView>) -> World {
        let mut w = World::default();
        for p in pods {
            w.add_pod(p);
        }
        w
    }

    /// Adds (or replaces) one Pod, as found by a live read.
    pub fn add_pod(&mut self, p: PodView) {
        let i = self.pods.len();
        if let Some(id) = p.reservation_id() {
            self.by_reservation.insert(id.to_string(), i);
        }
        self.by_name
            .insert((p.namespace.clone(), p.name.clone()), i);
        self.pods.push(p);
    }

    /// Notes the reservation ids the endpoints name (label `aipam.io/reservation`).
    pub fn note_endpoints<'e, I>(&mut self, endpoints: I)
    where
        I: IntoIterator<Item = &'e SpiderEndpoint>,
    {
        for e in endpoints {
            if let Some(id) = e
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_RESERVATION))
            {
                self.endpoint_reservations.insert(id.clone());
            }
        }
    }

    /// The Pod carrying a reservation id.
    pub fn pod_by_reservation(&self, id: &str) -> Option<&PodView> {
        self.by_reservation.get(id).map(|i| &self.pods[*i])
    }

    /// The Pod of a name.
    pub fn pod_by_name(&self, namespace: &str, name: &str) -> Option<&PodView> {
        self.by_name
            .get(&(namespace.to_string(), name.to_string()))
            .map(|i| &self.pods[*i])
    }

    /// Every Pod.
    pub fn pods(&self) -> &[PodView] {
        &self.pods
    }
}

/// Why an address is given back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Why {
    /// No Pod ever carried the reservation within the grace period.
    NeverAppeared,
    /// The Pod is gone.
    PodGone,
    /// The Pod Succeeded or Failed.
    PodTerminal,
    /// The Pod is stuck Terminating on a node that is not Ready.
    StuckTerminating,
    /// A zone alternative the Pod did not need once its node was known.
    ZoneAlternative,
    /// The StatefulSet no longer wants that ordinal.
    StatefulSetScaledDown,
    /// The StatefulSet is gone.
    StatefulSetGone,
}

impl Why {
    /// Metric label and event wording.
    pub fn label(self) -> &'static str {
        match self {
            Why::NeverAppeared => "never_appeared",
            Why::PodGone => "pod_gone",
            Why::PodTerminal => "pod_terminal",
            Why::StuckTerminating => "stuck_terminating",
            Why::ZoneAlternative => "zone_alternative",
            Why::StatefulSetScaledDown => "statefulset_scaled_down",
            Why::StatefulSetGone => "statefulset_gone",
        }
    }

    /// Whether this is a release of a Pod's address (versus collection of a leftover).
    pub fn is_release(self) -> bool {
        matches!(
            self,
            Why::PodGone | Why::PodTerminal | Why::StuckTerminating | Why::ZoneAlternative
        )
    }
}

/// What to do with one claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClaimVerdict {
    /// In use, or may be: leave it.
    Keep,
    /// Its Pod is absent but the claim is younger than the grace period: look again then.
    KeepUntil(Timestamp),
    /// Give the address back. When `pod_absent`, the executor first re-reads the Pod live.
    Delete {
        /// Why.
        why: Why,
        /// The decision rests on the Pod being absent from the cache.
        pod_absent: bool,
    },
}

fn claim_created(c: &SpiderIPClaim) -> Option<Timestamp> {
    c.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The StatefulSet of a claim, when the StatefulSet rule applies to it.
pub fn stateful_owner<'c>(c: &'c SpiderIPClaim, rules: &Rules) -> Option<&'c str> {
    if !rules.stateful_set {
        return None;
    }
    c.spec
        .owner
        .as_ref()
        .filter(|o| o.kind == STATEFUL_SET)
        .map(|o| o.name.as_str())
}

/// Whether a Pod is stuck Terminating on a node that is not Ready: past its deletionTimestamp
/// plus its termination grace period.
pub fn stuck_terminating(pod: &PodView, world: &World, now: Timestamp) -> bool {
    let Some(since) = pod.deleting_since else {
        return false;
    };
    let node_ready = pod
        .node
        .as_ref()
        .and_then(|n| world.nodes_ready.get(n))
        .copied()
        .unwrap_or(false);
    if node_ready {
        return false;
    }
    let deadline = since
        .checked_add(SignedDuration::from_secs(pod.grace_seconds.max(0)))
        .unwrap_or(since);
    now >= deadline
}

/// The Pod holding a claim: the Pod of the claim's namespace carrying its reservation id. The id
/// is minted per admission (a record a new Pod brings along is replaced) and only the operator
/// rewrites a Pod's record afterwards, so nothing else needs to bind the claim to the Pod.
pub fn holder<'w>(c: &SpiderIPClaim, world: &'w World) -> Option<&'w PodView> {
    world
        .pod_by_reservation(&c.spec.reservation)
        .filter(|p| p.namespace == c.spec.namespace)
}

/// The verdict on one claim.
pub fn judge_claim(
    c: &SpiderIPClaim,
    world: &World,
    now: Timestamp,
    rules: &Rules,
) -> ClaimVerdict {
    let name = c.metadata.name.as_deref().unwrap_or_default();
    let sts = stateful_owner(c, rules);
    let pod = holder(c, world);
    if let Some(pod) = pod {
        let listed = pod
            .reservation
            .as_ref()
            .is_some_and(|r| r.claim_names().iter().any(|n| n == name));
        if !listed {
            return ClaimVerdict::Delete {
                why: Why::ZoneAlternative,
                pod_absent: false,
            };
        }
        if sts.is_some() {
            // A StatefulSet Pod keeps its address while it exists, whatever its state.
            return ClaimVerdict::Keep;
        }
        if pod.is_terminal() {
            return ClaimVerdict::Delete {
                why: Why::PodTerminal,
                pod_absent: false,
            };
        }
        if stuck_terminating(pod, world, now) {
            return ClaimVerdict::Delete {
                why: Why::StuckTerminating,
                pod_absent: false,
            };
        }
        return ClaimVerdict::Keep;
    }
    // No Pod. Known to have existed and gone?
    let known_gone = world.gone_reservations.contains_key(&c.spec.reservation);
    let appeared = known_gone || world.endpoint_reservations.contains(&c.spec.reservation);
    let young_until = claim_created(c)
        .and_then(|t| t.checked_add(rules.grace).ok())
        .filter(|until| *until > now);
    if let Some(set) = sts {
        let state = world
            .stateful_sets
            .get(&(c.spec.namespace.clone(), set.to_string()));
        let wanted = match (state, c.spec.pod_name.as_deref()) {
            (Some(s), Some(pod)) if !s.deleting => {
                ordinal(set, pod).is_some_and(|o| o < s.replicas)
            }
            (Some(s), None) => !s.deleting,
            _ => false,
        };
        // The ordinal's Pod exists again, under a new UID and reservation that do not list
        // this claim (admitted while this claim's pool was full, or its pools changed): the
        // address is no Pod's any more; keeping it for the set would hold it as long as the
        // set lives.
        let replaced = c
            .spec
            .pod_name
            .as_deref()
            .and_then(|n| world.pod_by_name(&c.spec.namespace, n))
            .and_then(|p| p.reservation.as_ref())
            .is_some_and(|r| !r.claim_names().iter().any(|n| n == name));
        if wanted && replaced {
            return ClaimVerdict::Delete {
                why: Why::PodGone,
                pod_absent: true,
            };
        }
        if wanted {
            // Kept for the next Pod of the name, which takes it over at admission.
            return ClaimVerdict::Keep;
        }
        if let Some(until) = young_until {
            if !known_gone {
                return ClaimVerdict::KeepUntil(until);
            }
        }
        return ClaimVerdict::Delete {
            why: if state.is_some_and(|s| !s.deleting) {
                Why::StatefulSetScaledDown
            } else {
                Why::StatefulSetGone
            },
            pod_absent: true,
        };
    }
    if let Some(until) = young_until {
        if !known_gone {
            return ClaimVerdict::KeepUntil(until);
        }
    }
    ClaimVerdict::Delete {
        why: if appeared {
            Why::PodGone
        } else {
            Why::NeverAppeared
        },
        pod_absent: true,
    }
}

/// What to do with one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointVerdict {
    /// Its Pod lives (or may be about to).
    Keep,
    /// Young and Pod absent: look again then.
    KeepUntil(Timestamp),
    /// Delete it; `pod_absent` as for claims.
    Delete {
        /// The decision rests on the Pod being absent from the cache.
        pod_absent: bool,
    },
}

/// The verdict on one SpiderEndpoint: it lives as long as a Pod of its name and UID lives (a
/// Pod of the same name and another UID — a StatefulSet's next Pod — keeps it too: binding
/// rewrites it).
pub fn judge_endpoint(
    ep: &SpiderEndpoint,
    world: &World,
    now: Timestamp,
    rules: &Rules,
) -> EndpointVerdict {
    let ns = ep.metadata.namespace.as_deref().unwrap_or_default();
    let name = ep.metadata.name.as_deref().unwrap_or_default();
    let uid = ep
        .status
        .as_ref()
        .map(|s| s.current.uid.as_str())
        .unwrap_or_default();
    if let Some(pod) = world.pod_by_name(ns, name) {
        let sts = rules.stateful_set
            && pod
                .controller
                .as_ref()
                .is_some_and(|(k, _)| k == STATEFUL_SET);
        if pod.uid == uid && !sts && (pod.is_terminal() || stuck_terminating(pod, world, now)) {
            return EndpointVerdict::Delete { pod_absent: false };
        }
        return EndpointVerdict::Keep;
    }
    if world.gone_uids.contains(uid) {
        return EndpointVerdict::Delete { pod_absent: true };
    }
    if let Some(until) = ep
        .metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| t.0.checked_add(rules.grace).ok())
        .filter(|u| *u > now)
    {
        return EndpointVerdict::KeepUntil(until);
    }
    EndpointVerdict::Delete { pod_absent: true }
}

/// A warning for the Pod's events.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// Event reason.
    pub reason: &'static str,
    /// Event note.
    pub note: String,
}

/// What binding does for one live Pod.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct BindPlan {
    /// Claims to settle: `spec.provisional` set to false once late binding kept them.
    pub settle: Vec<String>,
    /// StatefulSet claims to move back to this Pod's reservation: (claim, reservation it
    /// carries now).
    pub take_back: Vec<(String, String)>,
    /// Claims the record lists that do not exist: recreate them for the Pod.
    pub recreate: Vec<(String, ReservedAddress)>,
    /// Zone alternatives to release (claims that exist and belong to this reservation).
    pub release: Vec<String>,
    /// The record to write into the Pod's annotation (late binding).
    pub new_record: Option<Reservation>,
    /// The endpoint's desired `status.current` (owner fields filled by the executor if absent).
    pub endpoint: Option<PodIPAllocation>,
    /// Warnings.
    pub warnings: Vec<Warning>,
    /// Late binding resolved the zones.
    pub late_bound: bool,
}

impl BindPlan {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.settle.is_empty()
            && self.take_back.is_empty()
            && self.recreate.is_empty()
            && self.release.is_empty()
            && self.new_record.is_none()
            && self.endpoint.is_none()
            && self.warnings.is_empty()
    }
}

/// Binding for a live, not terminal Pod carrying a reservation: zone alternatives are resolved
/// once the node is known, and the endpoint matches (addresses, node, owned by the Pod). The
/// claims are not written, except to settle the zone alternative kept.
///
/// `claims` are the claims named in the record (absent ones missing from the map); `node` the
/// Pod's node, when it has one and the node exists.
pub fn plan_binding(
    pod: &PodView,
    claims: &BTreeMap<String, SpiderIPClaim>,
    endpoint: Option<&SpiderEndpoint>,
    pools: &BTreeMap<String, Pool>,
    node: Option<&NodeInfo>,
) -> BindPlan {
    let mut plan = BindPlan::default();
    let Some(record) = pod.reservation.as_ref() else {
        return plan;
    };
    // The annotation only ever points at claims: a claim is this Pod's when it was made for
    // this reservation, in this namespace (the webhook mints the id per admission and replaces
    // any record a new Pod brings; after creation only the operator may change it). Nothing is
    // released or recorded on the annotation's word alone.
    let owns =
        |c: &SpiderIPClaim| c.spec.reservation == record.id && c.spec.namespace == pod.namespace;
    let mut kept = record.clone();
    if record.is_provisional() {
        if let (Some(_), Some(node)) = (pod.node.as_ref(), node) {
            match record.resolve_for_node(pools, node) {
                Some((k, released)) => {
                    for a in released {
                        let n = a.claim_name();
                        if claims.get(&n).is_some_and(owns) {
                            plan.release.push(n);
                        }
                    }
                    plan.new_record = Some(k.clone());
                    plan.late_bound = true;
                    kept = k;
                }
                None => plan.warnings.push(Warning {
                    reason: "NoZoneServesNode",
                    note: format!(
                        "none of the addresses reserved for this Pod ({record}) comes from a pool that serves node {}; the Pod gets no address",
                        node.name
                    ),
                }),
            }
        }
    }
    let settled = !kept.is_provisional();
    // Addresses the endpoint already gives this Pod (written by the webhook or the operator,
    // never by users): a claim of one of them that went missing is recreated, since the Pod
    // may be using the address.
    let recorded: Vec<String> = endpoint
        .and_then(|e| e.status.as_ref())
        .filter(|s| s.current.uid == pod.uid)
        .map(|s| {
            s.current
                .ips
                .iter()
                .flat_map(|d| d.ipv4.iter().chain(d.ipv6.iter()))
                .map(|a| a.split('/').next().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default();
    let mut disowned: Vec<ReservedAddress> = Vec::new();
    for a in kept.addresses() {
        let n = a.claim_name();
        match claims.get(&n) {
            None if recorded.contains(&a.address.to_string()) => plan.recreate.push((n, a.clone())),
            None => {
                plan.warnings.push(Warning {
                    reason: "ClaimMissing",
                    note: format!(
                        "address {} of pool {} is named by the Pod's {} annotation but no claim holds it for this Pod; it is not given to the Pod",
                        a.address, a.pool, ANNO_RESERVATION
                    ),
                });
                disowned.push(a.clone());
            }
            Some(c) if !owns(c) && kept_for(c, pod) => {
                // This Pod's address, kept for its name by its StatefulSet, stranded under the
                // id of an admission of the same name that lost the race for the name (its Pod
                // was never stored): no other Pod can hold it, the claim comes back.
                plan.take_back.push((n, c.spec.reservation.clone()));
                if settled && c.spec.provisional {
                    plan.settle.push(a.claim_name());
                }
            }
            Some(c) if !owns(c) => {
                plan.warnings.push(Warning {
                    reason: "AddressTaken",
                    note: format!(
                        "address {} of pool {} is held by reservation {}, not this Pod's {}",
                        a.address, a.pool, c.spec.reservation, record.id
                    ),
                });
                disowned.push(a.clone());
            }
            Some(c) => {
                if settled && c.spec.provisional {
                    plan.settle.push(n);
                }
            }
        }
    }
    // Only what the Pod holds goes into its endpoint.
    for i in &mut kept.interfaces {
        i.ipv4.retain(|a| !disowned.contains(a));
        i.ipv6.retain(|a| !disowned.contains(a));
    }
    kept.interfaces
        .retain(|i| !i.ipv4.is_empty() || !i.ipv6.is_empty());
    let ips = if settled {
        match kept.details(pools, &pod.routes) {
            Ok(d) => endpoint_ips(&d),
            Err(e) => {
                plan.warnings.push(Warning {
                    reason: "EndpointIncomplete",
                    note: e.to_string(),
                });
                Vec::new()
            }
        }
    } else {
        Vec::new()
    };
    let current = endpoint.and_then(|e| e.status.as_ref()).map(|s| &s.current);
    // Not scheduled yet: the node the webhook recorded (a DaemonSet Pod's pinned node) stands.
    let recorded_node = current
        .filter(|c| c.uid == pod.uid && !c.node.is_empty())
        .map(|c| c.node.clone());
    let desired = PodIPAllocation {
        uid: pod.uid.clone(),
        node: pod.node.clone().or(recorded_node).unwrap_or_default(),
        ips,
    };
    // The webhook writes the endpoint before the Pod is stored, so without the Pod as owner;
    // the operator adds it with the node once the Pod is scheduled (one write), or alone for a
    // Pod created on its node, whose endpoint needs nothing else.
    let owned = endpoint.is_some_and(|e| {
        e.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|r| r.uid == pod.uid)
    });
    if current != Some(&desired) || (!owned && pod.node.is_some()) {
        plan.endpoint = Some(desired);
    }
    plan
}

/// Whether `c` is an address a StatefulSet keeps for `pod`'s name: same namespace and name, and
/// the claim's owner is the StatefulSet that controls the Pod. Names are unique in a namespace,
/// so while `pod` lives no other Pod can hold such a claim.
fn kept_for(c: &SpiderIPClaim, pod: &PodView) -> bool {
    c.spec.namespace == pod.namespace
        && c.spec.pod_name.as_deref() == Some(pod.name.as_str())
        && c.spec.owner.as_ref().is_some_and(|o| {
            o.kind == STATEFUL_SET
                && pod
                    .controller
                    .as_ref()
                    .is_some_and(|(k, n)| k == STATEFUL_SET && *n == o.name)
        })
}

/// The endpoint status to write: the desired allocation, keeping owner fields already there.
pub fn endpoint_status(
    current: Option<&WorkloadEndpointStatus>,
    desired: PodIPAllocation,
    owner: (&str, &str),
) -> WorkloadEndpointStatus {
    match current {
        Some(c) if !c.owner_controller_type.is_empty() => WorkloadEndpointStatus {
            current: desired,
            owner_controller_type: c.owner_controller_type.clone(),
            owner_controller_name: c.owner_controller_name.clone(),
        },
        _ => WorkloadEndpointStatus {
            current: desired,
            owner_controller_type: owner.0.to_string(),
            owner_controller_name: owner.1.to_string(),
        },
    }
}

/// Pool counters: claims per pool.
pub fn allocated_per_pool<'a, I>(claims: I) -> BTreeMap<String, i64>
where
    I: IntoIterator<Item = &'a SpiderIPClaim>,
{
    let mut out = BTreeMap::new();
    for c in claims {
        *out.entry(c.spec.pool.clone()).or_insert(0) += 1;
    }
    out
}

/// SpiderSubnet counters: (allocated, total). `total` counts the subnet's addresses that pools
/// may take (`ips` within the host addresses, minus `excludeIPs` and the gateway); `allocated`
/// counts those of them that pools of the same CIDR hold in their `ips`.
pub fn subnet_counts<'a, I>(subnet: &aipam_core::validate::Subnet, pools: I) -> (i64, i64)
where
    I: IntoIterator<Item = &'a Pool>,
{
    let mut as_pool = Pool::new(&subnet.name, subnet.subnet, subnet.ips.clone());
    as_pool.exclude_ips = subnet.exclude_ips.clone();
    as_pool.gateway = subnet.gateway;
    let available = as_pool.allocatable(&aipam_core::ranges::IpSet::new());
    let mut taken = aipam_core::ranges::IpSet::new();
    for p in pools.into_iter().filter(|p| p.subnet == subnet.subnet) {
        if let Ok(u) = taken.union(&p.ips.intersection(&available)) {
            taken = u;
        }
    }
    let n = |x: u128| i64::try_from(x).unwrap_or(i64::MAX);
    (n(taken.len()), n(available.len()))
}

/// Addresses held twice (by two claims): must always be empty — claim names are derived from
/// (pool, address), so the API server's uniqueness of names makes this impossible within a
/// pool; across pools, validation forbids overlaps.
pub fn held_twice<'a, I>(claims: I) -> Vec<String>
where
    I: IntoIterator<Item = &'a SpiderIPClaim>,
{
    let mut seen = BTreeSet::new();
    let mut dup = Vec::new();
    for c in claims {
        if !seen.insert(c.spec.address.clone()) {
            dup.push(c.spec.address.clone());
        }
    }
    dup
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
