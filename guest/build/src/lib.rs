//! Build the guest image and say where it is.
//!
//! Two traps make a naive nested `cargo build` produce a guest that boots and
//! then misbehaves:
//! cargo reads `.cargo/config.toml` from the *working directory*, so the
//! bare-metal flags only apply when cargo runs inside `guest/image`; and an
//! outer cargo exports `CARGO_ENCODED_RUSTFLAGS` (even empty), which would
//! override those flags. So the build runs in `guest/image` with the outer
//! cargo's variables removed, into its own target directory.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables an outer cargo (or a user) sets that must not reach the guest
/// build.
const SCRUBBED_VARS: &[&str] = &[
    "CARGO_ENCODED_RUSTFLAGS",
    "RUSTFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_MAKEFLAGS",
    "MAKEFLAGS",
    "MFLAGS",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
];

/// The target triple the guest builds for (bare metal on the host triple,
/// see guest/image/.cargo/config.toml).
pub const GUEST_TRIPLE: &str = "x86_64-unknown-linux-gnu";

/// The workspace root, i.e. the directory holding `guest/`.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("guest/build sits two levels below the root")
        .to_path_buf()
}

/// Where the guest's own cargo puts its output.
pub fn guest_target_dir(root: &Path) -> PathBuf {
    root.join("target").join("guest")
}

/// The image a release build produces.
pub fn image_path(root: &Path) -> PathBuf {
    guest_target_dir(root).join(GUEST_TRIPLE).join("release").join("guest")
}

/// Build the guest (release) and return the image path. Cargo's own
/// up-to-date check makes this cheap when nothing changed.
pub fn build(root: &Path) -> Result<PathBuf, String> {
    build_into(root, &guest_target_dir(root))
}

/// Build the guest sources under `root` into `target_dir` (a crate that
/// uses the harness builds into its own target directory, not into the
/// harness's checkout) and return the image path.
pub fn build_into(root: &Path, target_dir: &Path) -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root.join("guest").join("image"))
        .args(["build", "--release", "--locked", "--target-dir"])
        .arg(target_dir);
    for var in SCRUBBED_VARS {
        cmd.env_remove(var);
    }
    let status = cmd.status().map_err(|e| format!("could not run cargo to build the guest: {e}"))?;
    if !status.success() {
        return Err(format!("building the guest image failed ({status}); run `cargo xtask build` to see why"));
    }
    let image = target_dir.join(GUEST_TRIPLE).join("release").join("guest");
    if !image.is_file() {
        return Err(format!("the guest build succeeded but {} is missing", image.display()));
    }
    Ok(image)
}
