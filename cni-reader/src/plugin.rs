//! The commands: ADD reads the reservation (waiting for late binding), DEL succeeds, CHECK
//! compares, VERSION reports, STATUS probes the API, GC does nothing.

use std::time::{Duration, Instant};

use aipam_crds::{IPAllocationDetail, PodIPAllocation};
use tracing::{debug, info, warn};

use crate::api::{endpoint_path, ApiError, EndpointSource, Fetch};
use crate::config::{self, NetConf, CURRENT_VERSION, SUPPORTED_VERSIONS};
use crate::env::{parse_cni_args, CniEnv, Command, PodRef};
use crate::error::{
    CniError, CHECK_MISMATCH, FORBIDDEN, INVALID_CONFIG, MALFORMED_RESERVATION, NOT_AVAILABLE,
    TRY_AGAIN_LATER, UNAUTHORIZED, UNEXPECTED_RESPONSE,
};
use crate::result::{prev_result_addresses, Reservation};

/// First pause between two reads of a reservation that is not there yet.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between two reads.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The most one request may take (a hung API server is retried, not waited on forever).
pub const MAX_REQUEST: Duration = Duration::from_secs(10);
/// The least one request is given, even when the wait is nearly over.
pub const MIN_REQUEST: Duration = Duration::from_secs(1);

/// Builds the API client for a configuration (done lazily: DEL, GC and VERSION never need one).
pub trait SourceFactory {
    /// The client for `conf`, or a credentials error.
    fn source(&self, conf: &NetConf) -> Result<Box<dyn EndpointSource>, CniError>;
}

/// The real factory: kubeconfig or in-cluster credentials, rustls client.
#[derive(Debug, Default)]
pub struct ApiFactory;

impl SourceFactory for ApiFactory {
    fn source(&self, conf: &NetConf) -> Result<Box<dyn EndpointSource>, CniError> {
        let creds = crate::credentials::load(conf.ipam.kubeconfig.as_deref())?;
        let client = crate::http::Client::new(creds)
            .map_err(|e| CniError::new(crate::error::CREDENTIALS, e))?;
        Ok(Box::new(client))
    }
}

/// Runs one command: `Ok(Some(json))` is printed on stdout, `Ok(None)` prints nothing.
pub fn run(
    env: &CniEnv,
    stdin: &[u8],
    factory: &dyn SourceFactory,
) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        return Ok(Some(version_json(stdin)));
    }
    let conf = config::parse(stdin, env.command)?;
    debug!(command = env.command.as_str(), network = %conf.name, cni_version = %conf.cni_version,
        container = %env.container_id, ifname = %env.ifname, "invoked");
    match env.command {
        Command::Add => add(env, &conf, factory).map(Some),
        Command::Del => {
            // Addresses are released by the operator when the Pod is deleted, never here: a
            // sandbox restart calls DEL then ADD and must get the same address back.
            info!(container = %env.container_id, ifname = %env.ifname, args = %env.args,
                "DEL: nothing to release (the operator releases addresses when the Pod is deleted)");
            Ok(None)
        }
        Command::Check => check(env, &conf, factory).map(|()| None),
        Command::Status => status(&conf, factory).map(|()| None),
        Command::Gc => Ok(None),
        Command::Version => Ok(Some(version_json(stdin))),
    }
}

/// `{"cniVersion": ..., "supportedVersions": [...]}`; the input's version is echoed when it is a
/// supported one.
pub fn version_json(stdin: &[u8]) -> String {
    let v = config::input_version(stdin)
        .filter(|v| SUPPORTED_VERSIONS.contains(&v.as_str()))
        .unwrap_or_else(|| CURRENT_VERSION.to_string());
    serde_json::json!({"cniVersion": v, "supportedVersions": SUPPORTED_VERSIONS}).to_string()
}

/// What one read of the reservation found.
#[derive(Debug)]
enum Lookup {
    Ready(Box<IPAllocationDetail>),
    /// Not usable yet; the text says why (for the final message).
    NotYet(String),
}

fn select(alloc: Option<&PodIPAllocation>, pod: &PodRef, ifname: &str) -> Lookup {
    let Some(alloc) = alloc else {
        return Lookup::NotYet(format!(
            "the SpiderEndpoint {pod} exists but has no status.current yet"
        ));
    };
    if let Some(uid) = &pod.uid {
        if alloc.uid.is_empty() {
            return Lookup::NotYet(format!(
                "the SpiderEndpoint {pod} is not bound to a Pod yet (empty uid; the Pod's uid is {uid})"
            ));
        }
        if &alloc.uid != uid {
            return Lookup::NotYet(format!(
                "the SpiderEndpoint {pod} belongs to an earlier Pod of the same name (uid {} , this \
                 Pod's uid is {uid}); the operator re-binds it to the new Pod",
                alloc.uid
            ));
        }
    }
    let entries: Vec<&IPAllocationDetail> = alloc.ips.iter().filter(|d| d.nic == ifname).collect();
    match entries.as_slice() {
        [one] => Lookup::Ready(Box::new((*one).clone())),
        [] => {
            let have: Vec<&str> = alloc.ips.iter().map(|d| d.nic.as_str()).collect();
            Lookup::NotYet(format!(
                "the SpiderEndpoint {pod} has no entry for interface {ifname} yet (entries: {have:?})"
            ))
        }
        many => Lookup::NotYet(format!(
            "the SpiderEndpoint {pod} has {} entries for interface {ifname} (the binding to a node \
             is not settled yet)",
            many.len()
        )),
    }
}

fn api_error(e: &ApiError, src: &dyn EndpointSource, pod: &PodRef) -> CniError {
    let path = endpoint_path(&pod.namespace, &pod.name);
    match e {
        ApiError::Network(crate::http::HttpError::Certificate(..)) => CniError::new(
            crate::error::CREDENTIALS,
            format!(
                "cannot read {path}: {e}; check certificate-authority(-data) and tls-server-name \
                 of the {}",
                src.describe()
            ),
        ),
        ApiError::Unauthorized(m) => CniError::new(
            UNAUTHORIZED,
            format!(
                "the API server rejected the credential (401 Unauthorized) reading {path}: {}; \
                 check that the token or certificate is valid and not expired (the aipam CNI \
                 DaemonSet rewrites /etc/cni/net.d/spiderpool.d/kubeconfig)",
                src.describe()
            ),
        )
        .with_details(m.clone()),
        ApiError::Forbidden(m) => CniError::new(
            FORBIDDEN,
            format!(
                "the API server refused to read {path} (403 Forbidden): {}; check that the \
                 credential's ServiceAccount is bound to the ClusterRole granting get on \
                 spiderendpoints.spiderpool.spidernet.io",
                src.describe()
            ),
        )
        .with_details(m.clone()),
        ApiError::Network(_) | ApiError::Unavailable(..) => CniError::new(
            TRY_AGAIN_LATER,
            format!("cannot read {path} from the {}: {e}", src.describe()),
        ),
        ApiError::Unexpected(..) => CniError::new(
            UNEXPECTED_RESPONSE,
            format!("cannot read {path} from the {}", src.describe()),
        )
        .with_details(e.to_string()),
    }
}

/// Reads the reservation of `pod`'s interface, waiting up to `timeout` for it to appear.
fn wait_for_reservation(
    src: &dyn EndpointSource,
    pod: &PodRef,
    ifname: &str,
    timeout: Duration,
) -> Result<IPAllocationDetail, CniError> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let remaining = deadline.saturating_duration_since(Instant::now());
        let request_timeout = remaining.clamp(MIN_REQUEST, MAX_REQUEST);
        let why = match src.get_endpoint(&pod.namespace, &pod.name, request_timeout) {
            Ok(Fetch::Found(alloc)) => match select(alloc.as_ref(), pod, ifname) {
                Lookup::Ready(d) => {
                    info!(pod = %pod, ifname, attempts, elapsed_ms = start.elapsed().as_millis() as u64,
                        "reservation found");
                    return Ok(*d);
                }
                Lookup::NotYet(why) => why,
            },
            Ok(Fetch::NotFound) => format!("no SpiderEndpoint {pod}"),
            Ok(Fetch::NoSuchResource) => format!(
                "the API does not serve spiderendpoints.{} (is the aipam CRD installed?)",
                aipam_crds::API_VERSION
            ),
            Err(e) if e.is_transient() => api_error(&e, src, pod).msg,
            Err(e) => return Err(api_error(&e, src, pod)),
        };
        let now = Instant::now();
        if now >= deadline {
            warn!(pod = %pod, ifname, attempts, reason = %why, "giving up waiting for the reservation");
            return Err(CniError::new(
                TRY_AGAIN_LATER,
                format!(
                    "no reservation for pod {pod} interface {ifname} yet (waited {:.1}s): the \
                     webhook reserves addresses at admission; check that the Pod was admitted by \
                     the aipam webhook and that the operator is running",
                    timeout.as_secs_f64()
                ),
            )
            .with_details(format!(
                "last attempt: {why}; read from the {}",
                src.describe()
            )));
        }
        debug!(pod = %pod, ifname, attempts, reason = %why, "reservation not ready; retrying");
        std::thread::sleep(backoff.min(deadline - now));
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn pod_of(env: &CniEnv) -> Result<PodRef, CniError> {
    PodRef::from_args(&parse_cni_args(&env.args)?)
}

fn add(env: &CniEnv, conf: &NetConf, factory: &dyn SourceFactory) -> Result<String, CniError> {
    let pod = pod_of(env)?;
    if pod.uid.is_none() {
        warn!(pod = %pod, "CNI_ARGS has no K8S_POD_UID: the reservation's Pod uid cannot be checked");
    }
    let src = factory.source(conf)?;
    let detail = wait_for_reservation(src.as_ref(), &pod, &env.ifname, conf.ipam.timeout)?;
    let reservation = Reservation::from_detail(&detail).map_err(|e| {
        CniError::new(
            MALFORMED_RESERVATION,
            format!(
                "the reservation of pod {pod} interface {} is malformed: {e}",
                env.ifname
            ),
        )
    })?;
    if let Some(vlan) = reservation.vlan {
        debug!(pod = %pod, vlan, "the pool has a VLAN (not part of a CNI IPAM result)");
    }
    let out = reservation.to_result(&conf.cni_version, conf.version);
    info!(pod = %pod, ifname = %env.ifname, result = %out, "ADD");
    Ok(out.to_string())
}

fn check(env: &CniEnv, conf: &NetConf, factory: &dyn SourceFactory) -> Result<(), CniError> {
    let pod = pod_of(env)?;
    let prev = conf.prev_result.as_ref().ok_or_else(|| {
        CniError::new(INVALID_CONFIG, "CHECK: the configuration has no prevResult")
    })?;
    let want = prev_result_addresses(prev, &env.ifname)
        .map_err(|e| CniError::new(INVALID_CONFIG, format!("CHECK: {e}")))?;
    let src = factory.source(conf)?;
    let fetched = src
        .get_endpoint(
            &pod.namespace,
            &pod.name,
            conf.ipam.timeout.clamp(MIN_REQUEST, MAX_REQUEST),
        )
        .map_err(|e| api_error(&e, src.as_ref(), &pod))?;
    let mismatch = |msg: String| CniError::new(CHECK_MISMATCH, msg);
    let alloc = match fetched {
        Fetch::Found(a) => a,
        Fetch::NotFound | Fetch::NoSuchResource => {
            return Err(mismatch(format!(
                "CHECK: the reservation of pod {pod} is gone (no SpiderEndpoint)"
            )))
        }
    };
    let detail = match select(alloc.as_ref(), &pod, &env.ifname) {
        Lookup::Ready(d) => d,
        Lookup::NotYet(why) => return Err(mismatch(format!("CHECK: {why}"))),
    };
    let have = Reservation::from_detail(&detail)
        .map_err(|e| CniError::new(MALFORMED_RESERVATION, format!("CHECK: {e}")))?
        .address_set();
    if have != want {
        let list = |s: &std::collections::BTreeSet<ipnet::IpNet>| {
            s.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(mismatch(format!(
            "CHECK: interface {} of pod {pod} has [{}] in prevResult but the reservation is [{}]",
            env.ifname,
            list(&want),
            list(&have)
        )));
    }
    Ok(())
}

/// STATUS: reads a SpiderEndpoint that need not exist; any answer but 401/403/5xx/no answer
/// means the API is reachable and the credential may read endpoints.
fn status(conf: &NetConf, factory: &dyn SourceFactory) -> Result<(), CniError> {
    let unavailable = |e: CniError| CniError::new(NOT_AVAILABLE, e.msg).with_details(e.details);
    let src = factory.source(conf).map_err(unavailable)?;
    let probe = PodRef {
        namespace: "default".into(),
        name: "aipam-cni-status-probe".into(),
        uid: None,
    };
    match src.get_endpoint(
        &probe.namespace,
        &probe.name,
        conf.ipam.timeout.clamp(MIN_REQUEST, MAX_REQUEST),
    ) {
        Ok(Fetch::Found(_)) | Ok(Fetch::NotFound) => Ok(()),
        Ok(Fetch::NoSuchResource) => Err(CniError::new(
            NOT_AVAILABLE,
            format!(
                "the {} does not serve spiderendpoints.{} (is the aipam CRD installed?)",
                src.describe(),
                aipam_crds::API_VERSION
            ),
        )),
        Err(e) => Err(unavailable(api_error(&e, src.as_ref(), &probe))),
    }
}

/// Only for messages: the config's version if it parses, for echoing in errors.
pub fn error_version(stdin: &[u8]) -> String {
    config::input_version(stdin)
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| CURRENT_VERSION.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aipam_crds::IPAllocationDetail;
    use std::cell::RefCell;

    /// Answers from a script, one per call (the last one repeats).
    struct Scripted(RefCell<Vec<Result<Fetch, ApiError>>>);

    impl EndpointSource for Scripted {
        fn get_endpoint(&self, _: &str, _: &str, _: Duration) -> Result<Fetch, ApiError> {
            let mut s = self.0.borrow_mut();
            if s.len() > 1 {
                return s.remove(0);
            }
            match &mut s[0] {
                Ok(f) => Ok(f.clone()),
                Err(e) => Err(std::mem::replace(
                    e,
                    ApiError::Unexpected(400, "again".into()),
                )),
            }
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    fn alloc(uid: &str, nics: &[&str]) -> Fetch {
        Fetch::Found(Some(PodIPAllocation {
            uid: uid.into(),
            node: "n".into(),
            ips: nics
                .iter()
                .map(|n| IPAllocationDetail {
                    nic: n.to_string(),
                    ipv4: Some("10.0.0.2/24".into()),
                    ..Default::default()
                })
                .collect(),
        }))
    }

    fn pod(uid: Option<&str>) -> PodRef {
        PodRef {
            namespace: "ns".into(),
            name: "p".into(),
            uid: uid.map(str::to_string),
        }
    }

    #[test]
    fn waits_through_not_found_unbound_and_ambiguous_entries() {
        let src = Scripted(RefCell::new(vec![
            Ok(Fetch::NotFound),
            Ok(Fetch::Found(None)),
            Ok(alloc("", &["eth0"])),
            Ok(alloc("u", &["eth0", "eth0"])),
            Ok(alloc("u", &["net1"])),
            Ok(alloc("u", &["net1", "eth0"])),
        ]));
        let d =
            wait_for_reservation(&src, &pod(Some("u")), "eth0", Duration::from_secs(10)).unwrap();
        assert_eq!(d.nic, "eth0");
        assert!(src.0.borrow().len() == 1);
    }

    #[test]
    fn without_a_pod_uid_the_uid_is_not_checked() {
        let src = Scripted(RefCell::new(vec![Ok(alloc("anything", &["eth0"]))]));
        assert!(wait_for_reservation(&src, &pod(None), "eth0", Duration::ZERO).is_ok());
    }

    #[test]
    fn ambiguous_entries_time_out_with_11_and_say_why() {
        let src = Scripted(RefCell::new(vec![Ok(alloc("u", &["eth0", "eth0"]))]));
        let e = wait_for_reservation(&src, &pod(Some("u")), "eth0", Duration::from_millis(150))
            .unwrap_err();
        assert_eq!(e.code, TRY_AGAIN_LATER);
        assert!(e.details.contains("2 entries"), "{e}");
    }

    #[test]
    fn non_transient_errors_stop_at_once() {
        let src = Scripted(RefCell::new(vec![Err(ApiError::Forbidden("no".into()))]));
        let e = wait_for_reservation(&src, &pod(Some("u")), "eth0", Duration::from_secs(30))
            .unwrap_err();
        assert_eq!(e.code, FORBIDDEN);
    }
}
