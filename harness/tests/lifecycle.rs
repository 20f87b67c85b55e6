//! Every QEMU the harness starts dies with its owner, and leaves nothing
//! behind: dropping a `Vm` kills it and removes its socket directory, and
//! even a SIGKILLed harness process takes its QEMU with it (parent-death
//! signal).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Alive and not a zombie.
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

async fn wait_gone(pid: u32, within: Duration) -> Result<()> {
    let deadline = Instant::now() + within;
    while running(pid) {
        if Instant::now() > deadline {
            bail!("QEMU (pid {pid}) is still running {within:?} after its owner went away");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// The children of `pid` named `qemu-system-*`.
fn qemu_children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Vec::new() };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse::<u32>().ok()).collect::<Vec<_>>())
        .filter(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm")).is_ok_and(|c| c.starts_with("qemu-system"))
        })
        .collect()
}

#[tokio::test]
async fn dropping_a_vm_kills_qemu_and_removes_its_sockets() -> Result<()> {
    let vm = common::boot_to_break("pc", "drop_kills_qemu").await?;
    let pid = vm.qemu_pid().context("QEMU has a pid")?;
    let sockets = vm.socket_dir().to_path_buf();
    let mode = std::fs::metadata(&sockets)?.permissions().mode() & 0o777;
    ensure!(mode == 0o700, "the socket directory must be private, it is {mode:o}");
    ensure!(running(pid));
    drop(vm);
    wait_gone(pid, Duration::from_secs(10)).await?;
    ensure!(!Path::new(&sockets).exists(), "{} was left behind", sockets.display());
    Ok(())
}

#[tokio::test]
async fn a_killed_harness_takes_its_qemu_with_it() -> Result<()> {
    // The CLI boots a guest and asks it to stop answering, so it sits there
    // waiting; then it is killed without any chance to clean up.
    let mut harness = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--profile", "pc", "selftest hang"])
        .env("HARNESS_ARTIFACTS_DIR", std::env::temp_dir().join("harness-lifecycle-artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let qemu = loop {
        if let Some(pid) = qemu_children(harness.id()).first() {
            break *pid;
        }
        if let Some(status) = harness.try_wait()? {
            bail!("the harness exited ({status}) before starting QEMU");
        }
        ensure!(Instant::now() < deadline, "the harness did not start QEMU within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    harness.kill()?;
    harness.wait()?;
    let gone = wait_gone(qemu, Duration::from_secs(10)).await;
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("harness-lifecycle-artifacts"));
    gone
}
