#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Bad input (issue 9): malformed Pod annotations, pool specs and AdmissionReview bodies sent to
//! the real TLS server, each with the exact refusal expected and checked to reserve nothing (the
//! in-memory effects attempt no claim creation and hold only the fixture's own claim). Then
//! arbitrary bytes fed to [`aipam_webhook::http::decode`], and the seed corpus replayed.
//!
//! Plaintext admission and TLS < 1.2 are refused: see `tests/server.rs`
//! (`plaintext_http_is_refused`, `tls_1_1_is_refused`), not repeated here.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{fixture_json, post, start, Running};
use proptest::prelude::*;
use serde_json::{json, Value};

/// How a refusal must look.
enum Expect {
    /// A denied AdmissionReview with this `status.code` and a message starting with this text.
    Denied(u16, &'static str),
    /// A plain HTTP error with this status and a body starting with this text.
    Http(u16, &'static str),
}

struct Case {
    name: &'static str,
    path: &'static str,
    body: Vec<u8>,
    expect: Expect,
}

fn case(name: &'static str, path: &'static str, body: Value, expect: Expect) -> Case {
    Case {
        name,
        path,
        body: serde_json::to_vec(&body).unwrap(),
        expect,
    }
}

/// The bare Pod of the fixtures (namespace team-a) with exactly these IPAM annotations.
fn pod_with(annotations: &[(&str, &str)]) -> Value {
    let mut body = fixture_json("pod-bare.json");
    let annos = &mut body["request"]["object"]["metadata"]["annotations"];
    annos
        .as_object_mut()
        .unwrap()
        .remove("ipam.spidernet.io/ippool");
    for (k, v) in annotations {
        annos[*k] = json!(v);
    }
    body
}

fn ippool(v: &str) -> Value {
    pod_with(&[("ipam.spidernet.io/ippool", v)])
}

fn ippools(v: &str) -> Value {
    pod_with(&[("ipam.spidernet.io/ippools", v)])
}

/// A pool the fixture world can take (10.30.0.0/24), with `spec` fields replaced.
fn pool_create(spec: Value) -> Value {
    let mut body = fixture_json("ippool-create.json");
    let obj = &mut body["request"]["object"];
    obj["spec"] = spec;
    obj["spec"]["ipVersion"] = json!(4);
    body
}

fn cases() -> Vec<Case> {
    use Expect::{Denied, Http};
    let mut v = vec![
        // --- ipam.spidernet.io/ippool -----------------------------------------------------
        case("ippool invalid JSON", "/mutate-pod", ippool("{\"ipv4\": [\"backup-v4\""),
            Denied(400, "annotation ipam.spidernet.io/ippool: invalid JSON at line 1 column 21: EOF while parsing a list")),
        case("ippool empty value", "/mutate-pod", ippool(""),
            Denied(400, "annotation ipam.spidernet.io/ippool: the value is empty: write JSON like {\"ipv4\": [\"pool-a\"]}")),
        case("ippool not an object", "/mutate-pod", ippool("[\"backup-v4\"]"),
            Denied(400, "annotation ipam.spidernet.io/ippool: must be a JSON object like {\"ipv4\": [\"pool-a\"], \"ipv6\": [\"pool-b\"]}")),
        case("ippool ipv4 is a string", "/mutate-pod", ippool("{\"ipv4\": \"backup-v4\"}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: `ipv4` must be a list of pool names, e.g. [\"pool-a\", \"pool-b\"]")),
        case("ippool entry is a number", "/mutate-pod", ippool("{\"ipv4\": [1]}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: `ipv4`: entry 1 must be a string (a pool name)")),
        case("ippool empty lists", "/mutate-pod", ippool("{\"ipv4\": [], \"ipv6\": []}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: pool list is empty: name at least one IPv4 or IPv6 pool")),
        case("ippool empty name", "/mutate-pod", ippool("{\"ipv4\": [\"\"]}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: `ipv4`: an empty pool name is listed: remove it or write the pool's name")),
        case("ippool invalid pool name", "/mutate-pod", ippool("{\"ipv4\": [\"Backup_V4\"]}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: `ipv4`: `Backup_V4` is not a valid pool name: a pool name is a lowercase RFC 1123 subdomain")),
        case("ippool unknown field", "/mutate-pod", ippool("{\"ipv4pool\": [\"backup-v4\"]}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: pool list is empty: name at least one IPv4 or IPv6 pool (unknown field `ipv4pool` ignored")),
        case("ippool interface with a slash", "/mutate-pod", ippool("{\"interface\": \"eth0/1\", \"ipv4\": [\"backup-v4\"]}"),
            Denied(400, "annotation ipam.spidernet.io/ippool: interface name `eth0/1` contains `/`, which Linux does not allow")),
        case("ippool unknown pool", "/mutate-pod", ippool("{\"ipv4\": [\"no-such-pool\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool no-such-pool: no SpiderIPPool of that name exists")),
        case("ippool IPv6 pool as ipv4", "/mutate-pod", ippool("{\"ipv4\": [\"v6\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool v6: it is an IPv6 pool, but an IPv4 pool is needed here")),
        case("ippool IPv4 pool as ipv6", "/mutate-pod", ippool("{\"ipv6\": [\"backup-v4\"]}"),
            Denied(403, "interface eth0: Pod annotation ipam.spidernet.io/ippool names no IPv4 pool, but IPv4 is enabled; add `ipv4` pools there or disable IPv4 in spiderpool-conf")),
        // Pools of other namespaces (tests/bad_input.rs loads them: see OTHER_NAMESPACES).
        case("ippool restricted to another namespace by namespaceName", "/mutate-pod", ippool("{\"ipv4\": [\"zone-demo-only\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool zone-demo-only: the namespace is not in its spec.namespaceName")),
        case("ippool restricted by namespaceAffinity", "/mutate-pod", ippool("{\"ipv4\": [\"team-b-only\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool team-b-only: the namespace's labels do not match its spec.namespaceAffinity (team=b)")),
        case("ippool wildcard matching only other namespaces' pools", "/mutate-pod", ippool("{\"ipv4\": [\"*-only\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool team-b-only: the namespace's labels do not match its spec.namespaceAffinity (team=b); pool zone-demo-only: the namespace is not in its spec.namespaceName")),
        case("ippool disabled pool", "/mutate-pod", ippool("{\"ipv4\": [\"disabled-v4\"]}"),
            Denied(403, "interface eth0: no IPv4 pool from Pod annotation ipam.spidernet.io/ippool can serve this Pod: pool disabled-v4: the pool is disabled (spec.disable: true)")),
        // --- ipam.spidernet.io/ippools ----------------------------------------------------
        case("ippools empty list", "/mutate-pod", ippools("[]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: the list is empty: add one entry per interface")),
        case("ippools not a list", "/mutate-pod", ippools("{\"ipv4\": [\"backup-v4\"]}"),
            Denied(400, "annotation ipam.spidernet.io/ippools: must be a JSON list, one entry per interface")),
        case("ippools entry not an object", "/mutate-pod", ippools("[\"backup-v4\"]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: entry 1: must be an object like {\"interface\": \"eth0\", \"ipv4\": [\"pool-a\"]}")),
        case("ippools duplicate interface", "/mutate-pod",
            ippools("[{\"interface\": \"eth0\", \"ipv4\": [\"backup-v4\"]}, {\"interface\": \"eth0\", \"ipv4\": [\"team-a-v4\"]}]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: interface `eth0` appears twice")),
        case("ippools interface named in some entries only", "/mutate-pod",
            ippools("[{\"interface\": \"eth0\", \"ipv4\": [\"backup-v4\"]}, {\"ipv4\": [\"team-a-v4\"]}]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: entry 2 has no `interface`: name the interface in every entry, or in none")),
        case("ippools cleangateway is a string", "/mutate-pod",
            ippools("[{\"interface\": \"eth0\", \"ipv4\": [\"backup-v4\"], \"cleangateway\": \"yes\"}]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: entry 1: `cleangateway` must be true or false (without quotes)")),
        case("ippools invalid JSON", "/mutate-pod", ippools("[{]"),
            Denied(400, "annotation ipam.spidernet.io/ippools: invalid JSON at line 1 column 3: key must be a string")),
        // --- other Pod annotations --------------------------------------------------------
        // (A malformed subnet, ippool-ip-number or ippool-reclaim annotation is not read while
        // the SpiderSubnet feature is off, as in Spiderpool: see pod_tests.rs.)
        case("routes without gw", "/mutate-pod",
            pod_with(&[("ipam.spidernet.io/ippool", "{\"ipv4\": [\"backup-v4\"]}"), ("ipam.spidernet.io/routes", "[{\"dst\": \"10.0.0.0/16\"}]")]),
            Denied(400, "annotation ipam.spidernet.io/routes: entry 1: `gw` is missing: write the next-hop address, e.g. \"192.168.1.1\"")),
        case("routes of mixed families", "/mutate-pod",
            pod_with(&[("ipam.spidernet.io/ippool", "{\"ipv4\": [\"backup-v4\"]}"), ("ipam.spidernet.io/routes", "[{\"dst\": \"10.0.0.0/16\", \"gw\": \"fd00::1\"}]")]),
            Denied(400, "annotation ipam.spidernet.io/routes: entry 1: `dst` `10.0.0.0/16` and `gw` `fd00::1` are of different IP families: use an IPv4 gateway")),
        case("multus networks with two slashes", "/mutate-pod",
            pod_with(&[("k8s.v1.cni.cncf.io/networks", "a/b/c")]),
            Denied(400, "annotation k8s.v1.cni.cncf.io/networks: item 1 `a/b/c`: more than one '/': write `namespace/name@interface`")),
        case("multus interface twice", "/mutate-pod",
            pod_with(&[("k8s.v1.cni.cncf.io/networks", "kube-system/macvlan-conf@net1, kube-system/macvlan-conf@net1")]),
            Denied(400, "annotation k8s.v1.cni.cncf.io/networks: interface `net1` appears twice")),
        // --- pool specs through the webhook ----------------------------------------------
        case("pool overlapping team-a-v4", "/validate-ippool",
            pool_create(json!({"subnet": "10.20.0.0/24", "ips": ["10.20.0.12-10.20.0.20"]})),
            Denied(422, "SpiderIPPool rack-c is invalid: spec.ips: overlaps SpiderIPPool team-a-v4 on 1 address(es): 10.20.0.12")),
        case("pool gateway inside its ips", "/validate-ippool",
            pool_create(json!({"subnet": "10.30.0.0/24", "ips": ["10.30.0.1-10.30.0.9"], "gateway": "10.30.0.1"})),
            Denied(422, "SpiderIPPool rack-c is invalid: spec.gateway: 10.30.0.1 is inside spec.ips; take it out of spec.ips or add it to spec.excludeIPs")),
        case("pool reversed range", "/validate-ippool",
            pool_create(json!({"subnet": "10.30.0.0/24", "ips": ["10.30.0.9-10.30.0.1"]})),
            Denied(422, "SpiderIPPool rack-c is invalid: spec.ips[0]: range '10.30.0.9-10.30.0.1': start 10.30.0.9 is after end 10.30.0.1; write '10.30.0.1-10.30.0.9' instead")),
        // --- AdmissionReview bodies -------------------------------------------------------
        case("review of a SpiderIPPool sent to /mutate-pod", "/mutate-pod", fixture_json("ippool-create.json"),
            Denied(400, "/mutate-pod serves Pod CREATE only, not SpiderIPPool.spiderpool.spidernet.io spiderippools CREATE; check the webhook configuration's rules")),
        case("review of a Pod sent to /validate-ippool", "/validate-ippool", fixture_json("pod-bare.json"),
            Denied(400, "/validate-ippool serves SpiderIPPool CREATE/UPDATE/DELETE only, not Pod pods CREATE; check the webhook configuration's rules")),
    ];
    // Operations and subresources the paths are not registered for.
    let mut update = fixture_json("pod-bare.json");
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = update["request"]["object"].clone();
    v.push(case("Pod UPDATE to /mutate-pod", "/mutate-pod", update,
        Denied(400, "/mutate-pod serves Pod CREATE only, not Pod pods UPDATE; check the webhook configuration's rules")));
    let mut delete = fixture_json("pod-bare.json");
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = delete["request"]["object"].take();
    v.push(case("Pod DELETE to /mutate-pod", "/mutate-pod", delete,
        Denied(400, "/mutate-pod serves Pod CREATE only, not Pod pods DELETE; check the webhook configuration's rules")));
    let mut connect = fixture_json("pod-bare.json");
    connect["request"]["operation"] = json!("CONNECT");
    v.push(case("Pod CONNECT to /mutate-pod", "/mutate-pod", connect,
        Denied(400, "/mutate-pod serves Pod CREATE only, not Pod pods CONNECT; check the webhook configuration's rules")));
    let mut status = fixture_json("pod-bare.json");
    status["request"]["subResource"] = json!("status");
    v.push(case("Pod status subresource to /mutate-pod", "/mutate-pod", status,
        Denied(400, "/mutate-pod serves Pod CREATE only, not Pod pods/status CREATE; check the webhook configuration's rules")));
    let mut no_object = fixture_json("pod-bare.json");
    no_object["request"]["object"] = Value::Null;
    v.push(case(
        "Pod CREATE without object",
        "/mutate-pod",
        no_object,
        Denied(400, "the AdmissionReview carries no Pod object"),
    ));
    let mut bad_pod = fixture_json("pod-bare.json");
    bad_pod["request"]["object"]["spec"]["containers"] = json!("busybox");
    v.push(case(
        "object is not a Pod",
        "/mutate-pod",
        bad_pod,
        Denied(
            400,
            "cannot read the Pod: invalid type: string \"busybox\", expected a sequence",
        ),
    ));
    let mut v1beta1 = fixture_json("pod-bare.json");
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    v.push(case("apiVersion v1beta1", "/mutate-pod", v1beta1,
        Http(400, "expected kind AdmissionReview apiVersion admission.k8s.io/v1, got kind \"AdmissionReview\" apiVersion \"admission.k8s.io/v1beta1\"; set admissionReviewVersions: [v1]")));
    let mut wrong_kind = fixture_json("pod-bare.json");
    wrong_kind["kind"] = json!("Pod");
    v.push(case("kind Pod instead of AdmissionReview", "/mutate-pod", wrong_kind,
        Http(400, "expected kind AdmissionReview apiVersion admission.k8s.io/v1, got kind \"Pod\" apiVersion \"admission.k8s.io/v1\"")));
    let mut no_request = fixture_json("pod-bare.json");
    no_request.as_object_mut().unwrap().remove("request");
    v.push(case("no request", "/mutate-pod", no_request,
        Http(400, "the AdmissionReview has no `request`: kube-apiserver sends the request to review in it")));
    let mut no_uid = fixture_json("pod-bare.json");
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    v.push(case(
        "no request.uid",
        "/mutate-pod",
        no_uid,
        Http(
            400,
            "the body is not an AdmissionReview: missing field `uid`",
        ),
    ));
    let mut empty_uid = fixture_json("pod-bare.json");
    empty_uid["request"]["uid"] = json!("");
    v.push(case("empty request.uid", "/mutate-pod", empty_uid,
        Http(400, "the AdmissionReview's request.uid is empty: kube-apiserver sets it to identify the review")));
    let mut no_kind = fixture_json("pod-bare.json");
    no_kind["request"].as_object_mut().unwrap().remove("kind");
    v.push(case(
        "no request.kind",
        "/mutate-pod",
        no_kind,
        Http(
            400,
            "the body is not an AdmissionReview: missing field `kind`",
        ),
    ));
    let mut bad_op = fixture_json("pod-bare.json");
    bad_op["request"]["operation"] = json!("PATCH");
    v.push(case(
        "unknown operation",
        "/mutate-pod",
        bad_op,
        Http(
            400,
            "the body is not an AdmissionReview: unknown variant `PATCH`",
        ),
    ));
    let mut big = fixture_json("pod-bare.json");
    big["request"]["object"]["metadata"]["annotations"]["filler"] = json!("x".repeat(4 << 20));
    v.push(case(
        "oversized body (4 MiB)",
        "/mutate-pod",
        big,
        Http(
            413,
            "Failed to buffer the request body: length limit exceeded",
        ),
    ));
    for (name, raw) in [
        ("empty body", &b""[..]),
        ("not JSON", &b"{not json"[..]),
        ("a JSON list", &b"[]"[..]),
        ("invalid UTF-8", &b"{\"kind\": \"\xff\xfe\"}"[..]),
    ] {
        v.push(Case {
            name,
            path: "/mutate-pod",
            body: raw.to_vec(),
            expect: Http(400, "the body is not an AdmissionReview: "),
        });
    }
    v
}

/// Nothing reserved, nothing bound: no claim creation was attempted, the fixture's own claim is
/// the only one, no endpoint was written.
fn assert_nothing_reserved(r: &Running, name: &str) {
    let st = r.effects.state();
    assert_eq!(st.create_calls, 0, "{name}: a claim creation was attempted");
    assert_eq!(
        st.claims.keys().collect::<Vec<_>>(),
        vec!["team-a-v4.10.20.0.11"],
        "{name}: claims changed"
    );
    assert!(st.endpoints.is_empty(), "{name}: an endpoint was written");
    assert!(st.deleted.is_empty(), "{name}: {:?}", st.deleted);
}

/// Two pools team-a may not use: one for the namespace zone-demo by name, one for namespaces
/// labelled team=b (team-a is not). Naming them in an annotation takes nothing from them.
const OTHER_NAMESPACES: &str = r#"
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: zone-demo-only}
spec: {subnet: 10.40.0.0/24, ips: [10.40.0.10-10.40.0.19], namespaceName: [zone-demo]}
---
apiVersion: spiderpool.spidernet.io/v2beta1
kind: SpiderIPPool
metadata: {name: team-b-only}
spec:
  subnet: 10.41.0.0/24
  ips: [10.41.0.10-10.41.0.19]
  namespaceAffinity: {matchLabels: {team: b}}
"#;

#[tokio::test]
async fn malformed_input_is_refused_with_its_message_and_reserves_nothing() {
    let r = start().await;
    aipam_webhook::testkit::load(OTHER_NAMESPACES, &r.cache, &r.effects).unwrap();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let (status, bytes) = post(&r, c.path, c.body.clone()).await;
        let text = String::from_utf8_lossy(&bytes).to_string();
        eprintln!("{}: HTTP {status} {text:.400}", c.name);
        let got = match &c.expect {
            Expect::Http(code, prefix) => {
                if status == *code && text.starts_with(prefix) {
                    None
                } else {
                    Some(format!("HTTP {status}: {text:.300}"))
                }
            }
            Expect::Denied(code, prefix) => {
                let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let resp = &v["response"];
                let msg = resp["status"]["message"].as_str().unwrap_or_default();
                let ok = status == 200
                    && v["kind"] == "AdmissionReview"
                    && resp["allowed"] == false
                    && resp["status"]["code"] == *code
                    && msg.starts_with(prefix)
                    && !msg.is_empty()
                    && resp.get("patch").is_none();
                if ok {
                    None
                } else {
                    Some(format!(
                        "HTTP {status}, allowed {}, code {}: {msg} {text:.300}",
                        resp["allowed"], resp["status"]["code"]
                    ))
                }
            }
        };
        if let Some(got) = got {
            failures.push(format!("{}: {got}", c.name));
        }
        assert_nothing_reserved(&r, c.name);
    }
    r.shutdown().await;
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The seed corpus shared with the fuzz targets.
fn corpus(dir: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../core/tests/corpus")
        .join(dir);
    let mut out: Vec<_> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "{}: empty corpus", root.display());
    out
}

/// What decoding may answer: a request with a uid, or a message naming the problem.
fn check_decode(body: &[u8]) {
    match aipam_webhook::http::decode(body) {
        Ok(req) => assert!(!req.uid.is_empty()),
        Err(msg) => assert!(
            msg.starts_with("the body is not an AdmissionReview: ")
                || msg.starts_with("expected kind AdmissionReview apiVersion admission.k8s.io/v1")
                || msg.starts_with("the AdmissionReview has no `request`")
                || msg.starts_with("the AdmissionReview's request.uid is empty"),
            "unclear error for {:?}: {msg}",
            String::from_utf8_lossy(body)
        ),
    }
}

#[test]
fn review_corpus_decodes_or_is_refused_clearly() {
    for (name, bytes) in corpus("review") {
        let r = std::panic::catch_unwind(|| check_decode(&bytes));
        assert!(r.is_ok(), "{name}");
    }
}

fn review_like() -> impl Strategy<Value = Vec<u8>> {
    let base = serde_json::to_string(&fixture_json("pod-bare.json")).unwrap();
    let base2 = base.clone();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..512),
        ".{0,256}".prop_map(String::into_bytes),
        // The real body, cut at any point.
        (0..base.len()).prop_map(move |n| base.as_bytes()[..n].to_vec()),
        // The real body with one byte replaced.
        (0..base2.len(), any::<u8>()).prop_map(move |(i, b)| {
            let mut v = base2.clone().into_bytes();
            v[i] = b;
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn decode_never_panics_and_explains(body in review_like()) {
        check_decode(&body);
    }
}

/// A writer the test subscriber logs into.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// With tracing at debug, serving reviews (allowed and denied, from a client presenting a bearer
/// token) logs neither the token nor any PEM block (the serving certificate and key are loaded
/// by the same process).
#[tokio::test]
async fn logs_hold_no_token_or_certificate() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // #[tokio::test] runs on one thread: the server's tasks log through this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let r = start().await;
    let token = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2VuLWZvci10ZXN0.sig";
    let key_pem = std::fs::read_to_string(&r.key_path).unwrap();
    let mut pod = fixture_json("pod-bare.json");
    // A Pod that carries a token and a key in its spec (a careless manifest): never logged.
    pod["request"]["object"]["spec"]["containers"][0]["env"] =
        json!([{"name": "TOKEN", "value": token}, {"name": "KEY", "value": key_pem}]);
    let mut denied = pod.clone();
    denied["request"]["object"]["metadata"]["annotations"]["ipam.spidernet.io/ippool"] =
        json!("{\"ipv4\": [\"no-such-pool\"]}");
    for body in [&pod, &denied] {
        let tls = common::connect(r.addr, &r.ca_pem).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = hyper::Request::post("/mutate-pod")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(
                serde_json::to_vec(body).unwrap(),
            )))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
    }
    post(&r, "/mutate-pod", b"{not json".to_vec()).await;
    r.shutdown().await;
    let text = String::from_utf8_lossy(&captured.0.lock().unwrap()).to_string();
    assert!(text.contains("denied"), "nothing was captured: {text}");
    assert!(
        !text.contains(token),
        "the bearer token was logged:\n{text}"
    );
    assert!(
        !text.contains("Bearer"),
        "an Authorization header was logged:\n{text}"
    );
    assert!(
        !text.contains("-----BEGIN"),
        "a PEM block was logged:\n{text}"
    );
    assert!(!text.contains("PRIVATE KEY"), "a key was logged:\n{text}");
}
