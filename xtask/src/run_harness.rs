//! `cargo xtask matrix | bench | run`: build the guest, then hand over to the
//! harness CLI (it owns profiles, scenarios and QEMU).

use crate::cmd::{Result, cargo, root, status};

pub fn run(command: &str, args: &[String]) -> Result {
    // `cargo xtask run -- --profile q35` is a natural way to type it, but a
    // `--` passed on would make clap read every option as a request.
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    let wants_help = args.iter().any(|a| a == "--help" || a == "-h");
    if !wants_help {
        crate::qemu::ensure()?;
    }
    let image = guest_build::build(&root())?;
    let mut c = cargo();
    c.args(["run", "--quiet", "--locked", "--package", "harness", "--bin", "harness", "--", command])
        .args(args)
        .env("GUEST_KERNEL", &image);
    status(c)
}
