//! Tests written with the harness as a library: each boots the real guest
//! under QEMU, hot-adds devices through QMP and checks what the guest's
//! driver model shows. Run them with `cargo test` (the first run builds the
//! guest image into this crate's target directory).

use std::time::Duration;

use anyhow::{Result, ensure};
use harness::hotplug::UnplugOrder;
use harness::{Plug, assert_profile_snapshot, files::errno};

/// Hot-add edu and e1000, check them, then unplug the e1000 while a read
/// is inside one of its show()s: the unplug waits for the read, which
/// returns the old data, and the guest ends where it started.
#[tokio::test]
async fn hot_add_and_unplug_across_a_held_read() -> Result<()> {
    let profile = "pc";
    let vm = harness::testing::boot(profile, harness::test_name!()).await?;
    let baseline = vm.stats().await?;

    let edu = vm.plug(&Plug::new("edu", "edu0").at(&vm.config.profile.pci_slot(1)?)).await?;
    let nic = vm.plug(&Plug::new("e1000", "nic0").at(&vm.config.profile.pci_slot(2)?)).await?;
    ensure!(vm.read_attr(&format!("{}/vendor", edu.devpath)).await? == "0x1234", "edu is QEMU's 1234:11e8");
    ensure!(vm.read_attr(&format!("{}/device", nic.devpath)).await? == "0x100e", "e1000 is an 82540EM");

    // Both devices as the guest shows them (checked against QEMU's
    // query-pci), one golden per profile: snapshots/devices@pc.snap.
    let snapshot = vm.checked_snapshot().await?;
    let devices = snapshot.subtree(&edu.devpath).render() + &snapshot.subtree(&nic.devpath).render();
    assert_profile_snapshot!(profile, "devices", devices);

    // A read blocked inside show() of the e1000's vendor attribute, and a
    // second handle opened before the unplug.
    let vendor = format!("{}/vendor", nic.devpath);
    let held = vm.hold_read(&vendor).await?;
    let stale = vm.open(&vendor).await?;

    // Unplug while the read is held: start it, look at the guest while it
    // waits for the read, then let the read go and finish the unplug.
    let unplug = vm.start_unplug("nic0").await?;
    unplug.removed().await?;
    let stats = vm.stats().await?;
    ensure!(stats.device(&nic.devpath)?.state == "dying", "removal has started: {stats:?}");
    ensure!(stats.device(&nic.devpath)?.active == 1, "the held read keeps its active reference");
    vm.expect_no_qmp_event("DEVICE_DELETED", Duration::from_millis(200)).await?;
    ensure!(!held.is_answered(), "the read is still inside show()");
    let err = stale.read().await.expect_err("a read after removal began");
    ensure!(errno(&err) == Some("ENODEV"), "a read after removal began fails with ENODEV: {err:#}");

    let old_value = held.release().await?;
    ensure!(old_value == b"0x8086\n", "the held read returns the old data, got {old_value:?}");
    let unplugged = unplug.finish().await?;
    ensure!(unplugged.order == UnplugOrder::RemovedBeforeEject, "{unplugged:?}");
    stale.close().await?;

    vm.unplug("edu0").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    vm.shutdown().await
}

/// The same `Plug` cold-plugged on the command line: the guest finds the
/// device at boot, where QEMU put it.
#[tokio::test]
async fn cold_plugged_e1000() -> Result<()> {
    let profile = "pc";
    let config = harness::testing::config(profile, harness::test_name!())?
        .device(Plug::new("e1000", "nic0").at(&harness::profile::Profile::get(profile)?.pci_slot(2)?));
    let vm = harness::Vm::boot(config).await?;
    let devpath = vm.pci_devpath("nic0").await?;
    ensure!(devpath == "root/pci0/00:06.0", "QEMU put nic0 at {devpath}");
    ensure!(vm.read_attr(&format!("{devpath}/vendor")).await? == "0x8086");
    vm.checked_snapshot().await?;
    vm.shutdown().await
}
