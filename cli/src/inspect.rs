//! `aipamctl inspect POD`: the selection trace for one live Pod — which rule chose which pools,
//! why each other pool was excluded — and what the Pod holds now (claims, endpoint), with the
//! collector's verdict on each claim.
//!
//! The trace is `aipam_core::select::select` (the webhook's own selection) fed with the live
//! objects. The addresses the Pod holds are not counted as used, so that its own pools are not
//! reported full because of it; the node is the one the Pod runs on (or none while unscheduled,
//! in which case zone pools show as alternatives, as at admission).

use std::collections::BTreeMap;

use aipam_core::annotations::ANNO_IPPOOL;
use aipam_core::model::{NodeInfo, Owner, PodInfo};
use aipam_core::network::pod_interfaces;
use aipam_core::ranges::IpFamily;
use aipam_core::reservation::{Reservation, ANNO_RESERVATION, ANNO_SKIP};
use aipam_core::select::{select, SelectionInput};
use aipam_crds::record::used_by_pool;
use aipam_crds::SpiderIPClaim;
use aipam_rules::claims::{judge_claim, ClaimVerdict};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cluster::Snapshot;
use crate::status::{rules, world};
use crate::table::table;

/// A pool that can serve the interface, in the order the webhook tries them.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CandidateTrace {
    /// Pool.
    pub pool: String,
    /// Bound to nodes (a zone pool): with no node known, one address is reserved in each.
    pub zone: bool,
    /// Free addresses, not counting this Pod's own.
    pub free: u128,
}

/// A pool the rule named that cannot serve, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExclusionTrace {
    /// Pool.
    pub pool: String,
    /// Why, in the webhook's words.
    pub reason: String,
}

/// One family of one interface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FamilyTrace {
    /// 4 or 6.
    pub version: u8,
    /// Pools that can serve, in order.
    pub candidates: Vec<CandidateTrace>,
    /// Pools excluded, with why.
    pub excluded: Vec<ExclusionTrace>,
    /// The SpiderSubnet auto-pool, when the subnet annotation chose.
    pub auto_pool: Option<String>,
}

/// One interface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InterfaceTrace {
    /// Interface name.
    pub interface: String,
    /// Multus network, when not the cluster's own.
    pub network: Option<String>,
    /// The rule that supplied the pools.
    pub rule: String,
    /// Per family.
    pub families: Vec<FamilyTrace>,
}

/// One claim the Pod holds.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HeldClaim {
    /// Claim name.
    pub claim: String,
    /// Interface.
    pub interface: String,
    /// Pool.
    pub pool: String,
    /// Address.
    pub address: String,
    /// `Reserved` or `Bound`.
    pub phase: String,
    /// A zone alternative not yet resolved.
    pub provisional: bool,
    /// What the collector will do with it.
    pub outcome: String,
}

/// One interface of the Pod's SpiderEndpoint.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct EndpointAddress {
    /// Interface.
    pub interface: String,
    /// IPv4 with prefix length, and its pool.
    pub ipv4: Option<String>,
    /// IPv6 with prefix length, and its pool.
    pub ipv6: Option<String>,
}

/// The whole inspection.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Inspection {
    /// Namespace.
    pub namespace: String,
    /// Pod.
    pub pod: String,
    /// Node the Pod runs on.
    pub node: Option<String>,
    /// The Pod's top controller, as `Kind/name`.
    pub owner: Option<String>,
    /// The reservation id of its annotation.
    pub reservation: Option<String>,
    /// Why the Pod is not served by this IPAM at all, when so.
    pub not_served: Option<String>,
    /// The trace per interface (empty when refused or not served).
    pub interfaces: Vec<InterfaceTrace>,
    /// Why a Pod like this one would be refused now, when so.
    pub refused: Option<String>,
    /// Notes from the selection (ignored annotations...).
    pub notes: Vec<String>,
    /// Claims held.
    pub claims: Vec<HeldClaim>,
    /// Its SpiderEndpoint, when it has one.
    pub endpoint: Option<Vec<EndpointAddress>>,
}

fn claim_is_pods(c: &SpiderIPClaim, pod: &Pod, reservation: Option<&str>) -> bool {
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    c.spec.namespace == ns && Some(c.spec.reservation.as_str()) == reservation
}

/// Builds the inspection of `pod` from a snapshot; `owner` is its top controller by the
/// webhook's rule, [`aipam_rules::owner::top_owner`] (ReplicaSet → Deployment, Job → CronJob).
pub fn inspect(s: &Snapshot, pod: &Pod, owner: Option<Owner>, now: Timestamp) -> Inspection {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let annotations: BTreeMap<String, String> =
        pod.metadata.annotations.clone().unwrap_or_default();
    let reservation = annotations
        .get(ANNO_RESERVATION)
        .and_then(|v| Reservation::parse(v).ok())
        .map(|r| r.id);
    let node_name = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .filter(|n| !n.is_empty());
    let mut out = Inspection {
        namespace: namespace.clone(),
        pod: name.clone(),
        node: node_name.clone(),
        owner: owner.as_ref().map(|o| format!("{}/{}", o.kind, o.name)),
        reservation: reservation.clone(),
        not_served: None,
        interfaces: Vec::new(),
        refused: None,
        notes: Vec::new(),
        claims: Vec::new(),
        endpoint: None,
    };

    // What it holds.
    let rules_ = s
        .ipam_config()
        .map(|c| rules(&c))
        .unwrap_or_else(|_| rules(&Default::default()));
    let world = world(s);
    let mut own: Vec<&SpiderIPClaim> = s
        .claims
        .iter()
        .filter(|c| claim_is_pods(c, pod, reservation.as_deref()))
        .collect();
    own.sort_by(|a, b| {
        (&a.spec.interface, &a.metadata.name).cmp(&(&b.spec.interface, &b.metadata.name))
    });
    for c in &own {
        let outcome = match judge_claim(c, &world, now, &rules_) {
            ClaimVerdict::Keep => "kept".to_string(),
            ClaimVerdict::KeepUntil(t) => format!("released at {t} unless its Pod appears"),
            ClaimVerdict::Delete { why, .. } => {
                format!("released at the next scan ({})", why.label())
            }
        };
        out.claims.push(HeldClaim {
            claim: c.metadata.name.clone().unwrap_or_default(),
            interface: c.spec.interface.clone(),
            pool: c.spec.pool.clone(),
            address: c.spec.address.clone(),
            // Derived: the claim itself is written once and has no phase.
            phase: "Bound".to_string(),
            provisional: c.spec.provisional,
            outcome,
        });
    }
    out.endpoint = s
        .endpoints
        .iter()
        .find(|e| {
            e.metadata.namespace.as_deref() == Some(namespace.as_str())
                && e.metadata.name.as_deref() == Some(name.as_str())
        })
        .and_then(|e| e.status.as_ref())
        .map(|st| {
            st.current
                .ips
                .iter()
                .map(|i| EndpointAddress {
                    interface: i.nic.clone(),
                    ipv4: i
                        .ipv4
                        .as_ref()
                        .map(|a| format!("{a} ({})", i.ipv4_pool.as_deref().unwrap_or("?"))),
                    ipv6: i
                        .ipv6
                        .as_ref()
                        .map(|a| format!("{a} ({})", i.ipv6_pool.as_deref().unwrap_or("?"))),
                })
                .collect()
        });

    // Not served at all?
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.host_network == Some(true) {
        out.not_served = Some("hostNetwork: the Pod uses the node's addresses".to_string());
        return out;
    }
    if annotations.get(ANNO_SKIP).map(String::as_str) == Some("true") {
        out.not_served = Some(format!("annotation {ANNO_SKIP}: \"true\""));
        return out;
    }
    let ns_info = s.namespace_info(&namespace);
    if ns_info
        .labels
        .get(aipam_core::reservation::LABEL_NAMESPACE_IPAM)
        .map(String::as_str)
        == Some("disabled")
    {
        out.not_served = Some(format!(
            "namespace label {}: disabled",
            aipam_core::reservation::LABEL_NAMESPACE_IPAM
        ));
        return out;
    }
    let interfaces = match pod_interfaces(&namespace, &annotations, true, |ns, n| {
        s.networks.get(&(ns.to_string(), n.to_string())).cloned()
    }) {
        Ok(i) => i,
        Err(e) => {
            out.refused = Some(e.to_string());
            return out;
        }
    };
    if interfaces.is_empty() {
        out.not_served = Some("no interface of the Pod uses this IPAM".to_string());
        return out;
    }

    // The selection, as the webhook makes it.
    let config = match s.ipam_config() {
        Ok(c) => c,
        Err(e) => {
            out.refused = Some(e.to_string());
            return out;
        }
    };
    let (pools, _) = s.core_pools();
    let nodes = s.core_nodes();
    let node: Option<NodeInfo> = node_name.as_ref().map(|n| {
        nodes
            .iter()
            .find(|x| x.name == *n)
            .cloned()
            .unwrap_or(NodeInfo {
                name: n.clone(),
                labels: BTreeMap::new(),
            })
    });
    let used = used_by_pool(
        s.claims
            .iter()
            .filter(|c| !claim_is_pods(c, pod, reservation.as_deref())),
    );
    let reserved_v4 = s.reserved_set(IpFamily::V4);
    let reserved_v6 = s.reserved_set(IpFamily::V6);
    let info = PodInfo {
        namespace: namespace.clone(),
        name: Some(name.clone()),
        labels: pod.metadata.labels.clone().unwrap_or_default(),
        annotations: annotations.clone(),
        node_name: node_name.clone(),
        owner,
    };
    let selection = select(&SelectionInput {
        pod: &info,
        namespace: &ns_info,
        node: node.as_ref(),
        nodes: if nodes.is_empty() { None } else { Some(&nodes) },
        interfaces: &interfaces,
        config: &config,
        pools: &pools,
        used: &used,
        reserved_v4: &reserved_v4,
        reserved_v6: &reserved_v6,
    });
    match selection {
        Err(r) => out.refused = Some(r.to_string()),
        Ok(sel) => {
            out.notes = sel.notes.clone();
            for is in &sel.interfaces {
                out.interfaces.push(InterfaceTrace {
                    interface: is.interface.clone(),
                    network: is.network.clone(),
                    rule: is.rule.to_string(),
                    families: is
                        .families
                        .iter()
                        .map(|fs| FamilyTrace {
                            version: fs.family.version(),
                            candidates: fs
                                .candidates
                                .iter()
                                .map(|c| {
                                    let free = pools.get(&c.pool).map_or(0, |p| {
                                        let reserved = if p.family == IpFamily::V4 {
                                            &reserved_v4
                                        } else {
                                            &reserved_v6
                                        };
                                        let all = p.allocatable(reserved);
                                        let taken = used
                                            .get(&c.pool)
                                            .map_or(0, |u| all.intersection(u).len());
                                        all.len().saturating_sub(taken)
                                    });
                                    CandidateTrace {
                                        pool: c.pool.clone(),
                                        zone: c.zone,
                                        free,
                                    }
                                })
                                .collect(),
                            excluded: fs
                                .excluded
                                .iter()
                                .map(|e| ExclusionTrace {
                                    pool: e.pool.clone(),
                                    reason: e.reason.to_string(),
                                })
                                .collect(),
                            auto_pool: fs.auto_pool.as_ref().map(|a| {
                                format!(
                                    "{} ({} address(es) from SpiderSubnet {})",
                                    a.pool, a.desired_ips, a.subnet
                                )
                            }),
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// Renders the inspection for a human.
pub fn render(i: &Inspection) -> String {
    let mut out = format!("Pod {}/{}\n", i.namespace, i.pod);
    out.push_str(&format!(
        "  node:        {}\n",
        i.node.as_deref().unwrap_or("<not scheduled>")
    ));
    out.push_str(&format!(
        "  controller:  {}\n",
        i.owner.as_deref().unwrap_or("<none>")
    ));
    out.push_str(&format!(
        "  reservation: {}\n",
        i.reservation.as_deref().unwrap_or("<none>")
    ));
    if let Some(n) = &i.not_served {
        out.push_str(&format!("\nNot served by this IPAM: {n}\n"));
    }
    if !i.interfaces.is_empty() {
        out.push_str(&format!(
            "\nSELECTION (the webhook's rules on the live objects, {}; this Pod's own addresses not counted as used)\n",
            match &i.node {
                Some(n) => format!("for node {n}"),
                None => "no node known, as at admission".to_string(),
            }
        ));
    }
    for it in &i.interfaces {
        out.push_str(&format!(
            "interface {}{}: pools from {}\n",
            it.interface,
            it.network
                .as_ref()
                .map(|n| format!(" (network {n})"))
                .unwrap_or_default(),
            it.rule
        ));
        for f in &it.families {
            if let Some(a) = &f.auto_pool {
                out.push_str(&format!("  IPv{}: auto-pool {a}\n", f.version));
            }
            for (n, c) in f.candidates.iter().enumerate() {
                out.push_str(&format!(
                    "  IPv{} candidate {}: {} ({} free{})\n",
                    f.version,
                    n + 1,
                    c.pool,
                    c.free,
                    if c.zone { ", zone pool" } else { "" }
                ));
            }
            for e in &f.excluded {
                out.push_str(&format!(
                    "  IPv{} excluded:    {}: {}\n",
                    f.version, e.pool, e.reason
                ));
            }
        }
    }
    if let Some(r) = &i.refused {
        out.push_str(&format!(
            "\nA Pod like this one would be refused now:\n  {}\n",
            r.replace('\n', "\n  ")
        ));
    }
    for n in &i.notes {
        out.push_str(&format!("note: {n}\n"));
    }
    out.push_str("\nHOLDS\n");
    if i.claims.is_empty() {
        out.push_str(&format!(
            "no SpiderIPClaim (a Pod of a namespace served by the webhook gets its addresses at admission; see {ANNO_IPPOOL})\n"
        ));
    } else {
        let mut rows = vec![[
            "CLAIM",
            "INTERFACE",
            "POOL",
            "ADDRESS",
            "PHASE",
            "ZONE-ALTERNATIVE",
            "OUTCOME",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()];
        for c in &i.claims {
            rows.push(vec![
                c.claim.clone(),
                c.interface.clone(),
                c.pool.clone(),
                c.address.clone(),
                c.phase.clone(),
                if c.provisional { "yes" } else { "no" }.to_string(),
                c.outcome.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }
    match &i.endpoint {
        None => out.push_str("no SpiderEndpoint yet (written when the Pod is bound)\n"),
        Some(ips) if ips.is_empty() => out
            .push_str("SpiderEndpoint: no address yet (written when the Pod is bound to a node)\n"),
        Some(ips) => {
            out.push_str("SpiderEndpoint:\n");
            for e in ips {
                out.push_str(&format!(
                    "  {}: {}\n",
                    e.interface,
                    [e.ipv4.clone(), e.ipv6.clone()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
    }
    out
}
