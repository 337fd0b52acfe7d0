//! Picking a free address and naming its claim.
//!
//! The reservation design (DESIGN.md, "Reservations and concurrency"): every reserved address
//! is one small cluster-scoped SpiderIPClaim object whose name is derived from the pool and the
//! address, so that the API server's create is the lock. Two webhook replicas that pick the same
//! address race on one name; the loser gets AlreadyExists and picks again. Nothing here
//! enumerates a pool: the free set is `allocatable - used`, computed on ranges.

use std::net::IpAddr;

use crate::names::DNS1123_SUBDOMAIN_MAX_LEN;
use crate::ranges::IpSet;
use crate::usage::UsedIndex;

/// Longest object name Kubernetes accepts (DNS subdomain).
const MAX_NAME: usize = DNS1123_SUBDOMAIN_MAX_LEN;

/// The SpiderIPClaim name for `address` in `pool`: `<pool>.<address>`, with an IPv6 address
/// written as its 32 hex digits in 8 dash-separated groups (object names cannot hold `:`).
///
/// Two different (pool, address) pairs never get the same name: pool names are DNS subdomains
/// that the address part cannot be confused with, as the address part has a fixed shape per
/// family and is always last. Pool names long enough to push the result past 253 characters are
/// shortened and suffixed with a hash of the full name.
pub fn claim_name(pool: &str, address: &IpAddr) -> String {
    let addr = match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => v6
            .segments()
            .iter()
            .map(|s| format!("{s:04x}"))
            .collect::<Vec<_>>()
            .join("-"),
    };
    let full = format!("{pool}.{addr}");
    if full.len() <= MAX_NAME {
        return full;
    }
    // 253 = kept pool prefix + '-' + 16 hex hash + '.' + address
    let hash = fnv1a64(pool.as_bytes());
    let keep = MAX_NAME.saturating_sub(addr.len() + 1 + 16 + 1);
    let mut prefix: String = pool.chars().take(keep).collect();
    while prefix.ends_with(['.', '-']) {
        prefix.pop();
    }
    format!("{prefix}-{hash:016x}.{addr}")
}

/// FNV-1a, 64 bits: a stable hash for names (not for security).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Picks a free address of `allocatable`: the one picking rule of the project. The webhook
/// reserves with it (over its cache's index, under the read lock), `aipamctl plan` shows what it
/// would give, and the benches measure it.
///
/// `used` holds the addresses taken; `avoid` the few more known taken that `used` does not show
/// yet (an AlreadyExists on a claim create: another writer's claim the cache has not seen).
/// `seed` spreads concurrent pickers over the free set so that replicas rarely collide: the
/// result is the `seed % free`-th free address in order, so the same inputs always give the same
/// address. `None` when nothing is free. O(ranges × log used), whatever the pool's size.
pub fn pick(allocatable: &IpSet, used: &UsedIndex, avoid: &[IpAddr], seed: u64) -> Option<IpAddr> {
    if avoid.is_empty() {
        return used.nth_free(allocatable, seed);
    }
    // The few addresses to avoid come out of the (small) set of ranges to pick from, not into a
    // copy of the pool's reservations.
    let mut narrowed = allocatable.clone();
    for a in avoid {
        narrowed.remove(a);
    }
    used.nth_free(&narrowed, seed)
}

/// The seed of one claim-create attempt of one admission in one pool: the request's UID, the
/// pool and the attempt number, so that concurrent admissions start at different addresses and
/// each retry after a conflict moves on.
pub fn attempt_seed(request_uid: &str, pool: &str, attempt: u32) -> u64 {
    seed_from(&[
        request_uid.as_bytes(),
        pool.as_bytes(),
        &attempt.to_le_bytes(),
    ])
}

/// A 64-bit seed from any bytes (a request UID, a Pod name and a retry counter...).
pub fn seed_from(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in *part {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn claim_names_are_valid_object_names() {
        assert_eq!(
            claim_name("test-ippool-6", &"10.6.168.60".parse().unwrap()),
            "test-ippool-6.10.6.168.60"
        );
        assert_eq!(
            claim_name("v6", &"fd00::1".parse().unwrap()),
            "v6.fd00-0000-0000-0000-0000-0000-0000-0001"
        );
        let long = "a".repeat(250);
        let n = claim_name(&long, &"fd00::1".parse().unwrap());
        assert!(n.len() <= 253, "{}", n.len());
        assert!(n.ends_with(".fd00-0000-0000-0000-0000-0000-0000-0001"));
        let other = format!("{}b", "a".repeat(249));
        assert_ne!(n, claim_name(&other, &"fd00::1".parse().unwrap()));
    }

    #[test]
    fn pick_avoids_the_addresses_it_is_told_are_taken() {
        let all = IpSet::parse_list(&["10.0.0.10-10.0.0.12"]).unwrap();
        let used: UsedIndex = ["10.0.0.10".parse().unwrap()].into_iter().collect();
        let avoid: IpAddr = "10.0.0.11".parse().unwrap();
        for seed in 0..20 {
            assert_eq!(
                pick(&all, &used, &[avoid], seed),
                Some("10.0.0.12".parse().unwrap())
            );
        }
        assert_eq!(
            pick(&all, &used, &[avoid, "10.0.0.12".parse().unwrap()], 3),
            None
        );
        assert_ne!(attempt_seed("uid", "p", 0), attempt_seed("uid", "p", 1));
        assert_ne!(attempt_seed("uid", "p", 0), attempt_seed("uid", "q", 0));
    }

    #[test]
    fn exhaustion_arrives_exactly_at_capacity() {
        for list in [&["10.0.0.1-10.0.0.37"][..], &["fd00::1-fd00::25"][..]] {
            let all = IpSet::parse_list(list).unwrap();
            let mut used = UsedIndex::new();
            let mut seen = BTreeSet::new();
            for i in 0..all.len() {
                let ip = pick(&all, &used, &[], seed_from(&[&i.to_le_bytes()])).unwrap();
                assert!(all.contains(&ip));
                assert!(seen.insert(ip), "{ip} handed out twice");
                assert!(used.insert(&ip));
            }
            assert_eq!(pick(&all, &used, &[], 1), None);
        }
    }

    #[test]
    fn picking_in_a_slash_8_and_a_slash_64_does_not_enumerate() {
        // Would take hours if it enumerated; answers at once on ranges.
        let v4 = IpSet::from_net(&"10.0.0.0/8".parse().unwrap());
        let v6 = IpSet::from_net(&"fd00::/64".parse().unwrap());
        let mut used4 = UsedIndex::new();
        let mut used6 = UsedIndex::new();
        for i in 0u64..2000 {
            let ip = pick(&v4, &used4, &[], seed_from(&[&i.to_le_bytes()])).unwrap();
            assert!(used4.insert(&ip));
            let ip = pick(&v6, &used6, &[], seed_from(&[&i.to_le_bytes()])).unwrap();
            assert!(used6.insert(&ip));
        }
        assert_eq!(used4.free_in(&v4), (1u128 << 24) - 2000);
    }

    proptest! {
        #[test]
        fn pick_never_returns_a_used_or_foreign_address(
            holes in proptest::collection::vec(0u32..64, 0..64),
            seed in any::<u64>(),
        ) {
            let all = IpSet::parse_list(&["192.168.7.0-192.168.7.63"]).unwrap();
            let used: UsedIndex = holes.iter().map(|h| IpAddr::from([192, 168, 7, *h as u8])).collect();
            match pick(&all, &used, &[], seed) {
                Some(ip) => {
                    prop_assert!(all.contains(&ip));
                    prop_assert!(!used.contains(&ip));
                }
                None => prop_assert_eq!(used.len(), 64),
            }
        }
    }
}
