//! Our CRDs are a superset of Spiderpool's: every field path of Spiderpool v1.2.2's four kinds
//! (kept as data in `tests/data/spiderpool-v1.2.2-fields.txt`, written from its published CRDs)
//! is in our schema, so applying our CRDs over Spiderpool's (or the reverse) prunes no field of
//! a stored object. `drift.rs` ties `config/crd/` to the Rust types; this test reads the types'
//! CRDs directly.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::collections::BTreeSet;

use serde_json::Value;

/// Every path of an openAPIV3Schema, in the data file's notation (`.a.b[]`).
fn paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let p = format!("{prefix}.{name}");
            out.insert(p.clone());
            paths(sub, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        let p = format!("{prefix}[]");
        out.insert(p.clone());
        paths(items, &p, out);
    }
}

fn ours() -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    for crd in aipam_crds::all_crds() {
        let kind = crd.spec.names.kind.clone();
        for v in &crd.spec.versions {
            let schema = serde_json::to_value(
                v.schema
                    .as_ref()
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .unwrap(),
            )
            .unwrap();
            let mut found = BTreeSet::new();
            paths(&schema, "", &mut found);
            all.extend(found.into_iter().map(|p| format!("{kind} {p}")));
        }
    }
    all
}

fn spiderpool() -> Vec<String> {
    let text = include_str!("data/spiderpool-v1.2.2-fields.txt");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn every_spiderpool_field_is_in_our_crds() {
    let ours = ours();
    let theirs = spiderpool();
    assert!(
        theirs.len() > 60,
        "the data file lists {} paths",
        theirs.len()
    );
    let missing: Vec<&String> = theirs.iter().filter(|p| !ours.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "fields of Spiderpool v1.2.2 missing from our CRDs (applying ours over theirs would prune them):\n{}",
        missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_check_sees_a_missing_field() {
    let ours = ours();
    assert!(ours.contains("SpiderEndpoint .status.current.ips[].ipv4Pool"));
    assert!(!ours.contains("SpiderEndpoint .status.current.ips[].notAField"));
}
