//! Properties of allocation over whole pools, IPv4 and IPv6 alike: a pool hands out exactly its
//! capacity, never twice the same address, and never the network, broadcast, gateway, an
//! excluded or a reserved address.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;

use aipam_core::alloc::{pick, seed_from};
use aipam_core::model::Pool;
use aipam_core::ranges::{ip_from_u128, ip_to_u128, IpFamily, IpSet};
use aipam_core::usage::UsedIndex;
use aipam_core::validate::{validate_pool, PoolDraft};
use proptest::prelude::*;

/// A pool in a /26 (v4) or /122 (v6) at offset `base`, described by offsets so that the same
/// description can be laid out in both families.
#[derive(Debug, Clone)]
struct Layout {
    ranges: Vec<(u8, u8)>,
    exclude: Vec<u8>,
    gateway: Option<u8>,
    reserved: Vec<u8>,
}

fn layout() -> impl Strategy<Value = Layout> {
    (
        prop::collection::vec((0u8..64, 0u8..8), 1..5),
        prop::collection::vec(0u8..64, 0..8),
        prop::option::of(1u8..63),
        prop::collection::vec(0u8..64, 0..4),
    )
        .prop_map(|(r, exclude, gateway, reserved)| Layout {
            ranges: r
                .into_iter()
                .map(|(s, l)| (s, s.saturating_add(l).min(63)))
                .collect(),
            exclude,
            gateway,
            reserved,
        })
}

fn base(family: IpFamily) -> u128 {
    match family {
        IpFamily::V4 => ip_to_u128(&"10.20.30.0".parse::<IpAddr>().unwrap()),
        IpFamily::V6 => ip_to_u128(&"fd00:20:30::".parse::<IpAddr>().unwrap()),
    }
}

fn addr(family: IpFamily, off: u8) -> IpAddr {
    ip_from_u128(family, base(family) + u128::from(off)).unwrap()
}

fn build(l: &Layout, family: IpFamily) -> (Pool, IpSet) {
    let subnet = match family {
        IpFamily::V4 => "10.20.30.0/26",
        IpFamily::V6 => "fd00:20:30::/122",
    };
    let ips: Vec<String> = l
        .ranges
        .iter()
        .map(|(s, e)| format!("{}-{}", addr(family, *s), addr(family, *e)))
        .collect();
    let gateway = l.gateway.map(|g| addr(family, g));
    // A gateway inside the ranges is refused by validation; keep it out with excludeIPs.
    let mut exclude: Vec<String> = l
        .exclude
        .iter()
        .map(|o| addr(family, *o).to_string())
        .collect();
    if let Some(g) = gateway {
        exclude.push(g.to_string());
    }
    let draft = PoolDraft {
        name: "p".to_string(),
        subnet: subnet.to_string(),
        ips,
        exclude_ips: exclude,
        gateway: gateway.map(|g| g.to_string()),
        ..PoolDraft::default()
    };
    let pool = validate_pool(&draft).unwrap();
    let reserved = IpSet::from_addrs(l.reserved.iter().map(|o| addr(family, *o))).unwrap();
    (pool, reserved)
}

/// Allocates until the pool is exhausted; returns the offsets handed out, in order.
fn drain(pool: &Pool, reserved: &IpSet, family: IpFamily) -> Vec<u128> {
    let allocatable = pool.allocatable(reserved);
    let mut used = UsedIndex::new();
    let mut out = Vec::new();
    let mut i: u64 = 0;
    while let Some(ip) = pick(&allocatable, &used, &[], seed_from(&[&i.to_le_bytes()])) {
        assert!(used.insert(&ip), "{ip} handed out twice");
        out.push(ip_to_u128(&ip) - base(family));
        i += 1;
        assert!(i <= 64, "more addresses than the subnet holds");
    }
    out
}

proptest! {
    #[test]
    fn exhaustion_exactly_at_capacity_and_no_forbidden_address(l in layout()) {
        for family in [IpFamily::V4, IpFamily::V6] {
            let (pool, reserved) = build(&l, family);
            let capacity = pool.allocatable(&reserved).len();
            let got = drain(&pool, &reserved, family);
            prop_assert_eq!(got.len() as u128, capacity);
            let offsets: BTreeSet<u128> = got.iter().copied().collect();
            prop_assert_eq!(offsets.len(), got.len());
            for off in &offsets {
                let o = *off as u8;
                prop_assert!(l.ranges.iter().any(|(s, e)| *s <= o && o <= *e), "{} outside ips", o);
                prop_assert!(!l.exclude.contains(&o), "excluded {}", o);
                prop_assert!(!l.reserved.contains(&o), "reserved {}", o);
                prop_assert!(l.gateway != Some(o), "gateway {}", o);
                // Network address of the subnet; broadcast too for IPv4.
                prop_assert!(o != 0, "network address");
                if family == IpFamily::V4 {
                    prop_assert!(o != 63, "broadcast address");
                }
            }
        }
    }

    #[test]
    fn ipv4_and_ipv6_pools_of_the_same_shape_behave_alike(l in layout()) {
        let (p4, r4) = build(&l, IpFamily::V4);
        let (p6, r6) = build(&l, IpFamily::V6);
        let a4 = p4.allocatable(&r4);
        let a6 = p6.allocatable(&r6);
        // IPv6 keeps offset 63 (no broadcast); otherwise identical.
        let mut a4_offsets: Vec<u128> = a4.iter().map(|ip| ip_to_u128(&ip) - base(IpFamily::V4)).collect();
        let mut a6_offsets: Vec<u128> = a6.iter().map(|ip| ip_to_u128(&ip) - base(IpFamily::V6)).collect();
        a6_offsets.retain(|o| *o != 63);
        a4_offsets.retain(|o| *o != 63);
        prop_assert_eq!(a4_offsets, a6_offsets);
        // Same seeds pick the same offsets where the sets are equal.
        if !a4.contains(&addr(IpFamily::V4, 63)) && !a6.contains(&addr(IpFamily::V6, 63)) {
            prop_assert_eq!(drain(&p4, &r4, IpFamily::V4), drain(&p6, &r6, IpFamily::V6));
        }
    }
}
