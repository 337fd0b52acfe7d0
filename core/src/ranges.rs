//! IP address sets for IPAM pools, IPv4 and IPv6 alike.
//!
//! Every set is held as a short list of inclusive ranges of `u128` (IPv4 addresses are stored
//! in the low 32 bits), kept canonical: sorted, disjoint and never adjacent. No operation
//! enumerates the addresses of a range, so a /8 IPv4 pool or an IPv6 /64 pool costs the same as
//! a /24; costs depend only on the number of ranges.
//!
//! Textual forms follow Spiderpool (`spec.ips`, `spec.excludeIPs` of SpiderIPPool, `spec.ips` of
//! SpiderReservedIP): a single address `172.18.40.40` or an inclusive range
//! `172.18.40.1-172.18.40.10` (IPv6: `fd00::1-fd00::10`). CIDR notation is refused in such
//! lists. An IPv4-mapped IPv6 address written as IPv6 (`::ffff:10.0.0.1`) stays IPv6.

use std::cmp::{max, min};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An IP address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpFamily {
    /// IPv4, 32-bit addresses.
    V4,
    /// IPv6, 128-bit addresses.
    V6,
}

impl IpFamily {
    /// The family of an address (an IPv4-mapped IPv6 address is IPv6).
    pub fn of(ip: &IpAddr) -> IpFamily {
        match ip {
            IpAddr::V4(_) => IpFamily::V4,
            IpAddr::V6(_) => IpFamily::V6,
        }
    }

    /// 4 or 6, as in Spiderpool's `spec.ipVersion`.
    pub fn version(self) -> u8 {
        match self {
            IpFamily::V4 => 4,
            IpFamily::V6 => 6,
        }
    }

    /// The family for `spec.ipVersion` 4 or 6; `None` for anything else.
    pub fn from_version(v: i64) -> Option<IpFamily> {
        match v {
            4 => Some(IpFamily::V4),
            6 => Some(IpFamily::V6),
            _ => None,
        }
    }

    /// Address width in bits: 32 or 128.
    pub fn bits(self) -> u8 {
        match self {
            IpFamily::V4 => 32,
            IpFamily::V6 => 128,
        }
    }

    /// The largest address of the family, as a number.
    pub fn max_value(self) -> u128 {
        match self {
            IpFamily::V4 => u128::from(u32::MAX),
            IpFamily::V6 => u128::MAX,
        }
    }
}

impl fmt::Display for IpFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IpFamily::V4 => "IPv4",
            IpFamily::V6 => "IPv6",
        })
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn ip_to_u128(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(*a)),
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The address of `family` with numeric value `v`; `None` if `v` does not fit the family.
pub fn ip_from_u128(family: IpFamily, v: u128) -> Option<IpAddr> {
    match family {
        IpFamily::V4 => u32::try_from(v).ok().map(|x| IpAddr::V4(Ipv4Addr::from(x))),
        IpFamily::V6 => Some(IpAddr::V6(Ipv6Addr::from(v))),
    }
}

/// Conversion for values known to fit the family (internal invariant).
fn to_ip(family: IpFamily, v: u128) -> IpAddr {
    match family {
        IpFamily::V4 => {
            debug_assert!(v <= u128::from(u32::MAX));
            IpAddr::V4(Ipv4Addr::from(v as u32))
        }
        IpFamily::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// Number of members of `start..=end`, saturating at `u128::MAX`.
fn span_len(start: u128, end: u128) -> u128 {
    (end - start).saturating_add(1)
}

const FORMS_HINT: &str =
    "write a single address like 172.18.40.40 or an inclusive range like 172.18.40.1-172.18.40.10 (IPv6: fd00::1-fd00::10)";

/// Why an address, range or list was refused. Every message quotes the offending text and says
/// what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// An empty (or all-blank) entry.
    #[error("empty IP entry: {FORMS_HINT}")]
    Empty,
    /// CIDR notation where only addresses and ranges are accepted.
    #[error("'{entry}' is CIDR notation, which is not accepted in an IP list: write a range a-b instead{}", suggestion.as_ref().map(|s| format!(" (here: '{s}')")).unwrap_or_default())]
    Cidr {
        /// The entry as written (trimmed).
        entry: String,
        /// The equivalent range, when the CIDR itself was valid.
        suggestion: Option<String>,
    },
    /// One side of an entry is not an IP address.
    #[error(
        "'{part}' in entry '{entry}' is not an IP address: {FORMS_HINT}, with no spaces around '-'"
    )]
    InvalidAddress {
        /// The entry as written (trimmed).
        entry: String,
        /// The part that failed to parse.
        part: String,
    },
    /// A range whose start is after its end.
    #[error("range '{entry}': start {start} is after end {end}; write '{end}-{start}' instead")]
    Reversed {
        /// The range as written.
        entry: String,
        /// The start as written.
        start: IpAddr,
        /// The end as written.
        end: IpAddr,
    },
    /// A range whose two ends are of different families.
    #[error("range '{entry}' mixes {start_family} and {end_family}: both ends of a range must be of the same family")]
    MixedRange {
        /// The range as written.
        entry: String,
        /// Family of the start.
        start_family: IpFamily,
        /// Family of the end.
        end_family: IpFamily,
    },
    /// An entry whose family differs from the rest of the list or set.
    #[error("'{entry}' is {found} but this list holds {expected} addresses: one list holds a single family; put {found} addresses in a separate list or pool")]
    MixedFamily {
        /// The offending entry.
        entry: String,
        /// The family of the list or set.
        expected: IpFamily,
        /// The family of the entry.
        found: IpFamily,
    },
}

/// An inclusive range `start..=end` of addresses of one family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpRange {
    family: IpFamily,
    start: u128,
    end: u128,
}

impl IpRange {
    /// The range `start..=end`; refused if the families differ or `start > end`.
    pub fn new(start: IpAddr, end: IpAddr) -> Result<IpRange, RangeError> {
        let (fs, fe) = (IpFamily::of(&start), IpFamily::of(&end));
        if fs != fe {
            return Err(RangeError::MixedRange {
                entry: format!("{start}-{end}"),
                start_family: fs,
                end_family: fe,
            });
        }
        let (s, e) = (ip_to_u128(&start), ip_to_u128(&end));
        if s > e {
            return Err(RangeError::Reversed {
                entry: format!("{start}-{end}"),
                start,
                end,
            });
        }
        Ok(IpRange {
            family: fs,
            start: s,
            end: e,
        })
    }

    /// The range holding only `ip`.
    pub fn single(ip: IpAddr) -> IpRange {
        let v = ip_to_u128(&ip);
        IpRange {
            family: IpFamily::of(&ip),
            start: v,
            end: v,
        }
    }

    /// Parses Spiderpool's `a` or `a-b` (surrounding whitespace of the whole entry is ignored).
    pub fn parse(s: &str) -> Result<IpRange, RangeError> {
        let entry = s.trim();
        if entry.is_empty() {
            return Err(RangeError::Empty);
        }
        if entry.contains('/') {
            let suggestion = entry
                .parse::<ipnet::IpNet>()
                .ok()
                .map(|n| IpRange::from_net(&n).to_string());
            return Err(RangeError::Cidr {
                entry: entry.to_string(),
                suggestion,
            });
        }
        let parse_part = |part: &str| -> Result<IpAddr, RangeError> {
            part.parse::<IpAddr>()
                .map_err(|_| RangeError::InvalidAddress {
                    entry: entry.to_string(),
                    part: part.to_string(),
                })
        };
        match entry.split_once('-') {
            None => Ok(IpRange::single(parse_part(entry)?)),
            Some((a, b)) => {
                let start = parse_part(a)?;
                let end = parse_part(b)?;
                let (fs, fe) = (IpFamily::of(&start), IpFamily::of(&end));
                if fs != fe {
                    return Err(RangeError::MixedRange {
                        entry: entry.to_string(),
                        start_family: fs,
                        end_family: fe,
                    });
                }
                if ip_to_u128(&start) > ip_to_u128(&end) {
                    return Err(RangeError::Reversed {
                        entry: entry.to_string(),
                        start,
                        end,
                    });
                }
                IpRange::new(start, end)
            }
        }
    }

    /// Every address of a CIDR, network and broadcast included.
    pub fn from_net(net: &ipnet::IpNet) -> IpRange {
        IpRange {
            family: IpFamily::of(&net.addr()),
            start: ip_to_u128(&net.network()),
            end: ip_to_u128(&net.broadcast()),
        }
    }

    /// First address.
    pub fn start(&self) -> IpAddr {
        to_ip(self.family, self.start)
    }

    /// Last address (inclusive).
    pub fn end(&self) -> IpAddr {
        to_ip(self.family, self.end)
    }

    /// Family of both ends.
    pub fn family(&self) -> IpFamily {
        self.family
    }

    /// Number of addresses, saturating at `u128::MAX` (the whole IPv6 space has 2^128).
    pub fn len(&self) -> u128 {
        span_len(self.start, self.end)
    }

    /// Always false: a range holds at least one address.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `ip` lies in the range.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        let v = ip_to_u128(ip);
        IpFamily::of(ip) == self.family && self.start <= v && v <= self.end
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start())
        } else {
            write!(f, "{}-{}", self.start(), self.end())
        }
    }
}

impl FromStr for IpRange {
    type Err = RangeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpRange::parse(s)
    }
}

impl Serialize for IpRange {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        IpRange::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A set of addresses of one family, held as canonical ranges (sorted, disjoint, non-adjacent)
/// with prefix sums, so that `contains`, `nth` and `index_of` cost O(log ranges) whatever the
/// number of addresses.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IpSet {
    /// `None` exactly when the set is empty.
    family: Option<IpFamily>,
    /// Canonical inclusive ranges.
    ranges: Vec<(u128, u128)>,
    /// `prefix[i]` = number of members before `ranges[i]` (never overflows: it is at most
    /// `ranges[i].0`).
    prefix: Vec<u128>,
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalize(mut v: Vec<(u128, u128)>) -> Vec<(u128, u128)> {
    v.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1.saturating_add(1) => {
                last.1 = max(last.1, e);
            }
            _ => out.push((s, e)),
        }
    }
    out
}

impl IpSet {
    /// The empty set.
    pub fn new() -> IpSet {
        IpSet::default()
    }

    /// Builds from ranges already canonical.
    fn from_canonical(family: Option<IpFamily>, ranges: Vec<(u128, u128)>) -> IpSet {
        let mut set = IpSet {
            family: if ranges.is_empty() { None } else { family },
            ranges,
            prefix: Vec::new(),
        };
        set.rebuild_prefix(0);
        debug_assert!(set.is_canonical());
        set
    }

    /// Recomputes prefix sums from range index `from` on.
    fn rebuild_prefix(&mut self, from: usize) {
        self.prefix.truncate(from);
        let mut acc = if from == 0 {
            0
        } else {
            let (s, e) = self.ranges[from - 1];
            self.prefix[from - 1].saturating_add(span_len(s, e))
        };
        for &(s, e) in &self.ranges[from..] {
            self.prefix.push(acc);
            acc = acc.saturating_add(span_len(s, e));
        }
    }

    /// Whether the internal invariants hold (used by tests and debug assertions).
    fn is_canonical(&self) -> bool {
        if self.ranges.is_empty() != self.family.is_none() || self.prefix.len() != self.ranges.len()
        {
            return false;
        }
        let maxv = self.family.map_or(0, IpFamily::max_value);
        let mut acc: u128 = 0;
        for (i, &(s, e)) in self.ranges.iter().enumerate() {
            if s > e || e > maxv || self.prefix[i] != acc {
                return false;
            }
            if i > 0 && self.ranges[i - 1].1.saturating_add(1) >= s {
                return false;
            }
            acc = acc.saturating_add(span_len(s, e));
        }
        true
    }

    fn check_family(
        family: &mut Option<IpFamily>,
        found: IpFamily,
        entry: impl FnOnce() -> String,
    ) -> Result<(), RangeError> {
        match *family {
            None => {
                *family = Some(found);
                Ok(())
            }
            Some(expected) if expected == found => Ok(()),
            Some(expected) => Err(RangeError::MixedFamily {
                entry: entry(),
                expected,
                found,
            }),
        }
    }

    /// Parses a Spiderpool list (`spec.ips`, `spec.excludeIPs`): each entry `a` or `a-b`, all of
    /// one family. Overlapping or adjacent entries are merged.
    pub fn parse_list<S: AsRef<str>>(entries: &[S]) -> Result<IpSet, RangeError> {
        let mut family = None;
        let mut v = Vec::with_capacity(entries.len());
        for entry in entries {
            let r = IpRange::parse(entry.as_ref())?;
            IpSet::check_family(&mut family, r.family, || entry.as_ref().trim().to_string())?;
            v.push((r.start, r.end));
        }
        Ok(IpSet::from_canonical(family, normalize(v)))
    }

    /// The union of `it`; refused if the ranges are of different families.
    pub fn from_ranges<I: IntoIterator<Item = IpRange>>(it: I) -> Result<IpSet, RangeError> {
        let mut family = None;
        let mut v = Vec::new();
        for r in it {
            IpSet::check_family(&mut family, r.family, || r.to_string())?;
            v.push((r.start, r.end));
        }
        Ok(IpSet::from_canonical(family, normalize(v)))
    }

    /// The set of `it` (sorted and merged, O(n log n)); refused if of different families.
    pub fn from_addrs<I: IntoIterator<Item = IpAddr>>(it: I) -> Result<IpSet, RangeError> {
        let mut family = None;
        let mut v = Vec::new();
        for ip in it {
            IpSet::check_family(&mut family, IpFamily::of(&ip), || ip.to_string())?;
            v.push(ip_to_u128(&ip));
        }
        v.sort_unstable();
        v.dedup();
        let mut out: Vec<(u128, u128)> = Vec::new();
        for x in v {
            match out.last_mut() {
                Some(last) if last.1.checked_add(1) == Some(x) => last.1 = x,
                _ => out.push((x, x)),
            }
        }
        Ok(IpSet::from_canonical(family, out))
    }

    /// Every address of the CIDR, network and broadcast included.
    pub fn from_net(net: &ipnet::IpNet) -> IpSet {
        IpSet::from_range(IpRange::from_net(net))
    }

    /// The set of one range.
    pub fn from_range(r: IpRange) -> IpSet {
        IpSet::from_canonical(Some(r.family), vec![(r.start, r.end)])
    }

    /// The family, or `None` when empty.
    pub fn family(&self) -> Option<IpFamily> {
        self.family
    }

    /// Number of addresses, saturating at `u128::MAX`.
    pub fn len(&self) -> u128 {
        match (self.prefix.last(), self.ranges.last()) {
            (Some(p), Some(&(s, e))) => p.saturating_add(span_len(s, e)),
            _ => 0,
        }
    }

    /// Whether the set holds no address.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Index of the range holding numeric value `x`, if any.
    fn find(&self, x: u128) -> Option<usize> {
        let i = self.ranges.partition_point(|r| r.0 <= x);
        (i > 0 && x <= self.ranges[i - 1].1).then(|| i - 1)
    }

    fn same_family(&self, ip: &IpAddr) -> bool {
        self.family == Some(IpFamily::of(ip))
    }

    /// Membership test, O(log ranges).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.same_family(ip) && self.find(ip_to_u128(ip)).is_some()
    }

    /// Adds `ip`; `Ok(false)` if it was already present; refused if of another family.
    pub fn insert(&mut self, ip: IpAddr) -> Result<bool, RangeError> {
        let mut family = self.family;
        IpSet::check_family(&mut family, IpFamily::of(&ip), || ip.to_string())?;
        self.family = family;
        let x = ip_to_u128(&ip);
        // First range starting after x.
        let i = self.ranges.partition_point(|r| r.0 <= x);
        if i > 0 && x <= self.ranges[i - 1].1 {
            return Ok(false);
        }
        let joins_prev = i > 0 && self.ranges[i - 1].1 + 1 == x;
        let joins_next = i < self.ranges.len() && x.checked_add(1) == Some(self.ranges[i].0);
        let from = match (joins_prev, joins_next) {
            (true, true) => {
                self.ranges[i - 1].1 = self.ranges[i].1;
                self.ranges.remove(i);
                i - 1
            }
            (true, false) => {
                self.ranges[i - 1].1 = x;
                i - 1
            }
            (false, true) => {
                self.ranges[i].0 = x;
                i
            }
            (false, false) => {
                self.ranges.insert(i, (x, x));
                i
            }
        };
        self.rebuild_prefix(from);
        debug_assert!(self.is_canonical());
        Ok(true)
    }

    /// Removes `ip`; false if it was not present.
    pub fn remove(&mut self, ip: &IpAddr) -> bool {
        if !self.same_family(ip) {
            return false;
        }
        let x = ip_to_u128(ip);
        let Some(i) = self.find(x) else {
            return false;
        };
        let (s, e) = self.ranges[i];
        match (s == x, e == x) {
            (true, true) => {
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i].0 = x + 1,
            (false, true) => self.ranges[i].1 = x - 1,
            (false, false) => {
                self.ranges[i].1 = x - 1;
                self.ranges.insert(i + 1, (x + 1, e));
            }
        }
        if self.ranges.is_empty() {
            self.family = None;
        }
        self.rebuild_prefix(i);
        debug_assert!(self.is_canonical());
        true
    }

    /// Family shared by two sets for a binary operation: `Err(())` when both are non-empty and
    /// differ.
    fn common_family(&self, other: &IpSet) -> Result<Option<IpFamily>, ()> {
        match (self.family, other.family) {
            (Some(a), Some(b)) if a != b => Err(()),
            (a, b) => Ok(a.or(b)),
        }
    }

    /// Union, O(ranges); refused when both are non-empty and of different families.
    pub fn union(&self, other: &IpSet) -> Result<IpSet, RangeError> {
        let family = self
            .common_family(other)
            .map_err(|()| RangeError::MixedFamily {
                entry: other
                    .ranges()
                    .next()
                    .map(|r| r.to_string())
                    .unwrap_or_default(),
                expected: self.family.unwrap_or(IpFamily::V4),
                found: other.family.unwrap_or(IpFamily::V6),
            })?;
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        let mut out: Vec<(u128, u128)> = Vec::with_capacity(a.len() + b.len());
        while i < a.len() || j < b.len() {
            let next = if j >= b.len() || (i < a.len() && a[i].0 <= b[j].0) {
                i += 1;
                a[i - 1]
            } else {
                j += 1;
                b[j - 1]
            };
            match out.last_mut() {
                Some(last) if next.0 <= last.1.saturating_add(1) => last.1 = max(last.1, next.1),
                _ => out.push(next),
            }
        }
        Ok(IpSet::from_canonical(family, out))
    }

    /// Members of `self` not in `other`, O(ranges); `other` of another family changes nothing.
    pub fn difference(&self, other: &IpSet) -> IpSet {
        if self.common_family(other).is_err() || other.is_empty() || self.is_empty() {
            return self.clone();
        }
        let b = &other.ranges;
        let mut out = Vec::with_capacity(self.ranges.len() + b.len());
        let mut j = 0;
        for &(s, e) in &self.ranges {
            while j < b.len() && b[j].1 < s {
                j += 1;
            }
            let mut cur = s;
            let mut covered = false;
            let mut k = j;
            while k < b.len() && b[k].0 <= e {
                let (bs, be) = b[k];
                if bs > cur {
                    out.push((cur, bs - 1));
                }
                if be >= e {
                    covered = true;
                    break;
                }
                cur = be + 1;
                k += 1;
            }
            if !covered {
                out.push((cur, e));
            }
        }
        IpSet::from_canonical(self.family, out)
    }

    /// Members in both, O(ranges); empty when the families differ.
    pub fn intersection(&self, other: &IpSet) -> IpSet {
        if self.common_family(other).is_err() {
            return IpSet::new();
        }
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        let mut out = Vec::new();
        while i < a.len() && j < b.len() {
            let lo = max(a[i].0, b[j].0);
            let hi = min(a[i].1, b[j].1);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        IpSet::from_canonical(self.family, out)
    }

    /// Whether the sets share an address, O(ranges), no allocation.
    pub fn overlaps(&self, other: &IpSet) -> bool {
        if self.common_family(other).is_err() {
            return false;
        }
        let (a, b) = (&self.ranges, &other.ranges);
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if max(a[i].0, b[j].0) <= min(a[i].1, b[j].1) {
                return true;
            }
            if a[i].1 < b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    /// Whether every member of `self` is in `other` (the empty set is a subset of anything).
    pub fn is_subset(&self, other: &IpSet) -> bool {
        if self.is_empty() {
            return true;
        }
        if self.family != other.family {
            return false;
        }
        self.ranges
            .iter()
            .all(|&(s, e)| other.find(s).is_some_and(|k| e <= other.ranges[k].1))
    }

    /// The canonical ranges, in order.
    pub fn ranges(&self) -> impl Iterator<Item = IpRange> + '_ {
        let family = self.family.unwrap_or(IpFamily::V4);
        self.ranges
            .iter()
            .map(move |&(start, end)| IpRange { family, start, end })
    }

    /// Number of canonical ranges.
    pub fn range_count(&self) -> usize {
        self.ranges.len()
    }

    /// The `n`-th member in order (from 0), O(log ranges).
    pub fn nth(&self, n: u128) -> Option<IpAddr> {
        let family = self.family?;
        let i = self.prefix.partition_point(|&p| p <= n).checked_sub(1)?;
        let (s, e) = self.ranges[i];
        let off = n - self.prefix[i];
        (off <= e - s).then(|| to_ip(family, s + off))
    }

    /// Position of `ip` in order (inverse of [`IpSet::nth`]), O(log ranges).
    pub fn index_of(&self, ip: &IpAddr) -> Option<u128> {
        if !self.same_family(ip) {
            return None;
        }
        let x = ip_to_u128(ip);
        self.find(x)
            .map(|i| self.prefix[i] + (x - self.ranges[i].0))
    }

    /// Smallest member.
    pub fn first(&self) -> Option<IpAddr> {
        Some(to_ip(self.family?, self.ranges.first()?.0))
    }

    /// Largest member.
    pub fn last(&self) -> Option<IpAddr> {
        Some(to_ip(self.family?, self.ranges.last()?.1))
    }

    /// All members in order, lazily.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let family = self.family.unwrap_or(IpFamily::V4);
        self.ranges
            .iter()
            .flat_map(|&(s, e)| s..=e)
            .map(move |v| to_ip(family, v))
    }

    /// Members `>= start` in order, then the members before `start` from the beginning: every
    /// member exactly once, lazily, O(log ranges) to begin. A `start` of another family begins
    /// at the first member.
    pub fn iter_from(&self, start: &IpAddr) -> impl Iterator<Item = IpAddr> + '_ {
        let family = self.family.unwrap_or(IpFamily::V4);
        let x = if self.same_family(start) {
            ip_to_u128(start)
        } else {
            0
        };
        let i = self.ranges.partition_point(|r| r.1 < x);
        let (head, tail, after, before) = match self.ranges.get(i) {
            None => (None, None, &self.ranges[..0], &self.ranges[..]),
            Some(&(s, e)) => {
                let (head, tail) = if x <= s {
                    ((s, e), None)
                } else {
                    ((x, e), Some((s, x - 1)))
                };
                (Some(head), tail, &self.ranges[i + 1..], &self.ranges[..i])
            }
        };
        head.into_iter()
            .chain(after.iter().copied())
            .chain(before.iter().copied())
            .chain(tail)
            .flat_map(|(s, e)| s..=e)
            .map(move |v| to_ip(family, v))
    }

    /// Canonical Spiderpool forms, one per range (`a` or `a-b`).
    pub fn to_strings(&self) -> Vec<String> {
        self.ranges().map(|r| r.to_string()).collect()
    }
}

impl From<IpRange> for IpSet {
    fn from(r: IpRange) -> IpSet {
        IpSet::from_range(r)
    }
}

impl fmt::Display for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

impl Serialize for IpSet {
    fn serialize<Se: Serializer>(&self, serializer: Se) -> Result<Se::Ok, Se::Error> {
        serializer.collect_seq(self.ranges().map(|r| r.to_string()))
    }
}

impl<'de> Deserialize<'de> for IpSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        IpSet::parse_list(&entries).map_err(serde::de::Error::custom)
    }
}

/// Host addresses of a subnet: IPv4 drops the network and broadcast addresses (except /31 and
/// /32, RFC 3021); IPv6 drops the subnet-router anycast address (the all-zero host part) except
/// /127 and /128.
pub fn usable_hosts(subnet: &ipnet::IpNet) -> IpSet {
    let r = IpRange::from_net(subnet);
    let prefix = subnet.prefix_len();
    let (s, e) = match r.family {
        IpFamily::V4 if prefix <= 30 => (r.start + 1, r.end - 1),
        IpFamily::V6 if prefix <= 126 => (r.start + 1, r.end),
        _ => (r.start, r.end),
    };
    IpSet::from_canonical(Some(r.family), vec![(s, e)])
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    fn set(entries: &[&str]) -> IpSet {
        IpSet::parse_list(entries).unwrap()
    }

    // ---------- IpFamily ----------

    #[test]
    fn family_basics() {
        assert_eq!(IpFamily::of(&ip("10.0.0.1")), IpFamily::V4);
        assert_eq!(IpFamily::of(&ip("fd00::1")), IpFamily::V6);
        assert_eq!(IpFamily::of(&ip("::ffff:10.0.0.1")), IpFamily::V6);
        assert_eq!(IpFamily::V4.version(), 4);
        assert_eq!(IpFamily::V6.version(), 6);
        assert_eq!(IpFamily::from_version(4), Some(IpFamily::V4));
        assert_eq!(IpFamily::from_version(6), Some(IpFamily::V6));
        assert_eq!(IpFamily::from_version(5), None);
        assert_eq!(IpFamily::from_version(0), None);
        assert_eq!(IpFamily::V4.bits(), 32);
        assert_eq!(IpFamily::V6.bits(), 128);
        assert_eq!(IpFamily::V4.to_string(), "IPv4");
        assert_eq!(IpFamily::V6.to_string(), "IPv6");
        assert_eq!(ip_from_u128(IpFamily::V4, 1 << 32), None);
        assert_eq!(
            ip_from_u128(IpFamily::V4, ip_to_u128(&ip("1.2.3.4"))),
            Some(ip("1.2.3.4"))
        );
    }

    // ---------- parsing ----------

    #[test]
    fn parse_single_and_range() {
        let r = IpRange::parse("172.18.40.40").unwrap();
        assert_eq!(r.start(), ip("172.18.40.40"));
        assert_eq!(r.end(), ip("172.18.40.40"));
        assert_eq!(r.len(), 1);
        assert_eq!(r.to_string(), "172.18.40.40");

        let r = IpRange::parse("172.18.40.1-172.18.40.10").unwrap();
        assert_eq!(r.family(), IpFamily::V4);
        assert_eq!(r.len(), 10);
        assert_eq!(r.to_string(), "172.18.40.1-172.18.40.10");

        let r = IpRange::parse("fd00::1-fd00::10").unwrap();
        assert_eq!(r.family(), IpFamily::V6);
        assert_eq!(r.len(), 16);
        assert_eq!(r.to_string(), "fd00::1-fd00::10");

        // A one-address range is shown in single form.
        assert_eq!(
            IpRange::parse("10.0.0.1-10.0.0.1").unwrap().to_string(),
            "10.0.0.1"
        );
        // Surrounding whitespace of the whole entry is trimmed.
        assert_eq!(
            IpRange::parse("  10.0.0.1-10.0.0.3\t").unwrap(),
            IpRange::parse("10.0.0.1-10.0.0.3").unwrap()
        );
        // Non-canonical IPv6 text is shown canonically.
        assert_eq!(
            IpRange::parse("FD00:0:0::0001").unwrap().to_string(),
            "fd00::1"
        );
        assert_eq!(
            "10.0.0.7".parse::<IpRange>().unwrap(),
            IpRange::single(ip("10.0.0.7"))
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_stays_ipv6() {
        let r = IpRange::parse("::ffff:10.0.0.1-::ffff:10.0.0.5").unwrap();
        assert_eq!(r.family(), IpFamily::V6);
        assert_eq!(r.len(), 5);
        let s = IpSet::parse_list(&["::ffff:10.0.0.1"]).unwrap();
        assert_eq!(s.family(), Some(IpFamily::V6));
        assert!(!s.contains(&ip("10.0.0.1")));
        assert!(s.contains(&ip("::ffff:10.0.0.1")));
        let err = IpSet::parse_list(&["10.0.0.1", "::ffff:10.0.0.2"]).unwrap_err();
        assert!(matches!(err, RangeError::MixedFamily { .. }));
        // Mixed families inside one range.
        let err = IpRange::parse("10.0.0.1-::ffff:10.0.0.5").unwrap_err();
        assert!(matches!(err, RangeError::MixedRange { .. }), "{err}");
    }

    #[test]
    fn parse_errors_say_what_to_write() {
        let err = IpRange::parse("10.0.0.0/24").unwrap_err();
        assert_eq!(
            err,
            RangeError::Cidr {
                entry: "10.0.0.0/24".into(),
                suggestion: Some("10.0.0.0-10.0.0.255".into())
            }
        );
        let msg = err.to_string();
        assert!(msg.contains("'10.0.0.0/24'"), "{msg}");
        assert!(msg.contains("CIDR"), "{msg}");
        assert!(msg.contains("write a range a-b instead"), "{msg}");
        assert!(msg.contains("10.0.0.0-10.0.0.255"), "{msg}");

        let msg = IpRange::parse("fd00::/120").unwrap_err().to_string();
        assert!(
            msg.contains("a-b") && msg.contains("fd00::-fd00::ff"),
            "{msg}"
        );
        let msg = IpRange::parse("10.0.0.0/99").unwrap_err().to_string();
        assert!(
            msg.contains("'10.0.0.0/99'") && msg.contains("a-b"),
            "{msg}"
        );

        let err = IpRange::parse("10.0.0.9-10.0.0.1").unwrap_err();
        assert!(matches!(err, RangeError::Reversed { .. }));
        let msg = err.to_string();
        assert!(msg.contains("'10.0.0.9-10.0.0.1'"), "{msg}");
        assert!(
            msg.contains("start 10.0.0.9 is after end 10.0.0.1"),
            "{msg}"
        );
        assert!(msg.contains("10.0.0.1-10.0.0.9"), "{msg}");
        let msg = IpRange::parse("fd00::9-fd00::1").unwrap_err().to_string();
        assert!(msg.contains("is after end"), "{msg}");

        let err = IpRange::parse("10.0.0.1-fd00::1").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("'10.0.0.1-fd00::1'") && msg.contains("IPv4") && msg.contains("IPv6"),
            "{msg}"
        );

        for bad in [
            "10.0.0.1 - 10.0.0.5",
            "10.0.0.1 -10.0.0.5",
            "10.0.0.1-",
            "-10.0.0.1",
            "10.0.0.1-10.0.0.2-10.0.0.3",
            "10.0.0.256",
            "10.0.0",
            "hello",
            "10.0.0.1,10.0.0.2",
            "fe80::1%eth0",
            "10.0.0.1 10.0.0.2",
        ] {
            let err = IpRange::parse(bad).unwrap_err();
            assert!(
                matches!(err, RangeError::InvalidAddress { .. }),
                "{bad}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("'{}'", bad.trim())), "{msg}");
            assert!(msg.contains("172.18.40.1-172.18.40.10"), "{msg}");
        }
        let msg = IpRange::parse("10.0.0.1 - 10.0.0.5")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'10.0.0.1 '"), "{msg}");

        assert_eq!(IpRange::parse("").unwrap_err(), RangeError::Empty);
        assert_eq!(IpRange::parse("   ").unwrap_err(), RangeError::Empty);
        assert!(RangeError::Empty.to_string().contains("172.18.40.40"));
    }

    #[test]
    fn range_new_checks() {
        assert!(IpRange::new(ip("10.0.0.1"), ip("10.0.0.1")).is_ok());
        assert!(matches!(
            IpRange::new(ip("10.0.0.2"), ip("10.0.0.1")),
            Err(RangeError::Reversed { .. })
        ));
        assert!(matches!(
            IpRange::new(ip("10.0.0.1"), ip("fd00::1")),
            Err(RangeError::MixedRange { .. })
        ));
        let r = IpRange::new(ip("10.0.0.1"), ip("10.0.0.4")).unwrap();
        assert!(r.contains(&ip("10.0.0.4")));
        assert!(!r.contains(&ip("10.0.0.5")));
        assert!(!r.contains(&ip("::a00:1")));
    }

    #[test]
    fn list_family_mixing_names_the_entry() {
        let err = IpSet::parse_list(&["10.0.0.1", "10.0.0.5-10.0.0.9", " fd00::1 "]).unwrap_err();
        assert_eq!(
            err,
            RangeError::MixedFamily {
                entry: "fd00::1".into(),
                expected: IpFamily::V4,
                found: IpFamily::V6
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("'fd00::1'") && msg.contains("IPv6") && msg.contains("IPv4"),
            "{msg}"
        );
        // Errors in a list name the entry.
        let msg = IpSet::parse_list(&["10.0.0.1", "10.0.0.0/30"])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("'10.0.0.0/30'"), "{msg}");

        assert!(IpSet::from_ranges([
            IpRange::single(ip("10.0.0.1")),
            IpRange::single(ip("fd00::1"))
        ])
        .is_err());
        assert!(IpSet::from_addrs([ip("fd00::1"), ip("10.0.0.1")]).is_err());
        let mut s = set(&["10.0.0.1"]);
        assert!(matches!(
            s.insert(ip("fd00::1")),
            Err(RangeError::MixedFamily { .. })
        ));
        assert_eq!(s, set(&["10.0.0.1"]));
        assert!(s.union(&set(&["fd00::1"])).is_err());
    }

    // ---------- canonical form ----------

    #[test]
    fn merge_adjacent_and_overlapping() {
        let s = set(&[
            "10.0.0.5-10.0.0.9",
            "10.0.0.1-10.0.0.4",
            "10.0.0.8-10.0.0.12",
            "10.0.0.20",
            "10.0.0.21",
            "10.0.0.30",
            "10.0.0.30",
        ]);
        assert_eq!(
            s.to_strings(),
            vec!["10.0.0.1-10.0.0.12", "10.0.0.20-10.0.0.21", "10.0.0.30"]
        );
        assert_eq!(s.len(), 15);
        assert_eq!(s.range_count(), 3);
        assert_eq!(
            s.to_string(),
            "10.0.0.1-10.0.0.12,10.0.0.20-10.0.0.21,10.0.0.30"
        );
        assert!(s.is_canonical());

        let s6 = set(&["fd00::10-fd00::1f", "fd00::1-fd00::f", "fd00::20"]);
        assert_eq!(s6.to_strings(), vec!["fd00::1-fd00::20"]);
        assert_eq!(s6.len(), 32);

        let a =
            IpSet::from_addrs(["10.0.0.3", "10.0.0.1", "10.0.0.2", "10.0.0.2", "10.0.0.9"].map(ip))
                .unwrap();
        assert_eq!(a.to_strings(), vec!["10.0.0.1-10.0.0.3", "10.0.0.9"]);

        // Adjacency at the top of the space does not overflow.
        let top = set(&["255.255.255.254", "255.255.255.255", "0.0.0.0"]);
        assert_eq!(
            top.to_strings(),
            vec!["0.0.0.0", "255.255.255.254-255.255.255.255"]
        );
        let top6 = set(&[
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::",
        ]);
        assert_eq!(top6.len(), 3);
        assert_eq!(top6.range_count(), 2);
    }

    #[test]
    fn empty_set() {
        let e = IpSet::new();
        assert!(e.is_empty());
        assert_eq!(e.len(), 0);
        assert_eq!(e.family(), None);
        assert_eq!(e.first(), None);
        assert_eq!(e.last(), None);
        assert_eq!(e.nth(0), None);
        assert_eq!(e.iter().count(), 0);
        assert_eq!(e.iter_from(&ip("10.0.0.1")).count(), 0);
        assert_eq!(e.to_string(), "");
        assert_eq!(e, IpSet::parse_list::<&str>(&[]).unwrap());
        assert_eq!(e, IpSet::default());
        let s = set(&["10.0.0.1-10.0.0.3"]);
        assert_eq!(e.union(&s).unwrap(), s);
        assert_eq!(s.union(&e).unwrap(), s);
        assert!(e.is_subset(&s));
        assert!(e.is_subset(&set(&["fd00::1"])));
        assert!(!s.is_subset(&e));
        // Emptied sets forget their family.
        let mut one = set(&["10.0.0.1"]);
        assert!(one.remove(&ip("10.0.0.1")));
        assert_eq!(one.family(), None);
        assert_eq!(one, IpSet::new());
        one.insert(ip("fd00::1")).unwrap();
        assert_eq!(one.family(), Some(IpFamily::V6));
        assert_eq!(s.difference(&s), IpSet::new());
        assert_eq!(s.difference(&s).family(), None);
    }

    #[test]
    fn subtraction_splits_a_range_in_three() {
        let pool = set(&["10.0.0.1-10.0.0.100"]);
        let excl = set(&["10.0.0.10-10.0.0.19", "10.0.0.50"]);
        let d = pool.difference(&excl);
        assert_eq!(
            d.to_strings(),
            vec![
                "10.0.0.1-10.0.0.9",
                "10.0.0.20-10.0.0.49",
                "10.0.0.51-10.0.0.100"
            ]
        );
        assert_eq!(d.len(), 89);

        let pool6 = set(&["fd00::1-fd00::100"]);
        let d6 = pool6.difference(&set(&["fd00::10-fd00::1f", "fd00::50"]));
        assert_eq!(
            d6.to_strings(),
            vec!["fd00::1-fd00::f", "fd00::20-fd00::4f", "fd00::51-fd00::100"]
        );

        // Other family: unchanged; intersection empty.
        assert_eq!(pool.difference(&pool6), pool);
        assert_eq!(pool.intersection(&pool6), IpSet::new());
        assert!(!pool.overlaps(&pool6));
        assert!(!pool.is_subset(&pool6));

        let mut m = pool.clone();
        assert!(m.remove(&ip("10.0.0.50")));
        assert!(!m.remove(&ip("10.0.0.50")));
        assert!(!m.remove(&ip("fd00::1")));
        assert_eq!(
            m.to_strings(),
            vec!["10.0.0.1-10.0.0.49", "10.0.0.51-10.0.0.100"]
        );
        assert!(m.insert(ip("10.0.0.50")).unwrap());
        assert!(!m.insert(ip("10.0.0.50")).unwrap());
        assert_eq!(m, pool);
    }

    #[test]
    fn set_operations() {
        let a = set(&["10.0.0.1-10.0.0.10", "10.0.0.20-10.0.0.30"]);
        let b = set(&["10.0.0.5-10.0.0.25"]);
        assert_eq!(
            a.union(&b).unwrap().to_strings(),
            vec!["10.0.0.1-10.0.0.30"]
        );
        assert_eq!(
            a.intersection(&b).to_strings(),
            vec!["10.0.0.5-10.0.0.10", "10.0.0.20-10.0.0.25"]
        );
        assert_eq!(
            a.difference(&b).to_strings(),
            vec!["10.0.0.1-10.0.0.4", "10.0.0.26-10.0.0.30"]
        );
        assert!(a.overlaps(&b));
        assert!(!a.overlaps(&set(&["10.0.0.11-10.0.0.19"])));
        assert!(set(&["10.0.0.2-10.0.0.3", "10.0.0.30"]).is_subset(&a));
        assert!(!set(&["10.0.0.10-10.0.0.11"]).is_subset(&a));
        assert_eq!(a.first(), Some(ip("10.0.0.1")));
        assert_eq!(a.last(), Some(ip("10.0.0.30")));
    }

    // ---------- large sets ----------

    #[test]
    fn big_counts() {
        let s8 = IpSet::from_net(&net("10.0.0.0/8"));
        assert_eq!(s8.len(), 1 << 24);
        assert_eq!(s8.to_strings(), vec!["10.0.0.0-10.255.255.255"]);
        let s64 = IpSet::from_net(&net("fd00::/64"));
        assert_eq!(s64.len(), 1u128 << 64);
        assert_eq!(s64.to_strings(), vec!["fd00::-fd00::ffff:ffff:ffff:ffff"]);
        let all4 = IpSet::from_net(&net("0.0.0.0/0"));
        assert_eq!(all4.len(), 1u128 << 32);
        let all6 = IpSet::from_net(&net("::/0"));
        assert_eq!(all6.len(), u128::MAX, "saturates");
        assert_eq!(IpRange::from_net(&net("::/0")).len(), u128::MAX);
        assert_eq!(
            all6.nth(u128::MAX),
            Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(
            all6.index_of(&ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")),
            Some(u128::MAX)
        );
        assert_eq!(all6.nth(0), Some(ip("::")));
        // Whole space minus one address: exact count.
        let mut minus = all6.clone();
        assert!(minus.remove(&ip("::5")));
        assert_eq!(minus.len(), u128::MAX);
        assert_eq!(minus.nth(5), Some(ip("::6")));
        assert_eq!(
            minus.nth(u128::MAX - 1),
            Some(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"))
        );
        assert_eq!(minus.nth(u128::MAX), None);
        minus.remove(&ip("::"));
        assert_eq!(minus.len(), u128::MAX - 1);
        // Lazy iteration over huge sets.
        let v: Vec<_> = s64
            .iter_from(&ip("fd00::ffff:ffff:ffff:fffe"))
            .take(4)
            .collect();
        assert_eq!(
            v,
            vec![
                ip("fd00::ffff:ffff:ffff:fffe"),
                ip("fd00::ffff:ffff:ffff:ffff"),
                ip("fd00::"),
                ip("fd00::1")
            ]
        );
        assert_eq!(
            all6.iter().take(2).collect::<Vec<_>>(),
            vec![ip("::"), ip("::1")]
        );
        let serialized = serde_json::to_string(&all6).unwrap();
        assert_eq!(
            serialized,
            r#"["::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]"#
        );
    }

    #[test]
    fn many_holes_without_enumeration() {
        // A /64 with 1000 holes spread over the whole range, and a /8 likewise. If any of these
        // enumerated addresses the test would never finish.
        for (cidr, step) in [("fd00::/64", 1u128 << 50), ("10.0.0.0/8", 16_000u128)] {
            let n = net(cidr);
            let pool = IpSet::from_net(&n);
            let fam = pool.family().unwrap();
            let base = ip_to_u128(&pool.first().unwrap());
            let holes: Vec<IpAddr> = (1..=1000u128)
                .map(|k| ip_from_u128(fam, base + k * step).unwrap())
                .collect();
            let mut s = pool.difference(&IpSet::from_addrs(holes.clone()).unwrap());
            assert_eq!(s.range_count(), 1001);
            assert_eq!(s.len(), pool.len() - 1000);
            let last = pool.last().unwrap();
            assert_eq!(s.nth(s.len() - 1), Some(last));
            assert_eq!(s.nth(s.len()), None);
            assert_eq!(s.index_of(&last), Some(pool.len() - 1001));
            for (k, h) in holes.iter().enumerate() {
                assert!(!s.contains(h));
                let k = k as u128 + 1;
                // Address just after hole k has index (k*step + 1) - k.
                let after = ip_from_u128(fam, base + k * step + 1).unwrap();
                assert!(s.contains(&after));
                assert_eq!(s.index_of(&after), Some(k * step + 1 - k));
                assert_eq!(s.nth(k * step + 1 - k), Some(after));
                let before = ip_from_u128(fam, base + k * step - 1).unwrap();
                assert_eq!(s.nth(k * step - 1 - (k - 1)), Some(before));
            }
            // iter_from starting at a hole skips it.
            assert_eq!(
                s.iter_from(&holes[999]).next(),
                ip_from_u128(fam, base + 1000 * step + 1)
            );
            // insert/remove keep the count exact.
            s.insert(holes[500]).unwrap();
            assert_eq!(s.len(), pool.len() - 999);
            assert_eq!(s.range_count(), 1000);
            assert!(s.is_canonical());
            assert!(s.is_subset(&pool));
            assert!(!pool.is_subset(&s));
        }
    }

    #[test]
    fn iter_from_wraps() {
        let s = set(&["10.0.0.1-10.0.0.3", "10.0.0.7-10.0.0.8"]);
        let got = |start: &str| -> Vec<String> {
            s.iter_from(&ip(start)).map(|a| a.to_string()).collect()
        };
        assert_eq!(
            got("10.0.0.2"),
            ["10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.8", "10.0.0.1"]
        );
        assert_eq!(
            got("10.0.0.5"),
            ["10.0.0.7", "10.0.0.8", "10.0.0.1", "10.0.0.2", "10.0.0.3"]
        );
        assert_eq!(
            got("10.0.0.8"),
            ["10.0.0.8", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7"]
        );
        assert_eq!(
            got("10.0.0.9"),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.8"]
        );
        assert_eq!(
            got("0.0.0.0"),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.8"]
        );
        assert_eq!(
            got("fd00::5"),
            ["10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.7", "10.0.0.8"]
        );

        let s6 = set(&["fd00::1-fd00::3", "fd00::7"]);
        let v: Vec<String> = s6
            .iter_from(&ip("fd00::3"))
            .map(|a| a.to_string())
            .collect();
        assert_eq!(v, ["fd00::3", "fd00::7", "fd00::1", "fd00::2"]);
    }

    #[test]
    fn usable_hosts_per_prefix() {
        let h = usable_hosts(&net("10.1.2.0/24"));
        assert_eq!(h.to_strings(), vec!["10.1.2.1-10.1.2.254"]);
        assert_eq!(h.len(), 254);
        // Host bits set in the CIDR text do not matter.
        assert_eq!(usable_hosts(&net("10.1.2.77/24")), h);
        assert_eq!(
            usable_hosts(&net("10.1.2.4/30")).to_strings(),
            vec!["10.1.2.5-10.1.2.6"]
        );
        assert_eq!(
            usable_hosts(&net("10.1.2.4/31")).to_strings(),
            vec!["10.1.2.4-10.1.2.5"]
        );
        assert_eq!(
            usable_hosts(&net("10.1.2.4/32")).to_strings(),
            vec!["10.1.2.4"]
        );
        assert_eq!(usable_hosts(&net("10.0.0.0/8")).len(), (1 << 24) - 2);
        assert_eq!(usable_hosts(&net("0.0.0.0/0")).len(), (1u128 << 32) - 2);

        let h6 = usable_hosts(&net("fd00:1::/64"));
        assert_eq!(
            h6.to_strings(),
            vec!["fd00:1::1-fd00:1::ffff:ffff:ffff:ffff"]
        );
        assert_eq!(h6.len(), (1u128 << 64) - 1);
        assert_eq!(
            usable_hosts(&net("fd00::/126")).to_strings(),
            vec!["fd00::1-fd00::3"]
        );
        assert_eq!(
            usable_hosts(&net("fd00::/127")).to_strings(),
            vec!["fd00::-fd00::1"]
        );
        assert_eq!(
            usable_hosts(&net("fd00::5/128")).to_strings(),
            vec!["fd00::5"]
        );
        assert_eq!(usable_hosts(&net("::/0")).len(), u128::MAX);
    }

    #[test]
    fn serde_round_trip() {
        let s: IpSet = serde_json::from_str(r#"["10.0.0.1-10.0.0.5"]"#).unwrap();
        assert_eq!(s.len(), 5);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["10.0.0.1-10.0.0.5"]"#
        );
        let s: IpSet =
            serde_json::from_str(r#"["10.0.0.3","10.0.0.1-10.0.0.2","10.0.0.9"]"#).unwrap();
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"["10.0.0.1-10.0.0.3","10.0.0.9"]"#
        );
        let s6: IpSet = serde_json::from_str(r#"["fd00::1-fd00::10"]"#).unwrap();
        assert_eq!(
            serde_json::to_value(&s6).unwrap(),
            serde_json::json!(["fd00::1-fd00::10"])
        );
        let e: IpSet = serde_json::from_str("[]").unwrap();
        assert!(e.is_empty());
        let err = serde_json::from_str::<IpSet>(r#"["10.0.0.0/24"]"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("a-b"), "{err}");
        assert!(serde_json::from_str::<IpSet>(r#"["10.0.0.1","fd00::1"]"#).is_err());
        let r: IpRange = serde_json::from_str(r#""fd00::1-fd00::3""#).unwrap();
        assert_eq!(serde_json::to_string(&r).unwrap(), r#""fd00::1-fd00::3""#);
    }

    // ---------- property tests against a naive model ----------

    /// Universe: offsets 0..=255 from a base, in either family.
    #[derive(Clone, Copy, Debug)]
    struct Universe {
        family: IpFamily,
        base: u128,
    }

    impl Universe {
        fn addr(self, off: u128) -> IpAddr {
            ip_from_u128(self.family, self.base + off).unwrap()
        }
        fn off(self, a: &IpAddr) -> u128 {
            ip_to_u128(a) - self.base
        }
        fn build(self, ranges: &[(u8, u8)]) -> IpSet {
            IpSet::from_ranges(ranges.iter().map(|&(a, b)| {
                let (a, b) = (min(a, b) as u128, max(a, b) as u128);
                IpRange::new(self.addr(a), self.addr(b)).unwrap()
            }))
            .unwrap()
        }
        fn offsets(self, s: &IpSet) -> BTreeSet<u128> {
            s.iter().map(|a| self.off(&a)).collect()
        }
    }

    fn model(ranges: &[(u8, u8)]) -> BTreeSet<u128> {
        ranges
            .iter()
            .flat_map(|&(a, b)| (min(a, b) as u128)..=(max(a, b) as u128))
            .collect()
    }

    fn universe() -> impl Strategy<Value = Universe> {
        prop_oneof![
            Just(Universe {
                family: IpFamily::V4,
                base: 0
            }),
            Just(Universe {
                family: IpFamily::V4,
                base: ip_to_u128(&"10.20.30.0".parse().unwrap())
            }),
            Just(Universe {
                family: IpFamily::V4,
                base: u128::from(u32::MAX) - 255
            }),
            Just(Universe {
                family: IpFamily::V6,
                base: 0
            }),
            Just(Universe {
                family: IpFamily::V6,
                base: ip_to_u128(&"fd00::1:0".parse().unwrap())
            }),
            Just(Universe {
                family: IpFamily::V6,
                base: u128::MAX - 255
            }),
        ]
    }

    fn ranges() -> impl Strategy<Value = Vec<(u8, u8)>> {
        prop::collection::vec(
            (any::<u8>(), any::<u8>()).prop_map(|(a, d)| (a, a.saturating_add(d % 24))),
            0..8,
        )
    }

    fn check_against(u: Universe, s: &IpSet, m: &BTreeSet<u128>) -> Result<(), TestCaseError> {
        prop_assert!(s.is_canonical(), "not canonical: {:?}", s);
        prop_assert_eq!(&u.offsets(s), m);
        prop_assert_eq!(s.len(), m.len() as u128);
        prop_assert_eq!(s.is_empty(), m.is_empty());
        prop_assert_eq!(s.family(), if m.is_empty() { None } else { Some(u.family) });
        prop_assert_eq!(s.first().map(|a| u.off(&a)), m.first().copied());
        prop_assert_eq!(s.last().map(|a| u.off(&a)), m.last().copied());
        for off in 0..=255u128 {
            prop_assert_eq!(s.contains(&u.addr(off)), m.contains(&off));
        }
        for (i, &off) in m.iter().enumerate() {
            prop_assert_eq!(s.nth(i as u128), Some(u.addr(off)));
            prop_assert_eq!(s.index_of(&u.addr(off)), Some(i as u128));
        }
        prop_assert_eq!(s.nth(m.len() as u128), None);
        prop_assert_eq!(s.nth(u128::MAX), None);
        // Strings round-trip.
        prop_assert_eq!(&IpSet::parse_list(&s.to_strings()).unwrap(), s);
        let json = serde_json::to_string(s).unwrap();
        prop_assert_eq!(&serde_json::from_str::<IpSet>(&json).unwrap(), s);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn prop_build_and_query(u in universe(), r in ranges()) {
            let s = u.build(&r);
            let m = model(&r);
            check_against(u, &s, &m)?;
            // from_addrs agrees with from_ranges.
            let a = IpSet::from_addrs(m.iter().rev().map(|&o| u.addr(o))).unwrap();
            prop_assert_eq!(&a, &s);
            for off in 0..=255u128 {
                if !m.contains(&off) {
                    prop_assert_eq!(s.index_of(&u.addr(off)), None);
                }
            }
        }

        #[test]
        fn prop_iter_from(u in universe(), r in ranges(), start in any::<u8>()) {
            let s = u.build(&r);
            let m = model(&r);
            let x = start as u128;
            let expected: Vec<u128> = m.range(x..).chain(m.range(..x)).copied().collect();
            let got: Vec<u128> = s.iter_from(&u.addr(x)).map(|a| u.off(&a)).collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn prop_binary_ops(u in universe(), ra in ranges(), rb in ranges()) {
            let (a, b) = (u.build(&ra), u.build(&rb));
            let (ma, mb) = (model(&ra), model(&rb));
            let un = a.union(&b).unwrap();
            check_against(u, &un, &ma.union(&mb).copied().collect())?;
            let d = a.difference(&b);
            check_against(u, &d, &ma.difference(&mb).copied().collect())?;
            let i = a.intersection(&b);
            check_against(u, &i, &ma.intersection(&mb).copied().collect())?;
            prop_assert_eq!(a.overlaps(&b), !ma.is_disjoint(&mb));
            prop_assert_eq!(a.is_subset(&b), ma.is_subset(&mb));
            prop_assert_eq!(a.is_subset(&un), true);
            prop_assert_eq!(i.is_subset(&a) && i.is_subset(&b), true);
        }

        #[test]
        fn prop_insert_remove(u in universe(), r in ranges(), ops in prop::collection::vec((any::<bool>(), any::<u8>()), 0..40)) {
            let mut s = u.build(&r);
            let mut m = model(&r);
            for (ins, off) in ops {
                let off = off as u128;
                if ins {
                    prop_assert_eq!(s.insert(u.addr(off)).unwrap(), m.insert(off));
                } else {
                    prop_assert_eq!(s.remove(&u.addr(off)), m.remove(&off));
                }
                prop_assert!(s.is_canonical());
                prop_assert_eq!(s.len(), m.len() as u128);
            }
            check_against(u, &s, &m)?;
        }

        #[test]
        fn prop_v4_and_v6_alike(ra in ranges(), rb in ranges(), start in any::<u8>(), n in any::<u8>()) {
            let u4 = Universe { family: IpFamily::V4, base: ip_to_u128(&"192.168.7.0".parse().unwrap()) };
            let u6 = Universe { family: IpFamily::V6, base: ip_to_u128(&"2001:db8::7:0".parse().unwrap()) };
            let (a4, b4) = (u4.build(&ra), u4.build(&rb));
            let (a6, b6) = (u6.build(&ra), u6.build(&rb));
            prop_assert_eq!(u4.offsets(&a4.union(&b4).unwrap()), u6.offsets(&a6.union(&b6).unwrap()));
            prop_assert_eq!(u4.offsets(&a4.difference(&b4)), u6.offsets(&a6.difference(&b6)));
            prop_assert_eq!(u4.offsets(&a4.intersection(&b4)), u6.offsets(&a6.intersection(&b6)));
            prop_assert_eq!(a4.range_count(), a6.range_count());
            prop_assert_eq!(a4.len(), a6.len());
            prop_assert_eq!(a4.overlaps(&b4), a6.overlaps(&b6));
            prop_assert_eq!(a4.is_subset(&b4), a6.is_subset(&b6));
            prop_assert_eq!(a4.nth(n as u128).map(|a| u4.off(&a)), a6.nth(n as u128).map(|a| u6.off(&a)));
            let x = start as u128;
            let f4: Vec<u128> = a4.iter_from(&u4.addr(x)).map(|a| u4.off(&a)).collect();
            let f6: Vec<u128> = a6.iter_from(&u6.addr(x)).map(|a| u6.off(&a)).collect();
            prop_assert_eq!(f4, f6);
            // Families never mix.
            prop_assert!(a4.intersection(&a6).is_empty());
            prop_assert_eq!(&a4.difference(&a6), &a4);
            prop_assert!(!a4.overlaps(&a6));
            prop_assert_eq!(a4.union(&b6).is_err(), !a4.is_empty() && !b6.is_empty());
        }

        #[test]
        fn prop_parse_never_panics(s in "[0-9a-f:.\\-/ ]{0,40}") {
            let _ = IpRange::parse(&s);
        }
    }
}
