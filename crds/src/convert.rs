//! From the API objects to the core's drafts: the one place where Kubernetes types meet the
//! pure rules. Validation itself happens in `aipam_core::validate`.

use aipam_core::labels::LabelSelector as CoreSelector;
use aipam_core::validate::{PoolDraft, ReservedIpDraft, SubnetDraft};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::{Route, SpiderIPPool, SpiderReservedIP, SpiderSubnet};

/// A selector that cannot be carried over (never happens for objects that came through the
/// API; the two types have the same JSON shape).
#[derive(Debug, thiserror::Error)]
#[error("{field}: cannot read the label selector: {source}")]
pub struct ConvertError {
    /// The field.
    pub field: &'static str,
    /// The cause.
    #[source]
    pub source: serde_json::Error,
}

fn selector(
    field: &'static str,
    sel: Option<&LabelSelector>,
) -> Result<Option<CoreSelector>, ConvertError> {
    sel.map(|s| {
        serde_json::to_value(s)
            .and_then(serde_json::from_value)
            .map_err(|source| ConvertError { field, source })
    })
    .transpose()
}

fn routes(r: Option<&Vec<Route>>) -> Vec<(String, String)> {
    r.map(|v| v.iter().map(|r| (r.dst.clone(), r.gw.clone())).collect())
        .unwrap_or_default()
}

fn name_of(meta: &kube::core::ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

/// A SpiderIPPool as the core's draft.
pub fn pool_draft(pool: &SpiderIPPool) -> Result<PoolDraft, ConvertError> {
    let s = &pool.spec;
    Ok(PoolDraft {
        name: name_of(&pool.metadata),
        ip_version: s.ip_version,
        subnet: s.subnet.clone(),
        ips: s.ips.clone().unwrap_or_default(),
        exclude_ips: s.exclude_ips.clone().unwrap_or_default(),
        gateway: s.gateway.clone(),
        vlan: s.vlan,
        routes: routes(s.routes.as_ref()),
        pod_affinity: selector("spec.podAffinity", s.pod_affinity.as_ref())?,
        namespace_affinity: selector("spec.namespaceAffinity", s.namespace_affinity.as_ref())?,
        namespace_name: s.namespace_name.clone().unwrap_or_default(),
        node_affinity: selector("spec.nodeAffinity", s.node_affinity.as_ref())?,
        node_name: s.node_name.clone().unwrap_or_default(),
        multus_name: s.multus_name.clone().unwrap_or_default(),
        default: s.default.unwrap_or(false),
        disable: s.disable.unwrap_or(false),
        deleting: pool.metadata.deletion_timestamp.is_some(),
        labels: pool.metadata.labels.clone().unwrap_or_default(),
    })
}

/// A SpiderSubnet as the core's draft.
pub fn subnet_draft(subnet: &SpiderSubnet) -> SubnetDraft {
    let s = &subnet.spec;
    SubnetDraft {
        name: name_of(&subnet.metadata),
        ip_version: s.ip_version,
        subnet: s.subnet.clone(),
        ips: s.ips.clone().unwrap_or_default(),
        exclude_ips: s.exclude_ips.clone().unwrap_or_default(),
        gateway: s.gateway.clone(),
        vlan: s.vlan,
        routes: routes(s.routes.as_ref()),
    }
}

/// A SpiderReservedIP as the core's draft.
pub fn reserved_ip_draft(r: &SpiderReservedIP) -> ReservedIpDraft {
    ReservedIpDraft {
        name: name_of(&r.metadata),
        ip_version: r.spec.ip_version,
        ips: r.spec.ips.clone().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use aipam_core::validate::validate_pool;

    #[test]
    fn the_zone_article_pool_converts_and_validates() {
        let pool: SpiderIPPool = serde_yaml::from_str(
            r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata:
  name: test-ippool-6
spec:
  subnet: 10.6.0.0/16
  ips:
    - 10.6.168.60-10.6.168.69
  gateway: 10.6.0.1
  nodeAffinity:
    matchExpressions:
    - {key: node-subnet, operator: In, values: [subnet-6]}
"#,
        )
        .unwrap();
        let draft = pool_draft(&pool).unwrap();
        let p = validate_pool(&draft).unwrap();
        assert_eq!(p.ips.len(), 10);
        assert_eq!(p.family.version(), 4);
        let sel = p.node_affinity.unwrap();
        let mut labels = std::collections::BTreeMap::new();
        labels.insert("node-subnet".to_string(), "subnet-6".to_string());
        assert!(sel.matches(&labels).unwrap());
        labels.insert("node-subnet".to_string(), "subnet-7".to_string());
        assert!(!sel.matches(&labels).unwrap());
    }
}
