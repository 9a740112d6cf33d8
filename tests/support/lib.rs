//! Test support for gatekit's end-to-end tests: echo backends and helpers.
