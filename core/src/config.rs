//! The cluster configuration, read from the `spiderpool-conf` ConfigMap.
//!
//! Spiderpool keeps its settings as YAML under the data key `conf.yml`; older installations
//! (and the seed documents) put each setting in its own data key (`enableIPv4: "true"`,
//! `clusterDefaultIPv4IPPool: "[default-v4-ippool]"`). Both are read; a key in its own entry
//! wins over the same key inside `conf.yml`.
//!
//! The reading is as lenient as Spiderpool's (its agent decodes `conf.yml` with
//! `gopkg.in/yaml.v3` into typed fields): keys this crate does not know are never parsed, YAML
//! 1.1 booleans (`yes`, `on`, `off`, ...) are booleans, a key with no value counts as absent,
//! and a negative `clusterSubnetDefaultFlexibleIPNumber` is taken as Spiderpool takes it.
//! Whatever was read leniently, or differs from what Spiderpool would do, comes back as a
//! warning ([`ConfigRead::warnings`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The ConfigMap's name, as in Spiderpool.
pub const CONFIGMAP_NAME: &str = "spiderpool-conf";
/// The data key holding the YAML document.
pub const CONFIGMAP_KEY: &str = "conf.yml";

/// The older name of the auto-pool default (what Spiderpool's chart writes).
const FLEXIBLE: &str = "clusterSubnetDefaultFlexibleIPNumber";
/// The newer name of the same setting (what the newest Spiderpool's controller reads).
const REDUNDANT: &str = "clusterSubnetAutoPoolDefaultRedundantIPNumber";
const AUTO_POOL: &str = "enableAutoPoolForApplication";

/// How a key's value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Type {
    Bool,
    Int,
    Names,
}

/// Every key read, with its type. Any other key, in `conf.yml` or as its own data key, is
/// ignored without being parsed (Spiderpool has many that concern its agent, and the chart
/// writes `clusterNetwork` beside `conf.yml`).
const KEYS: &[(&str, Type)] = &[
    ("enableIPv4", Type::Bool),
    ("enableIPv6", Type::Bool),
    ("clusterDefaultIPv4IPPool", Type::Names),
    ("clusterDefaultIPv6IPPool", Type::Names),
    ("enableStatefulSet", Type::Bool),
    ("enableKubevirtStaticIP", Type::Bool),
    ("enableSpiderSubnet", Type::Bool),
    (AUTO_POOL, Type::Bool),
    (FLEXIBLE, Type::Int),
    (REDUNDANT, Type::Int),
    ("enableValidatingResourcesDeletedWebhook", Type::Bool),
    ("reservationGraceSeconds", Type::Int),
    ("enableGCStatelessTerminatingPodOnReadyNode", Type::Bool),
    ("enableGCStatelessTerminatingPodOnNotReadyNode", Type::Bool),
    ("gcAdditionalGraceDelay", Type::Int),
];

fn key_type(key: &str) -> Option<Type> {
    KEYS.iter().find(|(k, _)| *k == key).map(|(_, t)| *t)
}

/// The settings the IPAM rules depend on.
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
    /// KubeVirt VMs keep their address (Spiderpool's `enableKubevirtStaticIP`). Read and kept;
    /// nothing implements it yet, and `true` comes with a warning.
    #[serde(rename = "enableKubevirtStaticIP")]
    pub enable_kubevirt_static_ip: bool,
    /// The SpiderSubnet feature: `ipam.spidernet.io/subnet(s)` annotations and auto-pools.
    pub enable_spider_subnet: bool,
    /// With the SpiderSubnet feature on: auto-pools are made for applications whose Pods carry
    /// the subnet annotations. When false, such Pods are refused (as Spiderpool's agent
    /// refuses them) and the operator makes no auto-pool.
    pub enable_auto_pool_for_application: bool,
    /// Extra addresses an auto-pool gets over the replicas when the Pod says nothing (also
    /// read as `clusterSubnetAutoPoolDefaultRedundantIPNumber`). May be negative, as in
    /// Spiderpool: the pool then gets fewer addresses than the replicas (never below 0).
    #[serde(rename = "clusterSubnetDefaultFlexibleIPNumber")]
    pub cluster_subnet_default_flexible_ip_number: i64,
    /// Refuse deleting a SpiderIPPool whose addresses are in use. When false (Spiderpool's
    /// default) the deletion is allowed with a warning and the pool's finalizer keeps it
    /// Terminating until they are released.
    pub enable_validating_resources_deleted_webhook: bool,
    /// Ours: seconds a reservation may wait for its Pod to appear before it is collected.
    /// Must exceed the webhook timeout (at most 30 s in Kubernetes).
    pub reservation_grace_seconds: u64,
    /// Release the addresses of a stateless Pod stuck Terminating (past its deletion grace
    /// period and [`IpamConfig::gc_additional_grace_delay`]) on a Ready node. Spiderpool has it
    /// as its controller's `SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED`
    /// (Helm `ipam.gc.statelessPod.zombieOnReadyNode`, default true); the operator's flag of
    /// that env name overrides this key.
    #[serde(rename = "enableGCStatelessTerminatingPodOnReadyNode")]
    pub enable_gc_stateless_terminating_pod_on_ready_node: bool,
    /// The same on a node that is not Ready (or is gone): Spiderpool's
    /// `SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_NOT_READY_NODE_ENABLED` (Helm
    /// `ipam.gc.statelessPod.zombieOnNotReadyNode`, default true).
    #[serde(rename = "enableGCStatelessTerminatingPodOnNotReadyNode")]
    pub enable_gc_stateless_terminating_pod_on_not_ready_node: bool,
    /// Seconds waited beyond a Terminating Pod's grace period before its addresses are
    /// released: Spiderpool's `SPIDERPOOL_GC_ADDITIONAL_GRACE_DELAY` (Helm
    /// `ipam.gc.gcDeletingTimeOutPodDelay`, default 0).
    #[serde(rename = "gcAdditionalGraceDelay")]
    pub gc_additional_grace_delay: u64,
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            enable_ipv4: true,
            enable_ipv6: false,
            cluster_default_ipv4_ippool: Vec::new(),
            cluster_default_ipv6_ippool: Vec::new(),
            enable_stateful_set: true,
            enable_kubevirt_static_ip: false,
            enable_spider_subnet: false,
            enable_auto_pool_for_application: true,
            cluster_subnet_default_flexible_ip_number: 1,
            enable_validating_resources_deleted_webhook: false,
            reservation_grace_seconds: 120,
            enable_gc_stateless_terminating_pod_on_ready_node: true,
            enable_gc_stateless_terminating_pod_on_not_ready_node: true,
            gc_additional_grace_delay: 0,
        }
    }
}

/// A configuration that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ConfigMap {CONFIGMAP_NAME}: {0}")]
pub struct ConfigError(String);

/// A configuration read, with what is worth telling its author.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ConfigRead {
    /// The settings.
    pub config: IpamConfig,
    /// Values read leniently, and settings where aipam differs from Spiderpool; each names
    /// the key and what to write instead. They never make the configuration unreadable.
    pub warnings: Vec<String>,
}

/// The YAML 1.1 words Go's `gopkg.in/yaml.v3` accepts for a typed bool field (`decoder.scalar`,
/// case `reflect.Bool`), quoted or not.
fn yaml11_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// The YAML 1.2 booleans, which Spiderpool refuses when they are quoted.
fn yaml12_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

/// Brings one known key's value to the type serde expects, or drops it (`None`) when it has
/// no value; lenient readings are reported in `warnings`. Values of the wrong type are left
/// for serde to refuse with a message naming the key.
fn normalise(
    key: &str,
    ty: Type,
    value: serde_json::Value,
    warnings: &mut Vec<String>,
) -> Option<serde_json::Value> {
    use serde_json::Value;
    if value.is_null() {
        warnings.push(format!(
            "{key} has no value: it is read as if absent (the default applies, as Spiderpool reads it); give it a value or remove it"
        ));
        return None;
    }
    match (ty, &value) {
        (Type::Bool, Value::String(s)) => {
            if let Some(b) = yaml11_bool(s) {
                warnings.push(format!(
                    "{key}: {s:?} read as {b} (a YAML 1.1 boolean, as Spiderpool reads it); write {b}: YAML 1.2 tools take {s:?} for a string"
                ));
                return Some(Value::Bool(b));
            }
            if let Some(b) = yaml12_bool(s) {
                warnings.push(format!(
                    "{key}: the string {s:?} read as {b}; Spiderpool refuses a quoted boolean (cannot unmarshal !!str into bool): write {b} without quotes"
                ));
                return Some(Value::Bool(b));
            }
            Some(value)
        }
        (Type::Int, Value::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => {
                warnings.push(format!(
                    "{key}: the string {s:?} read as the number {n}; Spiderpool refuses a quoted number (cannot unmarshal !!str into int): write {n} without quotes"
                ));
                Some(Value::from(n))
            }
            Err(_) => Some(value),
        },
        _ => Some(value),
    }
}

impl IpamConfig {
    /// Reads the ConfigMap's `data`; the warnings are dropped (see [`IpamConfig::read`]).
    pub fn from_configmap_data(data: &BTreeMap<String, String>) -> Result<IpamConfig, ConfigError> {
        Self::read(data).map(|r| r.config)
    }

    /// Reads the ConfigMap's `data`, with the warnings a reader should show or log.
    ///
    /// Errors are what Spiderpool refuses too (a `conf.yml` that is not YAML or not a mapping,
    /// a known key of the wrong type), and both families disabled.
    pub fn read(data: &BTreeMap<String, String>) -> Result<ConfigRead, ConfigError> {
        let mut warnings = Vec::new();
        let mut merged = serde_json::Map::new();
        if let Some(doc) = data.get(CONFIGMAP_KEY) {
            let value: serde_yaml::Value = serde_yaml::from_str(doc).map_err(|e| {
                ConfigError(format!("data key {CONFIGMAP_KEY} is not valid YAML: {e}"))
            })?;
            match value {
                serde_yaml::Value::Mapping(map) => {
                    for (k, v) in map {
                        let Some(key) = k.as_str() else { continue };
                        if key_type(key).is_none() {
                            continue;
                        }
                        let v = serde_json::to_value(&v).map_err(|e| {
                            ConfigError(format!("invalid setting {key} in {CONFIGMAP_KEY}: {e}"))
                        })?;
                        merged.insert(key.to_string(), v);
                    }
                }
                serde_yaml::Value::Null => {}
                _ => {
                    return Err(ConfigError(format!(
                        "data key {CONFIGMAP_KEY} must be a YAML mapping of settings"
                    )))
                }
            }
        }
        for (key, raw) in data {
            if key == CONFIGMAP_KEY || key_type(key).is_none() {
                // Not ours to read: never parsed, so that it cannot make the rest unreadable.
                continue;
            }
            let value: serde_json::Value = serde_yaml::from_str(raw).map_err(|e| {
                ConfigError(format!("data key {key} is not a valid YAML value: {e}"))
            })?;
            merged.insert(key.clone(), value);
        }
        let mut settings = serde_json::Map::new();
        for (key, value) in merged {
            let Some(ty) = key_type(&key) else { continue };
            if let Some(v) = normalise(&key, ty, value, &mut warnings) {
                settings.insert(key, v);
            }
        }
        // One setting, two names: the newer wins when both are given and differ.
        if let Some(newer) = settings.remove(REDUNDANT) {
            if let Some(older) = settings.get(FLEXIBLE) {
                if *older != newer {
                    warnings.push(format!(
                        "{FLEXIBLE} ({older}) and {REDUNDANT} ({newer}) name the same setting and differ: {newer} is used; keep only one of them"
                    ));
                }
            }
            settings.insert(FLEXIBLE.to_string(), newer);
        }
        // Check key by key first, so that an error names the setting at fault.
        for (key, value) in &settings {
            let mut one = serde_json::Map::new();
            one.insert(key.clone(), value.clone());
            serde_json::from_value::<IpamConfig>(serde_json::Value::Object(one))
                .map_err(|e| ConfigError(format!("invalid setting {key}: {e}")))?;
        }
        let auto_pool_given = settings.contains_key(AUTO_POOL);
        let config: IpamConfig = serde_json::from_value(serde_json::Value::Object(settings))
            .map_err(|e| ConfigError(format!("invalid setting: {e}")))?;
        config.validate()?;
        config.differences(auto_pool_given, &mut warnings);
        Ok(ConfigRead { config, warnings })
    }

    /// Warnings for settings aipam reads but treats differently from Spiderpool.
    fn differences(&self, auto_pool_given: bool, warnings: &mut Vec<String>) {
        if self.enable_spider_subnet && !auto_pool_given {
            warnings.push(format!(
                "{AUTO_POOL} is not set: read as true, so the ipam.spidernet.io/subnet(s) annotations make auto-pools (Spiderpool reads it as false and refuses those Pods); write {AUTO_POOL}: true or false"
            ));
        }
        let n = self.cluster_subnet_default_flexible_ip_number;
        if n < 0 {
            warnings.push(format!(
                "{FLEXIBLE} is {n}: an auto-pool whose Pods do not set ipam.spidernet.io/ippool-ip-number gets {} address(es) fewer than its application's replicas (as in Spiderpool), so some of its Pods get none; use 0 or more",
                n.unsigned_abs()
            ));
        }
        if self.enable_kubevirt_static_ip {
            warnings.push(
                "enableKubevirtStaticIP is true, but aipam does not implement KubeVirt static IPs: the Pod of a KubeVirt VM is served as any stateless Pod and gets a new address when it is recreated".to_string(),
            );
        }
    }

    /// The size of an auto-pool whose Pods do not set `ipam.spidernet.io/ippool-ip-number`:
    /// the replicas plus the flexible default, as Spiderpool computes it, never below zero.
    pub fn default_auto_pool_size(&self, replicas: u64) -> u64 {
        let n = self.cluster_subnet_default_flexible_ip_number;
        if n >= 0 {
            replicas.saturating_add(n.unsigned_abs())
        } else {
            replicas.saturating_sub(n.unsigned_abs())
        }
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

    fn read(pairs: &[(&str, &str)]) -> ConfigRead {
        IpamConfig::read(&data(pairs)).unwrap()
    }

    #[test]
    fn reads_every_ipam_key_spiderpool_reads() {
        let r = read(&[(
            "conf.yml",
            "enableKubevirtStaticIP: false\nenableSpiderSubnet: true\nenableAutoPoolForApplication: false\nenableValidatingResourcesDeletedWebhook: true\nclusterSubnetDefaultFlexibleIPNumber: 3\n",
        )]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let c = r.config;
        assert!(c.enable_spider_subnet && !c.enable_auto_pool_for_application);
        assert!(c.enable_validating_resources_deleted_webhook);
        assert!(!c.enable_kubevirt_static_ip);
        assert_eq!(c.cluster_subnet_default_flexible_ip_number, 3);
        // Spiderpool's defaults where it has one we follow.
        let d = IpamConfig::default();
        assert!(!d.enable_validating_resources_deleted_webhook);
        assert!(!d.enable_kubevirt_static_ip);
    }

    #[test]
    fn yaml_1_1_booleans_are_booleans_as_yaml_v3_reads_them() {
        for (word, want) in [
            ("yes", true),
            ("Yes", true),
            ("ON", true),
            ("y", true),
            ("off", false),
            ("No", false),
            ("N", false),
        ] {
            let r = read(&[("conf.yml", &format!("enableIPv6: {word}\n"))]);
            assert_eq!(r.config.enable_ipv6, want, "{word}");
            assert_eq!(r.warnings.len(), 1, "{word}: {:?}", r.warnings);
            assert!(r.warnings[0].contains("YAML 1.1"), "{:?}", r.warnings);
            // The same as its own data key.
            let r = read(&[("enableIPv6", word)]);
            assert_eq!(r.config.enable_ipv6, want, "{word}");
        }
        // Quoted YAML 1.2 booleans are taken too (Spiderpool refuses them), with a warning.
        let r = read(&[("conf.yml", "enableIPv6: \"true\"\n")]);
        assert!(r.config.enable_ipv6);
        assert!(r.warnings[0].contains("without quotes"), "{:?}", r.warnings);
        // Anything else is still refused, naming the key.
        let e = IpamConfig::read(&data(&[("conf.yml", "enableIPv6: maybe\n")])).unwrap_err();
        assert!(e.to_string().contains("invalid setting enableIPv6"), "{e}");
    }

    #[test]
    fn keys_not_read_are_never_parsed() {
        // The chart writes clusterNetwork beside conf.yml; any other key may hold anything.
        let r = read(&[
            ("clusterNetwork", "\"macvlan\""),
            ("notes", "{ this is: [not yaml"),
            (
                "conf.yml",
                "enableIPv4: true\npodResourceInject: {enabled: yes, namespacesExclude: [a]}\nnetworkMode: whatever\n",
            ),
        ]);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert!(r.config.enable_ipv4);
        // A key that is read must still be valid.
        let e = IpamConfig::read(&data(&[("enableIPv6", "{ [")])).unwrap_err();
        assert!(e.to_string().contains("data key enableIPv6"), "{e}");
    }

    #[test]
    fn a_key_without_value_counts_as_absent() {
        let r = read(&[("conf.yml", "enableIPv4:\nenableStatefulSet: ~\n")]);
        assert_eq!(r.config, IpamConfig::default());
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
        assert!(r.warnings[0].contains("no value"), "{:?}", r.warnings);
    }

    #[test]
    fn the_flexible_number_has_two_names_and_may_be_negative() {
        let r = read(&[(
            "conf.yml",
            "clusterSubnetAutoPoolDefaultRedundantIPNumber: 4\n",
        )]);
        assert_eq!(r.config.cluster_subnet_default_flexible_ip_number, 4);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        let r = read(&[(
            "conf.yml",
            "clusterSubnetDefaultFlexibleIPNumber: 2\nclusterSubnetAutoPoolDefaultRedundantIPNumber: 4\n",
        )]);
        assert_eq!(r.config.cluster_subnet_default_flexible_ip_number, 4);
        assert!(r.warnings[0].contains("keep only one"), "{:?}", r.warnings);
        let r = read(&[("conf.yml", "clusterSubnetDefaultFlexibleIPNumber: -2\n")]);
        assert_eq!(r.config.cluster_subnet_default_flexible_ip_number, -2);
        assert!(
            r.warnings[0].contains("2 address(es) fewer"),
            "{:?}",
            r.warnings
        );
        assert_eq!(r.config.default_auto_pool_size(3), 1);
        assert_eq!(r.config.default_auto_pool_size(1), 0);
        assert_eq!(IpamConfig::default().default_auto_pool_size(3), 4);
        // A quoted number is read, with a warning.
        let r = read(&[("conf.yml", "clusterSubnetDefaultFlexibleIPNumber: \"5\"\n")]);
        assert_eq!(r.config.cluster_subnet_default_flexible_ip_number, 5);
        assert!(r.warnings[0].contains("without quotes"), "{:?}", r.warnings);
    }

    #[test]
    fn differences_from_spiderpool_are_warned() {
        let r = read(&[("conf.yml", "enableKubevirtStaticIP: true\n")]);
        assert!(r.config.enable_kubevirt_static_ip);
        assert!(
            r.warnings[0].contains("does not implement KubeVirt static IPs"),
            "{:?}",
            r.warnings
        );
        let r = read(&[("conf.yml", "enableSpiderSubnet: true\n")]);
        assert!(r.config.enable_auto_pool_for_application);
        assert!(
            r.warnings[0].contains("enableAutoPoolForApplication is not set"),
            "{:?}",
            r.warnings
        );
        // from_configmap_data keeps working, without the warnings.
        let c =
            IpamConfig::from_configmap_data(&data(&[("conf.yml", "enableSpiderSubnet: true\n")]))
                .unwrap();
        assert!(c.enable_spider_subnet);
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
