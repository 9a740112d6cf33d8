//! Routes: the model ([`Route`], [`Rule`], [`Match`], ...) and its compiled, immutable
//! form, the [`RouteTable`].

mod model;

pub use self::model::{
    BackendRef, Filter, HeaderMatch, HeaderModifier, Match, Mirror, PathMatch, PathModifier,
    QueryMatch, Redirect, Route, RouteId, Rule, StringMatch, Timeouts, UrlRewrite,
};
