//! Finding and starting QEMU, and reading how it ended.
//!
//! Every QEMU started here dies with its owner: the child is killed when its
//! handle is dropped (also while a failing test unwinds), and where
//! util-linux's `setpriv` exists QEMU also gets a parent-death signal, so
//! not even a SIGKILLed test runner leaves it behind.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use anyhow::{Result, bail};

/// QEMU's binary name, looked up on `PATH`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// How a newcomer gets QEMU on Debian.
pub const INSTALL_COMMAND: &str = "apt-get install -y --no-install-recommends qemu-system-x86";

/// The error for a machine without QEMU: what is missing and how to get it.
pub fn missing_qemu_message(looked_for: &str) -> String {
    format!(
        "QEMU is not installed: {looked_for} was not found. Install it with `sudo {INSTALL_COMMAND}` \
         (`cargo xtask test` and `cargo xtask matrix` run that for you when they run as root)."
    )
}

/// The QEMU binary: `$HARNESS_QEMU` if set, else `qemu-system-x86_64` on PATH.
pub fn locate() -> Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("HARNESS_QEMU") {
        let path = PathBuf::from(explicit);
        if path.is_file() {
            return Ok(path);
        }
        bail!(missing_qemu_message(&format!("HARNESS_QEMU={}", path.display())));
    }
    locate_in(std::env::var_os("PATH").as_deref().unwrap_or_default())
        .ok_or_else(|| anyhow::anyhow!(missing_qemu_message(&format!("`{QEMU_BINARY}` on PATH"))))
}

/// Search a PATH-style list for the QEMU binary.
pub fn locate_in(path_var: &OsStr) -> Option<PathBuf> {
    find_in(path_var, QEMU_BINARY)
}

/// `setpriv` (util-linux), used to give QEMU a parent-death signal.
pub fn setpriv() -> Option<PathBuf> {
    find_in(&std::env::var_os("PATH")?, "setpriv")
}

fn find_in(path_var: &OsStr, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path_var).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Firmware that runs before the kernel's PVH entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Firmware {
    /// `-bios qboot.rom`: roughly halves boot time under TCG (measured by
    /// `cargo xtask bench`); works on pc and q35.
    #[default]
    Qboot,
    /// QEMU's default firmware.
    SeaBios,
}

impl Firmware {
    /// The name for command lines and reports.
    pub fn name(self) -> &'static str {
        match self {
            Firmware::Qboot => "qboot",
            Firmware::SeaBios => "seabios",
        }
    }

    /// `qboot` or `seabios`.
    pub fn parse(name: &str) -> Result<Firmware> {
        match name {
            "qboot" => Ok(Firmware::Qboot),
            "seabios" => Ok(Firmware::SeaBios),
            other => bail!("unknown firmware {other:?} (qboot or seabios)"),
        }
    }
}

/// The accelerator. TCG unless KVM is asked for: on the project's build
/// machines `/dev/kvm` is an emulated KVM that fails on SSE and then hangs
/// QEMU (docs/qemu-behaviour.md, "KVM").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accel {
    /// QEMU's TCG (emulation).
    #[default]
    Tcg,
    /// KVM, on a CPU with `vmx`/`svm`.
    Kvm,
    /// KVM if [`crate::vm::kvm_self_test`] passes on this host, else TCG.
    Auto,
}

impl Accel {
    /// `tcg`, `kvm` or `auto`.
    pub fn parse(name: &str) -> Result<Accel> {
        match name {
            "tcg" => Ok(Accel::Tcg),
            "kvm" => Ok(Accel::Kvm),
            "auto" => Ok(Accel::Auto),
            other => bail!("unknown accelerator {other:?} (tcg, kvm or auto)"),
        }
    }

    /// `$HARNESS_ACCEL`, else TCG.
    pub fn from_env() -> Result<Accel> {
        match std::env::var("HARNESS_ACCEL") {
            Ok(name) => Accel::parse(&name),
            Err(_) => Ok(Accel::Tcg),
        }
    }

    /// Refuse KVM where it cannot be real hardware virtualisation.
    pub fn check(self) -> Result<()> {
        if self == Accel::Kvm && !cpu_has_virtualisation() {
            bail!(
                "KVM asked for, but this CPU has no vmx/svm flag: /dev/kvm here is an emulated KVM that fails on \
                 SSE and then hangs QEMU. Use the default TCG (or --accel auto)."
            );
        }
        Ok(())
    }
}

/// Does the CPU advertise hardware virtualisation (vmx or svm)?
pub fn cpu_has_virtualisation() -> bool {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
}

/// Everything needed to build a QEMU command line.
pub struct LaunchSpec<'a> {
    /// The QEMU binary.
    pub qemu: &'a Path,
    /// QEMU's `-machine`.
    pub machine: &'a str,
    /// The profile's arguments.
    pub profile_args: &'a [String],
    /// More arguments after the profile's.
    pub extra_args: &'a [String],
    /// The guest image (`-kernel`).
    pub kernel: &'a Path,
    /// The kernel command line (`-append`).
    pub append: &'a str,
    /// The firmware.
    pub firmware: Firmware,
    /// The accelerator (`Auto` resolved).
    pub accel: Accel,
    /// The QMP socket to create.
    pub qmp_socket: &'a Path,
    /// The control-channel socket to create (COM2).
    pub control_socket: &'a Path,
    /// Where COM1 (the console) goes.
    pub console_log: &'a Path,
    /// COM1 on this socket instead of `console_log` (see
    /// [`crate::vm::VmConfig::console_unread`]).
    pub console_socket: Option<&'a Path>,
    /// This VM's own copy of the profile's disk image, as block node `hd0`.
    pub disk: Option<&'a Path>,
    /// This VM's own copies of the profile's `block-images`, by node name.
    pub block_images: &'a [(String, PathBuf)],
}

/// The guest always gets 128 MiB: its heap sits at 8–56 MiB.
pub const MEMORY: &str = "128M";

impl LaunchSpec<'_> {
    /// Arguments after the binary. The VM starts paused (`-S`) so both
    /// sockets are connected before the guest writes its first byte (QEMU
    /// drops serial output while no client is connected).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |a: &dyn AsRef<OsStr>| args.push(a.as_ref().to_os_string());
        // `Auto` is resolved before a command line is built.
        let accel = if self.accel == Accel::Kvm { "kvm" } else { "tcg" };
        for a in ["-accel", accel, "-machine", self.machine, "-m", MEMORY, "-nodefaults", "-display", "none"] {
            push(&a);
        }
        for a in ["-no-reboot", "-S", "-no-user-config"] {
            push(&a);
        }
        if self.accel == Accel::Kvm {
            push(&"-cpu");
            push(&"host");
        }
        if self.firmware == Firmware::Qboot {
            push(&"-bios");
            push(&"qboot.rom");
        }
        push(&"-qmp");
        push(&format!("unix:{},server=on,wait=off", self.qmp_socket.display()));
        push(&"-chardev");
        match self.console_socket {
            Some(socket) => push(&format!("socket,id=console,path={},server=on,wait=off", socket.display())),
            None => push(&format!("file,id=console,path={}", self.console_log.display())),
        }
        push(&"-serial");
        push(&"chardev:console");
        push(&"-chardev");
        push(&format!("socket,id=control,path={},server=on,wait=off", self.control_socket.display()));
        push(&"-serial");
        push(&"chardev:control");
        push(&"-device");
        push(&"isa-debug-exit,iobase=0xf4,iosize=0x04");
        push(&"-kernel");
        push(&self.kernel);
        if !self.append.is_empty() {
            push(&"-append");
            push(&self.append);
        }
        if let Some(disk) = self.disk {
            push(&"-blockdev");
            push(&format!("driver=file,node-name=hd0-file,filename={}", disk.display()));
            push(&"-blockdev");
            push(&"driver=raw,node-name=hd0,file=hd0-file");
        }
        for (node, file) in self.block_images {
            push(&"-blockdev");
            push(&format!("driver=file,node-name={node}-file,filename={}", file.display()));
            push(&"-blockdev");
            push(&format!("driver=raw,node-name={node},file={node}-file"));
        }
        for a in self.profile_args.iter().chain(self.extra_args) {
            push(a);
        }
        args
    }
}

/// How QEMU ended, read from its exit status. The guest leaves through
/// `isa-debug-exit`, so QEMU's status is `(code << 1) | 1`; a triple fault
/// under `-no-reboot` exits with 0, which is never success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// `poweroff` (code 0x10 → 33).
    PowerOff,
    /// A Rust panic in the guest (0x11 → 35).
    Panic,
    /// A driver-model BUG (0x12 → 37).
    Bug,
    /// Status 0: triple fault or reset.
    Crash,
    /// Status 1: QEMU itself failed (bad arguments, missing file).
    QemuError,
    /// Killed by a signal (by us, at the end of a test, or by someone else).
    Signal(i32),
    /// Any other status.
    Other(i32),
}

impl GuestExit {
    /// Read QEMU's exit status.
    pub fn from_status(status: ExitStatus) -> GuestExit {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(33), _) => GuestExit::PowerOff,
            (Some(35), _) => GuestExit::Panic,
            (Some(37), _) => GuestExit::Bug,
            (Some(0), _) => GuestExit::Crash,
            (Some(1), _) => GuestExit::QemuError,
            (Some(code), _) => GuestExit::Other(code),
            (None, Some(sig)) => GuestExit::Signal(sig),
            (None, None) => GuestExit::Other(-1),
        }
    }
}

impl fmt::Display for GuestExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestExit::PowerOff => write!(f, "the guest powered off (status 33)"),
            GuestExit::Panic => write!(f, "the guest panicked (status 35)"),
            GuestExit::Bug => write!(f, "the guest hit a driver-model BUG (status 37)"),
            GuestExit::Crash => write!(f, "the guest crashed: triple fault or reset (status 0)"),
            GuestExit::QemuError => write!(f, "QEMU failed (status 1)"),
            GuestExit::Signal(sig) => write!(f, "QEMU was killed by signal {sig}"),
            GuestExit::Other(code) => write!(f, "QEMU exited with unexpected status {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_qemu_names_the_install_command() {
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(locate_in(empty.path().as_os_str()), None);
        let msg = missing_qemu_message("`qemu-system-x86_64` on PATH");
        assert!(msg.contains("apt-get install -y --no-install-recommends qemu-system-x86"), "{msg}");
    }

    #[test]
    fn exit_statuses_map_to_guest_outcomes() {
        use std::os::unix::process::ExitStatusExt;
        let status = |code: i32| ExitStatus::from_raw(code << 8);
        assert_eq!(GuestExit::from_status(status(33)), GuestExit::PowerOff);
        assert_eq!(GuestExit::from_status(status(35)), GuestExit::Panic);
        assert_eq!(GuestExit::from_status(status(37)), GuestExit::Bug);
        assert_eq!(GuestExit::from_status(status(0)), GuestExit::Crash);
        assert_eq!(GuestExit::from_status(ExitStatus::from_raw(9)), GuestExit::Signal(9));
    }
}
