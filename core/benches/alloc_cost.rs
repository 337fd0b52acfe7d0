//! Allocation cost against pool size and fullness: `cargo bench -p aipam-core --bench alloc_cost`.
//!
//! One "allocation" is what the webhook does per address: compute the pool's allocatable set and
//! pick a free address with `aipam_core::alloc::pick` over the index of addresses in use; beside
//! it, the set-difference way the webhook first picked (kept here only as the baseline). Pools of /24, /16, /8 IPv4
//! and /64 IPv6; in use: none, half and 99% of the pool as one contiguous block (what sequential
//! filling gives), and 10,000 / 100,000 scattered addresses (what random picking gives; the cost
//! follows the number of holes, not the pool's size). Prints the median and p90 of 200 timed
//! allocations per case and the ratio to the /24 of the same shape. Timing, not asserted: read the
//! figures on a quiet machine.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Instant;

use aipam_core::alloc::{pick, seed_from};

use aipam_core::model::Pool;
use aipam_core::ranges::{ip_from_u128, ip_to_u128, IpFamily, IpSet};
use aipam_core::usage::UsedIndex;

fn pool(cidr: &str) -> Pool {
    let net: ipnet::IpNet = cidr.parse().unwrap_or_else(|_| panic!("bad CIDR {cidr}"));
    Pool::new("bench", net, IpSet::from_net(&net))
}

fn used_contiguous(p: &Pool, fraction: f64) -> IpSet {
    let all = p.allocatable(&IpSet::new());
    let n = (all.len() as f64 * fraction) as u128;
    if n == 0 {
        return IpSet::new();
    }
    let (Some(first), Some(last)) = (all.nth(0), all.nth(n - 1)) else {
        return IpSet::new();
    };
    IpSet::from_ranges([
        aipam_core::ranges::IpRange::new(first, last).unwrap_or_else(|_| panic!("range"))
    ])
    .unwrap_or_default()
}

fn used_scattered(p: &Pool, count: u64) -> IpSet {
    let all = p.allocatable(&IpSet::new());
    let len = all.len();
    if u128::from(count) * 2 > len {
        // Cannot scatter that many in this pool: report it as not applicable.
        return all;
    }
    let step = (len / u128::from(count + 1)).max(2);
    let base = all.nth(0).map(|a| ip_to_u128(&a)).unwrap_or(0);
    let fam = p.family;
    IpSet::from_addrs((1..=u128::from(count)).filter_map(|i| {
        let off = (i * step).min(len - 1);
        ip_from_u128(fam, base + off)
    }))
    .unwrap_or_default()
}

/// How the addresses in use are laid out in a pool.
type UsedShape = Box<dyn Fn(&Pool) -> IpSet>;

/// Most reservations an index is built for here: one claim object per address, and no cluster
/// holds tens of millions of objects.
const MAX_INDEXED: u128 = 20_000_000;

fn median_p90(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(|a, b| a.total_cmp(b));
    (samples[samples.len() / 2], samples[samples.len() * 9 / 10])
}

/// The first way, kept as the baseline: `allocatable - used` as sets, then the n-th.
fn pick_on_sets(allocatable: &IpSet, used: &IpSet, seed: u64) -> Option<IpAddr> {
    let free = allocatable.difference(used);
    match free.len() {
        0 => None,
        n => free.nth(u128::from(seed) % n),
    }
}

/// The old path: allocatable, then `allocatable - used` as sets, then the n-th.
fn time_sets(p: &Pool, used: &IpSet) -> (f64, f64) {
    let reserved = IpSet::new();
    let mut samples: Vec<f64> = Vec::with_capacity(200);
    for i in 0u64..220 {
        let t = Instant::now();
        let allocatable = p.allocatable(&reserved);
        let ip = pick_on_sets(&allocatable, used, seed_from(&[&i.to_le_bytes()]));
        black_box(ip);
        let dt = t.elapsed().as_secs_f64() * 1e6;
        if i >= 20 {
            samples.push(dt);
        }
    }
    median_p90(samples)
}

/// The webhook's path: allocatable, then a binary search over the index of used addresses;
/// plus the cost of recording and forgetting one claim in the index.
fn time_index(p: &Pool, used: &mut UsedIndex) -> ((f64, f64), (f64, f64)) {
    let reserved = IpSet::new();
    let mut picks: Vec<f64> = Vec::with_capacity(200);
    let mut updates: Vec<f64> = Vec::with_capacity(200);
    for i in 0u64..220 {
        let t = Instant::now();
        let allocatable = p.allocatable(&reserved);
        let ip = pick(&allocatable, used, &[], seed_from(&[&i.to_le_bytes()]));
        black_box(ip);
        let dt = t.elapsed().as_secs_f64() * 1e6;
        if let Some(ip) = ip {
            let t = Instant::now();
            used.insert(&ip);
            used.remove(&ip);
            if i >= 20 {
                updates.push(t.elapsed().as_secs_f64() * 1e6 / 2.0);
            }
        }
        if i >= 20 {
            picks.push(dt);
        }
    }
    if updates.is_empty() {
        updates.push(f64::NAN);
    }
    (median_p90(picks), median_p90(updates))
}

fn main() {
    let pools = ["10.0.0.0/24", "10.0.0.0/16", "10.0.0.0/8", "fd00::/64"];
    let shapes: Vec<(&str, UsedShape)> = vec![
        ("empty", Box::new(|_p: &Pool| IpSet::new())),
        (
            "half full (contiguous)",
            Box::new(|p: &Pool| used_contiguous(p, 0.5)),
        ),
        (
            "99% full (contiguous)",
            Box::new(|p: &Pool| used_contiguous(p, 0.99)),
        ),
        ("200 scattered", Box::new(|p: &Pool| used_scattered(p, 200))),
        (
            "10,000 scattered",
            Box::new(|p: &Pool| used_scattered(p, 10_000)),
        ),
        (
            "100,000 scattered",
            Box::new(|p: &Pool| used_scattered(p, 100_000)),
        ),
    ];
    println!("allocation cost per address, microseconds (median / p90 of 200); ratio = median / median of the /24 of the same shape");
    println!("  sets  = allocatable - used as range sets, then the n-th (the webhook's first way, kept as a baseline)");
    println!("  index = binary search over the used-address index (aipam_core::alloc::pick; the webhook, aipamctl plan)");
    println!("  update = recording or forgetting one claim in the index (every watch event)");
    println!(
        "{:<24} {:<12} {:>9} {:>9} {:>6} | {:>9} {:>9} {:>6} | {:>8}",
        "in use",
        "pool",
        "sets p50",
        "sets p90",
        "ratio",
        "index p50",
        "index p90",
        "ratio",
        "update"
    );
    for (shape, make) in &shapes {
        let mut base: Option<(f64, f64)> = None;
        for cidr in pools {
            let p = pool(cidr);
            let used = make(&p);
            if used.len() >= p.allocatable(&IpSet::new()).len() {
                println!("{shape:<24} {cidr:<12} n/a (more than the pool)");
                continue;
            }
            let (sm, s90) = time_sets(&p, &used);
            let index = if used.len() <= MAX_INDEXED {
                let mut idx: UsedIndex = used.iter().collect();
                Some(time_index(&p, &mut idx))
            } else {
                None
            };
            let im = index.map_or(f64::NAN, |((m, _), _)| m);
            if base.is_none() && p.family == IpFamily::V4 {
                base = Some((sm, im));
            }
            let (bs, bi) = base.unwrap_or((sm, im));
            match index {
                Some(((im, i90), (um, _))) => println!(
                    "{shape:<24} {cidr:<12} {sm:>9.2} {s90:>9.2} {:>6.2} | {im:>9.2} {i90:>9.2} {:>6.2} | {um:>8.2}",
                    sm / bs,
                    im / bi
                ),
                None => println!(
                    "{shape:<24} {cidr:<12} {sm:>9.2} {s90:>9.2} {:>6.2} | {:>30} |",
                    sm / bs,
                    "n/a (more claims than a cluster holds)"
                ),
            }
        }
    }
}
