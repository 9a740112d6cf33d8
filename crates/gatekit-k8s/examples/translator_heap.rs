//! The live heap of the translation side with N routes (issue 19): the parsed
//! [`ResourceSet`], a [`Translator`]'s kept state and the [`Translation`] the gateway
//! keeps (for `/config` and the apply stage), each on its own.
//!
//! ```sh
//! cargo run --profile bench -p gatekit-examples --example live_change -- --write /tmp/m5k 5000
//! cargo run --profile bench -p gatekit-k8s --example translator_heap -- /tmp/m5k
//! ```
//!
//! A counting global allocator gives the bytes and the blocks (allocations not yet
//! freed: each costs malloc's chunk overhead besides its bytes) held: after the first (full) call of a
//! translator with its result kept, as `gatekit run` holds them; the translator alone
//! (result dropped); the result's own part (the difference); a `translate` result on its
//! own; and after one route changed incrementally (both results dropped but the new one).
//! Each figure is also given per route. Last, the inline sizes of the parsed HTTPRoute
//! types and of the compact forms the parsed set keeps.
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::collections::BTreeSet;

use gatekit_k8s::status::ResourceRef;
use gatekit_k8s::{ResourceSet, TranslateOptions, Translator, translate};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes and blocks held.
#[derive(Clone, Copy)]
struct Held {
    bytes: isize,
    blocks: isize,
}

impl std::ops::Sub for Held {
    type Output = Held;
    fn sub(self, other: Held) -> Held {
        Held {
            bytes: self.bytes - other.bytes,
            blocks: self.blocks - other.blocks,
        }
    }
}

fn live() -> Held {
    let s = GLOBAL.stats();
    Held {
        bytes: s.bytes_allocated as isize - s.bytes_deallocated as isize,
        blocks: s.allocations as isize - s.deallocations as isize,
    }
}

fn main() {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .expect("usage: translator_heap DIR (from live_change --write DIR N)"),
    );
    let base = live();
    let (set, _) = ResourceSet::from_dirs(&[dir]).unwrap();
    let set_bytes = live() - base;
    let routes = set.http_routes.len().max(1);
    let show = |what: &str, held: Held| {
        println!(
            "{what:<38} {:8.2} MB {:7.0} B/route {:6.1} blocks/route",
            held.bytes as f64 / 1e6,
            held.bytes as f64 / routes as f64,
            held.blocks as f64 / routes as f64
        );
    };
    println!("{routes} HTTPRoutes");
    show("ResourceSet", set_bytes);
    // Each kind's part: its list dropped from a copy.
    {
        let mut copy = set.clone();
        let mut part = |what: &str, drop_list: &mut dyn FnMut(&mut ResourceSet)| {
            let before = live();
            drop_list(&mut copy);
            show(what, before - live());
        };
        part("  of which HTTPRoutes", &mut |s| {
            drop(std::mem::take(&mut s.http_routes))
        });
        part("  of which Services", &mut |s| {
            drop(std::mem::take(&mut s.services))
        });
        part("  of which EndpointSlices", &mut |s| {
            drop(std::mem::take(&mut s.endpoint_slices))
        });
    }

    let base = live();
    let mut translator = Translator::new(TranslateOptions::default());
    let first = translator.translate(&set, None);
    let both = live() - base;
    drop(first);
    let state = live() - base;
    show("Translator + its Translation", both);
    show("  Translator alone", state);
    show("  Translation's own part", both - state);

    let base = live();
    let full = translate(&set, &TranslateOptions::default());
    show("translate() result alone", live() - base);
    drop(full);

    // One route changed (its path), translated incrementally; the old result dropped.
    let mut set2 = set.clone();
    let route = (set2.http_routes.iter_mut())
        .find(|r| r.spec.rules.iter().flatten().any(|r| r.matches.is_some()))
        .unwrap();
    let name = route.metadata.name().to_owned();
    let ns = route.metadata.namespace().map(str::to_owned);
    let rule = (route.spec.rules.iter_mut().flatten())
        .find(|r| r.matches.is_some())
        .unwrap();
    let path = rule.matches.as_deref_mut().unwrap()[0]
        .path
        .get_or_insert_default();
    path.value = Some(format!("/x{}", path.value.as_deref().unwrap_or_default()).into());
    let changed: BTreeSet<ResourceRef> = ResourceRef::of_kind("HTTPRoute", ns.as_deref(), &name)
        .into_iter()
        .collect();
    let base = live();
    let next = translator.translate(&set2, Some(&changed));
    show("after one incremental change (delta)", live() - base);
    assert!(
        next.changes().is_some(),
        "the change was translated in full"
    );
    drop(next);

    use gateway_api::experimental::httproutes as h;
    use std::mem::size_of;
    println!(
        "inline sizes, bytes: HTTPRoute {} (metadata {}, spec {}), rule {}, match {}, backendRef {}, parentRef {}",
        size_of::<h::HttpRoute>(),
        size_of::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>(),
        size_of::<h::HttpRouteSpec>(),
        size_of::<h::HttpRouteRules>(),
        size_of::<h::HttpRouteRulesMatches>(),
        size_of::<h::HttpRouteRulesBackendRefs>(),
        size_of::<h::HttpRouteParentRefs>(),
    );
    use gatekit_k8s::types::{CompactEndpointSlice, CompactService, compact_route as c};
    println!(
        "kept forms, bytes: route {} (its boxed spec {}), rule {}, match {}, backendRef {}, parentRef {}; Service {}, EndpointSlice {}",
        size_of::<c::CompactHttpRoute>(),
        size_of::<c::CompactHttpRouteSpec>(),
        size_of::<c::RouteRule>(),
        size_of::<c::RouteMatch>(),
        size_of::<c::RouteBackendRef>(),
        size_of::<c::RouteParentRef>(),
        size_of::<CompactService>(),
        size_of::<CompactEndpointSlice>(),
    );
}
