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

/// Reads every IPAM annotation of a Pod, each checked. `ippools` wins over `ippool` and
/// `subnets` over `subnet`: the losing key is not read (as in Spiderpool), so it cannot cause
/// an error. For offline checks; admission reads them as [`pod_ipam_annotations_as_read`].
pub fn pod_ipam_annotations(
    annotations: &BTreeMap<String, String>,
) -> Result<PodIpamAnnotations, AnnotationError> {
    read_all(annotations, None)
}

/// Reads a Pod's IPAM annotations the way Spiderpool does when it allocates, given whether
/// the SpiderSubnet feature is on: an annotation Spiderpool would not read in this situation
/// cannot refuse the Pod. A malformed one becomes a warning instead:
/// - `subnet` / `subnets` while the feature is off;
/// - `ippool-ip-number` / `ippool-reclaim` without a subnet annotation in effect;
/// - `ippools` / `ippool` while a subnet annotation is in effect (Spiderpool stops there).
pub fn pod_ipam_annotations_as_read(
    annotations: &BTreeMap<String, String>,
    subnet_feature: bool,
) -> Result<PodIpamAnnotations, AnnotationError> {
    read_all(annotations, Some(subnet_feature))
}

/// `Ok(None)` and a warning in place of an error, when `unread` says Spiderpool would not read
/// the annotation; why it would not is `because`.
fn tolerate<T>(
    r: Result<Option<T>, AnnotationError>,
    unread: bool,
    because: &str,
    w: &mut Vec<String>,
) -> Result<Option<T>, AnnotationError> {
    match r {
        Err(e) if unread => {
            w.push(format!("{e}; ignored, because {because}"));
            Ok(None)
        }
        other => other,
    }
}

fn read_all(
    annotations: &BTreeMap<String, String>,
    subnet_feature: Option<bool>,
) -> Result<PodIpamAnnotations, AnnotationError> {
    let get = |k: &str| annotations.get(k).map(String::as_str);
    let lenient = subnet_feature.is_some();
    let feature_off = subnet_feature == Some(false);
    let mut w = Vec::new();
    let off = "the SpiderSubnet feature is off (enableSpiderSubnet in spiderpool-conf)";
    let subnets = get(ANNO_SUBNETS)
        .map(|v| parse_subnets_noting(v, &mut w))
        .transpose();
    let subnets = tolerate(subnets, feature_off, off, &mut w)?;
    let subnet = match subnets {
        Some(_) => None,
        None => {
            let r = get(ANNO_SUBNET)
                .map(|v| parse_subnet_noting(v, &mut w))
                .transpose();
            tolerate(r, feature_off, off, &mut w)?
        }
    };
    let subnet_in_effect = lenient && !feature_off && (subnets.is_some() || subnet.is_some());
    let by_subnet = "a SpiderSubnet annotation chooses this Pod's pools";
    let ippools = get(ANNO_IPPOOLS)
        .map(|v| parse_ippools_noting(v, &mut w))
        .transpose();
    let ippools = tolerate(ippools, subnet_in_effect, by_subnet, &mut w)?;
    let ippool = match ippools {
        Some(_) => None,
        None => {
            let r = get(ANNO_IPPOOL)
                .map(|v| parse_ippool_noting(v, &mut w))
                .transpose();
            tolerate(r, subnet_in_effect, by_subnet, &mut w)?
        }
    };
    let no_subnet = lenient && !subnet_in_effect;
    let only_with = "Spiderpool reads it only with a SpiderSubnet annotation in effect";
    let ip_number = get(ANNO_IPPOOL_IP_NUMBER).map(parse_ip_number).transpose();
    let ip_number = tolerate(ip_number, no_subnet, only_with, &mut w)?;
    let reclaim = get(ANNO_IPPOOL_RECLAIM).map(parse_reclaim).transpose();
    let reclaim = tolerate(reclaim, no_subnet, only_with, &mut w)?;
    let routes = get(ANNO_ROUTES)
        .map(|v| parse_routes_noting(v, &mut w))
        .transpose()?
        .unwrap_or_default();
    Ok(PodIpamAnnotations {
        ippools,
        ippool,
        subnets,
        subnet,
        ip_number,
        reclaim,
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

    #[test]
    fn annotations_spiderpool_would_not_read_cannot_refuse_the_pod() {
        let a = annos(&[
            (ANNO_IPPOOL, r#"{"ipv4":["a"]}"#),
            (ANNO_SUBNET, "not json"),
            (ANNO_IPPOOL_IP_NUMBER, "lots"),
        ]);
        // Offline, everything is checked.
        assert!(pod_ipam_annotations(&a).is_err());
        // Feature off: the subnet annotation and the pool size are never read.
        let got = pod_ipam_annotations_as_read(&a, false).unwrap();
        assert_eq!(got.ippool, Some(pr(None, &["a"], &[], None)));
        assert_eq!(got.subnet, None);
        assert_eq!(got.ip_number, None);
        assert_eq!(got.warnings.len(), 2, "{:?}", got.warnings);
        assert!(got.warnings[0].starts_with("annotation ipam.spidernet.io/subnet: invalid JSON"));
        assert!(got.warnings[0].ends_with("ignored, because the SpiderSubnet feature is off (enableSpiderSubnet in spiderpool-conf)"));
        assert!(got.warnings[1].ends_with(
            "ignored, because Spiderpool reads it only with a SpiderSubnet annotation in effect"
        ));
        // Feature on: the subnet annotation is read, and a malformed one refuses the Pod.
        assert!(pod_ipam_annotations_as_read(&a, true).is_err());
        // ... and a good one makes a broken ippool irrelevant.
        let b = annos(&[
            (ANNO_IPPOOL, "{"),
            (ANNO_SUBNET, r#"{"ipv4":["s"]}"#),
            (ANNO_IPPOOL_IP_NUMBER, "+2"),
        ]);
        let got = pod_ipam_annotations_as_read(&b, true).unwrap();
        assert_eq!(got.ippool, None);
        assert_eq!(got.ip_number, Some(IpNumber::Flexible(2)));
        assert!(got.warnings[0]
            .ends_with("ignored, because a SpiderSubnet annotation chooses this Pod's pools"));
    }
}
