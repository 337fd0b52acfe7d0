//! Reserving one family of one interface: which candidate pools are tried, in which order, when
//! to stop, and the refusal when none gave an address.
//!
//! Pure. The caller tries each pool [`FamilyReservation::next_pool`] hands it (the webhook by
//! creating claims with addresses from [`crate::alloc::pick`], `aipamctl plan` on its model of
//! the cluster) and reports back with [`FamilyReservation::reserved`] or
//! [`FamilyReservation::missed`]; [`FamilyReservation::finish`] gives the addresses or the
//! refusal. The webhook and `aipamctl plan` therefore walk the pools the same way.
//!
//! The rule: candidates in order (selection puts the best first). A pool that is not restricted
//! to some nodes, or is but the Pod's node is known, ends the walk once it gives an address. A
//! zone pool (node-bound while the Pod's node is unknown) does not: the Pod then needs one
//! address per distinct zone it may land in, so zone pools are taken until a non-zone pool
//! gives one, skipping a zone pool whose zones are already covered by a reserved one.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::affinity::{self, NodeSelectorTerm};
use crate::model::Pool;
use crate::ranges::IpFamily;
use crate::reservation::ReservedAddress;
use crate::select::{reservation_set, Candidate, FamilySelection};

/// Why one pool gave no address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolMiss {
    /// Nothing free in it.
    Full,
    /// This many picks in a row found their address taken by concurrent reservations.
    Contended(u32),
    /// The pool is gone since selection chose it.
    Gone,
}

/// The walk over one family's candidate pools.
#[derive(Debug)]
pub struct FamilyReservation<'a> {
    interface: &'a str,
    family: IpFamily,
    candidates: &'a [Candidate],
    next: usize,
    provisional: bool,
    covered: Vec<NodeSelectorTerm>,
    done: bool,
    got: Vec<ReservedAddress>,
    misses: Vec<(String, PoolMiss)>,
}

impl<'a> FamilyReservation<'a> {
    /// The walk for `fs` of `interface`. `node_known`: the Pod's node is known at admission.
    pub fn new(interface: &'a str, fs: &'a FamilySelection, node_known: bool) -> Self {
        let set = reservation_set(fs);
        FamilyReservation {
            interface,
            family: fs.family,
            candidates: &fs.candidates,
            next: 0,
            provisional: !node_known && set.len() > 1 && set.iter().any(|c| c.zone),
            covered: Vec::new(),
            done: false,
            got: Vec::new(),
            misses: Vec::new(),
        }
    }

    /// Whether the addresses are reserved in several zones before the Pod's node is known (the
    /// claims are marked provisional: the operator keeps only the one of the zone the Pod lands
    /// in).
    pub fn provisional(&self) -> bool {
        self.provisional
    }

    /// The family.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// The next pool to try, or `None` when the walk is over. A candidate missing from `pools`
    /// is recorded as [`PoolMiss::Gone`] and passed over.
    pub fn next_pool<'p>(&mut self, pools: &'p BTreeMap<String, Pool>) -> Option<&'p Pool> {
        while !self.done {
            let c = self.candidates.get(self.next)?;
            self.next += 1;
            let Some(pool) = pools.get(&c.pool) else {
                self.misses.push((c.pool.clone(), PoolMiss::Gone));
                continue;
            };
            if c.zone {
                // One address per distinct zone is enough.
                if let Some(ts) = affinity::pool_terms(pool) {
                    if ts.iter().all(|t| self.covered.contains(t)) {
                        continue;
                    }
                }
            }
            return Some(pool);
        }
        None
    }

    /// `pool` (the one last handed out) gave `address`.
    pub fn reserved(&mut self, pool: &Pool, address: IpAddr) {
        self.got.push(ReservedAddress {
            pool: pool.name.clone(),
            address,
        });
        let zone = self
            .next
            .checked_sub(1)
            .and_then(|i| self.candidates.get(i))
            .is_some_and(|c| c.zone);
        if !zone {
            self.done = true;
            return;
        }
        for t in affinity::pool_terms(pool).into_iter().flatten() {
            if !self.covered.contains(&t) {
                self.covered.push(t);
            }
        }
    }

    /// `pool` gave nothing, for `why`.
    pub fn missed(&mut self, pool: &str, why: PoolMiss) {
        self.misses.push((pool.to_string(), why));
    }

    /// The addresses reserved, or why none could be.
    pub fn finish(self) -> Result<Vec<ReservedAddress>, FamilyMiss> {
        if self.got.is_empty() {
            return Err(FamilyMiss {
                interface: self.interface.to_string(),
                family: self.family,
                misses: self.misses,
            });
        }
        Ok(self.got)
    }
}

/// No candidate pool of one family gave an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyMiss {
    /// The interface.
    pub interface: String,
    /// The family.
    pub family: IpFamily,
    /// Each pool tried and why it gave nothing, in order.
    pub misses: Vec<(String, PoolMiss)>,
}

impl fmt::Display for FamilyMiss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list: Vec<String> = self
            .misses
            .iter()
            .map(|(p, m)| match m {
                PoolMiss::Full => format!("pool {p}: no free address left"),
                PoolMiss::Contended(n) => format!(
                    "pool {p}: {n} attempts in a row found the picked address taken by concurrent reservations"
                ),
                PoolMiss::Gone => format!("pool {p}: it no longer exists"),
            })
            .collect();
        write!(
            f,
            "interface {}: no {} address could be reserved: {}; nothing was reserved for this Pod, retry or add addresses",
            self.interface,
            self.family,
            list.join("; ")
        )
    }
}

impl std::error::Error for FamilyMiss {}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::ranges::IpSet;

    /// A pool bound to the nodes of one zone (here: the node of that name).
    fn zone_pool(name: &str, cidr: &str, zone: &str) -> Pool {
        let mut p = plain(name, cidr);
        p.node_name = vec![zone.to_string()];
        p
    }

    fn plain(name: &str, cidr: &str) -> Pool {
        let net: ipnet::IpNet = cidr.parse().unwrap();
        Pool::new(name, net, IpSet::from_net(&net))
    }

    fn fs(cands: &[(&str, bool)]) -> FamilySelection {
        FamilySelection {
            family: IpFamily::V4,
            candidates: cands
                .iter()
                .map(|(p, z)| Candidate {
                    pool: p.to_string(),
                    zone: *z,
                })
                .collect(),
            excluded: Vec::new(),
            auto_pool: None,
        }
    }

    fn pools(list: Vec<Pool>) -> BTreeMap<String, Pool> {
        list.into_iter().map(|p| (p.name.clone(), p)).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_plain_pool_that_gives_an_address_ends_the_walk() {
        let ps = pools(vec![plain("a", "10.0.0.0/24"), plain("b", "10.1.0.0/24")]);
        let sel = fs(&[("a", false), ("b", false)]);
        let mut w = FamilyReservation::new("eth0", &sel, true);
        assert!(!w.provisional());
        let p = w.next_pool(&ps).unwrap();
        assert_eq!(p.name, "a");
        w.reserved(p, ip("10.0.0.5"));
        assert!(w.next_pool(&ps).is_none());
        let got = w.finish().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].pool, "a");
    }

    #[test]
    fn a_full_pool_passes_to_the_next_and_all_misses_are_named_in_order() {
        let ps = pools(vec![plain("a", "10.0.0.0/24"), plain("c", "10.2.0.0/24")]);
        let sel = fs(&[("a", false), ("gone", false), ("c", false)]);
        let mut w = FamilyReservation::new("net1", &sel, true);
        let p = w.next_pool(&ps).unwrap();
        w.missed(&p.name, PoolMiss::Full);
        let p = w.next_pool(&ps).unwrap();
        assert_eq!(p.name, "c", "the missing pool is passed over");
        w.missed(&p.name, PoolMiss::Contended(16));
        assert!(w.next_pool(&ps).is_none());
        let miss = w.finish().unwrap_err();
        assert_eq!(
            miss.to_string(),
            "interface net1: no IPv4 address could be reserved: pool a: no free address left; pool gone: it no longer exists; pool c: 16 attempts in a row found the picked address taken by concurrent reservations; nothing was reserved for this Pod, retry or add addresses"
        );
    }

    #[test]
    fn zone_pools_are_taken_once_per_zone_until_a_plain_pool_gives() {
        let ps = pools(vec![
            zone_pool("z1a", "10.1.0.0/24", "z1"),
            zone_pool("z1b", "10.2.0.0/24", "z1"),
            zone_pool("z2", "10.3.0.0/24", "z2"),
            plain("any", "10.9.0.0/24"),
            plain("later", "10.8.0.0/24"),
        ]);
        let sel = fs(&[
            ("z1a", true),
            ("z1b", true),
            ("z2", true),
            ("any", false),
            ("later", false),
        ]);
        let mut w = FamilyReservation::new("eth0", &sel, false);
        assert!(w.provisional());
        let mut tried = Vec::new();
        let mut n = 0u8;
        while let Some(p) = w.next_pool(&ps) {
            tried.push(p.name.clone());
            n += 1;
            w.reserved(p, IpAddr::from([10, 0, 0, n]));
        }
        assert_eq!(
            tried,
            ["z1a", "z2", "any"],
            "z1b's zone is covered; 'later' not needed"
        );
        assert_eq!(w.finish().unwrap().len(), 3);
    }

    #[test]
    fn a_single_zone_candidate_is_not_provisional() {
        let sel = fs(&[("z1", true)]);
        assert!(!FamilyReservation::new("eth0", &sel, false).provisional());
        let sel = fs(&[("z1", true), ("z2", true)]);
        assert!(!FamilyReservation::new("eth0", &sel, true).provisional());
    }
}
