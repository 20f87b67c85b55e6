//! Per-run artifact directories under `target/harness-artifacts/<name>`:
//! console log, QMP and control transcripts, uevents, snapshots, QEMU's
//! stderr. A run that ends well removes its directory; any other ending
//! (an error, a panic, a kill) keeps it and says where it is.
//! `HARNESS_KEEP_ARTIFACTS=1` keeps them for passing runs too.
//!
//! A directory that goes away mid-run (removed, replaced by a file) is not
//! a silent loss: the files already open keep writing into the void, so
//! every error of the run and the end of a failed run check the directory
//! ([`unwritable`]) and say that the artifacts could not be written.

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
        // An artifact that cannot be written must not hide the real
        // failure: it is said, and the run goes on.
        if let Err(e) = std::fs::write(self.path(file), contents) {
            eprintln!("harness: the artifact {file} could not be written in {}: {e}", self.dir.display());
        }
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
        } else if let Some(problem) = unwritable(&self.dir) {
            eprintln!("harness: artifacts could not be written: {problem}");
        } else {
            eprintln!("harness: artifacts kept in {}", self.dir.display());
        }
    }
}

/// Why the artifacts cannot be in `dir` any more (it is gone, is not a
/// directory, or takes no new file), or `None` if it is fine.
pub fn unwritable(dir: &Path) -> Option<String> {
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Err(e) => return Some(format!("{shown} is gone ({e}); what the run wrote there is lost")),
        Ok(m) if !m.is_dir() => {
            return Some(format!("{shown} is no longer a directory; what the run wrote there is lost"));
        }
        Ok(_) => {}
    }
    let probe = dir.join(".harness-write-probe");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(probe);
            None
        }
        Err(e) => Some(format!("{shown} takes no new file ({e})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gone_or_replaced_is_unwritable() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("run");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(unwritable(&dir), None);
        assert!(!dir.join(".harness-write-probe").exists(), "the probe is removed");
        std::fs::remove_dir(&dir).unwrap();
        assert!(unwritable(&dir).unwrap().contains("is gone"));
        std::fs::write(&dir, "").unwrap();
        assert!(unwritable(&dir).unwrap().contains("no longer a directory"));
    }
}
