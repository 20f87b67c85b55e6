//! Per-run artifact directories under `target/harness-artifacts/<name>`:
//! console log, QMP and control transcripts, uevents, snapshots, QEMU's
//! stderr. A run that ends well removes its directory; any other ending
//! (an error, a panic, a kill) keeps it and says where it is.
//! `HARNESS_KEEP_ARTIFACTS=1` keeps them for passing runs too.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub struct Artifacts {
    dir: PathBuf,
    passed: bool,
}

/// The directory all runs write under: `$HARNESS_ARTIFACTS_DIR`, else
/// `target/harness-artifacts` in the workspace.
pub fn root() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_ARTIFACTS_DIR") {
        return PathBuf::from(dir);
    }
    guest_build::workspace_root().join("target").join("harness-artifacts")
}

impl Artifacts {
    /// A fresh directory for `name` (its old content is removed).
    pub fn create(name: &str) -> Result<Artifacts> {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        let dir = root().join(safe);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Artifacts { dir, passed: false })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    pub fn write(&self, file: &str, contents: impl AsRef<[u8]>) {
        // An artifact that cannot be written must not hide the real failure.
        let _ = std::fs::write(self.path(file), contents);
    }

    /// The run succeeded: the directory goes when this is dropped.
    pub fn mark_passed(&mut self) {
        self.passed = true;
    }
}

impl Drop for Artifacts {
    fn drop(&mut self) {
        let keep_anyway = std::env::var_os("HARNESS_KEEP_ARTIFACTS").is_some_and(|v| v == "1");
        if self.passed && !keep_anyway {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("harness: artifacts kept in {}", self.dir.display());
        }
    }
}
