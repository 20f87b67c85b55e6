//! QEMU's ACPI PCI hot-plug registers (`hw/acpi/pcihp.c`), as on `pc`:
//!
//! | port   | register | meaning |
//! |--------|----------|---------|
//! | 0xae00 | UP       | slots hot-added on the selected bus; **cleared by reading** |
//! | 0xae04 | DOWN     | slots with an unplug request; set until ejected |
//! | 0xae08 | EJ       | write `1 << slot` to eject (lowest set bit only) |
//! | 0xae10 | SEL      | bus selector (bsel); the root bus is 0 |
//! | 0xafe0 | GPE0_STS | bit 1: a hot-plug event happened (write 1 to clear) |
//!
//! The guest polls UP and DOWN (no SCI: GPE0_EN stays 0), keeps the UP
//! value it read, rescans added slots, and for each DOWN slot removes the
//! functions through the driver model before writing EJ. Only the root bus
//! is handled: QEMU gives cold-plugged bridges their own bsel, but the
//! profiles have none.

use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use core::cell::RefCell;

use super::{add_slot, bits, remove_then_eject};
use crate::executor::yield_now;
use crate::hw::Platform;
use crate::klog;
use crate::pci::irq::Chipset;
use crate::pci::subsystem::PciRef;

const PCI_UP: u16 = 0xae00;
const PCI_DOWN: u16 = 0xae04;
const PCI_EJ: u16 = 0xae08;
const PCI_SEL: u16 = 0xae10;
const GPE0_STS: u16 = 0xafe0;
const GPE0_PCI_HOTPLUG: u16 = 1 << 1;
const ROOT_BSEL: u32 = 0;

pub struct AcpiHotplug {
    /// Slots whose removal is in progress (DOWN stays set meanwhile).
    removing: Rc<RefCell<BTreeSet<u8>>>,
}

impl AcpiHotplug {
    /// The block exists on `pc` at fixed ports, with no firmware set-up.
    pub fn probe(_platform: &dyn Platform, chipset: Chipset) -> Option<AcpiHotplug> {
        (chipset == Chipset::I440fx).then(|| AcpiHotplug { removing: Rc::new(RefCell::new(BTreeSet::new())) })
    }

    pub async fn run(self, pci: PciRef) {
        let p = pci.sys.platform;
        loop {
            p.outl(PCI_SEL, ROOT_BSEL);
            let up = p.inl(PCI_UP);
            let down = p.inl(PCI_DOWN);
            if up | down != 0 {
                p.outw(GPE0_STS, GPE0_PCI_HOTPLUG);
            }
            for slot in bits(up) {
                add_slot(&pci, 0, slot);
            }
            for slot in bits(down) {
                if !self.removing.borrow_mut().insert(slot) {
                    continue;
                }
                klog!(p, "pci: unplug request for slot {slot}");
                let (pci2, removing) = (pci.clone(), Rc::clone(&self.removing));
                let work = pci.work.start();
                pci.sys.spawn(async move {
                    let _work = work;
                    remove_then_eject(&pci2, 0, slot, |pci| {
                        let p = pci.sys.platform;
                        p.outl(PCI_SEL, ROOT_BSEL);
                        p.outl(PCI_EJ, 1 << slot);
                        klog!(p, "pci: ejected slot {slot}");
                    })
                    .await;
                    removing.borrow_mut().remove(&slot);
                });
            }
            yield_now().await;
        }
    }
}
