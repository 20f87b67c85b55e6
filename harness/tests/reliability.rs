//! A guest that misbehaves or a host side that stops reading never freezes
//! the guest or exhausts the harness:
//! - a console nobody reads (COM1 on a socket that is connected but never
//!   read) costs the guest nothing: PCI plug and unplug complete, and the
//!   dropped bytes are counted in `stats`;
//! - a control-channel reader that pauses loses no byte and stops no bus
//!   work: an unplug completes while the guest's output is backed up.

mod common;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use harness::hotplug::Plug;
use harness::{Vm, VmConfig};

#[tokio::test]
async fn an_unread_console_never_stops_the_guest_through_hot_plug() -> Result<()> {
    let mut config = VmConfig::new("pc", "console_unread-pc")?;
    config.console_unread = true;
    let mut vm = Vm::boot(config).await?;
    // Far more than QEMU's socket chardev takes without a reader (a few
    // hundred bytes: one socket buffer entry per byte).
    vm.call("selftest flood console 65536").await?;
    let goldens = harness::scenario::pci::add_remove_readd(&mut vm).await?;
    // The same goldens as the scenario's own test: nothing changed.
    for (golden, text) in goldens.0 {
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_suffix("pc");
        settings.set_prepend_module_to_snapshot(false);
        settings.set_snapshot_path("snapshots");
        settings.bind(|| insta::assert_snapshot!(golden, text));
    }
    let dropped = vm.stats().await?.total("console_dropped");
    ensure!(dropped > 60_000, "the console flood was not dropped: console_dropped {dropped}");
    vm.shutdown().await
}

#[tokio::test]
async fn a_paused_control_reader_loses_nothing_and_stops_no_unplug() -> Result<()> {
    let vm = common::boot("pc", "control_paused").await?;
    let slot = vm.config.profile.pci_slot(1)?;
    vm.plug(&Plug::new("edu", "edu1").at(&slot)).await?;
    let devpath = vm.pci_devpath("edu1").await?;
    let (ucursor, qcursor) = (vm.control.uevent_cursor(), vm.qmp.cursor());

    vm.control.pause_reading(true);
    // 240 KB of notices: more than the socket buffers (212992 bytes at most), so the guest's
    // UART is stalled from here on.
    let flood = vm.send("selftest flood notices 30").await?;
    let snapshot = vm.send("snapshot").await?;
    // Let the flood fill every buffer between the guest and the harness
    // before the unplug request arrives.
    tokio::time::sleep(Duration::from_millis(500)).await;
    vm.device_del("edu1").await?;
    // QEMU finishes the unplug only when the guest ejects: its bus work
    // goes on while nothing it writes to the channel is read.
    vm.wait_device_deleted(qcursor, "edu1").await.context("the unplug must complete while the reader is paused")?;
    ensure!(!vm.control.uevents_since(ucursor).iter().any(|u| u.action == "remove"), "the reader was not paused");

    vm.control.pause_reading(false);
    vm.wait_reply(flood).await?;
    let snapshot = vm.wait_reply(snapshot).await?;
    harness::driverfs::Snapshot::parse(&snapshot).context("the snapshot reply arrived whole")?;
    let removed = vm.wait_uevent(ucursor, "remove", |u| u.action == "remove" && u.devpath == devpath).await?;
    let ejected = vm.wait_notice(0, "eject", |n| n.starts_with("hotplug eject ")).await?;
    ensure!(removed.frame < ejected.frame, "remove, then the eject notice, in the order they were written");
    tokio::time::timeout(Duration::from_secs(30), vm.settle()).await??;
    vm.shutdown().await
}
