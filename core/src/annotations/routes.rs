//! `ipam.spidernet.io/routes`: extra routes of a Pod.

use std::net::IpAddr;

use serde_json::Value;

use super::json::{known_fields, opt_string, parse_json};
use super::{AnnotationError, ANNO_ROUTES};

/// One extra route.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub dst: ipnet::IpNet,
    pub gw: IpAddr,
}

/// Parses `ipam.spidernet.io/routes`: a JSON list of `{"dst": "<CIDR>", "gw": "<IP>"}`, `dst`
/// and `gw` of the same IP family, no destination twice. `[]` is no routes.
pub fn parse_routes(value: &str) -> Result<Vec<Route>, AnnotationError> {
    parse_routes_noting(value, &mut Vec::new())
}

/// [`parse_routes`], adding to `warn` what is accepted but probably not meant.
pub fn parse_routes_noting(
    value: &str,
    warn: &mut Vec<String>,
) -> Result<Vec<Route>, AnnotationError> {
    let key = ANNO_ROUTES;
    let example = "[{\"dst\": \"10.0.0.0/16\", \"gw\": \"192.168.1.1\"}]";
    let v = parse_json(key, value, example)?;
    if v.is_null() {
        // Go reads `null` into a list as no list.
        warn.push(format!("annotation {key}: `null` is read as no routes"));
        return Ok(Vec::new());
    }
    let Value::Array(items) = v else {
        return Err(AnnotationError::new(
            key,
            format!("must be a JSON list of routes, e.g. {example}"),
        ));
    };
    let mut out: Vec<Route> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let mut notes = Vec::new();
        let route = route_from(item, example, &mut notes)
            .map_err(|p| AnnotationError::new(key, format!("entry {}: {p}", i + 1)))?;
        warn.extend(
            notes
                .into_iter()
                .map(|n| format!("annotation {key}: entry {}: {n}", i + 1)),
        );
        if out.iter().any(|r| r.dst == route.dst) {
            return Err(AnnotationError::new(
                key,
                format!(
                    "entry {}: destination `{}` is given twice; keep one route per destination",
                    i + 1,
                    route.dst
                ),
            ));
        }
        out.push(route);
    }
    Ok(out)
}

fn route_from(v: &Value, example: &str, warn: &mut Vec<String>) -> Result<Route, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "must be an object like {}",
            &example[1..example.len() - 1]
        ));
    };
    let obj = &known_fields(obj, &["dst", "gw"], &[], warn);
    let dst = opt_string(obj, "dst", "\"10.0.0.0/16\"")?.ok_or_else(|| {
        "`dst` is missing: write the destination CIDR, e.g. \"10.0.0.0/16\"".to_string()
    })?;
    let gw = opt_string(obj, "gw", "\"192.168.1.1\"")?.ok_or_else(|| {
        "`gw` is missing: write the next-hop address, e.g. \"192.168.1.1\"".to_string()
    })?;
    let dst: ipnet::IpNet = dst.trim().parse().map_err(|_| {
        format!(
            "`dst` `{dst}` is not a CIDR: write an address and prefix length, e.g. \"10.0.0.0/16\""
        )
    })?;
    let gw: IpAddr = gw
        .trim()
        .parse()
        .map_err(|_| format!("`gw` `{gw}` is not an IP address: write e.g. \"192.168.1.1\""))?;
    if dst.addr().is_ipv4() != gw.is_ipv4() {
        return Err(format!(
            "`dst` `{dst}` and `gw` `{gw}` are of different IP families: use an {} gateway",
            if dst.addr().is_ipv4() { "IPv4" } else { "IPv6" }
        ));
    }
    Ok(Route { dst, gw })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::err_text;

    #[test]
    fn routes_table() {
        let r = |d: &str, g: &str| Route {
            dst: d.parse().unwrap(),
            gw: g.parse().unwrap(),
        };
        assert_eq!(parse_routes("[]"), Ok(vec![]));
        assert_eq!(
            parse_routes(
                r#"[{"dst":"10.0.0.0/16","gw":"192.168.1.1"},{"dst":"fd00::/64","gw":"fd01::1"}]"#
            ),
            Ok(vec![
                r("10.0.0.0/16", "192.168.1.1"),
                r("fd00::/64", "fd01::1")
            ])
        );
        let k = "annotation ipam.spidernet.io/routes: ";
        let cases = [
            (
                r#"[{"dst":"10.0.0.0/16"}]"#,
                r#"entry 1: `gw` is missing: write the next-hop address, e.g. "192.168.1.1""#,
            ),
            (
                r#"[{"gw":"1.1.1.1"}]"#,
                r#"entry 1: `dst` is missing: write the destination CIDR, e.g. "10.0.0.0/16""#,
            ),
            (
                r#"[{"dst":"10.0.0.0","gw":"1.1.1.1"}]"#,
                r#"entry 1: `dst` `10.0.0.0` is not a CIDR: write an address and prefix length, e.g. "10.0.0.0/16""#,
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"fd00::1"}]"#,
                "entry 1: `dst` `10.0.0.0/16` and `gw` `fd00::1` are of different IP families: \
                 use an IPv4 gateway",
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"x"}]"#,
                r#"entry 1: `gw` `x` is not an IP address: write e.g. "192.168.1.1""#,
            ),
            (
                r#"[{"dst":"10.0.0.0/16","gw":"1.1.1.1"},{"dst":"10.0.0.0/16","gw":"1.1.1.2"}]"#,
                "entry 2: destination `10.0.0.0/16` is given twice; keep one route per destination",
            ),
            (
                "{}",
                r#"must be a JSON list of routes, e.g. [{"dst": "10.0.0.0/16", "gw": "192.168.1.1"}]"#,
            ),
            (
                "[3]",
                r#"entry 1: must be an object like {"dst": "10.0.0.0/16", "gw": "192.168.1.1"}"#,
            ),
        ];
        for (v, problem) in cases {
            assert_eq!(err_text(parse_routes(v)), format!("{k}{problem}"), "{v}");
        }
        // serde form of Route is the annotation's.
        let json = serde_json::to_string(&r("10.0.0.0/16", "192.168.1.1")).unwrap();
        assert_eq!(json, r#"{"dst":"10.0.0.0/16","gw":"192.168.1.1"}"#);
    }

    #[test]
    fn unknown_route_fields_and_null_are_accepted_with_warnings() {
        let mut w = Vec::new();
        let r = parse_routes_noting(
            r#"[{"interface":"eth0","dst":"10.0.0.0/16","gw":"1.1.1.1"}]"#,
            &mut w,
        )
        .unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(
            w,
            ["annotation ipam.spidernet.io/routes: entry 1: unknown field `interface` ignored, as Spiderpool ignores it (the fields are `dst`, `gw`)"]
        );
        let mut w = Vec::new();
        assert_eq!(parse_routes_noting("null", &mut w), Ok(vec![]));
        assert_eq!(
            w,
            ["annotation ipam.spidernet.io/routes: `null` is read as no routes"]
        );
    }
}
