//! The driver model's lifetime rules, driven through the software test bus
//! (no hot-plug hardware needed), on a booted guest.

use anyhow::{Result, ensure};

use super::Goldens;
use crate::vm::Vm;

/// `(action, devpath)` of the uevents from `from` on.
fn uevents_since(vm: &Vm, from: usize) -> Vec<(String, String)> {
    vm.control.uevents_since(from).iter().map(|u| (u.action.clone(), u.devpath.clone())).collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, d)| (a.to_string(), d.to_string())).collect()
}

/// The 2002 race: a read is inside show() when removal starts. Removal
/// waits for it, nothing new gets in, the read returns the old data, and
/// afterwards nothing is left behind.
pub async fn held_read_across_removal(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let cursor = vm.control.uevent_cursor();
    vm.call("testdev add t1").await?;
    let attr = "root/testbus/t1/value";
    let held_handle = vm.call_text(&format!("open {attr}")).await?;
    let other_handle = vm.call_text(&format!("open {attr}")).await?;
    // The old object shows what its successor (value `t1`) never will.
    vm.call(&format!("write {other_handle} old-object")).await?;
    vm.call(&format!("hold {attr}")).await?;
    let read = vm.send(&format!("read {held_handle}")).await?;
    vm.wait_stats("one active reference on t1", |s| s.devices.get("root/testbus/t1").is_some_and(|d| d.active == 1))
        .await?;

    let del = vm.send("testdev del t1").await?;
    // The remove uevent goes out before driverfs drains (docs/driver-model.md, "Removal order").
    vm.wait_uevent(cursor, "remove root/testbus/t1", |u| u.action == "remove" && u.devpath == "root/testbus/t1")
        .await?;
    let stats =
        vm.wait_stats("t1 dying", |s| s.devices.get("root/testbus/t1").is_some_and(|d| d.state == "dying")).await?;
    ensure!(stats.device("root/testbus/t1")?.active == 1, "the held read's active reference is gone: {stats:?}");
    ensure!(!read.is_answered() && !del.is_answered(), "the held read and the removal must both still be pending");
    ensure!(vm.expect_errno(&format!("open {attr}")).await? == "ENOENT", "a fresh open after removal began must fail");
    ensure!(vm.expect_errno(&format!("read {other_handle}")).await? == "ENODEV", "an old handle must read ENODEV");
    ensure!(vm.expect_errno("testdev add t1").await? == "EBUSY", "the name is busy until the old object is released");

    vm.call(&format!("unhold {attr}")).await?;
    let value = vm.wait_reply(read).await?;
    ensure!(
        value == b"old-object\n",
        "the held read must return the old object's data, got {:?}",
        String::from_utf8_lossy(&value)
    );
    vm.wait_reply(del).await?;
    ensure!(
        uevents_since(vm, cursor)
            == pairs(&[
                ("add", "root/testbus/t1"),
                ("bind", "root/testbus/t1"),
                ("unbind", "root/testbus/t1"),
                ("remove", "root/testbus/t1")
            ]),
        "uevents out of order: {:?}",
        uevents_since(vm, cursor)
    );
    // A successor under the same name: the old handles never reach it.
    vm.call("testdev add t1").await?;
    for handle in [&held_handle, &other_handle] {
        ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "an old handle reached the successor");
        vm.call(&format!("close {handle}")).await?;
    }
    let fresh = vm.call_text(&format!("open {attr}")).await?;
    ensure!(vm.call(&format!("read {fresh}")).await? == b"t1\n", "the successor shows its own data");
    vm.call(&format!("close {fresh}")).await?;
    vm.call("testdev del t1").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// A handle kept across re-adding the same name never shows the new
/// object's data; the new object is a new generation.
pub async fn stale_handle_after_same_name_is_readded(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    vm.call("testdev add slot").await?;
    let generation = vm.stats().await?.device("root/testbus/slot")?.generation;
    let stale = vm.call_text("open root/testbus/slot/value").await?;
    vm.call("testdev del slot").await?;
    vm.call("testdev add slot").await?;
    let fresh = vm.call_text("open root/testbus/slot/value").await?;
    vm.call(&format!("write {fresh} second-object")).await?;
    ensure!(vm.expect_errno(&format!("read {stale}")).await? == "ENODEV", "stale handle must read ENODEV");
    ensure!(vm.call(&format!("read {fresh}")).await? == b"second-object\n");
    let stats = vm.stats().await?;
    ensure!(stats.device("root/testbus/slot")?.generation > generation, "re-added device must get a new generation");
    for h in [&stale, &fresh] {
        vm.call(&format!("close {h}")).await?;
    }
    vm.call("testdev del slot").await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// Removing a parent removes its children first: uevents depth first,
/// children released before the parent, nothing left behind.
pub async fn parent_removal_is_depth_first(vm: &mut Vm) -> Result<Goldens> {
    let mut goldens = Goldens::new();
    let baseline = vm.stats().await?;
    vm.call("testdev add parent").await?;
    vm.call("testdev add child parent").await?;
    vm.call("testdev add grandchild child").await?;
    let tree = vm.checked_snapshot().await?;
    goldens.push("testbus_tree", tree.subtree("root/testbus").render());
    let cursor = vm.control.uevent_cursor();
    vm.call("testdev del parent").await?;
    let removed: Vec<(String, String)> = uevents_since(vm, cursor);
    ensure!(
        removed
            == pairs(&[
                ("unbind", "root/testbus/parent/child/grandchild"),
                ("remove", "root/testbus/parent/child/grandchild"),
                ("unbind", "root/testbus/parent/child"),
                ("remove", "root/testbus/parent/child"),
                ("unbind", "root/testbus/parent"),
                ("remove", "root/testbus/parent"),
            ]),
        "removal uevents are not depth first: {removed:?}"
    );
    ensure!(vm.expect_errno("testdev add orphan child").await? == "ENOENT", "a removed parent cannot get children");
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}

/// A store() that removes its own device completes (no self-deadlock).
pub async fn store_that_removes_its_own_device(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    vm.call("testdev add selfish").await?;
    let h = vm.call_text("open root/testbus/selfish/remove").await?;
    vm.call(&format!("write {h} 1")).await?;
    ensure!(vm.expect_errno("open root/testbus/selfish/value").await? == "ENOENT");
    vm.call(&format!("close {h}")).await?;
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(Goldens::new())
}

/// unbind and bind through the control channel: the driver links and the
/// driver's state follow, with `unbind`/`bind` uevents.
pub async fn unbind_and_rebind(vm: &mut Vm) -> Result<Goldens> {
    vm.call("testdev add d1").await?;
    let cursor = vm.control.uevent_cursor();
    vm.call("unbind testbus d1 testdrv").await?;
    let unbound = vm.checked_snapshot().await?;
    ensure!(unbound.value("root/testbus/d1/bound") == Some("0"));
    ensure!(unbound.get("root/testbus/d1/driver").is_none() && unbound.get("bus/testbus/drivers/testdrv/d1").is_none());
    ensure!(vm.expect_errno("unbind testbus d1 testdrv").await? == "ENODEV", "unbinding an unbound device");
    vm.call("bind testbus d1 testdrv").await?;
    ensure!(vm.expect_errno("bind testbus d1 testdrv").await? == "EBUSY", "binding a bound device");
    let bound = vm.checked_snapshot().await?;
    ensure!(bound.value("root/testbus/d1/bound") == Some("1"));
    ensure!(bound.get("root/testbus/d1/driver").is_some() && bound.get("bus/testbus/drivers/testdrv/d1").is_some());
    ensure!(uevents_since(vm, cursor) == pairs(&[("unbind", "root/testbus/d1"), ("bind", "root/testbus/d1")]));
    Ok(Goldens::new())
}

/// A child a driver still references keeps its removed parent's object
/// alive: the parent is released only after the child, however early the
/// parent was unregistered.
pub async fn child_reference_pins_parent(vm: &mut Vm) -> Result<Goldens> {
    let baseline = vm.stats().await?;
    let (parent, child) = ("root/testbus/holder", "root/testbus/holder/kept");
    vm.call("testdev add holder").await?;
    vm.call("testdev add kept holder").await?;
    vm.call(&format!("devref get {child}")).await?;
    vm.call("testdev del holder").await?;
    let stats = vm.stats().await?;
    let (p, c) = (stats.device(parent)?, stats.device(child)?);
    ensure!(
        c.state == "deleted" && c.refcount == 1,
        "the referenced child must be deleted but alive, holding only our reference: {c:?}"
    );
    ensure!(
        p.state == "deleted" && p.refcount == 1,
        "the removed parent must stay unreleased, pinned by its child's reference alone: {p:?}"
    );
    vm.call(&format!("devref put {child}")).await?;
    let stats = vm.stats().await?;
    ensure!(
        !stats.devices.contains_key(child) && !stats.devices.contains_key(parent),
        "the child's release must release the parent too: {stats:?}"
    );
    stats.check_baseline(&baseline)?;
    Ok(Goldens::new())
}
