//! Where the API server is and how to authenticate: a kubeconfig file read by hand (no kube
//! client), or the Pod's in-cluster ServiceAccount files.
//!
//! Supported kubeconfig fields: the current context's cluster `server`, `certificate-authority`,
//! `certificate-authority-data`, `insecure-skip-tls-verify`, `tls-server-name`; its user's `token`,
//! `tokenFile`, `client-certificate(-data)`, `client-key(-data)`, `username`/`password`. Relative
//! paths are relative to the kubeconfig's directory, as kubectl reads them. `exec` and
//! `auth-provider` users and `proxy-url` are refused with a message.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::error::{CniError, CREDENTIALS};

/// The in-cluster ServiceAccount directory.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// An `https://host:port/prefix` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Path prefix without a trailing slash (usually empty).
    pub prefix: String,
}

impl ServerUrl {
    /// Parses an `https://` URL. Plain `http://` is refused: the token would travel in clear.
    pub fn parse(url: &str) -> Result<ServerUrl, String> {
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            format!("server {url:?} is not an https:// URL (plain http is not supported)")
        })?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("server {url:?}: unterminated [IPv6] host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(format!("server {url:?}: junk after [IPv6] host")),
            };
            (h, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(format!("server {url:?} has no host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("server {url:?}: invalid port {p:?}"))?,
        };
        Ok(ServerUrl {
            host: host.to_string(),
            port,
            prefix: prefix.to_string(),
        })
    }

    /// `host:port` as written in a `Host` header (IPv6 in brackets).
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl std::fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "https://{}{}", self.authority(), self.prefix)
    }
}

/// How requests authenticate.
#[derive(Clone, PartialEq, Eq)]
pub enum Auth {
    /// No header (client certificate only, or anonymous).
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// `Authorization: Basic ...`.
    Basic(String, String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(..)"),
            Auth::Basic(u, _) => write!(f, "Basic({u}, ..)"),
        }
    }
}

/// Everything needed to talk to the API server.
#[derive(Debug)]
pub struct Credentials {
    /// The API server.
    pub server: ServerUrl,
    /// The name to check the server certificate against (`tls-server-name`), if not the host.
    pub tls_server_name: Option<String>,
    /// Trusted CA certificates.
    pub roots: Vec<CertificateDer<'static>>,
    /// Skip server certificate verification (`insecure-skip-tls-verify: true`).
    pub insecure: bool,
    /// Request authentication.
    pub auth: Auth,
    /// Client certificate chain and key, for mutual TLS.
    pub client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    /// Where these credentials came from, for messages (never contains a secret).
    pub source: String,
    /// Which credential authenticates, for messages (never contains a secret).
    pub credential: String,
}

/// Loads credentials: the kubeconfig at `kubeconfig` if given; else the default kubeconfig
/// written by the installer DaemonSet if it exists; else in-cluster.
pub fn load(kubeconfig: Option<&Path>) -> Result<Credentials, CniError> {
    if let Some(path) = kubeconfig {
        return from_kubeconfig_file(path);
    }
    let default = Path::new(crate::config::DEFAULT_KUBECONFIG);
    if default.exists() {
        return from_kubeconfig_file(default);
    }
    in_cluster(
        std::env::var("KUBERNETES_SERVICE_HOST").ok(),
        std::env::var("KUBERNETES_SERVICE_PORT").ok(),
        Path::new(SERVICE_ACCOUNT_DIR),
    )
}

/// In-cluster credentials from `KUBERNETES_SERVICE_HOST`/`_PORT` and the ServiceAccount files.
pub fn in_cluster(
    host: Option<String>,
    port: Option<String>,
    sa_dir: &Path,
) -> Result<Credentials, CniError> {
    let fail = |msg: String| {
        CniError::new(
            CREDENTIALS,
            format!(
                "no kubeconfig configured and {msg}: set \"kubeconfig\" in the ipam section, or \
                 install the aipam CNI DaemonSet, which writes {}",
                crate::config::DEFAULT_KUBECONFIG
            ),
        )
    };
    let host = host
        .filter(|h| !h.is_empty())
        .ok_or_else(|| fail("KUBERNETES_SERVICE_HOST is not set (not in a cluster)".into()))?;
    let port = port
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "443".into());
    let url = if host.contains(':') {
        format!("https://[{host}]:{port}")
    } else {
        format!("https://{host}:{port}")
    };
    let server = ServerUrl::parse(&url).map_err(&fail)?;
    let token_path = sa_dir.join("token");
    let token = read_token(&token_path).map_err(&fail)?;
    let ca_path = sa_dir.join("ca.crt");
    let ca = std::fs::read(&ca_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", ca_path.display())))?;
    let roots = parse_certs(&ca, &ca_path.display().to_string()).map_err(&fail)?;
    Ok(Credentials {
        server,
        tls_server_name: None,
        roots,
        insecure: false,
        auth: Auth::Bearer(token),
        client_cert: None,
        source: format!("in-cluster ServiceAccount ({})", sa_dir.display()),
        credential: format!("ServiceAccount token {}", token_path.display()),
    })
}

/// A kubeconfig: named lists (`{name, cluster|user|context}`) looked up by name.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawKubeConfig {
    clusters: Vec<BTreeMap<String, serde_yaml::Value>>,
    users: Vec<BTreeMap<String, serde_yaml::Value>>,
    contexts: Vec<BTreeMap<String, serde_yaml::Value>>,
    #[serde(rename = "current-context")]
    current_context: String,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Cluster {
    server: String,
    #[serde(rename = "certificate-authority")]
    certificate_authority: Option<String>,
    #[serde(rename = "certificate-authority-data")]
    certificate_authority_data: Option<String>,
    #[serde(rename = "insecure-skip-tls-verify")]
    insecure_skip_tls_verify: bool,
    #[serde(rename = "tls-server-name")]
    tls_server_name: Option<String>,
    #[serde(rename = "proxy-url")]
    proxy_url: Option<String>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct User {
    token: Option<String>,
    #[serde(rename = "tokenFile")]
    token_file: Option<String>,
    #[serde(rename = "client-certificate")]
    client_certificate: Option<String>,
    #[serde(rename = "client-certificate-data")]
    client_certificate_data: Option<String>,
    #[serde(rename = "client-key")]
    client_key: Option<String>,
    #[serde(rename = "client-key-data")]
    client_key_data: Option<String>,
    username: Option<String>,
    password: Option<String>,
    exec: Option<serde_yaml::Value>,
    #[serde(rename = "auth-provider")]
    auth_provider: Option<serde_yaml::Value>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(default)]
struct Context {
    cluster: String,
    user: String,
}

fn lookup<T: for<'de> Deserialize<'de>>(
    list: &[BTreeMap<String, serde_yaml::Value>],
    field: &str,
    name: &str,
) -> Result<Option<T>, String> {
    for entry in list {
        if entry.get("name").and_then(serde_yaml::Value::as_str) == Some(name) {
            let v = entry.get(field).cloned().unwrap_or(serde_yaml::Value::Null);
            if v.is_null() {
                return serde_yaml::from_value(serde_yaml::Value::Mapping(Default::default()))
                    .map(Some)
                    .map_err(|e| e.to_string());
            }
            return serde_yaml::from_value(v)
                .map(Some)
                .map_err(|e| format!("{field} {name:?}: {e}"));
        }
    }
    Ok(None)
}

/// Loads credentials from a kubeconfig file.
pub fn from_kubeconfig_file(path: &Path) -> Result<Credentials, CniError> {
    let text = std::fs::read(path).map_err(|e| {
        CniError::new(
            CREDENTIALS,
            format!(
                "cannot read kubeconfig {}: {e}; check the \"kubeconfig\" path in the ipam section \
                 and that the aipam CNI DaemonSet runs on this node",
                path.display()
            ),
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("/"));
    from_kubeconfig(&text, base, &path.display().to_string())
}

/// Loads credentials from kubeconfig text; relative paths are resolved against `base`.
pub fn from_kubeconfig(text: &[u8], base: &Path, origin: &str) -> Result<Credentials, CniError> {
    let fail = |msg: String| CniError::new(CREDENTIALS, format!("kubeconfig {origin}: {msg}"));
    let raw: RawKubeConfig =
        serde_yaml::from_slice(text).map_err(|e| fail(format!("cannot parse: {e}")))?;

    let (cluster_name, user_name, context_desc) = if raw.current_context.is_empty() {
        // No current context: a single cluster and at most a single user are unambiguous.
        let c = match raw.clusters.as_slice() {
            [one] => name_of(one),
            _ => {
                return Err(fail(
                    "no current-context, and not exactly one cluster".into(),
                ))
            }
        };
        let u = match raw.users.as_slice() {
            [one] => name_of(one),
            [] => String::new(),
            _ => return Err(fail("no current-context, and several users".into())),
        };
        (c, u, "no current-context".to_string())
    } else {
        let ctx: Context = lookup(&raw.contexts, "context", &raw.current_context)
            .map_err(&fail)?
            .ok_or_else(|| {
                fail(format!(
                    "current-context {:?} is not among its contexts",
                    raw.current_context
                ))
            })?;
        (
            ctx.cluster,
            ctx.user,
            format!("context {:?}", raw.current_context),
        )
    };
    let cluster: Cluster = lookup(&raw.clusters, "cluster", &cluster_name)
        .map_err(&fail)?
        .ok_or_else(|| fail(format!("cluster {cluster_name:?} is not defined")))?;
    let user: User = if user_name.is_empty() {
        User::default()
    } else {
        lookup(&raw.users, "user", &user_name)
            .map_err(&fail)?
            .ok_or_else(|| fail(format!("user {user_name:?} is not defined")))?
    };

    if cluster.proxy_url.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(fail(format!(
            "cluster {cluster_name:?} uses proxy-url, which this plugin does not support"
        )));
    }
    let server = ServerUrl::parse(&cluster.server)
        .map_err(|e| fail(format!("cluster {cluster_name:?}: {e}")))?;
    let resolve = |p: &str| -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    let mut roots = Vec::new();
    if let Some(data) = cluster.certificate_authority_data.as_deref() {
        let pem = decode_b64(data).map_err(|e| fail(format!("certificate-authority-data: {e}")))?;
        roots = parse_certs(&pem, "certificate-authority-data").map_err(&fail)?;
    } else if let Some(file) = cluster.certificate_authority.as_deref() {
        let file = resolve(file);
        let pem = std::fs::read(&file).map_err(|e| {
            fail(format!(
                "cannot read certificate-authority {}: {e}",
                file.display()
            ))
        })?;
        roots = parse_certs(&pem, &file.display().to_string()).map_err(&fail)?;
    } else if !cluster.insecure_skip_tls_verify {
        return Err(fail(format!(
            "cluster {cluster_name:?} has no certificate-authority(-data): the API server's \
             certificate cannot be verified"
        )));
    }

    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(fail(format!(
            "user {user_name:?} uses an exec or auth-provider plugin, which this plugin does not \
             run: use a token, tokenFile or client certificate"
        )));
    }
    let mut credential = Vec::new();
    let auth = if let Some(token) = user.token.as_deref().filter(|t| !t.is_empty()) {
        credential.push(format!("bearer token of user {user_name:?}"));
        Auth::Bearer(token.trim().to_string())
    } else if let Some(file) = user.token_file.as_deref().filter(|t| !t.is_empty()) {
        let file = resolve(file);
        credential.push(format!("bearer token from tokenFile {}", file.display()));
        Auth::Bearer(read_token(&file).map_err(&fail)?)
    } else if let (Some(u), Some(p)) = (user.username.as_deref(), user.password.as_deref()) {
        credential.push(format!("basic auth of username {u:?}"));
        Auth::Basic(u.to_string(), p.to_string())
    } else {
        Auth::None
    };

    let cert_pem = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(d), _) => {
            Some(decode_b64(d).map_err(|e| fail(format!("client-certificate-data: {e}")))?)
        }
        (None, Some(f)) => {
            let f = resolve(f);
            Some(std::fs::read(&f).map_err(|e| {
                fail(format!(
                    "cannot read client-certificate {}: {e}",
                    f.display()
                ))
            })?)
        }
        (None, None) => None,
    };
    let key_pem = match (&user.client_key_data, &user.client_key) {
        (Some(d), _) => Some(decode_b64(d).map_err(|e| fail(format!("client-key-data: {e}")))?),
        (None, Some(f)) => {
            let f = resolve(f);
            Some(
                std::fs::read(&f)
                    .map_err(|e| fail(format!("cannot read client-key {}: {e}", f.display())))?,
            )
        }
        (None, None) => None,
    };
    let client_cert = match (cert_pem, key_pem) {
        (Some(c), Some(k)) => {
            let chain = parse_certs(&c, "client certificate").map_err(&fail)?;
            let key =
                PrivateKeyDer::from_pem_slice(&k).map_err(|e| fail(format!("client key: {e}")))?;
            credential.push(format!("client certificate of user {user_name:?}"));
            Some((chain, key))
        }
        (None, None) => None,
        _ => {
            return Err(fail(format!(
                "user {user_name:?} has a client certificate without a key, or a key without a \
                 certificate"
            )))
        }
    };
    if credential.is_empty() {
        credential.push(format!("user {user_name:?} with no credential (anonymous)"));
    }
    Ok(Credentials {
        server,
        tls_server_name: cluster.tls_server_name.filter(|s| !s.is_empty()),
        roots,
        insecure: cluster.insecure_skip_tls_verify,
        auth,
        client_cert,
        source: format!("kubeconfig {origin} ({context_desc}, cluster {cluster_name:?})"),
        credential: credential.join(" and "),
    })
}

fn name_of(entry: &BTreeMap<String, serde_yaml::Value>) -> String {
    entry
        .get("name")
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn decode_b64(data: &str) -> Result<Vec<u8>, String> {
    let compact: String = data.chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| format!("invalid base64: {e}"))
}

fn read_token(path: &Path) -> Result<String, String> {
    let t = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
    let t = t.trim();
    if t.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(t.to_string())
}

/// Parses every PEM certificate in `pem`; at least one is required.
pub fn parse_certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what}: invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what}: no PEM certificate found"));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A syntactically valid self-signed certificate is not needed for parsing tests of the
    // kubeconfig structure; certificate parsing itself is covered by the integration tests.
    const TOKEN_ONLY: &str = r#"
apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://[fd00::1]:6443/prefix/
    insecure-skip-tls-verify: true
users:
- name: u
  user:
    tokenFile: token
contexts:
- name: ctx
  context: {cluster: c, user: u}
current-context: ctx
"#;

    #[test]
    fn server_urls() {
        let u = ServerUrl::parse("https://10.96.0.1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("10.96.0.1", 443, "")
        );
        let u = ServerUrl::parse("https://[fd00::1]:6443/p/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.prefix.as_str()),
            ("fd00::1", 6443, "/p")
        );
        assert_eq!(u.authority(), "[fd00::1]:6443");
        assert!(ServerUrl::parse("http://x").is_err());
        assert!(ServerUrl::parse("https://x:port").is_err());
    }

    #[test]
    fn token_file_is_relative_to_the_kubeconfig() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "s3cret\n").unwrap();
        let c = from_kubeconfig(TOKEN_ONLY.as_bytes(), dir.path(), "test").unwrap();
        assert_eq!(c.auth, Auth::Bearer("s3cret".into()));
        assert!(c.insecure);
        assert_eq!(c.server.port, 6443);
        assert!(c.credential.contains("tokenFile"), "{}", c.credential);
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn refusals_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let no_ca = TOKEN_ONLY.replace("insecure-skip-tls-verify: true", "{}");
        let e = from_kubeconfig(no_ca.as_bytes(), dir.path(), "t").unwrap_err();
        assert!(
            e.msg.contains("certificate-authority") || e.msg.contains("parse"),
            "{e}"
        );
        let exec = TOKEN_ONLY.replace("tokenFile: token", "exec: {command: x}");
        let e = from_kubeconfig(exec.as_bytes(), dir.path(), "t").unwrap_err();
        assert!(e.msg.contains("exec"), "{e}");
        let missing = TOKEN_ONLY.replace("current-context: ctx", "current-context: nope");
        let e = from_kubeconfig(missing.as_bytes(), dir.path(), "t").unwrap_err();
        assert!(e.msg.contains("nope"), "{e}");
        let e = in_cluster(None, None, dir.path()).unwrap_err();
        assert_eq!(e.code, CREDENTIALS);
        let e = in_cluster(Some("10.96.0.1".into()), None, dir.path()).unwrap_err();
        assert!(e.msg.contains("token"), "{e}");
    }
}
