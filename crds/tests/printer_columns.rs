//! Every printer column points at a field that exists in the schema, with a sensible type, and the
//! columns are Spiderpool's.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may unwrap

use serde_json::Value;

#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

/// Parses the JSONPath subset kubectl columns use: `.a.b`, `[0]`, `['dotted\.key']`.
fn parse(path: &str) -> Result<Vec<Step>, String> {
    let chars: Vec<char> = path.chars().collect();
    let mut steps = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                if start == i {
                    return Err(format!("empty field name at {start} in {path}"));
                }
                steps.push(Step::Field(chars[start..i].iter().collect()));
            }
            '[' => {
                i += 1;
                if chars.get(i) == Some(&'\'') {
                    i += 1;
                    let mut key = String::new();
                    loop {
                        match chars.get(i) {
                            Some('\\') => {
                                key.push(*chars.get(i + 1).ok_or("dangling escape")?);
                                i += 2;
                            }
                            Some('\'') => {
                                i += 1;
                                break;
                            }
                            Some(c) => {
                                key.push(*c);
                                i += 1;
                            }
                            None => return Err(format!("unterminated key in {path}")),
                        }
                    }
                    steps.push(Step::Field(key));
                } else {
                    let start = i;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                    let n = chars[start..i].iter().collect::<String>();
                    steps.push(Step::Index(
                        n.parse().map_err(|_| format!("bad index in {path}"))?,
                    ));
                }
                if chars.get(i) != Some(&']') {
                    return Err(format!("missing ] in {path}"));
                }
                i += 1;
            }
            c => return Err(format!("unexpected {c:?} in {path}")),
        }
    }
    Ok(steps)
}

const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "deletionTimestamp",
    "labels",
    "annotations",
    "uid",
    "generation",
    "resourceVersion",
    "generateName",
];

/// The schema node the path leads to (`None` for ObjectMeta fields, which the API server knows).
fn resolve<'a>(root: &'a Value, steps: &[Step]) -> Result<Option<&'a Value>, String> {
    if let Some(Step::Field(f)) = steps.first() {
        if f == "metadata" {
            return match steps.get(1) {
                Some(Step::Field(m)) if OBJECT_META_FIELDS.contains(&m.as_str()) => Ok(None),
                other => Err(format!("unknown metadata field {other:?}")),
            };
        }
    }
    let mut node = root;
    for step in steps {
        node = match step {
            Step::Field(f) => node
                .pointer(&format!(
                    "/properties/{}",
                    f.replace('~', "~0").replace('/', "~1")
                ))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))
                .ok_or_else(|| format!("no field {f:?}"))?,
            Step::Index(_) => {
                if node.get("type").and_then(Value::as_str) != Some("array") {
                    return Err("index into a non-array".into());
                }
                node.get("items").ok_or("array without items")?
            }
        };
    }
    Ok(Some(node))
}

#[test]
fn parser_handles_spiderpool_paths() {
    assert_eq!(
        parse(".spec.podAffinity.matchLabels['ipam\\.spidernet\\.io/app\\-namespace']").unwrap(),
        vec![
            Step::Field("spec".into()),
            Step::Field("podAffinity".into()),
            Step::Field("matchLabels".into()),
            Step::Field("ipam.spidernet.io/app-namespace".into()),
        ]
    );
    assert_eq!(
        parse(".status.current.ips[0].interface").unwrap(),
        vec![
            Step::Field("status".into()),
            Step::Field("current".into()),
            Step::Field("ips".into()),
            Step::Index(0),
            Step::Field("interface".into()),
        ]
    );
    assert!(parse(".spec..x").is_err());
}

#[test]
fn columns_point_at_existing_fields() {
    let mut errs = Vec::new();
    for crd in aipam_crds::all_crds() {
        let kind = crd.spec.names.kind.clone();
        let v = &crd.spec.versions[0];
        let root = serde_json::to_value(
            v.schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .unwrap(),
        )
        .unwrap();
        let mut names = std::collections::BTreeSet::new();
        for col in v.additional_printer_columns.iter().flatten() {
            if !names.insert(col.name.clone()) {
                errs.push(format!("{kind}: duplicate column {}", col.name));
            }
            if !["integer", "number", "string", "boolean", "date"].contains(&col.type_.as_str()) {
                errs.push(format!(
                    "{kind} {}: bad column type {}",
                    col.name, col.type_
                ));
            }
            let steps = match parse(&col.json_path) {
                Ok(s) => s,
                Err(e) => {
                    errs.push(format!("{kind} {}: {e}", col.name));
                    continue;
                }
            };
            match resolve(&root, &steps) {
                Err(e) => errs.push(format!("{kind} {} ({}): {e}", col.name, col.json_path)),
                Ok(None) => {}
                Ok(Some(field)) => {
                    let fty = field.get("type").and_then(Value::as_str).unwrap_or("");
                    let ok = match col.type_.as_str() {
                        "integer" => fty == "integer",
                        "number" => fty == "integer" || fty == "number",
                        "boolean" => fty == "boolean",
                        "date" => fty == "string",
                        _ => true,
                    };
                    if !ok {
                        errs.push(format!(
                            "{kind} {}: column type {} but field type {fty}",
                            col.name, col.type_
                        ));
                    }
                }
            }
        }
    }
    assert!(
        errs.is_empty(),
        "bad printer columns:\n  {}",
        errs.join("\n  ")
    );
}

fn columns(kind: &str) -> Vec<(String, String, i32)> {
    let crd = aipam_crds::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap();
    crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.json_path, c.priority.unwrap_or(0)))
        .collect()
}

fn cols(list: &[(&str, &str, i32)]) -> Vec<(String, String, i32)> {
    list.iter()
        .map(|(n, p, pr)| (n.to_string(), p.to_string(), *pr))
        .collect()
}

#[test]
fn columns_are_spiderpools() {
    // From spidernet-io/spiderpool charts/spiderpool/crds/*.yaml (additionalPrinterColumns).
    assert_eq!(
        columns("SpiderIPPool"),
        cols(&[
            ("VERSION", ".spec.ipVersion", 0),
            ("SUBNET", ".spec.subnet", 0),
            ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", 0),
            ("TOTAL-IP-COUNT", ".status.totalIPCount", 0),
            ("DEFAULT", ".spec.default", 0),
            // Spiderpool's current chart hides DISABLE (priority 10); the documents our users read
            // (and `kubectl get spiderippool` in them) show it, so it is a default column here.
            ("DISABLE", ".spec.disable", 0),
            ("NodeName", ".spec.nodeName", 10),
            ("MultusName", ".spec.multusName", 10),
            (
                "APP-NAMESPACE",
                ".spec.podAffinity.matchLabels['ipam\\.spidernet\\.io/app\\-namespace']",
                10
            ),
        ])
    );
    assert_eq!(
        columns("SpiderSubnet"),
        cols(&[
            ("VERSION", ".spec.ipVersion", 0),
            ("SUBNET", ".spec.subnet", 0),
            ("ALLOCATED-IP-COUNT", ".status.allocatedIPCount", 0),
            ("TOTAL-IP-COUNT", ".status.totalIPCount", 0),
        ])
    );
    assert_eq!(
        columns("SpiderEndpoint"),
        cols(&[
            ("INTERFACE", ".status.current.ips[0].interface", 0),
            ("IPV4POOL", ".status.current.ips[0].ipv4Pool", 0),
            ("IPV4", ".status.current.ips[0].ipv4", 0),
            ("IPV6POOL", ".status.current.ips[0].ipv6Pool", 0),
            ("IPV6", ".status.current.ips[0].ipv6", 0),
            ("NODE", ".status.current.node", 0),
        ])
    );
    assert_eq!(
        columns("SpiderReservedIP"),
        cols(&[("VERSION", ".spec.ipVersion", 0)])
    );
    assert_eq!(
        columns("SpiderIPClaim"),
        cols(&[
            ("POOL", ".spec.pool", 0),
            ("ADDRESS", ".spec.address", 0),
            ("NAMESPACE", ".spec.namespace", 0),
            ("POD", ".spec.podName", 0),
            ("INTERFACE", ".spec.interface", 0),
            ("RESERVATION", ".spec.reservation", 0),
            ("AGE", ".metadata.creationTimestamp", 0),
        ])
    );
}
