//! Which guest image to boot.
//!
//! `$GUEST_KERNEL` names one explicitly (`cargo xtask test` sets it after
//! building). Otherwise the image is built on first use in this process, so
//! plain `cargo test` tests the current guest sources instead of silently
//! skipping or booting a stale image.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Result, bail};

pub fn kernel_image() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GUEST_KERNEL") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("GUEST_KERNEL={} does not exist; build the guest with `cargo xtask build`", path.display());
        }
        return Ok(path);
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(|| guest_build::build(&guest_build::workspace_root())).clone().map_err(|e| {
        anyhow::anyhow!("{e}. The end-to-end tests need the guest image: run them with `cargo xtask test`")
    })
}
