//! Running child processes from the project root.

use std::path::PathBuf;
use std::process::Command;

pub type Result<T = ()> = std::result::Result<T, String>;

pub fn root() -> PathBuf {
    guest_build::workspace_root()
}

/// The cargo that runs us (`$CARGO`), for nested invocations.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Run to completion; a failure names the command.
pub fn status(mut command: Command) -> Result {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| format!("could not run {shown}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{shown} failed ({status})")) }
}
