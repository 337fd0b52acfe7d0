//! The operator's deletes: only of the object a decision was made on. Every release and
//! collection goes through [`delete_if_unchanged`], so that a claim, endpoint or pool that was
//! taken anew under the same name meanwhile (another UID), or changed since it was judged
//! (another resourceVersion), stays.

use std::fmt::Debug;

use kube::api::{Api, DeleteParams, Preconditions};
use kube::Resource;
use serde::de::DeserializeOwned;

use crate::error::{is_conflict, is_not_found, Error};

/// What a conditional delete did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deleted {
    /// Deleted (or its deletion started, where finalizers hold it).
    Deleted,
    /// Already gone (404).
    AlreadyGone,
    /// Its precondition failed (409): another object holds the name now, or it changed since.
    Changed,
}

/// Deletes `name` only while it is still the object of `uid` and `resource_version` (each
/// checked by the API server when given; neither given: whatever holds the name). A 404 is
/// [`Deleted::AlreadyGone`] and a 409 [`Deleted::Changed`], not errors: either way the object
/// judged no longer stands.
pub async fn delete_if_unchanged<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<&str>,
    resource_version: Option<&str>,
) -> Result<Deleted, Error>
where
    K: Clone + DeserializeOwned + Debug,
{
    let preconditions = (uid.is_some() || resource_version.is_some()).then(|| Preconditions {
        uid: uid.map(str::to_string),
        resource_version: resource_version.map(str::to_string),
    });
    let dp = DeleteParams {
        preconditions,
        ..DeleteParams::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(Deleted::Deleted),
        Err(e) if is_not_found(&e) => Ok(Deleted::AlreadyGone),
        Err(e) if is_conflict(&e) => Ok(Deleted::Changed),
        Err(e) => Err(e.into()),
    }
}

/// [`delete_if_unchanged`] for an object as it was judged: its name, under its UID and
/// resourceVersion.
pub async fn delete_as_judged<K>(api: &Api<K>, judged: &K) -> Result<Deleted, Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let meta = judged.meta();
    delete_if_unchanged(
        api,
        meta.name.as_deref().unwrap_or_default(),
        meta.uid.as_deref(),
        meta.resource_version.as_deref(),
    )
    .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aipam_apiserver::{ApiServer, ServerOptions};
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_delete_goes_only_to_the_object_judged() {
        let server = ApiServer::start(ServerOptions::default()).await.unwrap();
        let make = || async {
            server
                .apply_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "c", "namespace": "default"}, "data": {"k": "v"}}))
                .await
                .unwrap()
        };
        let first = make().await;
        let uid = first["metadata"]["uid"].as_str().unwrap().to_string();
        let rv = first["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string();
        let api: Api<ConfigMap> = Api::namespaced(server.in_process_client(), "default");
        // Another UID, or a resourceVersion it no longer has: it stays.
        assert_eq!(
            delete_if_unchanged(&api, "c", Some("other-uid"), None)
                .await
                .unwrap(),
            Deleted::Changed
        );
        assert_eq!(
            delete_if_unchanged(&api, "c", Some(&uid), Some("1"))
                .await
                .unwrap(),
            Deleted::Changed
        );
        assert!(api.get_opt("c").await.unwrap().is_some());
        // As judged: its name, UID and resourceVersion.
        let judged: ConfigMap = serde_json::from_value(first).unwrap();
        assert_eq!(
            delete_as_judged(&api, &judged).await.unwrap(),
            Deleted::Deleted
        );
        assert_eq!(
            delete_if_unchanged(&api, "c", Some(&uid), Some(&rv))
                .await
                .unwrap(),
            Deleted::AlreadyGone
        );
        // No precondition: whatever holds the name.
        make().await;
        assert_eq!(
            delete_if_unchanged(&api, "c", None, None).await.unwrap(),
            Deleted::Deleted
        );
        server.shutdown().await;
    }
}
