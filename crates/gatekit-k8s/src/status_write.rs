//! Status write-back (being written).
