//! Make sure QEMU is there before anything boots a guest: install Debian's
//! `qemu-system-x86` when running as root with apt, else stop and say how.

use std::path::Path;
use std::process::Command;

use crate::cmd::Result;

const BINARY: &str = "qemu-system-x86_64";
const PACKAGE: &str = "qemu-system-x86";

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub fn ensure() -> Result {
    if let Some(explicit) = std::env::var_os("HARNESS_QEMU") {
        return if Path::new(&explicit).is_file() {
            Ok(())
        } else {
            Err(format!("HARNESS_QEMU={} does not exist", Path::new(&explicit).display()))
        };
    }
    if on_path(BINARY) {
        return Ok(());
    }
    let manual = format!("sudo apt-get install -y --no-install-recommends {PACKAGE}");
    if !is_root() || !on_path("apt-get") {
        return Err(format!("QEMU is not installed ({BINARY} is not on PATH). Install it with:\n    {manual}"));
    }
    eprintln!("xtask: {BINARY} is missing; installing {PACKAGE} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", PACKAGE])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    // A fresh machine may have no package lists yet: update and retry once.
    let installed = install()
        || (Command::new("apt-get")
            .args(["update", "-q"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
            && install());
    if installed && on_path(BINARY) {
        Ok(())
    } else {
        Err(format!("installing {PACKAGE} failed. Install it by hand with:\n    {manual}"))
    }
}
