//! External authorization: see the crate docs.
