//! PCI hot-plug on `pc` (ACPI) and `q35` (native PCIe root ports): every
//! change goes through the guest's driver model, the guest ejects only after
//! removal completed, and the snapshot matches query-pci after every step.

use anyhow::{Result, ensure};

use super::Goldens;
use crate::hotplug::{Plug, UnplugOrder, pci_slot_of};
use crate::profile::PciSlot;
use crate::vm::Vm;

fn slot(vm: &Vm, n: u8) -> Result<PciSlot> {
    vm.config.profile.pci_slot(n)
}

/// Add edu, pci-testdev and virtio-net-pci, remove the middle one, re-add a
/// different device in its slot; snapshot and query-pci agree throughout.
pub async fn add_remove_readd(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let baseline = vm.stats().await?;
    let devices = [("edu", "edu1"), ("pci-testdev", "test2"), ("virtio-net-pci", "net3")];
    for (n, (driver, id)) in devices.iter().enumerate() {
        let plugged = vm.plug(&Plug::new(driver, id).at(&slot(vm, n as u8 + 1)?)).await?;
        vm.checked_snapshot().await.map_err(|e| e.context(format!("after adding {id} at {}", plugged.devpath)))?;
    }
    let all_three = vm.checked_snapshot().await?;
    goldens.push("pci_three_added", all_three.subtree("root/pci0").render());

    let unplugged = vm.unplug("test2").await?;
    ensure!(
        unplugged.order == UnplugOrder::RemovedBeforeEject,
        "the guest must remove the device before it ejects it: {unplugged:?}"
    );
    vm.checked_snapshot().await?;
    vm.plug(&Plug::new("e1000", "nic2").at(&slot(vm, 2)?)).await?;
    let readded = vm.checked_snapshot().await?;
    goldens.push("pci_middle_replaced", readded.subtree("root/pci0").render());

    for id in ["edu1", "nic2", "net3"] {
        vm.unplug(id).await?;
        vm.checked_snapshot().await?;
    }
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// The 2002 race across a real unplug: a read held inside show() keeps the
/// guest from ejecting, so QEMU cannot finish `device_del` until it ends.
pub async fn held_read_blocks_eject(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let slot = slot(vm, 1)?;
    let edu = vm.plug(&Plug::new("edu", "raced").at(&slot)).await?;
    let vendor = format!("{}/vendor", edu.devpath);
    let held = vm.call_text(&format!("open {vendor}")).await?;
    let stale = vm.call_text(&format!("open {vendor}")).await?;
    vm.call(&format!("hold {vendor}")).await?;
    let read = vm.send(&format!("read {held}")).await?;
    vm.wait_stats("the held read's active reference", |s| s.devices.get(&edu.devpath).is_some_and(|d| d.active == 1))
        .await?;

    // 2. device_del: the guest starts removal but cannot finish it.
    let unplug = vm.start_unplug("raced").await?;
    unplug.removed().await?;
    // 3. Pending: the object is dying with the read inside it, new opens
    //    fail, and QEMU still has the device because nobody ejected it.
    let stats =
        vm.wait_stats("the device dying", |s| s.devices.get(&edu.devpath).is_some_and(|d| d.state == "dying")).await?;
    ensure!(stats.device(&edu.devpath)?.active == 1, "{stats:?}");
    ensure!(vm.expect_errno(&format!("open {vendor}")).await? == "ENOENT");
    ensure!(vm.qemu_has_device("raced").await?, "QEMU removed the device although the guest has not ejected it");
    ensure!(!unplug.deleted(), "DEVICE_DELETED arrived while a read was held");
    // Longer than QEMU takes from an eject to DEVICE_DELETED (about 50 ms).
    vm.expect_no_qmp_event("DEVICE_DELETED", HELD_EJECT_WINDOW).await?;
    ensure!(!read.is_answered(), "the held read finished early");

    // 4. unhold: the read returns the old vendor, removal completes, the
    //    guest ejects (after its `remove`), DEVICE_DELETED arrives.
    vm.call(&format!("unhold {vendor}")).await?;
    ensure!(vm.wait_reply(read).await? == b"0x1234\n", "the held read must return edu's vendor");
    let unplugged = unplug.finish().await?;
    ensure!(unplugged.order == UnplugOrder::RemovedBeforeEject, "the guest ejected before it removed");
    ensure!(!vm.qemu_has_device("raced").await?);

    // 5. A different device in the same slot; the stale handle never shows it.
    let other = vm.plug(&Plug::new("pci-testdev", "successor").at(&slot)).await?;
    ensure!(other.devpath == edu.devpath, "same slot, same path: {} vs {}", other.devpath, edu.devpath);
    for handle in [&held, &stale] {
        ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "a stale handle must read ENODEV");
    }
    let fresh = vm.call_text(&format!("open {vendor}")).await?;
    ensure!(vm.call(&format!("read {fresh}")).await? == b"0x1b36\n");
    for handle in [&held, &stale, &fresh] {
        vm.call(&format!("close {handle}")).await?;
    }
    vm.unplug("successor").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    vm.checked_snapshot().await?;
    Ok(Goldens::new())
}

/// How long a held read must keep DEVICE_DELETED away: well beyond the
/// ~50 ms QEMU takes from an eject to the event.
const HELD_EJECT_WINDOW: std::time::Duration = std::time::Duration::from_millis(200);

/// 50 plug/unplug cycles on one slot leave nothing behind.
pub async fn fifty_cycles(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let before = vm.checked_snapshot().await?;
    let slot = slot(vm, 1)?;
    for cycle in 0..50 {
        let driver = if cycle % 2 == 0 { "edu" } else { "pci-testdev" };
        let id = format!("cycle{cycle}");
        vm.plug(&Plug::new(driver, &id).at(&slot)).await?;
        vm.unplug(&id).await.map_err(|e| e.context(format!("cycle {cycle}")))?;
    }
    let stats = vm.stats().await?;
    stats.check_baseline(&baseline)?;
    ensure!(stats.released() >= 50, "50 unplugged devices must have been released: {stats:?}");
    ensure!(vm.checked_snapshot().await? == before, "the tree differs after 50 cycles");
    Ok(Goldens::new())
}

/// Each refusal carries QEMU's text, and the VM stays usable: after every
/// one, a valid plug works and the snapshot still matches query-pci.
pub async fn refusals(vm: &mut Vm) -> Result<Goldens> {
    let s1 = slot(vm, 1)?;
    let s2 = slot(vm, 2)?;
    vm.plug(&Plug::new("edu", "first").at(&s1)).await?;
    let mut cases = vec![
        ("duplicate id", Plug::new("pci-testdev", "first").at(&s2), "Duplicate device ID 'first'"),
        (
            "occupied slot",
            Plug::new("pci-testdev", "second").at(&s1),
            "not available for pci-testdev, in use by edu,id=first",
        ),
        (
            "unknown driver",
            Plug::new("nonexistent-dev", "third").at(&s2),
            "'nonexistent-dev' is not a valid device model name",
        ),
        ("bus without hot-plug", Plug::new("isa-serial", "fourth"), "Bus 'isa.0' does not support hotplugging"),
    ];
    // Buses the profile says QEMU refuses hot-plug on (q35's pcie.0).
    let refused: Vec<(String, String)> = vm
        .config
        .profile
        .no_hotplug_buses
        .iter()
        .map(|bus| (bus.clone(), format!("Bus '{bus}' does not support hotplugging")))
        .collect();
    for (bus, text) in &refused {
        cases.push((bus, Plug::new("edu", "fifth").bus(bus), text));
    }
    for (n, (what, plug, text)) in cases.into_iter().enumerate() {
        let err = vm.device_add(&plug).await.err().ok_or_else(|| anyhow::anyhow!("{what}: device_add succeeded"))?;
        ensure!(err.to_string().contains(text), "{what}: QEMU's text is missing from {err}");
        let probe = format!("probe{n}");
        vm.plug(&Plug::new("pci-testdev", &probe).at(&s2)).await.map_err(|e| e.context(format!("after {what}")))?;
        vm.checked_snapshot().await?;
        vm.unplug(&probe).await?;
    }
    let err = vm
        .device_del("no-such-id")
        .await
        .err()
        .ok_or_else(|| anyhow::anyhow!("device_del of an unknown id succeeded"))?;
    ensure!(err.to_string().contains("Device 'no-such-id' not found"), "{err}");
    vm.unplug("first").await?;
    vm.plug(&Plug::new("edu", "after").at(&s1)).await?;
    vm.checked_snapshot().await?;
    Ok(Goldens::new())
}

/// A hot-added bridge and a hot-added storage controller are registered
/// with the right class, get resources (the bridge a bus number and
/// windows), match query-pci, and go away cleanly.
pub async fn bridge_and_controller(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let bridge_slot = slot(vm, 1)?;
    // A PCI Express slot takes a PCIe-to-PCI bridge.
    let bridge = if bridge_slot.express {
        Plug::new("pcie-pci-bridge", "bridge1")
    } else {
        Plug::new("pci-bridge", "bridge1").prop("chassis_nr", 1)
    };
    let plugged_bridge = vm.plug(&bridge.at(&bridge_slot)).await?;
    let plugged_hba = vm.plug(&Plug::new("virtio-scsi-pci", "hba1").at(&slot(vm, 2)?)).await?;
    let snapshot = vm.checked_snapshot().await?;
    let class = |path: &str| snapshot.value(&format!("{path}/class")).map(str::to_string);
    ensure!(
        class(&plugged_bridge.devpath).as_deref() == Some("0x060400"),
        "bridge class {:?}",
        class(&plugged_bridge.devpath)
    );
    ensure!(
        class(&plugged_hba.devpath).as_deref() == Some("0x010000"),
        "SCSI controller class {:?}",
        class(&plugged_hba.devpath)
    );
    let resource = snapshot.value(&format!("{}/resource", plugged_bridge.devpath)).unwrap_or_default();
    ensure!(resource.contains("window mem 0x"), "the bridge has no memory window: {resource:?}");
    let mut goldens = Goldens::new();
    goldens.push("pci_bridge_and_controller", snapshot.subtree("root/pci0").render());
    for id in ["hba1", "bridge1"] {
        vm.unplug(id).await?;
        vm.checked_snapshot().await?;
    }
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A slot is reused only after the object that last lived there is
/// released: while a reference to an unplugged device is held, the device
/// plugged into its slot waits (the guest says `hotplug busy`), and it is
/// registered the moment the reference goes.
pub async fn readd_waits_for_release(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let slot = slot(vm, 1)?;
    let first = vm.plug(&Plug::new("edu", "first").at(&slot)).await?;
    vm.call(&format!("devref get {}", first.devpath)).await?;
    vm.unplug("first").await?;
    let held = vm.stats().await?;
    let old = held.device(&first.devpath)?;
    ensure!(old.state == "deleted" && old.refcount == 1, "the unplugged device must stay, referenced: {held:?}");

    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    vm.device_add(&Plug::new("pci-testdev", "second").at(&slot)).await?;
    let busy = format!("hotplug busy {}", pci_slot_of(&first.devpath)?);
    vm.wait_notice(ncursor, &busy, |n| n == busy).await?;
    // The one snapshot not checked against query-pci: QEMU already has the
    // new device, and the guest must not show it yet.
    ensure!(vm.snapshot().await?.get(&first.devpath).is_none(), "the new device appeared under a name still held");
    ensure!(!vm.control.uevents_since(ucursor).iter().any(|u| u.action == "add"), "added before the release");

    vm.call(&format!("devref put {}", first.devpath)).await?;
    vm.wait_uevent(ucursor, &format!("add {}", first.devpath), |u| u.action == "add" && u.devpath == first.devpath)
        .await?;
    let snapshot = vm.checked_snapshot().await?;
    ensure!(
        snapshot.value(&format!("{}/vendor", first.devpath)) == Some("0x1b36"),
        "the successor must be pci-testdev"
    );
    vm.unplug("second").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}
