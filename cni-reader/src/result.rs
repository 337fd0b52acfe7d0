//! From one interface's reservation (`IPAllocationDetail`) to a CNI result, in the shape of each
//! supported version, and the addresses of a `prevResult` for CHECK.

use std::collections::BTreeSet;
use std::net::IpAddr;

use aipam_crds::IPAllocationDetail;
use ipnet::IpNet;
use serde::Serialize;
use serde_json::Value;

use crate::config::Version;

/// One address with its prefix and the pool's gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// Address with the pool subnet's prefix length, e.g. `10.6.168.60/16`.
    pub address: IpNet,
    /// The pool's gateway, if it has one.
    pub gateway: Option<IpAddr>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNet,
    /// Next hop (`None`: the runtime uses the interface's gateway).
    pub gw: Option<IpAddr>,
}

/// What ADD hands back for one interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// IPv4 first, then IPv6.
    pub addresses: Vec<Address>,
    /// The pool's routes, then the default routes (unless `cleanGateway`).
    pub routes: Vec<Route>,
    /// The pool's VLAN (informational: a CNI result has no VLAN field).
    pub vlan: Option<i64>,
}

fn default_net(ip: &IpAddr) -> IpNet {
    match ip {
        IpAddr::V4(_) => IpNet::V4(Default::default()),
        IpAddr::V6(_) => IpNet::V6(Default::default()),
    }
}

fn parse_family(
    what: &str,
    cidr: Option<&str>,
    gateway: Option<&str>,
    v4: bool,
) -> Result<Option<Address>, String> {
    let Some(cidr) = cidr.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let address: IpNet = cidr
        .parse()
        .map_err(|_| format!("{what} {cidr:?} is not an address with a prefix length"))?;
    if matches!(address, IpNet::V4(_)) != v4 {
        return Err(format!("{what} {cidr:?} is of the wrong IP family"));
    }
    let gateway = match gateway.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(g) => {
            let gw: IpAddr = g
                .parse()
                .map_err(|_| format!("{what} gateway {g:?} is not an IP address"))?;
            if gw.is_ipv4() != v4 {
                return Err(format!("{what} gateway {g:?} is of the wrong IP family"));
            }
            Some(gw)
        }
    };
    Ok(Some(Address { address, gateway }))
}

impl Reservation {
    /// Builds the reservation of one interface; an error names the malformed field.
    pub fn from_detail(d: &IPAllocationDetail) -> Result<Reservation, String> {
        let mut addresses = Vec::new();
        addresses.extend(parse_family(
            "ipv4",
            d.ipv4.as_deref(),
            d.ipv4_gateway.as_deref(),
            true,
        )?);
        addresses.extend(parse_family(
            "ipv6",
            d.ipv6.as_deref(),
            d.ipv6_gateway.as_deref(),
            false,
        )?);
        if addresses.is_empty() {
            return Err(format!(
                "the entry for interface {:?} has neither an ipv4 nor an ipv6 address",
                d.nic
            ));
        }
        let mut routes = Vec::new();
        for r in d.routes.iter().flatten() {
            let dst: IpNet = r
                .dst
                .trim()
                .parse()
                .map_err(|_| format!("route dst {:?} is not a CIDR", r.dst))?;
            let gw = match r.gw.trim() {
                "" => None,
                g => {
                    let gw: IpAddr = g
                        .parse()
                        .map_err(|_| format!("route gw {:?} is not an IP address", r.gw))?;
                    if gw.is_ipv4() != matches!(dst, IpNet::V4(_)) {
                        return Err(format!(
                            "route {} via {}: destination and gateway differ in IP family",
                            r.dst, r.gw
                        ));
                    }
                    Some(gw)
                }
            };
            routes.push(Route {
                dst: dst.trunc(),
                gw,
            });
        }
        if !d.clean_gateway.unwrap_or(false) {
            for a in &addresses {
                if let Some(gw) = a.gateway {
                    let dst = default_net(&gw);
                    if !routes.iter().any(|r| r.dst == dst) {
                        routes.push(Route { dst, gw: Some(gw) });
                    }
                }
            }
        }
        Ok(Reservation {
            addresses,
            routes,
            vlan: d.vlan.filter(|v| *v != 0),
        })
    }

    /// The addresses, for comparison with a `prevResult`.
    pub fn address_set(&self) -> BTreeSet<IpNet> {
        self.addresses.iter().map(|a| a.address).collect()
    }

    /// The CNI result for `cni_version` (0.3.x and 0.4.0 carry `ips[].version`).
    pub fn to_result(&self, cni_version: &str, version: Version) -> Value {
        #[derive(Serialize)]
        struct Ip {
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<&'static str>,
            address: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            gateway: Option<String>,
        }
        #[derive(Serialize)]
        struct RouteOut {
            dst: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            gw: Option<String>,
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out<'a> {
            cni_version: &'a str,
            ips: Vec<Ip>,
            routes: Vec<RouteOut>,
            dns: serde_json::Map<String, Value>,
        }
        let with_version = version.has_ip_version_field();
        let out = Out {
            cni_version,
            ips: self
                .addresses
                .iter()
                .map(|a| Ip {
                    version: with_version.then_some(match a.address {
                        IpNet::V4(_) => "4",
                        IpNet::V6(_) => "6",
                    }),
                    address: a.address.to_string(),
                    gateway: a.gateway.map(|g| g.to_string()),
                })
                .collect(),
            routes: self
                .routes
                .iter()
                .map(|r| RouteOut {
                    dst: r.dst.to_string(),
                    gw: r.gw.map(|g| g.to_string()),
                })
                .collect(),
            dns: serde_json::Map::new(),
        };
        serde_json::to_value(out).unwrap_or(Value::Null)
    }
}

/// The addresses a `prevResult` gives interface `ifname`: entries of `ips` whose `interface`
/// index names an interface called `ifname` inside a sandbox, or that name no interface.
pub fn prev_result_addresses(prev: &Value, ifname: &str) -> Result<BTreeSet<IpNet>, String> {
    let interfaces = prev
        .get("interfaces")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let ips = prev
        .get("ips")
        .and_then(Value::as_array)
        .ok_or("prevResult has no \"ips\" list")?;
    let mut out = BTreeSet::new();
    for ip in ips {
        if let Some(idx) = ip.get("interface").and_then(Value::as_u64) {
            let iface = usize::try_from(idx)
                .ok()
                .and_then(|i| interfaces.get(i))
                .ok_or_else(|| {
                    format!("prevResult ips entry names interface {idx}, which is not listed")
                })?;
            let name = iface
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let sandbox = iface
                .get("sandbox")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name != ifname || sandbox.is_empty() {
                continue;
            }
        }
        let addr = ip
            .get("address")
            .and_then(Value::as_str)
            .ok_or("prevResult ips entry has no address")?;
        let net: IpNet = addr
            .parse()
            .map_err(|_| format!("prevResult address {addr:?} is not a CIDR"))?;
        out.insert(net);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aipam_crds::Route as CrdRoute;

    fn detail() -> IPAllocationDetail {
        IPAllocationDetail {
            nic: "eth0".into(),
            ipv4: Some("10.6.168.60/16".into()),
            ipv6: Some("fd00:6::3c/64".into()),
            ipv4_pool: Some("v4".into()),
            ipv6_pool: Some("v6".into()),
            ipv4_gateway: Some("10.6.0.1".into()),
            ipv6_gateway: Some("fd00:6::1".into()),
            routes: Some(vec![CrdRoute {
                dst: "172.18.42.0/24".into(),
                gw: "10.6.0.254".into(),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn dual_stack_with_default_routes() {
        let r = Reservation::from_detail(&detail()).unwrap();
        let v = r.to_result("0.3.1", Version(0, 3, 1));
        assert_eq!(v["ips"][0]["version"], "4");
        assert_eq!(v["ips"][0]["address"], "10.6.168.60/16");
        assert_eq!(v["ips"][0]["gateway"], "10.6.0.1");
        assert_eq!(v["ips"][1]["version"], "6");
        assert_eq!(v["routes"][0]["dst"], "172.18.42.0/24");
        assert_eq!(v["routes"][1]["dst"], "0.0.0.0/0");
        assert_eq!(v["routes"][2]["dst"], "::/0");
        assert_eq!(v["routes"][2]["gw"], "fd00:6::1");
        assert!(v.get("interfaces").is_none());
        let v = r.to_result("1.0.0", Version(1, 0, 0));
        assert!(v["ips"][0].get("version").is_none());
        assert_eq!(v["dns"], serde_json::json!({}));
    }

    #[test]
    fn clean_gateway_means_no_default_route_and_no_duplicate_default() {
        let mut d = detail();
        d.clean_gateway = Some(true);
        let r = Reservation::from_detail(&d).unwrap();
        assert_eq!(r.routes.len(), 1);
        let mut d = detail();
        d.routes = Some(vec![CrdRoute {
            dst: "0.0.0.0/0".into(),
            gw: "10.6.0.254".into(),
        }]);
        let r = Reservation::from_detail(&d).unwrap();
        let v4_defaults: Vec<_> = r
            .routes
            .iter()
            .filter(|r| r.dst == "0.0.0.0/0".parse::<IpNet>().unwrap())
            .collect();
        assert_eq!(v4_defaults.len(), 1);
        assert_eq!(v4_defaults[0].gw, Some("10.6.0.254".parse().unwrap()));
    }

    #[test]
    fn malformed_fields_are_named() {
        let mut d = detail();
        d.ipv4 = Some("10.6.168.60".into());
        assert!(Reservation::from_detail(&d).unwrap_err().contains("ipv4"));
        let mut d = detail();
        d.ipv6_gateway = Some("10.0.0.1".into());
        assert!(Reservation::from_detail(&d).unwrap_err().contains("family"));
        let d = IPAllocationDetail {
            nic: "net1".into(),
            ..Default::default()
        };
        assert!(Reservation::from_detail(&d)
            .unwrap_err()
            .contains("neither"));
    }

    #[test]
    fn prev_result_filters_by_interface() {
        let prev = serde_json::json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "cni0"},
                {"name": "eth0", "sandbox": "/var/run/netns/x"},
                {"name": "net1", "sandbox": "/var/run/netns/x"}
            ],
            "ips": [
                {"address": "10.6.168.60/16", "interface": 1},
                {"address": "192.168.9.9/24", "interface": 2},
                {"address": "10.9.9.9/24", "interface": 0}
            ]
        });
        let set = prev_result_addresses(&prev, "eth0").unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains(&"10.6.168.60/16".parse().unwrap()));
        let bare = serde_json::json!({"ips": [{"version": "4", "address": "10.1.2.3/24"}]});
        assert_eq!(prev_result_addresses(&bare, "eth0").unwrap().len(), 1);
    }
}
