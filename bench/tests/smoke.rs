#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Smoke run of the whole suite with `--quick` (seconds): every bench runs end to end and its
//! figures are sane — every Pod served, the counts consistent with each other. The figures
//! themselves are not checked (the machine decides them).
//!
//! Needs the project's binaries built in the same profile (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

fn u(v: &Value, p: &str) -> u64 {
    v.pointer(p)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("{p} missing in {v}"))
}

fn f(v: &Value, p: &str) -> f64 {
    v.pointer(p)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{p} missing in {v}"))
}

#[test]
fn quick_suite_serves_every_pod_with_consistent_counts() {
    let out = Command::new(env!("CARGO_BIN_EXE_aipam-bench"))
        .args(["--quick", "all"])
        .output()
        .expect("running aipam-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "aipam-bench --quick all failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: BTreeMap<String, Value> = stdout
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["bench"].as_str().unwrap().to_string(), v))
        .collect();
    for b in [
        "admission",
        "baseline",
        "burst",
        "contention",
        "cni",
        "release",
        "running",
        "exhaustion",
        "huge",
    ] {
        assert!(lines.contains_key(b), "no JSON line for {b}:\n{stdout}");
    }

    // Admission: every Pod admitted with all its addresses; one claim created per address, one
    // endpoint per Pod; the raw rate is measured.
    let adm = &lines["admission"];
    let pods = u(adm, "/pods");
    for row in adm["rows"].as_array().unwrap() {
        assert_eq!(u(row, "/admitted"), pods, "{row}");
        assert_eq!(u(row, "/refused") + u(row, "/errors"), 0, "{row}");
        assert!(f(row, "/pods_per_s") > 0.0 && f(row, "/raw_pods_per_s") > 0.0);
        assert!(f(row, "/latency/p50_ms") <= f(row, "/latency/p99_ms"));
        let kind = row["kind"].as_str().unwrap();
        if kind.starts_with("raw") {
            continue;
        }
        let addresses = if kind == "single-stack" { 1 } else { 2 };
        assert_eq!(u(row, "/fully_reserved"), pods, "{row}");
        assert_eq!(u(row, "/writes/pods"), pods, "{row}");
        assert!(
            u(row, "/writes/spideripclaims.spiderpool.spidernet.io") >= addresses * pods,
            "{row}"
        );
        assert_eq!(
            u(row, "/writes/spiderendpoints.spiderpool.spidernet.io"),
            pods,
            "{row}"
        );
    }

    // Baseline: ours serves every Pod. The baseline (one status map, optimistic concurrency)
    // may time out on some under a loaded machine: its conflicts grow with the load, and those
    // failures are the figure it reports, not a fault. Every Pod it admitted got exactly one
    // allocation written once into the pool's status (an allocation whose answer came too late
    // for the API server counts too), and every other Pod is counted.
    let base = &lines["baseline"];
    let pods = u(base, "/pods");
    assert_eq!(u(base, "/ours/admitted"), pods);
    let admitted = u(base, "/baseline/admitted");
    assert!(admitted > 0, "{base}");
    assert_eq!(
        admitted + u(base, "/baseline/refused") + u(base, "/baseline/errors"),
        pods,
        "{base}"
    );
    let allocations = u(base, "/baseline/webhook/allocations");
    assert!(allocations >= admitted, "{base}");
    assert_eq!(
        u(
            base,
            "/baseline/writes/spiderippools.spiderpool.spidernet.io~1status"
        ),
        allocations,
        "{base}"
    );
    assert!(f(base, "/ratio_throughput_ours_over_baseline") > 0.0);

    // Burst: every Pod reserved, one new claim each.
    let burst = &lines["burst"];
    assert_eq!(u(burst, "/reserved"), u(burst, "/pods"));
    assert_eq!(u(burst, "/new_claims"), u(burst, "/pods"));

    // Contention: the pool exactly full, every Pod served, no refusal.
    let c = &lines["contention"];
    assert_eq!(u(c, "/served"), u(c, "/pods"), "{c}");
    assert_eq!(u(c, "/claims_held"), u(c, "/pool_size"), "{c}");
    assert_eq!(u(c, "/refused") + u(c, "/errors"), 0, "{c}");
    assert_eq!(u(c, "/replicas_scraped"), u(c, "/replicas"));

    // CNI: every run timed, an address returned, a binary measured.
    let cni = &lines["cni"];
    assert!(u(cni, "/add/n") > 0);
    assert!(f(cni, "/add/p50_ms") > 0.0);
    assert!(!cni["result_ips"].as_array().unwrap().is_empty());
    assert!(u(cni, "/binary_bytes") > 0);

    // Release: every claim of the deleted Pods released.
    let rel = &lines["release"];
    assert_eq!(u(rel, "/released"), u(rel, "/claims"));
    assert_eq!(u(rel, "/claims"), u(rel, "/pods"));

    // Time to Running: every IPAM (host-local, ours x 1 and 3, Whereabouts) brought every Pod
    // Running with distinct addresses, one address held per Pod, and all given back.
    let run = &lines["running"];
    let rows = run["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{run}");
    for row in rows {
        assert_eq!(u(row, "/running"), u(row, "/pods"), "{row}");
        assert_eq!(u(row, "/duplicates"), 0, "{row}");
        assert_eq!(u(row, "/held_while_running"), u(row, "/pods"), "{row}");
        assert_eq!(u(row, "/held_after_delete"), 0, "{row}");
        assert!(f(row, "/create_to_running/p50_ms") > 0.0, "{row}");
    }
    // Ours writes claims, the peers do not; only Whereabouts takes Leases.
    assert!(f(&rows[1], "/writes_per_pod/ipam") >= 1.0, "{run}");
    assert_eq!(f(&rows[0], "/writes_per_pod/ipam"), 0.0, "{run}");

    // Exhaustion: ours refuses the one Pod too many at create with the reason; the peers leave
    // it created and failing in its sandbox; nothing held after the delete.
    let ex = &lines["exhaustion"];
    for row in ex["rows"].as_array().unwrap() {
        assert_eq!(u(row, "/running"), u(row, "/addresses"), "{row}");
        assert_eq!(u(row, "/held_after_delete"), 0, "{row}");
        let sees = row["what_the_user_sees"].as_str().unwrap();
        if row["ipam"].as_str().unwrap().starts_with("ours") {
            assert_eq!(sees, "FailedCreate", "{row}");
            // The reason names the full pool: "all N addresses are in use" when the webhook's
            // cache already saw it full, "no free address left" when the pick found it so.
            let message = row["message"].as_str().unwrap();
            assert!(
                message.contains("addresses are in use") || message.contains("no free address"),
                "{row}"
            );
            assert_eq!(u(row, "/created"), u(row, "/addresses"), "{row}");
        } else {
            assert_eq!(sees, "FailedCreatePodSandBox", "{row}");
            assert_eq!(u(row, "/stuck_pods"), 1, "{row}");
        }
    }

    // Huge pools: every IPAM allocated in every shape (a failed allocation fails the bench).
    let huge = &lines["huge"];
    let rows = huge["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{huge}");
    for row in rows {
        for shape in ["p24", "p8", "p64"] {
            assert_eq!(
                u(row, &format!("/{shape}/n")),
                u(huge, "/allocations"),
                "{row}"
            );
        }
    }
}
