//! Allow and deny rules: see the crate docs.
