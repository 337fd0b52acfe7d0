//! The executor's reservations: for each interface and family of the plan, take a kept
//! StatefulSet claim over or walk the candidate pools ([`FamilyReservation`]) creating one
//! SpiderIPClaim per address (the API server's create is the lock); roll back on refusal.

use std::net::IpAddr;

use aipam_core::alloc::attempt_seed;
use aipam_core::model::Pool;
use aipam_core::ranges::IpFamily;
use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface};
use aipam_core::reserve::{FamilyReservation, PoolMiss};
use aipam_core::select::{FamilySelection, Selection};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::ClaimOwner;
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
        for iface in &selection.interfaces {
            let mut ri = ReservedInterface {
                interface: iface.interface.clone(),
                clean_gateway: iface.clean_gateway,
                ..ReservedInterface::default()
            };
            for fs in &iface.families {
                let list = self
                    .reserve_family(who, snap, &iface.interface, fs, made)
                    .await?;
                match fs.family {
                    IpFamily::V4 => ri.ipv4 = list,
                    IpFamily::V6 => ri.ipv6 = list,
                }
            }
            record.interfaces.push(ri);
        }
        Ok(record)
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
        let owner = who.facts.owner.as_ref().map(|o| ClaimOwner {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        });
        for attempt in 0..self.options.attempts_per_pool {
            let seed = attempt_seed(who.request_uid, &pool.name, attempt);
            let Some(address) = self.cache.pick(&pool.name, &allocatable, seed, &taken) else {
                return Ok(Err(PoolMiss::Full));
            };
            let claim = claim_for(
                &ReservedAddress {
                    pool: pool.name.clone(),
                    address,
                },
                &ClaimTarget {
                    namespace: &who.screened.namespace,
                    pod_name: who.screened.name.as_deref(),
                    interface,
                    reservation: who.id,
                    owner: owner.clone(),
                    provisional,
                },
            );
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
