//! The `gatekit` binary. All logic lives in the `gatekit_bin` library; see `gatekit --help`.

use clap::Parser;

fn main() -> std::process::ExitCode {
    gatekit_bin::main(gatekit_bin::Cli::parse())
}
