//! The `gatekit` binary. Until the standalone binary lands it only prints its version;
//! run `cargo run -p gatekit-examples --example demo` for a working gateway.

fn main() {
    println!("gatekit {}", env!("CARGO_PKG_VERSION"));
}
