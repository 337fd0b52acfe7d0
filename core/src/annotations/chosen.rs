//! Chosen addresses (ours; Spiderpool has no such annotation): a Pod, or a workload template
//! for one replica, asks for specific addresses; a StatefulSet gives one per ordinal.
//!
//! - `aipam.io/ip-address`: `"10.6.0.5"` or `"10.6.0.5,fd00:6::5"` for the Pod's first
//!   interface, or a JSON object per interface: `{"eth0": ["10.6.0.5"], "net1": ["10.7.0.9"]}`.
//! - `aipam.io/ip-address-by-ordinal`: a JSON list, entry `i` for the StatefulSet Pod of ordinal
//!   `i`, each in the plain form: `["10.6.0.5", "10.6.0.6,fd00:6::6"]`.
//!
//! At most one address per interface and family. Which pool an address comes from is decided
//! at admission: the first candidate pool of that interface that can hand it out.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

use super::json::parse_json;
use super::AnnotationError;
use crate::ranges::IpFamily;

/// The Pod annotation naming the addresses a Pod asks for.
pub const ANNO_IP_ADDRESS: &str = "aipam.io/ip-address";
/// The Pod (template) annotation naming one address per StatefulSet ordinal.
pub const ANNO_IP_ADDRESS_BY_ORDINAL: &str = "aipam.io/ip-address-by-ordinal";

/// The key under which the plain form's addresses are listed: the Pod's first interface, whose
/// name the caller knows.
pub const FIRST_INTERFACE: &str = "";

/// Addresses asked for, by interface ([`FIRST_INTERFACE`] for the plain form), at most one per
/// family each.
pub type ChosenAddresses = BTreeMap<String, Vec<IpAddr>>;

/// The addresses a Pod asks for. `stateful_ordinal` is the Pod's ordinal when it belongs to a
/// StatefulSet (the number after the last `-` of its name); the by-ordinal list is read only
/// then. Empty when the Pod asks for none.
pub fn chosen_addresses(
    annotations: &BTreeMap<String, String>,
    stateful_ordinal: Option<usize>,
) -> Result<ChosenAddresses, AnnotationError> {
    let direct = annotations.get(ANNO_IP_ADDRESS);
    let by_ordinal = annotations.get(ANNO_IP_ADDRESS_BY_ORDINAL);
    if direct.is_some() && by_ordinal.is_some() {
        return Err(AnnotationError::new(
            ANNO_IP_ADDRESS,
            format!("both {ANNO_IP_ADDRESS} and {ANNO_IP_ADDRESS_BY_ORDINAL} are set: keep one"),
        ));
    }
    if let Some(v) = direct {
        return parse_ip_address(v);
    }
    let (Some(v), Some(ordinal)) = (by_ordinal, stateful_ordinal) else {
        return Ok(ChosenAddresses::new());
    };
    let key = ANNO_IP_ADDRESS_BY_ORDINAL;
    let list = parse_json(key, v, "[\"10.6.0.5\", \"10.6.0.6\"]")?;
    let Value::Array(items) = list else {
        return Err(AnnotationError::new(
            key,
            "must be a JSON list, one entry per ordinal, e.g. [\"10.6.0.5\", \"10.6.0.6\"]",
        ));
    };
    let Some(entry) = items.get(ordinal) else {
        return Err(AnnotationError::new(
            key,
            format!(
                "the list has {} entr{} but this Pod's ordinal is {ordinal}: add an address for \
                 every replica",
                items.len(),
                if items.len() == 1 { "y" } else { "ies" }
            ),
        ));
    };
    let Value::String(text) = entry else {
        return Err(AnnotationError::new(
            key,
            format!("entry {ordinal} must be a string such as \"10.6.0.5\""),
        ));
    };
    let addrs =
        plain(text).map_err(|p| AnnotationError::new(key, format!("entry {ordinal}: {p}")))?;
    Ok([(FIRST_INTERFACE.to_string(), addrs)].into())
}

fn parse_ip_address(value: &str) -> Result<ChosenAddresses, AnnotationError> {
    let key = ANNO_IP_ADDRESS;
    if !value.trim_start().starts_with('{') {
        let addrs = plain(value).map_err(|p| AnnotationError::new(key, p))?;
        return Ok([(FIRST_INTERFACE.to_string(), addrs)].into());
    }
    let v = parse_json(key, value, "{\"eth0\": [\"10.6.0.5\"]}")?;
    let Value::Object(obj) = v else {
        return Err(AnnotationError::new(key, "must be a JSON object"));
    };
    let mut out = ChosenAddresses::new();
    for (iface, list) in obj {
        super::validate_interface_name(&iface).map_err(|p| AnnotationError::new(key, p))?;
        let Value::Array(items) = list else {
            return Err(AnnotationError::new(
                key,
                format!("`{iface}` must be a list of addresses, e.g. [\"10.6.0.5\"]"),
            ));
        };
        let mut addrs = Vec::new();
        for item in items {
            let Value::String(s) = item else {
                return Err(AnnotationError::new(
                    key,
                    format!("`{iface}`: every address must be a string"),
                ));
            };
            addrs.push(
                address(&s).map_err(|p| AnnotationError::new(key, format!("`{iface}`: {p}")))?,
            );
        }
        one_per_family(&addrs).map_err(|p| AnnotationError::new(key, format!("`{iface}`: {p}")))?;
        out.insert(iface, addrs);
    }
    Ok(out)
}

/// `"a"` or `"a,b"`: one address, or one of each family.
fn plain(text: &str) -> Result<Vec<IpAddr>, String> {
    let addrs = text
        .split(',')
        .map(address)
        .collect::<Result<Vec<_>, _>>()?;
    one_per_family(&addrs)?;
    Ok(addrs)
}

fn address(text: &str) -> Result<IpAddr, String> {
    let t = text.trim();
    t.parse().map_err(|_| {
        format!("{t:?} is not an IP address: write a plain address such as 10.6.0.5 or fd00:6::5")
    })
}

fn one_per_family(addrs: &[IpAddr]) -> Result<(), String> {
    if addrs.is_empty() {
        return Err("no address is given".to_string());
    }
    for f in [IpFamily::V4, IpFamily::V6] {
        let of: Vec<String> = addrs
            .iter()
            .filter(|a| IpFamily::of(a) == f)
            .map(IpAddr::to_string)
            .collect();
        if of.len() > 1 {
            return Err(format!(
                "{} {f} addresses are given ({}): an interface gets one address per family",
                of.len(),
                of.join(", ")
            ));
        }
    }
    Ok(())
}

/// A StatefulSet Pod's ordinal: the number after the last `-` of its name.
pub fn stateful_ordinal(pod_name: &str) -> Option<usize> {
    pod_name.rsplit_once('-')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::{annos, err_text};

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn plain_and_per_interface_forms() {
        let a = annos(&[(ANNO_IP_ADDRESS, "10.6.0.5, fd00:6::5")]);
        assert_eq!(
            chosen_addresses(&a, None),
            Ok([("".to_string(), vec![ip("10.6.0.5"), ip("fd00:6::5")])].into())
        );
        let a = annos(&[(ANNO_IP_ADDRESS, r#"{"net1": ["10.7.0.9"]}"#)]);
        assert_eq!(
            chosen_addresses(&a, None),
            Ok([("net1".to_string(), vec![ip("10.7.0.9")])].into())
        );
        assert_eq!(
            chosen_addresses(&annos(&[]), Some(3)),
            Ok(ChosenAddresses::new())
        );
    }

    #[test]
    fn a_statefulset_takes_the_entry_of_its_ordinal() {
        let a = annos(&[(
            ANNO_IP_ADDRESS_BY_ORDINAL,
            r#"["10.6.0.5", "10.6.0.6,fd00::6"]"#,
        )]);
        assert_eq!(
            chosen_addresses(&a, Some(1)),
            Ok([("".to_string(), vec![ip("10.6.0.6"), ip("fd00::6")])].into())
        );
        // Not a StatefulSet Pod: the list is not read.
        assert_eq!(chosen_addresses(&a, None), Ok(ChosenAddresses::new()));
        assert_eq!(
            err_text(chosen_addresses(&a, Some(2))),
            "annotation aipam.io/ip-address-by-ordinal: the list has 2 entries but this Pod's ordinal is 2: add an address for every replica"
        );
        assert_eq!(stateful_ordinal("db-12"), Some(12));
        assert_eq!(stateful_ordinal("db"), None);
    }

    #[test]
    fn bad_input_says_what_to_write() {
        let cases = [
            ("10.6.0.x", "annotation aipam.io/ip-address: \"10.6.0.x\" is not an IP address: write a plain address such as 10.6.0.5 or fd00:6::5"),
            ("10.6.0.5,10.6.0.6", "annotation aipam.io/ip-address: 2 IPv4 addresses are given (10.6.0.5, 10.6.0.6): an interface gets one address per family"),
            (r#"{"eth0": "10.6.0.5"}"#, "annotation aipam.io/ip-address: `eth0` must be a list of addresses, e.g. [\"10.6.0.5\"]"),
            (r#"{"eth0": []}"#, "annotation aipam.io/ip-address: `eth0`: no address is given"),
        ];
        for (v, want) in cases {
            assert_eq!(
                err_text(chosen_addresses(&annos(&[(ANNO_IP_ADDRESS, v)]), None)),
                want,
                "{v}"
            );
        }
        let both = annos(&[
            (ANNO_IP_ADDRESS, "10.6.0.5"),
            (ANNO_IP_ADDRESS_BY_ORDINAL, "[]"),
        ]);
        assert!(err_text(chosen_addresses(&both, Some(0))).contains("keep one"));
    }
}
