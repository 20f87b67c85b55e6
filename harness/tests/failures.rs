//! Bad input gets a clear error, never a harness panic or a silent pass:
//! QEMU missing, a guest that panics, hangs, hits a BUG, or sends garbage.

mod common;

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::qemu::GuestExit;
use harness::{Vm, VmConfig};

fn chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

#[tokio::test]
async fn missing_qemu_names_the_install_command() -> Result<()> {
    let mut config = VmConfig::new("pc", "missing_qemu")?;
    config.qemu = Some("/nonexistent/qemu-system-x86_64".into());
    let err = Vm::boot(config).await.err().expect("booting without QEMU must fail");
    let text = chain(&err);
    ensure!(text.contains("apt-get install -y --no-install-recommends qemu-system-x86"), "unhelpful error: {text}");
    Ok(())
}

#[tokio::test]
async fn unknown_profile_lists_the_known_ones() -> Result<()> {
    let err = VmConfig::new("pc99", "unknown_profile").err().expect("pc99 is not a profile");
    ensure!(chain(&err).contains("pc, q35"), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn guest_panic_is_reported_with_its_text() -> Result<()> {
    let vm = common::boot_to_break("pc", "guest_panic").await?;
    let err = vm.call("selftest panic the-sky-fell").await.expect_err("a panicking guest cannot answer");
    let text = chain(&err);
    ensure!(text.contains("panic") && text.contains("the-sky-fell"), "panic text missing: {text}");
    ensure!(vm.wait_exit(Duration::from_secs(10)).await? == GuestExit::Panic, "exit status is not the panic code");
    Ok(())
}

#[tokio::test]
async fn panic_at_boot_is_reported_with_its_text() -> Result<()> {
    let mut config = VmConfig::new("pc", "panic_at_boot")?;
    config.quiet = true;
    config.append = "selftest.panic".into();
    let err = Vm::boot(config).await.err().expect("a guest that panics at boot cannot say hello");
    let text = chain(&err);
    ensure!(text.contains("panicked") && text.contains("selftest.panic on the kernel command line"), "{text}");
    Ok(())
}

#[tokio::test]
async fn silent_guest_times_out_naming_the_step() -> Result<()> {
    let mut config = VmConfig::new("pc", "silent_guest")?;
    config.quiet = true;
    config.append = "selftest.hang".into();
    config.timeouts.boot = Duration::from_secs(2);
    let err = Vm::boot(config).await.err().expect("a guest that never answers cannot boot");
    let text = chain(&err);
    ensure!(text.contains("timed out after 2s waiting for the guest's hello"), "{text}");
    Ok(())
}

#[tokio::test]
async fn guest_that_stops_answering_times_out_naming_the_request() -> Result<()> {
    let mut config = VmConfig::new("pc", "stops_answering")?;
    config.quiet = true;
    config.timeouts.request = Duration::from_secs(1);
    let vm = Vm::boot(config).await?;
    // `selftest hang` stops the channel before its own reply goes out.
    let err = vm.call("selftest hang").await.expect_err("no reply expected");
    ensure!(chain(&err).contains("timed out after 1s waiting for the guest's reply to \"selftest hang\""), "{err:#}");
    Ok(())
}

#[tokio::test]
async fn bug_is_reported_with_its_text_and_exit_code() -> Result<()> {
    let vm = common::boot_to_break("pc", "bug_report").await?;
    vm.call("testdev add victim").await?;
    // One put_device too many on a registered device: the core must call
    // it a BUG, not free the device.
    // The reply may still make it out: the guest stops right after the
    // output that carries the BUG line.
    let _ = vm.call("selftest put victim").await;
    let err = vm.call("hello").await.expect_err("a BUG stops the guest");
    let text = chain(&err);
    ensure!(text.contains("release of root/testbus/victim while still registered"), "the BUG text is missing: {text}");
    ensure!(vm.wait_exit(Duration::from_secs(10)).await? == GuestExit::Bug, "exit status is not the BUG code");
    ensure!(
        vm.control.bugs().iter().any(|b| b.contains("release of root/testbus/victim while still registered")),
        "{:?}",
        vm.control.bugs()
    );
    Ok(())
}

/// Each kind of malformed output from the real guest ends in a protocol
/// error that names the problem; the harness does not panic or hang.
async fn garbage(kind: &str, expect: &str) -> Result<()> {
    let vm = common::boot_to_break("pc", &format!("garbage_{kind}")).await?;
    let err = vm.call(&format!("selftest garbage {kind}")).await.expect_err("garbage is not a reply");
    let text = chain(&err);
    ensure!(text.contains("control protocol error") && text.contains(expect), "{kind}: {text}");
    ensure!(vm.control.failure().is_some(), "the channel must be marked failed");
    let next = vm.call("hello").await.expect_err("a broken channel refuses further requests");
    ensure!(chain(&next).contains("control protocol error"), "{next:#}");
    Ok(())
}

#[tokio::test]
async fn garbage_long_line() -> Result<()> {
    garbage("long-line", "line longer than 8192 bytes").await
}

#[tokio::test]
async fn garbage_bad_length() -> Result<()> {
    garbage("bad-length", "bad payload length").await
}

#[tokio::test]
async fn garbage_truncated_payload() -> Result<()> {
    garbage("truncated", "stream ended after 10 of 100 announced bytes").await
}

#[tokio::test]
async fn garbage_non_utf8() -> Result<()> {
    garbage("non-utf8", "not UTF-8").await
}

#[tokio::test]
async fn garbage_bad_status() -> Result<()> {
    garbage("bad-status", "neither ok nor err").await
}

#[tokio::test]
async fn guest_refuses_bad_requests_cleanly() -> Result<()> {
    let vm = common::boot("pc", "bad_requests").await?;
    ensure!(vm.expect_errno("frobnicate").await? == "ENOSYS");
    ensure!(vm.expect_errno("snapshot root/nonexistent").await? == "ENOENT");
    ensure!(vm.expect_errno("read notanumber").await? == "EINVAL");
    ensure!(vm.expect_errno("read 999").await? == "EBADF");
    ensure!(vm.expect_errno("open root/pci0").await? == "EISDIR");
    ensure!(vm.expect_errno("open ../../etc/passwd").await? == "EINVAL");
    // The channel is still fine afterwards.
    vm.call("hello").await?;
    vm.shutdown().await
}
