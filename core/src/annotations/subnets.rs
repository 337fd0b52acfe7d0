//! `ipam.spidernet.io/subnet` and `ipam.spidernet.io/subnets`: SpiderSubnets to make an
//! application's automatic pool from.

use std::collections::BTreeMap;

use serde_json::Value;

use super::interface::interface_field;
use super::json::{family, known_fields, parse_json};
use super::pools::{check_interfaces, parse_entry_list, pool_json, with_ignored};
use super::{AnnotationError, PoolRequest, ANNO_SUBNET, ANNO_SUBNETS};
use crate::names::is_dns1123_subdomain;

/// One interface's SpiderSubnet request. Spiderpool uses only the first subnet of each family.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct SubnetRequest {
    pub interface: Option<String>,
    pub ipv4: Vec<String>,
    pub ipv6: Vec<String>,
}

/// Checks a SpiderSubnet name (a Kubernetes object name; no wildcards).
fn validate_subnet_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty subnet name".to_string());
    }
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid subnet name: a SpiderSubnet name is a lowercase RFC 1123 \
             subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter \
             or digit, at most 253 characters); wildcards are not supported for subnets"
        ))
    }
}

const SUBNET_FIELDS: &[&str] = &["interface", "ipv4", "ipv6"];
const SUBNETS_EMPTY: &str = "subnet list is empty: name at least one IPv4 or IPv6 subnet";

fn subnet_request_from_object(
    v: &Value,
    entry: bool,
    warn: &mut Vec<String>,
) -> Result<SubnetRequest, String> {
    let Value::Object(obj) = v else {
        return Err(if entry {
            "must be an object like {\"interface\": \"eth0\", \"ipv4\": [\"subnet-a\"]}".to_string()
        } else {
            "must be a JSON object like {\"ipv4\": [\"subnet-a\"], \"ipv6\": [\"subnet-b\"]}"
                .to_string()
        });
    };
    let before = warn.len();
    let obj = &known_fields(obj, SUBNET_FIELDS, &[], warn);
    let interface = interface_field(obj)?;
    let ipv4 = first_subnet(obj, "ipv4", "IPv4", warn)?;
    let ipv6 = first_subnet(obj, "ipv6", "IPv6", warn)?;
    if ipv4.is_empty() && ipv6.is_empty() {
        return Err(with_ignored(SUBNETS_EMPTY.to_string(), &warn[before..]));
    }
    Ok(SubnetRequest {
        interface,
        ipv4,
        ipv6,
    })
}

/// The subnet list of one family, cut to its first name: Spiderpool uses only that one and
/// ignores (does not check) the others.
fn first_subnet(
    obj: &serde_json::Map<String, Value>,
    field: &str,
    label: &str,
    warn: &mut Vec<String>,
) -> Result<Vec<String>, String> {
    let Some(Value::Array(items)) = obj.get(field) else {
        return family(obj, field, None, "subnet", validate_subnet_name, warn);
    };
    if items.len() <= 1 {
        return family(obj, field, None, "subnet", validate_subnet_name, warn);
    }
    let mut first = obj.clone();
    first.insert(field.to_string(), Value::Array(items[..1].to_vec()));
    let kept = family(&first, field, None, "subnet", validate_subnet_name, warn)?;
    let rest: Vec<String> = items[1..].iter().map(Value::to_string).collect();
    warn.push(format!(
        "only the first {label} subnet is used, as in Spiderpool; {} ignored",
        rest.join(", ")
    ));
    Ok(kept)
}

/// Parses `ipam.spidernet.io/subnet`: `{"interface"?, "ipv4": [...], "ipv6": [...]}`.
/// Spiderpool uses the first subnet of each family, and `eth0` when no interface is named.
pub fn parse_subnet(value: &str) -> Result<SubnetRequest, AnnotationError> {
    parse_subnet_noting(value, &mut Vec::new())
}

/// [`parse_subnet`], adding to `warn` what is accepted but probably not meant.
pub fn parse_subnet_noting(
    value: &str,
    warn: &mut Vec<String>,
) -> Result<SubnetRequest, AnnotationError> {
    let v = parse_json(ANNO_SUBNET, value, "{\"ipv4\": [\"subnet-a\"]}")?;
    let mut notes = Vec::new();
    let r = subnet_request_from_object(&v, false, &mut notes)
        .map_err(|p| AnnotationError::new(ANNO_SUBNET, p))?;
    warn.extend(
        notes
            .into_iter()
            .map(|n| format!("annotation {ANNO_SUBNET}: {n}")),
    );
    Ok(r)
}

/// Parses `ipam.spidernet.io/subnets`: a non-empty JSON list; every entry names its
/// interface; no interface twice; no (first) subnet shared by two interfaces.
pub fn parse_subnets(value: &str) -> Result<Vec<SubnetRequest>, AnnotationError> {
    parse_subnets_noting(value, &mut Vec::new())
}

/// [`parse_subnets`], adding to `warn` what is accepted but probably not meant.
pub fn parse_subnets_noting(
    value: &str,
    warn: &mut Vec<String>,
) -> Result<Vec<SubnetRequest>, AnnotationError> {
    let key = ANNO_SUBNETS;
    let out = parse_entry_list(
        key,
        value,
        "[{\"interface\": \"eth0\", \"ipv4\": [\"subnet-a\"]}]",
        |item, w| subnet_request_from_object(item, true, w),
        warn,
    )?;
    check_interfaces(
        out.iter()
            .enumerate()
            .map(|(i, r)| (i + 1, r.interface.as_deref())),
        false,
    )
    .map_err(|p| AnnotationError::new(key, p))?;
    let families: [fn(&SubnetRequest) -> Option<String>; 2] =
        [|r| r.ipv4.first().cloned(), |r| r.ipv6.first().cloned()];
    for fam in families {
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for r in &out {
            let (Some(s), Some(i)) = (fam(r), r.interface.clone()) else {
                continue;
            };
            if let Some(first) = owner.insert(s.clone(), i.clone()) {
                return Err(AnnotationError::new(
                    key,
                    format!(
                        "subnet `{s}` is used by two interfaces (`{first}` and `{i}`): each \
                         interface needs its own subnet"
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// `ipam.spidernet.io/subnet` JSON for a request.
pub fn format_subnet(req: &SubnetRequest) -> String {
    subnet_json(req).to_string()
}

/// `ipam.spidernet.io/subnets` JSON for a list of requests.
pub fn format_subnets(reqs: &[SubnetRequest]) -> String {
    Value::Array(reqs.iter().map(subnet_json).collect()).to_string()
}

fn subnet_json(req: &SubnetRequest) -> Value {
    pool_json(
        &PoolRequest {
            interface: req.interface.clone(),
            ipv4: req.ipv4.clone(),
            ipv6: req.ipv6.clone(),
            clean_gateway: None,
        },
        false,
    )
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::strs;

    #[test]
    fn subnet_and_subnets() {
        let sr = |i: Option<&str>, v4: &[&str], v6: &[&str]| SubnetRequest {
            interface: i.map(str::to_string),
            ipv4: strs(v4),
            ipv6: strs(v6),
        };
        assert_eq!(
            parse_subnet(r#"{"ipv4":["s4"],"ipv6":["s6"]}"#),
            Ok(sr(None, &["s4"], &["s6"]))
        );
        // Spiderpool uses the first subnet of a family and does not look at the others.
        let mut w = Vec::new();
        assert_eq!(
            parse_subnet_noting(r#"{"interface":"net1","ipv4":["s4","S_5"]}"#, &mut w),
            Ok(sr(Some("net1"), &["s4"], &[]))
        );
        assert_eq!(
            w,
            ["annotation ipam.spidernet.io/subnet: only the first IPv4 subnet is used, as in Spiderpool; \"S_5\" ignored"]
        );
        assert_eq!(
            parse_subnets(
                r#"[{"interface":"eth0","ipv4":["a"]},{"interface":"net1","ipv4":["b"],"ipv6":["c"]}]"#
            ),
            Ok(vec![
                sr(Some("eth0"), &["a"], &[]),
                sr(Some("net1"), &["b"], &["c"])
            ])
        );
        let s1 = "annotation ipam.spidernet.io/subnet: ";
        let sn = "annotation ipam.spidernet.io/subnets: ";
        let cases: Vec<(Result<(), AnnotationError>, String)> = vec![
            (
                parse_subnet("{}").map(drop),
                format!("{s1}subnet list is empty: name at least one IPv4 or IPv6 subnet"),
            ),
            (
                parse_subnet(r#"{"ipv4pools":["s"]}"#).map(drop),
                format!("{s1}subnet list is empty: name at least one IPv4 or IPv6 subnet (unknown field `ipv4pools` ignored, as Spiderpool ignores it (the fields are `interface`, `ipv4`, `ipv6`))"),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s"]},{"interface":"net1","ipv4":["s"]}]"#).map(drop),
                format!("{sn}subnet `s` is used by two interfaces (`eth0` and `net1`): each interface needs its own subnet"),
            ),
            (
                parse_subnets(r#"[{"ipv4":["s"]}]"#).map(drop),
                format!("{sn}entry 1 has no `interface`: every entry must name its interface"),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s*"]}]"#).map(drop),
                format!(
                    "{sn}entry 1: `ipv4`: `s*` is not a valid subnet name: a SpiderSubnet name is a \
                     lowercase RFC 1123 subdomain (lowercase letters, digits, '-' and '.', starting \
                     and ending with a letter or digit, at most 253 characters); wildcards are not \
                     supported for subnets"
                ),
            ),
            (
                parse_subnets(r#"[{"interface":"eth0","ipv4":["s"]},{"interface":"eth0","ipv6":["t"]}]"#).map(drop),
                format!("{sn}interface `eth0` appears twice"),
            ),
            (
                parse_subnets("[]").map(drop),
                format!(r#"{sn}the list is empty: add one entry per interface, e.g. [{{"interface": "eth0", "ipv4": ["subnet-a"]}}]"#),
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
    }
}
