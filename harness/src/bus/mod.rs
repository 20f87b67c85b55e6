//! Buses as the harness sees them. Each bus answers two questions for
//! [`crate::hotplug`]:
//!
//! 1. where the guest must show a device, worked out from QEMU's own view
//!    of it ([`locate`]);
//! 2. what "gone" means once `device_del` returned ([`Removal`]).
//!
//! - [`pci`]: QEMU asks the guest, which removes the device from its model,
//!   announces `* hotplug eject <bb:ss>` and ejects; only then does QEMU
//!   finish and send DEVICE_DELETED;
//! - [`scsi`]: QEMU removes the device on its own (about 50 ms after
//!   `device_del`); the guest notices after the fact.
//! - [`usb`]: QEMU removes the device at once, without asking the guest;
//!   the guest sees the port go and removes the subtree.
//!
//! Adding a bus: a module with a `locate(vm, id) -> Result<Location>`, a
//! [`BusKind`] variant, and its QEMU driver names in [`BusKind::of_driver`].

pub mod pci;
pub mod scsi;
pub mod usb;

use anyhow::{Context, Result};
use serde_json::json;

use crate::vm::Vm;

/// The bus a device QEMU plugs sits on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusKind {
    /// PCI functions (every device that is not on another bus).
    Pci,
    /// SCSI devices behind an HBA (`scsi-hd`, `scsi-cd`).
    Scsi,
    /// USB devices (`usb-*`).
    Usb,
}

impl BusKind {
    /// The bus of a QEMU device type: `scsi-*` (`scsi-hd`, `scsi-cd`) is
    /// SCSI, `usb-*` is USB, anything else a PCI function (USB and SCSI
    /// controllers included: `qemu-xhci`, `virtio-scsi-pci`).
    pub fn of_driver(driver: &str) -> BusKind {
        if driver.starts_with("scsi-") {
            BusKind::Scsi
        } else if driver.starts_with("usb-") {
            BusKind::Usb
        } else {
            BusKind::Pci
        }
    }

    /// The bus of the device QEMU calls `id`, from its QOM type.
    pub async fn of_device(vm: &Vm, id: &str) -> Result<BusKind> {
        let driver = qom_get(vm, id, "type").await?;
        let driver = driver.as_str().with_context(|| format!("QEMU's type of {id} is not a string: {driver}"))?;
        Ok(BusKind::of_driver(driver))
    }
}

/// What has to happen for an unplug to be complete.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The guest is asked: it sends its `remove` uevent, then this notice
    /// (`hotplug eject 00:05`), then lets QEMU finish, which then sends
    /// DEVICE_DELETED. `remove` before the notice is causal: both come on
    /// the one control channel, in the order the guest wrote them.
    GuestEjects {
        /// The notice, without the leading `* `.
        notice: String,
    },
    /// QEMU removes the device without asking the guest: DEVICE_DELETED,
    /// and the guest's `remove` uevent once it noticed. No eject.
    QemuAlone,
}

/// Where the guest shows a device, and how its removal completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// The device's directory in the guest's snapshot (`root/pci0/00:05.0`).
    pub devpath: String,
    /// What the unplug has to wait for.
    pub removal: Removal,
}

/// Where the guest must show the device QEMU calls `id`, on bus `kind`.
pub async fn locate(vm: &Vm, kind: BusKind, id: &str) -> Result<Location> {
    match kind {
        BusKind::Pci => pci::locate(vm, id).await,
        BusKind::Scsi => scsi::locate(vm, id).await,
        BusKind::Usb => usb::locate(vm, id).await,
    }
}

/// `qom-get` of a property of the device QEMU calls `id`.
pub async fn qom_get(vm: &Vm, id: &str, property: &str) -> Result<serde_json::Value> {
    let path = format!("/machine/peripheral/{id}");
    vm.qmp
        .execute_raw("qom-get", json!({"path": path, "property": property}))
        .await
        .with_context(|| format!("qom-get {path} {property}"))
}

#[cfg(test)]
mod tests {
    use super::BusKind;

    #[test]
    fn the_bus_kind_follows_the_driver_name() {
        assert_eq!(BusKind::of_driver("scsi-hd"), BusKind::Scsi);
        assert_eq!(BusKind::of_driver("scsi-cd"), BusKind::Scsi);
        assert_eq!(BusKind::of_driver("usb-storage"), BusKind::Usb);
        assert_eq!(BusKind::of_driver("usb-kbd"), BusKind::Usb);
        for pci in ["edu", "e1000", "virtio-scsi-pci", "qemu-xhci", "piix3-usb-uhci", "pcie-root-port"] {
            assert_eq!(BusKind::of_driver(pci), BusKind::Pci, "{pci}");
        }
    }
}
