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

    vm.usb_unplug("mouse2").await?;
    vm.checked_snapshot().await?;
    vm.usb_plug(&usb("usb-hub", "hub2", "2")).await?;
    vm.checked_snapshot().await?;
    for (model, id, port) in [("usb-tablet", "tablet21", "2.1"), ("usb-mouse", "mouse24", "2.4"), ("usb-kbd", "kbd28", "2.8")]
    {
        vm.usb_plug(&usb(model, id, port)).await?;
        vm.checked_snapshot().await?;
    }
    let snapshot = vm.checked_snapshot().await?;
    goldens.push("usb_hid_behind_hub", snapshot.subtree(&controller).render());

    for id in ["mouse24", "kbd1", "hub2"] {
        vm.usb_unplug(id).await?;
        vm.checked_snapshot().await?;
    }
    let left = vm.snapshot().await?;
    let devices: Vec<&str> =
        left.children(&format!("{controller}/usb1")).into_iter().filter(|c| !c.contains(':') && c.starts_with("1-")).collect();
    ensure!(devices.is_empty(), "devices left below usb1: {devices:?}");
    vm.stats().await?.check_baseline(&baseline)?;
    Ok(goldens)
}
