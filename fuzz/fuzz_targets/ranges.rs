//! The range parser on arbitrary text: no panic; what parses prints back to itself; a list's
//! size is computed, never enumerated. Seeds: core/tests/corpus/ranges.
#![no_main]

use aipam_core::ranges::{IpRange, IpSet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = IpRange::parse(text) {
        assert_eq!(IpRange::parse(&r.to_string()).ok(), Some(r));
    }
    let entries: Vec<&str> = text.split(',').collect();
    if let Ok(set) = IpSet::parse_list(&entries) {
        let _ = set.len();
        let _ = set.nth(set.len() / 2);
    }
});
