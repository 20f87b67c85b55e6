//! `cargo xtask mutants`: build the guest, then run the harness's `mutants`
//! binary: the matrix once clean and once per planted guest bug, printed as
//! a kill table (bug -> the cells that caught it -> verdict) and written to
//! `target/mutants/kill-table.{json,md}`. Fails if a bug goes uncaught or a
//! cell fails clean.

use crate::cmd::{Result, cargo, root, status};

pub fn run(args: &[String]) -> Result {
    let args = args.strip_prefix(&["--".to_string()]).unwrap_or(args);
    if !args.iter().any(|a| a == "--help" || a == "-h") {
        crate::qemu::ensure()?;
    }
    let image = guest_build::build(&root())?;
    let mut c = cargo();
    c.args(["run", "--quiet", "--locked", "--package", "harness", "--bin", "mutants", "--"])
        .args(args)
        .env("GUEST_KERNEL", &image);
    status(c)
}
