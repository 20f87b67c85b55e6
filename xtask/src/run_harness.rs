//! `cargo xtask matrix | merge | bench | run | tree`: build the guest, then hand over to the
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
    // Help, listing cells, merging reports and drawing trees boot nothing.
    let help = args.iter().any(|a| ["--help", "-h"].contains(&a.as_str()));
    let boots = !help && !args.iter().any(|a| a == "--list") && !["merge", "tree"].contains(&command);
    if boots {
        crate::qemu::ensure()?;
    }
    // Trees, and failed matrix cells' pictures, are drawn by Graphviz.
    if !help && ["matrix", "tree"].contains(&command) {
        crate::qemu::ensure_graphviz()?;
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
