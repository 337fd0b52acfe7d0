//! The executor's reservations: for each interface and family of the plan, take a kept
//! StatefulSet claim over or walk the candidate pools ([`FamilyReservation`]) creating one
//! SpiderIPClaim per address (the API server's create is the lock); roll back on refusal.

use std::net::IpAddr;

use aipam_core::alloc::{attempt_seed, claim_name};
use aipam_core::annotations::{
    chosen_addresses, stateful_ordinal, ChosenAddresses, FIRST_INTERFACE,
};
use aipam_core::model::Pool;
use aipam_core::ranges::IpFamily;
use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface};
use aipam_core::reserve::{FamilyReservation, PoolMiss};
use aipam_core::select::{FamilySelection, Selection};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{ClaimOwner, SpiderIPClaim};
use tracing::{debug, info, warn};

use super::plan::{take_over, Facts, Screened};
use super::refusal::Refused;
use super::PodHooks;
use crate::cache::Snapshot;
use crate::effects::{ClaimCreated, EffectError, Effects};

/// Who the claims are made for: one admission of one Pod.
#[derive(Debug)]
pub(crate) struct Claimant<'a> {
    pub screened: &'a Screened,
    pub facts: &'a Facts,
    /// The admission request's UID (seeds the picks).
    pub request_uid: &'a str,
    /// The reservation id minted for this admission.
    pub id: &'a str,
}

/// A claim this admission made: what its rollback deletes, and only as that object.
#[derive(Debug, Clone)]
pub(crate) struct MadeClaim {
    name: String,
    uid: Option<String>,
}

impl<E: Effects> PodHooks<E> {
    /// Reserves every interface and family of `selection`, recording in `made` each claim
    /// created (for the rollback).
    pub(crate) async fn reserve_all(
        &self,
        who: &Claimant<'_>,
        snap: &Snapshot,
        selection: &Selection,
        made: &mut Vec<MadeClaim>,
    ) -> Result<Reservation, Refused> {
        let mut record = Reservation {
            id: who.id.to_string(),
            interfaces: Vec::new(),
        };
        let mut chosen = chosen_for(who, selection)?;
        for iface in &selection.interfaces {
            let mut ri = ReservedInterface {
                interface: iface.interface.clone(),
                clean_gateway: iface.clean_gateway,
                ..ReservedInterface::default()
            };
            let mut asked = chosen.remove(&iface.interface).unwrap_or_default();
            for fs in &iface.families {
                let pick = asked
                    .iter()
                    .position(|a| IpFamily::of(a) == fs.family)
                    .map(|i| asked.remove(i));
                let list = match pick {
                    Some(address) => {
                        self.reserve_chosen(who, snap, &iface.interface, fs, address, made)
                            .await?
                    }
                    None => {
                        self.reserve_family(who, snap, &iface.interface, fs, made)
                            .await?
                    }
                };
                match fs.family {
                    IpFamily::V4 => ri.ipv4 = list,
                    IpFamily::V6 => ri.ipv6 = list,
                }
            }
            if let Some(a) = asked.first() {
                return Err(Refused::chosen_not_asked(format!(
                    "{a} for interface {}, which gets no {} address",
                    iface.interface,
                    IpFamily::of(a)
                )));
            }
            record.interfaces.push(ri);
        }
        if let Some(name) = chosen.keys().next() {
            let have: Vec<&str> = selection
                .interfaces
                .iter()
                .map(|i| i.interface.as_str())
                .collect();
            return Err(Refused::chosen_not_asked(format!(
                "interface {name}, which the Pod does not have (its interfaces: {})",
                have.join(", ")
            )));
        }
        Ok(record)
    }

    /// The chosen `address` for one interface and family: from the first candidate pool that
    /// can hand it out, refused with who holds it when another Pod does. Never another address.
    async fn reserve_chosen(
        &self,
        who: &Claimant<'_>,
        snap: &Snapshot,
        interface: &str,
        fs: &FamilySelection,
        address: IpAddr,
        made: &mut Vec<MadeClaim>,
    ) -> Result<Vec<ReservedAddress>, Refused> {
        if let Some(t) = take_over(&who.screened.config, &who.facts.kept, interface, fs) {
            if t.address.address == address {
                return self.reserve_family(who, snap, interface, fs, made).await;
            }
        }
        let reserved = match fs.family {
            IpFamily::V4 => &snap.reserved_v4,
            IpFamily::V6 => &snap.reserved_v6,
        };
        let text = address.to_string();
        let mut why = Vec::new();
        for c in &fs.candidates {
            let Some(pool) = snap.pools.get(&c.pool) else {
                continue;
            };
            if !pool.ips.contains(&address) {
                why.push(format!("pool {}: not in its spec.ips", pool.name));
                continue;
            }
            if pool.exclude_ips.contains(&address) {
                why.push(format!("pool {}: in its spec.excludeIPs", pool.name));
                continue;
            }
            if reserved.contains(&address) {
                why.push(format!(
                    "pool {}: reserved by a SpiderReservedIP",
                    pool.name
                ));
                continue;
            }
            let name = claim_name(&pool.name, &address);
            if let Some(held) = self.cache.claim(&name) {
                return Err(Refused::chosen_held(
                    interface,
                    &text,
                    &holder(&held.object),
                ));
            }
            let claim = claim_of(who, &pool.name, address, interface, false);
            return match self
                .effects
                .create_claim(&claim)
                .await
                .map_err(|e| Refused::failed_call(&e))?
            {
                ClaimCreated::Created { uid } => {
                    self.cache.claim_created(claim);
                    made.push(MadeClaim { name, uid });
                    info!(pool = %pool.name, %address, "chosen address reserved");
                    Ok(vec![ReservedAddress {
                        pool: pool.name.clone(),
                        address,
                    }])
                }
                ClaimCreated::AlreadyExists => Err(Refused::chosen_held(
                    interface,
                    &text,
                    &format!("another Pod (SpiderIPClaim {name}, created a moment ago)"),
                )),
            };
        }
        Err(Refused::chosen_unservable(interface, &text, &why))
    }

    async fn reserve_family(
        &self,
        who: &Claimant<'_>,
        snap: &Snapshot,
        interface: &str,
        fs: &FamilySelection,
        made: &mut Vec<MadeClaim>,
    ) -> Result<Vec<ReservedAddress>, Refused> {
        if let Some(t) = take_over(&who.screened.config, &who.facts.kept, interface, fs) {
            // The claim changes hands to this reservation (label and spec together), only while
            // it is still the previous Pod's.
            match self
                .effects
                .take_over_claim(&t.claim, &t.previous, who.id)
                .await
            {
                Ok(true) => {
                    info!(claim = %t.claim, "StatefulSet Pod keeps its address");
                    return Ok(vec![t.address]);
                }
                Ok(false) => debug!(claim = %t.claim,
                    "the StatefulSet claim is gone or taken meanwhile; reserving anew"),
                Err(e) => return Err(Refused::failed_call(&e)),
            }
        }
        let mut walk = FamilyReservation::new(interface, fs, who.screened.node.is_some());
        while let Some(pool) = walk.next_pool(&snap.pools) {
            let got = self
                .reserve_in_pool(who, snap, pool, interface, walk.provisional())
                .await
                .map_err(|e| Refused::failed_call(&e))?;
            match got {
                Ok((claim, address)) => {
                    made.push(claim);
                    walk.reserved(pool, address);
                }
                Err(miss) => walk.missed(&pool.name, miss),
            }
        }
        walk.finish().map_err(|m| Refused::no_address(&m))
    }

    /// One claim in `pool`: pick, create; on AlreadyExists pick again, avoiding the address.
    async fn reserve_in_pool(
        &self,
        who: &Claimant<'_>,
        snap: &Snapshot,
        pool: &Pool,
        interface: &str,
        provisional: bool,
    ) -> Result<Result<(MadeClaim, IpAddr), PoolMiss>, EffectError> {
        let reserved = match pool.family {
            IpFamily::V4 => &snap.reserved_v4,
            IpFamily::V6 => &snap.reserved_v6,
        };
        let allocatable = pool.allocatable(reserved);
        // Addresses lost to another writer whose claim the cache has not seen yet.
        let mut taken: Vec<IpAddr> = Vec::new();
        for attempt in 0..self.options.attempts_per_pool {
            let seed = attempt_seed(who.request_uid, &pool.name, attempt);
            let Some(address) = self.cache.pick(&pool.name, &allocatable, seed, &taken) else {
                return Ok(Err(PoolMiss::Full));
            };
            let claim = claim_of(who, &pool.name, address, interface, provisional);
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.effects.create_claim(&claim).await? {
                ClaimCreated::Created { uid } => {
                    self.cache.claim_created(claim);
                    return Ok(Ok((MadeClaim { name, uid }, address)));
                }
                ClaimCreated::AlreadyExists => {
                    debug!(claim = %name, "address taken meanwhile; picking again");
                    self.metrics.claim_conflicts.inc();
                    self.metrics.spiderpool.conflicts.inc();
                    taken.push(address);
                }
            }
        }
        Ok(Err(PoolMiss::Contended(self.options.attempts_per_pool)))
    }

    /// Deletes the claims made by this request, each only as the object this request made
    /// (its UID): one collected meanwhile and claimed anew by another admission stays.
    pub(crate) async fn roll_back(&self, made: &[MadeClaim]) {
        for c in made {
            match self.effects.delete_claim(&c.name, c.uid.as_deref()).await {
                Ok(()) => self.cache.claim_deleted(&c.name),
                Err(e) => warn!(claim = %c.name, error = %e,
                    "cannot release a claim; the operator collects it after the grace period"),
            }
        }
    }
}

/// The claim on `address` of `pool` for one interface of this admission's Pod.
fn claim_of(
    who: &Claimant<'_>,
    pool: &str,
    address: IpAddr,
    interface: &str,
    provisional: bool,
) -> SpiderIPClaim {
    let owner = who.facts.owner.as_ref().map(|o| ClaimOwner {
        kind: o.kind.clone(),
        name: o.name.clone(),
        uid: o.uid.clone(),
    });
    claim_for(
        &ReservedAddress {
            pool: pool.to_string(),
            address,
        },
        &ClaimTarget {
            namespace: &who.screened.namespace,
            pod_name: who.screened.name.as_deref(),
            interface,
            reservation: who.id,
            owner,
            provisional,
        },
    )
}

/// Who holds a claim, for a refusal.
fn holder(claim: &SpiderIPClaim) -> String {
    let s = &claim.spec;
    let name = claim.metadata.name.as_deref().unwrap_or_default();
    match &s.pod_name {
        Some(p) => format!("Pod {}/{p} (SpiderIPClaim {name})", s.namespace),
        None => format!(
            "a Pod of namespace {} (SpiderIPClaim {name}, reservation {})",
            s.namespace, s.reservation
        ),
    }
}

/// The addresses the Pod asks for, by interface name (the plain form goes to its first
/// interface).
fn chosen_for(who: &Claimant<'_>, selection: &Selection) -> Result<ChosenAddresses, Refused> {
    let ordinal = who
        .facts
        .owner
        .as_ref()
        .filter(|o| o.kind == "StatefulSet")
        .and(who.screened.name.as_deref())
        .and_then(stateful_ordinal);
    let mut chosen = chosen_addresses(&who.screened.annotations, ordinal)
        .map_err(|e| Refused::bad_annotation(&e))?;
    if let Some(first) = chosen.remove(FIRST_INTERFACE) {
        let name = selection
            .interfaces
            .first()
            .map(|i| i.interface.clone())
            .unwrap_or_else(|| "eth0".to_string());
        chosen.entry(name).or_default().extend(first);
    }
    Ok(chosen)
}
