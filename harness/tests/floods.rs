//! A guest gone wild cannot exhaust the harness: each path the guest can
//! flood (`selftest flood uevents|notices|bugs|console|lines`, and QMP
//! events through the guest's own CD tray moves, `ide tray`) either ends in
//! a clear error that names the limit, or is cut and the run carries on, and
//! the test process's peak memory stays under [`PEAK_RSS_BOUND_MIB`].
//!
//! The floods are sized to pass the (lowered) limits within a few seconds:
//! the guest's UART moves tens of KB per second under TCG.

mod common;

use anyhow::{Result, ensure};
use harness::limits::Limits;
use harness::{Vm, VmConfig};

/// Generous bound on the test process's peak resident memory (VmHWM), with
/// several VMs' harness state in it at once. Measured figures are in the
/// README.
const PEAK_RSS_BOUND_MIB: u64 = 256;

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).ok_or_else(|| anyhow::anyhow!("no VmHWM"))?;
    let kib: u64 = line.split_whitespace().nth(1).unwrap_or("0").parse()?;
    Ok(kib / 1024)
}

fn check_memory(flood: &str) -> Result<()> {
    let peak = peak_rss_mib()?;
    eprintln!("flood {flood}: test process peak RSS {peak} MiB");
    ensure!(peak < PEAK_RSS_BOUND_MIB, "peak RSS {peak} MiB after the {flood} flood");
    Ok(())
}

/// `keep_artifacts`: the test reads them (and removes them at the end with
/// [`remove_artifacts`], so passing runs leave nothing behind).
async fn boot(name: &str, limits: Limits, keep_artifacts: bool) -> Result<Vm> {
    let mut config = VmConfig::new("pc", &format!("{name}-pc"))?;
    config.limits = limits;
    config.quiet = !keep_artifacts;
    Vm::boot(config).await
}

fn remove_artifacts(vm: Vm) -> Result<()> {
    let dir = vm.artifacts_dir();
    drop(vm);
    if let Some(dir) = dir {
        std::fs::remove_dir_all(dir)?;
    }
    Ok(())
}

fn artifact(vm: &Vm, file: &str) -> Result<String> {
    let dir = vm.artifacts_dir().ok_or_else(|| anyhow::anyhow!("no artifacts"))?;
    Ok(std::fs::read_to_string(dir.join(file))?)
}

#[tokio::test]
async fn a_uevent_flood_ends_in_an_error_naming_the_limit() -> Result<()> {
    // Each line of ~1000 tiny keys weighs ~90 KB in memory, so 2 MiB (a
    // quarter of the default) are reached after ~23 lines, 190 KB on the wire.
    let vm = boot("flood_uevents", Limits { uevent_bytes: 2 << 20, ..Limits::default() }, true).await?;
    let err = vm.call("selftest flood uevents 40").await.expect_err("40 such uevents pass a 2 MiB limit");
    let text = format!("{err:#}");
    ensure!(
        text.contains("the guest sent more than 2 MiB of uevents") && text.contains("Limits::uevent_bytes"),
        "{text}"
    );
    ensure!(
        artifact(&vm, "uevents.log")?.contains("the harness stopped reading it"),
        "the uevent log says what was cut"
    );
    remove_artifacts(vm)?;
    check_memory("uevents")
}

#[tokio::test]
async fn a_notice_flood_ends_in_an_error_and_the_transcript_is_cut() -> Result<()> {
    let limits = Limits { notice_bytes: 64 << 10, transcript_bytes: 32 << 10, ..Limits::default() };
    let vm = boot("flood_notices", limits, true).await?;
    let err = vm.call("selftest flood notices 16").await.expect_err("128 KB of notices pass a 64 KiB limit");
    let text = format!("{err:#}");
    ensure!(text.contains("more than 64 KiB of notice lines") && text.contains("Limits::notice_bytes"), "{text}");
    let transcript = artifact(&vm, "control.log")?;
    ensure!(transcript.len() < (32 << 10) + 1024, "control.log is {} bytes", transcript.len());
    ensure!(transcript.contains("transcript cut: it reached its limit of 32 KiB"), "the transcript says it was cut");
    remove_artifacts(vm)?;
    check_memory("notices")
}

#[tokio::test]
async fn a_bug_flood_is_cut_counted_and_quoted_briefly() -> Result<()> {
    let vm = boot("flood_bugs", Limits::default(), false).await?;
    vm.call("selftest flood bugs 80").await?;
    // The run carries on: the lines were raw, not BUGs of the driver core.
    vm.call("hello").await?;
    let bugs = vm.control.bugs();
    ensure!(bugs.len() == 65, "64 kept and one note: {}", bugs.len());
    ensure!(bugs[64].contains("16 more `* bug` lines (15888 bytes) not kept"), "{}", bugs[64]);
    let err = vm.shutdown().await.expect_err("BUG lines fail the run");
    let text = format!("{err:#}");
    ensure!(text.contains("75 more `* bug` lines"), "{text}");
    ensure!(text.len() < 16 << 10, "the error quotes a few lines, not all: {} bytes", text.len());
    check_memory("bugs")
}

#[tokio::test]
async fn a_console_flood_is_read_only_at_its_tail() -> Result<()> {
    let vm = boot("flood_console", Limits::default(), false).await?;
    vm.call("selftest flood console 131072").await?;
    let err = vm.call("selftest panic after-the-flood").await.expect_err("a panic ends the run");
    let text = format!("{err:#}");
    ensure!(text.contains("after-the-flood"), "{text}");
    ensure!(text.len() < 8 << 10, "the error carries the console's last lines only: {} bytes", text.len());
    check_memory("console")
}

#[tokio::test]
async fn a_flood_of_empty_lines_is_skipped_and_the_run_carries_on() -> Result<()> {
    let vm = common::boot("pc", "flood_lines").await?;
    vm.call("selftest flood lines 100000").await?;
    vm.call("hello").await?;
    check_memory("lines")?;
    vm.shutdown().await
}

#[tokio::test]
async fn a_tray_flood_ends_qmp_with_an_error_naming_the_limit() -> Result<()> {
    // Each guest-initiated tray move is one DEVICE_TRAY_MOVED event of
    // about 200 bytes of JSON: 100 open/close cycles pass 16 KiB.
    let vm = boot("flood_qmp", Limits { qmp_event_bytes: 16 << 10, ..Limits::default() }, true).await?;
    vm.call("ide tray 1.0 100").await?;
    let err = vm.qmp(qapi::qmp::query_status {}).await.expect_err("QMP is closed once the events pass 16 KiB");
    let text = format!("{err:#}");
    ensure!(
        text.contains("QEMU sent more than 16 KiB of events") && text.contains("Limits::qmp_event_bytes"),
        "{text}"
    );
    let transcript = artifact(&vm, "qmp.log")?;
    ensure!(transcript.contains("DEVICE_TRAY_MOVED"), "the events came from the guest's tray moves");
    ensure!(transcript.contains("closed: QEMU sent more than 16 KiB"), "qmp.log says where it stopped");
    remove_artifacts(vm)?;
    check_memory("qmp events")
}

/// The bounds stop a flood, not a long run: a VM that receives several
/// times each bound in total, but forgets what it has handled between
/// bursts (`Vm::forget_events`, as the explorer does after every step),
/// keeps going; cursors taken before a forget still find what came after.
#[tokio::test]
async fn a_long_run_that_forgets_between_steps_never_reaches_the_bounds() -> Result<()> {
    let limits =
        Limits { uevent_bytes: 2 << 20, notice_bytes: 64 << 10, qmp_event_bytes: 16 << 10, ..Limits::default() };
    let vm = boot("long_run", limits, false).await?;
    for burst in 0..4 {
        // Each burst is about two thirds of each bound: two would pass it.
        let (ucursor, ncursor, qcursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor(), vm.qmp.cursor());
        vm.call("selftest flood uevents 15").await?;
        vm.call("selftest flood notices 5").await?;
        vm.call("ide tray 1.0 25").await?;
        // 25 open/close cycles: 50 DEVICE_TRAY_MOVED, all in before forgetting.
        let mut from = qcursor;
        for _ in 0..50 {
            let next = vm.qmp.wait_event(from, |e| e.name == "DEVICE_TRAY_MOVED");
            let (position, _) = tokio::time::timeout(std::time::Duration::from_secs(20), next)
                .await
                .map_err(|_| anyhow::anyhow!("burst {burst}: timed out waiting for 50 DEVICE_TRAY_MOVED"))??;
            from = position + 1;
        }
        let uevents = vm.control.uevents_since(ucursor).len();
        ensure!(uevents == 15, "burst {burst}: {uevents} uevents since the cursor, not 15");
        let notices = vm.control.notices_since(ncursor).len();
        ensure!(notices >= 5, "burst {burst}: {notices} notices since the cursor");
        vm.forget_events();
        ensure!(vm.control.uevents().is_empty() && vm.qmp.events().is_empty(), "forgotten");
        ensure!(vm.control.uevent_cursor() == ucursor + 15, "positions are absolute");
    }
    vm.shutdown().await
}
