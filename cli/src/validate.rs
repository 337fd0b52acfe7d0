//! `aipamctl validate`: the webhook's rules, offline, over a set of manifests.
//!
//! Each SpiderIPPool, SpiderSubnet and SpiderReservedIP is checked on its own and against the
//! others given (overlaps); Namespaces, workloads and the `spiderpool-conf` ConfigMap have
//! their IPAM annotations and settings read with the same codecs the webhook uses. Fields that
//! Kubernetes would silently drop (a typo such as `namesapceSelector`) are reported.

use std::collections::BTreeMap;

use aipam_core::annotations::{namespace_defaults, pod_ipam_annotations};
use aipam_core::config::{IpamConfig, CONFIGMAP_NAME};
use aipam_core::validate::Catalog;
use aipam_crds::convert::{pool_draft, reserved_ip_draft, subnet_draft};
use aipam_crds::{SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::manifests::{string_map, Document};

const GROUP: &str = "spiderpool.spidernet.io";

/// The verdict on one object.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// `file (document N)`.
    pub location: String,
    /// The object's kind.
    pub kind: String,
    /// The object's name.
    pub name: String,
    /// Problems that make the object unacceptable.
    pub errors: Vec<String>,
    /// Things worth a look that do not fail validation.
    pub warnings: Vec<String>,
    /// A one-line summary when valid (e.g. the number of addresses).
    pub summary: String,
}

impl Finding {
    fn new(doc: &Document) -> Finding {
        let (_, kind, name) = doc.identity();
        Finding {
            location: doc.location(),
            kind,
            name,
            errors: Vec::new(),
            warnings: Vec::new(),
            summary: String::new(),
        }
    }
}

/// The verdict on a whole set.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// One entry per object checked, in input order.
    pub findings: Vec<Finding>,
    /// Documents of kinds this tool does not check.
    pub skipped: usize,
}

impl Report {
    /// Objects with errors.
    pub fn invalid(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.errors.is_empty())
            .count()
    }
}

/// Paths present in `input` but not in `typed` (what the API server would prune).
fn dropped_fields(input: &serde_json::Value, typed: &serde_json::Value, path: &str) -> Vec<String> {
    use serde_json::Value;
    let mut out = Vec::new();
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    Some(w) => out.extend(dropped_fields(v, w, &p)),
                    None if v.is_null() => {}
                    None => out.push(p),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (v, w)) in a.iter().zip(b.iter()).enumerate() {
                out.extend(dropped_fields(v, w, &format!("{path}[{i}]")));
            }
        }
        _ => {}
    }
    out
}

/// Deserialises into the typed object and lists fields the type does not know.
fn typed<T: DeserializeOwned + Serialize>(doc: &Document, f: &mut Finding) -> Option<T> {
    match serde_json::from_value::<T>(doc.value.clone()) {
        Ok(obj) => {
            // Status and server-set metadata are not the user's to write; ignore them.
            let mut input = doc.value.clone();
            if let Some(o) = input.as_object_mut() {
                o.remove("status");
            }
            if let Some(m) = input.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for k in [
                    "managedFields",
                    "resourceVersion",
                    "uid",
                    "creationTimestamp",
                    "generation",
                    "selfLink",
                ] {
                    m.remove(k);
                }
            }
            if let Ok(back) = serde_json::to_value(&obj) {
                for p in dropped_fields(&input, &back, "") {
                    f.errors.push(format!(
                        "unknown field {p}: the API server would drop it silently; check its spelling against the v2beta1 schema"
                    ));
                }
            }
            Some(obj)
        }
        Err(e) => {
            f.errors.push(format!("does not match the schema: {e}"));
            None
        }
    }
}

fn pod_template_annotations(doc: &Document) -> Option<BTreeMap<String, String>> {
    let (_, kind, _) = doc.identity();
    let pointer = match kind.as_str() {
        "Pod" => "/metadata/annotations",
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            "/spec/template/metadata/annotations"
        }
        "CronJob" => "/spec/jobTemplate/spec/template/metadata/annotations",
        _ => return None,
    };
    Some(string_map(doc.value.pointer(pointer)))
}

/// Pools referenced by a workload's or namespace's annotations.
fn referenced_pools(annos: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(a) = pod_ipam_annotations(annos) {
        for r in a.ippools.iter().flatten().chain(a.ippool.iter()) {
            out.extend(r.ipv4.iter().cloned());
            out.extend(r.ipv6.iter().cloned());
        }
    }
    if let Ok(d) = namespace_defaults(annos) {
        out.extend(d.ipv4.into_iter().flatten());
        out.extend(d.ipv6.into_iter().flatten());
    }
    out
}

/// Validates a set of documents.
pub fn validate(docs: &[Document]) -> Report {
    let mut catalog = Catalog::default();
    let mut findings = Vec::new();
    let mut skipped = 0;
    // Pools first-come: overlaps are reported on the later object, naming the earlier one.
    let mut references: Vec<(usize, Vec<String>)> = Vec::new();
    for doc in docs {
        let (api_version, kind, _) = doc.identity();
        let mut f = Finding::new(doc);
        let group = api_version.split('/').next().unwrap_or_default();
        if group == GROUP && api_version != format!("{GROUP}/v2beta1") {
            f.errors.push(format!(
                "apiVersion {api_version} is not served; write apiVersion {GROUP}/v2beta1 (kinds SpiderIPPool, SpiderSubnet, SpiderReservedIP; selectors podAffinity, namespaceAffinity, nodeAffinity)"
            ));
            findings.push(f);
            continue;
        }
        match (group, kind.as_str()) {
            (GROUP, "SpiderIPPool") => {
                if let Some(obj) = typed::<SpiderIPPool>(doc, &mut f) {
                    match pool_draft(&obj) {
                        Ok(d) => match catalog.add_pool(&d) {
                            Ok(warnings) => {
                                f.warnings.extend(warnings.iter().map(|w| w.to_string()));
                                if let Some(p) = catalog.pools.get(&d.name) {
                                    let reserved = catalog.reserved_set(p.family);
                                    f.summary = format!(
                                        "{} {}, {} allocatable address(es)",
                                        p.family,
                                        p.subnet,
                                        p.allocatable(&reserved).len()
                                    );
                                }
                            }
                            Err(e) => f.errors.extend(e.errors.iter().map(|e| e.to_string())),
                        },
                        Err(e) => f.errors.push(e.to_string()),
                    }
                }
            }
            (GROUP, "SpiderSubnet") => {
                if let Some(obj) = typed::<SpiderSubnet>(doc, &mut f) {
                    let d = subnet_draft(&obj);
                    match catalog.add_subnet(&d) {
                        Ok(warnings) => {
                            f.warnings.extend(warnings.iter().map(|w| w.to_string()));
                            if let Some(s) = catalog.subnets.get(&d.name) {
                                f.summary = format!(
                                    "{} {}, {} address(es)",
                                    s.family,
                                    s.subnet,
                                    s.ips.difference(&s.exclude_ips).len()
                                );
                            }
                        }
                        Err(e) => f.errors.extend(e.errors.iter().map(|e| e.to_string())),
                    }
                }
            }
            (GROUP, "SpiderReservedIP") => {
                if let Some(obj) = typed::<SpiderReservedIP>(doc, &mut f) {
                    let d = reserved_ip_draft(&obj);
                    match catalog.add_reserved(&d) {
                        Ok(()) => {
                            if let Some(r) = catalog.reserved.get(&d.name) {
                                f.summary = format!("{} {} reserved", r.family, r.ips);
                            }
                        }
                        Err(e) => f.errors.extend(e.errors.iter().map(|e| e.to_string())),
                    }
                }
            }
            (GROUP, other) => {
                f.warnings
                    .push(format!("kind {other} is not checked offline"));
            }
            ("v1", "Namespace") => {
                let annos = string_map(doc.value.pointer("/metadata/annotations"));
                match namespace_defaults(&annos) {
                    Ok(d) => {
                        f.warnings.extend(d.warnings.iter().cloned());
                        f.summary = match (&d.ipv4, &d.ipv6) {
                            (None, None) => "no default pools".to_string(),
                            (v4, v6) => format!(
                                "default pools IPv4 {:?}, IPv6 {:?}",
                                v4.clone().unwrap_or_default(),
                                v6.clone().unwrap_or_default()
                            ),
                        }
                    }
                    Err(e) => f.errors.push(e.to_string()),
                }
                references.push((findings.len(), referenced_pools(&annos)));
            }
            ("v1", "ConfigMap") if f.name == CONFIGMAP_NAME => {
                match IpamConfig::read(&string_map(doc.value.get("data"))) {
                    Ok(r) => {
                        f.warnings.extend(r.warnings);
                        let c = r.config;
                        f.summary = format!(
                            "IPv4 {}, IPv6 {}, cluster default pools {:?} / {:?}",
                            if c.enable_ipv4 { "on" } else { "off" },
                            if c.enable_ipv6 { "on" } else { "off" },
                            c.cluster_default_ipv4_ippool,
                            c.cluster_default_ipv6_ippool
                        )
                    }
                    Err(e) => f.errors.push(e.to_string()),
                }
            }
            _ => match pod_template_annotations(doc) {
                Some(annos) => {
                    match pod_ipam_annotations(&annos) {
                        Ok(a) => {
                            f.warnings.extend(a.warnings.iter().cloned());
                            f.summary = "IPAM annotations readable".to_string();
                        }
                        Err(e) => f.errors.push(e.to_string()),
                    }
                    // The by-ordinal list is checked as the first ordinal's Pod reads it.
                    if let Err(e) = aipam_core::annotations::chosen_addresses(&annos, Some(0)) {
                        f.errors.push(e.to_string());
                    }
                    references.push((findings.len(), referenced_pools(&annos)));
                }
                None => {
                    skipped += 1;
                    continue;
                }
            },
        }
        findings.push(f);
    }
    if !catalog.pools.is_empty() {
        for (i, names) in references {
            for n in names {
                if !aipam_core::annotations::is_wildcard(&n) && !catalog.pools.contains_key(&n) {
                    findings[i].warnings.push(format!(
                        "names pool {n}, which is not among the manifests given (fine if it exists in the cluster)"
                    ));
                }
            }
        }
    }
    Report { findings, skipped }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::manifests::{load_embedded, parse_text};

    fn run(text: &str) -> Report {
        validate(&parse_text("t.yaml", text).unwrap())
    }

    #[test]
    fn the_embedded_samples_are_valid() {
        let r = validate(&load_embedded().unwrap());
        let bad: Vec<_> = r.findings.iter().filter(|f| !f.errors.is_empty()).collect();
        assert!(bad.is_empty(), "{bad:#?}");
        let pools = r
            .findings
            .iter()
            .filter(|f| f.kind == "SpiderIPPool")
            .count();
        assert_eq!(pools, 8);
        let p6 = r
            .findings
            .iter()
            .find(|f| f.name == "test-ippool-6")
            .unwrap();
        assert_eq!(p6.summary, "IPv4 10.6.0.0/16, 10 allocatable address(es)");
        // team-a-v4: 100 addresses, one excluded, one reserved by SpiderReservedIP... which
        // comes later in the same file, so it is not counted yet at that point.
        let ta = r.findings.iter().find(|f| f.name == "team-a-v4").unwrap();
        assert_eq!(ta.summary, "IPv4 172.18.0.0/16, 99 allocatable address(es)");
    }

    #[test]
    fn overlapping_pools_across_documents_are_refused_naming_both() {
        let r = run(r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: a}
spec: {subnet: 10.0.0.0/24, ips: [10.0.0.10-10.0.0.20]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: b}
spec: {subnet: 10.0.0.0/24, ips: [10.0.0.20-10.0.0.30]}
"#);
        assert_eq!(r.invalid(), 1);
        let b = &r.findings[1];
        assert_eq!(b.name, "b");
        assert_eq!(
            b.errors,
            vec!["spec.ips: overlaps SpiderIPPool a on 1 address(es): 10.0.0.20"]
        );
        assert_eq!(b.location, "t.yaml (document 2)");
    }

    #[test]
    fn typos_that_kubernetes_would_drop_are_reported() {
        let r = run(r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: a}
spec:
  subnet: 172.18.0.0/16
  ips: [172.18.40.41-172.18.40.50]
  namesapceSelector:
    matchLabels: {foo: bar}
"#);
        assert_eq!(
            r.findings[0].errors,
            vec!["unknown field spec.namesapceSelector: the API server would drop it silently; check its spelling against the v2beta1 schema"]
        );
    }

    #[test]
    fn the_old_v1_api_is_refused_with_what_to_write() {
        let r = run(r#"
apiVersion: spiderpool.spidernet.io/v1
kind: IPPool
metadata: {name: default-v4-ippool}
spec: {ipVersion: IPv4, subnet: 172.18.0.0/16}
"#);
        assert!(
            r.findings[0].errors[0].contains("write apiVersion spiderpool.spidernet.io/v2beta1")
        );
    }

    #[test]
    fn spiderpool_conf_warnings_are_reported_without_failing() {
        let r = run(r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: spiderpool-conf, namespace: kube-system}
data:
  clusterNetwork: "{ not: yaml"
  conf.yml: |
    enableIPv4: yes
    enableKubevirtStaticIP: true
"#);
        assert_eq!(r.invalid(), 0, "{:?}", r.findings);
        let w = &r.findings[0].warnings;
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("enableIPv4: \"yes\" read as true"), "{w:?}");
        assert!(w[1].contains("KubeVirt"), "{w:?}");
        assert!(r.findings[0].summary.starts_with("IPv4 on"));
    }

    #[test]
    fn bad_annotations_on_workloads_name_the_key() {
        let r = run(r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
spec:
  template:
    metadata:
      annotations:
        ipam.spidernet.io/ippool: '{"ipv4": ["a",]}'
"#);
        assert_eq!(r.invalid(), 1);
        assert!(
            r.findings[0].errors[0].starts_with("annotation ipam.spidernet.io/ippool:"),
            "{:?}",
            r.findings[0].errors
        );
    }

    #[test]
    fn a_malformed_chosen_address_is_invalid() {
        let r = run(r#"
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: x, annotations: {aipam.io/ip-address: "10.0.0.1,10.0.0.2"}}
spec: {containers: [{name: c, image: i}]}
"#);
        assert_eq!(r.invalid(), 1);
        assert!(
            r.findings[0].errors[0].contains("2 IPv4 addresses are given"),
            "{:?}",
            r.findings[0]
        );
    }

    #[test]
    fn what_spiderpool_accepts_is_valid_with_warnings() {
        let r = run(r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: p}
spec: {subnet: 10.9.0.0/24, ips: [10.9.0.10], gateway: 10.9.0.255, nodeName: [n1, n1]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: d, namespace: x}
spec:
  template:
    metadata:
      annotations:
        ipam.spidernet.io/ippool: '{"ipv4": ["p"], "cleangateway": true}'
"#);
        assert_eq!(r.invalid(), 0, "{:?}", r.findings);
        assert_eq!(r.findings[0].warnings.len(), 2, "{:?}", r.findings[0]);
        assert!(
            r.findings[1].warnings[0].contains("unknown field `cleangateway` ignored"),
            "{:?}",
            r.findings[1]
        );
    }

    #[test]
    fn gateway_inside_the_range_and_out_of_subnet_addresses() {
        let r = run(r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: a}
spec:
  subnet: 10.6.0.0/16
  ips: [10.6.0.1-10.6.0.9, 10.7.0.1]
  gateway: 10.6.0.1
"#);
        let e = &r.findings[0].errors;
        assert!(
            e.contains(&"spec.ips[1]: 10.7.0.1 is not inside the subnet 10.6.0.0/16".to_string()),
            "{e:?}"
        );
        assert!(
            e.iter()
                .any(|m| m.starts_with("spec.gateway: 10.6.0.1 is inside spec.ips")),
            "{e:?}"
        );
    }
}
