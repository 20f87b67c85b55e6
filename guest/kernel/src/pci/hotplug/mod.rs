//! PCI hot-plug: the controllers that tell the guest a slot changed, and
//! the common add and remove paths they share.
//!
//! - [`acpi`]: QEMU's ACPI PCI hot-plug register block (`pc` at 0xae00,
//!   `q35` in QEMU's default mode at 0xcc0);
//! - [`pciehp`]: native PCIe hot-plug on root ports (`q35` with ACPI
//!   hot-plug turned off).
//!
//! Removal is always the guest's: QEMU's `device_del` only *asks* (DOWN bit,
//! attention button), and the device goes when the guest ejects it. So the
//! guest first takes the functions out of the driver model (children first,
//! draining reads in flight) and only then lets QEMU finish, announcing it
//! with a `* hotplug eject <bb:ss>` line right before the eject write: the
//! harness checks on the one channel that `remove` came before it.

pub mod acpi;
pub mod pciehp;

use alloc::vec::Vec;

use super::Pci;
use super::config::PortConfig;
use super::device::PciFunction;
use super::subsystem::PciRef;
use crate::base::device_unregister;
use crate::executor::yield_now;
use crate::fault::{self, Fault};
use crate::klog;

/// Executor passes between two retries of a hot-add that had to wait.
const RETRY_PASSES: u32 = 16;

/// Rescan one slot after a hot-add. A function whose name is still held by
/// an unreleased object (someone kept a reference to the device that was
/// in this slot before) is registered once that object is released, as the
/// 2003 IDE fix made slot reuse wait on `release()`; until then the work
/// counts for `settle`. Returns how many functions registered now.
pub fn add_slot(pci: &PciRef, bus: u8, slot: u8) -> usize {
    let p = pci.sys.platform;
    let cfg = PortConfig::new(p);
    let (added, busy) = pci.state.borrow_mut().scan_slot_checked(&mut pci.sys.core.borrow_mut(), &cfg, bus, slot);
    klog!(p, "pci: hot-add on {bus:02x}:{slot:02x}: {added} function(s)");
    if busy {
        klog!(p, "pci: {bus:02x}:{slot:02x} waits for the release of the device that was there");
        pci.sys.notice(alloc::format!("hotplug busy {bus:02x}:{slot:02x}"));
        let work = pci.work.start();
        let pci2 = pci.clone();
        pci.sys.spawn(async move {
            let _work = work;
            loop {
                for _ in 0..RETRY_PASSES {
                    yield_now().await;
                }
                let cfg = PortConfig::new(p);
                if !Pci::slot_present(&cfg, bus, slot) {
                    return; // unplugged again meanwhile
                }
                let (added, busy) =
                    pci2.state.borrow_mut().scan_slot_checked(&mut pci2.sys.core.borrow_mut(), &cfg, bus, slot);
                if !busy {
                    klog!(p, "pci: {bus:02x}:{slot:02x}: {added} function(s) after the release");
                    return;
                }
            }
        });
    }
    added
}

/// Take every function of a slot out of the driver model (highest function
/// first, each one's children before it) and give back its resources.
/// Returns once all of them are unregistered, reads in flight included.
pub async fn remove_slot(pci: &PciRef, bus: u8, slot: u8) {
    let core = &pci.sys.core;
    let functions = pci.state.borrow().functions_in_slot(bus, slot);
    for (bdf, dev) in functions {
        // Keep what is needed to free the resources: the device's data is
        // gone once it is released.
        let function: Option<PciFunction> = core.borrow().data::<PciFunction>(dev).cloned();
        // Whatever drivers created below the function (IDE channels, a SCSI
        // host with its targets and LUNs) goes first, depth first: the core
        // unregisters every child before the function's own `remove`.
        // ENODEV: someone else removed it first (a surprise removal racing
        // an eject); either way it is gone.
        let _ = device_unregister(core, dev).await;
        if let Some(function) = function {
            pci.state.borrow_mut().forget(&function);
        }
        klog!(pci.sys.platform, "pci: removed {bdf}");
    }
}

/// Removal, then the eject: take the slot's functions out of the model,
/// announce `* hotplug eject <bb:ss>` (the harness checks that `remove` came
/// before it on the channel), and only then let `eject` tell QEMU to finish.
pub async fn remove_then_eject(pci: &PciRef, bus: u8, slot: u8, eject: impl FnOnce(&PciRef)) {
    if fault::planted(Fault::EjectBeforeRemoval) {
        pci.sys.notice(alloc::format!("hotplug eject {bus:02x}:{slot:02x}"));
        eject(pci);
        remove_slot(pci, bus, slot).await;
        return;
    }
    remove_slot(pci, bus, slot).await;
    pci.sys.notice(alloc::format!("hotplug eject {bus:02x}:{slot:02x}"));
    eject(pci);
}

/// Start the poller of every hot-plug controller the machine has.
pub fn start(pci: &PciRef) {
    let p = pci.sys.platform;
    let chipset = pci.state.borrow().chipset;
    // Root ports advertise a hot-plug capable slot in both of q35's modes;
    // when ACPI hot-plug is on, QEMU drives them through it and not through
    // the slot registers, so only one controller may own them.
    if let Some(controller) = acpi::AcpiHotplug::probe(p, chipset) {
        pci.sys.spawn(controller.run(pci.clone()));
        return;
    }
    let slots: Vec<pciehp::Slot> = {
        let cfg = PortConfig::new(p);
        let bridges = pci.state.borrow().bridges(&pci.sys.core.borrow());
        bridges.into_iter().filter_map(|(bdf, secondary)| pciehp::Slot::probe(&cfg, bdf, secondary)).collect()
    };
    for slot in slots {
        klog!(p, "pci: native hot-plug slot on {}", slot.bridge());
        pci.sys.spawn(slot.run(pci.clone()));
    }
}

/// Bits set in a 32-bit map, lowest first.
fn bits(mut map: u32) -> impl Iterator<Item = u8> {
    core::iter::from_fn(move || {
        if map == 0 {
            return None;
        }
        let bit = map.trailing_zeros() as u8;
        map &= map - 1;
        Some(bit)
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn bits_lists_set_bits_lowest_first() {
        assert_eq!(super::bits(0b1010_0100).collect::<alloc::vec::Vec<_>>(), [2, 5, 7]);
        assert_eq!(super::bits(0).count(), 0);
        assert_eq!(super::bits(0x8000_0000).collect::<alloc::vec::Vec<_>>(), [31]);
    }
}
