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
//!
//! A real API server has two more ways to write a Pod's annotations, both found on it: an
//! UPDATE of `pods/status` keeps metadata changes (the status strategy resets only the spec and
//! owner references), and a CREATE of `pods/binding` copies the Binding's annotations onto the
//! Pod. The guard judges both: the first like any UPDATE, the second by refusing a Binding
//! that carries the annotation at all (nothing of ours binds Pods; the scheduler's Bindings
//! carry no annotations).

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

/// Whether `req` is one of the subresource writes the guard judges besides a Pod UPDATE: an
/// UPDATE of `pods/status`, or a CREATE of `pods/binding` (a Binding).
pub fn guarded_subresource(req: &AdmissionRequest<DynamicObject>) -> bool {
    if !req.kind.group.is_empty() || req.resource.resource != "pods" {
        return false;
    }
    match req.sub_resource.as_deref() {
        Some("status") => req.kind.kind == "Pod" && req.operation == Operation::Update,
        Some("binding") => req.kind.kind == "Binding" && req.operation == Operation::Create,
        _ => false,
    }
}

impl PodGuard {
    /// Judges one Pod UPDATE (of the Pod or of `pods/status`), or one Binding; anything else is
    /// allowed (the route accepts nothing else).
    pub fn review(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        let binding =
            req.operation == Operation::Create && req.sub_resource.as_deref() == Some("binding");
        if req.operation != Operation::Update && !binding {
            return allow(req);
        }
        let what = if binding {
            // A Binding's annotations overwrite the Pod's; the Pod itself is not in the request.
            match annotation(req.object.as_ref()) {
                Some(_) => Change::Modified,
                None => Change::None,
            }
        } else {
            change(req.old_object.as_ref(), req.object.as_ref())
        };
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
        let how = if binding {
            " through a Binding (the API server copies a Binding's annotations onto the Pod)"
        } else if req.sub_resource.as_deref() == Some("status") {
            " through pods/status"
        } else {
            ""
        };
        deny(
            req,
            403,
            &format!(
                "user \"{user}\" may not {} the annotation {ANNO_RESERVATION} of Pod {pod}{how}: it records the addresses aipam reserved for the Pod when it was created, and only the aipam operator ({}) changes it afterwards; to get other addresses, delete the Pod and create it again",
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

    fn with_subresource(mut body: Value, sub: &str) -> AdmissionRequest<DynamicObject> {
        body["request"]["subResource"] = json!(sub);
        body["request"]["requestSubResource"] = json!(sub);
        body["request"]["userInfo"] =
            json!({"username": "alice", "groups": ["system:authenticated"]});
        request_of(&body).unwrap()
    }

    #[test]
    fn a_status_update_cannot_change_the_reservation_either() {
        // Found on the real API server: pods/status keeps metadata changes.
        let guard = PodGuard::default();
        let (old, new) = (pod(Some(MINE), json!({})), pod(Some(THEIRS), json!({})));
        let body = review_body(
            "u1",
            ("", "v1", "pods", "Pod"),
            "UPDATE",
            Some("team-a"),
            Some(&new),
            Some(&old),
            false,
        );
        let req = with_subresource(body, "status");
        assert!(guarded_subresource(&req));
        let r = guard.review(&req);
        assert!(!r.allowed);
        assert!(
            r.result
                .message
                .contains("of Pod team-a/web-1 through pods/status:"),
            "{}",
            r.result.message
        );
        // A status update that leaves the record alone is the kubelet's business.
        let same = review_body(
            "u2",
            ("", "v1", "pods", "Pod"),
            "UPDATE",
            Some("team-a"),
            Some(&old),
            Some(&old),
            false,
        );
        assert!(guard.review(&with_subresource(same, "status")).allowed);
    }

    #[test]
    fn a_binding_carrying_the_annotation_is_refused_and_a_plain_one_allowed() {
        // Found on the real API server: a Binding's annotations are copied onto the Pod.
        let guard = PodGuard::default();
        let binding = |annotations: Value| {
            json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": "web-1", "namespace": "team-a", "annotations": annotations},
                "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}})
        };
        let review = |b: &Value| {
            let body = review_body(
                "u3",
                ("", "v1", "pods", "Binding"),
                "CREATE",
                Some("team-a"),
                Some(b),
                None,
                false,
            );
            with_subresource(body, "binding")
        };
        let forged = review(&binding(json!({ANNO_RESERVATION: THEIRS})));
        assert!(guarded_subresource(&forged));
        let r = guard.review(&forged);
        assert!(!r.allowed);
        assert_eq!(r.result.code, 403);
        assert!(
            r.result.message.contains("through a Binding"),
            "{}",
            r.result.message
        );
        assert!(
            guard
                .review(&review(&binding(json!({"other": "x"}))))
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
