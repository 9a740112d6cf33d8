//! Incremental loading: only the files the watcher named are read again.
//!
//! Parsing dominates a reload of a large configuration (YAML into JSON values into
//! Kubernetes types: about 80 ms for 5,000 HTTPRoutes), and a reload usually changes one
//! file. [`FileCache`] keeps each file's fingerprint (length and a keyed 64-bit hash of
//! its text: keeping the text itself cost 1.3 MB of RSS for 5,000 routes) and the merged
//! [`ResourceSet`] of every file, in the file order [`ResourceSet::from_dirs`] uses
//! (roots in the order given, then paths in `Path` order: the same as its walk, names
//! sorted per directory, recursively). A load is told which paths changed (the
//! [watcher](super::watch) names them) and reads just those; their chunks of the merged
//! set are replaced in place (`Vec::splice`, per kind, at the file's offset: the sum of
//! the resources of the files before it). No resource is cloned: for 5,000 HTTPRoutes,
//! cloning the whole set took 7–13 ms of every reload.
//!
//! A load reads everything (a *rescan*, today's cost: read and fingerprint every file,
//! parse the changed ones) when the watcher cannot say what changed (an overflow, a
//! directory event), on the first load, when a named path is a directory or holds
//! loaded files, and, when any loaded file or directory is a symbolic link (a
//! ConfigMap mount, where an update renames a hidden `..data`), on any event on a path
//! that is not a loadable file. Events on hidden or non-manifest names (`.x.swp`,
//! `x.yaml~`, vim's `4913`) are otherwise ignored.
//!
//! The cross-file duplicate check is incremental: a sorted list holds a 64-bit hash
//! ([`FoldBuild`]) of every resource's (kind, namespace, name); a changed file's new
//! resources are checked against it, less the hashes of the changed files' own
//! resources before the change (read from their chunks of the merged set). A conflict (or an unreadable or unparsable file) goes to the
//! full [`ResourceSet::from_dirs`], which produces the complete, precise error list; a
//! refused load leaves the cache as the last good load and remembers the paths it read
//! (and what it read there), so the next load reads them again and a repeat of the same
//! files is [`Load::Unchanged`]. Should the full load succeed after all (a hash
//! collision), its set is taken as it is and the next load rescans.
//!
//! Each load also says which objects changed ([`FileCache::take_changed`]): the old and
//! new resources of the changed files compared (kind, namespace, name; then equality),
//! accumulated until taken; `None` when unknown (nothing taken yet since a first or
//! unbacked load).
//!
//! Cost: the cache holds the merged resources (Services and EndpointSlices in the
//! compact forms of [`gatekit_k8s::types::compact`], HTTPRoutes as
//! [`gatekit_k8s::types::CompactHttpRoute`]: for 5,000 routes, each with its own
//! Service and EndpointSlice, about 1.2 KB per route; the lists
//! grow by an eighth when full rather than double) and the duplicate index (8 bytes
//! per resource). A file inserted before others still moves their structs (a
//! `memmove` of about 270 bytes per route after it: a compact HTTPRoute's 88, a compact
//! Service's 80 and a compact EndpointSlice's 104).

use std::collections::{BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use gatekit_core::route::FoldBuild;
use gatekit_k8s::status::ResourceRef;
use gatekit_k8s::{ManifestError, ResourceSet, Warning};

/// How many resources of each kind (in [`counts`] order) a file contributed.
type Counts = [usize; gatekit_k8s::manifest::KINDS];

/// A file's text, fingerprinted: its length and a SipHash of it under this process's
/// random keys (64 bits; an accidental collision is out of reach, and the keys are not
/// known outside the process).
type Fingerprint = (usize, u64);

/// What a load read at a path: `None` if no file is there.
type State = Option<Fingerprint>;

/// The state a path that could not be read is remembered with (never a real text's).
const UNREADABLE: State = Some((usize::MAX, 0));

/// One file's fingerprint and what it parsed to (its resources live in the merged set).
struct Cached {
    text: Fingerprint,
    counts: Counts,
    warnings: Vec<Warning>,
}

/// Parsed files by path, and their merged resources (see the [module docs](self)).
#[derive(Default)]
pub(crate) struct FileCache {
    /// The roots `order` and `files` were built for.
    dirs: Vec<PathBuf>,
    /// Whether `merged` is exactly the resources of `files`, merged in `order`.
    backed: bool,
    /// Every file of `merged`, in merge order: (index of its root in `dirs`, path).
    order: Vec<(usize, PathBuf)>,
    files: HashMap<PathBuf, Cached>,
    merged: ResourceSet,
    /// The hash of every resource's reference in `merged`, sorted ([`FoldBuild`]:
    /// configuration names, not client input; a collision only sends the load to the
    /// full [`ResourceSet::from_dirs`]).
    keys: Vec<u64>,
    /// The keys of every [`Fingerprint`].
    hasher: std::collections::hash_map::RandomState,
    /// Whether a loaded file or directory is a symbolic link (then any event on a path
    /// that is not a loadable file rescans).
    symlinked: bool,
    /// Paths a refused load read differently from the last good load, with what it read
    /// there; the next load reads them again.
    dirty: HashMap<PathBuf, State>,
    /// The next load reads everything (a refused load could not list the files).
    rescan: bool,
    /// After an incremental load in which only EndpointSlices changed (every changed,
    /// added or removed file held nothing else, before and after): the Services
    /// (namespace, name) whose slices changed. `None` after any other load.
    endpoints_only: Option<BTreeSet<(String, String)>>,
    /// The objects changed since the last [`FileCache::take_changed`]; `None` if unknown.
    changed: Option<BTreeSet<ResourceRef>>,
    /// How many files the last load read (its fast path; a full load is not counted).
    read: usize,
    /// The resources are the Kubernetes provider's, kept up to date by
    /// [`FileCache::update_provided`].
    provided: bool,
}

/// What a [`FileCache::load`] found.
#[derive(Debug)]
pub(crate) enum Load {
    /// The files changed since the last load and were loaded (with these warnings).
    Changed(Vec<Warning>),
    /// Every file has the text it had at the last load, served or refused (a late or
    /// duplicate watcher event): nothing to do.
    Unchanged,
}

impl std::fmt::Debug for FileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileCache")
            .field("files", &self.files.len())
            .finish()
    }
}

type Loaded = Result<Load, Vec<ManifestError>>;

/// Why the fast path gives up.
enum Fallback {
    /// Read everything (listing, then fingerprints).
    Rescan,
    /// Let [`ResourceSet::from_dirs`] decide (an error, a duplicate).
    Full,
}

/// A file whose text differs from the last good load: its new chunk (`None`: gone).
struct Update {
    path: PathBuf,
    root: usize,
    state: State,
    parsed: Option<(ResourceSet, Vec<Warning>)>,
}

impl FileCache {
    /// Loads `dirs` as [`ResourceSet::from_dirs`] would; the result is then
    /// [`FileCache::resources`]. `named` are the paths that changed since the last load
    /// (`None`: unknown, read everything); only they are read. When every path read has
    /// the text the last load (whatever its outcome) read there, nothing is parsed:
    /// [`Load::Unchanged`].
    pub(crate) fn load(&mut self, dirs: &[PathBuf], named: Option<&BTreeSet<PathBuf>>) -> Loaded {
        self.endpoints_only = None;
        if !self.backed || self.dirs != dirs {
            self.reset(dirs);
        }
        let rescan = std::mem::take(&mut self.rescan);
        let attempt = match named {
            Some(named) if !rescan => match self.candidates(dirs, named) {
                Ok(paths) => self.attempt(dirs, paths),
                Err(fallback) => Err(fallback),
            },
            _ => Err(Fallback::Rescan),
        };
        let attempt = match attempt {
            Err(Fallback::Rescan) => match self.listing(dirs) {
                Some(paths) => self.attempt(dirs, paths),
                None => Err(Fallback::Full),
            },
            other => other,
        };
        match attempt {
            Ok(loaded) => Ok(loaded),
            Err(_) => self.full(dirs),
        }
    }

    /// Forgets every file (the next load reads and parses all of them).
    fn reset(&mut self, dirs: &[PathBuf]) {
        dirs.clone_into(&mut self.dirs);
        self.backed = false;
        self.order.clear();
        self.files.clear();
        self.keys.clear();
        self.dirty.clear();
        self.merged = ResourceSet::default();
        self.changed = None;
        self.rescan = true;
        self.provided = false;
    }

    /// The full load, when the fast path cannot vouch for the result.
    fn full(&mut self, dirs: &[PathBuf]) -> Loaded {
        match ResourceSet::from_dirs(dirs) {
            Err(errors) => {
                // The last good load stays; `dirty` says what to read again.
                Err(errors)
            }
            Ok((set, warnings)) => {
                self.reset(dirs);
                self.merged = set;
                Ok(Load::Changed(warnings))
            }
        }
    }

    /// Replaces the resources with `set`, which no file backs (the next
    /// [`FileCache::load`] parses every file).
    pub(crate) fn set(&mut self, set: ResourceSet) {
        self.reset(&[]);
        self.endpoints_only = None;
        self.merged = set;
    }

    /// [`set`](Self::set) for a Kubernetes provider's resources, which
    /// [`update_provided`](Self::update_provided) then keeps up to date.
    pub(crate) fn set_provided(&mut self, set: ResourceSet) {
        self.set(set);
        self.provided = true;
    }

    /// Updates the provider's resources in place with `update`, which changes exactly
    /// the objects `changed` names (added to [`changed`](Self::changed)). Returns
    /// `false`, changing nothing, when the cache does not hold a provider's resources.
    pub(crate) fn update_provided(
        &mut self,
        update: impl FnOnce(&mut ResourceSet),
        changed: &BTreeSet<ResourceRef>,
    ) -> bool {
        if !self.provided {
            return false;
        }
        update(&mut self.merged);
        if let Some(all) = &mut self.changed {
            all.extend(changed.iter().cloned());
        }
        true
    }

    /// Whether the last load changed EndpointSlices alone, and the Services whose
    /// slices it changed (see the field).
    pub(crate) fn endpoints_only(&self) -> Option<&BTreeSet<(String, String)>> {
        self.endpoints_only.as_ref()
    }

    /// The objects (kind as in manifests, namespace, name) added, removed or modified
    /// by the loads since the last [`take_changed`](Self::take_changed); `None` when
    /// unknown (no take since a first load, a load no file backs, or a rescan that fell
    /// back to the full load).
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "the tests read it without taking it")
    )]
    pub(crate) fn changed(&self) -> Option<&BTreeSet<ResourceRef>> {
        self.changed.as_ref()
    }

    /// [`changed`](Self::changed), and starts collecting afresh: call it when the
    /// resources are translated, so loads that were not (EndpointSlice files only)
    /// count towards the next translation.
    pub(crate) fn take_changed(&mut self) -> Option<BTreeSet<ResourceRef>> {
        self.changed.replace(BTreeSet::new())
    }

    /// How many files the last load read.
    pub(crate) fn files_read(&self) -> usize {
        self.read
    }

    /// The resources of the last successful load.
    pub(crate) fn resources(&self) -> &ResourceSet {
        &self.merged
    }

    /// The paths to read for `named`: (root index, path) of known and loadable files.
    fn candidates(
        &self,
        dirs: &[PathBuf],
        named: &BTreeSet<PathBuf>,
    ) -> Result<Vec<(usize, PathBuf, bool)>, Fallback> {
        let mut paths = Vec::with_capacity(named.len());
        for path in named {
            if let Some(root) = self.order_root(path) {
                if path.is_dir() {
                    return Err(Fallback::Rescan);
                }
                paths.push((root, path.clone(), path.is_file()));
                continue;
            }
            match classify(dirs, path) {
                Named::File(root) => paths.push((root, path.clone(), true)),
                Named::Absent(_) => {}
                Named::Ignored if !self.symlinked => {}
                Named::Ignored | Named::Rescan => return Err(Fallback::Rescan),
            }
            // A directory renamed or removed with loaded files in it.
            if self.files.keys().any(|f| f.starts_with(path)) {
                return Err(Fallback::Rescan);
            }
        }
        Ok(paths)
    }

    /// The root index of a loaded file.
    fn order_root(&self, path: &Path) -> Option<usize> {
        self.files.get(path)?;
        self.order.iter().find(|(_, p)| p == path).map(|(r, _)| *r)
    }

    /// Every file to read for a rescan: those [`ResourceSet::from_dirs`] reads now, and
    /// the loaded ones that are gone. `None` if a directory cannot be read.
    fn listing(&mut self, dirs: &[PathBuf]) -> Option<Vec<(usize, PathBuf, bool)>> {
        let mut listed = Vec::new();
        let mut symlinked = false;
        for (root, dir) in dirs.iter().enumerate() {
            symlinked |= is_symlink(dir);
            let mut files = Vec::new();
            if dir.is_file() {
                files.push(dir.clone());
            } else {
                collect_files(dir, &mut files, &mut symlinked)?;
            }
            listed.extend(files.into_iter().map(|f| (root, f, true)));
        }
        self.symlinked = symlinked;
        let present: std::collections::HashSet<&PathBuf> =
            listed.iter().map(|(_, p, _)| p).collect();
        if present.len() != listed.len() {
            // A file under two roots: the full load names the duplicates.
            return None;
        }
        let gone: Vec<_> = self
            .order
            .iter()
            .filter(|(_, p)| !present.contains(p))
            .map(|(r, p)| (*r, p.clone(), false))
            .collect();
        listed.extend(gone);
        Some(listed)
    }

    /// Reads `paths` (and the paths a refused load left) and applies what changed.
    fn attempt(
        &mut self,
        dirs: &[PathBuf],
        mut paths: Vec<(usize, PathBuf, bool)>,
    ) -> Result<Load, Fallback> {
        for path in self.dirty.keys() {
            if paths.iter().any(|(_, p, _)| p == path) {
                continue;
            }
            let root = self
                .order_root(path)
                .or_else(|| match classify(dirs, path) {
                    Named::File(root) | Named::Absent(root) => Some(root),
                    Named::Ignored | Named::Rescan => None,
                });
            if let Some(root) = root {
                paths.push((root, path.clone(), path.is_file()));
            }
        }
        // Read everything first; nothing changes until every file parsed.
        self.read = paths.len();
        let mut read = Vec::with_capacity(paths.len());
        let mut same_as_attempted = true;
        for (root, path, present) in paths {
            let (state, text) = if present {
                match std::fs::read(&path) {
                    // Text that is not UTF-8 is remembered by its bytes too, so another
                    // such text is a change (the full load then refuses it).
                    Ok(bytes) => (
                        Some(fingerprint(&self.hasher, &bytes)),
                        String::from_utf8(bytes).ok(),
                    ),
                    Err(e)
                        if e.kind() == std::io::ErrorKind::NotFound
                            && std::fs::symlink_metadata(&path).is_err() =>
                    {
                        (None, None)
                    }
                    Err(_) => (UNREADABLE, None),
                }
            } else {
                (None, None)
            };
            let good = self.files.get(&path).map(|c| c.text);
            let attempted = self.dirty.get(&path).copied().unwrap_or(good);
            same_as_attempted &= state == attempted;
            read.push((root, path, state, text, good));
        }
        if same_as_attempted && self.backed {
            return Ok(Load::Unchanged);
        }
        // After a refusal, the next good load is a full reload (it supersedes the
        // refusal), never an endpoints-only update.
        let after_refusal = !self.dirty.is_empty();
        // From here on a refusal remembers what it read.
        for (_, path, state, _, good) in &read {
            if state != good {
                self.dirty.insert(path.clone(), *state);
            } else {
                self.dirty.remove(path);
            }
        }
        let mut updates = Vec::new();
        for (root, path, state, text, good) in read {
            if state == good {
                continue;
            }
            if state == UNREADABLE || (state.is_some() && text.is_none()) {
                return Err(Fallback::Full);
            }
            let parsed = match text {
                Some(text) => {
                    let name = path.display().to_string();
                    Some(
                        ResourceSet::from_documents([(name.as_str(), text.as_str())])
                            .map_err(|_| Fallback::Full)?,
                    )
                }
                None => None,
            };
            updates.push(Update {
                path,
                root,
                state,
                parsed,
            });
        }
        self.check_duplicates(&updates)?;
        self.apply(updates);
        if after_refusal {
            self.endpoints_only = None;
        }
        self.dirty.clear();
        self.backed = true;
        let mut warnings = Vec::new();
        for (_, path) in &self.order {
            if let Some(cached) = self.files.get(path) {
                warnings.extend(cached.warnings.iter().cloned());
            }
        }
        Ok(Load::Changed(warnings))
    }

    /// Refuses `updates` if a resource they add is defined in another file.
    fn check_duplicates(&self, updates: &[Update]) -> Result<(), Fallback> {
        // What the updated files hold now may be in them again.
        let mut own = Vec::new();
        for update in updates {
            let Some(cached) = self.files.get(&update.path) else {
                continue;
            };
            if let Some(i) = self.order.iter().position(|(_, p)| *p == update.path) {
                own.extend(chunk_keys(&self.merged, &self.offsets(i), &cached.counts));
            }
        }
        own.sort_unstable();
        let mut fresh = std::collections::HashSet::with_hasher(FoldBuild);
        for update in updates {
            let Some((set, _)) = &update.parsed else {
                continue;
            };
            for key in chunk_keys(set, &[0; gatekit_k8s::manifest::KINDS], &counts(set)) {
                if !fresh.insert(key) {
                    return Err(Fallback::Full);
                }
                if self.keys.binary_search(&key).is_ok() && own.binary_search(&key).is_err() {
                    return Err(Fallback::Full);
                }
            }
        }
        Ok(())
    }

    /// Replaces the chunks of the updated files in the merged set (see the module docs).
    fn apply(&mut self, updates: Vec<Update>) {
        // Out: the old chunks of every updated file, from the back.
        let mut old = Vec::new();
        let mut gone = Vec::new();
        let mut at: Vec<usize> = updates
            .iter()
            .filter_map(|u| self.order.iter().position(|(_, p)| *p == u.path))
            .collect();
        at.sort_unstable();
        for &i in at.iter().rev() {
            let (_, path) = self.order.remove(i);
            let Some(cached) = self.files.remove(&path) else {
                continue;
            };
            let offsets = self.offsets(i);
            gone.extend(chunk_keys(&self.merged, &offsets, &cached.counts));
            old.push(take_chunk(&mut self.merged, &offsets, &cached.counts));
        }
        let mut new: Vec<(usize, PathBuf, Fingerprint, ResourceSet, Vec<Warning>)> = updates
            .into_iter()
            .filter_map(|u| {
                let (set, warnings) = u.parsed?;
                Some((u.root, u.path, u.state?, set, warnings))
            })
            .collect();
        {
            let old_refs: Vec<&ResourceSet> = old.iter().collect();
            let new_refs: Vec<&ResourceSet> = new.iter().map(|n| &n.3).collect();
            if let Some(changed) = &mut self.changed {
                changed.extend(ResourceSet::changed_objects(&old_refs, &new_refs));
            }
            let slices_only = |s: &&ResourceSet| {
                counts(s)
                    .iter()
                    .enumerate()
                    .all(|(k, n)| k == SLICES || *n == 0)
            };
            // Nothing updated: not an endpoint change.
            let updated = !old_refs.is_empty() || !new_refs.is_empty();
            if self.backed
                && updated
                && old_refs.iter().all(slices_only)
                && new_refs.iter().all(slices_only)
            {
                let mut services = BTreeSet::new();
                for set in old_refs.iter().chain(&new_refs) {
                    services.extend(slice_services(set));
                }
                self.endpoints_only = Some(services);
            }
        }
        drop(old);
        // In: the new chunks at their file-order positions.
        new.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let mut added = Vec::new();
        for (root, path, text, set, warnings) in new {
            let i = self
                .order
                .partition_point(|(r, p)| (*r, p.as_path()) < (root, path.as_path()));
            let offsets = self.offsets(i);
            added.extend(chunk_keys(
                &set,
                &[0; gatekit_k8s::manifest::KINDS],
                &counts(&set),
            ));
            let counts = counts(&set);
            put_chunk(&mut self.merged, &offsets, set);
            self.order.insert(i, (root, path.clone()));
            self.files.insert(
                path,
                Cached {
                    text,
                    counts,
                    warnings,
                },
            );
        }
        // After many files were removed: their room goes back (11 MB for 5,000 routes).
        self.merged.shrink_sparse();
        replace_keys(&mut self.keys, gone, added);
    }

    /// Where the chunk of the file at `order[i]` starts, per kind.
    fn offsets(&self, i: usize) -> Counts {
        let mut offsets = [0; gatekit_k8s::manifest::KINDS];
        for (_, path) in &self.order[..i] {
            if let Some(cached) = self.files.get(path) {
                for (o, n) in offsets.iter_mut().zip(cached.counts) {
                    *o += n;
                }
            }
        }
        offsets
    }
}

/// What a named path that is not a loaded file is.
enum Named {
    /// A file [`ResourceSet::from_dirs`] reads (under this root).
    File(usize),
    /// Where such a file would be, but nothing is there.
    Absent(usize),
    /// A name it never reads (hidden, another extension, outside the roots).
    Ignored,
    /// A directory, a root, or a path under two roots: read everything.
    Rescan,
}

fn classify(dirs: &[PathBuf], path: &Path) -> Named {
    let mut under = dirs.iter().enumerate().filter(|(_, d)| path.starts_with(d));
    let (Some((root, dir)), None) = (under.next(), under.next()) else {
        // A root itself, an ancestor, a path under two roots, or one the roots do not
        // name as such (a symbolic link's target, a relative root): read everything.
        return Named::Rescan;
    };
    if path == dir {
        return if dir.is_dir() {
            Named::Rescan
        } else {
            Named::File(root)
        };
    }
    let Ok(rel) = path.strip_prefix(dir) else {
        return Named::Ignored;
    };
    if rel
        .components()
        .any(|c| c.as_os_str().to_str().is_none_or(|n| n.starts_with('.')))
    {
        return Named::Ignored;
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() => Named::Rescan,
        _ if !is_manifest(path) => Named::Ignored,
        Ok(_) => Named::File(root),
        Err(_) => Named::Absent(root),
    }
}

fn is_manifest(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"))
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn fingerprint(hasher: &std::collections::hash_map::RandomState, text: &[u8]) -> Fingerprint {
    (text.len(), hasher.hash_one(text))
}

/// The index of EndpointSlices in [`Counts`].
const SLICES: usize = {
    let mut i = 0;
    let mut found = usize::MAX;
    macro_rules! find {
        ($field:ident, $kind:literal) => {
            if matches!($kind.as_bytes(), b"EndpointSlice") {
                found = i;
            }
            i += 1;
        };
    }
    gatekit_k8s::for_each_resource_kind!(find);
    let _ = i;
    found
};

/// The Services (namespace, name) the EndpointSlices of `set` belong to.
fn slice_services(set: &ResourceSet) -> impl Iterator<Item = (String, String)> + '_ {
    use gatekit_k8s::types::Object;
    set.endpoint_slices.iter().filter_map(|s| {
        let service = s.service()?;
        let ns = s.namespace().unwrap_or("default");
        Some((ns.to_owned(), service.to_owned()))
    })
}

/// The files [`ResourceSet::from_dirs`] reads under `dir`, in its order: names sorted
/// per directory, recursively, names starting with `.` skipped; `symlinked` set if one
/// of them (or a directory on the way) is a symbolic link. `None` if a directory cannot
/// be read.
fn collect_files(dir: &Path, files: &mut Vec<PathBuf>, symlinked: &mut bool) -> Option<()> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            *symlinked |= is_symlink(&path);
            collect_files(&path, files, symlinked)?;
        } else if is_manifest(&path) {
            *symlinked |= is_symlink(&path);
            files.push(path);
        }
    }
    Some(())
}

/// How many resources of each kind `set` holds, in [`ResourceSet`] field order
/// ([`gatekit_k8s::for_each_resource_kind`]), as [`take_chunk`] and [`put_chunk`] index
/// them.
#[allow(
    unused_assignments,
    reason = "the last kind's index step is never read"
)]
fn counts(set: &ResourceSet) -> Counts {
    let mut out = [0; gatekit_k8s::manifest::KINDS];
    let mut i = 0;
    macro_rules! count {
        ($field:ident, $kind:literal) => {
            out[i] = set.$field.len();
            i += 1;
        };
    }
    gatekit_k8s::for_each_resource_kind!(count);
    out
}

/// The duplicate index's key of a resource: a hash of its kind, namespace and name.
fn key(kind: &str, namespace: Option<&str>, name: &str) -> u64 {
    FoldBuild.hash_one((kind, namespace, name))
}

/// The keys ([`key`]) of `counts` resources of each kind, from `offsets` on, in `set`.
#[allow(
    unused_assignments,
    reason = "the last kind's index step is never read"
)]
fn chunk_keys(set: &ResourceSet, offsets: &Counts, counts: &Counts) -> Vec<u64> {
    use gatekit_k8s::types::Object;
    let mut out = Vec::new();
    let mut i = 0;
    macro_rules! keys {
        ($field:ident, $kind:literal) => {
            let list = &set.$field;
            let at = offsets[i].min(list.len());
            let end = (at + counts[i]).min(list.len());
            out.extend(
                list[at..end]
                    .iter()
                    .map(|o| key($kind, o.namespace(), o.name())),
            );
            i += 1;
        };
    }
    gatekit_k8s::for_each_resource_kind!(keys);
    out
}

/// Takes `gone` out of `keys` (sorted) and puts `added` in, keeping it sorted and
/// exactly sized.
fn replace_keys(keys: &mut Vec<u64>, mut gone: Vec<u64>, mut added: Vec<u64>) {
    if gone.is_empty() && added.is_empty() {
        return;
    }
    gone.sort_unstable();
    added.sort_unstable();
    let mut out = Vec::with_capacity((keys.len() + added.len()).saturating_sub(gone.len()));
    let mut new = added.into_iter().peekable();
    for &k in keys.iter().filter(|k| gone.binary_search(k).is_err()) {
        while let Some(a) = new.next_if(|a| *a < k) {
            out.push(a);
        }
        out.push(k);
    }
    out.extend(new);
    out.shrink_to_fit();
    *keys = out;
}

/// Moves `counts` resources of each kind, from `offsets` on, out of `set`.
#[allow(
    unused_assignments,
    reason = "the last kind's index step is never read"
)]
fn take_chunk(set: &mut ResourceSet, offsets: &Counts, counts: &Counts) -> ResourceSet {
    fn take<T>(items: &mut Vec<T>, at: usize, n: usize) -> Vec<T> {
        let at = at.min(items.len());
        let end = (at + n).min(items.len());
        items.drain(at..end).collect()
    }
    let mut chunk = ResourceSet::default();
    let mut i = 0;
    macro_rules! take {
        ($field:ident, $kind:literal) => {
            chunk.$field = take(&mut set.$field, offsets[i], counts[i]);
            i += 1;
        };
    }
    gatekit_k8s::for_each_resource_kind!(take);
    chunk
}

/// Moves every resource of `from` into `into`, at `offsets` per kind.
#[allow(
    unused_assignments,
    reason = "the last kind's index step is never read"
)]
fn put_chunk(into: &mut ResourceSet, offsets: &Counts, from: ResourceSet) {
    fn put<T>(items: &mut Vec<T>, at: usize, from: Vec<T>) {
        let at = at.min(items.len());
        if from.len() > items.capacity() - items.len() {
            // Room for an eighth more, not double: still amortised O(1) per resource,
            // but at most 1/8 of these large structs' room stays unused.
            items.reserve_exact(from.len().max(items.len() / 8));
        }
        items.splice(at..at, from);
    }
    let mut i = 0;
    macro_rules! put {
        ($field:ident, $kind:literal) => {
            put(&mut into.$field, offsets[i], from.$field);
            i += 1;
        };
    }
    gatekit_k8s::for_each_resource_kind!(put);
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: gw }\nspec:\n  gatewayClassName: gatekit\n  listeners: [{ name: http, port: 8080, protocol: HTTP }]\n";
    const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: { name: r }\nspec:\n  parentRefs: [{ name: gw }]\n  rules: [{ backendRefs: [{ name: web, port: 80 }] }]\n";
    const REST: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: { name: gatekit }
spec: { controllerName: gatekit.io/gateway-controller }
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: { name: ls }
spec:
  parentRef: { name: gw }
  listeners: [{ name: extra, port: 8080, protocol: HTTP, hostname: extra.example.com }]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: { name: g }
spec:
  parentRefs: [{ name: gw }]
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: { name: rg }
spec:
  from: [{ group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: other }]
  to: [{ group: "", kind: Service }]
---
apiVersion: v1
kind: Service
metadata: { name: web }
spec: { ports: [{ name: http, port: 80 }] }
---
apiVersion: v1
kind: Namespace
metadata: { name: apps }
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: { name: web-1, labels: { kubernetes.io/service-name: web } }
addressType: IPv4
ports: [{ name: http, port: 8080 }]
endpoints: [{ addresses: ["10.0.0.1"] }]
---
apiVersion: v1
kind: Secret
metadata: { name: s }
type: kubernetes.io/tls
stringData: { tls.crt: x, tls.key: y }
---
apiVersion: gatekit.io/v1alpha1
kind: BackendPolicy
metadata: { name: p }
spec: { targetRefs: [{ kind: Service, name: web }] }
---
apiVersion: gatekit.io/v1alpha1
kind: TrafficPolicy
metadata: { name: tp }
spec: { targetRefs: [{ kind: Gateway, name: gw }] }
"#;

    fn slice(name: &str, service: &str, ip: &str) -> String {
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{ name: {name}, labels: {{ kubernetes.io/service-name: {service} }} }}\naddressType: IPv4\nports: [{{ port: 8080 }}]\nendpoints: [{{ addresses: [\"{ip}\"] }}]\n"
        )
    }

    #[test]
    fn a_load_that_changed_only_endpoint_slices_names_their_services() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("a.yaml", GW);
        write("b.yaml", ROUTE);
        write("web.yaml", &slice("web-1", "web", "10.0.0.1"));
        write("api.yaml", &slice("api-1", "api", "10.0.1.1"));
        let mut cache = FileCache::default();
        cache.load(&dirs, None).unwrap();
        assert_eq!(
            cache.endpoints_only(),
            None,
            "a first load is not incremental"
        );
        let names = |cache: &FileCache| {
            cache.endpoints_only().map(|s| {
                s.iter()
                    .map(|(ns, n)| format!("{ns}/{n}"))
                    .collect::<Vec<_>>()
            })
        };

        // One slice file rewritten.
        write("web.yaml", &slice("web-1", "web", "10.0.0.2"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(names(&cache), Some(vec!["default/web".to_owned()]));
        // A slice moved to another Service: both are named.
        write("web.yaml", &slice("web-1", "api", "10.0.0.2"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(
            names(&cache),
            Some(vec!["default/api".to_owned(), "default/web".to_owned()])
        );
        // A slice file removed, and one added.
        std::fs::remove_file(dir.path().join("api.yaml")).unwrap();
        write("new.yaml", &slice("new-1", "new", "10.0.2.1"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(
            names(&cache),
            Some(vec!["default/api".to_owned(), "default/new".to_owned()])
        );
        // Anything else changed: a full translation.
        write("b.yaml", &ROUTE.replace("name: r }", "name: r2 }"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(names(&cache), None, "a route changed");
        write(
            "web.yaml",
            &format!("{}---\n{ROUTE}", slice("web-1", "web", "10.0.0.3"))
                .replace("name: r }", "name: r3 }"),
        );
        cache.load(&dirs, None).unwrap();
        assert_eq!(
            names(&cache),
            None,
            "a file holding a slice and a route changed"
        );
        write("web.yaml", &slice("web-1", "web", "10.0.0.3"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(names(&cache), None, "the route left that file");
        write("web.yaml", &slice("web-1", "web", "10.0.0.4"));
        cache.load(&dirs, None).unwrap();
        assert_eq!(names(&cache), Some(vec!["default/web".to_owned()]));
        // A late event with nothing changed.
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Unchanged));
        assert_eq!(names(&cache), None);
    }

    #[test]
    fn incremental_load_matches_from_dirs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.yaml"), GW).unwrap();
        std::fs::write(dir.path().join("sub/b.yml"), ROUTE).unwrap();
        std::fs::write(dir.path().join("c.yaml"), REST).unwrap();
        std::fs::write(dir.path().join(".hidden.yaml"), "not: [yaml").unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let full = ResourceSet::from_dirs(&dirs).unwrap().0;
        let mut cache = FileCache::default();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        let first = cache.resources().clone();
        assert_eq!(format!("{first:?}"), format!("{full:?}"));
        assert_eq!(cache.files.len(), 3);
        // Every kind is present, so a field `extend` forgot would show above.
        for (kind, n) in [
            ("gateway_classes", full.gateway_classes.len()),
            ("listener_sets", full.listener_sets.len()),
            ("grpc_routes", full.grpc_routes.len()),
            ("reference_grants", full.reference_grants.len()),
            ("namespaces", full.namespaces.len()),
            ("endpoint_slices", full.endpoint_slices.len()),
            ("secrets", full.secrets.len()),
            ("backend_policies", full.backend_policies.len()),
            ("traffic_policies", full.traffic_policies.len()),
        ] {
            assert_eq!(n, 1, "{kind}");
        }

        // A change in one file: the same result as a full load.
        std::fs::write(
            dir.path().join("sub/b.yml"),
            ROUTE.replace("name: r", "name: r2"),
        )
        .unwrap();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        let full = ResourceSet::from_dirs(&dirs).unwrap().0;
        assert_eq!(format!("{:?}", cache.resources()), format!("{full:?}"));

        // A file added before a cached one, one removed, one changed: the cached chunks
        // are moved into the new order.
        std::fs::write(
            dir.path().join("sub/a.yml"),
            ROUTE.replace("name: r", "name: r0"),
        )
        .unwrap();
        std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
        std::fs::write(
            dir.path().join("c.yaml"),
            REST.replace("name: web", "name: web2"),
        )
        .unwrap();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        let full = ResourceSet::from_dirs(&dirs).unwrap().0;
        assert_eq!(format!("{:?}", cache.resources()), format!("{full:?}"));
        assert_eq!(cache.files.len(), 3);
        assert_eq!(cache.resources().http_routes.len(), 2);

        // Nothing changed: nothing loaded, the same set kept.
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Unchanged));
        assert_eq!(format!("{:?}", cache.resources()), format!("{full:?}"));
    }

    #[test]
    fn files_added_one_by_one_leave_at_most_an_eighth_of_spare_room() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GW).unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let mut cache = FileCache::default();
        cache.load(&dirs, None).unwrap();
        for i in 0..200 {
            let path = dir.path().join(format!("r{i:03}.yaml"));
            std::fs::write(&path, ROUTE.replace("name: r", &format!("name: r{i}"))).unwrap();
            let named = BTreeSet::from([path]);
            assert!(matches!(
                cache.load(&dirs, Some(&named)).unwrap(),
                Load::Changed(_)
            ));
            assert_eq!(cache.files_read(), 1);
        }
        let routes = &cache.resources().http_routes;
        assert_eq!(routes.len(), 200);
        // Doubling would leave 256.
        assert!(routes.capacity() <= 225, "{}", routes.capacity());
        let full = ResourceSet::from_dirs(&dirs).unwrap().0;
        assert_eq!(format!("{:?}", cache.resources()), format!("{full:?}"));
    }

    #[test]
    fn the_same_files_again_are_unchanged_whatever_the_last_outcome() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), GW).unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let mut cache = FileCache::default();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Unchanged));
        // A refused load, then the same bad file again: unchanged, not a second refusal.
        std::fs::write(dir.path().join("b.yaml"), "not: [yaml").unwrap();
        assert!(cache.load(&dirs, None).is_err());
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Unchanged));
        // Fixed: loaded again.
        std::fs::write(dir.path().join("b.yaml"), ROUTE).unwrap();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        assert_eq!(cache.resources().http_routes.len(), 1);
        // Removing a file is a change.
        std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
        assert!(matches!(cache.load(&dirs, None).unwrap(), Load::Changed(_)));
        assert!(cache.resources().http_routes.is_empty());
    }

    #[test]
    fn errors_and_cross_file_duplicates_come_from_the_full_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), ROUTE).unwrap();
        std::fs::write(dir.path().join("b.yaml"), ROUTE).unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let mut cache = FileCache::default();
        let errors = cache.load(&dirs, None).unwrap_err();
        assert_eq!(errors, ResourceSet::from_dirs(&dirs).unwrap_err());
        std::fs::write(dir.path().join("b.yaml"), "kind: [").unwrap();
        let errors = cache.load(&dirs, None).unwrap_err();
        assert_eq!(errors, ResourceSet::from_dirs(&dirs).unwrap_err());
    }

    #[test]
    fn a_resource_may_move_between_changed_files_but_not_into_another() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("a.yaml"),
            dir.path().join("b.yaml"),
            dir.path().join("c.yaml"),
        );
        let other = ROUTE.replace("name: r }", "name: other }");
        std::fs::write(&a, ROUTE).unwrap();
        std::fs::write(&c, &other).unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        let mut cache = FileCache::default();
        cache.load(&dirs, None).unwrap();
        let named = |paths: &[&PathBuf]| paths.iter().map(|p| (*p).clone()).collect();
        // `r` moves from a.yaml to b.yaml in one load: not a duplicate.
        std::fs::write(&a, "").unwrap();
        std::fs::write(&b, ROUTE).unwrap();
        assert!(cache.load(&dirs, Some(&named(&[&a, &b]))).is_ok());
        assert_eq!(cache.resources().http_routes.len(), 2);
        // Edited in place: still no duplicate.
        std::fs::write(&b, ROUTE.replace("port: 80", "port: 81")).unwrap();
        assert!(cache.load(&dirs, Some(&named(&[&b]))).is_ok());
        // `other` is defined in c.yaml, which did not change: a duplicate.
        std::fs::write(&a, &other).unwrap();
        let errors = cache.load(&dirs, Some(&named(&[&a]))).unwrap_err();
        assert_eq!(errors, ResourceSet::from_dirs(&dirs).unwrap_err());
        // Removed from c.yaml in the same load as it is added to a.yaml: accepted.
        std::fs::write(&c, "").unwrap();
        assert!(cache.load(&dirs, Some(&named(&[&a, &c]))).is_ok());
        let full = ResourceSet::from_dirs(&dirs).unwrap().0;
        assert_eq!(format!("{:?}", cache.resources()), format!("{full:?}"));
        assert_eq!(cache.keys.len(), cache.resources().refs().len());
    }

    #[test]
    fn replaced_keys_stay_sorted_and_exact() {
        let mut keys = vec![2, 4, 6, 8];
        replace_keys(&mut keys, vec![6, 2], vec![9, 1, 6, 5]);
        assert_eq!(keys, [1, 4, 5, 6, 8, 9]);
        assert_eq!(keys.capacity(), keys.len());
        replace_keys(&mut keys, vec![1, 4, 5, 6, 8, 9], vec![]);
        assert!(keys.is_empty());
    }
}

/// The cache driven by the watcher's path sets over real files: after every change it
/// holds what a full load reads, and says exactly which objects changed.
#[cfg(test)]
mod watched {
    use std::time::Duration;

    use super::*;
    use crate::wiring::watch::{Changed, DirWatcher};

    const GW: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: { name: gw }\nspec:\n  gatewayClassName: gatekit\n  listeners: [{ name: http, port: 8080, protocol: HTTP }]\n---\napiVersion: v1\nkind: Service\nmetadata: { name: web }\nspec: { ports: [{ name: http, port: 80 }] }\n";

    fn route(name: &str, path: &str) -> String {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{ name: {name} }}\nspec:\n  parentRefs: [{{ name: gw }}]\n  rules: [{{ matches: [{{ path: {{ type: PathPrefix, value: {path} }} }}], backendRefs: [{{ name: web, port: 80 }}] }}]\n"
        )
    }

    /// 100 routes, route `edited` with another path.
    fn hundred(edited: Option<usize>) -> String {
        (0..100)
            .map(|i| {
                let path = if Some(i) == edited {
                    format!("/edited{i}")
                } else {
                    format!("/p{i}")
                };
                route(&format!("r-{i}"), &path)
            })
            .collect::<Vec<_>>()
            .join("---\n")
    }

    struct Fixture {
        dir: tempfile::TempDir,
        dirs: Vec<PathBuf>,
        watcher: DirWatcher,
        cache: FileCache,
    }

    impl Fixture {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Writes `name` as kubectl-style tools do: a hidden file renamed over it.
        fn write_atomic(&self, name: &str, text: &str) {
            let tmp = self.path(&format!(".{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(tmp, self.path(name)).unwrap();
        }

        /// Loads the watcher's path sets until the cache holds what a full load reads
        /// (or refuses as it does). Returns the outcome and the objects changed.
        async fn follow(&mut self) -> (Result<(), Vec<ManifestError>>, Vec<String>) {
            let full = ResourceSet::from_dirs(&self.dirs);
            loop {
                let changed = tokio::time::timeout(Duration::from_secs(5), self.watcher.changed())
                    .await
                    .expect("an event")
                    .expect("watching");
                let Changed::Paths(paths) = changed else {
                    panic!("files alone changed, yet a rescan: {changed:?}");
                };
                let loaded = self.cache.load(&self.dirs, Some(&paths));
                assert!(
                    self.cache.files_read() <= 2,
                    "read {} files for {paths:?}",
                    self.cache.files_read()
                );
                let outcome = match (&full, loaded) {
                    (Ok((set, _)), Ok(_))
                        if format!("{set:?}") == format!("{:?}", self.cache.resources()) =>
                    {
                        Ok(())
                    }
                    (Err(want), Err(got)) if *want == got => Err(got),
                    _ => continue,
                };
                let changed = match outcome {
                    Ok(()) => self.cache.take_changed(),
                    Err(_) => self.cache.changed().cloned(),
                };
                let changed = changed
                    .expect("known")
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                return (outcome, changed);
            }
        }
    }

    #[tokio::test]
    async fn named_changes_keep_the_cache_equal_to_a_full_load_and_name_the_changed_objects() {
        let dir = tempfile::tempdir().unwrap();
        let dirs = vec![dir.path().to_path_buf()];
        std::fs::write(dir.path().join("gw.yaml"), GW).unwrap();
        std::fs::write(dir.path().join("routes.yaml"), hundred(None)).unwrap();
        let watcher = DirWatcher::new(&dirs).unwrap();
        let mut cache = FileCache::default();
        cache.load(&dirs, None).unwrap();
        assert_eq!(cache.take_changed(), None, "a first load: unknown");
        let mut f = Fixture {
            dir,
            dirs,
            watcher,
            cache,
        };
        let ok = |names: &[&str]| -> (Result<(), Vec<ManifestError>>, Vec<String>) {
            (Ok(()), names.iter().map(|n| (*n).to_owned()).collect())
        };

        // One route edited in a 100-route file.
        f.write_atomic("routes.yaml", &hundred(Some(42)));
        assert_eq!(f.follow().await, ok(&["HTTPRoute default/r-42"]));
        // A file added (written in place), before the others in file order.
        std::fs::write(f.path("a.yaml"), route("new", "/new")).unwrap();
        assert_eq!(f.follow().await, ok(&["HTTPRoute default/new"]));
        // A file deleted.
        std::fs::remove_file(f.path("a.yaml")).unwrap();
        assert_eq!(f.follow().await, ok(&["HTTPRoute default/new"]));
        // A file renamed (its chunk moves to the end): no object changed.
        std::fs::rename(f.path("gw.yaml"), f.path("z-gw.yaml")).unwrap();
        assert_eq!(f.follow().await, ok(&[]));
        // The same route in two files: refused as the full load refuses it, nothing
        // changed yet; fixed: the new route alone.
        std::fs::write(f.path("dup.yaml"), route("r-7", "/dup")).unwrap();
        let (outcome, changed) = f.follow().await;
        assert!(outcome.is_err(), "a duplicate is refused");
        assert!(changed.is_empty(), "{changed:?}");
        f.write_atomic("dup.yaml", &route("r-x", "/dup"));
        assert_eq!(f.follow().await, ok(&["HTTPRoute default/r-x"]));
        // A vim-style save: the file moved away, written anew, the backup removed.
        std::fs::rename(f.path("routes.yaml"), f.path("routes.yaml~")).unwrap();
        std::fs::write(f.path("routes.yaml"), hundred(Some(7))).unwrap();
        std::fs::remove_file(f.path("routes.yaml~")).unwrap();
        assert_eq!(
            f.follow().await,
            ok(&["HTTPRoute default/r-42", "HTTPRoute default/r-7"])
        );
        // A Service and its route changed in one file each, under a new directory.
        std::fs::create_dir(f.path("sub")).unwrap();
        let rescan = tokio::time::timeout(Duration::from_secs(5), f.watcher.changed())
            .await
            .unwrap();
        assert_eq!(rescan, Some(Changed::Rescan), "a directory event");
    }
}
