//! PCI: QEMU's `query-pci` places the function; `device_del` only asks the
//! guest, which removes the function from its model (children first),
//! announces `* hotplug eject <bb:ss>` and ejects; then QEMU finishes and
//! sends DEVICE_DELETED.

use anyhow::{Result, bail};

use super::{Location, Removal};
use crate::vm::Vm;

/// Where the guest shows the PCI function QEMU calls `id`, and the eject
/// notice its removal ends with.
pub async fn locate(vm: &Vm, id: &str) -> Result<Location> {
    let devpath = vm.pci_devpath(id).await?;
    let notice = eject_notice(&devpath)?;
    Ok(Location { devpath, removal: Removal::GuestEjects { notice } })
}

/// The notice the guest sends right before it ejects the function at
/// `devpath`: `hotplug eject <bb:ss>`.
pub fn eject_notice(devpath: &str) -> Result<String> {
    Ok(format!("hotplug eject {}", slot_of(devpath)?))
}

/// `<bb:ss>` of a function's devpath, as the guest names the slot in its
/// `hotplug eject` and `hotplug busy` notices
/// (`root/pci0/00:10.0/05:00.0` → `05:00`).
pub fn slot_of(devpath: &str) -> Result<String> {
    let name = devpath.rsplit('/').next().unwrap_or_default();
    match name.rsplit_once('.') {
        Some((slot, _)) if slot.len() == 5 => Ok(slot.to_string()),
        _ => bail!("{devpath} does not end in a PCI function name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slot_and_eject_notice_come_from_the_function_name() {
        assert_eq!(slot_of("root/pci0/00:10.0/05:00.0").unwrap(), "05:00");
        assert_eq!(eject_notice("root/pci0/00:05.0").unwrap(), "hotplug eject 00:05");
        assert!(slot_of("root/pci0/00:05.0/host0").is_err());
        assert!(slot_of("").is_err());
    }
}
