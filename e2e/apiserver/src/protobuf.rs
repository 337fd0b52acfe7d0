//! Just enough Kubernetes protobuf to accept what kubectl ≥ 1.32 sends from its typed `create`
//! commands (`kubectl create namespace|configmap|secret|serviceaccount`): the `k8s\0` envelope
//! (`runtime.Unknown`) and the fields of those four kinds, decoded into their JSON form.
//! Anything else in protobuf is refused with 415 by the caller.

use base64::Engine;
use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, Clone, Copy)]
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*i)?;
        *i += 1;
        out |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(b: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let tag = varint(b, &mut i)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((num, Field::Varint(varint(b, &mut i)?))),
            2 => {
                let len = usize::try_from(varint(b, &mut i)?).ok()?;
                let end = i.checked_add(len)?;
                out.push((num, Field::Bytes(b.get(i..end)?)));
                i = end;
            }
            1 => i = i.checked_add(8)?,
            5 => i = i.checked_add(4)?,
            _ => return None,
        }
    }
    Some(out)
}

fn string(f: &Field<'_>) -> Option<String> {
    match f {
        Field::Bytes(b) => String::from_utf8(b.to_vec()).ok(),
        Field::Varint(_) => None,
    }
}

fn map_entry(f: &Field<'_>, bytes_value: bool) -> Option<(String, Value)> {
    let Field::Bytes(b) = f else { return None };
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, x) in fields(b)? {
        match (n, x) {
            (1, x) => k = string(&x)?,
            (2, Field::Bytes(raw)) if bytes_value => {
                v = json!(base64::engine::general_purpose::STANDARD.encode(raw))
            }
            (2, x) => v = json!(string(&x)?),
            _ => {}
        }
    }
    Some((k, v))
}

fn object_meta(b: &[u8]) -> Option<Value> {
    let mut m = Map::new();
    let mut labels = Map::new();
    let mut annotations = Map::new();
    let mut finalizers = Vec::new();
    for (n, f) in fields(b)? {
        match n {
            1 => m.insert("name".into(), json!(string(&f)?)),
            2 => m.insert("generateName".into(), json!(string(&f)?)),
            3 => m.insert("namespace".into(), json!(string(&f)?)),
            11 => {
                let (k, v) = map_entry(&f, false)?;
                labels.insert(k, v)
            }
            12 => {
                let (k, v) = map_entry(&f, false)?;
                annotations.insert(k, v)
            }
            14 => {
                finalizers.push(json!(string(&f)?));
                None
            }
            _ => None,
        };
    }
    m.retain(|_, v| v.as_str() != Some(""));
    if !labels.is_empty() {
        m.insert("labels".into(), Value::Object(labels));
    }
    if !annotations.is_empty() {
        m.insert("annotations".into(), Value::Object(annotations));
    }
    if !finalizers.is_empty() {
        m.insert("finalizers".into(), Value::Array(finalizers));
    }
    Some(Value::Object(m))
}

/// Decodes a protobuf request body of one of the supported kinds into JSON.
pub fn decode(body: &[u8]) -> Option<Value> {
    let rest = body.strip_prefix(MAGIC)?;
    let mut api_version = String::new();
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(rest)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (tn, tf) in fields(tm)? {
                    match tn {
                        1 => api_version = string(&tf)?,
                        2 => kind = string(&tf)?,
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if api_version != "v1" {
        return None;
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), json!("v1"));
    obj.insert("kind".into(), json!(kind));
    let mut data = Map::new();
    let mut string_data = Map::new();
    for (n, f) in fields(raw)? {
        let Field::Bytes(b) = f else {
            match (kind.as_str(), n, f) {
                ("ConfigMap", 4, Field::Varint(x)) | ("Secret", 5, Field::Varint(x)) => {
                    obj.insert("immutable".into(), json!(x != 0));
                }
                ("ServiceAccount", 4, Field::Varint(x)) => {
                    obj.insert("automountServiceAccountToken".into(), json!(x != 0));
                }
                _ => {}
            }
            continue;
        };
        match (kind.as_str(), n) {
            (_, 1) => {
                obj.insert("metadata".into(), object_meta(b)?);
            }
            ("ConfigMap", 2) => {
                let (k, v) = map_entry(&f, false)?;
                data.insert(k, v);
            }
            ("ConfigMap", 3) => {
                let (k, v) = map_entry(&f, true)?;
                obj.entry("binaryData").or_insert_with(|| json!({}))[k] = v;
            }
            ("Secret", 2) => {
                let (k, v) = map_entry(&f, true)?;
                data.insert(k, v);
            }
            ("Secret", 3) => {
                obj.insert("type".into(), json!(string(&f)?));
            }
            ("Secret", 4) => {
                let (k, v) = map_entry(&f, false)?;
                string_data.insert(k, v);
            }
            ("Namespace", 2) => {
                let fins: Vec<Value> = fields(b)?
                    .into_iter()
                    .filter(|(fn_, _)| *fn_ == 1)
                    .filter_map(|(_, x)| string(&x).map(Value::String))
                    .collect();
                if !fins.is_empty() {
                    obj.insert("spec".into(), json!({"finalizers": fins}));
                }
            }
            ("Namespace", 3) | ("ServiceAccount", _) => {}
            ("ConfigMap" | "Secret", _) => {}
            _ => return None,
        }
    }
    if !matches!(
        kind.as_str(),
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount"
    ) {
        return None;
    }
    if !data.is_empty() {
        obj.insert("data".into(), Value::Object(data));
    }
    if !string_data.is_empty() {
        obj.insert("stringData".into(), Value::Object(string_data));
    }
    Some(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        s.split_whitespace()
            .map(|h| u8::from_str_radix(h, 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_what_kubectl_sends() {
        // kubectl 1.32 `create configmap cm1 --from-literal=k1=v1 --from-literal=k2=v2`
        let cm = hex("6b 38 73 00 0a 0f 0a 02 76 31 12 09 43 6f 6e 66 69 67 4d 61 70 12 29 0a 13 0a 03 63 6d 31 12 00 \
                      1a 00 22 00 2a 00 32 00 38 00 42 00 12 08 0a 02 6b 31 12 02 76 31 12 08 0a 02 6b 32 12 02 76 32 1a 00 22 00");
        assert_eq!(
            decode(&cm).unwrap(),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"k1": "v1", "k2": "v2"}})
        );
        // `create secret generic s1 --from-literal=a=b --type=Opaque`
        let s = hex("6b 38 73 00 0a 0c 0a 02 76 31 12 06 53 65 63 72 65 74 12 24 0a 12 0a 02 73 31 12 00 1a 00 22 00 \
                     2a 00 32 00 38 00 42 00 12 06 0a 01 61 12 01 62 1a 06 4f 70 61 71 75 65 1a 00 22 00");
        assert_eq!(
            decode(&s).unwrap(),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}, "data": {"a": "Yg=="}, "type": "Opaque"})
        );
        // `create namespace n1`
        let ns = hex("6b 38 73 00 0a 0f 0a 02 76 31 12 09 4e 61 6d 65 73 70 61 63 65 12 1a 0a 12 0a 02 6e 31 12 00 1a \
                      00 22 00 2a 00 32 00 38 00 42 00 12 00 1a 02 0a 00 1a 00 22 00");
        assert_eq!(
            decode(&ns).unwrap(),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n1"}})
        );
        assert!(decode(b"{}").is_none());
    }
}
