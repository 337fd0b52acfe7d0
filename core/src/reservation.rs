//! The reservation record: what the mutating webhook reserved for a Pod, written into the Pod's
//! annotation [`ANNO_RESERVATION`] so that every later actor can find it without listing
//! anything — the validating webhook (which sees the Pod's final name and UID and binds the
//! claims early), the operator (late binding for zone pools, release, collection) and tools.
//!
//! Each reserved address is one SpiderIPClaim named [`crate::alloc::claim_name`]`(pool,
//! address)`. An interface and family holds exactly one address once the Pod's node is known;
//! before that it may hold one per candidate zone (see [`crate::select::reservation_set`]),
//! listed in candidate order, and the operator keeps the first that serves the node the Pod is
//! bound to ([`Reservation::resolve_for_node`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::alloc::claim_name;
use crate::annotations::Route;
use crate::model::{NodeInfo, Pool};
use crate::ranges::IpFamily;
use crate::select::pool_serves_node;

/// The Pod annotation holding the reservation record (JSON).
pub const ANNO_RESERVATION: &str = "aipam.io/reservation";
/// Label put on every SpiderIPClaim: the reservation id it belongs to.
pub const LABEL_RESERVATION: &str = "aipam.io/reservation";
/// Label put on every SpiderIPClaim whose pool name fits in a label value.
pub const LABEL_POOL: &str = "aipam.io/pool";
/// Pod annotation that opts a Pod out of this IPAM (`"true"`).
pub const ANNO_SKIP: &str = "aipam.io/skip";
/// Namespace label that opts a whole namespace out (`"disabled"`); the webhook configuration's
/// namespaceSelector excludes such namespaces.
pub const LABEL_NAMESPACE_IPAM: &str = "aipam.io/ipam";

/// One reserved address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedAddress {
    /// The pool.
    pub pool: String,
    /// The address.
    pub address: IpAddr,
}

impl ReservedAddress {
    /// The SpiderIPClaim that holds it.
    pub fn claim_name(&self) -> String {
        claim_name(&self.pool, &self.address)
    }
}

/// What one interface holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReservedInterface {
    /// Interface name in the Pod.
    pub interface: String,
    /// `cleangateway` from the Pod's annotation, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_gateway: Option<bool>,
    /// IPv4: one address, or one per candidate zone while the node is unknown (in order).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv4: Vec<ReservedAddress>,
    /// IPv6, likewise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ipv6: Vec<ReservedAddress>,
}

impl ReservedInterface {
    /// The addresses of one family.
    pub fn family(&self, family: IpFamily) -> &[ReservedAddress] {
        match family {
            IpFamily::V4 => &self.ipv4,
            IpFamily::V6 => &self.ipv6,
        }
    }
}

/// Everything reserved for one Pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Reservation {
    /// Opaque id, also the [`LABEL_RESERVATION`] of every claim.
    pub id: String,
    /// Per interface, primary first.
    pub interfaces: Vec<ReservedInterface>,
}

/// A reservation annotation that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("annotation {ANNO_RESERVATION}: {0}")]
pub struct ReservationError(String);

impl Reservation {
    /// Reads the annotation value.
    pub fn parse(value: &str) -> Result<Reservation, ReservationError> {
        let r: Reservation = serde_json::from_str(value)
            .map_err(|e| ReservationError(format!("not a reservation record: {e}")))?;
        if r.id.is_empty() {
            return Err(ReservationError("the id is empty".to_string()));
        }
        Ok(r)
    }

    /// The annotation value (compact JSON).
    pub fn to_annotation(&self) -> String {
        // Serialising plain strings and addresses cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Every address, each once, in record order.
    pub fn addresses(&self) -> Vec<&ReservedAddress> {
        let mut out: Vec<&ReservedAddress> = Vec::new();
        for i in &self.interfaces {
            for a in i.ipv4.iter().chain(i.ipv6.iter()) {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        out
    }

    /// Every claim name, each once.
    pub fn claim_names(&self) -> Vec<String> {
        self.addresses().iter().map(|a| a.claim_name()).collect()
    }

    /// Whether some interface and family still holds alternatives (node not chosen yet).
    pub fn is_provisional(&self) -> bool {
        self.interfaces
            .iter()
            .any(|i| i.ipv4.len() > 1 || i.ipv6.len() > 1)
    }

    /// Once the Pod is bound to `node`: for each interface and family the first reserved
    /// address whose pool serves the node (candidate order). Returns the kept record and the
    /// addresses to release. `None` when some interface and family has no address that serves
    /// the node (the scheduler was not held to the pools' nodes).
    pub fn resolve_for_node(
        &self,
        pools: &BTreeMap<String, Pool>,
        node: &NodeInfo,
    ) -> Option<(Reservation, Vec<ReservedAddress>)> {
        let mut kept = Reservation {
            id: self.id.clone(),
            interfaces: Vec::new(),
        };
        let mut released = Vec::new();
        for i in &self.interfaces {
            let mut ki = ReservedInterface {
                interface: i.interface.clone(),
                clean_gateway: i.clean_gateway,
                ..ReservedInterface::default()
            };
            for family in [IpFamily::V4, IpFamily::V6] {
                let list = i.family(family);
                if list.is_empty() {
                    continue;
                }
                let chosen = list.iter().position(|a| {
                    pools
                        .get(&a.pool)
                        .is_some_and(|p| pool_serves_node(p, node).unwrap_or(false))
                })?;
                for (n, a) in list.iter().enumerate() {
                    if n == chosen {
                        match family {
                            IpFamily::V4 => ki.ipv4.push(a.clone()),
                            IpFamily::V6 => ki.ipv6.push(a.clone()),
                        }
                    } else {
                        released.push(a.clone());
                    }
                }
            }
            kept.interfaces.push(ki);
        }
        Some((kept, released))
    }

    /// What the CNI binary needs per interface, once every family holds one address. Pools
    /// are looked up for prefix length, gateway, VLAN and routes; `extra_routes` are the Pod's
    /// `ipam.spidernet.io/routes`, given to the interface whose subnet holds their gateway.
    pub fn details(
        &self,
        pools: &BTreeMap<String, Pool>,
        extra_routes: &[Route],
    ) -> Result<Vec<IpDetail>, ReservationError> {
        if self.is_provisional() {
            return Err(ReservationError(
                "the Pod's node is not chosen yet: the reservation still holds one address per zone".to_string(),
            ));
        }
        let mut out = Vec::new();
        for (index, i) in self.interfaces.iter().enumerate() {
            // Only the primary interface carries the default route unless the Pod's
            // annotation says otherwise: two default routes make the second ADD fail.
            let mut d = IpDetail {
                interface: i.interface.clone(),
                clean_gateway: Some(i.clean_gateway.unwrap_or(index > 0)),
                ..IpDetail::default()
            };
            for a in i.ipv4.iter().chain(i.ipv6.iter()) {
                let pool = pools.get(&a.pool).ok_or_else(|| {
                    ReservationError(format!(
                        "pool {} of address {} no longer exists",
                        a.pool, a.address
                    ))
                })?;
                let net = IpNet::new(a.address, pool.subnet.prefix_len())
                    .map_err(|e| ReservationError(format!("address {}: {e}", a.address)))?;
                let mut routes: Vec<Route> = pool.routes.clone();
                routes.extend(
                    extra_routes
                        .iter()
                        .filter(|r| pool.subnet.contains(&r.gw))
                        .cloned(),
                );
                let fam = FamilyDetail {
                    address: net,
                    pool: a.pool.clone(),
                    gateway: pool.gateway,
                };
                if a.address.is_ipv4() {
                    d.ipv4 = Some(fam);
                } else {
                    d.ipv6 = Some(fam);
                }
                d.vlan = d.vlan.or(pool.vlan);
                d.routes.extend(routes);
            }
            out.push(d);
        }
        Ok(out)
    }
}

/// One family of one interface, as the CNI binary reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FamilyDetail {
    /// Address with the pool subnet's prefix length.
    pub address: IpNet,
    /// The pool.
    pub pool: String,
    /// The pool's gateway.
    pub gateway: Option<IpAddr>,
}

/// One interface, as recorded in the SpiderEndpoint (Spiderpool's `IPAllocationDetail`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct IpDetail {
    /// Interface name.
    pub interface: String,
    /// IPv4, if any.
    pub ipv4: Option<FamilyDetail>,
    /// IPv6, if any.
    pub ipv6: Option<FamilyDetail>,
    /// VLAN of the pools.
    pub vlan: Option<i64>,
    /// `cleanGateway`: the annotation's value, else `false` on the first interface and `true`
    /// on the others (one default route per Pod).
    pub clean_gateway: Option<bool>,
    /// Routes of the pools and of the Pod's annotation.
    pub routes: Vec<Route>,
}

/// A new reservation id: `r-` and 16 hex digits from the request's UID (unique per admission
/// request, so a retried request gets a new id and the old one is collected).
pub fn reservation_id(request_uid: &str) -> String {
    format!(
        "r-{:016x}",
        crate::alloc::seed_from(&[request_uid.as_bytes()])
    )
}

impl fmt::Display for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, i) in self.interfaces.iter().enumerate() {
            if n > 0 {
                write!(f, "; ")?;
            }
            write!(f, "{}:", i.interface)?;
            for a in i.ipv4.iter().chain(i.ipv6.iter()) {
                write!(f, " {} ({})", a.address, a.pool)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::labels::{LabelSelector, LabelSelectorRequirement};
    use crate::ranges::IpSet;

    fn zone_pool(name: &str, subnet: &str, zone: &str) -> Pool {
        let mut p = Pool::new(name, subnet.parse().unwrap(), IpSet::new());
        p.gateway = Some(subnet.parse::<IpNet>().unwrap().hosts().next().unwrap());
        p.node_affinity = Some(LabelSelector {
            match_labels: BTreeMap::new(),
            match_expressions: vec![LabelSelectorRequirement {
                key: "node-subnet".to_string(),
                operator: "In".to_string(),
                values: vec![zone.to_string()],
            }],
        });
        p
    }

    fn ra(pool: &str, ip: &str) -> ReservedAddress {
        ReservedAddress {
            pool: pool.to_string(),
            address: ip.parse().unwrap(),
        }
    }

    fn zone_reservation() -> Reservation {
        Reservation {
            id: "r-1".to_string(),
            interfaces: vec![ReservedInterface {
                interface: "eth0".to_string(),
                clean_gateway: None,
                ipv4: vec![
                    ra("test-ippool-6", "10.6.168.60"),
                    ra("test-ippool-7", "10.7.168.60"),
                ],
                ipv6: vec![],
            }],
        }
    }

    #[test]
    fn round_trips_through_the_annotation() {
        let r = zone_reservation();
        let text = r.to_annotation();
        assert_eq!(
            text,
            r#"{"id":"r-1","interfaces":[{"interface":"eth0","ipv4":[{"pool":"test-ippool-6","address":"10.6.168.60"},{"pool":"test-ippool-7","address":"10.7.168.60"}]}]}"#
        );
        assert_eq!(Reservation::parse(&text).unwrap(), r);
        assert!(Reservation::parse("{")
            .unwrap_err()
            .to_string()
            .starts_with("annotation aipam.io/reservation:"));
        assert_eq!(
            r.claim_names(),
            vec!["test-ippool-6.10.6.168.60", "test-ippool-7.10.7.168.60"]
        );
        assert_eq!(
            r.to_string(),
            "eth0: 10.6.168.60 (test-ippool-6) 10.7.168.60 (test-ippool-7)"
        );
    }

    #[test]
    fn binding_keeps_the_zone_of_the_node_and_releases_the_rest() {
        let pools: BTreeMap<String, Pool> = [
            zone_pool("test-ippool-6", "10.6.0.0/16", "subnet-6"),
            zone_pool("test-ippool-7", "10.7.0.0/16", "subnet-7"),
        ]
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
        let r = zone_reservation();
        assert!(r.is_provisional());
        assert!(r.details(&pools, &[]).is_err());
        let node7 = NodeInfo {
            name: "worker-node-1".to_string(),
            labels: [("node-subnet".to_string(), "subnet-7".to_string())].into(),
        };
        let (kept, released) = r.resolve_for_node(&pools, &node7).unwrap();
        assert_eq!(
            kept.interfaces[0].ipv4,
            vec![ra("test-ippool-7", "10.7.168.60")]
        );
        assert_eq!(released, vec![ra("test-ippool-6", "10.6.168.60")]);
        assert!(!kept.is_provisional());
        let d = kept.details(&pools, &[]).unwrap();
        assert_eq!(
            d[0].ipv4.as_ref().unwrap().address.to_string(),
            "10.7.168.60/16"
        );
        assert_eq!(
            d[0].ipv4.as_ref().unwrap().gateway,
            Some("10.7.0.1".parse().unwrap())
        );
        let nowhere = NodeInfo {
            name: "edge".to_string(),
            labels: BTreeMap::new(),
        };
        assert_eq!(r.resolve_for_node(&pools, &nowhere), None);
    }

    #[test]
    fn ids_differ_per_request() {
        assert_ne!(reservation_id("a"), reservation_id("b"));
        assert_eq!(reservation_id("a").len(), 18);
    }
}
