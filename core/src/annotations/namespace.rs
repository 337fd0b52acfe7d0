//! A Namespace's default pools: `ipam.spidernet.io/default-ipv4-ippool` /
//! `default-ipv6-ippool`, and the older `defaultv4ippool` / `defaultv6ippool`.

use std::collections::BTreeMap;

use super::json::{parse_json, string_list};
use super::{
    validate_pool_name, AnnotationError, ANNO_NS_DEFAULT_IPV4_IPPOOL, ANNO_NS_DEFAULT_IPV6_IPPOOL,
    ANNO_NS_DEFAULT_V4_IPPOOL_OLD, ANNO_NS_DEFAULT_V6_IPPOOL_OLD,
};

/// A Namespace's default pools. The new key wins over the old one; `None` when absent or
/// when the list is empty (Spiderpool then falls through to the next rule).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct NamespaceDefaults {
    pub ipv4: Option<Vec<String>>,
    pub ipv6: Option<Vec<String>>,
    /// What was accepted but is probably not meant (a pool listed twice, `null`).
    pub warnings: Vec<String>,
}

/// Parses a JSON list of pool names (Namespace default pools): valid names or wildcards, no
/// empty name, no duplicate. `[]` gives an empty list. `key` is only used in errors.
pub fn parse_pool_list(key: &str, value: &str) -> Result<Vec<String>, AnnotationError> {
    parse_pool_list_noting(key, value, &mut Vec::new())
}

/// [`parse_pool_list`], adding to `warn` what is accepted but probably not meant.
pub fn parse_pool_list_noting(
    key: &str,
    value: &str,
    warn: &mut Vec<String>,
) -> Result<Vec<String>, AnnotationError> {
    let v = parse_json(key, value, "[\"pool-a\", \"pool-b\"]")?;
    if v.is_null() {
        // Go reads `null` into a list as no list.
        warn.push(format!("annotation {key}: `null` is read as no pools"));
        return Ok(Vec::new());
    }
    let mut notes = Vec::new();
    let list = string_list(&v, None, "pool", validate_pool_name, &mut notes)
        .map_err(|p| AnnotationError::new(key, p))?;
    warn.extend(notes.into_iter().map(|n| format!("annotation {key}: {n}")));
    Ok(list)
}

/// Reads a Namespace's default pools: `default-ipv4-ippool` / `default-ipv6-ippool`, else the
/// older `defaultv4ippool` / `defaultv6ippool`. An empty list counts as absent.
pub fn namespace_defaults(
    annotations: &BTreeMap<String, String>,
) -> Result<NamespaceDefaults, AnnotationError> {
    let mut warnings = Vec::new();
    let mut read = |new: &str, old: &str| -> Result<Option<Vec<String>>, AnnotationError> {
        let found = match (annotations.get(new), annotations.get(old)) {
            (Some(v), _) => Some(parse_pool_list_noting(new, v, &mut warnings)?),
            (None, Some(v)) => {
                warnings.push(format!(
                    "annotation {old} is an older Spiderpool spelling, which Spiderpool 1.x \
                     ignores; read here, rename it to {new}"
                ));
                Some(parse_pool_list_noting(old, v, &mut warnings)?)
            }
            (None, None) => None,
        };
        Ok(found.filter(|l| !l.is_empty()))
    };
    let ipv4 = read(ANNO_NS_DEFAULT_IPV4_IPPOOL, ANNO_NS_DEFAULT_V4_IPPOOL_OLD)?;
    let ipv6 = read(ANNO_NS_DEFAULT_IPV6_IPPOOL, ANNO_NS_DEFAULT_V6_IPPOOL_OLD)?;
    Ok(NamespaceDefaults {
        ipv4,
        ipv6,
        warnings,
    })
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::{annos, err_text, strs, NAME_RULE};

    #[test]
    fn pool_list_table() {
        let k = ANNO_NS_DEFAULT_IPV4_IPPOOL;
        assert_eq!(parse_pool_list(k, "[]"), Ok(vec![]));
        assert_eq!(parse_pool_list(k, r#"["a","b*"]"#), Ok(strs(&["a", "b*"])));
        let cases = [
            (
                r#"[""]"#,
                "an empty pool name is listed: remove it or write the pool's name",
            ),
            (
                r#"{"a":1}"#,
                r#"must be a list of pool names, e.g. ["pool-a", "pool-b"]"#,
            ),
            (r#"[null]"#, "entry 1 must be a string (a pool name)"),
            ("a,b", "invalid JSON at line 1 column 1: expected value"),
        ];
        for (v, problem) in cases {
            assert_eq!(
                err_text(parse_pool_list(k, v)),
                format!("annotation {k}: {problem}"),
                "{v}"
            );
        }
    }

    #[test]
    fn namespace_defaults_precedence() {
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV4_IPPOOL, r#"["new4"]"#),
            (ANNO_NS_DEFAULT_V4_IPPOOL_OLD, r#"["old4"]"#),
            (ANNO_NS_DEFAULT_V6_IPPOOL_OLD, r#"["old6"]"#),
        ]);
        assert_eq!(
            namespace_defaults(&a),
            Ok(NamespaceDefaults {
                ipv4: Some(strs(&["new4"])),
                ipv6: Some(strs(&["old6"])),
                warnings: vec![
                    "annotation ipam.spidernet.io/defaultv6ippool is an older Spiderpool spelling, which Spiderpool 1.x ignores; read here, rename it to ipam.spidernet.io/default-ipv6-ippool".to_string()
                ],
            })
        );
        assert_eq!(
            namespace_defaults(&BTreeMap::new()),
            Ok(NamespaceDefaults::default())
        );
        // An empty list counts as absent; the old key is not consulted then.
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV6_IPPOOL, "[]"),
            (ANNO_NS_DEFAULT_V6_IPPOOL_OLD, r#"["old6"]"#),
        ]);
        assert_eq!(namespace_defaults(&a), Ok(NamespaceDefaults::default()));
        // A broken old key is ignored when the new key is present, reported otherwise.
        let a = annos(&[
            (ANNO_NS_DEFAULT_IPV4_IPPOOL, r#"["a"]"#),
            (ANNO_NS_DEFAULT_V4_IPPOOL_OLD, "garbage"),
        ]);
        assert!(namespace_defaults(&a).is_ok());
        let a = annos(&[(ANNO_NS_DEFAULT_V4_IPPOOL_OLD, r#"["A"]"#)]);
        assert_eq!(
            err_text(namespace_defaults(&a)),
            format!("annotation ipam.spidernet.io/defaultv4ippool: `A` is not a valid pool name: {NAME_RULE}")
        );
    }
}
