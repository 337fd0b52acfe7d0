//! Kubernetes label selectors, as SpiderIPPool uses them for `nodeAffinity`,
//! `namespaceAffinity` and `podAffinity`.
//!
//! The rules follow apimachinery exactly:
//! * keys are qualified names (`IsQualifiedName`): an optional DNS-subdomain prefix (≤ 253
//!   characters) and `/`, then a name of at most 63 characters made of alphanumerics, `-`, `_`
//!   and `.`, starting and ending with an alphanumeric;
//! * values are label values (`IsValidLabelValue`): empty, or at most 63 characters with the
//!   same alphabet as a name;
//! * operators are `In`, `NotIn`, `Exists`, `DoesNotExist` (case-sensitive); `In`/`NotIn` need at
//!   least one value, `Exists`/`DoesNotExist` take none (`ValidateLabelSelectorRequirement`);
//! * matching is `LabelSelectorAsSelector`: every requirement must hold; an empty selector
//!   matches everything; `NotIn` and `DoesNotExist` hold when the key is absent.
//!
//! [`LabelSelector`]'s `Display` is apimachinery's `Selector.String()` (what kubectl prints):
//! requirements sorted by key, values of `in`/`notin` sorted and de-duplicated, e.g.
//! `app=web,!legacy,tier in (a,b),zone`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::names::{is_dns1123_subdomain, DNS1123_SUBDOMAIN_MAX_LEN};

/// Longest name part of a qualified name, and longest label value.
pub const QUALIFIED_NAME_MAX_LEN: usize = 63;
/// Longest label value.
pub const LABEL_VALUE_MAX_LEN: usize = 63;

/// The four operators of `matchExpressions`.
pub const OPERATORS: [&str; 4] = ["In", "NotIn", "Exists", "DoesNotExist"];

/// A Kubernetes `metav1.LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One entry of `matchExpressions`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Why a selector, a label key or a label value is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// A key (of `matchLabels`, of a `matchExpressions` entry, or checked on its own) is not a
    /// qualified name.
    #[error("invalid label key `{key}`: {reason}")]
    InvalidKey { key: String, reason: String },
    /// A value checked on its own is not a valid label value.
    #[error("invalid label value `{value}`: {reason}")]
    InvalidLabelValue { value: String, reason: String },
    /// A value given for `key` (in `matchLabels` or in `values`) is not a valid label value.
    #[error("invalid value `{value}` for label key `{key}`: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    /// The operator is not one of the four.
    #[error(
        "matchExpressions entry for key `{key}`: operator `{operator}` is not valid; use one of \
         In, NotIn, Exists, DoesNotExist (case-sensitive)"
    )]
    UnknownOperator { key: String, operator: String },
    /// `In` / `NotIn` without values.
    #[error(
        "matchExpressions entry for key `{key}`: operator {operator} needs at least one entry in \
         `values`"
    )]
    ValuesRequired { key: String, operator: String },
    /// `Exists` / `DoesNotExist` with values.
    #[error(
        "matchExpressions entry for key `{key}`: operator {operator} takes no `values`; remove \
         them, or use In / NotIn to compare values"
    )]
    ValuesForbidden { key: String, operator: String },
}

impl LabelSelector {
    /// Checks the selector against apimachinery's `ValidateLabelSelector` rules.
    pub fn validate(&self) -> Result<(), SelectorError> {
        for (key, value) in &self.match_labels {
            validate_label_key(key)?;
            check_value_for(key, value)?;
        }
        for req in &self.match_expressions {
            req.validate()?;
        }
        Ok(())
    }

    /// Validates, then tells whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
        self.validate()?;
        let labels_ok = self
            .match_labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v));
        Ok(labels_ok && self.match_expressions.iter().all(|r| r.holds(labels)))
    }

    /// True when there is neither a `matchLabels` entry nor a `matchExpressions` entry: such a
    /// selector matches everything.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl LabelSelectorRequirement {
    /// Checks one requirement (key, operator, values).
    pub fn validate(&self) -> Result<(), SelectorError> {
        validate_label_key(&self.key)?;
        match self.operator.as_str() {
            "In" | "NotIn" => {
                if self.values.is_empty() {
                    return Err(SelectorError::ValuesRequired {
                        key: self.key.clone(),
                        operator: self.operator.clone(),
                    });
                }
            }
            "Exists" | "DoesNotExist" => {
                if !self.values.is_empty() {
                    return Err(SelectorError::ValuesForbidden {
                        key: self.key.clone(),
                        operator: self.operator.clone(),
                    });
                }
            }
            _ => {
                return Err(SelectorError::UnknownOperator {
                    key: self.key.clone(),
                    operator: self.operator.clone(),
                })
            }
        }
        for v in &self.values {
            check_value_for(&self.key, v)?;
        }
        Ok(())
    }

    /// Evaluates an already validated requirement.
    fn holds(&self, labels: &BTreeMap<String, String>) -> bool {
        let have = labels.get(&self.key);
        match self.operator.as_str() {
            "In" => have.is_some_and(|v| self.values.contains(v)),
            "NotIn" => have.is_none_or(|v| !self.values.contains(v)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    }
}

fn check_value_for(key: &str, value: &str) -> Result<(), SelectorError> {
    label_value_problem(value).map_or(Ok(()), |reason| {
        Err(SelectorError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        })
    })
}

/// One rendered requirement of the string form, with its sort key.
struct Rendered {
    key: String,
    text: String,
}

impl fmt::Display for LabelSelector {
    /// apimachinery's `Selector.String()`: requirements sorted by key (stable, so equal keys
    /// keep `matchLabels` first, then `matchExpressions` in their written order), joined by `,`.
    /// An empty selector prints as the empty string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<Rendered> = Vec::new();
        for (k, v) in &self.match_labels {
            parts.push(Rendered {
                key: k.clone(),
                text: format!("{k}={v}"),
            });
        }
        for r in &self.match_expressions {
            let values: BTreeSet<&str> = r.values.iter().map(String::as_str).collect();
            let list = values.into_iter().collect::<Vec<_>>().join(",");
            let text = match r.operator.as_str() {
                "In" => format!("{} in ({list})", r.key),
                "NotIn" => format!("{} notin ({list})", r.key),
                "Exists" => r.key.clone(),
                "DoesNotExist" => format!("!{}", r.key),
                other => format!("{} {other} ({list})", r.key),
            };
            parts.push(Rendered {
                key: r.key.clone(),
                text,
            });
        }
        parts.sort_by(|a, b| a.key.cmp(&b.key));
        let joined = parts
            .iter()
            .map(|p| p.text.as_str())
            .collect::<Vec<_>>()
            .join(",");
        f.write_str(&joined)
    }
}

/// Checks a label key: apimachinery's `IsQualifiedName`.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    qualified_name_problem(key).map_or(Ok(()), |reason| {
        Err(SelectorError::InvalidKey {
            key: key.to_string(),
            reason,
        })
    })
}

/// Checks a label value: apimachinery's `IsValidLabelValue` (empty is allowed).
pub fn validate_label_value(value: &str) -> Result<(), SelectorError> {
    label_value_problem(value).map_or(Ok(()), |reason| {
        Err(SelectorError::InvalidLabelValue {
            value: value.to_string(),
            reason,
        })
    })
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, non-empty.
fn is_qualified_name_part(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_alnum(first)
        && is_alnum(last)
        && s.chars()
            .all(|c| is_alnum(c) || c == '-' || c == '_' || c == '.')
}

const NAME_CHARS: &str = "consist of alphanumeric characters, '-', '_' or '.', and must start \
                          and end with an alphanumeric character (e.g. 'MyName', 'my.name' or \
                          '123-abc')";
const SUBDOMAIN_RULE: &str = "must be a lowercase RFC 1123 subdomain: lowercase alphanumeric \
                              characters, '-' or '.', starting and ending with an alphanumeric \
                              character (e.g. 'example.com')";

fn qualified_name_problem(key: &str) -> Option<String> {
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                return Some("the prefix before '/' must be non-empty".to_string());
            }
            if prefix.len() > DNS1123_SUBDOMAIN_MAX_LEN {
                return Some(format!(
                    "the prefix before '/' must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} \
                     characters"
                ));
            }
            if !is_dns1123_subdomain(prefix) {
                return Some(format!("the prefix before '/' {SUBDOMAIN_RULE}"));
            }
            *name
        }
        _ => {
            return Some(
                "a qualified name has at most one '/': an optional DNS subdomain prefix, '/', \
                 then a name (e.g. 'example.com/MyName')"
                    .to_string(),
            )
        }
    };
    if name.is_empty() {
        return Some("the name part must be non-empty".to_string());
    }
    if name.len() > QUALIFIED_NAME_MAX_LEN {
        return Some(format!(
            "the name part must be no more than {QUALIFIED_NAME_MAX_LEN} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        return Some(format!("the name part must {NAME_CHARS}"));
    }
    None
}

fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    if value.len() > LABEL_VALUE_MAX_LEN {
        return Some(format!(
            "a label value must be no more than {LABEL_VALUE_MAX_LEN} characters"
        ));
    }
    if !is_qualified_name_part(value) {
        return Some(format!("a label value must be empty or {NAME_CHARS}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: values.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn sel(ml: &[(&str, &str)], exprs: Vec<LabelSelectorRequirement>) -> LabelSelector {
        LabelSelector {
            match_labels: labels(ml),
            match_expressions: exprs,
        }
    }

    #[test]
    fn matching_table() {
        let pod = labels(&[("app", "web"), ("tier", "front"), ("zone", "")]);
        let cases: Vec<(&str, LabelSelector, bool)> = vec![
            ("empty selector matches all", LabelSelector::default(), true),
            ("matchLabels equal", sel(&[("app", "web")], vec![]), true),
            ("matchLabels differ", sel(&[("app", "db")], vec![]), false),
            ("matchLabels absent", sel(&[("x", "y")], vec![]), false),
            (
                "matchLabels empty value",
                sel(&[("zone", "")], vec![]),
                true,
            ),
            (
                "In hit",
                sel(&[], vec![req("tier", "In", &["a", "front"])]),
                true,
            ),
            ("In miss", sel(&[], vec![req("tier", "In", &["a"])]), false),
            (
                "In absent key",
                sel(&[], vec![req("nope", "In", &["a"])]),
                false,
            ),
            (
                "NotIn hit",
                sel(&[], vec![req("tier", "NotIn", &["front"])]),
                false,
            ),
            (
                "NotIn miss",
                sel(&[], vec![req("tier", "NotIn", &["back"])]),
                true,
            ),
            (
                "NotIn absent key",
                sel(&[], vec![req("nope", "NotIn", &["a"])]),
                true,
            ),
            (
                "Exists present",
                sel(&[], vec![req("zone", "Exists", &[])]),
                true,
            ),
            (
                "Exists absent",
                sel(&[], vec![req("nope", "Exists", &[])]),
                false,
            ),
            (
                "DoesNotExist present",
                sel(&[], vec![req("app", "DoesNotExist", &[])]),
                false,
            ),
            (
                "DoesNotExist absent",
                sel(&[], vec![req("nope", "DoesNotExist", &[])]),
                true,
            ),
            (
                "all must hold",
                sel(&[("app", "web")], vec![req("tier", "In", &["back"])]),
                false,
            ),
            (
                "all hold",
                sel(
                    &[("app", "web")],
                    vec![
                        req("tier", "In", &["front"]),
                        req("legacy", "DoesNotExist", &[]),
                    ],
                ),
                true,
            ),
        ];
        for (name, s, want) in cases {
            assert_eq!(s.matches(&pod), Ok(want), "{name}");
        }
        // An empty selector matches an empty label set too.
        assert_eq!(LabelSelector::default().matches(&BTreeMap::new()), Ok(true));
        assert!(LabelSelector::default().is_empty());
        assert!(!sel(&[("a", "b")], vec![]).is_empty());
    }

    #[test]
    fn validation_errors_and_messages() {
        let cases: Vec<(LabelSelector, &str)> = vec![
            (
                sel(&[], vec![req("tier", "in", &["a"])]),
                "matchExpressions entry for key `tier`: operator `in` is not valid; use one of \
                 In, NotIn, Exists, DoesNotExist (case-sensitive)",
            ),
            (
                sel(&[], vec![req("tier", "In", &[])]),
                "matchExpressions entry for key `tier`: operator In needs at least one entry in \
                 `values`",
            ),
            (
                sel(&[], vec![req("tier", "NotIn", &[])]),
                "matchExpressions entry for key `tier`: operator NotIn needs at least one entry \
                 in `values`",
            ),
            (
                sel(&[], vec![req("tier", "Exists", &["a"])]),
                "matchExpressions entry for key `tier`: operator Exists takes no `values`; \
                 remove them, or use In / NotIn to compare values",
            ),
            (
                sel(&[], vec![req("tier", "DoesNotExist", &["a"])]),
                "matchExpressions entry for key `tier`: operator DoesNotExist takes no `values`; \
                 remove them, or use In / NotIn to compare values",
            ),
            (
                sel(&[("-bad", "x")], vec![]),
                "invalid label key `-bad`: the name part must consist of alphanumeric \
                 characters, '-', '_' or '.', and must start and end with an alphanumeric \
                 character (e.g. 'MyName', 'my.name' or '123-abc')",
            ),
            (
                sel(&[("app", "bad value")], vec![]),
                "invalid value `bad value` for label key `app`: a label value must be empty or \
                 consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                 with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')",
            ),
            (
                sel(&[], vec![req("tier", "In", &["ok", "-no"])]),
                "invalid value `-no` for label key `tier`: a label value must be empty or \
                 consist of alphanumeric characters, '-', '_' or '.', and must start and end \
                 with an alphanumeric character (e.g. 'MyName', 'my.name' or '123-abc')",
            ),
            (
                sel(&[], vec![req("Example.com/x", "Exists", &[])]),
                "invalid label key `Example.com/x`: the prefix before '/' must be a lowercase \
                 RFC 1123 subdomain: lowercase alphanumeric characters, '-' or '.', starting \
                 and ending with an alphanumeric character (e.g. 'example.com')",
            ),
            (
                sel(&[("/x", "y")], vec![]),
                "invalid label key `/x`: the prefix before '/' must be non-empty",
            ),
            (
                sel(&[("a.b/", "y")], vec![]),
                "invalid label key `a.b/`: the name part must be non-empty",
            ),
            (
                sel(&[("a/b/c", "y")], vec![]),
                "invalid label key `a/b/c`: a qualified name has at most one '/': an optional \
                 DNS subdomain prefix, '/', then a name (e.g. 'example.com/MyName')",
            ),
            (
                sel(&[("", "y")], vec![]),
                "invalid label key ``: the name part must be non-empty",
            ),
        ];
        for (s, msg) in cases {
            let err = s.validate().unwrap_err();
            assert_eq!(err.to_string(), msg);
            // matches() validates first.
            assert_eq!(s.matches(&BTreeMap::new()).unwrap_err(), err);
        }
    }

    #[test]
    fn key_and_value_rules() {
        let long63 = "a".repeat(63);
        let long64 = "a".repeat(64);
        assert!(validate_label_key(&long63).is_ok());
        assert_eq!(
            validate_label_key(&long64).unwrap_err().to_string(),
            format!(
                "invalid label key `{long64}`: the name part must be no more than 63 characters"
            )
        );
        let prefix = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(prefix.len(), 253);
        assert!(validate_label_key(&format!("{prefix}/x")).is_ok());
        assert!(validate_label_key(&format!("{prefix}e/x")).is_err());
        for ok in [
            "app",
            "kubernetes.io/hostname",
            "node-role.kubernetes.io/control-plane",
            "A_b.C-1",
            "1",
        ] {
            assert!(validate_label_key(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a b", "a_", "_a", ".a", "a/-b", "a..b/c", "-a.com/x", "a/", "é",
        ] {
            assert!(validate_label_key(bad).is_err(), "{bad}");
        }
        for ok in ["", "v1", "A.b_c-D", &long63] {
            assert!(validate_label_value(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            validate_label_value(&long64).unwrap_err().to_string(),
            format!(
                "invalid label value `{long64}`: a label value must be no more than 63 characters"
            )
        );
        for bad in ["a/b", "-a", "a-", "a b", "ü"] {
            assert!(validate_label_value(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_is_kubectl_form() {
        let s = sel(
            &[("app", "web")],
            vec![
                req("tier", "In", &["b", "a", "b"]),
                req("legacy", "DoesNotExist", &[]),
                req("zone", "Exists", &[]),
                req("env", "NotIn", &["prod"]),
            ],
        );
        assert_eq!(
            s.to_string(),
            "app=web,env notin (prod),!legacy,tier in (a,b),zone"
        );
        assert_eq!(LabelSelector::default().to_string(), "");
    }

    #[test]
    fn serde_camel_case_round_trip() {
        let json =
            r#"{"matchLabels":{"a":"b"},"matchExpressions":[{"key":"k","operator":"Exists"}]}"#;
        let s: LabelSelector = serde_json::from_str(json).unwrap();
        assert_eq!(s, sel(&[("a", "b")], vec![req("k", "Exists", &[])]));
        assert_eq!(serde_json::to_string(&s).unwrap(), json);
        let empty: LabelSelector = serde_json::from_str("{}").unwrap();
        assert!(empty.is_empty());
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
    }

    // ---- property tests ----

    fn key_strategy() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["a", "b", "c", "x.io/d"]).prop_map(str::to_string)
    }
    fn value_strategy() -> impl Strategy<Value = String> {
        prop::sample::select(vec!["", "1", "2", "v"]).prop_map(str::to_string)
    }
    fn requirement_strategy() -> impl Strategy<Value = LabelSelectorRequirement> {
        (
            key_strategy(),
            prop::sample::select(vec!["In", "NotIn", "Exists", "DoesNotExist"]),
            prop::collection::vec(value_strategy(), 1..3),
        )
            .prop_map(|(key, op, values)| LabelSelectorRequirement {
                key,
                operator: op.to_string(),
                values: if op == "In" || op == "NotIn" {
                    values
                } else {
                    vec![]
                },
            })
    }
    fn selector_strategy() -> impl Strategy<Value = LabelSelector> {
        (
            prop::collection::btree_map(key_strategy(), value_strategy(), 0..3),
            prop::collection::vec(requirement_strategy(), 0..4),
        )
            .prop_map(|(match_labels, match_expressions)| LabelSelector {
                match_labels,
                match_expressions,
            })
    }

    /// A deliberately plain evaluation written from the Kubernetes documentation.
    fn naive(s: &LabelSelector, l: &BTreeMap<String, String>) -> bool {
        for (k, v) in &s.match_labels {
            match l.get(k) {
                Some(have) if have == v => {}
                _ => return false,
            }
        }
        for r in &s.match_expressions {
            let present = l.contains_key(&r.key);
            let in_set = present && r.values.iter().any(|v| Some(v) == l.get(&r.key));
            let ok = match r.operator.as_str() {
                "In" => in_set,
                "NotIn" => !in_set,
                "Exists" => present,
                _ => !present,
            };
            if !ok {
                return false;
            }
        }
        true
    }

    proptest! {
        #[test]
        fn matches_equals_naive(
            s in selector_strategy(),
            l in prop::collection::btree_map(key_strategy(), value_strategy(), 0..4),
        ) {
            prop_assert_eq!(s.matches(&l), Ok(naive(&s, &l)));
        }

        #[test]
        fn display_is_stable(s in selector_strategy()) {
            let mut shuffled = s.clone();
            shuffled.match_expressions.reverse();
            let a = s.to_string();
            prop_assert_eq!(&a, &s.to_string());
            // Order of expressions on distinct keys does not change the output.
            let keys: BTreeSet<&String> = s.match_expressions.iter().map(|r| &r.key).collect();
            if keys.len() == s.match_expressions.len() {
                prop_assert_eq!(&a, &shuffled.to_string());
            }
        }

        #[test]
        fn arbitrary_input_never_panics(
            key in ".{0,80}", op in ".{0,12}", vals in prop::collection::vec(".{0,70}", 0..3)
        ) {
            let s = LabelSelector {
                match_labels: BTreeMap::from([(key.clone(), vals.first().cloned().unwrap_or_default())]),
                match_expressions: vec![LabelSelectorRequirement { key, operator: op, values: vals }],
            };
            let _ = s.matches(&BTreeMap::new());
            let _ = s.to_string();
        }
    }
}
