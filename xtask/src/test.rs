//! `cargo xtask test`: QEMU present, guest built, then every test in the
//! workspace: the guest kernel's host unit tests and property tests, the
//! harness's unit tests, and the end-to-end tests that boot the guest under
//! real QEMU. Under `CI=true` insta fails on a changed snapshot instead of
//! writing a new one.

use crate::cmd::{Result, cargo, root, status};

pub fn run(args: &[String]) -> Result {
    crate::qemu::ensure()?;
    // The device-tree picture tests need Graphviz's dot.
    crate::qemu::ensure_graphviz()?;
    let image = guest_build::build(&root())?;
    let mut command = cargo();
    command.args(["test", "--workspace", "--locked"]).args(args).env("GUEST_KERNEL", &image);
    status(command)
}
