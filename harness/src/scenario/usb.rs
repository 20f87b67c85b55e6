//! USB on the cold-plugged UHCI controller: enumeration of QEMU's HID
//! devices and hubs, surprise removal of whole subtrees, and the races an
//! unplug can cut enumeration with. Every step is checked against QEMU's
//! own tree (`Vm::checked_snapshot` compares the USB tree with QOM).

use anyhow::{Context, Result, ensure};

use super::Goldens;
use crate::hotplug::Plug;
use crate::vm::Vm;

/// The USB bus QEMU names after the profile's controller (`id=uhci`).
pub const BUS: &str = "uhci.0";

/// A USB device at `port` (`1`, `2.3`) of the cold-plugged controller.
pub fn usb(model: &str, id: &str, port: &str) -> Plug {
    Plug::new(model, id).bus(BUS).prop("port", port)
}

/// The controller's PCI directory in the guest.
pub async fn controller_devpath(vm: &Vm) -> Result<String> {
    vm.pci_devpath("uhci").await.context("the profile's UHCI controller (id uhci)")
}

/// Keyboard, mouse and tablet on both root ports and behind a hub: IDs,
/// product strings, speed, interfaces; everything unplugged again ends at
/// the stats baseline.
pub async fn hid(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let controller = controller_devpath(vm).await?;
    let baseline = vm.stats().await?;
    vm.usb_plug(&usb("usb-kbd", "kbd1", "1")).await?;
    vm.checked_snapshot().await?;
    vm.usb_plug(&usb("usb-mouse", "mouse2", "2")).await?;
    let snapshot = vm.checked_snapshot().await?;
    goldens.push("usb_hid_root_ports", snapshot.subtree(&controller).render());

    vm.unplug("mouse2").await?;
    vm.checked_snapshot().await?;
    vm.usb_plug(&usb("usb-hub", "hub2", "2")).await?;
    vm.checked_snapshot().await?;
    for (model, id, port) in
        [("usb-tablet", "tablet21", "2.1"), ("usb-mouse", "mouse24", "2.4"), ("usb-kbd", "kbd28", "2.8")]
    {
        vm.usb_plug(&usb(model, id, port)).await?;
        vm.checked_snapshot().await?;
    }
    let snapshot = vm.checked_snapshot().await?;
    goldens.push("usb_hid_behind_hub", snapshot.subtree(&controller).render());

    for id in ["mouse24", "kbd1", "hub2"] {
        vm.unplug(id).await?;
        vm.checked_snapshot().await?;
    }
    let left = vm.snapshot().await?;
    let devices: Vec<&str> = left
        .children(&format!("{controller}/usb1"))
        .into_iter()
        .filter(|c| !c.contains(':') && c.starts_with("1-"))
        .collect();
    ensure!(devices.is_empty(), "devices left below usb1: {devices:?}");
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// The `remove` uevents since `cursor` below (and including) `top`, in the
/// order the guest sent them, as devpaths relative to `base`.
fn removes_below(vm: &Vm, cursor: usize, top: &str, base: &str) -> Vec<String> {
    let below = format!("{top}/");
    vm.control
        .uevents_since(cursor)
        .into_iter()
        .filter(|u| u.action == "remove" && (u.devpath == top || u.devpath.starts_with(&below)))
        .map(|u| u.devpath.strip_prefix(base).unwrap_or(&u.devpath).trim_start_matches('/').to_string())
        .collect()
}

/// Every object is removed after everything below it.
fn check_depth_first(removes: &[String]) -> Result<()> {
    for (i, path) in removes.iter().enumerate() {
        let below = format!("{path}/");
        if let Some(late) = removes[i + 1..].iter().find(|p| p.starts_with(&below)) {
            anyhow::bail!("{path} was removed before {late}, which is below it: {removes:#?}");
        }
    }
    Ok(())
}

/// A hub behind a hub with devices on each; removing the middle hub takes
/// its whole subtree down depth first (QEMU deletes the children itself,
/// the guest only sees the upper hub's port go). Then unbinding the `hub`
/// driver from the top hub disconnects the keyboard behind it, and binding
/// it again finds the keyboard anew.
pub async fn hub_tree(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let controller = controller_devpath(vm).await?;
    let baseline = vm.stats().await?;
    let tree = [
        ("usb-hub", "hub1", "1"),
        ("usb-kbd", "kbd11", "1.1"),
        ("usb-hub", "hub12", "1.2"),
        ("usb-mouse", "mouse121", "1.2.1"),
        ("usb-hub", "hub123", "1.2.3"),
        ("usb-tablet", "tablet1231", "1.2.3.1"),
        ("usb-kbd", "kbd124", "1.2.4"),
    ];
    for (model, id, port) in tree {
        vm.usb_plug(&usb(model, id, port)).await?;
        vm.checked_snapshot().await?;
    }
    let full = vm.checked_snapshot().await?;
    goldens.push("usb_hub_tree", full.subtree(&format!("{controller}/usb1")).render());

    let middle = vm.usb_devpath("hub12").await?;
    let cursor = vm.control.uevent_cursor();
    vm.unplug("hub12").await?;
    let removes = removes_below(vm, cursor, &middle, &format!("{controller}/usb1"));
    check_depth_first(&removes)?;
    let expected = full.entries().iter().filter(|e| {
        let p = e.path();
        matches!(e, crate::driverfs::Entry::Dir { .. }) && (p == middle || p.starts_with(&format!("{middle}/")))
    });
    ensure!(expected.count() == removes.len(), "every object of the subtree sends one remove: {removes:#?}");
    goldens.push("usb_hub_tree_remove_order", removes.join("\n") + "\n");
    vm.checked_snapshot().await?;

    // Unbinding `hub` from hub1 disconnects what is behind it (the
    // keyboard), depth first; hub1 and its interface stay. QEMU still has
    // the keyboard, so this one snapshot is not checked against it.
    let hub1 = vm.usb_devpath("hub1").await?;
    let hub1_name = hub1.rsplit('/').next().unwrap_or_default().to_string();
    let hub1_iface = format!("{hub1_name}:1.0");
    let cursor = vm.control.uevent_cursor();
    vm.call(&format!("unbind usb {hub1_iface} hub")).await?;
    vm.settle().await?;
    let removes = removes_below(vm, cursor, &hub1, &format!("{controller}/usb1"));
    let kbd = format!("{hub1_name}/{hub1_name}.1");
    let expected = [format!("{kbd}/{hub1_name}.1:1.0"), kbd.clone()];
    ensure!(removes == expected, "unbinding hub from {hub1_iface} removes the keyboard behind it: {removes:?}");
    let unbound = vm.snapshot().await?;
    let child_prefix = format!("{hub1_name}.");
    let left: Vec<&str> = unbound.children(&hub1).into_iter().filter(|c| c.starts_with(&child_prefix)).collect();
    ensure!(left.is_empty(), "devices left registered behind {hub1} with no hub driver: {left:?}");
    vm.call(&format!("bind usb {hub1_iface} hub")).await?;
    vm.settle().await?;
    let again = vm.checked_snapshot().await?;
    ensure!(
        again.value(&format!("{hub1}/{hub1_name}.1/product")) == Some("QEMU USB Keyboard"),
        "binding hub again enumerates the keyboard behind it"
    );

    for id in ["hub1"] {
        vm.unplug(id).await?;
    }
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A device replaced by a different model on the same port while the VM
/// is stopped: the guest sees one connect change (PORTSC 0x008b), removes
/// the old device and finds the new one.
pub async fn replug_different_device(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let kbd = vm.usb_plug(&usb("usb-kbd", "before", "1")).await?;
    vm.checked_snapshot().await?;
    let (ucursor, qcursor) = (vm.control.uevent_cursor(), vm.qmp.cursor());
    vm.qmp.execute_raw("stop", serde_json::json!({})).await?;
    vm.device_del("before").await?;
    vm.wait_device_deleted(qcursor, "before").await?;
    vm.device_add(&usb("usb-mouse", "after", "1")).await?;
    vm.qmp.execute_raw("cont", serde_json::json!({})).await?;
    let devpath = kbd.devpath.clone();
    let removed =
        vm.wait_uevent(ucursor, &format!("remove {devpath}"), |u| u.action == "remove" && u.devpath == devpath).await?;
    let added =
        vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
    ensure!(removed.frame < added.frame, "the old device must go before the new one comes");
    let snapshot = vm.checked_snapshot().await?;
    ensure!(snapshot.value(&format!("{devpath}/product")) == Some("QEMU USB Mouse"), "the new device is the mouse");
    vm.unplug("after").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// A handle and a reference kept on a device across its unplug: the device
/// plugged into the same port waits for the old object's release (a new
/// generation), and the stale handle never reads the new device.
pub async fn port_reuse_stale_handle(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let old = vm.usb_plug(&usb("usb-kbd", "old", "1")).await?;
    let product = format!("{}/product", old.devpath);
    let stale = vm.call_text(&format!("open {product}")).await?;
    vm.call(&format!("devref get {}", old.devpath)).await?;
    let old_generation = vm.stats().await?.device(&old.devpath)?.generation;
    vm.unplug("old").await?;

    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    vm.device_add(&usb("usb-mouse", "new", "1")).await?;
    let notice = format!("usb busy {}", old.devpath.rsplit('/').next().unwrap_or_default());
    vm.wait_notice(ncursor, &notice, |n| n == notice).await?;
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "the stale handle reads ENODEV");
    let stats = vm.stats().await?;
    ensure!(stats.device(&old.devpath)?.state == "deleted", "the old object waits for its last reference: {stats:?}");

    vm.call(&format!("devref put {}", old.devpath)).await?;
    let devpath = old.devpath.clone();
    vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
    vm.settle().await?;
    let stats = vm.stats().await?;
    ensure!(stats.device(&devpath)?.generation > old_generation, "the new device is a new generation: {stats:?}");
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "a stale handle never reads the successor");
    let fresh = vm.call_text(&format!("open {product}")).await?;
    ensure!(vm.call(&format!("read {fresh}")).await? == b"QEMU USB Mouse\n");
    for handle in [&stale, &fresh] {
        vm.call(&format!("close {handle}")).await?;
    }
    vm.checked_snapshot().await?;
    vm.unplug("new").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// 50 plug/unplug cycles on one port (keyboard and hub alternately) end at
/// the stats baseline, refcounts included, with the same tree.
pub async fn fifty_cycles(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let before = vm.snapshot().await?;
    for cycle in 0..50 {
        let model = if cycle % 2 == 0 { "usb-kbd" } else { "usb-hub" };
        let id = format!("cycle{cycle}");
        vm.usb_plug(&usb(model, &id, "1")).await.with_context(|| format!("cycle {cycle}"))?;
        vm.unplug(&id).await.with_context(|| format!("cycle {cycle}"))?;
    }
    vm.settle().await?;
    let stats = vm.stats().await?;
    stats.check_baseline(&baseline)?;
    ensure!(stats.released() >= 100, "50 devices and their interfaces must have been released: {stats:?}");
    ensure!(vm.snapshot().await? == before, "the tree differs after 50 cycles");
    vm.checked_snapshot().await?;
    Ok(Goldens::new())
}

/// QEMU's refusals carry its text and leave the VM working.
pub async fn refusals(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let baseline = vm.stats().await?;
    vm.usb_plug(&usb("usb-kbd", "kbd1", "1")).await?;
    let attempts = [
        ("occupied port", usb("usb-mouse", "again", "1")),
        ("no such port", usb("usb-mouse", "far", "5")),
        ("no such port behind a non-hub", usb("usb-mouse", "behind", "1.1")),
        ("unknown model", usb("usb-nonesuch", "odd", "2")),
    ];
    let mut texts = String::new();
    for (what, plug) in attempts {
        let error = match vm.device_add(&plug).await {
            Ok(()) => anyhow::bail!("QEMU accepted {what}: {plug:?}"),
            Err(crate::qmp::QmpError::Qemu { desc, .. }) => desc,
            Err(e) => return Err(e).context(what.to_string()),
        };
        texts.push_str(&format!("{what}: {error}\n"));
        vm.settle().await?;
        vm.checked_snapshot().await.with_context(|| format!("after the refused {what}"))?;
    }
    goldens.push("usb_refusals", texts);
    ensure!(vm.device_del("nonesuch").await.is_err(), "device_del of an unknown id is refused");
    vm.usb_plug(&usb("usb-tablet", "tablet2", "2")).await.context("a valid plug after the refusals")?;
    vm.checked_snapshot().await?;
    for id in ["kbd1", "tablet2"] {
        vm.unplug(id).await?;
    }
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A second UHCI controller hot-added over PCI with a keyboard and a hub
/// (with a mouse behind it) on its own bus `usb2`, then unplugged: the
/// guest removes everything below the controller, depth first, before the
/// function itself, and only then ejects it.
pub async fn controller_hotplug(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let baseline = vm.stats().await?;
    let slot = vm.config.profile.pci_slot(1)?;
    let function = vm.plug(&Plug::new("piix3-usb-uhci", "uhci2").at(&slot)).await?;
    vm.checked_snapshot().await?;
    for (model, id, port) in [("usb-kbd", "kbd1", "1"), ("usb-hub", "hub2", "2"), ("usb-mouse", "mouse21", "2.1")] {
        let plugged = vm.usb_plug(&Plug::new(model, id).bus("uhci2.0").prop("port", port)).await?;
        ensure!(plugged.devpath.contains("/usb2/"), "the second controller's bus is usb2: {}", plugged.devpath);
        vm.checked_snapshot().await?;
    }
    let snapshot = vm.checked_snapshot().await?;
    let prefix = function.devpath.rsplit_once('/').map(|(p, _)| p).unwrap_or_default().to_string();
    let relative = snapshot.subtree(&function.devpath).render().replace(&format!("{prefix}/"), "");
    goldens.push("usb_controller_hotplug", relative);

    let cursor = vm.control.uevent_cursor();
    let unplugged = vm.unplug("uhci2").await?;
    ensure!(
        unplugged.order == crate::hotplug::UnplugOrder::RemovedBeforeEject,
        "the guest must remove the controller before it ejects it: {unplugged:?}"
    );
    let removes = removes_below(vm, cursor, &function.devpath, &prefix);
    check_depth_first(&removes)?;
    ensure!(removes.last().map(String::as_str) == function.devpath.strip_prefix(&format!("{prefix}/")));
    goldens.push("usb_controller_remove_order", removes.join("\n") + "\n");
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A read held inside show() on a keyboard's `product` while QEMU removes
/// the keyboard (QEMU does not wait for the guest): the guest removes the
/// interface and then the device, whose removal waits for the read; the
/// read returns the old value; new opens get ENOENT and the old handle
/// ENODEV afterwards; everything is released.
pub async fn held_read_across_surprise_removal(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let kbd = vm.usb_plug(&usb("usb-kbd", "held", "1")).await?;
    let product = format!("{}/product", kbd.devpath);
    let handle = vm.call_text(&format!("open {product}")).await?;
    vm.call(&format!("hold {product}")).await?;
    let read = vm.send(&format!("read {handle}")).await?;
    vm.wait_stats("the held read's active reference", |s| s.devices.get(&kbd.devpath).is_some_and(|d| d.active == 1))
        .await?;

    let ucursor = vm.control.uevent_cursor();
    let unplugged = vm.start_unplug("held").await?;
    let interface = format!("{}/{}:1.0", kbd.devpath, kbd.devpath.rsplit('/').next().unwrap_or_default());
    vm.wait_uevent(ucursor, &format!("remove {}", kbd.devpath), |u| u.action == "remove" && u.devpath == kbd.devpath)
        .await?;
    let removes: Vec<String> =
        vm.control.uevents_since(ucursor).into_iter().filter(|u| u.action == "remove").map(|u| u.devpath).collect();
    ensure!(removes == [interface.clone(), kbd.devpath.clone()], "interface, then device: {removes:?}");
    let stats = vm
        .wait_stats("the keyboard dying with the read inside it", |s| {
            s.devices.get(&kbd.devpath).is_some_and(|d| d.state == "dying")
        })
        .await?;
    ensure!(stats.device(&kbd.devpath)?.active == 1, "{stats:?}");
    ensure!(vm.expect_errno(&format!("open {product}")).await? == "ENOENT", "no new open of a dying device");
    ensure!(!read.is_answered(), "the held read finished early");

    vm.call(&format!("unhold {product}")).await?;
    ensure!(vm.wait_reply(read).await? == b"QEMU USB Keyboard\n", "the held read returns the old value");
    unplugged.finish().await?;
    vm.settle().await?;
    ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "the old handle reads ENODEV");
    vm.call(&format!("close {handle}")).await?;
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// The device removed after SET_ADDRESS and before SET_CONFIGURATION,
/// every time: the guest's enumeration stops at the `usb-enum` checkpoint
/// (announced as `* checkpoint usb-enum 1-1`), QEMU deletes the device,
/// then the checkpoint is released. The next transfer finds no device:
/// nothing is registered, the address is given back, nothing leaks, and
/// the port works for the next device.
pub async fn unplug_during_enumeration(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let (ucursor, ncursor, qcursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor(), vm.qmp.cursor());
    vm.call("checkpoint arm usb-enum").await?;
    vm.device_add(&usb("usb-kbd", "brief", "1")).await?;
    let notice = "checkpoint usb-enum 1-1";
    vm.wait_notice(ncursor, notice, |n| n == notice).await?;
    vm.device_del("brief").await?;
    vm.wait_device_deleted(qcursor, "brief").await?;
    vm.call("checkpoint release usb-enum").await?;
    vm.settle().await?;
    let added: Vec<String> =
        vm.control.uevents_since(ucursor).into_iter().filter(|u| u.action == "add").map(|u| u.devpath).collect();
    ensure!(added.is_empty(), "a device cut off during enumeration must not be registered: {added:?}");
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    let again = vm.usb_plug(&usb("usb-mouse", "after", "1")).await.context("the port after the cut")?;
    ensure!(vm.snapshot().await?.value(&format!("{}/product", again.devpath)) == Some("QEMU USB Mouse"));
    vm.unplug("after").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// A usb-storage stick on the profile's `usb0` block node (a private copy
/// of the MBR disk image): the disk appears as
/// `1-1:1.0/host<H>/target<H>:0:0/<H>:0:0:0` with the image's capacity,
/// signature and partitions, all read over Bulk-Only Transport; unplugged,
/// the LUN, target, host, interface and device go in that order.
pub async fn storage(vm: &mut Vm) -> Result<Goldens> {
    let controller = controller_devpath(vm).await?;
    let baseline = vm.stats().await?;
    let plugged = vm.usb_plug(&usb("usb-storage", "stick", "1").prop("drive", "usb0")).await?;
    vm.settle().await?;
    let snapshot = vm.checked_snapshot().await?;
    let iface = format!("{}/1-1:1.0", plugged.devpath);
    let host = crate::bus::scsi::host_number(&snapshot.subtree(&iface).render(), &iface)?;
    let lun = format!("{iface}/host{host}/target{host}:0:0/{host}:0:0:0");
    let recipe = &images::DISK;
    let value = |attr: &str| snapshot.value(&format!("{lun}/{attr}")).map(str::to_string);
    ensure!(value("capacity") == Some(recipe.sectors.to_string()), "{lun}: capacity {:?}", value("capacity"));
    ensure!(value("signature") == Some(format!("{:#010x}", recipe.signature)), "signature {:?}", value("signature"));
    for p in recipe.partitions {
        let part = |attr: &str| value(&format!("part{}/{attr}", p.number));
        ensure!(part("start") == Some(p.start.to_string()), "part{} start {:?}", p.number, part("start"));
        ensure!(part("size") == Some(p.sectors.to_string()), "part{} size {:?}", p.number, part("size"));
    }
    let mut goldens = Goldens::new();
    goldens.push("usb_storage", snapshot.subtree(&controller).render());
    let cursor = vm.control.uevent_cursor();
    vm.unplug("stick").await?;
    vm.settle().await?;
    let removes = removes_below(vm, cursor, &plugged.devpath, &controller);
    let base = plugged.devpath.strip_prefix(controller.as_str()).unwrap_or(&plugged.devpath).trim_start_matches('/');
    let lun_rel = format!("{base}/1-1:1.0/host{host}/target{host}:0:0/{host}:0:0:0");
    let order: Vec<&str> = removes.iter().map(String::as_str).filter(|r| !r.contains("/part")).collect();
    let expected = [
        lun_rel.clone(),
        format!("{base}/1-1:1.0/host{host}/target{host}:0:0"),
        format!("{base}/1-1:1.0/host{host}"),
        format!("{base}/1-1:1.0"),
        base.to_string(),
    ];
    ensure!(order == expected, "removal order {order:?}, expected {expected:?}");
    check_depth_first(&removes)?;
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A read held on a stick's disk `capacity` while QEMU removes the stick:
/// the LUN stays dying (new opens ENOENT) and nothing above it goes until
/// the read is let go and returns the old value; then the LUN, target,
/// host, interface and device are removed in that order, and the old
/// handle reads ENODEV.
pub async fn storage_held_read(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let stick = vm.usb_plug(&usb("usb-storage", "held", "1").prop("drive", "usb0")).await?;
    vm.settle().await?;
    let iface = format!("{}/1-1:1.0", stick.devpath);
    let host = crate::bus::scsi::host_number(&vm.snapshot().await?.subtree(&iface).render(), &iface)?;
    let target = format!("{iface}/host{host}/target{host}:0:0");
    let lun = format!("{target}/{host}:0:0:0");
    let capacity = format!("{lun}/capacity");
    let handle = vm.call_text(&format!("open {capacity}")).await?;
    vm.call(&format!("hold {capacity}")).await?;
    let read = vm.send(&format!("read {handle}")).await?;
    vm.wait_stats("the held read's active reference", |s| s.devices.get(&lun).is_some_and(|d| d.active == 1)).await?;

    let ucursor = vm.control.uevent_cursor();
    let unplugged = vm.start_unplug("held").await?;
    let stats = vm
        .wait_stats("the LUN dying with the read inside it", |s| {
            s.devices.get(&lun).is_some_and(|d| d.state == "dying")
        })
        .await?;
    ensure!(stats.device(&lun)?.active == 1, "{stats:?}");
    ensure!(vm.expect_errno(&format!("open {capacity}")).await? == "ENOENT", "no new open of a dying LUN");
    ensure!(!read.is_answered(), "the held read finished early");
    ensure!(
        !vm.control.uevents_since(ucursor).into_iter().any(|u| u.action == "remove" && u.devpath == stick.devpath),
        "the stick was removed before the read on its LUN drained"
    );

    vm.call(&format!("unhold {capacity}")).await?;
    let sectors = images::DISK.sectors;
    ensure!(vm.wait_reply(read).await? == format!("{sectors}\n").as_bytes(), "the held read returns the old value");
    vm.wait_uevent(ucursor, &format!("remove {}", stick.devpath), |u| {
        u.action == "remove" && u.devpath == stick.devpath
    })
    .await?;
    let removes: Vec<String> = vm
        .control
        .uevents_since(ucursor)
        .into_iter()
        .filter(|u| u.action == "remove" && !u.devpath.contains("/part"))
        .map(|u| u.devpath)
        .collect();
    let expected = [lun.clone(), target.clone(), format!("{iface}/host{host}"), iface.clone(), stick.devpath.clone()];
    ensure!(removes == expected, "LUN, target, host, interface, device: {removes:?}");
    unplugged.finish().await?;
    vm.settle().await?;
    ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "the old handle reads ENODEV");
    vm.call(&format!("close {handle}")).await?;
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// INQUIRY (6-byte CDB, 36 bytes of data in) for `scsi cmd`.
const INQUIRY_CDB: &str = "120000002400";
/// READ CAPACITY(10) for `scsi cmd`: 8 bytes in.
const READ_CAPACITY_CDB: &str = "25000000000000000000";

/// A field of a `scsi cmd` answer (`status`, `residue`, `sense`, `data`).
fn raw_field<'a>(reply: &'a str, key: &str) -> Result<&'a str> {
    reply
        .lines()
        .find_map(|l| {
            l.strip_prefix(key).and_then(|v| v.strip_prefix(' ').or(if v.is_empty() { Some("") } else { None }))
        })
        .with_context(|| format!("no {key:?} line in the scsi cmd answer {reply:?}"))
}

/// usb-storage's recovery from a stall, provoked under QEMU: an INQUIRY
/// whose CBW says "data out" (`scsi cmd ... out 36`) makes QEMU's stick
/// take the CBW and then STALL every bulk packet (`needs_reset`), which
/// only a port reset clears. The guest resets the stick's port, gives it
/// its old address and configuration back and says `* usb reset 1-1`; the
/// command fails EIO. The same objects stay (no uevent, same generations),
/// the disk answers again (READ CAPACITY through the transport, a rescan
/// through the midlayer), the tree equals QEMU's and the one before. The
/// same behind a hub (the hub's port is reset), and with the stick
/// unplugged in the middle of its reset (checkpoint `usb-reset`).
pub async fn storage_reset_recovery(vm: &mut Vm) -> Result<Goldens> {
    let controller = controller_devpath(vm).await?;
    let baseline = vm.stats().await?;
    let stick = vm.usb_plug(&usb("usb-storage", "stick", "1").prop("drive", "usb0")).await?;
    vm.settle().await?;
    let before = vm.checked_snapshot().await?;
    let iface = format!("{}/1-1:1.0", stick.devpath);
    let host = crate::bus::scsi::host_number(&before.subtree(&iface).render(), &iface)?;
    let address = format!("{host}:0:0:0");
    let lun = format!("{iface}/host{host}/target{host}:0:0/{address}");
    let below = format!("{}/", stick.devpath);
    let objects = |stats: &crate::stats::Stats| -> Vec<(String, u64)> {
        stats
            .devices
            .iter()
            .filter(|(path, _)| **path == stick.devpath || path.starts_with(&below))
            .map(|(path, d)| (path.clone(), d.generation))
            .collect()
    };
    let objects_before = objects(&vm.stats().await?);
    ensure!(objects_before.iter().any(|(p, _)| *p == lun), "the stick's LUN {lun}: {objects_before:?}");

    let inquiry = vm.call_text(&format!("scsi cmd {address} {INQUIRY_CDB} in 36")).await?;
    ensure!(raw_field(&inquiry, "status")? == "0x00", "a well-formed INQUIRY works: {inquiry:?}");
    ensure!(raw_field(&inquiry, "data")?.len() == 72, "36 bytes of INQUIRY data: {inquiry:?}");

    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    let errno = vm.expect_errno(&format!("scsi cmd {address} {INQUIRY_CDB} out 36")).await?;
    ensure!(errno == "EIO", "the mismatched command fails EIO, got {errno}");
    let notice = "usb reset 1-1";
    vm.wait_notice(ncursor, notice, |n| n == notice).await?;
    vm.settle().await?;

    let capacity = vm.call_text(&format!("scsi cmd {address} {READ_CAPACITY_CDB} in 8")).await?;
    let sectors = images::DISK.sectors;
    let expected = format!("{:08x}00000200", sectors - 1);
    ensure!(raw_field(&capacity, "status")? == "0x00", "READ CAPACITY after the reset: {capacity:?}");
    ensure!(raw_field(&capacity, "data")? == expected, "READ CAPACITY after the reset: {capacity:?}");
    vm.call(&format!("scsi rescan {address}")).await.context("a rescan through the midlayer after the reset")?;
    let handle = vm.call_text(&format!("open {lun}/capacity")).await?;
    let value = vm.call_text(&format!("read {handle}")).await?;
    vm.call(&format!("close {handle}")).await?;
    ensure!(value == format!("{sectors}\n"), "capacity after the reset: {value:?}");

    let events: Vec<String> =
        vm.control.uevents_since(ucursor).into_iter().map(|u| format!("{} {}", u.action, u.devpath)).collect();
    ensure!(events.is_empty(), "a port reset keeps the objects: no uevent, got {events:?}");
    let resets: Vec<String> =
        vm.control.notices_since(ncursor).into_iter().filter(|n| n.starts_with("usb reset")).collect();
    ensure!(resets == [notice], "one reset: {resets:?}");
    let objects_after = objects(&vm.stats().await?);
    ensure!(
        objects_after == objects_before,
        "the same objects, same generations: {objects_before:?} -> {objects_after:?}"
    );
    let after = vm.checked_snapshot().await?;
    ensure!(
        after.subtree(&controller).render() == before.subtree(&controller).render(),
        "the tree after the reset is the tree before it"
    );
    let mut goldens = Goldens::new();
    goldens.push("usb_storage_reset_recovery", after.subtree(&controller).render());

    vm.unplug("stick").await?;
    vm.settle().await?;
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;

    // Behind a hub the reset is the hub's SET_PORT_FEATURE(PORT_RESET) on
    // the stick's port; the same recovery, the same objects.
    vm.usb_plug(&usb("usb-hub", "hub2", "2")).await?;
    let stick = vm.usb_plug(&usb("usb-storage", "behind", "2.3").prop("drive", "usb0")).await?;
    vm.settle().await?;
    let name = stick.devpath.rsplit('/').next().unwrap_or_default().to_string();
    let iface = format!("{}/{name}:1.0", stick.devpath);
    let host = crate::bus::scsi::host_number(&vm.snapshot().await?.subtree(&iface).render(), &iface)?;
    let address = format!("{host}:0:0:0");
    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    let errno = vm.expect_errno(&format!("scsi cmd {address} {INQUIRY_CDB} out 36")).await?;
    ensure!(errno == "EIO", "the mismatched command behind the hub fails EIO, got {errno}");
    let notice = format!("usb reset {name}");
    vm.wait_notice(ncursor, &notice, |n| n == notice).await?;
    let capacity = vm.call_text(&format!("scsi cmd {address} {READ_CAPACITY_CDB} in 8")).await?;
    ensure!(raw_field(&capacity, "data")? == expected, "READ CAPACITY behind the hub after the reset: {capacity:?}");
    let events: Vec<String> =
        vm.control.uevents_since(ucursor).into_iter().map(|u| format!("{} {}", u.action, u.devpath)).collect();
    ensure!(events.is_empty(), "a reset behind a hub keeps the objects too: {events:?}");
    vm.checked_snapshot().await?;
    vm.unplug("hub2").await?;
    vm.settle().await?;
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;

    // The stick unplugged in the middle of its reset: the hub thread stops
    // at the `usb-reset` checkpoint (port reset, before SET_ADDRESS), QEMU
    // deletes the stick, the thread goes on. The reset finds no device, the
    // command fails ENODEV, and the ordinary removal takes LUN, target,
    // host, interface and device down in that order; nothing leaks.
    let stick = vm.usb_plug(&usb("usb-storage", "cut", "1").prop("drive", "usb0")).await?;
    vm.settle().await?;
    let iface = format!("{}/1-1:1.0", stick.devpath);
    let host = crate::bus::scsi::host_number(&vm.snapshot().await?.subtree(&iface).render(), &iface)?;
    let address = format!("{host}:0:0:0");
    let (ucursor, ncursor, qcursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor(), vm.qmp.cursor());
    vm.call("checkpoint arm usb-reset").await?;
    let command = vm.send(&format!("scsi cmd {address} {INQUIRY_CDB} out 36")).await?;
    let notice = "checkpoint usb-reset 1-1";
    vm.wait_notice(ncursor, notice, |n| n == notice).await?;
    vm.device_del("cut").await?;
    vm.wait_device_deleted(qcursor, "cut").await?;
    vm.call("checkpoint release usb-reset").await?;
    let failed = vm.wait_reply(command).await.err().context("the command cut by the unplug must fail")?;
    ensure!(crate::files::errno(&failed) == Some("ENODEV"), "the cut command fails ENODEV: {failed:#}");
    vm.settle().await?;
    let removes: Vec<String> = vm
        .control
        .uevents_since(ucursor)
        .into_iter()
        .filter(|u| u.action == "remove" && !u.devpath.contains("/part"))
        .map(|u| u.devpath)
        .collect();
    let target = format!("{iface}/host{host}/target{host}:0:0");
    let expected = [
        format!("{target}/{address}"),
        target.clone(),
        format!("{iface}/host{host}"),
        iface.clone(),
        stick.devpath.clone(),
    ];
    ensure!(removes == expected, "LUN, target, host, interface, device: {removes:?}");
    ensure!(
        !vm.control.notices_since(ncursor).into_iter().any(|n| n.starts_with("usb reset")),
        "no reset may be reported for a stick that went away"
    );
    vm.checked_snapshot().await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}
