//! `aipamctl free`: per pool, the free ranges and counts, and who holds each address in use.
//! Read from one snapshot ([`crate::cluster::Snapshot`]) and judged by pure functions.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use aipam_core::ranges::IpSet;
use aipam_crds::record::claim_address;
use aipam_rules::claims::holder;
use serde::Serialize;

use crate::cluster::Snapshot;
use crate::status::world;

/// One address in use.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Held {
    /// The address.
    pub address: String,
    /// The Pod holding it (`namespace/name`), when a live Pod carries the claim's reservation.
    pub pod: Option<String>,
    /// The Pod's interface.
    pub interface: String,
    /// The claim.
    pub claim: String,
    /// Why no Pod is named: a reservation waiting for its Pod, or kept for a StatefulSet name.
    pub note: Option<String>,
}

/// One pool's space.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpace {
    /// The pool.
    pub name: String,
    /// `spec.subnet`.
    pub subnet: String,
    /// Addresses it can hand out (ips minus excludeIPs, the gateway and SpiderReservedIPs).
    pub total: u128,
    /// Addresses held by claims.
    pub used: u128,
    /// `total - used` (claims on addresses outside the pool's range do not count).
    pub free: u128,
    /// The free addresses as ranges, in order.
    pub free_ranges: Vec<String>,
    /// Who holds what, by address.
    pub held: Vec<Held>,
    /// Why the pool hands nothing out, when it is invalid.
    pub invalid: Option<String>,
}

/// Every pool, or those named (in name order); names that match no pool are reported.
pub fn free(s: &Snapshot, only: &[String]) -> (Vec<PoolSpace>, Vec<String>) {
    let world = world(s);
    let (core, invalid) = s.core_pools();
    let wanted: BTreeSet<&str> = only.iter().map(String::as_str).collect();
    let mut out = Vec::new();
    for p in &s.pools {
        let name = p.metadata.name.clone().unwrap_or_default();
        if !wanted.is_empty() && !wanted.contains(name.as_str()) {
            continue;
        }
        let allocatable = match core.get(&name) {
            Some(cp) => cp.allocatable(&s.reserved_set(cp.family)),
            None => IpSet::new(),
        };
        let mut used = IpSet::new();
        let mut held = Vec::new();
        for c in s.claims.iter().filter(|c| c.spec.pool == name) {
            let Some(a) = claim_address(c) else { continue };
            if allocatable.contains(&a) {
                let _ = used.insert(a);
            }
            let pod = holder(c, &world).map(|p| format!("{}/{}", p.namespace, p.name));
            let note = match (&pod, &c.spec.pod_name) {
                (Some(_), _) => None,
                (None, Some(n)) => Some(format!(
                    "no live Pod carries reservation {} (Pod {}/{n} gone, or its name kept for a StatefulSet)",
                    c.spec.reservation, c.spec.namespace
                )),
                (None, None) => Some(format!(
                    "reservation {} waits for its Pod in namespace {}",
                    c.spec.reservation, c.spec.namespace
                )),
            };
            held.push((
                a,
                Held {
                    address: a.to_string(),
                    pod,
                    interface: c.spec.interface.clone(),
                    claim: c.metadata.name.clone().unwrap_or_default(),
                    note,
                },
            ));
        }
        held.sort_by_key(|(a, _)| *a);
        let free = allocatable.difference(&used);
        out.push(PoolSpace {
            subnet: p.spec.subnet.clone(),
            total: allocatable.len(),
            used: used.len(),
            free: free.len(),
            free_ranges: free.ranges().map(|r| r.to_string()).collect(),
            held: held.into_iter().map(|(_, h)| h).collect(),
            invalid: invalid
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, e)| e.clone()),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let unknown = only
        .iter()
        .filter(|n| !out.iter().any(|p| &p.name == *n))
        .cloned()
        .collect();
    (out, unknown)
}

/// The view for people.
pub fn render(pools: &[PoolSpace]) -> String {
    let mut s = String::new();
    for p in pools {
        let pct = if p.total == 0 {
            0.0
        } else {
            100.0 * p.free as f64 / p.total as f64
        };
        let _ = writeln!(
            s,
            "{}  {}  total {}  used {}  free {} ({pct:.0}%)",
            p.name, p.subnet, p.total, p.used, p.free
        );
        if let Some(e) = &p.invalid {
            let _ = writeln!(s, "  invalid, serves nobody: {e}");
        }
        let _ = writeln!(
            s,
            "  free: {}",
            if p.free_ranges.is_empty() {
                "none".to_string()
            } else {
                p.free_ranges.join(", ")
            }
        );
        for h in &p.held {
            let who = h.pod.clone().or_else(|| h.note.clone()).unwrap_or_default();
            let _ = writeln!(s, "  {:<39} {:<6} {who}", h.address, h.interface);
        }
        s.push('\n');
    }
    s
}
