//! Addresses in use per pool, indexed so that picking a free address costs the same whether
//! the pool holds ten reservations or a hundred thousand.
//!
//! Picking on two [`IpSet`]s (building `allocatable - used` for every pick, as the webhook did
//! first) costs O(number of used ranges) per allocation, a clone of the whole used set per
//! admission, and an O(n) vector shift plus prefix rebuild for every claim added. With
//! 100,000 scattered reservations that is milliseconds per Pod. [`UsedIndex`] keeps the used
//! addresses in sorted chunks with running counts: insert and remove cost O(chunk + chunks),
//! counting the used addresses below a value costs O(log n), and `UsedIndex::nth_free` finds the
//! `k`-th free address of a pool by binary search over the used addresses inside each range,
//! without building any set: O(log n) whatever the pool's size. The choice is exactly the
//! set-based one: the `seed % free`-th free address in order ([`crate::alloc::pick`] is the one
//! entry point).

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::ranges::{ip_from_u128, ip_to_u128, IpFamily, IpSet};

/// Chunks split when they grow past this many addresses.
const CHUNK: usize = 512;

/// A set of addresses of one family with order statistics, for many scattered members.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsedIndex {
    family: Option<IpFamily>,
    /// Sorted, disjoint, non-empty chunks in ascending order.
    chunks: Vec<Vec<u128>>,
    /// `before[i]` = number of members in `chunks[..i]`.
    before: Vec<usize>,
    len: usize,
}

impl UsedIndex {
    /// The empty index.
    pub fn new() -> UsedIndex {
        UsedIndex::default()
    }

    /// Number of members.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The family of the members, `None` when empty.
    pub fn family(&self) -> Option<IpFamily> {
        self.family
    }

    /// Index of the chunk that holds or would hold `x`.
    fn chunk_for(&self, x: u128) -> usize {
        // First chunk whose last member is >= x; the last chunk when x is beyond all.
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|&l| l < x));
        i.min(self.chunks.len().saturating_sub(1))
    }

    fn rebuild_before(&mut self, from: usize) {
        self.before.truncate(from);
        let mut acc = match from {
            0 => 0,
            _ => self.before[from - 1] + self.chunks[from - 1].len(),
        };
        for c in &self.chunks[from..] {
            self.before.push(acc);
            acc += c.len();
        }
        self.len = acc;
    }

    /// Adds `ip`; false when it was present or is of the other family than the members.
    pub fn insert(&mut self, ip: &IpAddr) -> bool {
        let fam = IpFamily::of(ip);
        if self.family.is_some_and(|f| f != fam) {
            return false;
        }
        let x = ip_to_u128(ip);
        if self.chunks.is_empty() {
            self.family = Some(fam);
            self.chunks.push(vec![x]);
            self.rebuild_before(0);
            return true;
        }
        let ci = self.chunk_for(x);
        let chunk = &mut self.chunks[ci];
        let Err(pos) = chunk.binary_search(&x) else {
            return false;
        };
        chunk.insert(pos, x);
        if chunk.len() > 2 * CHUNK {
            let tail = chunk.split_off(CHUNK);
            self.chunks.insert(ci + 1, tail);
        }
        self.rebuild_before(ci);
        true
    }

    /// Removes `ip`; false when it was not present.
    pub fn remove(&mut self, ip: &IpAddr) -> bool {
        if self.family != Some(IpFamily::of(ip)) {
            return false;
        }
        let x = ip_to_u128(ip);
        let ci = self.chunk_for(x);
        let chunk = &mut self.chunks[ci];
        let Ok(pos) = chunk.binary_search(&x) else {
            return false;
        };
        chunk.remove(pos);
        if chunk.is_empty() {
            self.chunks.remove(ci);
        }
        self.rebuild_before(ci.min(self.chunks.len()));
        if self.chunks.is_empty() {
            self.family = None;
        }
        true
    }

    /// Membership, O(log n).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        if self.family != Some(IpFamily::of(ip)) {
            return false;
        }
        let x = ip_to_u128(ip);
        self.chunks
            .get(self.chunk_for(x))
            .is_some_and(|c| c.binary_search(&x).is_ok())
    }

    /// Number of members `<= x` (numeric value of an address of the members' family).
    fn count_le(&self, x: u128) -> usize {
        let ci = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|&f| f <= x));
        if ci == 0 {
            return 0;
        }
        let c = &self.chunks[ci - 1];
        self.before[ci - 1] + c.partition_point(|&v| v <= x)
    }

    /// Number of members `< x`.
    fn count_below(&self, x: u128) -> usize {
        x.checked_sub(1).map_or(0, |l| self.count_le(l))
    }

    /// The `j`-th member's value in order; `j < len`.
    fn nth_value(&self, j: usize) -> u128 {
        let ci = self.before.partition_point(|&b| b <= j).saturating_sub(1);
        self.chunks
            .get(ci)
            .and_then(|c| c.get(j - self.before[ci]))
            .copied()
            .unwrap_or(u128::MAX)
    }

    /// Number of members in `[lo, hi]`.
    fn count_in(&self, lo: u128, hi: u128) -> u128 {
        (self.count_le(hi) - self.count_below(lo)) as u128
    }

    /// Whether the members can be compared with `set` (same family, or either empty).
    fn comparable(&self, set: &IpSet) -> bool {
        match (self.family, set.family()) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        }
    }

    /// Number of addresses of `allocatable` not held, O(ranges × log n).
    pub fn free_in(&self, allocatable: &IpSet) -> u128 {
        if !self.comparable(allocatable) {
            return allocatable.len();
        }
        allocatable
            .ranges()
            .map(|r| {
                let (s, e) = (ip_to_u128(&r.start()), ip_to_u128(&r.end()));
                r.len().saturating_sub(self.count_in(s, e))
            })
            .fold(0u128, u128::saturating_add)
    }

    /// The `seed % free`-th free address of `allocatable` in order: what `(allocatable -
    /// members).nth(seed % free)` gives on sets, without building the difference. `None` when
    /// nothing is free. O(ranges × log n). Callers pick through [`crate::alloc::pick`].
    pub(crate) fn nth_free(&self, allocatable: &IpSet, seed: u64) -> Option<IpAddr> {
        let family = allocatable.family()?;
        if !self.comparable(allocatable) {
            return allocatable.nth(u128::from(seed) % allocatable.len().max(1));
        }
        let spans: Vec<(u128, u128, u128)> = allocatable
            .ranges()
            .map(|r| {
                let (s, e) = (ip_to_u128(&r.start()), ip_to_u128(&r.end()));
                (s, e, r.len().saturating_sub(self.count_in(s, e)))
            })
            .collect();
        let total = spans
            .iter()
            .fold(0u128, |a, &(_, _, f)| a.saturating_add(f));
        if total == 0 {
            return None;
        }
        let mut k = u128::from(seed) % total;
        for (s, e, free) in spans {
            if k >= free {
                k -= free;
                continue;
            }
            // The used members inside [s, e] are those with global positions j0..j1. Before the
            // j-th of them there are (v_j - s) - (j - j0) free addresses, which never decreases
            // with j; the k-th free address is s + k + (number of members before it).
            let j0 = self.count_below(s);
            let j1 = self.count_le(e);
            let (mut lo, mut hi) = (j0, j1);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let free_before = (self.nth_value(mid) - s) - (mid - j0) as u128;
                if free_before > k {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            let lo = s + k + (lo - j0) as u128;
            return ip_from_u128(family, lo);
        }
        None
    }

    /// The members as an [`IpSet`] (O(n)); for validation paths, not per allocation.
    pub fn to_set(&self) -> IpSet {
        IpSet::from_addrs(self.iter()).unwrap_or_default()
    }

    /// Members in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let family = self.family;
        self.chunks
            .iter()
            .flatten()
            .filter_map(move |&v| family.and_then(|f| ip_from_u128(f, v)))
    }
}

impl FromIterator<IpAddr> for UsedIndex {
    fn from_iter<T: IntoIterator<Item = IpAddr>>(iter: T) -> Self {
        let mut u = UsedIndex::new();
        for ip in iter {
            u.insert(&ip);
        }
        u
    }
}

/// What selection needs to know about addresses in use: whether a pool still has a free one.
/// Implemented by the webhook's cache (without copying it per admission) and by plain maps.
pub trait Usage: std::fmt::Debug {
    /// Whether `pool` has an address of `allocatable` that nobody holds.
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool;
}

impl Usage for BTreeMap<String, IpSet> {
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool {
        match self.get(pool) {
            Some(used) => !allocatable.difference(used).is_empty(),
            None => !allocatable.is_empty(),
        }
    }
}

impl Usage for BTreeMap<String, UsedIndex> {
    fn has_free(&self, pool: &str, allocatable: &IpSet) -> bool {
        match self.get(pool) {
            Some(used) => used.free_in(allocatable) > 0,
            None => !allocatable.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    /// The set-based rule the index must agree with: `(all - used).nth(seed % free)`.
    fn pick(all: &IpSet, used: &IpSet, seed: u64) -> Option<IpAddr> {
        let free = all.difference(used);
        match free.len() {
            0 => None,
            n => free.nth(u128::from(seed) % n),
        }
    }

    fn v4(x: u32) -> IpAddr {
        IpAddr::V4(x.into())
    }

    #[test]
    fn counts_and_membership_survive_chunk_splits_and_merges() {
        let mut u = UsedIndex::new();
        let base = 0x0a00_0000u32;
        for i in (0..5000u32).rev() {
            assert!(u.insert(&v4(base + i * 3)));
        }
        assert!(!u.insert(&v4(base + 3)), "second insert of a member");
        assert_eq!(u.len(), 5000);
        assert!(u.chunks.len() > 1);
        assert!(u.contains(&v4(base + 300)));
        assert!(!u.contains(&v4(base + 301)));
        assert!(!u.contains(&"fd00::1".parse().unwrap()));
        assert!(
            !u.insert(&"fd00::1".parse().unwrap()),
            "other family refused"
        );
        for i in 0..5000u32 {
            assert!(u.remove(&v4(base + i * 3)));
        }
        assert!(u.is_empty());
        assert_eq!(u.family(), None);
        assert!(
            u.insert(&"fd00::1".parse().unwrap()),
            "empty index takes any family"
        );
    }

    #[test]
    fn a_full_pool_has_nothing_to_pick_and_a_freed_address_is_the_one_picked() {
        let all = IpSet::parse_list(&["10.0.0.1-10.0.0.4"]).unwrap();
        let mut u: UsedIndex = all.iter().collect();
        assert_eq!(u.free_in(&all), 0);
        assert_eq!(u.nth_free(&all, 9), None);
        u.remove(&v4(0x0a00_0003));
        assert_eq!(u.nth_free(&all, 12345), Some(v4(0x0a00_0003)));
    }

    #[test]
    fn a_hundred_thousand_scattered_reservations_in_a_slash_8() {
        let net: ipnet::IpNet = "10.0.0.0/8".parse().unwrap();
        let all = IpSet::from_net(&net);
        let u: UsedIndex = (0..100_000u32).map(|i| v4(0x0a00_0000 + i * 97)).collect();
        assert_eq!(u.free_in(&all), all.len() - 100_000);
        for seed in 0..200u64 {
            let ip = u
                .nth_free(&all, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .unwrap();
            assert!(all.contains(&ip) && !u.contains(&ip), "{ip}");
        }
        let set = u.to_set();
        for seed in [0u64, 1, 77, u64::MAX] {
            assert_eq!(u.nth_free(&all, seed), pick(&all, &set, seed));
        }
    }

    proptest! {
        /// The index picks exactly what the set-based rule picks, and counts the same free
        /// addresses, for any pool shape, any used addresses (inside the pool or not) and any seed.
        #[test]
        fn the_index_agrees_with_set_difference(
            ranges in proptest::collection::vec((0u16..600, 0u16..40), 1..6),
            used in proptest::collection::vec(0u16..700, 0..400),
            seed in any::<u64>(),
        ) {
            let entries: Vec<String> = ranges
                .iter()
                .map(|&(s, l)| format!("10.0.{}.{}-10.0.{}.{}",
                    s / 256, s % 256, (s + l).min(699) / 256, (s + l).min(699) % 256))
                .collect();
            let all = IpSet::parse_list(&entries).unwrap();
            let addrs: Vec<IpAddr> = used.iter().map(|&u| v4(0x0a00_0000 + u32::from(u))).collect();
            let set = IpSet::from_addrs(addrs.iter().copied()).unwrap();
            let idx: UsedIndex = addrs.iter().copied().collect();
            prop_assert_eq!(idx.free_in(&all), all.difference(&set).len());
            prop_assert_eq!(idx.nth_free(&all, seed), pick(&all, &set, seed));
            prop_assert_eq!(idx.to_set(), set.clone());
            let mut idx2 = idx.clone();
            for a in addrs.iter().step_by(2) {
                idx2.remove(a);
            }
            let rest: Vec<IpAddr> = idx2.iter().collect();
            let set2 = IpSet::from_addrs(rest).unwrap_or_default();
            prop_assert_eq!(idx2.nth_free(&all, seed), pick(&all, &set2, seed));
        }
    }
}
