//! Counters: claims per pool, a SpiderSubnet's allocated and total addresses, and the
//! addresses held twice (always none).

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

#[cfg(test)]
#[path = "counters_tests.rs"]
mod tests;
