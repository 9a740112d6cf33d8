//! An in-process Kubernetes API server for tests (being written).
