//! `cargo xtask review`: `cargo insta review`, installing cargo-insta first
//! if it is missing.

use std::process::Command;

use crate::cmd::{Result, cargo, status};

pub fn run() -> Result {
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
