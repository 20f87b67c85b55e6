//! Native PCIe hot-plug on a root port's slot (PCIe base spec §7.5.3.9–11,
//! as QEMU's `hw/pci/pcie.c` implements it; `q35` with
//! `ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`).
//!
//! What the guest sees (docs/qemu-behaviour.md, "Native PCIe hot-plug on `q35`"):
//! - hot-add: SLTSTA gets PDS | PDC | ABP. A device in a powered-off slot is
//!   invisible until the guest powers the slot on.
//! - `device_del`: SLTSTA gets ABP (attention button) and nothing else. The
//!   device goes when the guest powers the slot off with the power
//!   indicator off (SLTCTL PCC=1, PIC=off).
//! - SLTSTA bits are write-1-to-clear, and writing 1 to a bit that is not
//!   set makes QEMU ignore the whole write: acknowledge exactly what was read.
//!
//! So: PDC decides presence (ABP that comes with it belongs to the add);
//! ABP alone on an occupied slot is an unplug request.

use alloc::format;
use alloc::rc::Rc;
use core::cell::Cell;

use super::{add_slot, remove_slot, remove_then_eject};
use crate::executor::yield_now;
use crate::klog;
use crate::pci::config::{Bdf, ConfigSpace, PortConfig, find_capability};
use crate::pci::subsystem::PciRef;

const CAP_ID_PCIE: u8 = 0x10;
/// Offsets inside the PCIe capability.
const PCIE_FLAGS: u8 = 0x02;
const SLTCAP: u8 = 0x14;
const SLTCTL: u8 = 0x18;
const SLTSTA: u8 = 0x1a;

const FLAGS_SLOT_IMPLEMENTED: u16 = 1 << 8;
const SLTCAP_HPC: u32 = 1 << 6;

const SLTSTA_ABP: u16 = 1 << 0;
const SLTSTA_PDC: u16 = 1 << 3;
const SLTSTA_PDS: u16 = 1 << 6;
/// The event bits: ABP, PFD, MRLSC, PDC, CC and DLLSC.
const SLTSTA_EVENTS: u16 = 0x011f;

const SLTCTL_PIC_MASK: u16 = 0x0300;
const SLTCTL_PIC_ON: u16 = 0x0100;
const SLTCTL_PIC_OFF: u16 = 0x0300;
const SLTCTL_PCC_OFF: u16 = 0x0400;

/// A hot-plug capable slot below a root port.
pub struct Slot {
    bridge: Bdf,
    cap: u8,
    secondary: u8,
    removing: Rc<Cell<bool>>,
}

impl Slot {
    /// A slot if the bridge has a PCIe capability with a hot-plug capable
    /// slot.
    pub fn probe(cfg: &dyn ConfigSpace, bridge: Bdf, secondary: u8) -> Option<Slot> {
        let cap = hotplug_slot_capability(cfg, bridge)?;
        Some(Slot { bridge, cap, secondary, removing: Rc::new(Cell::new(false)) })
    }

    pub fn bridge(&self) -> alloc::string::String {
        format!("{}", self.bridge)
    }

    fn power(&self, cfg: &dyn ConfigSpace, on: bool) {
        set_power(cfg, self.bridge, self.cap, on);
    }

    fn powered(&self, cfg: &dyn ConfigSpace) -> bool {
        cfg.read16(self.bridge, self.cap + SLTCTL) & SLTCTL_PCC_OFF == 0
    }

    pub async fn run(self, pci: PciRef) {
        let cfg = PortConfig::new(pci.sys.platform);
        loop {
            let status = cfg.read16(self.bridge, self.cap + SLTSTA);
            let events = status & SLTSTA_EVENTS;
            if events != 0 {
                cfg.write16(self.bridge, self.cap + SLTSTA, events);
            }
            let occupied = !pci.state.borrow().functions_in_slot(self.secondary, 0).is_empty();
            if events & SLTSTA_PDC != 0 {
                if status & SLTSTA_PDS != 0 {
                    if !self.powered(&cfg) {
                        self.power(&cfg, true);
                    }
                    if !occupied {
                        add_slot(&pci, self.secondary, 0);
                    }
                } else if occupied && !self.removing.get() {
                    // Surprise removal: the device is already gone, nothing
                    // to power off; only the model has to catch up.
                    klog!(pci.sys.platform, "pci: {} presence lost", self.bridge);
                    self.spawn_removal(&pci, false);
                }
            } else if events & SLTSTA_ABP != 0 && !self.removing.get() {
                klog!(pci.sys.platform, "pci: unplug request on {}", self.bridge);
                self.spawn_removal(&pci, true);
            }
            yield_now().await;
        }
    }

    fn spawn_removal(&self, pci: &PciRef, eject: bool) {
        self.removing.set(true);
        let work = pci.work.start();
        let (pci2, removing, bridge, cap, secondary) =
            (pci.clone(), Rc::clone(&self.removing), self.bridge, self.cap, self.secondary);
        pci.sys.spawn(async move {
            let _work = work;
            if eject {
                remove_then_eject(&pci2, secondary, 0, |pci| {
                    let p = pci.sys.platform;
                    set_power(&PortConfig::new(p), bridge, cap, false);
                    klog!(p, "pci: powered off {bridge}");
                })
                .await;
            } else {
                remove_slot(&pci2, secondary, 0).await;
            }
            removing.set(false);
        });
    }
}

/// The PCIe capability's offset if the bridge has a hot-plug capable slot.
fn hotplug_slot_capability(cfg: &dyn ConfigSpace, bridge: Bdf) -> Option<u8> {
    let cap = find_capability(cfg, bridge, CAP_ID_PCIE)?;
    let implemented = cfg.read16(bridge, cap + PCIE_FLAGS) & FLAGS_SLOT_IMPLEMENTED != 0;
    let hotplug = cfg.read32(bridge, cap + SLTCAP) & SLTCAP_HPC != 0;
    (implemented && hotplug).then_some(cap)
}

/// Does the bridge have a native hot-plug slot?
pub fn is_hotplug_slot(cfg: &dyn ConfigSpace, bridge: Bdf) -> bool {
    hotplug_slot_capability(cfg, bridge).is_some()
}

/// Power the slot on (power indicator on) or off (indicator off too: QEMU
/// completes a pending unplug only on exactly that combination).
fn set_power(cfg: &dyn ConfigSpace, bridge: Bdf, cap: u8, on: bool) {
    let ctl = cfg.read16(bridge, cap + SLTCTL) & !(SLTCTL_PIC_MASK | SLTCTL_PCC_OFF);
    let ctl = if on { ctl | SLTCTL_PIC_ON } else { ctl | SLTCTL_PIC_OFF | SLTCTL_PCC_OFF };
    cfg.write16(bridge, cap + SLTCTL, ctl);
}
