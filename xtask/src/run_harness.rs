//! `cargo xtask matrix | merge | bench | run`: build the guest, then hand over to the
//! harness CLI (it owns profiles, scenarios and QEMU).
//!
//! The harness runs in the directory the user ran `cargo xtask` from, so
//! relative paths on its command line mean what the user meant; its own
//! defaults (matrix.toml, target/matrix) are anchored at the project root.
//! When it fails it has said why: xtask only passes its exit status on.

use std::process::Command;

use crate::cmd::{Result, root};

pub fn run(command: &str, args: &[String]) -> Result {
    // `cargo xtask run -- --profile q35` is a natural way to type it, but a
    // `--` passed on would make clap read every option as a request.
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    // Help, listing cells and merging reports boot nothing.
    let boots = !args.iter().any(|a| ["--help", "-h", "--list"].contains(&a.as_str())) && command != "merge";
    if boots {
        crate::qemu::ensure()?;
    }
    let image = guest_build::build(&root())?;
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.args(["run", "--quiet", "--locked", "--package", "harness", "--bin", "harness", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .args(["--", command])
        .args(args)
        .env("GUEST_KERNEL", &image);
    let status = c.status().map_err(|e| format!("could not start cargo to build and run the harness: {e}"))?;
    if status.success() {
        return Ok(());
    }
    // The harness (or cargo, if the build failed) has printed the reason.
    std::process::exit(status.code().unwrap_or(1));
}
