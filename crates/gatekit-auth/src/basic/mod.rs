//! Basic auth: see the crate docs.
