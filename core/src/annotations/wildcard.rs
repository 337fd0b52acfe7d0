//! Pool names as written in annotations: Spiderpool's wildcards (Go's `filepath.Match` syntax)
//! and the check of a pool name or pattern.

use crate::names::{is_dns1123_subdomain, is_dns1123_subdomain_char};

/// Spiderpool's test for a wildcard pool name (`HasWildcardInStr`): it contains `*` or `?`,
/// or both `[` and `]`.
pub fn is_wildcard(name: &str) -> bool {
    name.contains('*') || name.contains('?') || (name.contains('[') && name.contains(']'))
}

#[derive(Debug)]
enum Tok {
    Star,
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    Lit(char),
}

/// Compiles Go's `filepath.Match` syntax; the error says what is malformed.
fn compile_pattern(pattern: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                toks.push(Tok::Star);
                i += 1;
            }
            '?' => {
                toks.push(Tok::Any);
                i += 1;
            }
            '\\' => {
                let Some(&c) = chars.get(i + 1) else {
                    return Err("it ends with a lone `\\`".to_string());
                };
                toks.push(Tok::Lit(c));
                i += 2;
            }
            '[' => {
                i += 1;
                let mut negated = false;
                if chars.get(i) == Some(&'^') {
                    negated = true;
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    match chars.get(i) {
                        None => return Err("a `[` is not closed by `]`".to_string()),
                        Some(']') if !ranges.is_empty() => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let (lo, next) = class_char(&chars, i)?;
                            i = next;
                            let mut hi = lo;
                            if chars.get(i) == Some(&'-') {
                                let (h, next) = class_char(&chars, i + 1)?;
                                if h < lo {
                                    return Err(format!("the range `{lo}-{h}` is backwards"));
                                }
                                hi = h;
                                i = next;
                            }
                            ranges.push((lo, hi));
                        }
                    }
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => {
                toks.push(Tok::Lit(c));
                i += 1;
            }
        }
    }
    Ok(toks)
}

/// One character inside `[...]` (Go's `getEsc`).
fn class_char(chars: &[char], i: usize) -> Result<(char, usize), String> {
    match chars.get(i) {
        None => Err("a `[` is not closed by `]`".to_string()),
        Some('-') | Some(']') => Err(
            "a character class `[...]` is empty or has a misplaced `-` or `]` (escape them with \
             `\\`)"
                .to_string(),
        ),
        Some('\\') => chars
            .get(i + 1)
            .map(|&c| (c, i + 2))
            .ok_or_else(|| "a `[` is not closed by `]`".to_string()),
        Some(&c) => Ok((c, i + 1)),
    }
}

fn match_toks(toks: &[Tok], name: &[char]) -> bool {
    // Classic backtracking on the last `*`; names are short.
    let (mut t, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        let c = name[n];
        let step = match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(Tok::Any) => c != '/',
            Some(Tok::Lit(l)) => *l == c,
            Some(Tok::Class { negated, ranges }) => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
            None => false,
        };
        if step {
            t += 1;
            n += 1;
        } else if let Some((st, sn)) = star {
            if name[sn] == '/' {
                return false;
            }
            star = Some((st, sn + 1));
            t = st + 1;
            n = sn + 1;
        } else {
            return false;
        }
    }
    toks[t.min(toks.len())..]
        .iter()
        .all(|tok| matches!(tok, Tok::Star))
}

/// Spiderpool's wildcard match (Go's `filepath.Match`): `*` any run of characters, `?` one
/// character, `[a-z]` / `[^0-9]` a class, `\` escapes. The whole name must match. A malformed
/// pattern matches nothing.
pub fn wildcard_match(pattern: &str, name: &str) -> bool {
    match compile_pattern(pattern) {
        Ok(toks) => match_toks(&toks, &name.chars().collect::<Vec<_>>()),
        Err(_) => false,
    }
}

const POOL_NAME_RULE: &str = "a pool name is a lowercase RFC 1123 subdomain (lowercase letters, \
                              digits, '-' and '.', starting and ending with a letter or digit, at \
                              most 253 characters), or a wildcard pattern using `*`, `?` or \
                              `[...]`";

/// Checks a pool name as written in an annotation: a Kubernetes object name, or a wildcard
/// pattern whose syntax is valid and whose literal characters can occur in a pool name.
pub fn validate_pool_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("an empty pool name".to_string());
    }
    if is_wildcard(name) {
        let toks = compile_pattern(name)
            .map_err(|why| format!("`{name}` is not a valid wildcard pattern: {why}"))?;
        let bad = toks.iter().find_map(|t| match t {
            Tok::Lit(c) if !is_dns1123_subdomain_char(*c) => Some(*c),
            _ => None,
        });
        if let Some(c) = bad {
            return Err(format!(
                "`{name}` can never match a pool: pool names have no `{c}` (only lowercase \
                 letters, digits, '-' and '.')"
            ));
        }
        return Ok(());
    }
    if is_dns1123_subdomain(name) {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid pool name: {POOL_NAME_RULE}"
        ))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::validate_interface_name;
    use proptest::prelude::*;

    #[test]
    fn wildcards() {
        for (p, yes) in [
            ("pool-*", true),
            ("p?", true),
            ("p[ab]", true),
            ("plain", false),
            ("p[", false),
            ("p]", false),
        ] {
            assert_eq!(is_wildcard(p), yes, "{p}");
        }
        let cases = [
            ("pool-*", "pool-a", true),
            ("pool-*", "pool-", true),
            ("pool-*", "pool", false),
            ("pool-?", "pool-ab", false),
            ("pool-?", "pool-a", true),
            ("p[a-c]", "pb", true),
            ("p[^a-c]", "pb", false),
            ("p[^a-c]", "pd", true),
            ("*", "", true),
            ("*", "anything.at-all", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("a*b", "ab", true),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("v4-[0-9][0-9]", "v4-42", true),
            ("p[", "p[", false),
            ("[]", "x", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(wildcard_match(p, n), want, "{p} vs {n}");
        }
        assert!(validate_pool_name("pool-[0-9]*").is_ok());
        assert!(validate_pool_name(&"a".repeat(253)).is_ok());
        assert!(validate_pool_name(&"a".repeat(254)).is_err());
        assert!(validate_interface_name(".").is_err());
        assert!(validate_interface_name("eth0:1").is_err());
        assert!(validate_interface_name("123456789012345").is_ok());
    }

    proptest! {
        #[test]
        fn wildcard_equals_naive(p in "[ab*?]{0,8}", n in "[ab]{0,8}") {
            fn naive(p: &[char], n: &[char]) -> bool {
                match p.split_first() {
                    None => n.is_empty(),
                    Some(('*', rest)) => (0..=n.len()).any(|k| naive(rest, &n[k..])),
                    Some(('?', rest)) => !n.is_empty() && naive(rest, &n[1..]),
                    Some((c, rest)) => n.first() == Some(c) && naive(rest, &n[1..]),
                }
            }
            let pc: Vec<char> = p.chars().collect();
            let nc: Vec<char> = n.chars().collect();
            prop_assert_eq!(wildcard_match(&p, &n), naive(&pc, &nc));
        }

        #[test]
        fn wildcard_star_matches_prefix(prefix in "[a-z]{1,5}", rest in "[a-z0-9-]{0,8}") {
            let pattern = format!("{prefix}*");
            let name = format!("{prefix}{rest}");
            prop_assert!(wildcard_match(&pattern, &name));
        }
    }
}
