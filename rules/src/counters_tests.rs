#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Counters.

use aipam_core::model::Pool;
use aipam_core::ranges::IpSet;

use crate::testkit::mk_claim;

use super::*;

#[test]
fn counters_and_double_holding() {
    let cs = [
        mk_claim("p6", "10.6.0.5", "ns", "a").0,
        mk_claim("p6", "10.6.0.6", "ns", "b").0,
        mk_claim("p7", "10.7.0.5", "ns", "c").0,
    ];
    let n = allocated_per_pool(cs.iter());
    assert_eq!((n["p6"], n["p7"]), (2, 1));
    assert!(held_twice(cs.iter()).is_empty());
    let dup = [cs[0].clone(), cs[0].clone()];
    assert_eq!(held_twice(dup.iter()), vec!["10.6.0.5".to_string()]);
}

#[test]
fn subnet_counters_count_what_pools_took() {
    use aipam_core::validate::{validate_subnet, SubnetDraft};
    let subnet = validate_subnet(&SubnetDraft {
        name: "s9".into(),
        subnet: "10.9.0.0/24".into(),
        ips: vec!["10.9.0.2-10.9.0.100".into()],
        exclude_ips: vec!["10.9.0.90-10.9.0.100".into()],
        gateway: Some("10.9.0.1".into()),
        ..SubnetDraft::default()
    })
    .unwrap();
    let a = Pool::new(
        "a",
        "10.9.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.9.0.10-10.9.0.29"]).unwrap(),
    );
    let b = Pool::new(
        "b",
        "10.9.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.9.0.80-10.9.0.95"]).unwrap(),
    );
    let other = Pool::new(
        "o",
        "10.8.0.0/24".parse().unwrap(),
        IpSet::parse_list(&["10.8.0.10-10.8.0.29"]).unwrap(),
    );
    // 99 - 11 excluded = 88; a takes 20, b 10 of its 16 (6 are excluded).
    assert_eq!(subnet_counts(&subnet, [&a, &b, &other]), (30, 88));
}

#[test]
fn a_pool_crosses_its_fullness_threshold_once_each_way() {
    assert!(at_or_above(9, 10, 90));
    assert!(!at_or_above(8, 10, 90));
    assert!(!at_or_above(10, 10, 0), "0 is off");
    assert!(!at_or_above(0, 0, 90), "an empty pool is never full");
    assert_eq!(
        fullness_crossing(Some((8, 10)), (9, 10), 90),
        Some(Crossing::Up)
    );
    assert_eq!(fullness_crossing(Some((9, 10)), (10, 10), 90), None);
    assert_eq!(
        fullness_crossing(Some((10, 10)), (8, 10), 90),
        Some(Crossing::Down)
    );
    assert_eq!(fullness_crossing(None, (9, 10), 90), Some(Crossing::Up));
    assert_eq!(fullness_crossing(None, (1, 10), 90), None);
    // A pool grown under it goes back under the threshold.
    assert_eq!(
        fullness_crossing(Some((9, 10)), (9, 20), 90),
        Some(Crossing::Down)
    );
}
