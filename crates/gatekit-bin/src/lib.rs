//! gatekit-bin: the process half of the `gatekit` binary.
