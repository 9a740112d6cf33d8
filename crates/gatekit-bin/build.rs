//! Release builds of the `gatekit` binary place the functions that start-up and serving
//! run first in `.text`, in the order of `symbol-order.txt` (written by
//! `scripts/symbol-order.sh` from a training run). Without it they are spread over the
//! whole 20 MB text, and the kernel maps each in with its 64 KiB neighbours: an idle
//! gateway had 10 MB of the binary resident, 4 MB with the order (docs/benchmarks.md,
//! "The binary's own pages").
//!
//! Only for `x86_64-unknown-linux-gnu`, where rustc links with its own lld by default;
//! a build that names another linker, or sets `GATEKIT_SYMBOL_ORDER=off`, links as
//! usual. Names the file no longer matches (another toolchain, other dependency
//! versions) are skipped by lld: the binary is the same, only less ordered.
//!
//! The same builds pack relative relocations (`-z pack-relative-relocs`) when the
//! system's glibc is 2.36 or later (the shipped image's, distroless cc-debian12, is);
//! `GATEKIT_RELR=off` links without.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=GATEKIT_SYMBOL_ORDER");
    println!("cargo:rerun-if-env-changed=GATEKIT_RELR");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = rustflags.contains("linker")
        || rustflags.contains("fuse-ld")
        || env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some();
    if var("PROFILE") != "release" || var("TARGET") != "x86_64-unknown-linux-gnu" || other_linker {
        return;
    }
    let order = Path::new(&var("CARGO_MANIFEST_DIR")).join("symbol-order.txt");
    if var("GATEKIT_SYMBOL_ORDER") != "off" && order.is_file() {
        println!(
            "cargo:rustc-link-arg-bin=gatekit=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=gatekit=-Wl,--no-warn-symbol-ordering");
    }
    // Relative relocations packed (DT_RELR): 4 KB of relocation table instead of 590 KB,
    // which the loader reads at every start (idle RSS 0.5 MB lower). Only a C library
    // that understands it can load such a binary; glibc 2.36 and later say so with the
    // GLIBC_ABI_DT_RELR version, which lld then makes the binary require.
    if var("GATEKIT_RELR") != "off" && libc_knows_relr() {
        println!("cargo:rustc-link-arg-bin=gatekit=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether the system's glibc (the one the binary links against) defines
/// `GLIBC_ABI_DT_RELR` (2.36 and later).
fn libc_knows_relr() -> bool {
    const VERSION: &[u8] = b"GLIBC_ABI_DT_RELR";
    [
        "/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/lib64/libc.so.6",
        "/usr/lib64/libc.so.6",
    ]
    .iter()
    .any(|path| {
        std::fs::read(path).is_ok_and(|bytes| bytes.windows(VERSION.len()).any(|w| w == VERSION))
    })
}
