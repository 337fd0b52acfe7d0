//! The network configuration on stdin: `cniVersion`, `name`, the `ipam` section and `prevResult`.
//!
//! Unknown fields, at the top level and in `ipam`, are accepted and ignored: Spiderpool's own
//! IPAM section has many (`default_ipv4_ippool`, `cleangateway`, `ipam_unix_socket_path`,
//! `log_file_max_size`, ...), and NetworkAttachmentDefinitions written for Spiderpool must work
//! unchanged.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::env::Command;
use crate::error::{CniError, DECODING_FAILURE, INCOMPATIBLE_VERSION, INVALID_CONFIG};

/// The CNI versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: [&str; 5] = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
/// The newest supported version (used when the input names none).
pub const CURRENT_VERSION: &str = "1.1.0";
/// How long ADD waits for the reservation when `timeout_seconds` is not set.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest accepted `timeout_seconds`.
pub const MAX_TIMEOUT_SECONDS: f64 = 600.0;
/// Where the installer DaemonSet writes the kubeconfig; used when `ipam.kubeconfig` is not set
/// and the file exists.
pub const DEFAULT_KUBECONFIG: &str = "/etc/cni/net.d/spiderpool.d/kubeconfig";

/// A CNI version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    /// Parses `1.0.0` (and `0.3`, as `0.3.0`).
    pub fn parse(s: &str) -> Option<Version> {
        let mut it = s.split('.').map(|p| p.parse::<u32>().ok());
        let major = it.next()??;
        let minor = it.next().unwrap_or(Some(0))?;
        let patch = it.next().unwrap_or(Some(0))?;
        if it.next().is_some() {
            return None;
        }
        Some(Version(major, minor, patch))
    }

    /// Whether results of this version carry `ips[].version` (0.3.x and 0.4.0).
    pub fn has_ip_version_field(self) -> bool {
        self < Version(1, 0, 0)
    }
}

/// The `ipam` section, as far as this plugin uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct IpamConf {
    /// `ipam.type` (normally `spiderpool`).
    pub plugin_type: String,
    /// `ipam.kubeconfig`: path of a kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// `ipam.timeout_seconds`: how long ADD waits for the reservation.
    pub timeout: Duration,
    /// `ipam.log_file_path`: log here instead of stderr.
    pub log_file_path: Option<PathBuf>,
    /// `ipam.log_level`: `trace`, `debug`, `info`, `warn`, `error` (any case), or a
    /// `target=level,...` list.
    pub log_level: Option<String>,
}

/// The parsed network configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct NetConf {
    /// `cniVersion` as written.
    pub cni_version: String,
    /// `cniVersion`, parsed.
    pub version: Version,
    /// `name`.
    pub name: String,
    /// The `ipam` section.
    pub ipam: IpamConf,
    /// `prevResult`, for CHECK.
    pub prev_result: Option<Value>,
}

/// The logging settings, read leniently before anything else so that errors can be logged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSettings {
    /// `ipam.log_file_path`.
    pub file: Option<PathBuf>,
    /// `ipam.log_level`.
    pub level: Option<String>,
}

/// Reads `ipam.log_file_path` and `ipam.log_level` from stdin, ignoring every error.
pub fn log_settings(stdin: &[u8]) -> LogSettings {
    let Ok(v) = serde_json::from_slice::<Value>(stdin) else {
        return LogSettings::default();
    };
    let s = |k: &str| {
        v.get("ipam")
            .and_then(|i| i.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    LogSettings {
        file: s("log_file_path").map(PathBuf::from),
        level: s("log_level"),
    }
}

/// The `cniVersion` of the input, for echoing in an error, when it can be read at all.
pub fn input_version(stdin: &[u8]) -> Option<String> {
    serde_json::from_slice::<Value>(stdin)
        .ok()?
        .get("cniVersion")?
        .as_str()
        .map(str::to_string)
}

/// Parses and validates the configuration for `command` as the reference `skel` does: decoding
/// (6), the network name (7), the version (1; CHECK needs 0.4.0+, GC and STATUS 1.1.0+), then the
/// `ipam` section (7).
pub fn parse(stdin: &[u8], command: Command) -> Result<NetConf, CniError> {
    let v: Value = serde_json::from_slice(stdin).map_err(|e| {
        CniError::new(
            DECODING_FAILURE,
            "error decoding the network configuration on stdin",
        )
        .with_details(e.to_string())
    })?;
    let Some(obj) = v.as_object() else {
        return Err(CniError::new(
            DECODING_FAILURE,
            "the network configuration on stdin is not a JSON object",
        ));
    };
    let name = match obj.get("name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        None | Some(Value::String(_)) | Some(Value::Null) => {
            return Err(CniError::new(INVALID_CONFIG, "missing network name"))
        }
        Some(other) => {
            return Err(CniError::new(
                DECODING_FAILURE,
                format!("network name must be a string, found {other}"),
            ))
        }
    };
    validate_network_name(&name)?;

    let cni_version = match obj.get("cniVersion") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => {
            return Err(CniError::new(
                DECODING_FAILURE,
                format!("cniVersion must be a string, found {other}"),
            ))
        }
    };
    let version = check_version(&cni_version, command)?;

    let ipam = parse_ipam(obj.get("ipam"))?;
    Ok(NetConf {
        cni_version,
        version,
        name,
        ipam,
        prev_result: obj.get("prevResult").filter(|p| !p.is_null()).cloned(),
    })
}

fn check_version(cni_version: &str, command: Command) -> Result<Version, CniError> {
    let incompatible = |what: &str| {
        CniError::new(INCOMPATIBLE_VERSION, what.to_string()).with_details(format!(
            "config is {cni_version:?}, plugin supports {SUPPORTED_VERSIONS:?}"
        ))
    };
    if !SUPPORTED_VERSIONS.contains(&cni_version) {
        return Err(incompatible("incompatible CNI versions"));
    }
    let version = Version::parse(cni_version).ok_or_else(|| incompatible("invalid cniVersion"))?;
    match command {
        Command::Check if version < Version(0, 4, 0) => {
            Err(incompatible("config version does not allow CHECK"))
        }
        Command::Gc if version < Version(1, 1, 0) => {
            Err(incompatible("config version does not allow GC"))
        }
        Command::Status if version < Version(1, 1, 0) => {
            Err(incompatible("config version does not allow STATUS"))
        }
        _ => Ok(version),
    }
}

/// A network name as the reference `skel` accepts it: `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`.
fn validate_network_name(name: &str) -> Result<(), CniError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CniError::new(
            INVALID_CONFIG,
            format!("invalid characters found in network name {name:?}"),
        ))
    }
}

fn parse_ipam(ipam: Option<&Value>) -> Result<IpamConf, CniError> {
    let invalid = |msg: String| CniError::new(INVALID_CONFIG, msg);
    let Some(ipam) = ipam.and_then(Value::as_object) else {
        return Err(invalid(
            "the network configuration has no \"ipam\" object: write \"ipam\": {\"type\": \"spiderpool\"}"
                .to_string(),
        ));
    };
    let string = |k: &str| -> Result<Option<String>, CniError> {
        match ipam.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(format!("ipam.{k} must be a string, found {other}"))),
        }
    };
    let plugin_type = string("type")?.ok_or_else(|| {
        invalid("ipam.type is missing: write \"type\": \"spiderpool\"".to_string())
    })?;
    let timeout = match ipam.get("timeout_seconds") {
        None | Some(Value::Null) => DEFAULT_TIMEOUT,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(secs) if (0.0..=MAX_TIMEOUT_SECONDS).contains(&secs) => {
                Duration::from_secs_f64(secs)
            }
            _ => {
                return Err(invalid(format!(
                    "ipam.timeout_seconds must be between 0 and {MAX_TIMEOUT_SECONDS}, found {n}"
                )))
            }
        },
        Some(other) => {
            return Err(invalid(format!(
                "ipam.timeout_seconds must be a number of seconds, found {other}"
            )))
        }
    };
    Ok(IpamConf {
        plugin_type,
        kubeconfig: string("kubeconfig")?.map(PathBuf::from),
        timeout,
        log_file_path: string("log_file_path")?.map(PathBuf::from),
        log_level: string("log_level")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(v: &str, extra: &str) -> Vec<u8> {
        format!(r#"{{"cniVersion":"{v}","name":"net","type":"macvlan","ipam":{{"type":"spiderpool"{extra}}}}}"#)
            .into_bytes()
    }

    #[test]
    fn spiderpool_fields_are_accepted_and_ignored() {
        let c = parse(
            &conf(
                "0.3.1",
                r#","default_ipv4_ippool":["a"],"cleangateway":true,"ipam_unix_socket_path":"/x","log_file_max_size":100,"log_level":"DEBUG","timeout_seconds":2.5"#,
            ),
            Command::Add,
        )
        .unwrap();
        assert_eq!(c.version, Version(0, 3, 1));
        assert_eq!(c.ipam.timeout, Duration::from_millis(2500));
        assert_eq!(c.ipam.log_level.as_deref(), Some("DEBUG"));
        assert_eq!(c.ipam.kubeconfig, None);
    }

    #[test]
    fn errors_have_the_skel_codes() {
        assert_eq!(
            parse(b"{", Command::Add).unwrap_err().code,
            DECODING_FAILURE
        );
        assert_eq!(
            parse(
                br#"{"cniVersion":"1.0.0","ipam":{"type":"spiderpool"}}"#,
                Command::Add
            )
            .unwrap_err()
            .code,
            INVALID_CONFIG
        );
        assert_eq!(
            parse(&conf("0.2.0", ""), Command::Add).unwrap_err().code,
            INCOMPATIBLE_VERSION
        );
        assert_eq!(
            parse(&conf("0.3.1", ""), Command::Check).unwrap_err().code,
            INCOMPATIBLE_VERSION
        );
        assert_eq!(
            parse(&conf("1.0.0", ""), Command::Status).unwrap_err().code,
            INCOMPATIBLE_VERSION
        );
        assert_eq!(
            parse(br#"{"cniVersion":"1.0.0","name":"n"}"#, Command::Add)
                .unwrap_err()
                .code,
            INVALID_CONFIG
        );
        assert_eq!(
            parse(&conf("1.0.0", r#","timeout_seconds":"ten""#), Command::Add)
                .unwrap_err()
                .code,
            INVALID_CONFIG
        );
        assert_eq!(
            parse(&conf("1.0.0", r#","timeout_seconds":-1"#), Command::Add)
                .unwrap_err()
                .code,
            INVALID_CONFIG
        );
    }

    #[test]
    fn versions_order() {
        assert!(Version::parse("0.4.0").unwrap() < Version::parse("1.0.0").unwrap());
        assert!(Version::parse("0.3.1").unwrap().has_ip_version_field());
        assert!(!Version::parse("1.1.0").unwrap().has_ip_version_field());
        assert_eq!(Version::parse("x"), None);
    }
}
