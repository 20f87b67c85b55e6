//! IDE on `pc`: static drive slots, real reads from the recipe images, CD
//! media changes through QMP checked against `query-block`, and the 2002
//! IDE question: a reference to an old drive or medium never reaches a new
//! one.

use anyhow::{Result, ensure};
use images::{CD_ALPHA, CD_BETA, DISK};

use super::Goldens;
use crate::vm::Vm;

const DISK_PATH: &str = "root/pci0/00:01.1/ide0/0.0";
const CD: &str = "cd0";
const CD_PATH: &str = "root/pci0/00:01.1/ide1/1.0";
const CAPACITY: &str = "root/pci0/00:01.1/ide1/1.0/disc/capacity";

fn image(recipe: &images::CdRecipe) -> std::path::PathBuf {
    crate::paths::image(recipe.file)
}

/// The disk shows what its recipe wrote: the guest read sector 0 through
/// the bus and parsed the MBR.
pub async fn disk_matches_recipe(vm: &mut Vm) -> Result<Goldens> {
    let snapshot = vm.checked_snapshot().await?;
    let value = |attr: &str| snapshot.value(&format!("{DISK_PATH}/{attr}")).map(str::to_string);
    ensure!(value("capacity") == Some(DISK.sectors.to_string()), "capacity {:?}", value("capacity"));
    ensure!(value("signature") == Some(format!("{:#010x}", DISK.signature)), "signature {:?}", value("signature"));
    for p in DISK.partitions {
        let part = format!("part{}", p.number);
        ensure!(value(&format!("{part}/start")) == Some(p.start.to_string()), "{part} start");
        ensure!(value(&format!("{part}/size")) == Some(p.sectors.to_string()), "{part} size");
    }
    ensure!(snapshot.children(DISK_PATH).iter().filter(|c| c.starts_with("part")).count() == DISK.partitions.len());
    vm.check_media().await?;
    let mut goldens = Goldens::new();
    goldens.push("ide_boot", snapshot.subtree("root/pci0/00:01.1").render());
    Ok(goldens)
}

/// Insert a medium (tray path), change it (blockdev-change-medium), eject
/// it, insert again into the open tray; QEMU and the guest agree after every
/// step.
pub async fn media_insert_change_eject(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let mut goldens = Goldens::new();
    vm.insert_media(CD, &image(&CD_ALPHA)).await?;
    let inserted = vm.check_media().await?;
    ensure!(inserted.value(&format!("{CD_PATH}/disc/volume")) == Some(CD_ALPHA.volume), "volume id read from the CD");
    goldens.push("ide_media_inserted", inserted.subtree(CD_PATH).render());
    vm.change_media(CD, &image(&CD_BETA)).await?;
    let changed = vm.check_media().await?;
    ensure!(changed.value(CAPACITY) == Some(CD_BETA.sectors().to_string().as_str()));
    goldens.push("ide_media_changed", changed.subtree(CD_PATH).render());
    vm.eject(CD, false).await?;
    goldens.push("ide_media_ejected", vm.check_media().await?.subtree(CD_PATH).render());
    vm.insert_media(CD, &image(&CD_ALPHA)).await?;
    ensure!(
        vm.check_media().await?.subtree(CD_PATH).render() == goldens.0[0].1,
        "re-inserting ALPHA must look like the first insert"
    );
    vm.eject(CD, false).await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A read held on the old medium's capacity across a change returns the old
/// value; handles on the old medium read ENODEV afterwards, never the new
/// value; the new medium appears only after the old one drained.
pub async fn stale_capacity_across_change(vm: &mut Vm) -> Result<Goldens> {
    ensure!(CD_ALPHA.sectors() != CD_BETA.sectors(), "the two media must differ in what the held read returns");
    vm.change_media(CD, &image(&CD_ALPHA)).await?;
    let held = vm.call_text(&format!("open {CAPACITY}")).await?;
    let stale = vm.call_text(&format!("open {CAPACITY}")).await?;
    vm.call(&format!("hold {CAPACITY}")).await?;
    let read = vm.send(&format!("read {held}")).await?;
    vm.wait_stats("the held read on the disc", |s| {
        s.devices.get(&format!("{CD_PATH}/disc")).is_some_and(|d| d.active == 1)
    })
    .await?;

    let ucursor = vm.control.uevent_cursor();
    vm.change_media_in_qemu(CD, &image(&CD_BETA)).await?;
    // QEMU has the new medium; the guest's old disc is dying, held open by
    // the read in flight, and the new one cannot appear yet.
    vm.wait_stats("the old disc dying", |s| {
        s.devices.get(&format!("{CD_PATH}/disc")).is_some_and(|d| d.state == "dying")
    })
    .await?;
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "old handle must read ENODEV mid-change");
    ensure!(!read.is_answered(), "the held read finished early");

    vm.call(&format!("unhold {CAPACITY}")).await?;
    let old = vm.wait_reply(read).await?;
    ensure!(
        old == format!("{}\n", CD_ALPHA.sectors()).as_bytes(),
        "held read returned {:?}",
        String::from_utf8_lossy(&old)
    );
    vm.wait_uevent(ucursor, "change with the new medium", |u| {
        u.action == "change" && u.devpath == CD_PATH && u.get("MEDIA_PRESENT") == Some("1")
    })
    .await?;
    for handle in [&held, &stale] {
        ensure!(
            vm.expect_errno(&format!("read {handle}")).await? == "ENODEV",
            "a handle on the old medium must never read the new one"
        );
        vm.call(&format!("close {handle}")).await?;
    }
    let fresh = vm.call_text(&format!("open {CAPACITY}")).await?;
    ensure!(vm.call(&format!("read {fresh}")).await? == format!("{}\n", CD_BETA.sectors()).as_bytes());
    vm.call(&format!("close {fresh}")).await?;
    vm.check_media().await?;
    Ok(Goldens::new())
}

/// A reference still held on the old medium delays the new one (the 2003
/// fix: re-registration waits for release), instead of aliasing it.
pub async fn new_medium_waits_for_release(vm: &mut Vm) -> Result<Goldens> {
    vm.change_media(CD, &image(&CD_ALPHA)).await?;
    let disc = format!("{CD_PATH}/disc");
    let generation = vm.stats().await?.device(&disc)?.generation;
    vm.call(&format!("devref get {disc}")).await?;
    let ucursor = vm.control.uevent_cursor();
    vm.change_media_in_qemu(CD, &image(&CD_BETA)).await?;
    let stats = vm
        .wait_stats("the old disc deleted but referenced", |s| {
            s.devices.get(&disc).is_some_and(|d| d.state == "deleted")
        })
        .await?;
    ensure!(stats.device(&disc)?.refcount == 1 && stats.device(&disc)?.generation == generation, "{stats:?}");
    let snapshot = vm.checked_snapshot().await?;
    ensure!(snapshot.get(&disc).is_none(), "a new disc was registered while the old one was still referenced");
    ensure!(
        !vm.control.uevents_since(ucursor).iter().any(|u| u.action == "change"),
        "the change was announced before the old medium was released"
    );

    vm.call(&format!("devref put {disc}")).await?;
    vm.wait_uevent(ucursor, "change with the new medium", |u| {
        u.action == "change" && u.devpath == CD_PATH && u.get("MEDIA_PRESENT") == Some("1")
    })
    .await?;
    let stats = vm.stats().await?;
    ensure!(stats.device(&disc)?.generation > generation && stats.leaked() == 0, "{stats:?}");
    vm.check_media().await?;
    Ok(Goldens::new())
}

/// 50 media changes end with stats at the baseline.
pub async fn fifty_changes(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    for i in 0..50 {
        let recipe = if i % 2 == 0 { &CD_ALPHA } else { &CD_BETA };
        vm.change_media(CD, &image(recipe)).await.map_err(|e| e.context(format!("change {i}")))?;
    }
    vm.check_media().await?;
    vm.eject(CD, false).await?;
    let stats = vm.stats().await?;
    stats.check_baseline(&baseline)?;
    ensure!(stats.released() >= 50, "50 media objects must have been released: {stats:?}");
    vm.check_media().await?;
    Ok(Goldens::new())
}

/// IDE is cold-plug only: QEMU refuses device_add and device_del on its
/// buses with its own text, and the VM carries on.
pub async fn refusals(vm: &mut Vm) -> Result<Goldens> {
    let before = vm.checked_snapshot().await?;
    let add = vm.device_add(&crate::hotplug::Plug::new("ide-cd", "cd9").bus("ide.0").prop("unit", 1)).await;
    ensure!(add.as_ref().is_err_and(|e| e.to_string().contains("Bus 'ide.0' does not support hotplugging")), "{add:?}");
    for (id, bus) in [("hd0", "ide.0"), ("cd0", "ide.1")] {
        let del = vm.device_del(id).await;
        ensure!(
            del.as_ref().is_err_and(|e| e.to_string().contains(&format!("Bus '{bus}' does not support hotplugging"))),
            "{del:?}"
        );
    }
    ensure!(vm.checked_snapshot().await? == before, "a refused hot-plug changed the guest's tree");
    vm.change_media(CD, &image(&CD_ALPHA)).await?;
    vm.check_media().await?;
    vm.eject(CD, false).await?;
    vm.check_media().await?;
    Ok(Goldens::new())
}

/// A tray the guest locked: QEMU refuses a plain eject with its own text,
/// nothing changes, and a forced eject works.
pub async fn locked_tray(vm: &mut Vm) -> Result<Goldens> {
    vm.change_media(CD, &image(&CD_ALPHA)).await?;
    vm.call("ide lock 1.0 on").await?;
    vm.check_media().await?;
    let refused = vm.eject_command(CD, false).await;
    ensure!(
        refused.as_ref().is_err_and(|e| e.to_string().contains("is locked and force was not specified")),
        "{refused:?}"
    );
    vm.settle().await?;
    let still = vm.check_media().await?;
    ensure!(still.value(&format!("{CD_PATH}/media_present")) == Some("1"), "the refused eject removed the medium");
    vm.eject(CD, true).await?;
    vm.check_media().await?;
    vm.call("ide lock 1.0 off").await?;
    vm.check_media().await?;
    Ok(Goldens::new())
}

/// Static drive slots, as 2002's `ide_hwifs[]`: while something still holds
/// an old drive object, binding the driver again reports busy instead of
/// reusing the slot; after release it succeeds with new objects.
pub async fn rebind_waits_for_release(vm: &mut Vm) -> Result<Goldens> {
    let boot = vm.checked_snapshot().await?;
    let generation = vm.stats().await?.device(DISK_PATH)?.generation;
    vm.call(&format!("devref get {DISK_PATH}")).await?;
    vm.call("unbind pci 00:01.1 piix-ide").await?;
    ensure!(vm.checked_snapshot().await?.get(DISK_PATH).is_none(), "drives must go with the driver");
    ensure!(vm.expect_errno("bind pci 00:01.1 piix-ide").await? == "EBUSY", "a static slot was reused before release");
    vm.call(&format!("devref put {DISK_PATH}")).await?;
    vm.call("bind pci 00:01.1 piix-ide").await?;
    let stats = vm.stats().await?;
    ensure!(stats.device(DISK_PATH)?.generation > generation && stats.leaked() == 0, "{stats:?}");
    ensure!(vm.checked_snapshot().await? == boot, "after rebind the tree must be the boot tree again");
    vm.check_media().await?;
    Ok(Goldens::new())
}
