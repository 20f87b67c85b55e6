//! Which guest image to boot.
//!
//! `$GUEST_KERNEL` names one explicitly (`cargo xtask test` sets it after
//! building). Otherwise the image is built on first use in this process,
//! from the guest sources next to this harness into the running crate's
//! target directory ([`crate::paths::guest_target_dir`]), so plain
//! `cargo test` tests the current guest sources instead of silently
//! skipping or booting a stale image.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Result, bail};

/// The guest image to boot: `$GUEST_KERNEL`, else a build of the guest
/// sources (once per process; cargo skips it when nothing changed).
pub fn kernel_image() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GUEST_KERNEL") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("GUEST_KERNEL={} does not exist; build the guest with `cargo xtask build`", path.display());
        }
        return Ok(path);
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| guest_build::build_into(&guest_build::workspace_root(), &crate::paths::guest_target_dir()))
        .clone()
        .map_err(|e| {
            anyhow::anyhow!("{e}. The end-to-end tests need the guest image: run them with `cargo xtask test`")
        })
}
