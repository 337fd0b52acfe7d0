//! Owner resolution: the controller that ultimately owns a Pod, as the webhook records it in
//! the selection and `aipamctl inspect` shows it. One rule, in three steps, so that the caller
//! does the reading and the rule stays pure:
//!
//! 1. [`direct_controller`]: the Pod's controller ownerReference (`controller: true`).
//! 2. [`needs_lookup`]: whether that controller's object must be read — an `apps/` ReplicaSet
//!    (its Deployment above it, its `spec.replicas`), a `batch/` Job (its CronJob, its
//!    `spec.parallelism`), an `apps/` StatefulSet (its `spec.replicas`). The caller reads it
//!    and describes it with [`ControllerFacts`] ([`ControllerFacts::of_replica_set`],
//!    [`ControllerFacts::of_job`], [`ControllerFacts::of_stateful_set`]).
//! 3. [`top_owner`]: a ReplicaSet or Job controlled by a Deployment or CronJob gives way to it;
//!    the replicas are the read object's. Nothing read (not needed, not found, unreadable): the
//!    direct controller, replicas unknown.

use aipam_core::model::Owner;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The controller ownerReference of an object (the first with `controller: true`).
pub fn controller_ref(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// An object's direct controller, replicas unknown; `None` for an object without one (a bare
/// Pod).
pub fn direct_controller(meta: &ObjectMeta) -> Option<Owner> {
    controller_ref(meta).map(|r| Owner {
        api_version: r.api_version.clone(),
        kind: r.kind.clone(),
        name: r.name.clone(),
        uid: r.uid.clone(),
        replicas: None,
    })
}

/// Whether a controller is one that can sit under a Deployment or CronJob: an `apps/`
/// ReplicaSet or a `batch/` Job (another group's kind of the same name is not).
fn may_have_top(o: &Owner) -> bool {
    (o.kind == "ReplicaSet" && o.api_version.starts_with("apps/"))
        || (o.kind == "Job" && o.api_version.starts_with("batch/"))
}

/// Whether the direct controller's object must be read before [`top_owner`]: an `apps/`
/// ReplicaSet or a `batch/` Job (the owner above it, its replicas), an `apps/` StatefulSet (its
/// replicas). Every other kind is the top owner as it stands, replicas unknown.
pub fn needs_lookup(direct: &Owner) -> bool {
    may_have_top(direct)
        || (direct.kind == "StatefulSet" && direct.api_version.starts_with("apps/"))
}

/// What reading a Pod's direct controller told.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ControllerFacts {
    /// Its desired replicas: `spec.replicas` (ReplicaSet, StatefulSet), `spec.parallelism`
    /// (Job); `None` when unset.
    pub replicas: Option<u64>,
    /// Its own controller ownerReference (a Deployment, a CronJob), if any.
    pub controller: Option<OwnerReference>,
}

fn replicas(n: Option<i32>) -> Option<u64> {
    n.and_then(|r| u64::try_from(r).ok())
}

impl ControllerFacts {
    /// A ReplicaSet: `spec.replicas` and its controller.
    pub fn of_replica_set(rs: &ReplicaSet) -> ControllerFacts {
        ControllerFacts {
            replicas: replicas(rs.spec.as_ref().and_then(|s| s.replicas)),
            controller: controller_ref(&rs.metadata).cloned(),
        }
    }

    /// A Job: `spec.parallelism` and its controller.
    pub fn of_job(job: &Job) -> ControllerFacts {
        ControllerFacts {
            replicas: replicas(job.spec.as_ref().and_then(|s| s.parallelism)),
            controller: controller_ref(&job.metadata).cloned(),
        }
    }

    /// A StatefulSet: `spec.replicas` and its controller.
    pub fn of_stateful_set(set: &StatefulSet) -> ControllerFacts {
        ControllerFacts {
            replicas: replicas(set.spec.as_ref().and_then(|s| s.replicas)),
            controller: controller_ref(&set.metadata).cloned(),
        }
    }
}

/// The top owner of a Pod whose direct controller is `direct`, given what reading it told
/// (`None`: not read, not found, or unreadable). A ReplicaSet or Job whose own controller is a
/// Deployment or a CronJob gives way to it (that reference's apiVersion, kind, name and UID);
/// the replicas are the read object's in every case.
pub fn top_owner(direct: Owner, looked_up: Option<ControllerFacts>) -> Owner {
    let Some(facts) = looked_up else {
        return direct;
    };
    let top = facts
        .controller
        .filter(|t| may_have_top(&direct) && (t.kind == "Deployment" || t.kind == "CronJob"));
    match top {
        Some(t) => Owner {
            api_version: t.api_version,
            kind: t.kind,
            name: t.name,
            uid: t.uid,
            replicas: facts.replicas,
        },
        None => Owner {
            replicas: facts.replicas,
            ..direct
        },
    }
}

#[cfg(test)]
#[path = "owner_tests.rs"]
mod tests;
