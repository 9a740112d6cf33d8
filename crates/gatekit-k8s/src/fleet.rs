//! Fleet view (being written).
