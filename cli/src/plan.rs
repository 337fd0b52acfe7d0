//! `aipamctl plan`: which pool and address every Pod of a set of manifests would get, or why it
//! would be refused, without a cluster.
//!
//! The same rules as the webhook: interfaces from the Multus annotations and the
//! NetworkAttachmentDefinitions given, pool selection from `aipam-core`, addresses picked with
//! the webhook's picker, one after the other in manifest order so that pools fill up as they
//! would. Pods whose node is unknown at admission (Deployments, StatefulSets, Jobs) and whose
//! candidate pools are bound to nodes get one address per zone, as the webhook reserves them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use aipam_core::alloc::{pick, seed_from};
use aipam_core::config::{IpamConfig, CONFIGMAP_NAME};
use aipam_core::model::{NamespaceInfo, NodeInfo, Owner, PodInfo};
use aipam_core::network::pod_interfaces;
use aipam_core::ranges::IpFamily;
use aipam_core::reserve::{FamilyReservation, PoolMiss};
use aipam_core::select::{select, SelectionInput};
use aipam_core::usage::UsedIndex;
use aipam_core::validate::Catalog;
use aipam_crds::convert::{pool_draft, reserved_ip_draft, subnet_draft};
use aipam_crds::{SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use serde::Serialize;
use serde_json::Value;

use crate::manifests::{string_map, Document};
use crate::table::table;

/// One address of one interface.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PlannedAddress {
    /// The pool.
    pub pool: String,
    /// The address.
    pub address: IpAddr,
}

/// One interface of one Pod.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedInterface {
    /// Interface name.
    pub interface: String,
    /// The rule that chose its pools.
    pub rule: String,
    /// IPv4: one address, or one per zone when the node is unknown.
    pub ipv4: Vec<PlannedAddress>,
    /// IPv6, likewise.
    pub ipv6: Vec<PlannedAddress>,
}

/// One Pod.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedPod {
    /// Namespace.
    pub namespace: String,
    /// Name (workload Pods are numbered).
    pub pod: String,
    /// The workload it comes from, as `Kind/name`.
    pub workload: String,
    /// Node, when known at admission.
    pub node: Option<String>,
    /// What it gets.
    pub interfaces: Vec<PlannedInterface>,
    /// Why it would be refused.
    pub refused: Option<String>,
    /// Notes (ignored annotations...).
    pub notes: Vec<String>,
}

/// Pool usage after the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PoolUsage {
    /// Pool name.
    pub pool: String,
    /// Family.
    pub version: u8,
    /// Subnet.
    pub subnet: String,
    /// Addresses reserved by the plan.
    pub allocated: u128,
    /// Addresses the pool can hand out.
    pub total: u128,
}

/// The whole plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Pods in manifest order.
    pub pods: Vec<PlannedPod>,
    /// Pools in name order.
    pub pools: Vec<PoolUsage>,
    /// Objects that could not be used (invalid pools...), with why.
    pub skipped: Vec<String>,
}

struct World {
    config: IpamConfig,
    catalog: Catalog,
    namespaces: BTreeMap<String, NamespaceInfo>,
    nodes: Vec<NodeInfo>,
    nads: BTreeMap<(String, String), String>,
    skipped: Vec<String>,
}

fn namespace_info(
    name: &str,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
) -> NamespaceInfo {
    let mut labels = labels;
    labels.insert("kubernetes.io/metadata.name".to_string(), name.to_string());
    NamespaceInfo {
        name: name.to_string(),
        labels,
        annotations,
    }
}

fn load_world(docs: &[Document]) -> World {
    let mut w = World {
        config: IpamConfig::default(),
        catalog: Catalog::default(),
        namespaces: BTreeMap::new(),
        nodes: Vec::new(),
        nads: BTreeMap::new(),
        skipped: Vec::new(),
    };
    // Reserved IPs first: pools count their allocatable addresses against them.
    let mut ordered: Vec<&Document> = docs
        .iter()
        .filter(|d| d.identity().1 == "SpiderReservedIP")
        .collect();
    ordered.extend(docs.iter().filter(|d| d.identity().1 != "SpiderReservedIP"));
    for doc in ordered {
        let (_, kind, name) = doc.identity();
        let v = &doc.value;
        let result: Result<(), String> = match kind.as_str() {
            "SpiderIPPool" => serde_json::from_value::<SpiderIPPool>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|p| pool_draft(&p).map_err(|e| e.to_string()))
                .and_then(|d| w.catalog.add_pool(&d).map(drop).map_err(|e| e.to_string())),
            "SpiderSubnet" => serde_json::from_value::<SpiderSubnet>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|s| {
                    w.catalog
                        .add_subnet(&subnet_draft(&s))
                        .map(drop)
                        .map_err(|e| e.to_string())
                }),
            "SpiderReservedIP" => serde_json::from_value::<SpiderReservedIP>(v.clone())
                .map_err(|e| e.to_string())
                .and_then(|r| {
                    w.catalog
                        .add_reserved(&reserved_ip_draft(&r))
                        .map_err(|e| e.to_string())
                }),
            "Namespace" => {
                w.namespaces.insert(
                    name.clone(),
                    namespace_info(
                        &name,
                        string_map(v.pointer("/metadata/labels")),
                        string_map(v.pointer("/metadata/annotations")),
                    ),
                );
                Ok(())
            }
            "Node" => {
                w.nodes.push(NodeInfo {
                    name: name.clone(),
                    labels: string_map(v.pointer("/metadata/labels")),
                });
                Ok(())
            }
            "ConfigMap" if name == CONFIGMAP_NAME => {
                IpamConfig::from_configmap_data(&string_map(v.get("data")))
                    .map(|c| w.config = c)
                    .map_err(|e| e.to_string())
            }
            "NetworkAttachmentDefinition" => {
                let ns = v
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("default")
                    .to_string();
                let config = v
                    .pointer("/spec/config")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                w.nads.insert((ns, name.clone()), config);
                Ok(())
            }
            _ => Ok(()),
        };
        if let Err(e) = result {
            w.skipped
                .push(format!("{kind} {name} ({}): {e}", doc.location()));
        }
    }
    w
}

/// A Pod template and how many Pods it makes.
struct Workload {
    kind: String,
    name: String,
    namespace: String,
    template: Value,
    /// (pod name, node) for each Pod.
    pods: Vec<(String, Option<String>)>,
    replicas: Option<u64>,
}

fn workloads(docs: &[Document], nodes: &[NodeInfo]) -> Vec<Workload> {
    let mut out = Vec::new();
    for doc in docs {
        let (_, kind, name) = doc.identity();
        let v = &doc.value;
        let namespace = v
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        let template = match kind.as_str() {
            "Pod" => v.clone(),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
                v.pointer("/spec/template").cloned().unwrap_or(Value::Null)
            }
            "CronJob" => v
                .pointer("/spec/jobTemplate/spec/template")
                .cloned()
                .unwrap_or(Value::Null),
            _ => continue,
        };
        let fixed_node = template
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string);
        let count =
            |path: &str, default: u64| v.pointer(path).and_then(Value::as_u64).unwrap_or(default);
        let (pods, replicas): (Vec<(String, Option<String>)>, Option<u64>) = match kind.as_str() {
            "Pod" => (vec![(name.clone(), fixed_node.clone())], None),
            "DaemonSet" => {
                let selector = string_map(template.pointer("/spec/nodeSelector"));
                let list: Vec<(String, Option<String>)> = nodes
                    .iter()
                    .filter(|n| selector.iter().all(|(k, val)| n.labels.get(k) == Some(val)))
                    .map(|n| (format!("{name}-{}", n.name), Some(n.name.clone())))
                    .collect();
                let len = list.len() as u64;
                (list, Some(len))
            }
            "StatefulSet" => {
                let r = count("/spec/replicas", 1);
                (
                    (0..r)
                        .map(|i| (format!("{name}-{i}"), fixed_node.clone()))
                        .collect(),
                    Some(r),
                )
            }
            "Job" | "CronJob" => {
                let r = if kind == "Job" {
                    count("/spec/parallelism", 1)
                } else {
                    count("/spec/jobTemplate/spec/parallelism", 1)
                };
                (
                    (1..=r)
                        .map(|i| (format!("{name}-{i}"), fixed_node.clone()))
                        .collect(),
                    Some(r),
                )
            }
            _ => {
                let r = count("/spec/replicas", 1);
                (
                    (1..=r)
                        .map(|i| (format!("{name}-{i}"), fixed_node.clone()))
                        .collect(),
                    Some(r),
                )
            }
        };
        out.push(Workload {
            kind,
            name,
            namespace,
            template,
            pods,
            replicas,
        });
    }
    out
}

/// Builds the plan.
pub fn plan(docs: &[Document]) -> Plan {
    let mut w = load_world(docs);
    let mut used: BTreeMap<String, UsedIndex> = BTreeMap::new();
    let mut pods = Vec::new();
    let reserved_v4 = w.catalog.reserved_set(IpFamily::V4);
    let reserved_v6 = w.catalog.reserved_set(IpFamily::V6);
    for wl in workloads(docs, &w.nodes) {
        let ns = w
            .namespaces
            .entry(wl.namespace.clone())
            .or_insert_with(|| namespace_info(&wl.namespace, BTreeMap::new(), BTreeMap::new()))
            .clone();
        let labels = string_map(wl.template.pointer("/metadata/labels"));
        let annotations = string_map(wl.template.pointer("/metadata/annotations"));
        let owner = (wl.kind != "Pod").then(|| Owner {
            api_version: String::new(),
            kind: wl.kind.clone(),
            name: wl.name.clone(),
            uid: format!("plan-{}", wl.name),
            replicas: wl.replicas,
        });
        for (pod_name, node_name) in &wl.pods {
            let mut planned = PlannedPod {
                namespace: wl.namespace.clone(),
                pod: pod_name.clone(),
                workload: format!("{}/{}", wl.kind, wl.name),
                node: node_name.clone(),
                interfaces: Vec::new(),
                refused: None,
                notes: Vec::new(),
            };
            if wl
                .template
                .pointer("/spec/hostNetwork")
                .and_then(Value::as_bool)
                == Some(true)
            {
                planned
                    .notes
                    .push("hostNetwork: not served by this IPAM".to_string());
                pods.push(planned);
                continue;
            }
            let interfaces = match pod_interfaces(&wl.namespace, &annotations, true, |ns, n| {
                w.nads.get(&(ns.to_string(), n.to_string())).cloned()
            }) {
                Ok(i) => i,
                Err(e) => {
                    planned.refused = Some(e.to_string());
                    pods.push(planned);
                    continue;
                }
            };
            let node = node_name.as_ref().map(|n| {
                w.nodes
                    .iter()
                    .find(|x| x.name == *n)
                    .cloned()
                    .unwrap_or(NodeInfo {
                        name: n.clone(),
                        labels: BTreeMap::new(),
                    })
            });
            let pod = PodInfo {
                namespace: wl.namespace.clone(),
                name: Some(pod_name.clone()),
                labels: labels.clone(),
                annotations: annotations.clone(),
                node_name: node_name.clone(),
                owner: owner.clone(),
            };
            let input = SelectionInput {
                pod: &pod,
                namespace: &ns,
                node: node.as_ref(),
                nodes: if w.nodes.is_empty() {
                    None
                } else {
                    Some(&w.nodes)
                },
                interfaces: &interfaces,
                config: &w.config,
                pools: &w.catalog.pools,
                used: &used,
                reserved_v4: &reserved_v4,
                reserved_v6: &reserved_v6,
            };
            let selection = match select(&input) {
                Ok(s) => s,
                Err(r) => {
                    planned.refused = Some(r.to_string());
                    pods.push(planned);
                    continue;
                }
            };
            planned.notes.extend(selection.notes.iter().cloned());
            let mut taken: Vec<PlannedAddress> = Vec::new();
            let mut failure: Option<String> = None;
            for is in &selection.interfaces {
                let mut pi = PlannedInterface {
                    interface: is.interface.clone(),
                    rule: is.rule.to_string(),
                    ipv4: Vec::new(),
                    ipv6: Vec::new(),
                };
                for fs in &is.families {
                    if let Some(auto) = &fs.auto_pool {
                        if !w.catalog.pools.contains_key(&auto.pool) {
                            planned.notes.push(format!(
                                "{} {}: auto-pool {} with {} address(es) from SpiderSubnet {} is created at admission",
                                is.interface, fs.family, auto.pool, auto.desired_ips, auto.subnet
                            ));
                            continue;
                        }
                    }
                    // The webhook's walk over the candidate pools, with the webhook's pick.
                    let mut walk = FamilyReservation::new(&is.interface, fs, node.is_some());
                    while let Some(p) = walk.next_pool(&w.catalog.pools) {
                        let reserved = if p.family == IpFamily::V4 {
                            &reserved_v4
                        } else {
                            &reserved_v6
                        };
                        let u = used.entry(p.name.clone()).or_default();
                        let seed = seed_from(&[
                            pod_name.as_bytes(),
                            is.interface.as_bytes(),
                            p.name.as_bytes(),
                        ]);
                        match pick(&p.allocatable(reserved), u, &[], seed) {
                            Some(ip) => {
                                u.insert(&ip);
                                walk.reserved(p, ip);
                            }
                            None => walk.missed(&p.name, PoolMiss::Full),
                        }
                    }
                    let got: Vec<PlannedAddress> = match walk.finish() {
                        Ok(list) => list
                            .into_iter()
                            .map(|a| PlannedAddress {
                                pool: a.pool,
                                address: a.address,
                            })
                            .collect(),
                        Err(miss) => {
                            failure = Some(miss.to_string());
                            Vec::new()
                        }
                    };
                    taken.extend(got.iter().cloned());
                    match fs.family {
                        IpFamily::V4 => pi.ipv4 = got,
                        IpFamily::V6 => pi.ipv6 = got,
                    }
                }
                planned.interfaces.push(pi);
            }
            if let Some(f) = failure {
                // Both or neither: give back what this Pod took.
                for a in taken {
                    if let Some(u) = used.get_mut(&a.pool) {
                        u.remove(&a.address);
                    }
                }
                planned.interfaces.clear();
                planned.refused = Some(f);
            }
            pods.push(planned);
        }
    }
    let pools = w
        .catalog
        .pools
        .values()
        .map(|p| {
            let reserved = if p.family == IpFamily::V4 {
                &reserved_v4
            } else {
                &reserved_v6
            };
            PoolUsage {
                pool: p.name.clone(),
                version: p.family.version(),
                subnet: p.subnet.to_string(),
                allocated: used.get(&p.name).map_or(0, |u| u.len() as u128),
                total: p.allocatable(reserved).len(),
            }
        })
        .collect();
    Plan {
        pods,
        pools,
        skipped: std::mem::take(&mut w.skipped),
    }
}

fn cell(list: &[PlannedAddress], pick_pool: bool) -> String {
    let parts: Vec<String> = list
        .iter()
        .map(|a| {
            if pick_pool {
                a.pool.clone()
            } else {
                a.address.to_string()
            }
        })
        .collect();
    if parts.is_empty() {
        "-".to_string()
    } else {
        parts.join("|")
    }
}

/// Renders the plan as `kubectl get`-style tables.
pub fn render(plan: &Plan) -> String {
    let mut rows: Vec<Vec<String>> = vec![[
        "NAMESPACE",
        "POD",
        "NODE",
        "INTERFACE",
        "IPV4POOL",
        "IPV4",
        "IPV6POOL",
        "IPV6",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    let mut footnotes = Vec::new();
    for p in &plan.pods {
        let node = p.node.clone().unwrap_or_else(|| "<scheduler>".to_string());
        if let Some(r) = &p.refused {
            rows.push(vec![
                p.namespace.clone(),
                p.pod.clone(),
                node,
                "REFUSED".to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
            footnotes.push(format!(
                "{}/{} is refused at admission:\n    {}",
                p.namespace,
                p.pod,
                r.replace('\n', "\n    ")
            ));
            continue;
        }
        for i in &p.interfaces {
            rows.push(vec![
                p.namespace.clone(),
                p.pod.clone(),
                node.clone(),
                i.interface.clone(),
                cell(&i.ipv4, true),
                cell(&i.ipv4, false),
                cell(&i.ipv6, true),
                cell(&i.ipv6, false),
            ]);
        }
        if p.interfaces
            .iter()
            .any(|i| i.ipv4.len() > 1 || i.ipv6.len() > 1)
        {
            footnotes.push(format!(
                "{}/{}: node unknown at admission; one address per zone is reserved and the Pod is held to those zones' nodes; the one matching its node is kept",
                p.namespace, p.pod
            ));
        }
        for n in &p.notes {
            footnotes.push(format!("{}/{}: {n}", p.namespace, p.pod));
        }
    }
    let mut out = table(&rows);
    out.push('\n');
    let mut pool_rows: Vec<Vec<String>> = vec![[
        "NAME",
        "VERSION",
        "SUBNET",
        "ALLOCATED-IP-COUNT",
        "TOTAL-IP-COUNT",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()];
    for u in &plan.pools {
        pool_rows.push(vec![
            u.pool.clone(),
            u.version.to_string(),
            u.subnet.clone(),
            u.allocated.to_string(),
            u.total.to_string(),
        ]);
    }
    out.push_str(&table(&pool_rows));
    if !footnotes.is_empty() {
        out.push('\n');
        for f in footnotes {
            out.push_str(&f);
            out.push('\n');
        }
    }
    for s in &plan.skipped {
        out.push_str(&format!("skipped: {s}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::manifests::load_embedded;

    fn find<'a>(p: &'a Plan, pod: &str) -> &'a PlannedPod {
        p.pods
            .iter()
            .find(|x| x.pod == pod)
            .unwrap_or_else(|| panic!("no pod {pod}"))
    }

    #[test]
    fn zone_daemonset_pods_get_their_zones_pool() {
        let p = plan(&load_embedded().unwrap());
        let a = find(&p, "test-app-controller-node-1");
        assert_eq!(a.interfaces[0].ipv4[0].pool, "test-ippool-6");
        assert!(a.interfaces[0].ipv4[0]
            .address
            .to_string()
            .starts_with("10.6.168."));
        let b = find(&p, "test-app-worker-node-1");
        assert_eq!(b.interfaces[0].ipv4[0].pool, "test-ippool-7");
    }

    #[test]
    fn zone_deployment_pods_reserve_one_address_per_zone() {
        let p = plan(&load_embedded().unwrap());
        let d = find(&p, "zone-web-1");
        let pools: Vec<&str> = d.interfaces[0]
            .ipv4
            .iter()
            .map(|a| a.pool.as_str())
            .collect();
        assert_eq!(pools, vec!["test-ippool-6", "test-ippool-7"]);
    }

    #[test]
    fn priorities_backup_and_refusal_as_in_the_seed() {
        let p = plan(&load_embedded().unwrap());
        assert_eq!(
            find(&p, "sample-backup").interfaces[0].ipv4[0].pool,
            "default-v4-ippool"
        );
        let mk = find(&p, "multi-key");
        assert_eq!(mk.interfaces[0].ipv4[0].pool, "team-a-v4");
        assert_eq!(mk.interfaces[1].interface, "eth1");
        assert_eq!(mk.interfaces[1].ipv4[0].pool, "eth1-v4");
        assert_eq!(
            find(&p, "team-a-web-1").interfaces[0].ipv4[0].pool,
            "team-a-v4"
        );
        let refused = find(&p, "my-deploy-1").refused.clone().unwrap();
        assert!(refused.contains("pool default-v4-ippool: the namespace's labels do not match its spec.namespaceAffinity (foo=bar)"), "{refused}");
        // The reserved router address is never handed out.
        assert!(p
            .pods
            .iter()
            .flat_map(|x| x.interfaces.iter())
            .flat_map(|i| i.ipv4.iter())
            .all(|a| a.address.to_string() != "172.18.41.1"));
    }

    #[test]
    fn backup_pool_serves_when_the_first_fills_up() {
        let text = r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: first}
spec: {subnet: 10.0.0.0/24, ips: [10.0.0.10-10.0.0.11]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: second}
spec: {subnet: 10.0.1.0/24, ips: [10.0.1.10-10.0.1.11]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: x}
spec:
  replicas: 5
  template:
    metadata:
      annotations:
        ipam.spidernet.io/ippool: '{"ipv4": ["first", "second"]}'
"#;
        let p = plan(&crate::manifests::parse_text("t.yaml", text).unwrap());
        let pools: Vec<String> = p
            .pods
            .iter()
            .take(4)
            .map(|x| x.interfaces[0].ipv4[0].pool.clone())
            .collect();
        assert_eq!(pools, vec!["first", "first", "second", "second"]);
        let r = p.pods[4].refused.clone().unwrap();
        assert!(
            r.contains(
                "pool first: all 2 addresses are in use; pool second: all 2 addresses are in use"
            ),
            "{r}"
        );
        let usage: Vec<(String, u128, u128)> = p
            .pools
            .iter()
            .map(|u| (u.pool.clone(), u.allocated, u.total))
            .collect();
        assert_eq!(usage, vec![("first".into(), 2, 2), ("second".into(), 2, 2)]);
    }
}
