//! `cargo xtask build`: build the guest image and print its path as the last
//! line of standard output (other tools read that line).

use crate::cmd::{Result, root};

pub fn run() -> Result {
    let image = guest_build::build(&root())?;
    println!("{}", image.display());
    Ok(())
}
