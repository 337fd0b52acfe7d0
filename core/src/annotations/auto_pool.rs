//! The size and the reclaim of an application's automatic pool:
//! `ipam.spidernet.io/ippool-ip-number` and `ipam.spidernet.io/ippool-reclaim`.

use super::{AnnotationError, ANNO_IPPOOL_IP_NUMBER, ANNO_IPPOOL_RECLAIM};

/// Size of an automatic pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpNumber {
    /// Exactly this many addresses (`"5"`).
    Fixed(u64),
    /// The application's replicas plus this many (`"+2"`).
    Flexible(u64),
}

impl Default for IpNumber {
    /// Spiderpool's default, `+1`.
    fn default() -> Self {
        IpNumber::Flexible(1)
    }
}

impl IpNumber {
    /// Addresses the automatic pool should hold for an application of `replicas` replicas.
    pub fn desired(self, replicas: u64) -> u64 {
        match self {
            IpNumber::Fixed(n) => n,
            IpNumber::Flexible(n) => replicas.saturating_add(n),
        }
    }
}

/// Parses `ipam.spidernet.io/ippool-ip-number`: `N` (a fixed number of addresses, at least 1)
/// or `+N` (the application's replicas plus N, N ≥ 0). Surrounding whitespace is ignored.
pub fn parse_ip_number(value: &str) -> Result<IpNumber, AnnotationError> {
    let key = ANNO_IPPOOL_IP_NUMBER;
    let hint = "write a number of addresses like `5` (fixed) or `+2` (the application's \
                replicas plus 2)";
    let v = value.trim();
    let (flexible, digits) = match v.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(AnnotationError::new(
            key,
            format!("`{value}` is not a pool size: {hint}"),
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| AnnotationError::new(key, format!("`{value}` is too large: {hint}")))?;
    if flexible {
        Ok(IpNumber::Flexible(n))
    } else if n == 0 {
        Err(AnnotationError::new(
            key,
            "a fixed pool of 0 addresses cannot serve any Pod: write a positive number, or `+0` \
             for exactly as many addresses as replicas",
        ))
    } else {
        Ok(IpNumber::Fixed(n))
    }
}

/// Parses `ipam.spidernet.io/ippool-reclaim` with Go's `strconv.ParseBool` spellings
/// (`true`, `True`, `TRUE`, `t`, `T`, `1`, and the same for false).
pub fn parse_reclaim(value: &str) -> Result<bool, AnnotationError> {
    match value {
        "1" | "t" | "T" | "true" | "True" | "TRUE" => Ok(true),
        "0" | "f" | "F" | "false" | "False" | "FALSE" => Ok(false),
        _ => Err(AnnotationError::new(
            ANNO_IPPOOL_RECLAIM,
            format!("`{value}` is not a boolean: write `true` or `false`"),
        )),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::annotations::test_util::err_text;

    #[test]
    fn ip_number_table() {
        let good = [
            ("5", IpNumber::Fixed(5)),
            ("+2", IpNumber::Flexible(2)),
            ("+0", IpNumber::Flexible(0)),
            (" 3 ", IpNumber::Fixed(3)),
        ];
        for (v, want) in good {
            assert_eq!(parse_ip_number(v), Ok(want), "{v}");
        }
        let hint = "write a number of addresses like `5` (fixed) or `+2` (the application's \
                    replicas plus 2)";
        let k = "annotation ipam.spidernet.io/ippool-ip-number: ";
        for v in ["-1", "++1", "a", "", "1+", "+", "1.5"] {
            assert_eq!(
                err_text(parse_ip_number(v)),
                format!("{k}`{v}` is not a pool size: {hint}"),
                "{v}"
            );
        }
        assert_eq!(
            err_text(parse_ip_number("99999999999999999999999")),
            format!("{k}`99999999999999999999999` is too large: {hint}")
        );
        assert_eq!(
            err_text(parse_ip_number("0")),
            format!(
                "{k}a fixed pool of 0 addresses cannot serve any Pod: write a positive number, or \
                 `+0` for exactly as many addresses as replicas"
            )
        );
        assert_eq!(IpNumber::default(), IpNumber::Flexible(1));
        assert_eq!(IpNumber::Flexible(2).desired(3), 5);
        assert_eq!(IpNumber::Fixed(2).desired(3), 2);
    }

    #[test]
    fn reclaim_table() {
        for v in ["true", "True", "TRUE", "t", "T", "1"] {
            assert_eq!(parse_reclaim(v), Ok(true), "{v}");
        }
        for v in ["false", "False", "FALSE", "f", "F", "0"] {
            assert_eq!(parse_reclaim(v), Ok(false), "{v}");
        }
        for v in ["yes", "", " true", "tRUE"] {
            assert_eq!(
                err_text(parse_reclaim(v)),
                format!(
                    "annotation ipam.spidernet.io/ippool-reclaim: `{v}` is not a boolean: write \
                     `true` or `false`"
                )
            );
        }
    }
}
