//! Routes: the model ([`Route`], [`Rule`], [`Match`], ...) and its compiled, immutable
//! form, the [`RouteTable`].
//!
//! # Semantics (Gateway API v1 HTTPRoute)
//!
//! A rule matches a request when one of its matches does (a rule without matches has one
//! match of path prefix `/`); a match holds when all of its conditions do:
//!
//! - **Host**: a route without hostnames takes any host; otherwise one of its hostnames
//!   must match, exactly (`api.example.com`) or as a wildcard (`*.example.com` matches
//!   `a.example.com` and `a.b.example.com`, not `example.com`). The request host comes
//!   from the URI authority, else the `Host` header, without port, case-insensitively.
//! - **Path** (as received, no query, no normalization): `Exact`; `PathPrefix` on whole
//!   segments (`/foo` matches `/foo`, `/foo/`, `/foo/bar`, not `/foobar`; a trailing `/`
//!   in the value is ignored; `/` matches every path); `RegularExpression` on the whole
//!   path (compiled as `^(?:...)$` with the `regex` crate).
//! - **Headers**: exact value or regex; names case-insensitive; the first value of a
//!   repeated header is the one matched.
//! - **Query parameters**: exact value or regex on the first occurrence of a
//!   (case-sensitive) name, percent-decoded lazily; see the details below.
//! - **Method**: equal. A CORS preflight (`OPTIONS` with `Origin` and
//!   `Access-Control-Request-Method`) meets the method condition of a rule with a CORS
//!   filter with the method it announces, so a rule `method: PUT` answers the preflight
//!   of a `PUT` (other requests, and other rules, compare the request's method).
//!
//! When several rules match, the one with the highest precedence wins, comparing, in
//! order, across all rules of all routes in the table:
//!
//! 1. hostname specificity: a matching exact hostname beats the longest matching wildcard,
//!    which beats shorter wildcards, which beat "no hostnames";
//! 2. an `Exact` path, then the longest `PathPrefix` (in characters, trailing `/` not
//!    counted), then `RegularExpression` (whose rank the spec leaves to implementations),
//!    then no path condition at all (so a GRPCRoute match with a method, always a path
//!    condition, beats one without, as GRPCRoute's precedence wants; HTTPRoute matches
//!    always have a path, `PathPrefix /` by default);
//! 3. a method condition present;
//! 4. the most header conditions;
//! 5. the most query parameter conditions;
//! 6. the oldest route (`created`);
//! 7. the route first in alphabetical order of `"{namespace}/{name}"`;
//! 8. the first rule of the route, then the first match of the rule.
//!
//! ## Hostname precedence falls through
//!
//! The HTTPRoute spec (`spec.hostnames`) says: "In the event that multiple HTTPRoutes
//! specify intersecting hostnames (e.g. overlapping wildcard matching and exact matching
//! hostnames), precedence must be given to rules from the HTTPRoute with the largest
//! number of: Characters in a matching non-wildcard hostname. Characters in a matching
//! hostname. If ties exist across multiple Routes, the matching precedence rules for
//! HTTPRouteMatches takes over." Like the match precedence of `HTTPRouteRule.matches`
//! ("Across all rules specified on applicable Routes, precedence must be given to the
//! match having ..."), this orders the rules that *match* the request: it breaks ties
//! between matching rules and never makes a rule that does not match win. So gatekit
//! treats hostname specificity as step 1 of one precedence key: when no rule of the
//! routes for `api.example.com` matches the request's path, headers and query, a rule of
//! a `*.example.com` route, or of a route without hostnames, can still take it. (Envoy-
//! based implementations that compile one virtual host per hostname answer 404 there
//! instead; this gatekit behaviour is the one the spec's wording and its "across all
//! rules" precedence describe.)
//!
//! This fall-through happens within one listener's table only. Which listener handles a
//! request is decided first, by the listener hostnames of the port ([`PortTable`], Gateway
//! API listener isolation): a request never reaches the routes of a less specific
//! listener than the one its host selects.
//!
//! # Algorithm
//!
//! [`RouteTable::build`] does all the work once:
//!
//! - Routes are sorted by steps 6 and 7. Each route's matches are put into *hostname
//!   buckets*: one per exact hostname (a hash map keyed by the lowercase name), one per
//!   wildcard suffix (keyed by `example.com` for `*.example.com`), one for routes without
//!   hostnames. A route with several hostnames is in several buckets.
//! - Within a bucket, matches are indexed by path: a hash map from each `Exact` path to
//!   its candidates, a hash map from each normalized `PathPrefix` to its candidates (each
//!   a short list scanned in order while it has fewer than five paths, as most buckets
//!   do), and a list of regex candidates. Every candidate list is sorted by steps 3 to 5 with a stable
//!   sort over candidates added in step 6 to 8 order, so the first candidate of a list
//!   whose method, headers and query all match is the best of that list.
//!
//! Each bucket is behind its own `Arc`. A [`TableBuilder`] kept across builds compiles
//! only the routes that are new (by `Arc` identity) or name a backend that resolves
//! differently, and rebuilds only the buckets they are in or were in; the others are
//! shared with the previous table.
//!
//! [`RouteTable::find`] then walks, from most to least specific, only what can match:
//!
//! - the exact-host bucket, then each wildcard bucket keyed by a suffix of the host after
//!   its first, second, ... label (longest suffix first), then the any-host bucket. All
//!   candidates of a bucket beat all candidates of the buckets after it (step 1), so the
//!   first bucket with a match decides;
//! - within a bucket: one lookup of the exact path; then the path itself and each prefix
//!   of it that ends before a `/`, longest first (one lookup per segment, skipping those
//!   longer than the bucket's longest prefix), which visits matching prefixes in step 2
//!   order; then the regexes. Within a list, the first candidate that meets its
//!   conditions wins.
//!
//! A request costs O(host labels + path segments) hash lookups (with a small
//! folded-multiply hasher, not SipHash: keys come from configuration, requests only look
//! up) plus the conditions of the candidates tried. Nothing is allocated: the host is
//! lowercased into a stack buffer, header names are pre-built [`http::HeaderName`]s, and
//! query parameters are scanned in place. Regex candidates are tried one by one, so a
//! bucket with many regexes is linear in them; the trade-off buys simple, exact
//! precedence, and regexes are rare in practice.
//!
//! ## Query parameters in detail
//!
//! The query is split on `&` and each pair on its first `=` (a pair without `=` has the
//! empty value). Only the first pair with a name counts. Names and values are
//! percent-decoded (`%41` is `A`; a `%` not followed by two hex digits stays as is; `+`
//! stays `+`, as in RFC 3986 rather than HTML forms). An exact condition compares the
//! decoded bytes on the fly; a regex sees the raw value when it has no `%`, else a copy
//! decoded into a 1 KiB stack buffer (a longer escaped value, or one that does not decode
//! to UTF-8, matches no regex).
//!
//! # Validation
//!
//! [`RouteTable::build`] rejects, with a [`ConfigError`](crate::ConfigError) naming the
//! route and field (`rules[0].matches[1].path.value`): invalid regexes, paths not starting
//! with `/`, invalid header names, empty or repeated header or query names within a match,
//! invalid hostnames (RFC 1123, IPs refused, a wildcard only as a leading `*.` label),
//! filter errors, and `ReplacePrefixMatch` in a rule with a non-`PathPrefix` match.
//! Backend names that do not resolve are not errors: that share of traffic answers 500.
//! [`RouteTable::build_partial`] leaves invalid routes out and reports them instead.

mod builder;
pub(crate) mod conditions;
mod hash;
pub use self::hash::{FastMap, FoldBuild, FoldHasher, shrink_if_sparse};
pub(crate) mod host;
mod listener;
mod model;
mod path;
mod rule;
mod state;
mod table;

#[cfg(test)]
mod tests;

pub use self::builder::TableBuilder;
pub use self::listener::PortTable;
pub use self::model::{
    BackendRef, CorsPolicy, Filter, HeaderMatch, HeaderModifier, Match, Mirror, PathMatch,
    PathModifier, QueryMatch, Redirect, Route, RouteId, Rule, RulePolicy, StringMatch, Timeouts,
    UrlRewrite,
};
pub use self::rule::{CompiledRule, WeightedBackend};
pub use self::state::{DEFAULT_RETRY_SCOPE, PolicyState};
pub use self::table::{RouteTable, RuleMatch};
