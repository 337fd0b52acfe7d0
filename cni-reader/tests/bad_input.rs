//! Bad input (issue 9), CNI level: the real `spiderpool` binary run as a process with malformed
//! stdin and environment, each with the exact CNI error expected (code and message) and checked
//! to make no API request at all. Then arbitrary bytes fed to the stdin parser and the `CNI_*`
//! readers (no panic, a CNI error with a spec code and a message), the seed corpus replayed, and
//! the logs checked for credentials.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aipam_cni::config::parse;
use aipam_cni::env::{from_env, parse_cni_args, Command, PodRef};
use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};

const UID: &str = "5e0d5b6c-1111-4c1e-9a51-0123456789ab";

struct Case {
    name: &'static str,
    env: Vec<(String, String)>,
    stdin: Vec<u8>,
    code: u64,
    msg: &'static str,
    details: Option<&'static str>,
    /// The `cniVersion` the error is written in.
    version: &'static str,
}

fn add_env() -> Vec<(String, String)> {
    cni_env("ADD", "ns1", "web-0", UID, "eth0")
}

fn with(mut env: Vec<(String, String)>, key: &str, value: Option<&str>) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    if let Some(v) = value {
        env.push((key.to_string(), v.to_string()));
    }
    env
}

fn cases(kubeconfig: &std::path::Path) -> Vec<Case> {
    let good = net_conf("1.0.0", kubeconfig, json!({"timeout_seconds": 0}));
    let conf = |v: Value| v.to_string().into_bytes();
    let ipam = json!({"type": "spiderpool", "kubeconfig": kubeconfig, "timeout_seconds": 0});
    let stdin = |name, stdin: Vec<u8>, code, msg, details, version| Case {
        name,
        env: add_env(),
        stdin,
        code,
        msg,
        details,
        version,
    };
    let env = |name, env, code, msg| Case {
        name,
        env,
        stdin: good.clone().into_bytes(),
        code,
        msg,
        details: None,
        // The environment is checked before stdin is read: the error is in the current version.
        version: "1.1.0",
    };
    // CNI_ARGS is read after the configuration: its errors are in the configuration's version.
    let args = |name, value: Option<&str>, msg| Case {
        version: "1.0.0",
        ..env(name, with(add_env(), "CNI_ARGS", value), 4, msg)
    };
    vec![
        // --- stdin ------------------------------------------------------------------------
        stdin("truncated JSON", b"{\"cniVersion\": ".to_vec(), 6,
            "error decoding the network configuration on stdin", Some("EOF while parsing a value at line 1 column 15"), "1.1.0"),
        stdin("empty stdin", Vec::new(), 6,
            "error decoding the network configuration on stdin", Some("EOF while parsing a value at line 1 column 0"), "1.1.0"),
        stdin("not JSON", b"cniVersion=1.0.0".to_vec(), 6,
            "error decoding the network configuration on stdin", Some("expected value at line 1 column 1"), "1.1.0"),
        stdin("invalid UTF-8", b"{\"cniVersion\": \"\xff\"}".to_vec(), 6,
            "error decoding the network configuration on stdin", Some("invalid unicode code point at line 1 column 17"), "1.1.0"),
        stdin("a JSON list", b"[]".to_vec(), 6,
            "the network configuration on stdin is not a JSON object", None, "1.1.0"),
        stdin("unknown cniVersion 9.9.9", conf(json!({"cniVersion": "9.9.9", "name": "n", "ipam": ipam})), 1,
            "incompatible CNI versions", Some("config is \"9.9.9\", plugin supports [\"0.3.0\", \"0.3.1\", \"0.4.0\", \"1.0.0\", \"1.1.0\"]"), "9.9.9"),
        stdin("old cniVersion 0.2.0", conf(json!({"cniVersion": "0.2.0", "name": "n", "ipam": ipam})), 1,
            "incompatible CNI versions", None, "0.2.0"),
        stdin("cniVersion missing", conf(json!({"name": "n", "ipam": ipam})), 1,
            "incompatible CNI versions", Some("config is \"\", plugin supports"), "1.1.0"),
        stdin("cniVersion is a number", conf(json!({"cniVersion": 1.0, "name": "n", "ipam": ipam})), 6,
            "cniVersion must be a string, found 1.0", None, "1.1.0"),
        stdin("network name missing", conf(json!({"cniVersion": "1.0.0", "ipam": ipam})), 7,
            "missing network name", None, "1.0.0"),
        stdin("network name with a slash", conf(json!({"cniVersion": "1.0.0", "name": "a/b", "ipam": ipam})), 7,
            "invalid characters found in network name \"a/b\"", None, "1.0.0"),
        stdin("no ipam section", conf(json!({"cniVersion": "1.0.0", "name": "n", "type": "macvlan"})), 7,
            "the network configuration has no \"ipam\" object: write \"ipam\": {\"type\": \"spiderpool\"}", None, "1.0.0"),
        stdin("ipam is a string", conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": "spiderpool"})), 7,
            "the network configuration has no \"ipam\" object", None, "1.0.0"),
        stdin("ipam.type missing", conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"kubeconfig": kubeconfig}})), 7,
            "ipam.type is missing: write \"type\": \"spiderpool\"", None, "1.0.0"),
        stdin("ipam.timeout_seconds is a word", conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "spiderpool", "timeout_seconds": "soon"}})), 7,
            "ipam.timeout_seconds must be a number of seconds, found \"soon\"", None, "1.0.0"),
        stdin("ipam.timeout_seconds negative", conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "spiderpool", "timeout_seconds": -1}})), 7,
            "ipam.timeout_seconds must be between 0 and ", None, "1.0.0"),
        stdin("ipam.kubeconfig is a number", conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "spiderpool", "kubeconfig": 1}})), 7,
            "ipam.kubeconfig must be a string, found 1", None, "1.0.0"),
        Case {
            name: "CHECK with a 0.3.1 configuration",
            env: cni_env("CHECK", "ns1", "web-0", UID, "eth0"),
            stdin: net_conf("0.3.1", kubeconfig, json!({})).into_bytes(),
            code: 1,
            msg: "config version does not allow CHECK",
            details: None,
            version: "0.3.1",
        },
        // --- environment ------------------------------------------------------------------
        env("CNI_IFNAME missing", with(add_env(), "CNI_IFNAME", None), 4,
            "required env variables [CNI_IFNAME] missing"),
        env("CNI_CONTAINERID missing", with(add_env(), "CNI_CONTAINERID", None), 4,
            "required env variables [CNI_CONTAINERID] missing"),
        env("CNI_NETNS missing", with(add_env(), "CNI_NETNS", None), 4,
            "required env variables [CNI_NETNS] missing"),
        env("CNI_PATH missing", with(add_env(), "CNI_PATH", None), 4,
            "required env variables [CNI_PATH] missing"),
        env("only CNI_COMMAND", vec![("CNI_COMMAND".into(), "ADD".into())], 4,
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"),
        env("CNI_IFNAME too long", with(add_env(), "CNI_IFNAME", Some("this-name-is-too-long")), 4,
            "interface name CNI_IFNAME \"this-name-is-too-long\" is longer than 15 characters"),
        env("CNI_IFNAME with a slash", with(add_env(), "CNI_IFNAME", Some("eth0/1")), 4,
            "interface name CNI_IFNAME \"eth0/1\" contains '/', ':' or white space"),
        env("CNI_IFNAME is ..", with(add_env(), "CNI_IFNAME", Some("..")), 4,
            "interface name CNI_IFNAME \"..\" is not a valid name"),
        env("CNI_CONTAINERID with a slash", with(add_env(), "CNI_CONTAINERID", Some("../etc")), 4,
            "invalid characters in CNI_CONTAINERID \"../etc\""),
        env("unknown CNI_COMMAND", with(add_env(), "CNI_COMMAND", Some("FROB")), 4,
            "unknown CNI_COMMAND: \"FROB\""),
        args("CNI_ARGS without K8S_POD_NAME", Some("IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1"),
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME (the Kubernetes runtime sets them): this plugin reads the addresses reserved for that Pod"),
        args("CNI_ARGS without K8S_POD_NAMESPACE", Some("K8S_POD_NAME=web-0"),
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME"),
        args("CNI_ARGS with an empty K8S_POD_NAME", Some("K8S_POD_NAMESPACE=ns1;K8S_POD_NAME="),
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME"),
        args("CNI_ARGS missing", None,
            "CNI_ARGS must carry K8S_POD_NAMESPACE and K8S_POD_NAME"),
        args("CNI_ARGS pair without =", Some("K8S_POD_NAMESPACE=ns1;K8S_POD_NAME"),
            "CNI_ARGS: invalid pair \"K8S_POD_NAME\": expected KEY=VALUE"),
    ]
}

#[test]
fn malformed_stdin_and_environment_are_refused_without_any_api_request() {
    let f = Fixture::start();
    f.put_endpoint("ns1", "web-0", endpoint("ns1", "web-0", UID, json!([])));
    let kc = f.kubeconfig();
    let cases = cases(&kc);
    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        // run_plugin takes text: the raw bytes for the invalid UTF-8 case.
        let run = match std::str::from_utf8(&c.stdin) {
            Ok(text) => run_plugin(&c.env, text),
            Err(_) => run_plugin_bytes(&c.env, &c.stdin),
        };
        let v: Value = serde_json::from_str(&run.stdout).unwrap_or(Value::Null);
        let msg = v["msg"].as_str().unwrap_or_default();
        let details = v["details"].as_str().unwrap_or_default();
        let ok = run.exit == Some(1)
            && v["code"] == c.code
            && msg.starts_with(c.msg)
            && c.details.is_none_or(|d| details.starts_with(d))
            && v["cniVersion"] == c.version
            && run.stdout.lines().count() == 1;
        if !ok {
            failures.push(format!(
                "{}: exit {:?}, stdout {}",
                c.name, run.exit, run.stdout
            ));
        }
    }
    assert_eq!(f.requests(), 0, "a malformed invocation reached the API");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// `run_plugin` for stdin that is not UTF-8.
fn run_plugin_bytes(env: &[(String, String)], stdin: &[u8]) -> Run {
    use std::io::Write;
    use std::process::{Command as Process, Stdio};
    let start = std::time::Instant::now();
    let mut child = Process::new(plugin_bin())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    let out = child.wait_with_output().unwrap();
    Run {
        exit: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        elapsed: start.elapsed(),
    }
}

/// The stdin parser's verdict on any bytes: a configuration, or a CNI error with one of the
/// spec's codes for bad input and a message.
fn check_stdin(bytes: &[u8]) {
    for command in [Command::Add, Command::Del, Command::Check, Command::Status] {
        if let Err(e) = parse(bytes, command) {
            assert!(matches!(e.code, 1 | 6 | 7), "code {}: {e}", e.code);
            assert!(!e.msg.trim().is_empty());
            let wire: Value = serde_json::from_str(&e.to_json("1.0.0")).unwrap();
            assert_eq!(wire["code"], e.code);
        }
    }
    let _ = aipam_cni::plugin::error_version(bytes);
    let _ = aipam_cni::plugin::version_json(bytes);
    let _ = aipam_cni::config::log_settings(bytes);
}

fn check_env(command: &str, ifname: &str, container: &str, args: &str) {
    let vars = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", container),
        ("CNI_NETNS", "/var/run/netns/x"),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/opt/cni/bin"),
        ("CNI_ARGS", args),
    ];
    let get = |k: &str| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    };
    match from_env(get) {
        Ok(_) => {}
        Err(e) => {
            assert_eq!(e.code, 4, "{e}");
            assert!(!e.msg.is_empty());
        }
    }
    match parse_cni_args(args) {
        Ok(map) => {
            if let Err(e) = PodRef::from_args(&map) {
                assert_eq!(e.code, 4);
            }
        }
        Err(e) => assert!(e.msg.starts_with("CNI_ARGS: invalid pair"), "{e}"),
    }
}

#[test]
fn stdin_corpus_is_handled() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/corpus/cni");
    let mut n = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        let r = std::panic::catch_unwind(|| check_stdin(&bytes));
        assert!(r.is_ok(), "{}", p.display());
        n += 1;
    }
    assert!(n >= 10);
}

fn stdin_like() -> impl Strategy<Value = Vec<u8>> {
    let base = net_conf(
        "1.0.0",
        std::path::Path::new("/etc/cni/net.d/spiderpool.d/kubeconfig"),
        json!({"timeout_seconds": 2}),
    );
    let base2 = base.clone();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        any::<String>().prop_map(String::into_bytes),
        (0..base.len()).prop_map(move |n| base.as_bytes()[..n].to_vec()),
        (0..base2.len(), any::<u8>()).prop_map(move |(i, b)| {
            let mut v = base2.clone().into_bytes();
            v[i] = b;
            v
        }),
        (
            prop_oneof![
                Just(json!("1.0.0")),
                Just(json!(1)),
                Just(Value::Null),
                any::<String>().prop_map(Value::from)
            ],
            prop_oneof![
                Just(json!("n")),
                Just(json!("")),
                Just(json!(["n"])),
                any::<String>().prop_map(Value::from)
            ],
            prop_oneof![
                Just(json!({"type": "spiderpool"})),
                Just(json!("spiderpool")),
                Just(json!({"timeout_seconds": 1e300})),
                Just(json!({"type": 1}))
            ],
        )
            .prop_map(|(v, n, i)| json!({"cniVersion": v, "name": n, "ipam": i})
                .to_string()
                .into_bytes()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn stdin_parser_never_panics(bytes in stdin_like()) {
        check_stdin(&bytes);
    }

    #[test]
    fn env_readers_never_panic(
        command in prop_oneof![Just("ADD".to_string()), Just("DEL".to_string()), "[A-Z]{0,8}"],
        ifname in ".{0,20}",
        container in ".{0,20}",
        args in prop_oneof![".{0,60}", "(K8S_POD_[A-Z]{1,9}=[a-z0-9-]{0,5};?){0,4}"],
    ) {
        check_env(&command, &ifname, &container, &args);
    }
}

/// Logging at debug, on stderr and in a log file, never shows the bearer token or any PEM or
/// base64-encoded PEM content (client certificate and key, CA), whether the read succeeds or the
/// credential is refused.
#[test]
fn logs_hold_no_token_or_certificate() {
    let f = Fixture::start();
    f.put_endpoint(
        "ns1",
        "web-0",
        endpoint(
            "ns1",
            "web-0",
            UID,
            json!([{"interface": "eth0", "ipv4": "10.6.168.60/16", "ipv4Pool": "p", "ipv4Gateway": "10.6.0.1"}]),
        ),
    );
    let log = f.dir.path().join("debug.log");
    let forbidden = "forbidden-token-0123456789";
    f.forbid_token(forbidden);
    let kubeconfigs = [
        (f.kubeconfig(), f.token.clone(), 0),
        (f.kubeconfig_client_cert(), f.token.clone(), 0),
        (f.kubeconfig_bad_token(), "not-the-token".to_string(), 100),
        (
            f.kubeconfig_with_token("kubeconfig-forbidden", forbidden),
            forbidden.to_string(),
            101,
        ),
    ];
    for (kc, secret, code) in &kubeconfigs {
        let kc_text = std::fs::read_to_string(kc).unwrap();
        for extra in [
            json!({"log_level": "DEBUG"}),
            json!({"log_level": "TRACE", "log_file_path": log}),
        ] {
            let run = run_plugin(
                &with(add_env(), "RUST_LOG", Some("trace")),
                &net_conf("1.0.0", kc, extra),
            );
            if *code == 0 {
                run.ok();
            } else {
                run.err(*code);
            }
            let file = std::fs::read_to_string(&log).unwrap_or_default();
            for (what, text) in [
                ("stdout", &run.stdout),
                ("stderr", &run.stderr),
                ("log file", &file),
            ] {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} shows the token: {text}"
                );
                assert!(
                    !text.contains("Bearer"),
                    "{what} shows an Authorization header: {text}"
                );
                assert!(
                    !text.contains("-----BEGIN"),
                    "{what} shows a PEM block: {text}"
                );
                // base64 of "-----BEGIN" as kubeconfigs carry certificates and keys.
                assert!(
                    !text.contains("LS0tLS1CRUdJTi"),
                    "{what} shows base64 PEM: {text}"
                );
                for line in kc_text.lines().filter(|l| l.contains("-data:")) {
                    let data = line.split(':').nth(1).unwrap().trim().trim_matches('"');
                    if data.len() > 80 {
                        assert!(
                            !text.contains(&data[40..80]),
                            "{what} shows kubeconfig data"
                        );
                    }
                }
            }
        }
    }
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("reservation found"));
}
