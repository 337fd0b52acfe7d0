//! Switching a live Spiderpool in place ([`plan_migration`]): what Spiderpool holds for the Pods
//! running now — the pools' `status.allocatedIPs` and the SpiderEndpoints — turned into this
//! IPAM's record of the same addresses (one SpiderIPClaim per address, the Pod's
//! `aipam.io/reservation` annotation), so that no running Pod's address is handed out again and
//! each Pod reads its address back at a sandbox restart.
//!
//! An address is migrated when a Pod of the name and UID Spiderpool recorded still runs. Entries
//! of Pods that are gone, finished or of an earlier UID are dropped (Spiderpool's own collector
//! would release them). State that cannot be trusted — an address listed for two Pods, a Pod
//! whose interface is nowhere written down, a claim of ours already on the address for another
//! Pod — is refused as a whole, with every problem listed, before anything is written.
//!
//! The plan is idempotent: a Pod migrated before carries its reservation and is skipped, and
//! the reservation id of a Pod is derived from its UID, so a run cut short and started again
//! writes the same claims.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use aipam_core::ranges::IpFamily;
use aipam_core::reservation::{
    reservation_id, Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION,
};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim, SpiderIPPool};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// The finalizer Spiderpool puts on its pools and SpiderEndpoints. On pools it is also ours; on
/// endpoints nothing of ours removes it, so the migration does.
pub const SPIDERPOOL_FINALIZER: &str = "spiderpool.spidernet.io";

/// What the migration reads: one snapshot of the cluster.
#[derive(Clone, Copy, Debug)]
pub struct SpiderState<'a> {
    /// Every SpiderIPPool.
    pub pools: &'a [SpiderIPPool],
    /// Every SpiderEndpoint.
    pub endpoints: &'a [SpiderEndpoint],
    /// Every Pod.
    pub pods: &'a [Pod],
    /// Every SpiderIPClaim (from an earlier run, or from aipam already running).
    pub claims: &'a [SpiderIPClaim],
    /// The top controller of the Pods that have one, by (namespace, name).
    pub owners: &'a BTreeMap<(String, String), ClaimOwner>,
}

/// Where Spiderpool wrote an address down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Source {
    /// The pool's `status.allocatedIPs`.
    PoolStatus,
    /// The Pod's SpiderEndpoint `status.current.ips`.
    Endpoint,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::PoolStatus => "status.allocatedIPs",
            Source::Endpoint => "SpiderEndpoint",
        })
    }
}

/// One Pod's addresses, as this IPAM will hold them.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMigration {
    /// The Pod's namespace.
    pub namespace: String,
    /// The Pod's name.
    pub name: String,
    /// The Pod's UID (the annotation is written only to this Pod).
    pub uid: String,
    /// The record written into the Pod's `aipam.io/reservation` annotation.
    pub reservation: Reservation,
    /// The claims to create (those an earlier run made are not repeated).
    pub claims: Vec<SpiderIPClaim>,
    /// Claims of this reservation that exist already.
    pub claims_present: usize,
}

/// An address Spiderpool lists that no running Pod holds: not migrated, so free afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Freed {
    /// The pool.
    pub pool: String,
    /// The address.
    pub address: IpAddr,
    /// The Pod Spiderpool lists, `namespace/name`.
    pub pod: String,
    /// Why it is not migrated.
    pub why: String,
}

/// What the migration writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Migration {
    /// The Pods whose addresses become claims, in (namespace, name) order.
    pub pods: Vec<PodMigration>,
    /// Pods that already carry a reservation of ours (`namespace/name`): left as they are.
    pub already: Vec<String>,
    /// Addresses listed for Pods that no longer hold them.
    pub freed: Vec<Freed>,
    /// Pools whose `status.allocatedIPs` is cleared once the claims exist.
    pub pools_to_clear: Vec<String>,
    /// SpiderEndpoints (namespace, name) that lose Spiderpool's finalizer, so that the
    /// operator can delete them when their Pod goes.
    pub endpoint_finalizers: Vec<(String, String)>,
    /// Things the user should know that do not stop the migration.
    pub warnings: Vec<String>,
}

impl Migration {
    /// Number of claims to create.
    pub fn claims_to_create(&self) -> usize {
        self.pods.iter().map(|p| p.claims.len()).sum()
    }
}

/// Why the migration refuses to write anything: each problem names the object to fix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("Spiderpool's state is inconsistent; nothing was written. Fix these and run again:\n  - {}", .problems.join("\n  - "))]
pub struct Inconsistent {
    /// One line per problem.
    pub problems: Vec<String>,
}

/// One address as Spiderpool wrote it down.
#[derive(Clone, Debug)]
struct Holding {
    pool: String,
    address: IpAddr,
    namespace: String,
    name: String,
    uid: String,
    interface: Option<String>,
    source: Source,
}

impl Holding {
    fn pod(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    fn describe(&self) -> String {
        format!(
            "Pod {} (uid {}) in pool {} ({})",
            self.pod(),
            self.uid,
            self.pool,
            self.source
        )
    }
}

/// The migration of `state`, or every reason it cannot be trusted.
pub fn plan_migration(state: SpiderState<'_>) -> Result<Migration, Inconsistent> {
    let mut problems = Vec::new();
    let mut out = Migration::default();
    let mut holdings = pool_holdings(state.pools, &mut problems, &mut out);
    holdings.extend(endpoint_holdings(state.endpoints, &mut problems));

    let pods: BTreeMap<(&str, &str), &Pod> = state
        .pods
        .iter()
        .filter_map(|p| Some((namespaced_name(&p.metadata)?, p)))
        .collect();
    let pool_names: BTreeSet<&str> = state
        .pools
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();

    // Which holdings a running Pod backs.
    let mut live: Vec<Holding> = Vec::new();
    let mut stale: Vec<(Holding, String)> = Vec::new();
    let mut already = BTreeSet::new();
    for h in holdings {
        match pods.get(&(h.namespace.as_str(), h.name.as_str())) {
            None => stale.push((h, "the Pod is gone".to_string())),
            Some(pod) => {
                let uid = pod.metadata.uid.as_deref().unwrap_or_default();
                if uid != h.uid {
                    let why = format!("the Pod of that name now has uid {uid}");
                    stale.push((h, why));
                } else if is_terminal(pod) {
                    stale.push((h, "the Pod has finished".to_string()));
                } else if has_reservation(pod) {
                    already.insert(h.pod());
                } else {
                    live.push(h);
                }
            }
        }
    }
    out.already = already.into_iter().collect();

    // One running Pod per address, in one pool.
    let mut by_address: BTreeMap<IpAddr, Vec<&Holding>> = BTreeMap::new();
    for h in &live {
        by_address.entry(h.address).or_default().push(h);
    }
    for (address, hs) in &by_address {
        let holders: BTreeSet<(&str, &str, &str)> = hs
            .iter()
            .map(|h| (h.namespace.as_str(), h.name.as_str(), h.uid.as_str()))
            .collect();
        let pools: BTreeSet<&str> = hs.iter().map(|h| h.pool.as_str()).collect();
        if holders.len() > 1 || pools.len() > 1 {
            let listed: Vec<String> = hs.iter().map(|h| h.describe()).collect();
            problems.push(format!(
                "address {address} is listed twice: {}; Spiderpool must have handed it out twice \
                 or left a stale entry. Delete the Pod that should not have it, or remove the \
                 wrong entry, then migrate",
                listed.join(" and ")
            ));
        }
    }
    let freed_addresses: BTreeSet<(String, IpAddr)> = stale
        .iter()
        .filter(|(h, _)| !by_address.contains_key(&h.address))
        .map(|(h, _)| (h.pool.clone(), h.address))
        .collect();
    for (h, why) in stale {
        if freed_addresses.contains(&(h.pool.clone(), h.address))
            && !out
                .freed
                .iter()
                .any(|f| f.pool == h.pool && f.address == h.address)
        {
            out.freed.push(Freed {
                pool: h.pool.clone(),
                address: h.address,
                pod: h.pod(),
                why,
            });
        }
    }

    let endpoints: BTreeMap<(&str, &str), &SpiderEndpoint> = state
        .endpoints
        .iter()
        .filter_map(|e| Some((namespaced_name(&e.metadata)?, e)))
        .collect();
    let claims: BTreeMap<&str, &SpiderIPClaim> = state
        .claims
        .iter()
        .filter_map(|c| Some((c.metadata.name.as_deref()?, c)))
        .collect();

    let mut by_pod: BTreeMap<(String, String, String), Vec<&Holding>> = BTreeMap::new();
    for h in &live {
        by_pod
            .entry((h.namespace.clone(), h.name.clone(), h.uid.clone()))
            .or_default()
            .push(h);
    }
    for ((namespace, name, uid), hs) in by_pod {
        let endpoint = endpoints
            .get(&(namespace.as_str(), name.as_str()))
            .filter(|e| e.status.as_ref().is_some_and(|s| s.current.uid == uid));
        let Some(endpoint) = endpoint else {
            let first = hs.first().map(|h| h.describe()).unwrap_or_default();
            problems.push(format!(
                "{first} has no SpiderEndpoint {namespace}/{name} of its uid: its address could \
                 not be read back at a sandbox restart. Delete the Pod (its controller makes a \
                 new one after the switch), then migrate"
            ));
            continue;
        };
        for h in &hs {
            if !pool_names.contains(h.pool.as_str()) {
                out.warnings.push(format!(
                    "{} names pool {}, which does not exist: the address is claimed all the \
                     same, so that a pool of that name made later cannot hand it out",
                    h.describe(),
                    h.pool
                ));
            }
        }
        match pod_reservation(&namespace, &name, &uid, endpoint, &hs) {
            Err(mut p) => problems.append(&mut p),
            Ok(reservation) => {
                let owner = state
                    .owners
                    .get(&(namespace.clone(), name.clone()))
                    .cloned();
                let target = ClaimTarget {
                    namespace: &namespace,
                    pod_name: Some(&name),
                    interface: "",
                    reservation: &reservation.id,
                    owner,
                    provisional: false,
                };
                let mut pm = PodMigration {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    uid: uid.clone(),
                    reservation: reservation.clone(),
                    claims: Vec::new(),
                    claims_present: 0,
                };
                for iface in &reservation.interfaces {
                    let target = ClaimTarget {
                        interface: &iface.interface,
                        ..target.clone()
                    };
                    for a in iface.ipv4.iter().chain(iface.ipv6.iter()) {
                        match claims.get(a.claim_name().as_str()) {
                            Some(c) if c.spec.reservation == reservation.id => {
                                pm.claims_present += 1
                            }
                            Some(c) => problems.push(format!(
                                "address {} of pool {} is already claimed by SpiderIPClaim {} \
                                 (reservation {}, Pod {}/{}), while Spiderpool lists it for Pod \
                                 {namespace}/{name}: aipam was already handing out addresses of \
                                 this pool. Delete the Pod that should not have it, then migrate",
                                a.address,
                                a.pool,
                                a.claim_name(),
                                c.spec.reservation,
                                c.spec.namespace,
                                c.spec.pod_name.as_deref().unwrap_or("?"),
                            )),
                            None => pm.claims.push(claim_for(a, &target)),
                        }
                    }
                }
                out.pods.push(pm);
            }
        }
    }

    for ep in state.endpoints {
        let finalizers = ep.metadata.finalizers.as_deref().unwrap_or_default();
        if finalizers.iter().any(|f| f == SPIDERPOOL_FINALIZER) {
            if let (Some(ns), Some(name)) = (&ep.metadata.namespace, &ep.metadata.name) {
                out.endpoint_finalizers.push((ns.clone(), name.clone()));
            }
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(Inconsistent { problems })
    }
}

/// The entries of every pool's `status.allocatedIPs`.
fn pool_holdings(
    pools: &[SpiderIPPool],
    problems: &mut Vec<String>,
    out: &mut Migration,
) -> Vec<Holding> {
    let mut holdings = Vec::new();
    for pool in pools {
        let name = pool.metadata.name.clone().unwrap_or_default();
        let Some(status) = &pool.status else { continue };
        let entries = match status.allocations() {
            Ok(entries) => entries,
            Err(e) => {
                problems.push(format!(
                    "pool {name}: status.allocatedIPs is not Spiderpool's map of address to \
                     {{\"pod\", \"podUid\"}} ({e}); correct it or clear it"
                ));
                continue;
            }
        };
        if !entries.is_empty() {
            out.pools_to_clear.push(name.clone());
        }
        let version = pool.ip_version();
        for (text, entry) in entries {
            let address = match text.trim().parse::<IpAddr>() {
                Ok(a) => a,
                Err(_) => {
                    problems.push(format!(
                        "pool {name}: status.allocatedIPs has the key {text:?}, which is not an \
                         IP address"
                    ));
                    continue;
                }
            };
            let family = match IpFamily::of(&address) {
                IpFamily::V4 => 4,
                IpFamily::V6 => 6,
            };
            if version.is_some_and(|v| v != family) {
                problems.push(format!(
                    "pool {name} is IPv{} but its status.allocatedIPs lists {address}",
                    version.unwrap_or_default()
                ));
                continue;
            }
            let Some((namespace, pod)) = entry.namespaced_name.split_once('/') else {
                problems.push(format!(
                    "pool {name}: the entry of {address} names the Pod {:?}, not \
                     \"namespace/name\"",
                    entry.namespaced_name
                ));
                continue;
            };
            holdings.push(Holding {
                pool: name.clone(),
                address,
                namespace: namespace.to_string(),
                name: pod.to_string(),
                uid: entry.pod_uid.clone(),
                interface: (!entry.nic.is_empty()).then(|| entry.nic.clone()),
                source: Source::PoolStatus,
            });
        }
    }
    holdings
}

/// The addresses every SpiderEndpoint lists.
fn endpoint_holdings(endpoints: &[SpiderEndpoint], problems: &mut Vec<String>) -> Vec<Holding> {
    let mut holdings = Vec::new();
    for ep in endpoints {
        let (Some(namespace), Some(name), Some(status)) =
            (&ep.metadata.namespace, &ep.metadata.name, &ep.status)
        else {
            continue;
        };
        for d in &status.current.ips {
            for (addr, pool, family) in [
                (&d.ipv4, &d.ipv4_pool, "ipv4"),
                (&d.ipv6, &d.ipv6_pool, "ipv6"),
            ] {
                let Some(text) = addr.as_deref().filter(|t| !t.is_empty()) else {
                    continue;
                };
                let plain = text.split('/').next().unwrap_or_default().trim();
                let Ok(address) = plain.parse::<IpAddr>() else {
                    problems.push(format!(
                        "SpiderEndpoint {namespace}/{name}: interface {} has {family} {text:?}, \
                         which is not an address",
                        d.nic
                    ));
                    continue;
                };
                let Some(pool) = pool.as_deref().filter(|p| !p.is_empty()) else {
                    problems.push(format!(
                        "SpiderEndpoint {namespace}/{name}: interface {} has {family} {text} but \
                         no {family}Pool, so the pool to claim it in is unknown",
                        d.nic
                    ));
                    continue;
                };
                holdings.push(Holding {
                    pool: pool.to_string(),
                    address,
                    namespace: namespace.clone(),
                    name: name.clone(),
                    uid: status.current.uid.clone(),
                    interface: Some(d.nic.clone()),
                    source: Source::Endpoint,
                });
            }
        }
    }
    holdings
}

/// The reservation record of one Pod: its interfaces in the endpoint's order, then any an
/// entry of `status.allocatedIPs` names that the endpoint does not.
fn pod_reservation(
    namespace: &str,
    name: &str,
    uid: &str,
    endpoint: &SpiderEndpoint,
    holdings: &[&Holding],
) -> Result<Reservation, Vec<String>> {
    let mut problems = Vec::new();
    let mut interfaces: Vec<ReservedInterface> = Vec::new();
    let details = endpoint
        .status
        .as_ref()
        .map(|s| s.current.ips.as_slice())
        .unwrap_or_default();
    for d in details {
        if !interfaces.iter().any(|i| i.interface == d.nic) {
            interfaces.push(ReservedInterface {
                interface: d.nic.clone(),
                clean_gateway: d.clean_gateway,
                ..ReservedInterface::default()
            });
        }
    }
    // The address of each (pool, address) once, with the interface the endpoint gives it.
    let mut seen: BTreeSet<(String, IpAddr)> = BTreeSet::new();
    let mut ordered: Vec<&Holding> = holdings.to_vec();
    ordered.sort_by_key(|h| std::cmp::Reverse(h.source));
    for h in ordered {
        if !seen.insert((h.pool.clone(), h.address)) {
            continue;
        }
        let interface = holdings
            .iter()
            .filter(|o| o.pool == h.pool && o.address == h.address)
            .find_map(|o| o.interface.clone());
        let Some(interface) = interface else {
            problems.push(format!(
                "{} has no interface: neither the pool's entry nor the Pod's SpiderEndpoint \
                 says which interface holds {}",
                h.describe(),
                h.address
            ));
            continue;
        };
        let slot = match interfaces.iter_mut().position(|i| i.interface == interface) {
            Some(n) => &mut interfaces[n],
            None => {
                interfaces.push(ReservedInterface {
                    interface: interface.clone(),
                    ..ReservedInterface::default()
                });
                let last = interfaces.len() - 1;
                &mut interfaces[last]
            }
        };
        let list = match IpFamily::of(&h.address) {
            IpFamily::V4 => &mut slot.ipv4,
            IpFamily::V6 => &mut slot.ipv6,
        };
        if let Some(other) = list.first() {
            problems.push(format!(
                "Pod {namespace}/{name}: interface {interface} is listed with two addresses of one \
                 family, {} (pool {}) and {} (pool {})",
                other.address, other.pool, h.address, h.pool
            ));
            continue;
        }
        list.push(ReservedAddress {
            pool: h.pool.clone(),
            address: h.address,
        });
    }
    interfaces.retain(|i| !i.ipv4.is_empty() || !i.ipv6.is_empty());
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Reservation {
        id: migration_reservation_id(uid),
        interfaces,
    })
}

/// The reservation id a migrated Pod gets: from its UID, so that a run started again writes
/// the same claims.
pub fn migration_reservation_id(pod_uid: &str) -> String {
    reservation_id(&format!("spiderpool-migration/{pod_uid}"))
}

/// An object's (namespace, name), when it has both.
pub fn namespaced_name(meta: &ObjectMeta) -> Option<(&str, &str)> {
    Some((meta.namespace.as_deref()?, meta.name.as_deref()?))
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

fn has_reservation(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNO_RESERVATION))
        .is_some_and(|v| Reservation::parse(v).is_ok())
}

#[cfg(test)]
#[path = "migrate_tests.rs"]
mod tests;
