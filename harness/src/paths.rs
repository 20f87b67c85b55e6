//! Where the harness writes: the target directory of the crate whose tests
//! are running, not the harness's own checkout (which may be read-only,
//! e.g. a git dependency, and is shared by every crate that uses it).
//!
//! | what | where |
//! |---|---|
//! | artifacts of runs | `$HARNESS_ARTIFACTS_DIR`, else `<target>/harness-artifacts/` |
//! | disk and CD images | `<target>/harness-images/` |
//! | the guest image, when built on first use | `<target>/harness-guest/` (unless `$GUEST_KERNEL` names one) |
//!
//! `<target>` is `$CARGO_TARGET_DIR` if set, else the `target` directory
//! that holds the running executable (cargo marks it with `CACHEDIR.TAG`),
//! else `harness-target` in the system's temporary directory.

use std::path::{Path, PathBuf};

/// The running crate's cargo target directory (see the module docs).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        // Cargo resolves a relative CARGO_TARGET_DIR against where it ran.
        return if dir.is_absolute() { dir } else { std::env::current_dir().unwrap_or_default().join(dir) };
    }
    std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(target_dir_holding)
        .unwrap_or_else(|| std::env::temp_dir().join("harness-target"))
}

/// The cargo target directory an executable was built into: the nearest
/// ancestor holding cargo's `CACHEDIR.TAG`.
pub fn target_dir_holding(exe: &Path) -> Option<PathBuf> {
    exe.ancestors().skip(1).find(|dir| dir.join("CACHEDIR.TAG").is_file()).map(Path::to_path_buf)
}

/// The root of every run's artifact directory: `$HARNESS_ARTIFACTS_DIR`,
/// else `<target>/harness-artifacts`.
pub fn artifacts_root() -> PathBuf {
    match std::env::var_os("HARNESS_ARTIFACTS_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => target_dir().join("harness-artifacts"),
    }
}

/// Where the disk and CD images (built from the `images` recipes) live.
pub fn images_dir() -> PathBuf {
    target_dir().join("harness-images")
}

/// One image by file name (`disk.img`, `cd-alpha.iso`, ...), as built by
/// [`crate::vm::Vm::boot`] before the first VM starts.
pub fn image(file: &str) -> PathBuf {
    images_dir().join(file)
}

/// Where the guest image is built when `$GUEST_KERNEL` is not set.
pub fn guest_target_dir() -> PathBuf {
    target_dir().join("harness-guest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_target_dir_is_the_one_cargo_tagged_above_the_executable() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("somewhere").join("target");
        std::fs::create_dir_all(target.join("debug").join("deps")).unwrap();
        let exe = target.join("debug").join("deps").join("my_test-0123");
        assert_eq!(target_dir_holding(&exe), None, "no tag, no guess");
        std::fs::write(target.join("CACHEDIR.TAG"), "Signature: 8a477f597d28d172789f06886806bc55").unwrap();
        assert_eq!(target_dir_holding(&exe), Some(target));
    }
}
