#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Claim verdicts, on snapshots built with `mk_pod` / `mk_claim`.

use crate::testkit::{mk_claim, mk_pod, record, rules, t, world};
use crate::world::{Rules, SetState};
use k8s_openapi::jiff::SignedDuration;

use super::*;

fn delete(why: Why, pod_absent: bool) -> ClaimVerdict {
    ClaimVerdict::Delete { why, pod_absent }
}

#[test]
fn a_reservation_whose_pod_never_appeared_waits_for_the_grace_period() {
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").0;
    let w = world(&[]);
    assert_eq!(
        judge_claim(&c, &w, t(30), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(120), &rules()),
        delete(Why::NeverAppeared, true)
    );
}

#[test]
fn a_claim_whose_pod_exists_is_kept_whatever_its_age() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let pod = mk_pod("ns", "web-abc", "u1").reservation(&r);
    // Found by the reservation id the Pod carries (a generateName Pod: no name on the claim).
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").0;
    assert_eq!(
        judge_claim(&c, &world(&[&pod]), t(9999), &rules()),
        ClaimVerdict::Keep
    );
    // A Pod of another namespace carrying the same id does not hold it.
    let elsewhere = mk_pod("other", "web-abc", "u9").reservation(&r);
    assert_eq!(
        judge_claim(&c, &world(&[&elsewhere]), t(9999), &rules()),
        delete(Why::NeverAppeared, true)
    );
}

#[test]
fn a_young_claim_whose_pod_is_absent_is_never_deleted_unless_the_pod_was_seen_gone() {
    // Admitted, not stored yet (or the cache has not seen it): absent Pod, young claim.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("web-abc").0;
    let w = world(&[]);
    assert_eq!(
        judge_claim(&c, &w, t(5), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(121), &rules()),
        delete(Why::NeverAppeared, true)
    );
    // An endpoint names the reservation: its Pod existed, so it is gone, not never seen.
    let mut w = world(&[]);
    w.endpoint_reservations.insert("r-1".to_string());
    assert_eq!(
        judge_claim(&c, &w, t(5), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    assert_eq!(
        judge_claim(&c, &w, t(121), &rules()),
        delete(Why::PodGone, true)
    );
    // Seen deleted (by reservation id, whatever the name): released at once.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-9").0;
    let mut w = world(&[]);
    w.gone_reservations
        .insert("r-9".to_string(), ("web-x".to_string(), "u9".to_string()));
    assert_eq!(
        judge_claim(&c, &w, t(1), &rules()),
        delete(Why::PodGone, true)
    );
}

#[test]
fn finished_pods_release_their_addresses() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("job-x").0;
    for phase in ["Succeeded", "Failed"] {
        let pod = mk_pod("ns", "job-x", "u1").reservation(&r).phase(phase);
        assert_eq!(
            judge_claim(&c, &world(&[&pod]), t(1), &rules()),
            delete(Why::PodTerminal, false)
        );
    }
    let pod = mk_pod("ns", "job-x", "u1").reservation(&r).phase("Running");
    assert_eq!(
        judge_claim(&c, &world(&[&pod]), t(1), &rules()),
        ClaimVerdict::Keep
    );
}

#[test]
fn stateless_pods_stuck_terminating_on_a_dead_node_are_released_after_their_grace() {
    let r = record("r-1", &[("p", "10.0.0.5")]);
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1").pod("web-1").0;
    let pod = mk_pod("ns", "web-1", "u1")
        .reservation(&r)
        .node("n1")
        .deleting(t(100), 30);
    let mut w = world(&[&pod]);
    w.nodes_ready.insert("n1".to_string(), false);
    assert_eq!(judge_claim(&c, &w, t(129), &rules()), ClaimVerdict::Keep);
    assert_eq!(
        judge_claim(&c, &w, t(130), &rules()),
        delete(Why::StuckTerminating, false)
    );
    // Node Ready: released too, as Spiderpool does by default
    // (SPIDERPOOL_GC_STATELESS_TERMINATING_POD_ON_READY_NODE_ENABLED)...
    w.nodes_ready.insert("n1".to_string(), true);
    assert_eq!(
        judge_claim(&c, &w, t(130), &rules()),
        delete(Why::StuckTerminating, false)
    );
    // ... unless that switch is off.
    let ready_off = Rules {
        gc_terminating_on_ready_node: false,
        ..rules()
    };
    assert_eq!(judge_claim(&c, &w, t(500), &ready_off), ClaimVerdict::Keep);
    w.nodes_ready.insert("n1".to_string(), false);
    let not_ready_off = Rules {
        gc_terminating_on_not_ready_node: false,
        ..rules()
    };
    assert_eq!(
        judge_claim(&c, &w, t(500), &not_ready_off),
        ClaimVerdict::Keep
    );
    assert_eq!(
        judge_claim(&c, &w, t(500), &ready_off),
        delete(Why::StuckTerminating, false)
    );
    // The additional grace delay is waited on top.
    let delayed = Rules {
        gc_additional_grace: SignedDuration::from_secs(20),
        ..rules()
    };
    assert_eq!(judge_claim(&c, &w, t(149), &delayed), ClaimVerdict::Keep);
    assert_eq!(
        judge_claim(&c, &w, t(150), &delayed),
        delete(Why::StuckTerminating, false)
    );
    // Node deleted: counts as not Ready.
    w.nodes_ready.clear();
    assert_eq!(
        judge_claim(&c, &w, t(500), &rules()),
        delete(Why::StuckTerminating, false)
    );
    // A StatefulSet Pod is never released while it exists.
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1")
        .pod("web-1")
        .owner("StatefulSet", "web")
        .0;
    assert_eq!(judge_claim(&c, &w, t(500), &rules()), ClaimVerdict::Keep);
}

/// Found by e2e/tests/chaos.rs: a StatefulSet Pod made again while its kept address's pool
/// was full was admitted with another address; the old claim was then kept "for the next Pod"
/// as long as the set lived, so the ordinal held two addresses.
#[test]
fn a_stateful_set_address_is_released_when_the_ordinals_new_pod_holds_another() {
    let c = mk_claim("zb", "10.91.0.21", "ns", "r-old")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    let set = SetState {
        replicas: 2,
        deleting: false,
    };
    let next = mk_pod("ns", "db-1", "u-new")
        .reservation(&record("r-new", &[("za", "10.90.0.13")]))
        .owned_by("StatefulSet", "db");
    let mut w = world(&[&next]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    assert_eq!(
        judge_claim(&c, &w, t(1), &rules()),
        delete(Why::PodGone, true)
    );
    // The new Pod took this very claim over: kept.
    let took = mk_pod("ns", "db-1", "u-new")
        .reservation(&record("r-new", &[("zb", "10.91.0.21")]))
        .owned_by("StatefulSet", "db");
    let mut w = world(&[&took]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    let taken = mk_claim("zb", "10.91.0.21", "ns", "r-new")
        .pod("db-1")
        .owner("StatefulSet", "db")
        .0;
    assert_eq!(judge_claim(&taken, &w, t(1), &rules()), ClaimVerdict::Keep);
    // No Pod of that name (yet): kept for it, however old.
    let mut w = world(&[]);
    w.stateful_sets.insert(("ns".into(), "db".into()), set);
    assert_eq!(judge_claim(&c, &w, t(9999), &rules()), ClaimVerdict::Keep);
}

#[test]
fn stateful_set_addresses_are_kept_for_the_next_pod_until_the_set_scales_below_the_ordinal() {
    let c = mk_claim("p", "10.0.0.5", "ns", "r-1")
        .pod("db-2")
        .owner("StatefulSet", "db")
        .0;
    let mut w = world(&[]);
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 3,
            deleting: false,
        },
    );
    assert_eq!(judge_claim(&c, &w, t(1), &rules()), ClaimVerdict::Keep);
    assert_eq!(judge_claim(&c, &w, t(9999), &rules()), ClaimVerdict::Keep);
    // Scaled to 2: ordinal 2 is no longer wanted.
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 2,
            deleting: false,
        },
    );
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetScaledDown, true)
    );
    // ... but a young reservation not known gone waits for the grace period...
    assert_eq!(
        judge_claim(&c, &w, t(10), &rules()),
        ClaimVerdict::KeepUntil(t(120))
    );
    // ... unless its Pod was seen deleted.
    let mut seen = w.clone();
    seen.gone_reservations
        .insert("r-1".into(), ("db-2".into(), "u1".into()));
    assert_eq!(
        judge_claim(&c, &seen, t(10), &rules()),
        delete(Why::StatefulSetScaledDown, true)
    );
    // Set deleted, or being deleted.
    w.stateful_sets.insert(
        ("ns".into(), "db".into()),
        SetState {
            replicas: 3,
            deleting: true,
        },
    );
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetGone, true)
    );
    w.stateful_sets.clear();
    assert_eq!(
        judge_claim(&c, &w, t(9999), &rules()),
        delete(Why::StatefulSetGone, true)
    );
    // The rule switched off (enableStatefulSet: false): an ordinary Pod.
    let off = Rules {
        stateful_set: false,
        ..rules()
    };
    let mut w = world(&[]);
    w.endpoint_reservations.insert("r-1".into());
    assert_eq!(
        judge_claim(&c, &w, t(9999), &off),
        delete(Why::PodGone, true)
    );
    // The next Pod of the name took it under a new reservation: kept.
    let r = record("r-2", &[("p", "10.0.0.5")]);
    let next = mk_pod("ns", "db-2", "u2").reservation(&r);
    let retaken = mk_claim("p", "10.0.0.5", "ns", "r-2")
        .pod("db-2")
        .owner("StatefulSet", "db")
        .0;
    assert_eq!(
        judge_claim(&retaken, &world(&[&next]), t(9999), &rules()),
        ClaimVerdict::Keep
    );
    assert_eq!(ordinal("db", "db-12"), Some(12));
    assert_eq!(ordinal("db", "dbx-1"), None);
    assert_eq!(ordinal("db", "db-"), None);
}

#[test]
fn zone_alternatives_the_pod_no_longer_lists_are_released() {
    let kept = record("r-1", &[("p7", "10.7.0.5")]);
    let pod = mk_pod("ns", "web-1", "u1").reservation(&kept).node("n7");
    let alt = mk_claim("p6", "10.6.0.5", "ns", "r-1")
        .pod("web-1")
        .provisional()
        .0;
    assert_eq!(
        judge_claim(&alt, &world(&[&pod]), t(1), &rules()),
        delete(Why::ZoneAlternative, false)
    );
    let mine = mk_claim("p7", "10.7.0.5", "ns", "r-1").pod("web-1").0;
    assert_eq!(
        judge_claim(&mine, &world(&[&pod]), t(1), &rules()),
        ClaimVerdict::Keep
    );
}
