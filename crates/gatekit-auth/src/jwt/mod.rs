//! JWT: see the crate docs.
