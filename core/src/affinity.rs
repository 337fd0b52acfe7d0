//! Node affinity for Pods whose node is unknown at admission.
//!
//! When a Pod's candidate pools are restricted to some nodes (zones), the webhook reserves one
//! address per zone and adds to the Pod a *required* node affinity that is the union of those
//! pools' node restrictions, intersected with whatever the Pod already requires, so the
//! scheduler can only place it where one of its reservations applies.
//!
//! The types have the JSON shape of Kubernetes' `NodeSelectorTerm` so that the webhook converts
//! them with serde. Terms are ORed; requirements inside a term are ANDed.

use serde::{Deserialize, Serialize};

use crate::labels::LabelSelector;
use crate::model::Pool;

/// Field key Kubernetes supports in `matchFields`.
pub const FIELD_NODE_NAME: &str = "metadata.name";

/// Kubernetes' `NodeSelectorRequirement`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeSelectorRequirement {
    /// Label key (or `metadata.name` in `matchFields`).
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    pub operator: String,
    /// Values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Kubernetes' `NodeSelectorTerm`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// Requirements on node labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<NodeSelectorRequirement>,
    /// Requirements on node fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_fields: Vec<NodeSelectorRequirement>,
}

/// The most terms a combined affinity may have; beyond it the Pod is refused rather than
/// given an affinity nobody can read.
pub const MAX_TERMS: usize = 64;

fn from_label_selector(sel: &LabelSelector) -> Vec<NodeSelectorRequirement> {
    let mut out: Vec<NodeSelectorRequirement> = sel
        .match_labels
        .iter()
        .map(|(k, v)| NodeSelectorRequirement {
            key: k.clone(),
            operator: "In".to_string(),
            values: vec![v.clone()],
        })
        .collect();
    out.extend(
        sel.match_expressions
            .iter()
            .map(|r| NodeSelectorRequirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone(),
            }),
    );
    out
}

/// The node restriction of one pool as ORed terms, or `None` when the pool serves every node.
///
/// A `nodeName` list becomes one term per node, each `metadata.name In [node]` (with the
/// pool's `nodeAffinity` requirements in each): the API server's Pod validation accepts a
/// single value only for a `matchFields` requirement on `metadata.name` (found on the real API
/// server: a list was refused with 422 after our mutation).
pub fn pool_terms(pool: &Pool) -> Option<Vec<NodeSelectorTerm>> {
    if !pool.is_node_bound() {
        return None;
    }
    let exprs = pool
        .node_affinity
        .as_ref()
        .map(from_label_selector)
        .unwrap_or_default();
    if pool.node_name.is_empty() {
        return Some(vec![NodeSelectorTerm {
            match_expressions: exprs,
            match_fields: Vec::new(),
        }]);
    }
    Some(
        pool.node_name
            .iter()
            .map(|n| NodeSelectorTerm {
                match_expressions: exprs.clone(),
                match_fields: vec![NodeSelectorRequirement {
                    key: FIELD_NODE_NAME.to_string(),
                    operator: "In".to_string(),
                    values: vec![n.clone()],
                }],
            })
            .collect(),
    )
}

/// The union of several pools' restrictions: `None` when one of them serves every node (no
/// constraint is needed), else the distinct terms of them all.
pub fn union_of<'a, I: IntoIterator<Item = &'a Pool>>(pools: I) -> Option<Vec<NodeSelectorTerm>> {
    let mut terms: Vec<NodeSelectorTerm> = Vec::new();
    for p in pools {
        for t in pool_terms(p)? {
            if !terms.contains(&t) {
                terms.push(t);
            }
        }
    }
    Some(terms)
}

/// `(a1 or a2 ...) and (b1 or b2 ...)` as one list of ORed terms: every pair merged.
/// An empty side means "no constraint" and returns the other side.
pub fn intersect(a: &[NodeSelectorTerm], b: &[NodeSelectorTerm]) -> Vec<NodeSelectorTerm> {
    if a.is_empty() {
        return b.to_vec();
    }
    if b.is_empty() {
        return a.to_vec();
    }
    let mut out: Vec<NodeSelectorTerm> = Vec::new();
    for x in a {
        for y in b {
            let mut t = x.clone();
            for r in &y.match_expressions {
                if !t.match_expressions.contains(r) {
                    t.match_expressions.push(r.clone());
                }
            }
            for r in &y.match_fields {
                if !t.match_fields.contains(r) {
                    t.match_fields.push(r.clone());
                }
            }
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out
}

/// The node a DaemonSet Pod is pinned to: every term requires `metadata.name In [node]` with
/// the same single node (what the DaemonSet controller writes).
pub fn pinned_node(terms: &[NodeSelectorTerm]) -> Option<String> {
    let mut node: Option<&str> = None;
    for t in terms {
        let pin = t
            .match_fields
            .iter()
            .find(|r| r.key == FIELD_NODE_NAME && r.operator == "In" && r.values.len() == 1)?;
        match node {
            None => node = Some(&pin.values[0]),
            Some(n) if n == pin.values[0] => {}
            Some(_) => return None,
        }
    }
    node.map(str::to_string)
}

/// Whether one term admits `node` (Kubernetes' semantics: every requirement holds; `Gt`/`Lt`
/// compare integers; `matchFields` knows `metadata.name`).
pub fn term_matches(term: &NodeSelectorTerm, node: &crate::model::NodeInfo) -> bool {
    let label_ok = |r: &NodeSelectorRequirement| {
        let v = node.labels.get(&r.key);
        match r.operator.as_str() {
            "In" => v.is_some_and(|v| r.values.contains(v)),
            "NotIn" => v.is_none_or(|v| !r.values.contains(v)),
            "Exists" => v.is_some(),
            "DoesNotExist" => v.is_none(),
            "Gt" | "Lt" => {
                let (Some(have), Some(want)) = (
                    v.and_then(|v| v.parse::<i64>().ok()),
                    r.values.first().and_then(|w| w.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if r.operator == "Gt" {
                    have > want
                } else {
                    have < want
                }
            }
            _ => false,
        }
    };
    let field_ok = |r: &NodeSelectorRequirement| {
        r.key == FIELD_NODE_NAME
            && match r.operator.as_str() {
                "In" => r.values.contains(&node.name),
                "NotIn" => !r.values.contains(&node.name),
                _ => false,
            }
    };
    // An empty term matches nothing, as in Kubernetes.
    (!term.match_expressions.is_empty() || !term.match_fields.is_empty())
        && term.match_expressions.iter().all(label_ok)
        && term.match_fields.iter().all(field_ok)
}

/// Whether a required node affinity (ORed terms) admits `node`; no terms admit every node.
pub fn terms_match(terms: &[NodeSelectorTerm], node: &crate::model::NodeInfo) -> bool {
    terms.is_empty() || terms.iter().any(|t| term_matches(t, node))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::labels::LabelSelectorRequirement;
    use crate::ranges::IpSet;
    use std::collections::BTreeMap;

    fn zone(name: &str, z: &str) -> Pool {
        let mut p = Pool::new(name, "10.0.0.0/8".parse().unwrap(), IpSet::new());
        p.node_affinity = Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "node-subnet".to_string(),
                operator: "In".to_string(),
                values: vec![z.to_string()],
            }],
        });
        p
    }

    #[test]
    fn union_of_zone_pools_is_one_term_per_zone() {
        let p6 = zone("p6", "subnet-6");
        let p7 = zone("p7", "subnet-7");
        let u = union_of([&p6, &p7]).unwrap();
        assert_eq!(u.len(), 2);
        assert_eq!(
            serde_json::to_string(&u[0]).unwrap(),
            r#"{"matchExpressions":[{"key":"node-subnet","operator":"In","values":["subnet-6"]}]}"#
        );
        let free = Pool::new("any", "10.0.0.0/8".parse().unwrap(), IpSet::new());
        assert_eq!(union_of([&p6, &free]), None);
    }

    #[test]
    fn node_name_becomes_one_single_valued_match_field_per_node() {
        let mut p = Pool::new("n", "10.0.0.0/8".parse().unwrap(), IpSet::new());
        p.node_name = vec!["a".to_string(), "b".to_string()];
        let t = pool_terms(&p).unwrap();
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"[{"matchFields":[{"key":"metadata.name","operator":"In","values":["a"]}]},{"matchFields":[{"key":"metadata.name","operator":"In","values":["b"]}]}]"#
        );
        let node = |name: &str| crate::model::NodeInfo {
            name: name.to_string(),
            labels: Default::default(),
        };
        assert!(terms_match(&t, &node("a")) && terms_match(&t, &node("b")));
        assert!(!terms_match(&t, &node("c")));
    }

    #[test]
    fn intersection_distributes_over_the_terms() {
        let a = union_of([&zone("p6", "subnet-6"), &zone("p7", "subnet-7")]).unwrap();
        let user = vec![NodeSelectorTerm {
            match_expressions: vec![NodeSelectorRequirement {
                key: "disk".to_string(),
                operator: "In".to_string(),
                values: vec!["ssd".to_string()],
            }],
            match_fields: vec![],
        }];
        let both = intersect(&a, &user);
        assert_eq!(both.len(), 2);
        assert!(both.iter().all(|t| t.match_expressions.len() == 2));
        assert_eq!(intersect(&[], &user), user);
    }

    #[test]
    fn terms_admit_the_nodes_of_their_zones_only() {
        let u = union_of([&zone("p6", "subnet-6"), &zone("p7", "subnet-7")]).unwrap();
        let node = |name: &str, z: &str| crate::model::NodeInfo {
            name: name.to_string(),
            labels: [("node-subnet".to_string(), z.to_string())].into(),
        };
        assert!(terms_match(&u, &node("a", "subnet-6")));
        assert!(terms_match(&u, &node("b", "subnet-7")));
        assert!(!terms_match(&u, &node("c", "subnet-8")));
        assert!(terms_match(&[], &node("c", "subnet-8")));
        assert!(!term_matches(
            &NodeSelectorTerm::default(),
            &node("a", "subnet-6")
        ));
        let pinned = NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![NodeSelectorRequirement {
                key: FIELD_NODE_NAME.to_string(),
                operator: "In".to_string(),
                values: vec!["b".to_string()],
            }],
        };
        assert!(term_matches(&pinned, &node("b", "x")));
        assert!(!term_matches(&pinned, &node("a", "x")));
    }

    #[test]
    fn daemonset_pods_are_pinned() {
        let pin = |n: &str| NodeSelectorTerm {
            match_expressions: vec![],
            match_fields: vec![NodeSelectorRequirement {
                key: FIELD_NODE_NAME.to_string(),
                operator: "In".to_string(),
                values: vec![n.to_string()],
            }],
        };
        assert_eq!(
            pinned_node(&[pin("worker-node-1")]),
            Some("worker-node-1".to_string())
        );
        assert_eq!(pinned_node(&[pin("a"), pin("b")]), None);
        assert_eq!(pinned_node(&[]), None);
    }
}
