//! Multus: `k8s.v1.cni.cncf.io/networks` and `v1.multus-cni.io/default-network`, in the text
//! form `namespace/name@interface` and the JSON form.

use std::collections::BTreeSet;

use serde_json::Value;

use super::json::{opt_string, parse_json};
use super::{validate_interface_name, AnnotationError, MULTUS_DEFAULT_NETWORK, MULTUS_NETWORKS};
use crate::names::{is_dns1123_label, is_dns1123_subdomain};

/// One network named by a Multus annotation. `namespace: None` means Multus's default: the
/// Pod's namespace for [`MULTUS_NETWORKS`], Multus's own namespace (usually `kube-system`) for
/// [`MULTUS_DEFAULT_NETWORK`]. `interface: None` means Multus names it (`net1`, `net2`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkSelection {
    pub namespace: Option<String>,
    pub name: String,
    pub interface: Option<String>,
}

/// Multus's test for the JSON form: the value contains `[`, `{` or `"`.
fn is_multus_json(value: &str) -> bool {
    value.contains(['[', '{', '"'])
}

fn multus_json(key: &str, value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let example =
        "[{\"name\": \"macvlan-conf\", \"namespace\": \"default\", \"interface\": \"net1\"}]";
    let v = parse_json(key, value, example)?;
    let Value::Array(items) = v else {
        return Err(AnnotationError::new(
            key,
            format!("the JSON form must be a list of networks, e.g. {example}"),
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let e = |p: String| AnnotationError::new(key, format!("entry {n}: {p}"));
        let Value::Object(obj) = item else {
            return Err(e(format!(
                "must be an object like {}",
                &example[1..example.len() - 1]
            )));
        };
        // Multus defines many more fields (ips, mac, default-route, cni-args, …); they are not
        // the IPAM's business and are left alone.
        let name = opt_string(obj, "name", "\"macvlan-conf\"")
            .map_err(e)?
            .ok_or_else(|| {
                e("`name` is missing: write the NetworkAttachmentDefinition's name".into())
            })?;
        if !is_dns1123_subdomain(&name) {
            return Err(e(format!(
                "`name` `{name}` is not a valid NetworkAttachmentDefinition name (a lowercase RFC \
                 1123 subdomain)"
            )));
        }
        let namespace = opt_string(obj, "namespace", "\"default\"").map_err(e)?;
        if let Some(ns) = &namespace {
            if !is_dns1123_label(ns) {
                return Err(e(format!(
                    "`namespace` `{ns}` is not a valid namespace name (a lowercase RFC 1123 label)"
                )));
            }
        }
        let mut interface = opt_string(obj, "interface", "\"net1\"").map_err(e)?;
        if interface.is_none() {
            // Deprecated Multus spelling, still honoured by Multus.
            interface = opt_string(obj, "interfaceRequest", "\"net1\"").map_err(e)?;
        }
        if let Some(i) = &interface {
            validate_interface_name(i).map_err(e)?;
        }
        out.push(NetworkSelection {
            namespace,
            name,
            interface,
        });
    }
    Ok(out)
}

const MULTUS_ITEM_RULE: &str = "must consist of lowercase alphanumeric characters or '-', and \
                                start and end with an alphanumeric character (Multus's rule for \
                                the `namespace/name@interface` form; use the JSON form for other \
                                names)";

fn multus_item(key: &str, n: usize, raw: &str) -> Result<NetworkSelection, AnnotationError> {
    let item = raw.trim();
    let e = |p: String| AnnotationError::new(key, format!("item {n} `{item}`: {p}"));
    if item.is_empty() {
        return Err(AnnotationError::new(
            key,
            format!("item {n} is empty: remove the extra comma, or name a network there"),
        ));
    }
    let slash: Vec<&str> = item.split('/').collect();
    let (namespace, rest) = match slash.as_slice() {
        [rest] => (None, *rest),
        [ns, rest] => (Some(ns.trim()), *rest),
        _ => {
            return Err(e(
                "more than one '/': write `namespace/name@interface`".to_string()
            ))
        }
    };
    let at: Vec<&str> = rest.split('@').collect();
    let (name, interface) = match at.as_slice() {
        [name] => (name.trim(), None),
        [name, iface] => (name.trim(), Some(iface.trim())),
        _ => {
            return Err(e(
                "more than one '@': write `namespace/name@interface`".to_string()
            ))
        }
    };
    if namespace == Some("") {
        return Err(e("the namespace before '/' is empty".to_string()));
    }
    if name.is_empty() {
        return Err(e("the network name is empty".to_string()));
    }
    if interface == Some("") {
        return Err(e("the interface after '@' is empty".to_string()));
    }
    for (what, part) in [
        ("namespace", namespace),
        ("network name", Some(name)),
        ("interface", interface),
    ] {
        if let Some(p) = part {
            if !is_dns1123_label(p) {
                return Err(e(format!("{what} `{p}` {MULTUS_ITEM_RULE}")));
            }
        }
    }
    if let Some(i) = interface {
        validate_interface_name(i).map_err(e)?;
    }
    Ok(NetworkSelection {
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
        interface: interface.map(str::to_string),
    })
}

fn multus_any(key: &str, value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    if value.trim().is_empty() {
        return Err(AnnotationError::new(
            key,
            "the value is empty: name networks as `namespace/name@interface`, comma-separated, \
             or as a JSON list like [{\"name\": \"macvlan-conf\"}]",
        ));
    }
    if is_multus_json(value) {
        return multus_json(key, value);
    }
    value
        .split(',')
        .enumerate()
        .map(|(i, item)| multus_item(key, i + 1, item))
        .collect()
}

/// Parses `k8s.v1.cni.cncf.io/networks`, either `ns/name@iface, name, …` or a JSON list of
/// network selection elements (`name`, `namespace`, `interface`; other Multus fields are
/// ignored). No interface may be requested twice.
pub fn parse_multus_networks(value: &str) -> Result<Vec<NetworkSelection>, AnnotationError> {
    let key = MULTUS_NETWORKS;
    let nets = multus_any(key, value)?;
    let mut seen = BTreeSet::new();
    for n in &nets {
        if let Some(i) = &n.interface {
            if !seen.insert(i.as_str()) {
                return Err(AnnotationError::new(
                    key,
                    format!("interface `{i}` appears twice"),
                ));
            }
        }
    }
    Ok(nets)
}

/// Parses `v1.multus-cni.io/default-network`: exactly one network, either form.
pub fn parse_multus_default_network(value: &str) -> Result<NetworkSelection, AnnotationError> {
    let key = MULTUS_DEFAULT_NETWORK;
    let mut nets = multus_any(key, value)?;
    match nets.len() {
        1 => Ok(nets.remove(0)),
        0 => Err(AnnotationError::new(
            key,
            "no network is named: write exactly one, e.g. `kube-system/calico`",
        )),
        n => Err(AnnotationError::new(
            key,
            format!("{n} networks are named: the default network is exactly one"),
        )),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::err_text;

    #[test]
    fn multus_table() {
        let ns = |n: Option<&str>, name: &str, i: Option<&str>| NetworkSelection {
            namespace: n.map(str::to_string),
            name: name.to_string(),
            interface: i.map(str::to_string),
        };
        let good: Vec<(&str, Vec<NetworkSelection>)> = vec![
            ("macvlan", vec![ns(None, "macvlan", None)]),
            (
                "ns1/macvlan@net1, other",
                vec![
                    ns(Some("ns1"), "macvlan", Some("net1")),
                    ns(None, "other", None),
                ],
            ),
            (
                r#"[{"name":"m","interface":"net1"},{"name":"n.x","namespace":"x","interfaceRequest":"net2"}]"#,
                vec![
                    ns(None, "m", Some("net1")),
                    ns(Some("x"), "n.x", Some("net2")),
                ],
            ),
            (
                r#"[{"name":"a","ips":["1.2.3.4/24"],"mac":"c2:11:22:33:44:55","default-route":["1.1.1.1"]}]"#,
                vec![ns(None, "a", None)],
            ),
            ("[]", vec![]),
        ];
        for (v, want) in good {
            assert_eq!(parse_multus_networks(v), Ok(want), "{v}");
        }
        let rule = "must consist of lowercase alphanumeric characters or '-', and start and end \
                    with an alphanumeric character (Multus's rule for the \
                    `namespace/name@interface` form; use the JSON form for other names)";
        let bad: Vec<(&str, String)> = vec![
            ("a/b/c", "item 1 `a/b/c`: more than one '/': write `namespace/name@interface`".into()),
            ("a@b@c", "item 1 `a@b@c`: more than one '@': write `namespace/name@interface`".into()),
            ("x, Mac", format!("item 2 `Mac`: network name `Mac` {rule}")),
            ("a@eth0.100", format!("item 1 `a@eth0.100`: interface `eth0.100` {rule}")),
            ("a,,b", "item 2 is empty: remove the extra comma, or name a network there".into()),
            ("a,", "item 2 is empty: remove the extra comma, or name a network there".into()),
            ("/a", "item 1 `/a`: the namespace before '/' is empty".into()),
            ("a@", "item 1 `a@`: the interface after '@' is empty".into()),
            ("ns/@x", "item 1 `ns/@x`: the network name is empty".into()),
            (
                "a@averyveryverylongname",
                "item 1 `a@averyveryverylongname`: interface name `averyveryverylongname` is \
                 longer than 15 characters (Linux limit)"
                    .into(),
            ),
            (
                "",
                r#"the value is empty: name networks as `namespace/name@interface`, comma-separated, or as a JSON list like [{"name": "macvlan-conf"}]"#.into(),
            ),
            (
                r#"[{"namespace":"x"}]"#,
                "entry 1: `name` is missing: write the NetworkAttachmentDefinition's name".into(),
            ),
            (
                r#"{"name":"x"}"#,
                r#"the JSON form must be a list of networks, e.g. [{"name": "macvlan-conf", "namespace": "default", "interface": "net1"}]"#.into(),
            ),
            ("a@net1,b@net1", "interface `net1` appears twice".into()),
            (
                r#"[{"name":"Bad"}]"#,
                "entry 1: `name` `Bad` is not a valid NetworkAttachmentDefinition name (a \
                 lowercase RFC 1123 subdomain)"
                    .into(),
            ),
            (
                r#"[{"name":"a","namespace":"a.b"}]"#,
                "entry 1: `namespace` `a.b` is not a valid namespace name (a lowercase RFC 1123 \
                 label)"
                    .into(),
            ),
            (r#"[{"name":"a""#, "invalid JSON at line 1 column 12: EOF while parsing an object".into()),
        ];
        for (v, problem) in bad {
            assert_eq!(
                err_text(parse_multus_networks(v)),
                format!("annotation k8s.v1.cni.cncf.io/networks: {problem}"),
                "{v}"
            );
        }
    }

    #[test]
    fn multus_default_table() {
        assert_eq!(
            parse_multus_default_network("kube-system/calico"),
            Ok(NetworkSelection {
                namespace: Some("kube-system".into()),
                name: "calico".into(),
                interface: None
            })
        );
        assert_eq!(
            parse_multus_default_network(r#"[{"name":"calico"}]"#).map(|n| n.name),
            Ok("calico".to_string())
        );
        let k = "annotation v1.multus-cni.io/default-network: ";
        assert_eq!(
            err_text(parse_multus_default_network("a,b")),
            format!("{k}2 networks are named: the default network is exactly one")
        );
        assert_eq!(
            err_text(parse_multus_default_network("[]")),
            format!("{k}no network is named: write exactly one, e.g. `kube-system/calico`")
        );
    }
}
