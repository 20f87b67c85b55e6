//! SCSI behind virtio-scsi on `pc` (legacy transport) and `q35` (modern,
//! behind a root port). QEMU unplugs a SCSI device without asking the guest,
//! so these scenarios are about what the guest finds after the fact: a LUN
//! whose device is already gone while a read is held, a command in flight,
//! a scan half done. Every checked snapshot compares the guest's SCSI view
//! with QEMU's own (`bus::scsi::scsi_matches_qemu`).
//!
//! Disks hot-plugged here sit on `null-co` nodes (`read-zeroes=on`) made
//! with `blockdev-add`; a `-blockdev` node outlives `device_del`, so a disk
//! can come back.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, ensure};
use serde_json::json;

use super::Goldens;
use crate::bus::scsi::{ScsiAddress, host_number, lun_devpath};
use crate::hotplug::{Plug, UnplugOrder};
use crate::stats::Stats;
use crate::vm::Vm;

/// The profile's HBA (see the `scsi-disk` capability).
const HBA: &str = "scsi0";

/// The HBA's function and the guest's host number under it.
async fn host_of(vm: &Vm, hba: &str) -> Result<(String, u32)> {
    let function = vm.pci_devpath(hba).await?;
    let subtree = vm.call_text(&format!("snapshot {function}")).await?;
    Ok((function.clone(), host_number(&subtree, &function)?))
}

/// A `null-co` block node of `bytes` that reads zeroes.
async fn null_node(vm: &Vm, node: &str, bytes: u64) -> Result<()> {
    vm.qmp
        .execute_raw(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": node, "size": bytes, "read-zeroes": true}),
        )
        .await
        .with_context(|| format!("blockdev-add null-co {node}"))?;
    Ok(())
}

fn scsi_hd(id: &str, hba: &str, node: &str, target: u32, lun: u32) -> Plug {
    Plug::new("scsi-hd", id).bus(&format!("{hba}.0")).prop("drive", node).prop("scsi-id", target).prop("lun", lun)
}

/// Open `path`, read it, close it.
async fn read_attr(vm: &Vm, path: &str) -> Result<String> {
    let handle = vm.call_text(&format!("open {path}")).await?;
    let value = vm.call_text(&format!("read {handle}")).await;
    vm.call(&format!("close {handle}")).await?;
    value
}

/// The stats baseline plus every surviving device's refcount.
fn check_refcounts(now: &Stats, baseline: &Stats) -> Result<()> {
    now.check_baseline(baseline)?;
    for (path, before) in &baseline.devices {
        let after = now.device(path)?;
        ensure!(
            after.refcount == before.refcount,
            "{path}: refcount {} at the baseline, now {}",
            before.refcount,
            after.refcount
        );
    }
    Ok(())
}

/// The cold-plugged disk: QEMU's identity, the image's size, MBR signature
/// and partitions, all read through the bus.
pub async fn disk(vm: &mut Vm) -> Result<Goldens> {
    let snapshot = vm.checked_snapshot().await?;
    let (function, host) = host_of(vm, HBA).await?;
    let lun = lun_devpath(&function, host, &ScsiAddress { hba: HBA.into(), target: 0, lun: 0 });
    let recipe = &images::DISK;
    let value = |attr: &str| snapshot.value(&format!("{lun}/{attr}")).map(str::to_string);
    ensure!(value("capacity") == Some(recipe.sectors.to_string()), "capacity {:?}", value("capacity"));
    ensure!(value("block_size").as_deref() == Some("512"), "block_size {:?}", value("block_size"));
    ensure!(value("signature") == Some(format!("{:#010x}", recipe.signature)), "signature {:?}", value("signature"));
    for p in recipe.partitions {
        let part = |attr: &str| value(&format!("part{}/{attr}", p.number));
        ensure!(part("start") == Some(p.start.to_string()), "part{} start {:?}", p.number, part("start"));
        ensure!(part("size") == Some(p.sectors.to_string()), "part{} size {:?}", p.number, part("size"));
        ensure!(part("type") == Some(format!("{:#04x}", p.kind)), "part{} type {:?}", p.number, part("type"));
    }
    let parts = snapshot.children(&lun).into_iter().filter(|c| c.starts_with("part")).count();
    ensure!(parts == recipe.partitions.len(), "{parts} partitions, the recipe has {}", recipe.partitions.len());
    let mut goldens = Goldens::new();
    goldens.push("scsi_disk", snapshot.subtree(&function).render());
    Ok(goldens)
}

/// Disks at targets 1, 2 and 3 (LUN 1 on target 2, which has no LUN 0);
/// the middle one is removed and a disk of another size takes its place.
pub async fn add_remove_readd(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let mut goldens = Goldens::new();
    let (function, _) = host_of(vm, HBA).await?;
    for (node, mib) in [("n1", 1), ("n2", 2), ("n3", 3), ("n2b", 5)] {
        null_node(vm, node, mib << 20).await?;
    }
    for (id, node, target, lun) in [("d1", "n1", 1, 0), ("d2", "n2", 2, 1), ("d3", "n3", 3, 0)] {
        let plugged = vm.plug(&scsi_hd(id, HBA, node, target, lun)).await?;
        vm.checked_snapshot().await.map_err(|e| e.context(format!("after adding {id} at {}", plugged.devpath)))?;
    }
    goldens.push("scsi_three_added", vm.checked_snapshot().await?.subtree(&function).render());
    let unplugged = vm.unplug("d2").await?;
    ensure!(unplugged.order == UnplugOrder::NoEject, "{unplugged:?}");
    vm.settle().await?;
    vm.checked_snapshot().await?;
    let readded = vm.plug(&scsi_hd("d2b", HBA, "n2b", 2, 1)).await?;
    ensure!(
        readded.devpath == unplugged.devpath,
        "same address, same path: {} vs {}",
        readded.devpath,
        unplugged.devpath
    );
    ensure!(read_attr(vm, &format!("{}/capacity", readded.devpath)).await? == "10240\n", "the new disk is 5 MiB");
    goldens.push("scsi_middle_replaced", vm.checked_snapshot().await?.subtree(&function).render());
    for id in ["d1", "d2b", "d3"] {
        vm.unplug(id).await?;
        vm.settle().await?;
        vm.checked_snapshot().await?;
    }
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(goldens)
}

/// A read held in a disk's `capacity` while QEMU removes the disk on its
/// own: DEVICE_DELETED comes without the guest, the LUN goes dying (new
/// opens ENOENT, other handles ENODEV), the held read returns the old value
/// after `unhold`, and the LUN is released once the read drained.
pub async fn held_read_surprise_removal(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    null_node(vm, "n1", 1 << 20).await?;
    let disk = vm.plug(&scsi_hd("d1", HBA, "n1", 1, 0)).await?;
    let capacity = format!("{}/capacity", disk.devpath);
    let held = vm.call_text(&format!("open {capacity}")).await?;
    let other = vm.call_text(&format!("open {capacity}")).await?;
    vm.call(&format!("hold {capacity}")).await?;
    let read = vm.send(&format!("read {held}")).await?;
    vm.wait_stats("the held read's active reference", |s| s.devices.get(&disk.devpath).is_some_and(|d| d.active == 1))
        .await?;

    let qcursor = vm.qmp.cursor();
    let unplug = vm.start_unplug("d1").await?;
    // QEMU finishes on its own: no guest step is needed for DEVICE_DELETED.
    vm.wait_qmp_event(qcursor, "DEVICE_DELETED for d1 while a read is held", |e| {
        e.name == "DEVICE_DELETED" && e.str("device") == Some("d1")
    })
    .await?;
    ensure!(!vm.qemu_has_device("d1").await?, "QEMU still lists d1 after DEVICE_DELETED");
    let stats =
        vm.wait_stats("the LUN dying", |s| s.devices.get(&disk.devpath).is_some_and(|d| d.state == "dying")).await?;
    ensure!(stats.device(&disk.devpath)?.active == 1, "the held read keeps its active reference: {stats:?}");
    ensure!(vm.expect_errno(&format!("open {capacity}")).await? == "ENOENT", "a new open of a dying LUN");
    ensure!(vm.expect_errno(&format!("read {other}")).await? == "ENODEV", "another handle on a dying LUN");
    ensure!(!read.is_answered(), "the held read finished before unhold");

    vm.call(&format!("unhold {capacity}")).await?;
    ensure!(vm.wait_reply(read).await? == b"2048\n", "the held read returns the old capacity");
    let unplugged = unplug.finish().await?;
    ensure!(unplugged.order == UnplugOrder::NoEject, "{unplugged:?}");
    for handle in [&held, &other] {
        ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV");
        vm.call(&format!("close {handle}")).await?;
    }
    vm.settle().await?;
    let stats = vm.stats().await?;
    ensure!(!stats.devices.contains_key(&disk.devpath), "the LUN is not released after the read drained: {stats:?}");
    check_refcounts(&stats, &baseline)?;
    vm.checked_snapshot().await?;
    Ok(Goldens::new())
}

/// A `devref` on an unplugged LUN delays the disk QEMU plugs at the same
/// address (`* hotplug busy H:0:id:lun`) until it is dropped; a handle on
/// the old LUN never reads the new, different size.
pub async fn readd_waits_release(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    null_node(vm, "old", 1 << 20).await?;
    null_node(vm, "new", 3 << 20).await?;
    let first = vm.plug(&scsi_hd("first", HBA, "old", 1, 0)).await?;
    let capacity = format!("{}/capacity", first.devpath);
    let stale = vm.call_text(&format!("open {capacity}")).await?;
    ensure!(vm.call_text(&format!("read {stale}")).await? == "2048\n");
    vm.call(&format!("devref get {}", first.devpath)).await?;
    vm.unplug("first").await?;
    let held = vm.stats().await?;
    let old = held.device(&first.devpath)?;
    ensure!(old.state == "deleted" && old.refcount >= 1, "the unplugged LUN must stay, referenced: {held:?}");

    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    vm.device_add(&scsi_hd("second", HBA, "new", 1, 0)).await?;
    let name = first.devpath.rsplit('/').next().unwrap_or_default().to_string();
    let busy = format!("hotplug busy {name}");
    vm.wait_notice(ncursor, &busy, |n| n == busy).await?;
    ensure!(vm.snapshot().await?.get(&first.devpath).is_none(), "the new LUN appeared under a name still held");
    ensure!(!vm.control.uevents_since(ucursor).iter().any(|u| u.action == "add"), "added before the release");
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "a stale handle while the new LUN waits");

    vm.call(&format!("devref put {}", first.devpath)).await?;
    vm.wait_uevent(ucursor, &format!("add {}", first.devpath), |u| u.action == "add" && u.devpath == first.devpath)
        .await?;
    ensure!(read_attr(vm, &capacity).await? == "6144\n", "the new LUN has the new size");
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "the stale handle never reads the new size");
    vm.call(&format!("close {stale}")).await?;
    vm.checked_snapshot().await?;
    vm.unplug("second").await?;
    vm.settle().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(Goldens::new())
}

/// Booted with `scsi.event_buffers=0`: QEMU drops every hot-plug event and
/// the guest only learns that it missed some. Its rescan (every target, and
/// an INQUIRY to every known LUN) must find each add and each removal.
pub async fn events_missed(vm: &mut Vm) -> Result<Goldens> {
    ensure!(vm.config.append.contains("scsi.event_buffers=0"), "this scenario boots with scsi.event_buffers=0");
    let baseline = vm.stats().await?;
    for (node, mib) in [("m1", 1), ("m2", 2), ("m3", 3)] {
        null_node(vm, node, mib << 20).await?;
    }
    // Three at once: one MISSED notice covers them all.
    let ucursor = vm.control.uevent_cursor();
    for (id, node, target) in [("e1", "m1", 1), ("e2", "m2", 2), ("e3", "m3", 3)] {
        vm.device_add(&scsi_hd(id, HBA, node, target, 0)).await?;
    }
    for id in ["e1", "e2", "e3"] {
        let devpath = crate::bus::scsi::locate(vm, id).await?.devpath;
        vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
    }
    vm.settle().await?;
    let added = vm.checked_snapshot().await?;
    // Two unplugs at once, then a re-plug at a freed address.
    let ucursor = vm.control.uevent_cursor();
    let mut gone = Vec::new();
    for id in ["e1", "e3"] {
        gone.push(crate::bus::scsi::locate(vm, id).await?.devpath);
        let qcursor = vm.qmp.cursor();
        vm.device_del(id).await?;
        vm.wait_device_deleted(qcursor, id).await?;
    }
    for devpath in &gone {
        vm.wait_uevent(ucursor, &format!("remove {devpath}"), |u| u.action == "remove" && &u.devpath == devpath)
            .await?;
    }
    vm.settle().await?;
    vm.checked_snapshot().await?;
    vm.plug(&scsi_hd("e4", HBA, "m1", 3, 0)).await?;
    vm.settle().await?;
    vm.checked_snapshot().await?;
    for id in ["e2", "e4"] {
        vm.unplug(id).await?;
    }
    vm.settle().await?;
    vm.checked_snapshot().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    let (function, _) = host_of(vm, HBA).await?;
    let mut goldens = Goldens::new();
    goldens.push("scsi_found_by_rescan", added.subtree(&function).render());
    Ok(goldens)
}

/// A second virtio-scsi-pci hot-added over PCI with two disks, then
/// unplugged: the guest removes depth first (each LUN, then its target,
/// then the host, then the PCI function), all before it ejects, checked on
/// the order the guest wrote its uevents and notices on the one channel.
pub async fn hba_hotplug(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let slot = vm.config.profile.pci_slot(1)?;
    let hba = vm.plug(&Plug::new("virtio-scsi-pci", "hba1").at(&slot)).await?;
    null_node(vm, "h1", 1 << 20).await?;
    null_node(vm, "h2", 2 << 20).await?;
    vm.plug(&scsi_hd("hd1", "hba1", "h1", 0, 0)).await?;
    vm.plug(&scsi_hd("hd2", "hba1", "h2", 1, 0)).await?;
    vm.settle().await?;
    let snapshot = vm.checked_snapshot().await?;
    let mut goldens = Goldens::new();
    goldens.push("scsi_hba_two_disks", snapshot.subtree(&hba.devpath).render());

    let ucursor = vm.control.uevent_cursor();
    let unplugged = vm.unplug("hba1").await?;
    ensure!(unplugged.order == UnplugOrder::RemovedBeforeEject, "the guest ejected the HBA before removing it");
    let below = format!("{}/", hba.devpath);
    let removes: Vec<String> = vm
        .control
        .uevents_since(ucursor)
        .iter()
        .filter(|u| u.action == "remove" && (u.devpath == hba.devpath || u.devpath.starts_with(&below)))
        .map(|u| u.devpath.clone())
        .collect();
    let kinds: Vec<&str> = removes
        .iter()
        .map(|p| {
            let last = p.rsplit('/').next().unwrap_or_default();
            if p == &hba.devpath {
                "function"
            } else if last.starts_with("host") {
                "host"
            } else if last.starts_with("target") {
                "target"
            } else if last.starts_with("part") {
                "partition"
            } else {
                "lun"
            }
        })
        .collect();
    for kind in ["lun", "target", "host", "function"] {
        let count = kinds.iter().filter(|k| **k == kind).count();
        let want = match kind {
            "lun" | "target" => 2,
            _ => 1,
        };
        ensure!(count == want, "{count} {kind} remove uevents, expected {want}: {removes:?}");
    }
    // Depth first: no directory is removed before anything below it.
    for (i, parent) in removes.iter().enumerate() {
        let prefix = format!("{parent}/");
        if let Some(child) = removes[i + 1..].iter().find(|c| c.starts_with(&prefix)) {
            return Err(anyhow!("{parent} was removed before {child}: {removes:?}"));
        }
    }
    ensure!(removes.last() == Some(&hba.devpath), "the PCI function goes last: {removes:?}");
    vm.settle().await?;
    vm.checked_snapshot().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(goldens)
}

/// A hot-plugged scsi-cd: a medium change and an eject each send `change`
/// on the LUN and replace its `disc`; a handle on the old medium reads
/// ENODEV, never the new one.
pub async fn cd_media(vm: &mut Vm) -> Result<Goldens> {
    images::ensure().context("building the CD images")?;
    let baseline = vm.stats().await?;
    let (alpha, beta) = (&images::CD_ALPHA, &images::CD_BETA);
    vm.qmp
        .execute_raw(
            "blockdev-add",
            json!({"driver": "raw", "node-name": "alpha", "read-only": true,
                   "file": {"driver": "file", "filename": crate::paths::image(alpha.file).display().to_string(), "read-only": true}}),
        )
        .await
        .context("blockdev-add the alpha CD")?;
    let cd = vm
        .plug(
            &Plug::new("scsi-cd", "cd1")
                .bus(&format!("{HBA}.0"))
                .prop("drive", "alpha")
                .prop("scsi-id", 2)
                .prop("lun", 0),
        )
        .await?;
    vm.settle().await?;
    let disc = format!("{}/disc/capacity", cd.devpath);
    ensure!(read_attr(vm, &disc).await? == format!("{}\n", alpha.sectors()), "alpha's size");
    let mut goldens = Goldens::new();
    goldens.push("scsi_cd_alpha", vm.checked_snapshot().await?.subtree(&cd.devpath).render());

    let old = vm.call_text(&format!("open {disc}")).await?;
    let ucursor = vm.control.uevent_cursor();
    vm.qmp
        .execute_raw(
            "blockdev-change-medium",
            json!({"id": "cd1", "filename": crate::paths::image(beta.file).display().to_string(), "format": "raw", "read-only-mode": "read-only"}),
        )
        .await
        .context("blockdev-change-medium cd1 beta")?;
    wait_change(vm, ucursor, &cd.devpath).await?;
    vm.settle().await?;
    // The guest may see "no medium" and then the new one: wait for beta.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read_attr(vm, &disc).await.ok() != Some(format!("{}\n", beta.sectors())) {
        ensure!(std::time::Instant::now() < deadline, "the guest never showed beta's size");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ensure!(vm.expect_errno(&format!("read {old}")).await? == "ENODEV", "a handle on the old medium");
    vm.checked_snapshot().await?;

    let ucursor = vm.control.uevent_cursor();
    vm.qmp.execute_raw("eject", json!({"id": "cd1", "force": true})).await.context("eject cd1")?;
    wait_change(vm, ucursor, &cd.devpath).await?;
    vm.settle().await?;
    ensure!(read_attr(vm, &format!("{}/media_present", cd.devpath)).await? == "0\n", "no medium after eject");
    goldens.push("scsi_cd_ejected", vm.checked_snapshot().await?.subtree(&cd.devpath).render());
    vm.call(&format!("close {old}")).await?;
    vm.unplug("cd1").await?;
    vm.settle().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(goldens)
}

async fn wait_change(vm: &Vm, from: usize, devpath: &str) -> Result<()> {
    vm.wait_uevent(from, &format!("change {devpath}"), |u| u.action == "change" && u.devpath == devpath).await?;
    Ok(())
}

/// 50 plug/unplug cycles of a disk at one address, two sizes in turn, end
/// at the stats baseline, refcounts included, with the tree unchanged.
pub async fn fifty_cycles(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let before = vm.snapshot().await?;
    null_node(vm, "c1", 1 << 20).await?;
    null_node(vm, "c2", 2 << 20).await?;
    for cycle in 0..50 {
        let node = if cycle % 2 == 0 { "c1" } else { "c2" };
        let id = format!("cycle{cycle}");
        vm.plug(&scsi_hd(&id, HBA, node, 1, 0)).await.map_err(|e| e.context(format!("cycle {cycle}")))?;
        vm.unplug(&id).await.map_err(|e| e.context(format!("cycle {cycle}")))?;
    }
    vm.settle().await?;
    let stats = vm.stats().await?;
    check_refcounts(&stats, &baseline)?;
    ensure!(stats.released() >= 50, "50 unplugged LUNs must have been released: {stats:?}");
    ensure!(vm.snapshot().await? == before, "the tree differs after 50 cycles");
    Ok(Goldens::new())
}

/// QEMU refuses bad SCSI plugs with its own text; after each refusal a
/// valid plug still works and the views agree.
pub async fn refusals(vm: &mut Vm) -> Result<Goldens> {
    null_node(vm, "ok", 1 << 20).await?;
    null_node(vm, "spare", 1 << 20).await?;
    vm.plug(&scsi_hd("first", HBA, "ok", 1, 0)).await?;
    // QEMU's words, from hw/scsi/scsi-bus.c and qdev's property parser.
    let cases = [
        ("unknown bus", scsi_hd("r1", "nosuch", "spare", 2, 0), "Bus 'nosuch.0' not found"),
        ("scsi-id out of range", scsi_hd("r2", HBA, "spare", 256, 0), "bad scsi device id: 256"),
        ("duplicate address", scsi_hd("r3", HBA, "spare", 1, 0), "lun already used by 'first'"),
        ("missing drive node", scsi_hd("r4", HBA, "nosuch", 2, 0), "'nosuch'"),
    ];
    for (n, (what, plug, text)) in cases.into_iter().enumerate() {
        let err = vm.device_add(&plug).await.err().ok_or_else(|| anyhow!("{what}: device_add succeeded"))?;
        ensure!(err.to_string().contains(text), "{what}: QEMU's text {text:?} is missing from {err}");
        ensure!(!vm.qemu_has_device(&plug.id).await?, "{what}: QEMU kept {}", plug.id);
        let probe = format!("probe{n}");
        vm.plug(&scsi_hd(&probe, HBA, "spare", 2, 0)).await.map_err(|e| e.context(format!("after {what}")))?;
        vm.settle().await?;
        vm.checked_snapshot().await?;
        vm.unplug(&probe).await?;
    }
    vm.unplug("first").await?;
    vm.settle().await?;
    vm.checked_snapshot().await?;
    Ok(Goldens::new())
}

/// A LUN removed with a command in flight, every time: the guest stops at
/// `scsi-io` (the command is with QEMU, its completion not yet read), the
/// disk is deleted, then the guest goes on. The waiter fails ENODEV, nothing
/// hangs, nothing leaks.
pub async fn removal_with_command_in_flight(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    null_node(vm, "io", 1 << 20).await?;
    let disk = vm.plug(&scsi_hd("busy", HBA, "io", 1, 0)).await?;
    vm.settle().await?;
    let name = disk.devpath.rsplit('/').next().unwrap_or_default().to_string();
    let ncursor = vm.control.notice_cursor();
    vm.call("checkpoint arm scsi-io").await?;
    let probe = vm.send(&format!("scsi rescan {name}")).await?;
    let stop = format!("checkpoint scsi-io {name}");
    vm.wait_notice(ncursor, &stop, |n| n.starts_with(&format!("{stop} "))).await?;
    let qcursor = vm.qmp.cursor();
    vm.device_del("busy").await?;
    vm.wait_device_deleted(qcursor, "busy").await?;
    vm.call("checkpoint release scsi-io").await?;
    let outcome = vm.wait_reply(probe).await;
    let errno = match outcome {
        Ok(reply) => return Err(anyhow!("the command in flight succeeded: {:?}", String::from_utf8_lossy(&reply))),
        Err(e) => e.downcast_ref::<crate::control::ControlError>().and_then(|c| c.errno().map(str::to_string)),
    };
    ensure!(errno.as_deref() == Some("ENODEV"), "the waiter must fail ENODEV, got {errno:?}");
    vm.settle().await?;
    ensure!(vm.snapshot().await?.get(&disk.devpath).is_none(), "the LUN is still registered");
    vm.checked_snapshot().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(Goldens::new())
}

/// A LUN unplugged while the guest is scanning it, every time: the guest
/// stops at `scsi-scan` (found, before its INQUIRY), the disk is deleted,
/// then the scan goes on. No LUN is registered, not even for a moment.
pub async fn removal_mid_scan(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    null_node(vm, "scan", 1 << 20).await?;
    let (function, host) = host_of(vm, HBA).await?;
    let devpath = lun_devpath(&function, host, &ScsiAddress { hba: HBA.into(), target: 1, lun: 0 });
    let name = format!("{host}:0:1:0");
    let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
    vm.call("checkpoint arm scsi-scan").await?;
    vm.device_add(&scsi_hd("ghost", HBA, "scan", 1, 0)).await?;
    let stop = format!("checkpoint scsi-scan {name}");
    vm.wait_notice(ncursor, &stop, |n| n == stop || n.starts_with(&format!("{stop} "))).await?;
    let qcursor = vm.qmp.cursor();
    vm.device_del("ghost").await?;
    vm.wait_device_deleted(qcursor, "ghost").await?;
    vm.call("checkpoint release scsi-scan").await?;
    vm.settle().await?;
    let half = vm.control.uevents_since(ucursor).iter().filter(|u| u.devpath.starts_with(&devpath)).count();
    ensure!(half == 0, "the LUN scanned while it was unplugged sent uevents ({half})");
    ensure!(vm.snapshot().await?.get(&devpath).is_none(), "a half-registered LUN at {devpath}");
    vm.checked_snapshot().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    // The address works afterwards.
    vm.plug(&scsi_hd("after", HBA, "scan", 1, 0)).await?;
    vm.unplug("after").await?;
    vm.settle().await?;
    check_refcounts(&vm.stats().await?, &baseline)?;
    Ok(Goldens::new())
}
