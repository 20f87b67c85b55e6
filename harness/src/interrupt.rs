//! What a harness process does when it is interrupted (Ctrl-C: SIGINT, or
//! SIGTERM). By default a signal ends the process at once and no
//! destructor runs: its QEMUs still die (parent-death signal), but the
//! private socket directories would stay in the temp dir. So the first
//! [`crate::Vm::boot`] installs a handler that removes the socket
//! directories of the VMs still alive and exits with 130, as the default
//! action would have ended it (QEMU then dies with the process).
//!
//! A caller with its own Ctrl-C handling (the matrix stops its cells and
//! still writes its reports) calls [`handled_by_caller`] first; the VMs it
//! drops remove their directories themselves.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};

/// Socket directories of the VMs alive in this process.
static LIVE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static CALLER_HANDLES: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();

/// The process handles SIGINT/SIGTERM itself: install no handler.
pub fn handled_by_caller() {
    CALLER_HANDLES.store(true, Ordering::SeqCst);
}

/// A socket directory registered for removal on a signal, for as long as
/// this is alive (the [`crate::Vm`] holds it).
pub struct Registered(PathBuf);

impl Drop for Registered {
    fn drop(&mut self) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != self.0);
    }
}

/// Register `dir` to be removed if the process is interrupted, installing
/// the handler on first use (unless [`handled_by_caller`]).
pub fn register(dir: &Path) -> Registered {
    if !CALLER_HANDLES.load(Ordering::SeqCst) {
        INSTALL.call_once(install);
    }
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(dir.to_path_buf());
    Registered(dir.to_path_buf())
}

/// A thread of its own with its own runtime: a test's runtime ends with the
/// test, the handler must outlive it.
fn install() {
    let spawned = std::thread::Builder::new().name("harness-interrupt".into()).spawn(|| {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            let name = tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            };
            let dirs = std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
            eprintln!(
                "harness: {name}: removing the socket directories of {} VM(s); QEMU dies with this process",
                dirs.len()
            );
            for dir in dirs {
                let _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(130);
        });
    });
    if let Err(e) = spawned {
        eprintln!("harness: no interrupt handler ({e}): an interrupted run may leave socket directories behind");
    }
}
