//! DNS-1123 names, the one place their rules are written: apimachinery's `IsDNS1123Label`
//! (namespaces, Multus network names) and `IsDNS1123Subdomain` (object names such as pools,
//! subnets and claims, label-key prefixes), and their lengths.
//!
//! Callers keep their own messages; these functions only answer whether a name is valid.

/// Longest DNS-1123 label (a namespace name, one unit of a subdomain in DNS).
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// Longest DNS-1123 subdomain (a key prefix, an object name).
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;

/// A lowercase ASCII letter or a digit: what a DNS-1123 label starts and ends with.
fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// A character that may occur in a DNS-1123 subdomain: lowercase alphanumerics, `-` and `.`.
pub fn is_dns1123_subdomain_char(c: char) -> bool {
    is_lower_alnum(c) || c == '-' || c == '.'
}

/// The form of a DNS-1123 label, whatever its length: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`,
/// non-empty. Each dot-separated unit of a subdomain has this form, and so does a name of
/// Multus's `namespace/name@interface` text form.
pub fn has_dns1123_label_form(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_lower_alnum(first)
        && is_lower_alnum(last)
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// One DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63.
pub fn is_dns1123_label(s: &str) -> bool {
    s.len() <= DNS1123_LABEL_MAX_LEN && has_dns1123_label_form(s)
}

/// A DNS-1123 subdomain (apimachinery's `IsDNS1123Subdomain`): ≤ 253 characters, dot-separated
/// units of lowercase alphanumerics and `-`, each starting and ending with an alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= DNS1123_SUBDOMAIN_MAX_LEN
        && s.split('.').all(has_dns1123_label_form)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels() {
        for ok in [
            "a",
            "0",
            "a-b",
            "kube-system",
            "a--b",
            "123",
            &"a".repeat(63),
        ] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a.b",
            "a_b",
            "a b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad}");
        }
        // The form has no length limit.
        assert!(has_dns1123_label_form(&"a".repeat(64)));
        assert!(!has_dns1123_label_form(""));
        assert!(!has_dns1123_label_form("a.b"));
    }

    #[test]
    fn subdomains() {
        let longest = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(longest.len(), DNS1123_SUBDOMAIN_MAX_LEN);
        for ok in ["a", "a.b", "pool-a", "x.y-z.0", &longest, &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a.-b",
            "A.b",
            "a_b",
            "a/b",
            &format!("{longest}e"),
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad}");
        }
        for c in ['a', 'z', '0', '9', '-', '.'] {
            assert!(is_dns1123_subdomain_char(c), "{c}");
        }
        for c in ['A', '_', '/', ' ', '*', 'é'] {
            assert!(!is_dns1123_subdomain_char(c), "{c}");
        }
    }

    /// Written from the definition, character by character.
    fn naive_label(s: &str) -> bool {
        let b = s.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        !b.is_empty()
            && b.len() <= 63
            && alnum(b[0])
            && alnum(b[b.len() - 1])
            && b.iter().all(|&c| alnum(c) || c == b'-')
    }

    proptest! {
        #[test]
        fn label_equals_naive(s in "[a-z0-9A-Z._-]{0,70}") {
            prop_assert_eq!(is_dns1123_label(&s), naive_label(&s));
        }

        #[test]
        fn subdomain_is_dot_joined_label_forms(units in prop::collection::vec("[a-z0-9-]{0,70}", 1..6)) {
            let s = units.join(".");
            let want = s.len() <= 253 && units.iter().all(|u| has_dns1123_label_form(u));
            prop_assert_eq!(is_dns1123_subdomain(&s), want);
            // Every valid subdomain is made of subdomain characters only.
            if is_dns1123_subdomain(&s) {
                prop_assert!(s.chars().all(is_dns1123_subdomain_char));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in ".{0,80}") {
            let _ = is_dns1123_label(&s);
            let _ = is_dns1123_subdomain(&s);
        }
    }
}
