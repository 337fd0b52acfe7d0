//! Types shared by several kinds.

use std::borrow::Cow;
use std::fmt;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

/// A route handed to the Pod's interface (Spiderpool's `Route`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
pub struct Route {
    /// Destination of the route: a CIDR such as `172.18.42.0/24`.
    pub dst: String,
    /// Next hop of the route: an IP address.
    pub gw: String,
}

/// An IP family, written in manifests as the integer `4` or `6`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(try_from = "i64", into = "i64")]
pub enum IpVersion {
    /// IPv4, written `4`.
    V4,
    /// IPv6, written `6`.
    V6,
}

impl IpVersion {
    /// The number written in manifests: 4 or 6.
    pub fn as_u8(self) -> u8 {
        match self {
            IpVersion::V4 => 4,
            IpVersion::V6 => 6,
        }
    }
}

impl fmt::Display for IpVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

/// An `ipVersion` other than 4 or 6.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid ipVersion {0}: must be 4 or 6")]
pub struct InvalidIpVersion(pub i64);

impl TryFrom<i64> for IpVersion {
    type Error = InvalidIpVersion;
    fn try_from(v: i64) -> Result<Self, Self::Error> {
        match v {
            4 => Ok(IpVersion::V4),
            6 => Ok(IpVersion::V6),
            other => Err(InvalidIpVersion(other)),
        }
    }
}

impl TryFrom<u8> for IpVersion {
    type Error = InvalidIpVersion;
    fn try_from(v: u8) -> Result<Self, Self::Error> {
        IpVersion::try_from(i64::from(v))
    }
}

impl From<IpVersion> for i64 {
    fn from(v: IpVersion) -> i64 {
        i64::from(v.as_u8())
    }
}

impl From<IpVersion> for u8 {
    fn from(v: IpVersion) -> u8 {
        v.as_u8()
    }
}

impl JsonSchema for IpVersion {
    fn schema_name() -> Cow<'static, str> {
        "IpVersion".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "integer",
            "format": "int64",
            "enum": [4, 6],
        })
    }
}

/// The `ipVersion` of a Spiderpool object as 4 or 6, or `None` when unset or not 4/6.
pub(crate) fn ip_version_u8(v: Option<i64>) -> Option<u8> {
    match v {
        Some(4) => Some(4),
        Some(6) => Some(6),
        _ => None,
    }
}
