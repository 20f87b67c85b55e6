//! `cargo xtask review`: draw every pending snapshot beside the committed
//! one (`target/review/*.svg`, through `harness tree --pending`), then
//! `cargo insta review`, installing cargo-insta first if it is missing.

use std::process::Command;

use crate::cmd::{Result, cargo, status};

pub fn run() -> Result {
    crate::run_harness::run("tree", &["--pending".to_string()])?;
    let have = Command::new("cargo-insta").arg("--version").output().is_ok_and(|o| o.status.success());
    if !have {
        eprintln!("xtask: installing cargo-insta (cargo install cargo-insta --locked)");
        let mut install = cargo();
        install.args(["install", "cargo-insta", "--locked"]);
        status(install)?;
    }
    let mut review = cargo();
    review.args(["insta", "review", "--workspace"]);
    status(review)
}
