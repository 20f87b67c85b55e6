//! What the buses QEMU unplugs without asking the guest (SCSI, USB) share
//! in the explorer: block nodes for the disks they plug, and a read held
//! across a surprise removal.

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use crate::hotplug::UnplugOrder;
use crate::vm::Vm;

/// The block node the explorer makes for device `id` (a disk's `null-co`
/// node, a CD's first medium, a usb-storage stick's disk).
pub fn node_name(id: &str) -> String {
    format!("b-{id}")
}

/// `blockdev-add` a `null-co` node of `sectors` 512-byte sectors that
/// reads zeroes: a disk of any size that costs no memory.
pub async fn add_null_node(vm: &Vm, node: &str, sectors: u64) -> Result<()> {
    vm.qmp
        .execute_raw(
            "blockdev-add",
            json!({"driver": "null-co", "node-name": node, "size": sectors * 512, "read-zeroes": true}),
        )
        .await
        .with_context(|| format!("blockdev-add null-co {node} ({sectors} sectors)"))?;
    Ok(())
}

/// `blockdev-add` a read-only raw node on a CD image file.
pub async fn add_cd_node(vm: &Vm, node: &str, file: &std::path::Path) -> Result<()> {
    vm.qmp
        .execute_raw(
            "blockdev-add",
            json!({"driver": "raw", "node-name": node, "read-only": true,
                   "file": {"driver": "file", "filename": file.display().to_string(), "read-only": true}}),
        )
        .await
        .with_context(|| format!("blockdev-add {node} on {}", file.display()))?;
    Ok(())
}

/// `blockdev-del` a node the explorer made, once the device using it is
/// gone (QEMU refuses while a device still uses it: that is a failure).
pub async fn del_node(vm: &Vm, node: &str) -> Result<()> {
    vm.qmp
        .execute_raw("blockdev-del", json!({"node-name": node}))
        .await
        .with_context(|| format!("blockdev-del {node} after its device was deleted"))?;
    Ok(())
}

/// A read held inside show() on `<devpath>/<attr>` while QEMU removes the
/// device it calls `id` on its own (no guest handshake on SCSI or USB):
/// DEVICE_DELETED comes while the read is inside, the object at `devpath`
/// goes dying with the read's active reference, a new open gets ENOENT,
/// the held read returns the old value once let go, then the guest
/// removes the object, and the old handle reads ENODEV.
pub async fn held_read_across_removal(vm: &Vm, id: &str, devpath: &str, attr: &str) -> Result<()> {
    let path = format!("{devpath}/{attr}");
    let old = vm.read_attr(&path).await?;
    let handle = vm.call_text(&format!("open {path}")).await?;
    vm.call(&format!("hold {path}")).await?;
    let read = vm.send(&format!("read {handle}")).await?;
    vm.wait_stats("the held read's active reference", |s| s.devices.get(devpath).is_some_and(|d| d.active == 1))
        .await?;
    let qcursor = vm.qmp.cursor();
    let unplug = vm.start_unplug(id).await?;
    vm.wait_device_deleted(qcursor, id).await?;
    // The guest sends `remove` before it drains: from then on the object
    // must stay dying, with the read's active reference, until it ends.
    unplug.removed().await?;
    let stats = vm.stats().await?;
    let Some(state) = stats.devices.get(devpath) else {
        bail!("{devpath} was released with a read still inside it (its removal did not drain the read)");
    };
    ensure!(
        state.state == "dying" && state.active == 1,
        "{devpath} must stay dying with the held read inside it after its `remove`: {state:?}"
    );
    ensure!(vm.expect_errno(&format!("open {path}")).await? == "ENOENT", "a new open of dying {path}");
    ensure!(!read.is_answered(), "the held read of {path} finished before it was let go");
    vm.call(&format!("unhold {path}")).await?;
    let got = String::from_utf8_lossy(&vm.wait_reply(read).await?).trim_end().to_string();
    ensure!(got == old, "the held read of {path} returned {got:?}, not the old {old:?}");
    let unplugged = unplug.finish().await?;
    ensure!(unplugged.order == UnplugOrder::NoEject, "{unplugged:?}");
    ensure!(vm.expect_errno(&format!("read {handle}")).await? == "ENODEV", "the old handle on {path}");
    vm.call(&format!("close {handle}")).await?;
    Ok(())
}
