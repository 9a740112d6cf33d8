//! Storage: objects, the resourceVersion counter, the event log and the watch fan-out.
//!
//! Objects live in one ordered map keyed by `(storage, namespace, name)`, so a list is a range
//! scan already sorted the way the apiserver sorts. Every write takes the next value of one
//! global `u64` counter as its resourceVersion (one counter per fake, like one etcd per
//! cluster), appends `(rv, type, object, previous object)` to a bounded ring buffer and
//! pushes the event to every matching watch while the store lock is held, so the order on
//! every stream is the commit order and no event can fall between a watch's initial state and
//! its live tail.
//!
//! History: `floor` = max(`compacted_rv`, rv of the newest event evicted from the ring).
//! Watching or paging from an RV below the floor is "too old" (410). A paginated list is
//! served from a consistent snapshot: the current objects with the logged events newer than
//! the token's RV undone, newest first.
//!
//! Watch queues are bounded; a subscriber whose queue is full is dropped, which aborts its
//! HTTP response (the apiserver closes slow watchers too).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine as _;
use bytes::Bytes;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};

use crate::patch::{self, PatchKind};
use crate::registry::{Registry, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;

/// Capacity of one watch's queue before the watcher is considered too slow and dropped.
pub(crate) const WATCH_QUEUE: usize = 4096;

/// Kind of a stored event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One logged change. `obj` is the new state (for DELETED: the last state carrying the RV of
/// the delete); `prev` is the state before (absent for ADDED).
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) rv: u64,
    pub(crate) ty: EventType,
    pub(crate) storage: usize,
    pub(crate) obj: Arc<Value>,
    pub(crate) prev: Option<Arc<Value>>,
}

/// A message to a watch response.
#[derive(Debug)]
pub(crate) enum Msg {
    /// One JSON line (newline included).
    Line(Bytes),
    /// End the response cleanly.
    End,
}

/// What a watch selects.
#[derive(Debug, Clone)]
pub(crate) struct WatchFilter {
    pub(crate) res: usize,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && obj.pointer("/metadata/namespace").and_then(Value::as_str) != Some(ns)
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[derive(Debug)]
struct Sub {
    id: u64,
    storage: usize,
    filter: WatchFilter,
    bookmarks: bool,
    tx: mpsc::Sender<Msg>,
    aborted: Arc<AtomicBool>,
}

/// Options of a list request.
#[derive(Debug, Default)]
pub(crate) struct ListParams {
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) limit: Option<usize>,
    pub(crate) continue_token: Option<String>,
    pub(crate) resource_version: Option<String>,
    pub(crate) rv_match: Option<String>,
}

/// Options of a watch request.
#[derive(Debug)]
pub(crate) struct WatchParams {
    pub(crate) filter: WatchFilter,
    pub(crate) resource_version: Option<String>,
    pub(crate) bookmarks: bool,
    pub(crate) send_initial_events: bool,
}

/// A started watch: frames to send first, then the live queue (`None`: end after `initial`).
#[derive(Debug)]
pub(crate) struct WatchStart {
    pub(crate) id: u64,
    pub(crate) initial: VecDeque<Bytes>,
    pub(crate) rx: Option<mpsc::Receiver<Msg>>,
    /// Set when the watch is dropped on purpose: the response must abort at once.
    pub(crate) aborted: Arc<AtomicBool>,
}

type Key = (usize, String, String);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    ns: String,
    name: String,
}

/// The data of one fake cluster.
#[derive(Debug)]
pub(crate) struct Store {
    pub(crate) registry: Registry,
    objects: BTreeMap<Key, Arc<Value>>,
    rv: u64,
    log: VecDeque<Arc<Event>>,
    capacity: usize,
    evicted_upto: u64,
    compacted_rv: u64,
    subs: Vec<Sub>,
    next_id: u64,
    watch_changed: Arc<Notify>,
}

// === helpers ===

fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let Value::Object(root) = obj else {
        unreachable!("just made an object")
    };
    let m = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !m.is_object() {
        *m = Value::Object(Map::new());
    }
    match m {
        Value::Object(map) => map,
        _ => unreachable!("just made an object"),
    }
}

/// Everything but metadata/status/apiVersion/kind: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    v
}

fn without_rv(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(Value::Object(m)) = v.get_mut("metadata") {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

fn has_finalizers(obj: &Value) -> bool {
    obj.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// RFC 3339 UTC timestamp (seconds) of the wall clock.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil from days (H. Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

fn new_uid() -> String {
    let a = fastrand::u64(..);
    let b = fastrand::u64(..);
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 52,
        b & 0xffff_ffff_ffff
    )
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|_| char::from(ALPHABET[fastrand::usize(..ALPHABET.len())]))
        .collect()
}

/// A list/watch object as sent on the wire: `kind`/`apiVersion` of the requested version.
pub(crate) fn stamp(ty: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.insert("apiVersion".into(), Value::String(ty.api_version()));
        m.insert("kind".into(), Value::String(ty.kind.clone()));
    }
    v
}

fn event_line(ty: &str, obj: &Value) -> Bytes {
    let mut buf = Vec::with_capacity(256);
    buf.extend_from_slice(b"{\"type\":\"");
    buf.extend_from_slice(ty.as_bytes());
    buf.extend_from_slice(b"\",\"object\":");
    // Serialising a `Value` cannot fail.
    let _ = serde_json::to_writer(&mut buf, obj);
    buf.extend_from_slice(b"}\n");
    Bytes::from(buf)
}

/// The ERROR event line for an expired resourceVersion.
fn expired_line(requested: u64, current: u64) -> Bytes {
    let status =
        ApiError::expired(format!("too old resource version: {requested} ({current})")).to_status();
    event_line("ERROR", &status)
}

fn bookmark_line(ty: &ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": ty.kind, "apiVersion": ty.api_version(), "metadata": meta});
    event_line("BOOKMARK", &obj)
}

fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>()
        .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))
}

// === impl Store ===

impl Store {
    pub(crate) fn new(registry: Registry, capacity: usize, watch_changed: Arc<Notify>) -> Self {
        Self {
            registry,
            objects: BTreeMap::new(),
            rv: 0,
            log: VecDeque::new(),
            capacity: capacity.max(1),
            evicted_upto: 0,
            compacted_rv: 0,
            subs: Vec::new(),
            next_id: 1,
            watch_changed,
        }
    }

    pub(crate) fn current_rv(&self) -> u64 {
        self.rv
    }

    /// The oldest RV one can still watch or page from.
    fn floor(&self) -> u64 {
        self.compacted_rv.max(self.evicted_upto)
    }

    fn ty(&self, res: usize) -> &ResourceType {
        &self.registry.get(res).ty
    }

    fn storage(&self, res: usize) -> usize {
        self.registry.get(res).storage
    }

    fn key(&self, res: usize, ns: Option<&str>, name: &str) -> Key {
        (
            self.storage(res),
            ns.unwrap_or("").to_owned(),
            name.to_owned(),
        )
    }

    // --- reads ---

    /// A stored object as the wire shows it.
    pub(crate) fn get(&self, res: usize, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let ty = self.ty(res);
        self.objects
            .get(&self.key(res, ns, name))
            .map(|o| stamp(ty, o))
            .ok_or_else(|| ApiError::not_found(&ty.plural, name))
    }

    /// Objects of one storage at `rv` (current state with newer logged events undone).
    fn snapshot(&self, storage: usize, rv: u64) -> BTreeMap<(String, String), Arc<Value>> {
        let mut snap: BTreeMap<(String, String), Arc<Value>> = self
            .objects
            .range(
                (storage, String::new(), String::new())
                    ..(storage + 1, String::new(), String::new()),
            )
            .map(|((_, ns, n), o)| ((ns.clone(), n.clone()), o.clone()))
            .collect();
        for ev in self.log.iter().rev() {
            if ev.rv <= rv {
                break;
            }
            if ev.storage != storage {
                continue;
            }
            let k = (
                meta_str(&ev.obj, "namespace").unwrap_or("").to_owned(),
                meta_str(&ev.obj, "name").unwrap_or("").to_owned(),
            );
            match (&ev.ty, &ev.prev) {
                (EventType::Added, _) => {
                    snap.remove(&k);
                }
                (_, Some(prev)) => {
                    snap.insert(k, prev.clone());
                }
                (_, None) => {}
            }
        }
        snap
    }

    /// A LIST response body.
    pub(crate) fn list(&self, res: usize, p: &ListParams) -> Result<Value, ApiError> {
        let ty = self.ty(res).clone();
        let storage = self.storage(res);
        let (snap_rv, after) = if let Some(tok) =
            p.continue_token.as_deref().filter(|t| !t.is_empty())
        {
            if p.resource_version.as_deref().is_some_and(|r| !r.is_empty()) {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(tok)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let tok: ContinueToken = serde_json::from_slice(&raw)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            if tok.rv < self.floor() {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                ));
            }
            (tok.rv, Some((tok.ns, tok.name)))
        } else {
            let rv = match (p.resource_version.as_deref(), p.rv_match.as_deref()) {
                (None | Some(""), Some(m)) if !m.is_empty() => {
                    return Err(ApiError::invalid(
                        "resourceVersionMatch is forbidden unless resourceVersion is provided",
                    ));
                }
                (None | Some("") | Some("0"), _) => self.rv,
                (Some(r), Some("Exact")) => {
                    let n = parse_rv(r)?;
                    if n > self.rv {
                        return Err(ApiError::new(
                            504,
                            "Timeout",
                            format!("Too large resource version: {n}, current: {}", self.rv),
                        ));
                    }
                    if n < self.floor() {
                        return Err(ApiError::expired(format!(
                            "too old resource version: {n} ({})",
                            self.rv
                        )));
                    }
                    n
                }
                (Some(r), None | Some("NotOlderThan") | Some("")) => {
                    let n = parse_rv(r)?;
                    if n > self.rv {
                        return Err(ApiError::new(
                            504,
                            "Timeout",
                            format!("Too large resource version: {n}, current: {}", self.rv),
                        ));
                    }
                    self.rv
                }
                (Some(_), Some(m)) => {
                    return Err(ApiError::invalid(format!(
                        "unsupported resourceVersionMatch {m:?}"
                    )));
                }
            };
            (rv, None)
        };
        let snap = if snap_rv == self.rv {
            self.snapshot(storage, u64::MAX)
        } else {
            self.snapshot(storage, snap_rv)
        };
        let matching = snap.iter().filter(|((ns, name), o)| {
            p.namespace.as_deref().is_none_or(|want| want == ns)
                && p.labels.matches(o)
                && p.fields.matches(o)
                && after.as_ref().is_none_or(|(ans, an)| {
                    (ns.as_str(), name.as_str()) > (ans.as_str(), an.as_str())
                })
        });
        let limit = p.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        let mut remaining = 0usize;
        for ((ns, name), o) in matching {
            if items.len() < limit {
                let mut v = (**o).clone();
                if let Value::Object(m) = &mut v {
                    m.remove("apiVersion");
                    m.remove("kind");
                }
                items.push(v);
                last = Some((ns.clone(), name.clone()));
            } else {
                remaining += 1;
            }
        }
        let mut meta = json!({"resourceVersion": snap_rv.to_string()});
        if remaining > 0
            && let Some((ns, name)) = last
        {
            let raw = serde_json::to_vec(&ContinueToken {
                rv: snap_rv,
                ns,
                name,
            })
            .unwrap_or_default();
            meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw));
            meta["remainingItemCount"] = json!(remaining);
        }
        Ok(json!({
            "kind": ty.list_kind(),
            "apiVersion": ty.api_version(),
            "metadata": meta,
            "items": items,
        }))
    }

    // --- writes ---

    /// Commits a new state (or a deletion when `new` is `None`) and fans the event out.
    fn commit(&mut self, storage: usize, ns: &str, name: &str, new: Option<Value>) -> Arc<Value> {
        self.rv += 1;
        let rv = self.rv;
        let key = (storage, ns.to_owned(), name.to_owned());
        let prev = self.objects.get(&key).cloned();
        let (ty, obj) = match new {
            Some(mut v) => {
                meta_mut(&mut v).insert("resourceVersion".into(), json!(rv.to_string()));
                let v = Arc::new(v);
                self.objects.insert(key, v.clone());
                (
                    if prev.is_some() {
                        EventType::Modified
                    } else {
                        EventType::Added
                    },
                    v,
                )
            }
            None => {
                self.objects.remove(&key);
                let mut last = prev.as_deref().cloned().unwrap_or(Value::Null);
                meta_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
                (EventType::Deleted, Arc::new(last))
            }
        };
        let ev = Arc::new(Event {
            rv,
            ty,
            storage,
            obj: obj.clone(),
            prev,
        });
        self.fanout(&ev);
        self.log.push_back(ev);
        while self.log.len() > self.capacity {
            if let Some(old) = self.log.pop_front() {
                self.evicted_upto = old.rv;
            }
        }
        obj
    }

    fn fanout(&mut self, ev: &Event) {
        let registry = &self.registry;
        let before = self.subs.len();
        self.subs.retain(|s| {
            if s.storage != ev.storage {
                return true;
            }
            let Some(line) = render_event(registry, &s.filter, ev) else {
                return true;
            };
            s.tx.try_send(Msg::Line(line)).is_ok()
        });
        if self.subs.len() != before {
            self.watch_changed.notify_waiters();
        }
    }

    /// Validates a body's `apiVersion`/`kind` (when present) against the resource.
    fn check_type(&self, res: usize, body: &Value) -> Result<(), ApiError> {
        let ty = self.ty(res);
        if !body.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        if let Some(k) = body.get("kind").and_then(Value::as_str)
            && k != ty.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind {k:?} of the body does not match the resource {:?}",
                ty.kind
            )));
        }
        if let Some(av) = body.get("apiVersion").and_then(Value::as_str) {
            let group = av.rsplit_once('/').map_or("", |(g, _)| g);
            if group != ty.group {
                return Err(ApiError::bad_request(format!(
                    "the apiVersion {av:?} of the body does not match the resource"
                )));
            }
        }
        Ok(())
    }

    fn check_namespace(
        &self,
        res: usize,
        ns: Option<&str>,
        body: &mut Value,
    ) -> Result<String, ApiError> {
        let ty = self.ty(res);
        if !ty.namespaced {
            meta_mut(body).remove("namespace");
            return Ok(String::new());
        }
        let Some(ns) = ns else {
            return Err(ApiError::bad_request(
                "a namespaced object needs a namespace",
            ));
        };
        match meta_str(body, "namespace") {
            Some(b) if !b.is_empty() && b != ns => Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )),
            _ => {
                meta_mut(body).insert("namespace".into(), json!(ns));
                Ok(ns.to_owned())
            }
        }
    }

    /// POST: create. Returns the stored object.
    pub(crate) fn create(
        &mut self,
        res: usize,
        ns: Option<&str>,
        mut body: Value,
        dry_run: bool,
        keep_status: bool,
    ) -> Result<Value, ApiError> {
        self.check_type(res, &body)?;
        let ns = self.check_namespace(res, ns, &mut body)?;
        let ty = self.ty(res).clone();
        let name = match meta_str(&body, "name").filter(|n| !n.is_empty()) {
            Some(n) => n.to_owned(),
            None => match meta_str(&body, "generateName").filter(|n| !n.is_empty()) {
                Some(g) => format!("{g}{}", random_suffix()),
                None => {
                    return Err(ApiError::invalid(format!(
                        "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                        ty.kind
                    )));
                }
            },
        };
        let storage = self.storage(res);
        if self
            .objects
            .contains_key(&(storage, ns.clone(), name.clone()))
        {
            return Err(ApiError::already_exists(&ty.plural, &name));
        }
        if ty.has_status
            && !keep_status
            && let Value::Object(m) = &mut body
        {
            m.remove("status");
        }
        let meta = meta_mut(&mut body);
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        meta.remove("resourceVersion");
        meta.remove("deletionTimestamp");
        let body = stamp(self.registry.canonical(storage), &body);
        if dry_run {
            return Ok(body);
        }
        let stored = self.commit(storage, &ns, &name, Some(body));
        Ok(stamp(&ty, &stored))
    }

    /// The write path shared by PUT, PATCH and the helpers: `new` is the full desired object;
    /// system metadata is carried over from the stored one.
    fn update(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        mut new: Value,
        mode: UpdateMode,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.check_type(res, &new)?;
        let ty = self.ty(res).clone();
        let nsv = self.check_namespace(res, ns, &mut new)?;
        let storage = self.storage(res);
        let key = (storage, nsv.clone(), name.to_owned());
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&ty.plural, name));
        };
        match meta_str(&new, "name") {
            Some(n) if n != name => {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        if let Some(rv) = meta_str(&new, "resourceVersion").filter(|r| !r.is_empty())
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&ty.plural, name));
        }
        let mut next = match mode {
            UpdateMode::Status => {
                let mut v = (*old).clone();
                if let Value::Object(m) = &mut v {
                    match new.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
                v
            }
            UpdateMode::Main | UpdateMode::Full => {
                let mut v = new;
                if ty.has_status
                    && mode == UpdateMode::Main
                    && let Value::Object(m) = &mut v
                {
                    match old.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
                let m = meta_mut(&mut v);
                m.insert("name".into(), json!(name));
                for k in [
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "generation",
                ] {
                    match old.pointer(&format!("/metadata/{k}")) {
                        Some(x) => m.insert(k.into(), x.clone()),
                        None => m.remove(k),
                    };
                }
                v
            }
        };
        if spec_part(&next) != spec_part(&old) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut next).insert("generation".into(), json!(g + 1));
        }
        let next = stamp(self.registry.canonical(storage), &next);
        if without_rv(&next) == without_rv(&old) {
            // A no-op write does not bump the resourceVersion (as etcd3's GuaranteedUpdate).
            return Ok(stamp(&ty, &old));
        }
        if dry_run {
            let mut v = next;
            meta_mut(&mut v).insert(
                "resourceVersion".into(),
                json!(meta_str(&old, "resourceVersion").unwrap_or("")),
            );
            return Ok(stamp(&ty, &v));
        }
        let gone = old.pointer("/metadata/deletionTimestamp").is_some() && !has_finalizers(&next);
        let stored = self.commit(storage, &nsv, name, if gone { None } else { Some(next) });
        Ok(stamp(&ty, &stored))
    }

    /// PUT (`status`: the `/status` subresource).
    pub(crate) fn replace(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        body: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let mode = if status {
            UpdateMode::Status
        } else {
            UpdateMode::Main
        };
        self.update(res, ns, name, body, mode, dry_run)
    }

    /// PATCH. Returns the object and whether it was created (apply on a missing object).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
        status: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let ty = self.ty(res).clone();
        let key = self.key(res, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            if kind == PatchKind::Apply && !status {
                let mut obj = body.clone();
                meta_mut(&mut obj).insert("name".into(), json!(name));
                return self.create(res, ns, obj, dry_run, false).map(|v| (v, true));
            }
            return Err(ApiError::not_found(&ty.plural, name));
        };
        let mut doc = stamp(&ty, &old);
        patch::apply_patch(kind, &mut doc, body)?;
        // A resourceVersion left in the patched object (from the patch) is a precondition.
        if let Some(rv) = meta_str(&doc, "resourceVersion").filter(|r| !r.is_empty())
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&ty.plural, name));
        }
        if let Some(n) = meta_str(&doc, "name")
            && n != name
        {
            return Err(ApiError::bad_request(
                "the name of the object cannot be changed by a patch",
            ));
        }
        let mode = if status {
            UpdateMode::Status
        } else {
            UpdateMode::Main
        };
        self.update(res, ns, name, doc, mode, dry_run)
            .map(|v| (v, false))
    }

    /// DELETE. `Ok(None)` = deleted now; `Ok(Some(obj))` = deletion pending on finalizers.
    pub(crate) fn delete(
        &mut self,
        res: usize,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        dry_run: bool,
    ) -> Result<Option<Value>, ApiError> {
        let ty = self.ty(res).clone();
        let key = self.key(res, ns, name);
        let Some(old) = self.objects.get(&key).cloned() else {
            return Err(ApiError::not_found(&ty.plural, name));
        };
        if let Some(rv) = options
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&ty.plural, name));
        }
        if let Some(uid) = options
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(&ty.plural, name));
        }
        if dry_run {
            return Ok(None);
        }
        if has_finalizers(&old) {
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Ok(Some(stamp(&ty, &old)));
            }
            let mut v = (*old).clone();
            meta_mut(&mut v).insert("deletionTimestamp".into(), json!(now_rfc3339()));
            let stored = self.commit(key.0, &key.1, &key.2, Some(v));
            return Ok(Some(stamp(&ty, &stored)));
        }
        self.commit(key.0, &key.1, &key.2, None);
        Ok(None)
    }

    /// DELETE on a collection: deletes every matching object; returns the list body.
    pub(crate) fn delete_collection(
        &mut self,
        res: usize,
        p: &ListParams,
    ) -> Result<Value, ApiError> {
        let list = self.list(
            res,
            &ListParams {
                namespace: p.namespace.clone(),
                labels: p.labels.clone(),
                fields: p.fields.clone(),
                ..Default::default()
            },
        )?;
        let items = list["items"].as_array().cloned().unwrap_or_default();
        for item in &items {
            let name = meta_str(item, "name").unwrap_or("");
            let ns = meta_str(item, "namespace");
            self.delete(res, ns, name, &Value::Null, false)?;
        }
        Ok(list)
    }

    /// Test-side upsert: creates the object or replaces it whole (status included).
    pub(crate) fn put(&mut self, res: usize, obj: Value) -> Result<Value, ApiError> {
        let name = meta_str(&obj, "name").unwrap_or("").to_owned();
        let ns = meta_str(&obj, "namespace").map(str::to_owned);
        let ns = if self.ty(res).namespaced {
            Some(ns.unwrap_or_else(|| "default".into()))
        } else {
            None
        };
        let key = self.key(res, ns.as_deref(), &name);
        if self.objects.contains_key(&key) {
            let mut o = obj;
            meta_mut(&mut o).remove("resourceVersion");
            self.update(res, ns.as_deref(), &name, o, UpdateMode::Full, false)
        } else {
            self.create(res, ns.as_deref(), obj, false, true)
        }
    }

    /// Names of a storage's objects in `ns` matching `labels` (for helpers).
    pub(crate) fn keys_matching(
        &self,
        res: usize,
        ns: &str,
        labels: &LabelSelector,
    ) -> Vec<String> {
        let storage = self.storage(res);
        self.objects
            .range((storage, ns.to_owned(), String::new())..)
            .take_while(|((s, n, _), _)| *s == storage && n == ns)
            .filter(|(_, o)| labels.matches(o))
            .map(|((_, _, name), _)| name.clone())
            .collect()
    }

    /// Every object of a resource, stamped (for helpers).
    pub(crate) fn all(&self, res: usize) -> Vec<Value> {
        let storage = self.storage(res);
        let ty = self.ty(res);
        self.objects
            .range(
                (storage, String::new(), String::new())
                    ..(storage + 1, String::new(), String::new()),
            )
            .map(|(_, o)| stamp(ty, o))
            .collect()
    }

    // --- watches ---

    /// Starts a watch: computes its initial frames and registers it for live events (both
    /// under the store lock, so nothing falls in between).
    pub(crate) fn watch(&mut self, p: WatchParams) -> Result<WatchStart, ApiError> {
        let res = p.filter.res;
        let ty = self.ty(res).clone();
        let storage = self.storage(res);
        let id = self.next_id;
        self.next_id += 1;
        let mut initial = VecDeque::new();
        let rv = p
            .resource_version
            .as_deref()
            .filter(|r| !r.is_empty() && *r != "0");
        match rv {
            None => {
                for o in self.snapshot(storage, u64::MAX).values() {
                    if p.filter.matches(o) {
                        initial.push_back(event_line("ADDED", &stamp(&ty, o)));
                    }
                }
                if p.send_initial_events {
                    initial.push_back(bookmark_line(&ty, self.rv, true));
                }
            }
            Some(r) => {
                let n = parse_rv(r)?;
                if n > self.rv {
                    // The apiserver waits up to 3 s for the RV to appear, then fails the
                    // watch in-stream with 504; nothing can make this fake's RV grow by
                    // waiting for a client, so fail at once.
                    let status = ApiError::new(
                        504,
                        "Timeout",
                        format!("Too large resource version: {n}, current: {}", self.rv),
                    )
                    .to_status();
                    initial.push_back(event_line("ERROR", &status));
                    return Ok(WatchStart {
                        id,
                        initial,
                        rx: None,
                        aborted: Arc::default(),
                    });
                }
                if n < self.floor() {
                    initial.push_back(expired_line(n, self.rv));
                    return Ok(WatchStart {
                        id,
                        initial,
                        rx: None,
                        aborted: Arc::default(),
                    });
                }
                if p.send_initial_events {
                    for o in self.snapshot(storage, u64::MAX).values() {
                        if p.filter.matches(o) {
                            initial.push_back(event_line("ADDED", &stamp(&ty, o)));
                        }
                    }
                    initial.push_back(bookmark_line(&ty, self.rv, true));
                } else {
                    for ev in self.log.iter().filter(|e| e.rv > n && e.storage == storage) {
                        if let Some(line) = render_event(&self.registry, &p.filter, ev) {
                            initial.push_back(line);
                        }
                    }
                }
            }
        }
        let (tx, rx) = mpsc::channel(WATCH_QUEUE);
        let aborted = Arc::new(AtomicBool::new(false));
        self.subs.push(Sub {
            id,
            storage,
            filter: p.filter,
            bookmarks: p.bookmarks,
            tx,
            aborted: aborted.clone(),
        });
        self.watch_changed.notify_waiters();
        Ok(WatchStart {
            id,
            initial,
            rx: Some(rx),
            aborted,
        })
    }

    /// Forgets a watch (its response ended or was dropped).
    pub(crate) fn unwatch(&mut self, id: u64) {
        let before = self.subs.len();
        self.subs.retain(|s| s.id != id);
        if self.subs.len() != before {
            self.watch_changed.notify_waiters();
        }
    }

    /// Number of open watches on resources with this plural name.
    pub(crate) fn active_watches(&self, plural: &str) -> usize {
        self.subs
            .iter()
            .filter(|s| !s.tx.is_closed() && self.registry.get(s.filter.res).ty.plural == plural)
            .count()
    }

    /// A bookmark at the current RV to every watch that allows them.
    pub(crate) fn bookmark_all(&mut self) {
        let rv = self.rv;
        let registry = &self.registry;
        let before = self.subs.len();
        self.subs.retain(|s| {
            !s.bookmarks
                || s.tx
                    .try_send(Msg::Line(bookmark_line(
                        &registry.get(s.filter.res).ty,
                        rv,
                        false,
                    )))
                    .is_ok()
        });
        if self.subs.len() != before {
            self.watch_changed.notify_waiters();
        }
    }

    /// The bookmark a watch sends just before its deadline (if it allows bookmarks).
    pub(crate) fn final_bookmark(&self, id: u64) -> Option<Bytes> {
        let s = self.subs.iter().find(|s| s.id == id && s.bookmarks)?;
        Some(bookmark_line(
            &self.registry.get(s.filter.res).ty,
            self.rv,
            false,
        ))
    }

    /// Marks every watch (or those on resources named `plural`) aborted and forgets them;
    /// returns how many. The caller wakes the streams.
    pub(crate) fn drop_watches(&mut self, plural: Option<&str>) -> usize {
        let registry = &self.registry;
        let before = self.subs.len();
        self.subs.retain(|s| {
            let hit = plural.is_none_or(|p| registry.get(s.filter.res).ty.plural == p);
            if hit {
                s.aborted.store(true, Ordering::Release);
            }
            !hit
        });
        let n = before - self.subs.len();
        if n > 0 {
            self.watch_changed.notify_waiters();
        }
        n
    }

    /// Ends every watch cleanly.
    pub(crate) fn end_watches(&mut self) {
        for s in self.subs.drain(..) {
            let _ = s.tx.try_send(Msg::End);
        }
        self.watch_changed.notify_waiters();
    }

    /// Forgets history up to `rv`.
    pub(crate) fn compact(&mut self, rv: u64) {
        let rv = rv.min(self.rv);
        self.compacted_rv = self.compacted_rv.max(rv);
        while self.log.front().is_some_and(|e| e.rv <= rv) {
            self.log.pop_front();
        }
    }
}

/// How [`Store::update`] treats `.status` and system metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdateMode {
    /// The main resource: `.status` is kept from the stored object (if the type has one).
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// Test helpers: everything but system metadata is replaced.
    Full,
}

/// The line a watch with `filter` sees for `ev`, if any (selector transitions included).
fn render_event(registry: &Registry, filter: &WatchFilter, ev: &Event) -> Option<Bytes> {
    let ty = &registry.get(filter.res).ty;
    let now = filter.matches(&ev.obj);
    let before = ev.prev.as_deref().is_some_and(|p| filter.matches(p));
    let (t, obj) = match ev.ty {
        EventType::Added => (now.then_some(EventType::Added)?, stamp(ty, &ev.obj)),
        EventType::Deleted => (now.then_some(EventType::Deleted)?, stamp(ty, &ev.obj)),
        EventType::Modified => match (before, now) {
            (true, true) => (EventType::Modified, stamp(ty, &ev.obj)),
            (false, true) => (EventType::Added, stamp(ty, &ev.obj)),
            (true, false) => {
                let mut prev = stamp(ty, ev.prev.as_deref()?);
                meta_mut(&mut prev).insert("resourceVersion".into(), json!(ev.rv.to_string()));
                (EventType::Deleted, prev)
            }
            (false, false) => return None,
        },
    };
    Some(event_line(t.as_str(), &obj))
}
