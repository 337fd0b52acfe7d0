//! Watches that feed the cache (kube-runtime watchers; each relist replaces its store whole,
//! as a reflector's store does, and marks it synced for `/readyz`).

use std::fmt::Debug;

use aipam_core::config::CONFIGMAP_NAME;
use aipam_crds::{SpiderIPClaim, SpiderIPPool, SpiderReservedIP, SpiderSubnet};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::Api;
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tracing::warn;

use crate::cache::{Cache, Object, StoreKind};

fn spawn<K>(
    api: Api<K>,
    config: watcher::Config,
    cache: Cache,
    kind: StoreKind,
    wrap: fn(K) -> Object,
) -> JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    tokio::spawn(async move {
        let mut buffer: Vec<Object> = Vec::new();
        // managedFields are never read here and are often the largest part of an object.
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|o: &mut K| o.meta_mut().managed_fields = None);
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Init) => buffer.clear(),
                Ok(Event::InitApply(o)) => buffer.push(wrap(o)),
                Ok(Event::InitDone) => cache.replace(kind, std::mem::take(&mut buffer)),
                Ok(Event::Apply(o)) => cache.apply(wrap(o)),
                Ok(Event::Delete(o)) => cache.delete(&wrap(o)),
                Err(e) => warn!(store = kind.name(), error = %e, "watch failed; retrying"),
            }
        }
    })
}

/// Starts one watch per store. `config_namespace` holds the `spiderpool-conf` ConfigMap.
pub fn spawn_watches(
    client: kube::Client,
    cache: &Cache,
    config_namespace: &str,
) -> Vec<JoinHandle<()>> {
    let all = watcher::Config::default();
    vec![
        spawn(
            Api::<SpiderIPPool>::all(client.clone()),
            all.clone(),
            cache.clone(),
            StoreKind::Pools,
            |p| Object::Pool(Box::new(p)),
        ),
        spawn(
            Api::<SpiderIPClaim>::all(client.clone()),
            all.clone(),
            cache.clone(),
            StoreKind::Claims,
            Object::Claim,
        ),
        spawn(
            Api::<SpiderReservedIP>::all(client.clone()),
            all.clone(),
            cache.clone(),
            StoreKind::ReservedIps,
            Object::ReservedIp,
        ),
        spawn(
            Api::<SpiderSubnet>::all(client.clone()),
            all.clone(),
            cache.clone(),
            StoreKind::Subnets,
            Object::Subnet,
        ),
        spawn(
            Api::<Namespace>::all(client.clone()),
            all.clone(),
            cache.clone(),
            StoreKind::Namespaces,
            Object::Namespace,
        ),
        spawn(
            Api::<Node>::all(client.clone()),
            all,
            cache.clone(),
            StoreKind::Nodes,
            |n| Object::Node(Box::new(n)),
        ),
        spawn(
            Api::<ConfigMap>::namespaced(client, config_namespace),
            watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}")),
            cache.clone(),
            StoreKind::Config,
            Object::Config,
        ),
    ]
}
