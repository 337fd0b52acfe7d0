//! SpiderIPClaim (our own kind): serde shape, defaults, names.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use std::net::IpAddr;

use aipam_crds::{ClaimOwner, IpVersion, SpiderIPClaim, SpiderIPClaimSpec};
use serde_json::json;

fn spec() -> SpiderIPClaimSpec {
    SpiderIPClaimSpec {
        pool: "pool-a".into(),
        address: "10.0.0.7".into(),
        ip_version: IpVersion::V4,
        interface: "eth0".into(),
        namespace: "default".into(),
        pod_name: None,
        reservation: "r-123".into(),
        owner: None,
        provisional: false,
    }
}

#[test]
fn minimal_claim_serialises_without_nulls() {
    let claim = SpiderIPClaim::new("pool-a.10.0.0.7", spec());
    assert_eq!(
        serde_json::to_value(&claim).unwrap(),
        json!({
            "apiVersion": "spiderpool.spidernet.io/v2beta1",
            "kind": "SpiderIPClaim",
            "metadata": {"name": "pool-a.10.0.0.7"},
            "spec": {
                "pool": "pool-a",
                "address": "10.0.0.7",
                "ipVersion": 4,
                "interface": "eth0",
                "namespace": "default",
                "reservation": "r-123",
                "provisional": false
            }
        })
    );
}

#[test]
fn full_claim_round_trips() {
    let doc = json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPClaim",
        "metadata": {"name": "pool-b.fd00-0000-0000-0000-0000-0000-0000-0001"},
        "spec": {
            "pool": "pool-b",
            "address": "fd00::1",
            "ipVersion": 6,
            "interface": "net1",
            "namespace": "apps",
            "podName": "web-0",
            "reservation": "r-9",
            "owner": {"kind": "StatefulSet", "name": "web", "uid": "5f0e"},
            "provisional": true
        }
    });
    let claim: SpiderIPClaim = serde_json::from_value(doc.clone()).unwrap();
    assert_eq!(claim.spec.ip_version, IpVersion::V6);
    assert_eq!(
        claim.spec.owner,
        Some(ClaimOwner {
            kind: "StatefulSet".into(),
            name: "web".into(),
            uid: "5f0e".into()
        })
    );
    assert_eq!(serde_json::to_value(&claim).unwrap(), doc);
}

#[test]
fn defaults_when_absent_and_old_binding_fields_ignored() {
    // A claim as an earlier aipam wrote it (bound to the Pod's UID, with a status): it still
    // reads; the fields are gone from the schema, so the API server prunes them on the next
    // write.
    let claim: SpiderIPClaim = serde_json::from_value(json!({
        "apiVersion": "spiderpool.spidernet.io/v2beta1",
        "kind": "SpiderIPClaim",
        "metadata": {"name": "x"},
        "spec": {"pool": "p", "address": "10.0.0.1", "ipVersion": 4, "interface": "eth0",
                 "namespace": "n", "reservation": "r", "podUID": "u-1"},
        "status": {"phase": "Bound"}
    }))
    .unwrap();
    assert!(!claim.spec.provisional);
    assert_eq!(claim.spec.reservation, "r");
    assert_eq!(
        serde_json::to_value(&claim).unwrap()["spec"],
        json!({"pool": "p", "address": "10.0.0.1", "ipVersion": 4, "interface": "eth0",
               "namespace": "n", "reservation": "r", "provisional": false})
    );
}

#[test]
fn ip_version_is_4_or_6() {
    assert_eq!(serde_json::to_value(IpVersion::V4).unwrap(), json!(4));
    assert_eq!(
        serde_json::from_value::<IpVersion>(json!(6)).unwrap(),
        IpVersion::V6
    );
    assert!(serde_json::from_value::<IpVersion>(json!(5)).is_err());
    assert!(serde_json::from_value::<IpVersion>(json!("4")).is_err());
    assert_eq!(IpVersion::try_from(4u8), Ok(IpVersion::V4));
    assert_eq!(IpVersion::V6.to_string(), "6");
}

#[test]
fn claim_names() {
    let v4: IpAddr = "10.0.0.7".parse().unwrap();
    let v6: IpAddr = "FD00::1".parse().unwrap();
    let mapped: IpAddr = "::ffff:1.2.3.4".parse().unwrap();
    assert_eq!(
        SpiderIPClaim::name_for("pool-a", v4).unwrap(),
        "pool-a.10.0.0.7"
    );
    assert_eq!(
        SpiderIPClaim::name_for("pool-b", v6).unwrap(),
        "pool-b.fd00-0000-0000-0000-0000-0000-0000-0001"
    );
    assert_eq!(
        SpiderIPClaim::name_for("p", mapped).unwrap(),
        "p.0000-0000-0000-0000-0000-ffff-0102-0304"
    );
    // Distinct (pool, address) pairs never share a name, even when pool names contain dots.
    assert_ne!(
        SpiderIPClaim::name_for("a.1", "2.3.4.5".parse().unwrap()).unwrap(),
        SpiderIPClaim::name_for("a", "1.2.3.4".parse().unwrap()).unwrap()
    );
    // Every label of the name starts and ends with an alphanumeric (DNS-1123 subdomain).
    for name in [
        SpiderIPClaim::name_for("pool-b", v6).unwrap(),
        SpiderIPClaim::name_for("x", "::".parse().unwrap()).unwrap(),
    ] {
        assert!(name.len() <= 253);
        for label in name.split('.') {
            let b = label.as_bytes();
            assert!(!b.is_empty() && b.len() <= 63, "{name}");
            assert!(
                b[0].is_ascii_alphanumeric() && b[b.len() - 1].is_ascii_alphanumeric(),
                "{name}"
            );
            assert!(
                b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-'),
                "{name}"
            );
        }
    }
    assert!(SpiderIPClaim::name_for("", v4).is_err());
    // Over-long pool names are shortened with a hash, never refused.
    let long = SpiderIPClaim::name_for(&"a".repeat(250), v4).unwrap();
    assert!(long.len() <= 253 && long.ends_with(".10.0.0.7"), "{long}");
}
