//! Per-run artifact directories under [`root`] (by default
//! `<target>/harness-artifacts/<name>/`, see [`crate::paths`]): console log,
//! QMP and control transcripts, uevents, snapshots, QEMU's stderr and
//! command line. A run that ends well removes its directory; any other
//! ending (an error, a panic, a kill) keeps it and says where it is.
//! `HARNESS_KEEP_ARTIFACTS=1` keeps them for passing runs too.
//!
//! A directory belongs to one run at a time: the run holds a lock on its
//! `.lock` file. A second run with the same name while the first is alive
//! (two tests, two test binaries) gets `<name>.2`, `<name>.3`, ... instead
//! of overwriting it; a directory whose run has ended is cleared and reused,
//! so reruns do not pile up.
//!
//! A directory that goes away mid-run (removed, replaced by a file) is not
//! a silent loss: the files already open keep writing into the void, so
//! every error of the run and the end of a failed run check the directory
//! ([`unwritable`]) and say that the artifacts could not be written.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// One run's artifact directory; see the module docs.
pub struct Artifacts {
    dir: PathBuf,
    passed: bool,
    /// Locked for as long as the run lives.
    _lock: File,
}

/// The directory all runs write under: `$HARNESS_ARTIFACTS_DIR`, else
/// `<target>/harness-artifacts` of the crate running the tests.
pub fn root() -> PathBuf {
    crate::paths::artifacts_root()
}

/// Most runs with one name alive at once before giving up.
const MAX_SAME_NAME: usize = 1000;

impl Artifacts {
    /// A fresh directory for `name` under [`root`]; a leftover from an
    /// earlier run of that name is cleared, a directory in use by a live
    /// run is left alone (the new one gets a numbered sibling).
    pub fn create(name: &str) -> Result<Artifacts> {
        Artifacts::create_in(&root(), name)
    }

    /// [`Artifacts::create`] under another root.
    pub fn create_in(root: &Path, name: &str) -> Result<Artifacts> {
        let safe: String =
            name.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' }).collect();
        std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
        for n in 1..=MAX_SAME_NAME {
            let dir = if n == 1 { root.join(&safe) } else { root.join(format!("{safe}.{n}")) };
            if let Some(lock) = claim(&dir)? {
                clear_except_lock(&dir)?;
                return Ok(Artifacts { dir, passed: false, _lock: lock });
            }
        }
        bail!("{MAX_SAME_NAME} runs named {name:?} are using artifact directories under {}", root.display())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A file in the directory.
    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// Write a file; failures are ignored.
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

/// Take `dir` for this run if no live run holds it: its `.lock` file
/// locked, and still the file in the directory (a run that passed may have
/// removed the directory between our open and our lock).
fn claim(dir: &Path) -> Result<Option<File>> {
    loop {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join(".lock");
        let lock = match File::options().create(true).truncate(false).write(true).open(&lock_path) {
            Ok(f) => f,
            // Removed under us by the run that had it: try again.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("opening {}", lock_path.display())),
        };
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", lock_path.display()));
            }
        }
        let ours = lock.metadata()?;
        match std::fs::metadata(&lock_path) {
            Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => return Ok(Some(lock)),
            _ => continue,
        }
    }
}

/// Remove an earlier run's files, keeping the lock we hold.
fn clear_except_lock(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        if entry.file_name() == ".lock" {
            continue;
        }
        let path = entry.path();
        let removed =
            if entry.file_type()?.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.with_context(|| format!("clearing {}", path.display()))?;
    }
    Ok(())
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
    fn two_live_runs_with_one_name_get_their_own_directories() {
        let root = tempfile::tempdir().unwrap();
        let first = Artifacts::create_in(root.path(), "t-pc").unwrap();
        first.write("console.log", "first");
        let second = Artifacts::create_in(root.path(), "t-pc").unwrap();
        assert_eq!(second.dir(), root.path().join("t-pc.2"));
        assert_eq!(std::fs::read_to_string(first.path("console.log")).unwrap(), "first", "left alone");
        drop(second);
        drop(first);
        // Both failed (never marked passed): kept. A rerun reuses and clears
        // the first directory.
        let rerun = Artifacts::create_in(root.path(), "t-pc").unwrap();
        assert_eq!(rerun.dir(), root.path().join("t-pc"));
        assert!(!rerun.path("console.log").exists(), "the old run's files are cleared");
    }

    #[test]
    fn a_passed_run_removes_its_directory_and_a_failed_one_keeps_it() {
        let root = tempfile::tempdir().unwrap();
        let mut passed = Artifacts::create_in(root.path(), "ok").unwrap();
        let failed = Artifacts::create_in(root.path(), "bad").unwrap();
        passed.mark_passed();
        let (passed_dir, failed_dir) = (passed.dir().to_path_buf(), failed.dir().to_path_buf());
        drop(passed);
        drop(failed);
        assert!(!passed_dir.exists());
        assert!(failed_dir.exists());
    }

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
