//! Make sure the Debian tools a command needs are there before it starts:
//! QEMU (`qemu-system-x86`) to boot guests, Graphviz (`graphviz`) to draw
//! device trees. Each is installed with apt when running as root, else the
//! command stops and says how to install it.

use std::path::Path;
use std::process::Command;

use crate::cmd::Result;

/// A binary and the Debian package that brings it.
struct Tool {
    binary: &'static str,
    package: &'static str,
}

const QEMU: Tool = Tool { binary: "qemu-system-x86_64", package: "qemu-system-x86" };
const GRAPHVIZ: Tool = Tool { binary: "dot", package: "graphviz" };

fn on_path(name: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(name).is_file()))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// QEMU (or the binary `$HARNESS_QEMU` names).
pub fn ensure() -> Result {
    if let Some(explicit) = std::env::var_os("HARNESS_QEMU") {
        return if Path::new(&explicit).is_file() {
            Ok(())
        } else {
            Err(format!("HARNESS_QEMU={} does not exist", Path::new(&explicit).display()))
        };
    }
    ensure_tool(&QEMU)
}

/// Graphviz's `dot`, which draws the device-tree pictures.
pub fn ensure_graphviz() -> Result {
    ensure_tool(&GRAPHVIZ)
}

fn ensure_tool(tool: &Tool) -> Result {
    let Tool { binary, package } = tool;
    if on_path(binary) {
        return Ok(());
    }
    let manual = format!("sudo apt-get install -y --no-install-recommends {package}");
    if !is_root() || !on_path("apt-get") {
        return Err(format!("{package} is not installed ({binary} is not on PATH). Install it with:\n    {manual}"));
    }
    eprintln!("xtask: {binary} is missing; installing {package} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", package])
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
    if installed && on_path(binary) {
        Ok(())
    } else {
        Err(format!("installing {package} failed. Install it by hand with:\n    {manual}"))
    }
}
