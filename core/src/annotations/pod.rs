//! All IPAM annotations of a Pod at once, with Spiderpool's precedence.

use std::collections::BTreeMap;

use super::{
    parse_ip_number, parse_ippool_noting, parse_ippools_noting, parse_reclaim, parse_routes_noting,
    parse_subnet_noting, parse_subnets_noting, AnnotationError, IpNumber, PoolRequest, Route,
    SubnetRequest, ANNO_IPPOOL, ANNO_IPPOOLS, ANNO_IPPOOL_IP_NUMBER, ANNO_IPPOOL_RECLAIM,
    ANNO_ROUTES, ANNO_SUBNET, ANNO_SUBNETS,
};

/// Everything IPAM-relevant on a Pod, keys resolved with precedence (ippools over ippool;
/// subnets over subnet). A key that loses is not read at all, as in Spiderpool.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PodIpamAnnotations {
    pub ippools: Option<Vec<PoolRequest>>,
    pub ippool: Option<PoolRequest>,
    pub subnets: Option<Vec<SubnetRequest>>,
    pub subnet: Option<SubnetRequest>,
    pub ip_number: Option<IpNumber>,
    pub reclaim: Option<bool>,
    pub routes: Vec<Route>,
    /// What was accepted but is probably not meant (unknown fields ignored, a pool listed
    /// twice, ...), each naming its annotation: admission warnings.
    pub warnings: Vec<String>,
}

/// Reads every IPAM annotation of a Pod. `ippools` wins over `ippool` and `subnets` over
/// `subnet`: the losing key is not read (as in Spiderpool), so it cannot cause an error.
pub fn pod_ipam_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<PodIpamAnnotations, AnnotationError> {
    let get = |k: &str| annotations.get(k).map(String::as_str);
    let mut w = Vec::new();
    let ippools = get(ANNO_IPPOOLS)
        .map(|v| parse_ippools_noting(v, &mut w))
        .transpose()?;
    let ippool = match ippools {
        Some(_) => None,
        None => get(ANNO_IPPOOL)
            .map(|v| parse_ippool_noting(v, &mut w))
            .transpose()?,
    };
    let subnets = get(ANNO_SUBNETS)
        .map(|v| parse_subnets_noting(v, &mut w))
        .transpose()?;
    let subnet = match subnets {
        Some(_) => None,
        None => get(ANNO_SUBNET)
            .map(|v| parse_subnet_noting(v, &mut w))
            .transpose()?,
    };
    let routes = get(ANNO_ROUTES)
        .map(|v| parse_routes_noting(v, &mut w))
        .transpose()?
        .unwrap_or_default();
    Ok(PodIpamAnnotations {
        ippools,
        ippool,
        subnets,
        subnet,
        ip_number: get(ANNO_IPPOOL_IP_NUMBER)
            .map(parse_ip_number)
            .transpose()?,
        reclaim: get(ANNO_IPPOOL_RECLAIM).map(parse_reclaim).transpose()?,
        routes,
        warnings: w,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::{annos, pr, strs};

    #[test]
    fn pod_precedence() {
        let a = annos(&[
            (ANNO_IPPOOLS, r#"[{"interface":"eth0","ipv4":["many"]}]"#),
            (ANNO_IPPOOL, "not even json"),
            (ANNO_SUBNETS, r#"[{"interface":"eth0","ipv4":["s"]}]"#),
            (ANNO_SUBNET, "{}"),
            (ANNO_IPPOOL_IP_NUMBER, "+3"),
            (ANNO_IPPOOL_RECLAIM, "false"),
            (ANNO_ROUTES, r#"[{"dst":"10.0.0.0/8","gw":"10.1.0.1"}]"#),
            ("unrelated/key", "x"),
        ]);
        let got = pod_ipam_annotations(&a).unwrap();
        assert_eq!(
            got.ippools,
            Some(vec![pr(Some("eth0"), &["many"], &[], None)])
        );
        assert_eq!(got.ippool, None);
        assert_eq!(got.subnets.as_ref().map(Vec::len), Some(1));
        assert_eq!(got.subnet, None);
        assert_eq!(got.ip_number, Some(IpNumber::Flexible(3)));
        assert_eq!(got.reclaim, Some(false));
        assert_eq!(got.routes.len(), 1);

        let a = annos(&[
            (ANNO_IPPOOL, r#"{"ipv4":["one"]}"#),
            (ANNO_SUBNET, r#"{"ipv6":["s6"]}"#),
        ]);
        let got = pod_ipam_annotations(&a).unwrap();
        assert_eq!(got.ippools, None);
        assert_eq!(got.ippool, Some(pr(None, &["one"], &[], None)));
        assert_eq!(got.subnets, None);
        assert_eq!(got.subnet.map(|s| s.ipv6), Some(strs(&["s6"])));
        assert_eq!(got.ip_number, None);
        assert_eq!(got.reclaim, None);
        assert!(got.routes.is_empty());

        assert_eq!(
            pod_ipam_annotations(&BTreeMap::new()),
            Ok(PodIpamAnnotations::default())
        );
        let a = annos(&[(ANNO_IPPOOL_RECLAIM, "maybe")]);
        assert_eq!(
            pod_ipam_annotations(&a).unwrap_err().key,
            ANNO_IPPOOL_RECLAIM
        );
    }
}
