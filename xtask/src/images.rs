//! `cargo xtask images`: build the disk and CD images (recipes in the
//! `images` crate) into `target/images` and list them.

use crate::cmd::Result;

pub fn run() -> Result {
    let built = images::ensure().map_err(|e| format!("building images: {e}"))?;
    for path in built {
        println!("{}", path.display());
    }
    Ok(())
}
