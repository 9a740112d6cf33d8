//! The fleet view: which gatekit replicas are alive and which configuration each serves.
//!
//! Every replica keeps a membership Lease ([`Membership`](crate::lease::Membership))
//! labelled with its fleet and the configuration generation and hash it serves.
//! [`FleetView::load`] lists the fleet's Leases by label (one LIST), drops the expired
//! ones (`renewTime + leaseDurationSeconds < now`: a crashed replica whose Lease was
//! not yet garbage-collected) and reports the rest, sorted by name.
//!
//! [`FleetView::drift`] groups replicas that report the *same* generation with
//! *different* hashes: they were handed the same configuration version but render it
//! differently (a bug, a different binary version, or a lost update). Replicas on
//! different generations are merely in the middle of a rollout and are not drift.
//!
//! The view serializes to JSON (admin `/fleet`, `gatekit fleet --json`) and displays as
//! a plain-text table.

pub use crate::error::FleetError;

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;

use crate::lease::{
    FLEET_LABEL, GENERATION_LABEL, HASH_LABEL, MANAGED_BY, MANAGED_BY_LABEL, label_value,
};

/// One live replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replica {
    name: String,
    generation: Option<u64>,
    hash: Option<String>,
    renew_time: Option<String>,
    age_seconds: Option<i64>,
    since_renew_seconds: Option<i64>,
}

impl Replica {
    /// The replica (pod) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configuration generation it serves, if its Lease says.
    pub fn generation(&self) -> Option<u64> {
        self.generation
    }

    /// The hash of the configuration it serves, if its Lease says.
    pub fn hash(&self) -> Option<&str> {
        self.hash.as_deref()
    }

    /// The last renewal, RFC 3339.
    pub fn renew_time(&self) -> Option<&str> {
        self.renew_time.as_deref()
    }

    /// Seconds since the replica registered (Lease `acquireTime`, else creation).
    pub fn age_seconds(&self) -> Option<i64> {
        self.age_seconds
    }
}

/// Replicas that serve the same generation with different hashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Drift {
    generation: u64,
    hashes: BTreeMap<String, Vec<String>>,
}

impl Drift {
    /// The generation they share.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Replica names by hash (at least two hashes).
    pub fn hashes(&self) -> &BTreeMap<String, Vec<String>> {
        &self.hashes
    }
}

/// The live replicas of a fleet and the configuration drift between them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FleetView {
    fleet: String,
    namespace: String,
    replicas: Vec<Replica>,
    drift: Vec<Drift>,
}

impl FleetView {
    /// Lists the membership Leases of `fleet` in `namespace` and builds the view.
    pub async fn load(client: Client, namespace: &str, fleet: &str) -> Result<Self, FleetError> {
        let api: Api<Lease> = Api::namespaced(client, namespace);
        let selector = format!(
            "{MANAGED_BY_LABEL}={MANAGED_BY},{FLEET_LABEL}={}",
            label_value(fleet)
        );
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|source| FleetError {
                fleet: fleet.to_owned(),
                namespace: namespace.to_owned(),
                source,
            })?;
        Ok(Self::from_leases(
            namespace,
            fleet,
            list.items,
            Timestamp::now(),
        ))
    }

    /// Builds the view from Leases (already selected by fleet) as of `now`.
    pub fn from_leases(
        namespace: &str,
        fleet: &str,
        leases: impl IntoIterator<Item = Lease>,
        now: Timestamp,
    ) -> Self {
        let mut replicas: Vec<Replica> = leases
            .into_iter()
            .filter_map(|l| replica(&l, now))
            .collect();
        replicas.sort_by(|a, b| a.name.cmp(&b.name));
        let drift = drift(&replicas);
        Self {
            fleet: fleet.to_owned(),
            namespace: namespace.to_owned(),
            replicas,
            drift,
        }
    }

    /// The fleet name.
    pub fn fleet(&self) -> &str {
        &self.fleet
    }

    /// The namespace of the Leases.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Live replicas, by name.
    pub fn replicas(&self) -> &[Replica] {
        &self.replicas
    }

    /// Groups of replicas with the same generation and different hashes; empty when
    /// the fleet agrees.
    pub fn drift(&self) -> &[Drift] {
        &self.drift
    }
}

/// The replica a Lease describes, unless it expired.
fn replica(lease: &Lease, now: Timestamp) -> Option<Replica> {
    let name = lease.metadata.name.clone()?;
    let spec = lease.spec.as_ref()?;
    let renewed = spec.renew_time.as_ref()?.0;
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds?));
    if renewed.checked_add(duration).ok()? < now {
        return None;
    }
    let labels = lease.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).filter(|v| !v.is_empty());
    let since = spec
        .acquire_time
        .as_ref()
        .map(|t| t.0)
        .or_else(|| lease.metadata.creation_timestamp.as_ref().map(|t| t.0));
    Some(Replica {
        name,
        generation: label(GENERATION_LABEL).and_then(|g| g.parse().ok()),
        hash: label(HASH_LABEL).cloned(),
        renew_time: Some(renewed.to_string()),
        age_seconds: since.map(|s| now.duration_since(s).as_secs().max(0)),
        since_renew_seconds: Some(now.duration_since(renewed).as_secs().max(0)),
    })
}

fn drift(replicas: &[Replica]) -> Vec<Drift> {
    let mut by_gen: BTreeMap<u64, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in replicas {
        if let (Some(g), Some(h)) = (r.generation, &r.hash) {
            by_gen
                .entry(g)
                .or_default()
                .entry(h.clone())
                .or_default()
                .push(r.name.clone());
        }
    }
    by_gen
        .into_iter()
        .filter(|(_, hashes)| hashes.len() > 1)
        .map(|(generation, hashes)| Drift { generation, hashes })
        .collect()
}

impl fmt::Display for FleetView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "fleet {} (namespace {}): {} live replica(s)",
            self.fleet,
            self.namespace,
            self.replicas.len()
        )?;
        let opt = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
        let rows: Vec<[String; 5]> = self
            .replicas
            .iter()
            .map(|r| {
                [
                    r.name.clone(),
                    opt(r.generation.map(|g| g.to_string())),
                    opt(r.hash.clone()),
                    opt(r.age_seconds.map(|s| format!("{s}s"))),
                    opt(r.since_renew_seconds.map(|s| format!("{s}s ago"))),
                ]
            })
            .collect();
        let header = ["NAME", "GENERATION", "HASH", "AGE", "RENEWED"];
        let mut widths = header.map(str::len);
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.len());
            }
        }
        let line = |f: &mut fmt::Formatter<'_>, cells: [&str; 5]| -> fmt::Result {
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == cells.len() {
                    writeln!(f, "{cell}")?;
                } else {
                    write!(f, "{cell:<w$}  ")?;
                }
            }
            Ok(())
        };
        line(f, header)?;
        for row in &rows {
            line(f, [&row[0], &row[1], &row[2], &row[3], &row[4]])?;
        }
        if self.drift.is_empty() {
            writeln!(f, "no config drift")?;
        }
        for d in &self.drift {
            write!(f, "DRIFT at generation {}:", d.generation)?;
            for (hash, names) in &d.hashes {
                write!(f, " {hash} on {}", names.join(","))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    use super::*;

    fn lease(name: &str, generation: u64, hash: &str, renewed: i64) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([
                    (GENERATION_LABEL.to_owned(), generation.to_string()),
                    (HASH_LABEL.to_owned(), hash.to_owned()),
                ])),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(name.to_owned()),
                lease_duration_seconds: Some(30),
                acquire_time: Some(MicroTime(Timestamp::from_second(renewed - 100).unwrap())),
                renew_time: Some(MicroTime(Timestamp::from_second(renewed).unwrap())),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn live_replicas_and_drift() {
        let now = Timestamp::from_second(10_000).unwrap();
        let view = FleetView::from_leases(
            "gatekit",
            "gatekit",
            [
                lease("c", 7, "bbb", 9_995),
                lease("a", 7, "aaa", 9_990),
                lease("b", 7, "aaa", 9_999),
                lease("d", 6, "zzz", 9_999),
                lease("dead", 7, "ccc", 9_000),
            ],
            now,
        );
        let names: Vec<_> = view.replicas().iter().map(Replica::name).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        assert_eq!(view.replicas()[0].age_seconds(), Some(110));
        assert_eq!(view.drift().len(), 1);
        let d = &view.drift()[0];
        assert_eq!(d.generation(), 7);
        assert_eq!(d.hashes()["aaa"], ["a", "b"]);
        assert_eq!(d.hashes()["bbb"], ["c"]);

        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["replicas"][0]["name"], "a");
        assert_eq!(json["replicas"][0]["generation"], 7);
        assert_eq!(json["drift"][0]["hashes"]["bbb"][0], "c");

        let table = view.to_string();
        assert!(table.contains("4 live replica(s)"), "{table}");
        assert!(
            table.contains("DRIFT at generation 7: aaa on a,b bbb on c"),
            "{table}"
        );
        assert!(!table.contains("dead"), "{table}");
    }

    #[test]
    fn agreeing_fleet_has_no_drift() {
        let now = Timestamp::from_second(10_000).unwrap();
        let view = FleetView::from_leases(
            "ns",
            "f",
            [lease("a", 3, "h", 9_999), lease("b", 3, "h", 9_999)],
            now,
        );
        assert!(view.drift().is_empty());
        assert!(view.to_string().contains("no config drift"));
    }
}
