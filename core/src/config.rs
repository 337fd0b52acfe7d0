//! The cluster configuration, read from the `spiderpool-conf` ConfigMap.
//!
//! Spiderpool keeps its settings as YAML under the data key `conf.yml`; older installations
//! (and the seed documents) put each setting in its own data key (`enableIPv4: "true"`,
//! `clusterDefaultIPv4IPPool: "[default-v4-ippool]"`). Both are read; a key in its own entry
//! wins over the same key inside `conf.yml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The ConfigMap's name, as in Spiderpool.
pub const CONFIGMAP_NAME: &str = "spiderpool-conf";
/// The data key holding the YAML document.
pub const CONFIGMAP_KEY: &str = "conf.yml";

/// The settings the IPAM rules depend on. Unknown keys (Spiderpool has many that concern its
/// agent) are accepted and ignored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpamConfig {
    /// Give every interface an IPv4 address.
    #[serde(rename = "enableIPv4")]
    pub enable_ipv4: bool,
    /// Give every interface an IPv6 address.
    #[serde(rename = "enableIPv6")]
    pub enable_ipv6: bool,
    /// Cluster default IPv4 pools (older Spiderpool; `spec.default: true` pools come after).
    #[serde(rename = "clusterDefaultIPv4IPPool")]
    pub cluster_default_ipv4_ippool: Vec<String>,
    /// Cluster default IPv6 pools.
    #[serde(rename = "clusterDefaultIPv6IPPool")]
    pub cluster_default_ipv6_ippool: Vec<String>,
    /// StatefulSet Pods keep their address across restarts.
    pub enable_stateful_set: bool,
    /// The SpiderSubnet feature: `ipam.spidernet.io/subnet(s)` annotations and auto-pools.
    pub enable_spider_subnet: bool,
    /// Extra addresses an auto-pool gets over the replicas when the Pod says nothing.
    #[serde(rename = "clusterSubnetDefaultFlexibleIPNumber")]
    pub cluster_subnet_default_flexible_ip_number: u64,
    /// Ours: seconds a reservation may wait for its Pod to appear before it is collected.
    /// Must exceed the webhook timeout (at most 30 s in Kubernetes).
    pub reservation_grace_seconds: u64,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            enable_ipv4: true,
            enable_ipv6: false,
            cluster_default_ipv4_ippool: Vec::new(),
            cluster_default_ipv6_ippool: Vec::new(),
            enable_stateful_set: true,
            enable_spider_subnet: false,
            cluster_subnet_default_flexible_ip_number: 1,
            reservation_grace_seconds: 120,
        }
    }
}

/// A configuration that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {CONFIGMAP_NAME}: {0}")]
pub struct ConfigError(String);

impl IpamConfig {
    /// Reads the ConfigMap's `data`.
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<IpamConfig, ConfigError> {
        let mut merged = serde_json::Map::new();
        if let Some(doc) = data.get(CONFIGMAP_KEY) {
            let value: serde_json::Value = serde_yaml::from_str(doc).map_err(|e| {
                ConfigError(format!("data key {CONFIGMAP_KEY} is not valid YAML: {e}"))
            })?;
            match value {
                serde_json::Value::Object(map) => merged.extend(map),
                serde_json::Value::Null => {}
                _ => {
                    return Err(ConfigError(format!(
                        "data key {CONFIGMAP_KEY} must be a YAML mapping of settings"
                    )))
                }
            }
        }
        for (key, raw) in data {
            if key == CONFIGMAP_KEY {
                continue;
            }
            let value: serde_json::Value = serde_yaml::from_str(raw).map_err(|e| {
                ConfigError(format!("data key {key} is not a valid YAML value: {e}"))
            })?;
            merged.insert(key.clone(), value);
        }
        // Check key by key first, so that an error names the setting at fault.
        for (key, value) in &merged {
            let mut one = serde_json::Map::new();
            one.insert(key.clone(), value.clone());
            serde_json::from_value::<IpamConfig>(serde_json::Value::Object(one))
                .map_err(|e| ConfigError(format!("invalid setting {key}: {e}")))?;
        }
        let config: IpamConfig = serde_json::from_value(serde_json::Value::Object(merged))
            .map_err(|e| ConfigError(format!("invalid setting: {e}")))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings make sense together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enable_ipv4 && !self.enable_ipv6 {
            return Err(ConfigError(
                "enableIPv4 and enableIPv6 are both false: enable at least one family".to_string(),
            ));
        }
        Ok(())
    }

    /// The families every interface gets, IPv4 first.
    pub fn families(&self) -> Vec<crate::ranges::IpFamily> {
        let mut out = Vec::with_capacity(2);
        if self.enable_ipv4 {
            out.push(crate::ranges::IpFamily::V4);
        }
        if self.enable_ipv6 {
            out.push(crate::ranges::IpFamily::V6);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_spiderpool_conf_yml() {
        let c = IpamConfig::from_configmap_data(&data(&[(
            "conf.yml",
            "ipamUnixSocketPath: /var/run/spidernet/spiderpool.sock\nenableIPv4: true\nenableIPv6: true\nenableStatefulSet: true\nenableSpiderSubnet: false\nclusterSubnetDefaultFlexibleIPNumber: 2\n",
        )]))
        .unwrap();
        assert!(c.enable_ipv4 && c.enable_ipv6);
        assert_eq!(c.cluster_subnet_default_flexible_ip_number, 2);
    }

    #[test]
    fn reads_the_seed_flat_form() {
        // As in the seed document: each setting is its own data key.
        let c = IpamConfig::from_configmap_data(&data(&[
            ("enableIPv4", "true"),
            ("enableIPv6", "false"),
            ("clusterDefaultIPv4IPPool", "[default-v4-ippool]"),
            ("clusterDefaultIPv6IPPool", "[]"),
        ]))
        .unwrap();
        assert_eq!(c.cluster_default_ipv4_ippool, vec!["default-v4-ippool"]);
        assert!(c.cluster_default_ipv6_ippool.is_empty());
        assert!(!c.enable_ipv6);
    }

    #[test]
    fn flat_key_wins_over_conf_yml() {
        let c = IpamConfig::from_configmap_data(&data(&[
            ("conf.yml", "enableIPv6: true\n"),
            ("enableIPv6", "false"),
        ]))
        .unwrap();
        assert!(!c.enable_ipv6);
    }

    #[test]
    fn errors_name_the_key() {
        let e = IpamConfig::from_configmap_data(&data(&[("enableIPv4", "yes please")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid setting enableIPv4"), "{e}");
        assert!(e.contains("expected a boolean"), "{e}");
        let e = IpamConfig::from_configmap_data(&data(&[
            ("enableIPv4", "false"),
            ("enableIPv6", "false"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("enable at least one family"), "{e}");
        let e = IpamConfig::from_configmap_data(&data(&[("conf.yml", "- a\n- b\n")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("YAML mapping"), "{e}");
    }

    #[test]
    fn defaults_are_ipv4_only() {
        let c = IpamConfig::from_configmap_data(&BTreeMap::new()).unwrap();
        assert_eq!(c, IpamConfig::default());
        assert_eq!(c.families(), vec![crate::ranges::IpFamily::V4]);
    }
}
