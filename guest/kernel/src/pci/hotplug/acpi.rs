//! QEMU's ACPI PCI hot-plug registers (`hw/acpi/pcihp.c`): at 0xae00 on
//! `pc`, at 0x0cc0 on `q35` in QEMU's default mode (ACPI hot-plug on the
//! root ports and the bridges below them):
//!
//! | offset | register | meaning |
//! |--------|----------|---------|
//! | +0x00  | UP       | slots hot-added on the selected bus; **cleared by reading** |
//! | +0x04  | DOWN     | slots with an unplug request; set until ejected |
//! | +0x08  | EJ       | write `1 << slot` to eject (lowest set bit only) |
//! | +0x10  | SEL      | bus selector (bsel) |
//!
//! Every hot-pluggable bus has its own bsel: `pc`'s root bus is 0, and
//! QEMU numbers cold-plugged bridges' buses in an order config space does
//! not show (a depth-first walk, newest bus first), so the harness reads
//! them from QEMU and tells the guest (`pcihp bsel <bsel> <bus>`), as
//! firmware tells an OS through the ACPI tables.
//!
//! The guest polls UP and DOWN of every known bsel (no SCI), keeps the UP
//! value it read, rescans added slots, and for each DOWN slot removes the
//! functions through the driver model before writing EJ under the same
//! SEL. On `pc` it also acknowledges GPE0 bit 1 at 0xafe0.

use alloc::collections::BTreeSet;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use super::{add_slot, bits, remove_then_eject};
use crate::executor::yield_now;
use crate::hw::Platform;
use crate::klog;
use crate::pci::irq::Chipset;
use crate::pci::subsystem::PciRef;

const PC_BASE: u16 = 0xae00;
const Q35_BASE: u16 = 0x0cc0;
const UP: u16 = 0x00;
const DOWN: u16 = 0x04;
const EJ: u16 = 0x08;
const SEL: u16 = 0x10;
const PC_GPE0_STS: u16 = 0xafe0;
const GPE0_PCI_HOTPLUG: u16 = 1 << 1;

pub struct AcpiHotplug {
    base: u16,
    /// pc's GPE0 status register (q35's sits at PMBASE + 0x20, which the
    /// guest does not program; polling needs no GPE).
    gpe0_sts: Option<u16>,
    /// (bsel, slot) pairs whose removal is in progress (DOWN stays set).
    removing: Rc<RefCell<BTreeSet<(u32, u8)>>>,
}

impl AcpiHotplug {
    /// `pc` always has the block, at fixed ports, with no firmware set-up.
    /// On `q35` it is there unless native PCIe hot-plug was asked for
    /// (`ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`): then the
    /// ports are unmapped and read all ones.
    pub fn probe(platform: &dyn Platform, chipset: Chipset) -> Option<AcpiHotplug> {
        let (base, gpe0_sts) = match chipset {
            Chipset::I440fx => (PC_BASE, Some(PC_GPE0_STS)),
            Chipset::Q35 if platform.inl(Q35_BASE + SEL) != 0xffff_ffff => (Q35_BASE, None),
            _ => return None,
        };
        Some(AcpiHotplug { base, gpe0_sts, removing: Rc::new(RefCell::new(BTreeSet::new())) })
    }

    pub async fn run(self, pci: PciRef) {
        let p = pci.sys.platform;
        let base = self.base;
        loop {
            let buses: Vec<(u32, u8)> = pci.state.borrow().acpi_bsel.iter().map(|(&b, &bus)| (b, bus)).collect();
            let mut events = false;
            for (bsel, bus) in buses {
                p.outl(base + SEL, bsel);
                let up = p.inl(base + UP);
                let down = p.inl(base + DOWN);
                events |= up | down != 0;
                for slot in bits(up) {
                    add_slot(&pci, bus, slot);
                }
                for slot in bits(down) {
                    if !self.removing.borrow_mut().insert((bsel, slot)) {
                        continue;
                    }
                    klog!(p, "pci: unplug request for {bus:02x}:{slot:02x} (bsel {bsel})");
                    let (pci2, removing) = (pci.clone(), Rc::clone(&self.removing));
                    let work = pci.work.start();
                    pci.sys.spawn(async move {
                        let _work = work;
                        remove_then_eject(&pci2, bus, slot, |pci| {
                            // SEL and EJ together: no other task runs between them.
                            let p = pci.sys.platform;
                            p.outl(base + SEL, bsel);
                            p.outl(base + EJ, 1 << slot);
                            klog!(p, "pci: ejected {bus:02x}:{slot:02x}");
                        })
                        .await;
                        removing.borrow_mut().remove(&(bsel, slot));
                    });
                }
            }
            if let (true, Some(sts)) = (events, self.gpe0_sts) {
                p.outw(sts, GPE0_PCI_HOTPLUG);
            }
            yield_now().await;
        }
    }
}
