//! Faults in the middle of a run: each ends in an error that names the step
//! waited for and the cause, within a second or two of the fault (only a
//! hung guest needs the step's own timeout: waiting is the only way to know),
//! keeps the artifacts, and leaves no QEMU and no socket directory behind.
//!
//! The steps: a hot-plug wait (DEVICE_DELETED while a held read keeps the
//! guest from ejecting), a held read (its reply), a media change (the guest's
//! `change` while a reference keeps the old medium). The time from fault to
//! error is printed (`--nocapture`) and bounded generously here: far below
//! the 30 s step timeouts a missed fault would run into.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use harness::control::PendingReply;
use harness::hotplug::Plug;
use harness::{Vm, VmConfig};

/// Far below the step timeouts (30 s): an error later than this was not
/// caused by noticing the fault.
const NOTICED_WITHIN: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug)]
enum Fault {
    Signal(&'static str),
    QmpClosed,
    ControlClosed,
    GuestPanic,
    GuestHang,
}

impl Fault {
    async fn inject(self, vm: &Vm) -> Result<()> {
        match self {
            Fault::Signal(sig) => {
                let pid = vm.qemu_pid().context("QEMU's pid")?;
                let status = Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status()?;
                ensure!(status.success(), "kill -{sig} {pid}: {status}");
            }
            Fault::QmpClosed => vm.qmp.sever().await?,
            Fault::ControlClosed => vm.control.sever().await?,
            Fault::GuestPanic => drop(vm.send("selftest panic mid-step").await?),
            Fault::GuestHang => drop(vm.send("selftest hang").await?),
        }
        Ok(())
    }
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| stat.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// A guest in the middle of a step that cannot finish by itself, and the
/// wait for that step.
struct Staged {
    vm: Vm,
    step: Step,
}

enum Step {
    /// `device_del edu1` issued; a held read keeps the guest from ejecting.
    Unplug { qcursor: usize, _read: PendingReply },
    /// A `read` inside a held show().
    HeldRead { read: PendingReply },
    /// A medium change while `devref` holds the old disc.
    MediaChange { ucursor: usize },
}

async fn stage(name: &str, step: &str, hang_timeout: bool) -> Result<Staged> {
    let mut config = VmConfig::new("pc", &format!("fault-{name}-{step}-pc"))?;
    if hang_timeout {
        // A hung guest is known only by waiting: keep the wait short.
        config.timeouts.event = Duration::from_secs(2);
        config.timeouts.request = Duration::from_secs(2);
    }
    let vm = Vm::boot(config).await?;
    let step = match step {
        "unplug" | "read" => {
            let slot = vm.config.profile.pci_slot(1)?;
            let edu = vm.plug(&Plug::new("edu", "edu1").at(&slot)).await?;
            let vendor = format!("{}/vendor", edu.devpath);
            let handle = vm.call_text(&format!("open {vendor}")).await?;
            vm.call(&format!("hold {vendor}")).await?;
            let read = vm.send(&format!("read {handle}")).await?;
            vm.wait_stats("the held read", |s| s.devices.get(&edu.devpath).is_some_and(|d| d.active == 1)).await?;
            if step == "read" {
                Step::HeldRead { read }
            } else {
                let qcursor = vm.qmp.cursor();
                vm.device_del("edu1").await?;
                Step::Unplug { qcursor, _read: read }
            }
        }
        "media" => {
            let cd = |r: &images::CdRecipe| harness::paths::image(r.file);
            vm.change_media("cd0", &cd(&images::CD_ALPHA)).await?;
            vm.call("devref get root/pci0/00:01.1/ide1/1.0/disc").await?;
            let ucursor = vm.control.uevent_cursor();
            vm.change_media_in_qemu("cd0", &cd(&images::CD_BETA)).await?;
            Step::MediaChange { ucursor }
        }
        other => bail!("no step {other}"),
    };
    Ok(Staged { vm, step })
}

/// Inject `fault` while the staged step is being waited for; check the error
/// names `step_text` and `cause`, comes soon after the fault, and that the
/// artifacts stay and nothing is left running.
async fn fault_during(fault: Fault, name: &str, step: &str, step_text: &str, cause: &str) -> Result<()> {
    let hang = matches!(fault, Fault::GuestHang);
    let Staged { vm, step: staged } = stage(name, step, hang).await?;
    let pid = vm.qemu_pid().context("QEMU's pid")?;
    let sockets = vm.socket_dir().to_path_buf();
    let artifacts = vm.artifacts_dir().context("artifacts")?;
    let wait = async {
        match staged {
            Step::Unplug { qcursor, .. } => vm.wait_device_deleted(qcursor, "edu1").await.map(drop),
            Step::HeldRead { read } => vm.wait_reply(read).await.map(drop),
            Step::MediaChange { ucursor } => {
                vm.wait_uevent(ucursor, "change with the new medium", |u| u.action == "change").await.map(drop)
            }
        }
    };
    let inject = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let at = Instant::now();
        fault.inject(&vm).await.map(|()| at)
    };
    let (result, injected) = tokio::join!(wait, inject);
    let noticed_after = injected?.elapsed();
    let err = match result {
        Ok(()) => bail!("{fault:?} during {step}: the wait succeeded"),
        Err(e) => format!("{e:#}"),
    };
    eprintln!("fault {fault:?} during {step}: error after {noticed_after:?}: {}", err.lines().next().unwrap_or(""));
    ensure!(err.contains(step_text), "{fault:?}: the error does not name the step {step_text:?}: {err}");
    ensure!(err.contains(cause), "{fault:?}: the error does not name the cause {cause:?}: {err}");
    ensure!(err.contains(&artifacts.display().to_string()), "the error says where the artifacts are: {err}");
    let bound = if hang { NOTICED_WITHIN + Duration::from_secs(2) } else { NOTICED_WITHIN };
    ensure!(noticed_after < bound, "{fault:?}: noticed {noticed_after:?} after the fault");
    drop(vm);
    // Artifacts kept; QEMU and the socket directory gone.
    for file in ["qemu-command.txt", "control.log", "qmp.log", "console.log"] {
        ensure!(artifacts.join(file).exists(), "{file} was not kept in {}", artifacts.display());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while running(pid) {
        ensure!(Instant::now() < deadline, "QEMU {pid} still runs after the VM was dropped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(!sockets.exists(), "{} left behind", sockets.display());
    std::fs::remove_dir_all(&artifacts)?;
    Ok(())
}

const UNPLUG: &str = "DEVICE_DELETED for edu1";
const READ: &str = "the guest's reply to \"read";
const MEDIA: &str = "the uevent change with the new medium";

#[tokio::test]
async fn sigkill_during_hot_plug_wait() -> Result<()> {
    fault_during(Fault::Signal("KILL"), "kill", "unplug", UNPLUG, "killed by signal 9").await
}

#[tokio::test]
async fn sigkill_during_held_read() -> Result<()> {
    fault_during(Fault::Signal("KILL"), "kill", "read", READ, "killed by signal 9").await
}

#[tokio::test]
async fn sigkill_during_media_change() -> Result<()> {
    fault_during(Fault::Signal("KILL"), "kill", "media", MEDIA, "killed by signal 9").await
}

#[tokio::test]
async fn abort_during_hot_plug_wait() -> Result<()> {
    fault_during(Fault::Signal("ABRT"), "abort", "unplug", UNPLUG, "killed by signal 6").await
}

#[tokio::test]
async fn sigstop_during_held_read() -> Result<()> {
    fault_during(Fault::Signal("STOP"), "stop", "read", READ, "is stopped (SIGSTOP").await
}

#[tokio::test]
async fn sigstop_during_media_change() -> Result<()> {
    fault_during(Fault::Signal("STOP"), "stop", "media", MEDIA, "is stopped (SIGSTOP").await
}

#[tokio::test]
async fn qmp_closed_during_hot_plug_wait() -> Result<()> {
    fault_during(Fault::QmpClosed, "qmp", "unplug", UNPLUG, "QMP connection").await
}

#[tokio::test]
async fn control_closed_during_held_read() -> Result<()> {
    fault_during(Fault::ControlClosed, "control", "read", READ, "control channel closed").await
}

#[tokio::test]
async fn control_closed_during_media_change() -> Result<()> {
    fault_during(Fault::ControlClosed, "control", "media", MEDIA, "control channel closed").await
}

#[tokio::test]
async fn guest_panic_mid_unplug() -> Result<()> {
    fault_during(Fault::GuestPanic, "panic", "unplug", UNPLUG, "the guest panicked (status 35)").await
}

#[tokio::test]
async fn guest_hang_mid_unplug_is_known_at_the_steps_timeout() -> Result<()> {
    fault_during(Fault::GuestHang, "hang", "unplug", UNPLUG, "timed out after 2s").await
}

/// A harness killed without any chance to clean up leaves its socket
/// directory; the next start removes it (its owner is gone), and only it.
#[tokio::test]
async fn the_next_start_removes_socket_dirs_of_killed_harnesses() -> Result<()> {
    let mut harness = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--profile", "pc", "selftest hang"])
        .env("HARNESS_ARTIFACTS_DIR", std::env::temp_dir().join("harness-faults-artifacts"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let owned = |dir: &PathBuf| {
        std::fs::read_to_string(dir.join("owner.pid")).is_ok_and(|p| p.trim() == harness.id().to_string())
    };
    let left = loop {
        let dirs: Vec<PathBuf> = std::fs::read_dir(std::env::temp_dir())?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("harness-")))
            .collect();
        if let Some(dir) = dirs.into_iter().find(|d| owned(d) && d.join("control.sock").exists()) {
            break dir;
        }
        ensure!(Instant::now() < deadline, "the harness made no socket directory within a minute");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // A directory of a live process must survive: this test's own.
    let vm = common::boot_to_break("pc", "stale_sockets").await?;
    harness.kill()?;
    harness.wait()?;
    // SIGKILL left the directory (nothing ran to remove it); another test's
    // start may already have removed it, which is what is under test too.
    let second = common::boot_to_break("pc", "stale_sockets_next").await?;
    let _ = std::fs::remove_dir_all(std::env::temp_dir().join("harness-faults-artifacts"));
    ensure!(!left.exists(), "{} was not removed by the next start", left.display());
    ensure!(vm.socket_dir().exists(), "a live harness's directory was removed");
    drop(second);
    drop(vm);
    Ok(())
}

/// Set in the child run of [`ctrl_c_on_a_test_run_leaves_no_qemu_and_no_socket_dir`].
const INTERRUPTED_CHILD: &str = "HARNESS_TEST_INTERRUPTED_CHILD";

/// Ctrl-C on `cargo xtask test`: the terminal sends SIGINT to its whole
/// foreground process group, so cargo, the xtask, every test binary and the
/// QEMUs they started (QEMU stays in its starter's group) get it at once;
/// only the test binaries hold QEMUs and socket directories. So this runs
/// itself (this test binary, an end-to-end test in it holding a booted VM)
/// and sends SIGINT to the test process and to its QEMU, as the terminal
/// would; running `cargo` inside `cargo test` would only add processes that
/// own nothing (and wait on the build lock).
#[tokio::test]
async fn ctrl_c_on_a_test_run_leaves_no_qemu_and_no_socket_dir() -> Result<()> {
    if std::env::var_os(INTERRUPTED_CHILD).is_some() {
        // The child: a test that is mid-run when Ctrl-C comes.
        let vm = common::boot_to_break("pc", "interrupted").await?;
        println!("booted {} {}", vm.qemu_pid().context("QEMU's pid")?, vm.socket_dir().display());
        tokio::time::sleep(Duration::from_secs(60)).await;
        bail!("not interrupted within 60 s");
    }
    use std::io::BufRead;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["ctrl_c_on_a_test_run_leaves_no_qemu_and_no_socket_dir", "--exact", "--nocapture"])
        .env(INTERRUPTED_CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let stdout = child.stdout.take().context("the child's stdout")?;
    // Blocking reads, off the runtime; the child's own boot bounds the wait.
    let booted = tokio::task::spawn_blocking(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("booted ").map(str::to_string))
    });
    let booted = match tokio::time::timeout(Duration::from_secs(60), booted).await {
        Ok(Ok(Some(line))) => line,
        other => {
            let _ = child.kill();
            bail!("the child test did not boot its VM within 60 s: {other:?}");
        }
    };
    let (qemu, sockets) = booted.split_once(' ').context("pid and socket dir")?;
    let (qemu, sockets): (u32, PathBuf) = (qemu.parse()?, sockets.into());
    ensure!(running(qemu) && sockets.exists(), "the child's VM is up");
    let interrupted_at = Instant::now();
    for pid in [child.id(), qemu] {
        let status = Command::new("kill").args(["-INT", &pid.to_string()]).status()?;
        ensure!(status.success(), "kill -INT {pid}: {status}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the test run did not end within 10 s of SIGINT");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    ensure!(!status.success(), "an interrupted run is not a success: {status}");
    while running(qemu) {
        ensure!(Instant::now() < deadline, "QEMU {qemu} outlived the interrupted run");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("fault Ctrl-C on a test run: ended, QEMU gone after {:?}", interrupted_at.elapsed());
    ensure!(!sockets.exists(), "{} was left behind", sockets.display());
    Ok(())
}

/// A disk image that is missing, or that cannot be read as a file, stops the
/// start with an error naming the image and the cause; the artifacts stay.
#[tokio::test]
async fn a_missing_or_unreadable_disk_image_is_named_at_start() -> Result<()> {
    for (image, cause) in [("missing.img", "No such file"), (".", "")] {
        let mut config = VmConfig::new("pc", "fault-disk-image-pc")?;
        config.profile.disk_image = Some(image.into());
        let started = Instant::now();
        let err = Vm::boot(config).await.err().context("booting without its disk image must fail")?;
        let text = format!("{err:#}");
        eprintln!("fault disk image {image:?}: error after {:?}: {text}", started.elapsed());
        let path = harness::paths::image(image);
        ensure!(text.contains(&format!("copying the disk image {}", path.display())) && text.contains(cause), "{text}");
    }
    let artifacts = harness::artifacts::root().join("fault-disk-image-pc");
    ensure!(artifacts.exists(), "the failed start keeps its artifact directory");
    std::fs::remove_dir_all(artifacts)?;
    Ok(())
}

/// An artifact directory that cannot be created stops the start with an
/// error naming it, before QEMU runs.
#[tokio::test]
async fn an_unwritable_artifact_directory_is_named_at_start() -> Result<()> {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["run", "--profile", "pc", "hello"])
        .env("HARNESS_ARTIFACTS_DIR", "/dev/null/artifacts")
        .stdin(Stdio::null())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("fault artifact dir: error after {:?}: {stderr}", started.elapsed());
    ensure!(!out.status.success(), "the run must fail");
    ensure!(stderr.contains("/dev/null/artifacts") && stderr.contains("Not a directory"), "{stderr}");
    Ok(())
}

/// An artifact directory that goes away mid-run (removed, or replaced by a
/// file; as root a chmod stops no write): the run's error is not lost and
/// says the artifacts could not be written, instead of pointing at them.
#[tokio::test]
async fn an_artifact_directory_gone_mid_run_is_said_in_the_error() -> Result<()> {
    for replaced_by_file in [false, true] {
        let vm = common::boot("pc", &format!("fault_artifacts_gone_{replaced_by_file}")).await?;
        let dir = vm.artifacts_dir().context("the VM keeps artifacts")?;
        std::fs::remove_dir_all(&dir)?;
        if replaced_by_file {
            std::fs::write(&dir, "not a directory")?;
        }
        let started = Instant::now();
        let err = vm.call("selftest panic artifacts-gone").await.expect_err("a panic ends the run");
        let text = format!("{err:#}");
        eprintln!("fault artifact dir gone mid-run: error after {:?}: {text}", started.elapsed());
        let problem = if replaced_by_file { "is no longer a directory" } else { "is gone" };
        ensure!(text.contains("artifacts-gone") && text.contains("the guest panicked"), "the error is kept: {text}");
        ensure!(
            text.contains(&format!("artifacts could not be written: {} {problem}", dir.display())),
            "the error says the artifacts are lost: {text}"
        );
        drop(vm);
        let _ = std::fs::remove_file(&dir);
    }
    Ok(())
}

#[tokio::test]
async fn abort_during_held_read() -> Result<()> {
    fault_during(Fault::Signal("ABRT"), "abort", "read", READ, "killed by signal 6").await
}

#[tokio::test]
async fn abort_during_media_change() -> Result<()> {
    fault_during(Fault::Signal("ABRT"), "abort", "media", MEDIA, "killed by signal 6").await
}

#[tokio::test]
async fn sigstop_during_hot_plug_wait() -> Result<()> {
    fault_during(Fault::Signal("STOP"), "stop", "unplug", UNPLUG, "is stopped (SIGSTOP").await
}

#[tokio::test]
async fn guest_panic_during_held_read() -> Result<()> {
    fault_during(Fault::GuestPanic, "panic", "read", READ, "the guest panicked (status 35)").await
}

#[tokio::test]
async fn guest_panic_during_media_change() -> Result<()> {
    fault_during(Fault::GuestPanic, "panic", "media", MEDIA, "the guest panicked (status 35)").await
}

#[tokio::test]
async fn guest_hang_during_held_read_is_known_at_the_steps_timeout() -> Result<()> {
    fault_during(Fault::GuestHang, "hang", "read", READ, "timed out after 2s").await
}

#[tokio::test]
async fn guest_hang_during_media_change_is_known_at_the_steps_timeout() -> Result<()> {
    fault_during(Fault::GuestHang, "hang", "media", MEDIA, "timed out after 2s").await
}
