//! The CNI environment: `CNI_COMMAND`, `CNI_CONTAINERID`, `CNI_NETNS`, `CNI_IFNAME`, `CNI_ARGS`,
//! `CNI_PATH`, validated as the reference `skel` package does, and the Pod named in `CNI_ARGS`.

use std::collections::BTreeMap;

use crate::error::{CniError, INVALID_ENV};

/// A CNI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Set up: print the reserved addresses.
    Add,
    /// Tear down: nothing to release here (the operator releases on Pod deletion).
    Del,
    /// Compare `prevResult` with the reservation.
    Check,
    /// Report the supported versions.
    Version,
    /// CNI 1.1: is the plugin ready (the API reachable with the configured credentials)?
    Status,
    /// CNI 1.1: garbage collection (nothing to collect here).
    Gc,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            _ => return None,
        })
    }

    /// The command's name as written in `CNI_COMMAND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }

    /// Whether the command acts on one container attachment (needs container ID and interface).
    pub fn is_attachment(self) -> bool {
        matches!(self, Command::Add | Command::Del | Command::Check)
    }
}

/// The validated CNI environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// The command.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS, GC).
    pub container_id: String,
    /// `CNI_NETNS` (may be empty for DEL).
    pub netns: String,
    /// `CNI_IFNAME` (empty for VERSION, STATUS, GC).
    pub ifname: String,
    /// `CNI_ARGS`, raw.
    pub args: String,
    /// `CNI_PATH`.
    pub path: String,
}

/// Reads and validates the environment. `get` returns a variable's value, `None` when unset.
///
/// Returns `Ok(None)` when `CNI_COMMAND` is unset: the binary was run by hand, not by a runtime.
pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Option<CniEnv>, CniError> {
    let var = |name: &str| get(name).unwrap_or_default();
    let command_raw = var("CNI_COMMAND");
    if command_raw.is_empty() {
        return Ok(None);
    }
    let command = Command::parse(&command_raw).ok_or_else(|| {
        CniError::new(INVALID_ENV, format!("unknown CNI_COMMAND: {command_raw:?}"))
    })?;
    let env = CniEnv {
        command,
        container_id: var("CNI_CONTAINERID"),
        netns: var("CNI_NETNS"),
        ifname: var("CNI_IFNAME"),
        args: var("CNI_ARGS"),
        path: var("CNI_PATH"),
    };
    let mut missing = Vec::new();
    if command.is_attachment() {
        if env.container_id.is_empty() {
            missing.push("CNI_CONTAINERID");
        }
        if env.netns.is_empty() && command != Command::Del {
            missing.push("CNI_NETNS");
        }
        if env.ifname.is_empty() {
            missing.push("CNI_IFNAME");
        }
        if env.path.is_empty() {
            missing.push("CNI_PATH");
        }
    }
    if !missing.is_empty() {
        return Err(CniError::new(
            INVALID_ENV,
            format!("required env variables [{}] missing", missing.join(",")),
        ));
    }
    if command.is_attachment() {
        validate_container_id(&env.container_id)?;
        validate_interface_name(&env.ifname)?;
    }
    Ok(Some(env))
}

/// A container ID as the reference `skel` accepts it: `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`.
pub fn validate_container_id(id: &str) -> Result<(), CniError> {
    let mut chars = id.chars();
    let ok = match chars.next() {
        Some(c) if c.is_ascii_alphanumeric() => {
            chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_ENV,
            format!("invalid characters in CNI_CONTAINERID {id:?}"),
        ))
    }
}

/// An interface name as Linux accepts it: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or space.
pub fn validate_interface_name(name: &str) -> Result<(), CniError> {
    let why = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 15 {
        Some("is longer than 15 characters")
    } else if name == "." || name == ".." {
        Some("is not a valid name")
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        Some("contains '/', ':' or white space")
    } else {
        None
    };
    match why {
        Some(why) => Err(CniError::new(
            INVALID_ENV,
            format!("interface name CNI_IFNAME {name:?} {why}"),
        )),
        None => Ok(()),
    }
}

/// Parses `CNI_ARGS` (`K1=V1;K2=V2`). Unknown keys are kept (and ignored by the caller), so
/// `IgnoreUnknown=1` is tolerated whether or not it is present.
pub fn parse_cni_args(args: &str) -> Result<BTreeMap<String, String>, CniError> {
    let mut out = BTreeMap::new();
    for pair in args.split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            CniError::new(
                INVALID_ENV,
                format!("CNI_ARGS: invalid pair {pair:?}: expected KEY=VALUE"),
            )
        })?;
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}

/// The Pod an attachment belongs to, from `CNI_ARGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodRef {
    /// `K8S_POD_NAMESPACE`.
    pub namespace: String,
    /// `K8S_POD_NAME`.
    pub name: String,
    /// `K8S_POD_UID`, when the runtime passes it.
    pub uid: Option<String>,
}

impl PodRef {
    /// The Pod named in `CNI_ARGS`; `K8S_POD_NAMESPACE` and `K8S_POD_NAME` are required.
    pub fn from_args(args: &BTreeMap<String, String>) -> Result<PodRef, CniError> {
        let get = |k: &str| args.get(k).filter(|v| !v.is_empty()).cloned();
        match (get("K8S_POD_NAMESPACE"), get("K8S_POD_NAME")) {
            (Some(namespace), Some(name)) => Ok(PodRef {
                namespace,
                name,
                uid: get("K8S_POD_UID"),
            }),
            _ => Err(CniError::new(
                INVALID_ENV,
                "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME (the Kubernetes runtime \
                 sets them): this plugin reads the addresses reserved for that Pod",
            )
            .with_details(format!("CNI_ARGS={args:?}"))),
        }
    }
}

impl std::fmt::Display for PodRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn add_needs_netns_del_does_not() {
        let base = [
            ("CNI_CONTAINERID", "abc"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ];
        let mut add = base.to_vec();
        add.push(("CNI_COMMAND", "ADD"));
        let e = from_env(env(&add)).unwrap_err();
        assert_eq!(e.code, INVALID_ENV);
        assert!(e.msg.contains("CNI_NETNS"), "{e}");
        let mut del = base.to_vec();
        del.push(("CNI_COMMAND", "DEL"));
        assert_eq!(from_env(env(&del)).unwrap().unwrap().command, Command::Del);
    }

    #[test]
    fn no_command_is_a_manual_run_and_unknown_command_is_an_error() {
        assert_eq!(from_env(env(&[])).unwrap(), None);
        assert_eq!(
            from_env(env(&[("CNI_COMMAND", "FROB")])).unwrap_err().code,
            INVALID_ENV
        );
    }

    #[test]
    fn container_id_and_interface_rules() {
        assert!(validate_container_id("a-b_c.d").is_ok());
        assert!(validate_container_id("-abc").is_err());
        assert!(validate_container_id("a/b").is_err());
        assert!(validate_interface_name("eth0").is_ok());
        assert!(validate_interface_name("net1").is_ok());
        assert!(validate_interface_name("0123456789abcdef").is_err());
        assert!(validate_interface_name("..").is_err());
        assert!(validate_interface_name("a:b").is_err());
    }

    #[test]
    fn cni_args_tolerate_unknown_keys_and_empty_values() {
        let a = parse_cni_args(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=x;K8S_POD_UID=",
        )
        .unwrap();
        let p = PodRef::from_args(&a).unwrap();
        assert_eq!(p.to_string(), "ns/web-0");
        assert_eq!(p.uid, None);
        assert!(parse_cni_args("novalue").is_err());
        assert!(PodRef::from_args(&parse_cni_args("IgnoreUnknown=1").unwrap()).is_err());
    }
}
