#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Owner resolution.

use k8s_openapi::api::apps::v1::{ReplicaSetSpec, StatefulSetSpec};
use k8s_openapi::api::batch::v1::JobSpec;

use super::*;

fn oref(api_version: &str, kind: &str, name: &str, controller: Option<bool>) -> OwnerReference {
    OwnerReference {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: format!("{name}-uid"),
        controller,
        block_owner_deletion: None,
    }
}

fn meta(refs: Vec<OwnerReference>) -> ObjectMeta {
    ObjectMeta {
        owner_references: Some(refs),
        ..ObjectMeta::default()
    }
}

fn owner(api_version: &str, kind: &str, name: &str, replicas: Option<u64>) -> Owner {
    Owner {
        api_version: api_version.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        uid: format!("{name}-uid"),
        replicas,
    }
}

#[test]
fn the_direct_controller_is_the_reference_marked_controller() {
    let m = meta(vec![
        oref("v1", "ConfigMap", "cm", None),
        oref("apps/v1", "ReplicaSet", "web-5d8", Some(true)),
    ]);
    assert_eq!(
        direct_controller(&m),
        Some(owner("apps/v1", "ReplicaSet", "web-5d8", None))
    );
    assert_eq!(
        direct_controller(&meta(vec![oref("v1", "ConfigMap", "cm", Some(false))])),
        None
    );
    assert_eq!(direct_controller(&ObjectMeta::default()), None);
}

#[test]
fn only_replica_sets_jobs_and_stateful_sets_of_their_groups_are_read() {
    for (api, kind, read) in [
        ("apps/v1", "ReplicaSet", true),
        ("batch/v1", "Job", true),
        ("apps/v1", "StatefulSet", true),
        ("apps/v1", "DaemonSet", false),
        ("apps/v1", "Deployment", false),
        ("v1", "Node", false),
        ("example.com/v1", "ReplicaSet", false),
        ("example.com/v1", "Job", false),
        ("apps.kruise.io/v1beta1", "StatefulSet", false),
    ] {
        assert_eq!(
            needs_lookup(&owner(api, kind, "x", None)),
            read,
            "{api} {kind}"
        );
    }
}

#[test]
fn a_replica_set_or_job_gives_way_to_its_deployment_or_cron_job() {
    let rs = owner("apps/v1", "ReplicaSet", "web-5d8", None);
    let facts = ControllerFacts {
        replicas: Some(3),
        controller: Some(oref("apps/v1", "Deployment", "web", Some(true))),
    };
    assert_eq!(
        top_owner(rs.clone(), Some(facts)),
        owner("apps/v1", "Deployment", "web", Some(3))
    );
    let job = owner("batch/v1", "Job", "nightly-28", None);
    let facts = ControllerFacts {
        replicas: Some(2),
        controller: Some(oref("batch/v1", "CronJob", "nightly", Some(true))),
    };
    assert_eq!(
        top_owner(job, Some(facts)),
        owner("batch/v1", "CronJob", "nightly", Some(2))
    );
    // A ReplicaSet of its own (or under another kind): itself, with its replicas.
    for controller in [
        None,
        Some(oref("example.com/v1", "Rollout", "r", Some(true))),
    ] {
        assert_eq!(
            top_owner(
                rs.clone(),
                Some(ControllerFacts {
                    replicas: Some(4),
                    controller
                })
            ),
            owner("apps/v1", "ReplicaSet", "web-5d8", Some(4))
        );
    }
    // Not read (not found, unreadable): the direct controller, replicas unknown.
    assert_eq!(top_owner(rs.clone(), None), rs);
}

#[test]
fn a_stateful_set_keeps_its_place_and_gets_its_replicas() {
    let sts = owner("apps/v1", "StatefulSet", "db", None);
    let set = StatefulSet {
        metadata: meta(vec![oref("apps/v1", "Deployment", "odd", Some(true))]),
        spec: Some(StatefulSetSpec {
            replicas: Some(5),
            ..StatefulSetSpec::default()
        }),
        status: None,
    };
    // Only a ReplicaSet or a Job climbs.
    assert_eq!(
        top_owner(sts.clone(), Some(ControllerFacts::of_stateful_set(&set))),
        owner("apps/v1", "StatefulSet", "db", Some(5))
    );
    // `spec.replicas` unset: unknown.
    let unset = StatefulSet::default();
    assert_eq!(
        top_owner(sts.clone(), Some(ControllerFacts::of_stateful_set(&unset))),
        sts
    );
}

#[test]
fn facts_are_read_from_the_objects() {
    let rs = ReplicaSet {
        metadata: meta(vec![oref("apps/v1", "Deployment", "web", Some(true))]),
        spec: Some(ReplicaSetSpec {
            replicas: Some(3),
            ..ReplicaSetSpec::default()
        }),
        status: None,
    };
    assert_eq!(
        ControllerFacts::of_replica_set(&rs),
        ControllerFacts {
            replicas: Some(3),
            controller: Some(oref("apps/v1", "Deployment", "web", Some(true))),
        }
    );
    let job = Job {
        metadata: meta(vec![oref("batch/v1", "CronJob", "nightly", Some(true))]),
        spec: Some(JobSpec {
            parallelism: Some(2),
            completions: Some(9),
            ..JobSpec::default()
        }),
        status: None,
    };
    assert_eq!(ControllerFacts::of_job(&job).replicas, Some(2));
    // A negative count is no count.
    let odd = ReplicaSet {
        spec: Some(ReplicaSetSpec {
            replicas: Some(-1),
            ..ReplicaSetSpec::default()
        }),
        ..ReplicaSet::default()
    };
    assert_eq!(
        ControllerFacts::of_replica_set(&odd),
        ControllerFacts::default()
    );
}
