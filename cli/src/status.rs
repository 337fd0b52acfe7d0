//! `aipamctl status`: pools with used/free/total, endpoints per namespace, claims no Pod holds
//! (no live Pod of their namespace carries their reservation id), and what the operator's collector will reclaim — from one snapshot of the
//! cluster, judged with the operator's own rules (the `aipam-rules` crate).

use std::collections::BTreeMap;

use aipam_core::config::IpamConfig;
use aipam_core::ranges::IpFamily;
use aipam_crds::SpiderIPClaim;
use aipam_rules::claims::{holder, judge_claim, ClaimVerdict, Why};
use aipam_rules::endpoints::{judge_endpoint, EndpointVerdict};
use aipam_rules::world::{PodView, Rules, World};
use k8s_openapi::jiff::Timestamp;
use serde::Serialize;

use crate::cluster::Snapshot;
use crate::table::{bar, table};

/// One pool.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolStatus {
    /// Name.
    pub name: String,
    /// 4 or 6, when known.
    pub version: Option<u8>,
    /// `spec.subnet`.
    pub subnet: String,
    /// Addresses the pool can hand out (its IPs in the subnet, minus excludeIPs, the gateway
    /// and SpiderReservedIPs).
    pub total: u128,
    /// Addresses held by SpiderIPClaims (the live count).
    pub used: u128,
    /// Of which held by a live Pod (a Pod of the claim's namespace carries its reservation id).
    pub held: u128,
    /// `total - used`.
    pub free: u128,
    /// `status.allocatedIPCount` as the operator last wrote it.
    pub status_allocated: Option<i64>,
    /// `status.totalIPCount` as the operator last wrote it.
    pub status_total: Option<i64>,
    /// `spec.default`.
    pub default: bool,
    /// `spec.disable`.
    pub disabled: bool,
}

/// SpiderEndpoints of one namespace.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceEndpoints {
    /// Namespace.
    pub namespace: String,
    /// SpiderEndpoints (one per Pod holding addresses).
    pub endpoints: usize,
    /// IPv4 addresses they record.
    pub ipv4: usize,
    /// IPv6 addresses they record.
    pub ipv6: usize,
}

/// One claim no live Pod holds: its Pod is not stored yet, is gone, or is a StatefulSet's
/// next Pod to come.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Unheld {
    /// Claim name.
    pub claim: String,
    /// Pool.
    pub pool: String,
    /// Address.
    pub address: String,
    /// Namespace of the Pod.
    pub namespace: String,
    /// Name of the Pod, when known.
    pub pod: Option<String>,
    /// Interface.
    pub interface: String,
    /// A zone alternative.
    pub provisional: bool,
    /// Seconds since it was created.
    pub age_seconds: Option<i64>,
    /// What the collector will do with it.
    pub outcome: String,
}

/// Something the collector will delete.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Reclaim {
    /// `SpiderIPClaim` or `SpiderEndpoint`.
    pub kind: String,
    /// Object name (`namespace/name` for endpoints).
    pub name: String,
    /// Pool and address, for claims.
    pub address: Option<String>,
    /// The operator's reason label (as in its metrics and events).
    pub reason: String,
    /// In words.
    pub detail: String,
    /// Deleted at the next scan (`null`) or not before this time (RFC 3339) unless its Pod
    /// appears.
    pub not_before: Option<String>,
}

/// The whole status.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Pools by name.
    pub pools: Vec<PoolStatus>,
    /// Endpoints per namespace.
    pub endpoints: Vec<NamespaceEndpoints>,
    /// Claims no live Pod holds.
    pub unheld: Vec<Unheld>,
    /// What the collector will delete.
    pub reclaim: Vec<Reclaim>,
    /// Inconsistencies worth a look (counters that disagree with the claims, claims of pools
    /// that do not exist, invalid pools).
    pub warnings: Vec<String>,
    /// The grace period used for reservations whose Pod has not appeared, in seconds.
    pub grace_seconds: i64,
}

/// The collector's rules as the operator derives them from `spiderpool-conf`.
pub fn rules(config: &IpamConfig) -> Rules {
    Rules::from_config(config)
}

/// The world the collector judges, from a snapshot. Pods seen deleted are unknown to a
/// one-shot reader, so absent Pods fall under the grace period as after an operator restart.
pub fn world(s: &Snapshot) -> World {
    let mut w = World::new(s.pods.iter().filter_map(PodView::from_pod).collect());
    w.note_stateful_sets(&s.stateful_sets);
    w.note_nodes(&s.nodes);
    w.note_endpoints(&s.endpoints);
    w
}

fn why_words(why: Why) -> &'static str {
    match why {
        Why::NeverAppeared => "no Pod ever carried this reservation within the grace period",
        Why::PodGone => "its Pod is gone",
        Why::PodTerminal => "its Pod has Succeeded or Failed",
        Why::StuckTerminating => "its stateless Pod is stuck Terminating past its grace period",
        Why::ZoneAlternative => "a zone alternative its Pod did not need once its node was known",
        Why::StatefulSetScaledDown => "its StatefulSet no longer wants that ordinal",
        Why::StatefulSetGone => "its StatefulSet is gone",
    }
}

fn claim_name(c: &SpiderIPClaim) -> String {
    c.metadata.name.clone().unwrap_or_default()
}

fn age(c: &SpiderIPClaim, now: Timestamp) -> Option<i64> {
    c.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| now.duration_since(t.0).as_secs())
}

/// Builds the status from a snapshot at time `now`.
pub fn status(s: &Snapshot, now: Timestamp) -> Status {
    let mut warnings = Vec::new();
    let config = match s.ipam_config() {
        Ok(c) => c,
        Err(e) => {
            warnings.push(format!("{e}; using the defaults"));
            let defaults = IpamConfig::default();
            IpamConfig {
                reservation_grace_seconds: s
                    .grace_override
                    .unwrap_or(defaults.reservation_grace_seconds),
                ..defaults
            }
        }
    };
    let rules = rules(&config);
    let world = world(s);
    let (core_pools, invalid) = s.core_pools();
    for (name, e) in &invalid {
        warnings.push(format!("pool {name} is invalid and serves nobody: {e}"));
    }
    let reserved_v4 = s.reserved_set(IpFamily::V4);
    let reserved_v6 = s.reserved_set(IpFamily::V6);

    let mut used: BTreeMap<&str, (u128, u128)> = BTreeMap::new();
    for c in &s.claims {
        let e = used.entry(c.spec.pool.as_str()).or_default();
        e.0 += 1;
        if holder(c, &world).is_some() {
            e.1 += 1;
        }
    }
    let mut pools = Vec::new();
    for p in &s.pools {
        let name = p.metadata.name.clone().unwrap_or_default();
        let core = core_pools.get(&name);
        let total = match core {
            Some(cp) => cp.allocatable(if cp.family == IpFamily::V4 {
                &reserved_v4
            } else {
                &reserved_v6
            }),
            None => aipam_core::ranges::IpSet::new(),
        }
        .len();
        let (n_used, n_held) = used.get(name.as_str()).copied().unwrap_or_default();
        let st = p.status.as_ref();
        let status_allocated = st.and_then(|x| x.allocated_ip_count);
        if status_allocated.unwrap_or(0) != i64::try_from(n_used).unwrap_or(i64::MAX) {
            warnings.push(format!(
                "pool {name}: status.allocatedIPCount is {} but {n_used} SpiderIPClaim(s) hold its addresses (the operator recounts within a second; a lasting difference means it is not running)",
                status_allocated.map_or("unset".to_string(), |v| v.to_string())
            ));
        }
        pools.push(PoolStatus {
            version: core.map(|c| c.family.version()).or(p.spec.ip_version()),
            subnet: p.spec.subnet.clone(),
            total,
            used: n_used,
            held: n_held,
            free: total.saturating_sub(n_used),
            status_allocated,
            status_total: st.and_then(|x| x.total_ip_count),
            default: p.spec.is_default(),
            disabled: p.spec.is_disabled(),
            name,
        });
    }
    pools.sort_by(|a, b| a.name.cmp(&b.name));
    for (pool, (n, _)) in &used {
        if !pools.iter().any(|p| p.name == *pool) {
            warnings.push(format!(
                "{n} SpiderIPClaim(s) name pool {pool}, which does not exist"
            ));
        }
    }

    let mut per_ns: BTreeMap<String, NamespaceEndpoints> = BTreeMap::new();
    for ep in &s.endpoints {
        let ns = ep.metadata.namespace.clone().unwrap_or_default();
        let e = per_ns
            .entry(ns.clone())
            .or_insert_with(|| NamespaceEndpoints {
                namespace: ns,
                endpoints: 0,
                ipv4: 0,
                ipv6: 0,
            });
        e.endpoints += 1;
        if let Some(st) = &ep.status {
            e.ipv4 += st.current.ips.iter().filter(|i| i.ipv4.is_some()).count();
            e.ipv6 += st.current.ips.iter().filter(|i| i.ipv6.is_some()).count();
        }
    }

    let mut unheld = Vec::new();
    let mut reclaim = Vec::new();
    let mut claims: Vec<&SpiderIPClaim> = s.claims.iter().collect();
    claims.sort_by_key(|c| claim_name(c));
    for c in claims {
        let verdict = judge_claim(c, &world, now, &rules);
        let address = format!("{} {}", c.spec.pool, c.spec.address);
        let outcome = match verdict {
            ClaimVerdict::Keep if holder(c, &world).is_some() => "kept: its Pod exists".to_string(),
            ClaimVerdict::Keep => "kept for the StatefulSet's next Pod of that name".to_string(),
            ClaimVerdict::KeepUntil(t) => {
                // An endpoint names the reservation: its Pod was admitted, and is gone now
                // (or not in the API server's list yet).
                let appeared = world.endpoint_reservations.contains(&c.spec.reservation);
                let (why, detail) = if appeared {
                    (Why::PodGone, "its Pod was admitted (its SpiderEndpoint names the reservation) and no Pod carries the reservation now")
                } else {
                    (Why::NeverAppeared, "no Pod carries this reservation yet")
                };
                reclaim.push(Reclaim {
                    kind: "SpiderIPClaim".to_string(),
                    name: claim_name(c),
                    address: Some(address.clone()),
                    reason: why.label().to_string(),
                    detail: format!(
                        "{detail}; released unless one appears within the grace period ({} s)",
                        rules.grace.as_secs()
                    ),
                    not_before: Some(t.to_string()),
                });
                format!("released at {t} unless its Pod appears")
            }
            ClaimVerdict::Delete { why, .. } => {
                reclaim.push(Reclaim {
                    kind: "SpiderIPClaim".to_string(),
                    name: claim_name(c),
                    address: Some(address.clone()),
                    reason: why.label().to_string(),
                    detail: why_words(why).to_string(),
                    not_before: None,
                });
                format!("released at the next scan: {}", why_words(why))
            }
        };
        if holder(c, &world).is_none() {
            unheld.push(Unheld {
                claim: claim_name(c),
                pool: c.spec.pool.clone(),
                address: c.spec.address.clone(),
                namespace: c.spec.namespace.clone(),
                pod: c.spec.pod_name.clone(),
                interface: c.spec.interface.clone(),
                provisional: c.spec.provisional,
                age_seconds: age(c, now),
                outcome,
            });
        }
    }
    for ep in &s.endpoints {
        let name = format!(
            "{}/{}",
            ep.metadata.namespace.as_deref().unwrap_or_default(),
            ep.metadata.name.as_deref().unwrap_or_default()
        );
        match judge_endpoint(ep, &world, now, &rules) {
            EndpointVerdict::Keep => {}
            EndpointVerdict::KeepUntil(t) => reclaim.push(Reclaim {
                kind: "SpiderEndpoint".to_string(),
                name,
                address: None,
                reason: "pod_absent".to_string(),
                detail: "no Pod of this name exists; deleted unless one appears".to_string(),
                not_before: Some(t.to_string()),
            }),
            EndpointVerdict::Delete { .. } => reclaim.push(Reclaim {
                kind: "SpiderEndpoint".to_string(),
                name,
                address: None,
                reason: "pod_gone".to_string(),
                detail: "its Pod is gone or finished".to_string(),
                not_before: None,
            }),
        }
    }

    Status {
        pools,
        endpoints: per_ns.into_values().collect(),
        unheld,
        reclaim,
        warnings,
        grace_seconds: rules.grace.as_secs(),
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_string(), |x| x.to_string())
}

fn header(cols: &[&str]) -> Vec<String> {
    cols.iter().map(|s| s.to_string()).collect()
}

/// Renders the status as tables.
pub fn render(s: &Status) -> String {
    let mut out = String::from("POOLS\n");
    let mut rows = vec![header(&[
        "NAME", "VERSION", "SUBNET", "USED", "FREE", "TOTAL", "USAGE", "FLAGS",
    ])];
    for p in &s.pools {
        let mut flags = Vec::new();
        if p.default {
            flags.push("default");
        }
        if p.disabled {
            flags.push("disabled");
        }
        rows.push(vec![
            p.name.clone(),
            opt(p.version),
            p.subnet.clone(),
            p.used.to_string(),
            p.free.to_string(),
            p.total.to_string(),
            bar(p.used, p.total),
            if flags.is_empty() {
                "-".to_string()
            } else {
                flags.join(",")
            },
        ]);
    }
    out.push_str(&table(&rows));

    out.push_str("\nENDPOINTS PER NAMESPACE\n");
    if s.endpoints.is_empty() {
        out.push_str("(none)\n");
    } else {
        let mut rows = vec![header(&["NAMESPACE", "ENDPOINTS", "IPV4", "IPV6"])];
        for e in &s.endpoints {
            rows.push(vec![
                e.namespace.clone(),
                e.endpoints.to_string(),
                e.ipv4.to_string(),
                e.ipv6.to_string(),
            ]);
        }
        out.push_str(&table(&rows));
    }

    out.push_str("\nCLAIMS NO LIVE POD HOLDS\n");
    if s.unheld.is_empty() {
        out.push_str("(none)\n");
    } else {
        let mut rows = vec![header(&[
            "CLAIM",
            "NAMESPACE",
            "POD",
            "INTERFACE",
            "ZONE-ALTERNATIVE",
            "AGE",
            "OUTCOME",
        ])];
        for u in &s.unheld {
            rows.push(vec![
                u.claim.clone(),
                u.namespace.clone(),
                opt(u.pod.clone()),
                u.interface.clone(),
                if u.provisional { "yes" } else { "no" }.to_string(),
                u.age_seconds.map_or("-".to_string(), |a| format!("{a}s")),
                u.outcome.clone(),
            ]);
        }
        out.push_str(&table(&rows));
    }

    out.push_str(&format!(
        "\nTO BE RECLAIMED BY THE COLLECTOR (grace period {} s)\n",
        s.grace_seconds
    ));
    if s.reclaim.is_empty() {
        out.push_str("(nothing)\n");
    } else {
        let mut rows = vec![header(&["KIND", "NAME", "ADDRESS", "WHEN", "WHY"])];
        for r in &s.reclaim {
            rows.push(vec![
                r.kind.clone(),
                r.name.clone(),
                opt(r.address.clone()),
                r.not_before
                    .as_ref()
                    .map_or("next scan".to_string(), |t| format!("after {t}")),
                format!("{} ({})", r.detail, r.reason),
            ]);
        }
        out.push_str(&table(&rows));
    }
    if !s.warnings.is_empty() {
        out.push('\n');
        for w in &s.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
    }
    out
}
