#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Snapshots for the rules' tests, built with `mk_pod` / `mk_claim` / `mk_endpoint`.

use std::collections::BTreeMap;

use aipam_core::reservation::{Reservation, ReservedAddress, ReservedInterface, ANNO_RESERVATION};
use aipam_crds::endpoint::{PodIPAllocation, WorkloadEndpointStatus};
use aipam_crds::record::{claim_for, ClaimTarget};
use aipam_crds::{ClaimOwner, SpiderEndpoint, SpiderIPClaim};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::world::{PodView, Rules, World};

pub(crate) fn t(secs: i64) -> Timestamp {
    Timestamp::from_second(1_700_000_000 + secs).unwrap()
}

pub(crate) fn ra(pool: &str, ip: &str) -> ReservedAddress {
    ReservedAddress {
        pool: pool.to_string(),
        address: ip.parse().unwrap(),
    }
}

pub(crate) fn record(id: &str, v4: &[(&str, &str)]) -> Reservation {
    Reservation {
        id: id.to_string(),
        interfaces: vec![ReservedInterface {
            interface: "eth0".to_string(),
            clean_gateway: None,
            ipv4: v4.iter().map(|(p, a)| ra(p, a)).collect(),
            ipv6: vec![],
        }],
    }
}

/// A Pod builder.
pub(crate) struct PodB(pub(crate) Pod);

pub(crate) fn mk_pod(ns: &str, name: &str, uid: &str) -> PodB {
    PodB(Pod {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            uid: Some(uid.to_string()),
            ..ObjectMeta::default()
        },
        spec: Some(Default::default()),
        status: Some(Default::default()),
    })
}

impl PodB {
    pub(crate) fn reservation(mut self, r: &Reservation) -> Self {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(ANNO_RESERVATION.to_string(), r.to_annotation());
        self
    }
    pub(crate) fn node(mut self, n: &str) -> Self {
        self.0.spec.as_mut().unwrap().node_name = Some(n.to_string());
        self
    }
    pub(crate) fn phase(mut self, p: &str) -> Self {
        self.0.status.as_mut().unwrap().phase = Some(p.to_string());
        self
    }
    pub(crate) fn deleting(mut self, since: Timestamp, grace: i64) -> Self {
        self.0.metadata.deletion_timestamp = Some(Time(since));
        self.0
            .spec
            .as_mut()
            .unwrap()
            .termination_grace_period_seconds = Some(grace);
        self
    }
    pub(crate) fn owned_by(mut self, kind: &str, name: &str) -> Self {
        self.0.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "apps/v1".to_string(),
                kind: kind.to_string(),
                name: name.to_string(),
                uid: format!("{name}-uid"),
                controller: Some(true),
                block_owner_deletion: None,
            },
        ]);
        self
    }
    pub(crate) fn view(&self) -> PodView {
        PodView::from_pod(&self.0).unwrap()
    }
}

/// A claim builder.
pub(crate) struct ClaimB(pub(crate) SpiderIPClaim);

pub(crate) fn mk_claim(pool: &str, ip: &str, ns: &str, reservation: &str) -> ClaimB {
    let mut c = claim_for(
        &ra(pool, ip),
        &ClaimTarget {
            namespace: ns,
            pod_name: None,
            interface: "eth0",
            reservation,
            owner: None,
            provisional: false,
        },
    );
    c.metadata.creation_timestamp = Some(Time(t(0)));
    ClaimB(c)
}

impl ClaimB {
    /// The Pod's name, as the webhook records it when known at admission.
    pub(crate) fn pod(mut self, name: &str) -> Self {
        self.0.spec.pod_name = Some(name.to_string());
        self
    }
    pub(crate) fn owner(mut self, kind: &str, name: &str) -> Self {
        self.0.spec.owner = Some(ClaimOwner {
            kind: kind.to_string(),
            name: name.to_string(),
            uid: format!("{name}-uid"),
        });
        self
    }
    pub(crate) fn provisional(mut self) -> Self {
        self.0.spec.provisional = true;
        self
    }
}

pub(crate) fn rules() -> Rules {
    Rules {
        grace: SignedDuration::from_secs(120),
        stateful_set: true,
        ..Rules::default()
    }
}

pub(crate) fn world(pods: &[&PodB]) -> World {
    World::new(pods.iter().map(|p| p.view()).collect())
}

pub(crate) fn mk_endpoint(ns: &str, name: &str, uid: &str, created: Timestamp) -> SpiderEndpoint {
    SpiderEndpoint {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(name.to_string()),
            creation_timestamp: Some(Time(created)),
            ..ObjectMeta::default()
        },
        spec: Default::default(),
        status: Some(WorkloadEndpointStatus {
            current: PodIPAllocation {
                uid: uid.to_string(),
                node: String::new(),
                ips: vec![],
            },
            owner_controller_type: "Pod".to_string(),
            owner_controller_name: name.to_string(),
        }),
    }
}
