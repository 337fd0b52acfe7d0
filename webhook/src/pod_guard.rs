//! The Pod UPDATE guard (`/validate-pod-update`): the reservation record a Pod carries in its
//! annotation [`ANNO_RESERVATION`] is written by the mutating webhook when the Pod is created
//! and afterwards changed only by the operator (late binding keeps the address of the Pod's
//! zone). The Pod carrying a reservation id holds its claims, so anyone else who may update
//! Pods could otherwise rewrite it — for instance to carry the id of another Pod of the
//! namespace and have its addresses written into their own Pod's endpoint
//! (docs/threat-model.md). So on Pod UPDATE, adding, changing or removing that annotation is
//! refused unless the request comes from the operator's user.
//!
//! Every other change of a Pod is allowed: the guard never blocks labels, other annotations,
//! finalizers or the spec changes Kubernetes itself allows.

use aipam_core::reservation::ANNO_RESERVATION;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;

use crate::response::{allow, deny};

/// The operator's user as Kubernetes names its service account in `config/operator/`.
pub const DEFAULT_OPERATOR_USER: &str = "system:serviceaccount:aipam-system:aipam-operator";

/// The guard's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodGuard {
    /// The only user allowed to change the reservation annotation of an existing Pod
    /// (`userInfo.username` of the request).
    pub operator_user: String,
}

impl Default for PodGuard {
    fn default() -> Self {
        PodGuard {
            operator_user: DEFAULT_OPERATOR_USER.to_string(),
        }
    }
}

/// What a request does to the reservation annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing (absent before and after, or the same value).
    None,
    /// Absent before, present after.
    Added,
    /// Present before and after, with another value.
    Modified,
    /// Present before, absent after.
    Removed,
}

impl Change {
    fn verb(self) -> &'static str {
        match self {
            Change::None => "keep",
            Change::Added => "add",
            Change::Modified => "change",
            Change::Removed => "remove",
        }
    }
}

fn annotation(o: Option<&DynamicObject>) -> Option<&str> {
    o.and_then(|o| o.metadata.annotations.as_ref())
        .and_then(|a| a.get(ANNO_RESERVATION))
        .map(String::as_str)
}

/// The change of the reservation annotation from `old` to `new`.
pub fn change(old: Option<&DynamicObject>, new: Option<&DynamicObject>) -> Change {
    match (annotation(old), annotation(new)) {
        (None, None) => Change::None,
        (None, Some(_)) => Change::Added,
        (Some(_), None) => Change::Removed,
        (Some(a), Some(b)) if a == b => Change::None,
        (Some(_), Some(_)) => Change::Modified,
    }
}

impl PodGuard {
    /// Judges one Pod UPDATE (other operations are allowed: the route accepts UPDATE only).
    pub fn review(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if req.operation != Operation::Update {
            return allow(req);
        }
        let what = change(req.old_object.as_ref(), req.object.as_ref());
        if what == Change::None {
            return allow(req);
        }
        let user = req.user_info.username.as_deref().unwrap_or("");
        if user == self.operator_user {
            return allow(req);
        }
        let pod = match req.namespace.as_deref() {
            Some(ns) => format!("{ns}/{}", req.name),
            None => req.name.clone(),
        };
        deny(
            req,
            403,
            &format!(
                "user \"{user}\" may not {} the annotation {ANNO_RESERVATION} of Pod {pod}: it records the addresses aipam reserved for the Pod when it was created, and only the aipam operator ({}) changes it afterwards; to get other addresses, delete the Pod and create it again",
                what.verb(),
                self.operator_user
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testkit::{request_of, review_body};
    use serde_json::{json, Value};

    fn pod(reservation: Option<&str>, labels: Value) -> Value {
        let mut p = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-1", "namespace": "team-a", "labels": labels,
                "annotations": {"other": "x"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        if let Some(r) = reservation {
            p["metadata"]["annotations"][ANNO_RESERVATION] = json!(r);
        }
        p
    }

    fn update(user: &str, old: &Value, new: &Value) -> AdmissionRequest<DynamicObject> {
        let mut body = review_body(
            "u1",
            ("", "v1", "pods", "Pod"),
            "UPDATE",
            Some("team-a"),
            Some(new),
            Some(old),
            false,
        );
        body["request"]["userInfo"] = json!({"username": user, "groups": ["system:authenticated"]});
        request_of(&body).unwrap()
    }

    const MINE: &str = r#"{"id":"r-mine","interfaces":[]}"#;
    const THEIRS: &str = r#"{"id":"r-theirs","interfaces":[]}"#;

    #[test]
    fn a_user_cannot_add_change_or_remove_the_reservation() {
        let guard = PodGuard::default();
        for (old, new, verb) in [
            (None, Some(THEIRS), "add"),
            (Some(MINE), Some(THEIRS), "change"),
            (Some(MINE), None, "remove"),
        ] {
            let r = guard.review(&update("alice", &pod(old, json!({})), &pod(new, json!({}))));
            assert!(!r.allowed, "{verb} must be refused");
            assert_eq!(r.result.code, 403);
            assert_eq!(
                r.result.message,
                format!("user \"alice\" may not {verb} the annotation aipam.io/reservation of Pod team-a/web-1: it records the addresses aipam reserved for the Pod when it was created, and only the aipam operator (system:serviceaccount:aipam-system:aipam-operator) changes it afterwards; to get other addresses, delete the Pod and create it again")
            );
        }
    }

    #[test]
    fn cluster_admins_and_the_webhook_itself_are_refused_too() {
        let guard = PodGuard::default();
        for user in [
            "system:admin",
            "system:serviceaccount:aipam-system:aipam-webhook",
            "system:serviceaccount:team-a:aipam-operator",
            "",
        ] {
            let r = guard.review(&update(
                user,
                &pod(Some(MINE), json!({})),
                &pod(Some(THEIRS), json!({})),
            ));
            assert!(!r.allowed, "{user:?}");
        }
    }

    #[test]
    fn the_operator_may_rewrite_the_reservation() {
        let guard = PodGuard::default();
        let r = guard.review(&update(
            DEFAULT_OPERATOR_USER,
            &pod(Some(THEIRS), json!({})),
            &pod(Some(MINE), json!({})),
        ));
        assert!(r.allowed);
        // Another operator account when configured so, and then only that one.
        let guard = PodGuard {
            operator_user: "system:serviceaccount:ipam:op".to_string(),
        };
        let (old, new) = (pod(Some(THEIRS), json!({})), pod(Some(MINE), json!({})));
        assert!(
            guard
                .review(&update("system:serviceaccount:ipam:op", &old, &new))
                .allowed
        );
        assert!(
            !guard
                .review(&update(DEFAULT_OPERATOR_USER, &old, &new))
                .allowed
        );
    }

    #[test]
    fn other_changes_of_a_pod_are_allowed_for_everyone() {
        let guard = PodGuard::default();
        for (old, new) in [
            (
                pod(Some(MINE), json!({})),
                pod(Some(MINE), json!({"tier": "web"})),
            ),
            (pod(None, json!({})), pod(None, json!({"tier": "web"}))),
        ] {
            let r = guard.review(&update("alice", &old, &new));
            assert!(r.allowed, "{}", r.result.message);
        }
    }

    #[test]
    fn changes_are_classified() {
        let a = |r: Option<&str>| -> DynamicObject {
            serde_json::from_value(pod(r, json!({}))).unwrap()
        };
        assert_eq!(change(Some(&a(None)), Some(&a(None))), Change::None);
        assert_eq!(
            change(Some(&a(Some(MINE))), Some(&a(Some(MINE)))),
            Change::None
        );
        assert_eq!(change(Some(&a(None)), Some(&a(Some(MINE)))), Change::Added);
        assert_eq!(
            change(Some(&a(Some(MINE))), Some(&a(Some(THEIRS)))),
            Change::Modified
        );
        assert_eq!(
            change(Some(&a(Some(MINE))), Some(&a(None))),
            Change::Removed
        );
        // An empty value is a value: setting it removes nothing silently.
        assert_eq!(
            change(Some(&a(Some(MINE))), Some(&a(Some("")))),
            Change::Modified
        );
    }
}
