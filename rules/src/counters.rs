//! Counters: claims per pool, a SpiderSubnet's allocated and total addresses, the addresses
//! held twice (always none), and a pool crossing its fullness threshold.

use std::collections::{BTreeMap, BTreeSet};

use aipam_core::model::Pool;
use aipam_crds::SpiderIPClaim;

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

/// Whether `allocated` of `total` addresses is at or above `percent` (1 to 100). A threshold of
/// 0 is off, and so is a pool with nothing to hand out.
pub fn at_or_above(allocated: i64, total: i64, percent: u8) -> bool {
    percent > 0
        && total > 0
        && allocated.saturating_mul(100) >= total.saturating_mul(i64::from(percent.min(100)))
}

/// A pool's use crossing its fullness threshold between the counts last written (`before`,
/// `None` when never written) and the counts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Crossing {
    /// It reached the threshold.
    Up,
    /// It went back under it.
    Down,
}

/// Which way the pool crossed `percent`, if it did. A pool counted for the first time that is
/// already at the threshold crosses up; one written before keeps its side across restarts.
pub fn fullness_crossing(
    before: Option<(i64, i64)>,
    now: (i64, i64),
    percent: u8,
) -> Option<Crossing> {
    let was = before.is_some_and(|(a, t)| at_or_above(a, t, percent));
    let is = at_or_above(now.0, now.1, percent);
    match (was, is) {
        (false, true) => Some(Crossing::Up),
        (true, false) => Some(Crossing::Down),
        _ => None,
    }
}

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
