//! `/validate-pod`: once the API server has set the Pod's final name and UID, write the Pod's
//! SpiderEndpoint, which the CNI plugin reads. Never refuses.

use aipam_core::annotations::{parse_routes, ANNO_ROUTES};
use aipam_core::model::Owner;
use aipam_core::reservation::{Reservation, ANNO_RESERVATION, LABEL_RESERVATION};
use aipam_crds::{PodIPAllocation, SpiderEndpoint, WorkloadEndpointStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use serde_json::json;
use tracing::warn;

use super::{known_node, pod_from, pod_name, PodHooks};
use crate::effects::{Created, Effects};
use crate::response::allow;

impl<E: Effects> PodHooks<E> {
    /// `/validate-pod`: writes the Pod's SpiderEndpoint under its final name and UID. Always
    /// allows.
    pub async fn bind(&self, req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
        if req.operation == Operation::Create && !req.dry_run {
            if let Err(e) = self.bind_inner(req).await {
                warn!(namespace = ?req.namespace, name = %req.name, error = %e,
                    "cannot write the endpoint at admission; the operator writes it later");
            }
        }
        allow(req)
    }

    async fn bind_inner(&self, req: &AdmissionRequest<DynamicObject>) -> Result<(), String> {
        let (pod, _) = pod_from(req).map_err(|e| e.message)?;
        let Some(value) = pod
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(ANNO_RESERVATION))
        else {
            return Ok(());
        };
        let record = Reservation::parse(value).map_err(|e| e.to_string())?;
        let namespace = req
            .namespace
            .clone()
            .or_else(|| pod.metadata.namespace.clone())
            .unwrap_or_default();
        let name = pod_name(&pod)
            .or_else(|| Some(req.name.clone()).filter(|n| !n.is_empty()))
            .ok_or("the Pod has no name yet")?;
        let uid = pod
            .metadata
            .uid
            .clone()
            .filter(|u| !u.is_empty())
            .ok_or("the Pod has no UID yet")?;
        let owner = self.resolve_owner(&namespace, &pod.metadata).await;
        let endpoint = self.endpoint_for(&pod, &namespace, &name, &uid, &record, owner.as_ref());
        if self
            .effects
            .create_endpoint(&endpoint)
            .await
            .map_err(|e| e.to_string())?
            == Created::Created
        {
            return Ok(());
        }
        // An endpoint of that name exists. Replaced when its Pod is gone (a StatefulSet Pod made
        // again under its name, an endpoint that outlived its Pod); left alone while a Pod of
        // that name lives: this create then fails with AlreadyExists after admission (a name
        // taken, or a generated name that collided and that the API server retries under
        // another), and the endpoint is that live Pod's (found on the real API server).
        if self
            .effects
            .pod_exists(&namespace, &name)
            .await
            .map_err(|e| e.to_string())?
        {
            return Err(format!(
                "the SpiderEndpoint {namespace}/{name} belongs to the live Pod of that name: not replaced (this create will fail with AlreadyExists)"
            ));
        }
        self.effects
            .replace_endpoint(&endpoint)
            .await
            .map_err(|e| e.to_string())
    }

    fn endpoint_for(
        &self,
        pod: &Pod,
        namespace: &str,
        name: &str,
        uid: &str,
        record: &Reservation,
        owner: Option<&Owner>,
    ) -> SpiderEndpoint {
        let ips = if record.is_provisional() {
            Vec::new()
        } else {
            let routes = pod
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNO_ROUTES))
                .and_then(|v| parse_routes(v).ok())
                .unwrap_or_default();
            match record.details(&self.cache.snapshot().pools, &routes) {
                // The operator builds the same entries; one builder keeps them equal.
                Ok(details) => aipam_crds::record::endpoint_ips(&details),
                Err(e) => {
                    warn!(namespace, pod = name, error = %e, "cannot describe the reservation");
                    Vec::new()
                }
            }
        };
        let status = WorkloadEndpointStatus {
            current: PodIPAllocation {
                uid: uid.to_string(),
                node: known_node(pod).unwrap_or_default(),
                ips,
            },
            owner_controller_type: owner.map_or_else(|| "Pod".to_string(), |o| o.kind.clone()),
            owner_controller_name: owner.map_or_else(|| name.to_string(), |o| o.name.clone()),
        };
        let value = json!({
            "apiVersion": aipam_crds::API_VERSION,
            "kind": "SpiderEndpoint",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {LABEL_RESERVATION: record.id},
                // No ownerReference to the Pod here: the Pod is not stored yet, and the
                // garbage collector deletes at once a dependent whose owner does not exist.
                // The operator adds it once the Pod exists.
            },
            "status": status,
        });
        // The JSON above has the exact shape of the type.
        serde_json::from_value(value).unwrap_or_else(|_| {
            let mut ep = SpiderEndpoint::new(name, aipam_crds::SpiderEndpointFields {});
            ep.metadata.namespace = Some(namespace.to_string());
            ep
        })
    }
}
