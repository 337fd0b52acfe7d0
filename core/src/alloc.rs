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

/// The addresses of `allocatable` that nobody holds.
pub fn free_addresses(allocatable: &IpSet, used: &IpSet) -> IpSet {
    allocatable.difference(used)
}

/// Picks a free address. `seed` spreads concurrent pickers over the free set so that replicas
/// rarely collide; the same inputs always give the same address.
///
/// `preferred`, when free, wins (a StatefulSet Pod getting its old address back).
pub fn pick(
    allocatable: &IpSet,
    used: &IpSet,
    preferred: Option<&IpAddr>,
    seed: u64,
) -> Option<IpAddr> {
    if let Some(p) = preferred {
        if allocatable.contains(p) && !used.contains(p) {
            return Some(*p);
        }
    }
    let free = free_addresses(allocatable, used);
    let n = free.len();
    if n == 0 {
        return None;
    }
    free.nth(u128::from(seed) % n)
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
    fn pick_prefers_the_old_address_when_free() {
        let all = IpSet::parse_list(&["10.0.0.10-10.0.0.20"]).unwrap();
        let used = IpSet::parse_list(&["10.0.0.12"]).unwrap();
        let want: IpAddr = "10.0.0.15".parse().unwrap();
        assert_eq!(pick(&all, &used, Some(&want), 7), Some(want));
        let taken: IpAddr = "10.0.0.12".parse().unwrap();
        let got = pick(&all, &used, Some(&taken), 7).unwrap();
        assert_ne!(got, taken);
    }

    #[test]
    fn exhaustion_arrives_exactly_at_capacity() {
        for list in [&["10.0.0.1-10.0.0.37"][..], &["fd00::1-fd00::25"][..]] {
            let all = IpSet::parse_list(list).unwrap();
            let mut used = IpSet::new();
            let mut seen = BTreeSet::new();
            for i in 0..all.len() {
                let ip = pick(&all, &used, None, seed_from(&[&i.to_le_bytes()])).unwrap();
                assert!(all.contains(&ip));
                assert!(seen.insert(ip), "{ip} handed out twice");
                used.insert(ip).unwrap();
            }
            assert_eq!(pick(&all, &used, None, 1), None);
        }
    }

    #[test]
    fn picking_in_a_slash_8_and_a_slash_64_does_not_enumerate() {
        // Would take hours if it enumerated; answers at once on ranges.
        let v4 = IpSet::from_net(&"10.0.0.0/8".parse().unwrap());
        let v6 = IpSet::from_net(&"fd00::/64".parse().unwrap());
        let mut used4 = IpSet::new();
        let mut used6 = IpSet::new();
        for i in 0u64..2000 {
            let ip = pick(&v4, &used4, None, seed_from(&[&i.to_le_bytes()])).unwrap();
            assert!(used4.insert(ip).unwrap());
            let ip = pick(&v6, &used6, None, seed_from(&[&i.to_le_bytes()])).unwrap();
            assert!(used6.insert(ip).unwrap());
        }
        assert_eq!(free_addresses(&v4, &used4).len(), (1u128 << 24) - 2000);
    }

    proptest! {
        #[test]
        fn pick_never_returns_a_used_or_foreign_address(
            holes in proptest::collection::vec(0u32..64, 0..64),
            seed in any::<u64>(),
        ) {
            let all = IpSet::parse_list(&["192.168.7.0-192.168.7.63"]).unwrap();
            let used = IpSet::from_addrs(holes.iter().map(|h| IpAddr::from([192, 168, 7, *h as u8]))).unwrap();
            match pick(&all, &used, None, seed) {
                Some(ip) => {
                    prop_assert!(all.contains(&ip));
                    prop_assert!(!used.contains(&ip));
                }
                None => prop_assert_eq!(used.len(), 64),
            }
        }
    }
}
