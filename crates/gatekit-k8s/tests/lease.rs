//! Membership Leases, leader election and the fleet view against the in-process API
//! server (`gatekit-k8s-fake`) with kube's real Client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatekit_k8s::fleet::FleetView;
use gatekit_k8s::lease::{
    ElectionSpec, FLEET_LABEL, GENERATION_LABEL, HASH_LABEL, LeaderElector, MANAGED_BY_LABEL,
    MemberSpec, Membership,
};
use gatekit_k8s_fake::FakeApiServer;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

const NS: &str = "gatekit";
const ELECTION: &str = "gatekit-status-writer";

/// Awaits `f` for at most 10 s.
async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn writes_at_least(m: &Membership, n: u64) {
    let mut w = m.writes();
    within("membership writes", w.wait_for(|c| *c >= n))
        .await
        .unwrap();
}

async fn becomes(rx: &watch::Receiver<bool>, want: bool) {
    let mut rx = rx.clone();
    within("leadership change", rx.wait_for(|l| *l == want))
        .await
        .unwrap();
}

fn lease(fake: &FakeApiServer, name: &str) -> Option<Lease> {
    fake.get::<Lease>(Some(NS), name)
}

fn spec_of(l: &Lease) -> &LeaseSpec {
    l.spec.as_ref().unwrap()
}

fn labels(l: &Lease) -> &BTreeMap<String, String> {
    l.metadata.labels.as_ref().unwrap()
}

fn renew_time(l: &Lease) -> Timestamp {
    spec_of(l).renew_time.as_ref().unwrap().0
}

fn member(pod: &str) -> MemberSpec {
    MemberSpec::new(NS, pod, "edge")
        .pod_uid(format!("uid-{pod}"))
        .lease_duration(Duration::from_secs(10))
        .renew_interval(Duration::from_millis(50))
        .config(1, "sha256:abc")
}

fn election(identity: &str) -> ElectionSpec {
    ElectionSpec::new(NS, ELECTION, identity)
        .lease_duration(Duration::from_secs(30))
        .renew_interval(Duration::from_millis(50))
}

/// A Lease held by someone else, renewed `ago` before now.
fn foreign_lease(name: &str, holder: &str, ago: i64, seconds: i32) -> Lease {
    let renewed = Timestamp::now()
        .checked_sub(SignedDuration::from_secs(ago))
        .unwrap();
    Lease {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(NS.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.to_owned()),
            lease_duration_seconds: Some(seconds),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(4),
            ..LeaseSpec::default()
        }),
    }
}

/// Records whether the elector ever reported leading.
fn ever_led(e: &LeaderElector) -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let mut rx = e.leader();
    let f = flag.clone();
    tokio::spawn(async move {
        loop {
            if *rx.borrow_and_update() {
                f.store(true, Ordering::SeqCst);
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    });
    flag
}

fn lease_puts(fake: &FakeApiServer, name: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == http::Method::PUT && r.path.ends_with(&format!("/leases/{name}")))
        .count()
}

// === Membership ===

#[tokio::test]
async fn membership_lease_is_created_with_owner_and_labels_then_renewed() {
    let fake = FakeApiServer::start().await;
    let m = Membership::start(fake.client(), member("gk-0"));
    writes_at_least(&m, 1).await;

    let l = lease(&fake, "gk-0").expect("Lease created");
    let s = spec_of(&l);
    assert_eq!(s.holder_identity.as_deref(), Some("gk-0"));
    assert_eq!(s.lease_duration_seconds, Some(10));
    let labels = labels(&l);
    assert_eq!(labels[MANAGED_BY_LABEL], "gatekit");
    assert_eq!(labels[FLEET_LABEL], "edge");
    assert_eq!(labels[GENERATION_LABEL], "1");
    assert_eq!(labels[HASH_LABEL], "sha256_abc", "label-value-safe");
    let owners = l
        .metadata
        .owner_references
        .as_ref()
        .expect("ownerReference");
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].api_version.as_str(),
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].uid.as_str()
        ),
        ("v1", "Pod", "gk-0", "uid-gk-0")
    );

    let first = renew_time(&l);
    let w = *m.writes().borrow();
    writes_at_least(&m, w + 2).await;
    let l = lease(&fake, "gk-0").unwrap();
    assert!(renew_time(&l) > first, "renewTime advances");
    assert_eq!(
        l.metadata.owner_references.as_ref().unwrap().len(),
        1,
        "one ownerReference after renewals"
    );
    m.vacate().await;
}

#[tokio::test]
async fn set_config_updates_labels_at_once_and_vacate_deletes() {
    let fake = FakeApiServer::start().await;
    // Renewals an hour apart: a label change can only come from set_config.
    let m = Membership::start(
        fake.client(),
        member("gk-1").renew_interval(Duration::from_secs(3600)),
    );
    writes_at_least(&m, 1).await;
    m.set_config(2, "sha256:def");
    writes_at_least(&m, 2).await;
    let l = lease(&fake, "gk-1").unwrap();
    assert_eq!(labels(&l)[GENERATION_LABEL], "2");
    assert_eq!(labels(&l)[HASH_LABEL], "sha256_def");

    // The same configuration again writes nothing.
    fake.clear_requests();
    m.set_config(2, "sha256:def");
    tokio::task::yield_now().await;
    assert_eq!(lease_puts(&fake, "gk-1"), 0);

    m.vacate().await;
    assert!(lease(&fake, "gk-1").is_none(), "vacate deletes the Lease");
}

#[tokio::test]
async fn membership_rereads_after_a_foreign_write_and_keeps_foreign_labels() {
    let fake = FakeApiServer::start().await;
    let m = Membership::start(
        fake.client(),
        member("gk-2").renew_interval(Duration::from_secs(3600)),
    );
    writes_at_least(&m, 1).await;
    // Someone else changes the Lease: the renew task's cached resourceVersion is stale.
    let mut l = lease(&fake, "gk-2").unwrap();
    l.metadata
        .labels
        .as_mut()
        .unwrap()
        .insert("team".into(), "edge-ops".into());
    fake.apply(&l);

    fake.clear_requests();
    m.set_config(3, "h3");
    writes_at_least(&m, 2).await;
    let l = lease(&fake, "gk-2").unwrap();
    assert_eq!(labels(&l)["team"], "edge-ops", "foreign label kept");
    assert_eq!(labels(&l)[GENERATION_LABEL], "3");
    assert!(
        lease_puts(&fake, "gk-2") >= 2,
        "a stale write (409) then a write after re-reading"
    );
    m.vacate().await;
}

#[tokio::test]
async fn membership_retries_after_server_errors() {
    let fake = FakeApiServer::start().await;
    fake.fail_next(None, "*/leases*", 3, 500, None);
    let m = Membership::start(fake.client(), member("gk-3"));
    writes_at_least(&m, 1).await;
    assert!(lease(&fake, "gk-3").is_some());
    m.vacate().await;
    assert!(lease(&fake, "gk-3").is_none());
}

// === Leader election ===

#[tokio::test]
async fn two_electors_exactly_one_leader_then_takeover_on_vacate() {
    let fake = FakeApiServer::start().await;
    let a = LeaderElector::start(fake.client(), election("a"));
    let b = LeaderElector::start(fake.client(), election("b"));
    let (la, lb) = (a.leader(), b.leader());
    within("a leader", async {
        while !(*la.borrow() || *lb.borrow()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Over many renew rounds, never two leaders and never none.
    for _ in 0..20 {
        assert!(
            *la.borrow() ^ *lb.borrow(),
            "exactly one leader: a={} b={}",
            *la.borrow(),
            *lb.borrow()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (leader, follower, leader_id, follower_id) = if a.is_leader() {
        (a, b, "a", "b")
    } else {
        (b, a, "b", "a")
    };
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(spec_of(&l).holder_identity.as_deref(), Some(leader_id));
    assert_eq!(spec_of(&l).lease_transitions, Some(0));

    let leader_rx = leader.leader();
    leader.vacate().await;
    assert!(
        !*leader_rx.borrow(),
        "the vacating replica stops leading first"
    );
    // The Lease lasts 30 s: a takeover within the timeout comes from the release.
    becomes(&follower.leader(), true).await;
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(spec_of(&l).holder_identity.as_deref(), Some(follower_id));
    assert_eq!(
        spec_of(&l).lease_transitions,
        Some(1),
        "takeover bumps transitions"
    );
    follower.vacate().await;
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(spec_of(&l).holder_identity, None, "released");
}

#[tokio::test]
async fn live_foreign_lease_is_followed_expired_one_is_taken_over() {
    let fake = FakeApiServer::start().await;
    fake.apply(&foreign_lease(ELECTION, "ghost", 0, 30));
    let e = LeaderElector::start(fake.client(), election("me"));
    // Several looks at the Lease, none of them a write.
    within("three reads", async {
        while fake
            .requests()
            .iter()
            .filter(|r| r.path.ends_with(&format!("/leases/{ELECTION}")))
            .count()
            < 3
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(!e.is_leader());
    assert_eq!(lease_puts(&fake, ELECTION), 0, "a follower does not write");

    // The holder stops renewing: its Lease expired a minute ago.
    fake.apply(&foreign_lease(ELECTION, "ghost", 90, 30));
    becomes(&e.leader(), true).await;
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(spec_of(&l).holder_identity.as_deref(), Some("me"));
    assert_eq!(spec_of(&l).lease_transitions, Some(5));
    e.vacate().await;
}

#[tokio::test]
async fn racing_for_an_expired_lease_one_wins_the_other_gets_409() {
    let fake = FakeApiServer::start().await;
    fake.apply(&foreign_lease(ELECTION, "ghost", 90, 30));
    // Slow Lease requests make both electors read the same resourceVersion before
    // either writes.
    fake.delay("*/leases/*", Duration::from_millis(100));
    fake.clear_requests();
    let a = LeaderElector::start(fake.client(), election("a"));
    let b = LeaderElector::start(fake.client(), election("b"));
    let (ever_a, ever_b) = (ever_led(&a), ever_led(&b));
    within("a leader", async {
        while !(a.is_leader() || b.is_leader()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // Let the loser re-read and settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(a.is_leader() ^ b.is_leader(), "exactly one leader");
    assert!(
        ever_a.load(Ordering::SeqCst) ^ ever_b.load(Ordering::SeqCst),
        "the loser never believed it led (a={}, b={})",
        ever_a.load(Ordering::SeqCst),
        ever_b.load(Ordering::SeqCst)
    );
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(
        spec_of(&l).lease_transitions,
        Some(5),
        "one takeover, not two"
    );
    assert!(
        lease_puts(&fake, ELECTION) >= 2,
        "both tried to take over; the stale write was refused"
    );
    fake.delay("*/leases/*", Duration::ZERO);
    a.vacate().await;
    b.vacate().await;
}

// === Fleet ===

#[tokio::test]
async fn fleet_lists_live_replicas_flags_drift_and_drops_expired() {
    let fake = FakeApiServer::start().await;
    let m1 = Membership::start(fake.client(), member("gk-a").config(7, "aaa"));
    let m2 = Membership::start(fake.client(), member("gk-b").config(7, "bbb"));
    writes_at_least(&m1, 1).await;
    writes_at_least(&m2, 1).await;
    // A crashed replica of the same fleet: its Lease expired, GC has not removed it yet.
    let mut dead = foreign_lease("gk-dead", "gk-dead", 120, 10);
    dead.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), "gatekit".to_owned()),
        (FLEET_LABEL.to_owned(), "edge".to_owned()),
        (GENERATION_LABEL.to_owned(), "7".to_owned()),
        (HASH_LABEL.to_owned(), "ccc".to_owned()),
    ]));
    fake.apply(&dead);
    // Another fleet's replica and the election Lease are not listed.
    let other = Membership::start(
        fake.client(),
        MemberSpec::new(NS, "other-0", "internal").renew_interval(Duration::from_secs(3600)),
    );
    writes_at_least(&other, 1).await;

    let view = FleetView::load(fake.client(), NS, "edge").await.unwrap();
    let names: Vec<_> = view.replicas().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["gk-a", "gk-b"]);
    assert_eq!(view.replicas()[0].generation(), Some(7));
    assert_eq!(view.replicas()[1].hash(), Some("bbb"));
    assert_eq!(view.drift().len(), 1);
    assert_eq!(view.drift()[0].generation(), 7);
    assert_eq!(view.drift()[0].hashes().len(), 2);
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["replicas"].as_array().unwrap().len(), 2);

    // Converged: no drift.
    m2.set_config(7, "aaa");
    writes_at_least(&m2, 2).await;
    let view = FleetView::load(fake.client(), NS, "edge").await.unwrap();
    assert!(view.drift().is_empty(), "{view}");

    // A replica that leaves is gone from the view at once.
    m1.vacate().await;
    let view = FleetView::load(fake.client(), NS, "edge").await.unwrap();
    let names: Vec<_> = view.replicas().iter().map(|r| r.name()).collect();
    assert_eq!(names, ["gk-b"]);
    m2.vacate().await;
    other.vacate().await;
}

#[tokio::test(start_paused = true)]
async fn crashed_leader_is_replaced_after_expiry_in_paused_time() {
    let fake = FakeApiServer::start().await;
    let spec = |id: &str| {
        ElectionSpec::new(NS, ELECTION, id)
            .lease_duration(Duration::from_secs(5))
            .renew_interval(Duration::from_millis(500))
    };
    let a = LeaderElector::start(fake.client(), spec("a"));
    becomes(&a.leader(), true).await;
    let b = LeaderElector::start(fake.client(), spec("b"));
    // b looks a few times and follows while a renews.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!b.is_leader());
    // a crashes: no release, its Lease runs out.
    drop(a);
    let crashed = tokio::time::Instant::now();
    becomes(&b.leader(), true).await;
    let waited = crashed.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited <= Duration::from_secs(6),
        "took over when the Lease (5 s, last renewed < 0.5 s before the crash) expired, \
         at the next look: after {waited:?}"
    );
    let l = lease(&fake, ELECTION).unwrap();
    assert_eq!(spec_of(&l).holder_identity.as_deref(), Some("b"));
    assert_eq!(spec_of(&l).lease_transitions, Some(1));
    b.vacate().await;
}

#[tokio::test(start_paused = true)]
async fn leader_that_cannot_renew_steps_down_before_expiry() {
    let fake = FakeApiServer::start().await;
    let e = LeaderElector::start(
        fake.client(),
        ElectionSpec::new(NS, ELECTION, "a")
            .lease_duration(Duration::from_secs(6))
            .renew_interval(Duration::from_millis(500)),
    );
    becomes(&e.leader(), true).await;
    // The API server fails every Lease request from now on.
    fake.fail_next(None, "*/leases/*", 10_000, 500, None);
    let failing = tokio::time::Instant::now();
    becomes(&e.leader(), false).await;
    let waited = failing.elapsed();
    // Default renew deadline: 2/3 of 6 s. Stepping down must happen before the Lease
    // could expire for the others (6 s after the last renewal).
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "stepped down after {waited:?}"
    );
    drop(e);
}

#[tokio::test]
async fn membership_lease_deleted_by_someone_else_is_recreated() {
    let fake = FakeApiServer::start().await;
    let m = Membership::start(
        fake.client(),
        member("gk-4").renew_interval(Duration::from_secs(3600)),
    );
    writes_at_least(&m, 1).await;
    assert!(fake.delete::<Lease>(Some(NS), "gk-4"));
    m.set_config(5, "h5");
    writes_at_least(&m, 2).await;
    let l = lease(&fake, "gk-4").expect("recreated");
    assert_eq!(labels(&l)[GENERATION_LABEL], "5");
    assert_eq!(spec_of(&l).holder_identity.as_deref(), Some("gk-4"));
    m.vacate().await;
}
