//! The PCI bus: enumeration through configuration space, resource
//! assignment, and the PCI device objects in the driver model.
//!
//! - [`config`]: configuration space access ([`config::ConfigSpace`]);
//! - [`resources`]: BAR sizing, windows, allocation;
//! - [`irq`]: INTx routing;
//! - [`device`]: what a function shows in driverfs;
//! - [`hotplug`]: the hot-plug controllers and the add/remove paths;
//! - [`subsystem`]: PCI as a [`crate::subsystem::Subsystem`];
//! - [`fake`]: an emulated configuration space for host tests.

pub mod config;
pub mod device;
pub mod hotplug;
pub mod ids;
pub mod irq;
pub mod resources;
pub mod subsystem;

pub use subsystem::register;

#[cfg(test)]
pub mod fake;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;

use config::{Bdf, ConfigSpace, reg};
use device::{PciFunction, PciRoot};
use irq::{Chipset, IrqPath};
use resources::Window;

use crate::base::{BusId, Core, DeviceId};
use crate::errno::Errno;

pub const BUS_NAME: &str = "pci";

/// The PCI subsystem's own bookkeeping beside the driver model.
pub struct Pci {
    pub bus: BusId,
    /// `root/pci0`.
    pub root: DeviceId,
    pub chipset: Chipset,
    /// Registered functions by address. Entries go when the function is
    /// removed; the tree holds the device objects, not this map.
    functions: BTreeMap<Bdf, DeviceId>,
    /// What each bus number decodes, for assigning BARs on it.
    windows: BTreeMap<u8, Window>,
    /// IRQ path of each bus's upstream bridge (bus 0 has none).
    bus_paths: BTreeMap<u8, IrqPath>,
    /// The device each bus hangs under: `pci0` for bus 0, else its bridge.
    bus_parents: BTreeMap<u8, DeviceId>,
    /// For each bus, the bus numbers bridges on it may still take:
    /// `[next, limit]` (16-bit so that 255 + 1 does not wrap).
    bus_numbers: BTreeMap<u8, BusNumbers>,
}

#[derive(Clone, Copy, Debug)]
struct BusNumbers {
    next: u16,
    limit: u16,
}

/// Bus numbers kept free below a hot-plug capable slot, beyond what it
/// holds at boot, so a bridge hot-added into it later has buses to give its
/// children (what Linux's `pci=hpbussize` does).
pub const HOTPLUG_BUS_RESERVE: u8 = 3;

impl Pci {
    /// Register the bus, number every bridge, assign resources and register
    /// every function reachable from bus 0, depth first.
    pub fn init(core: &mut Core, cfg: &dyn ConfigSpace) -> Pci {
        let bus = core.bus_register(BUS_NAME);
        let root =
            core.device_register("pci0", None, None, Box::new(PciRoot { number: 0 })).expect("pci0 registers at boot");
        let host = Bdf::new(0, 0, 0);
        let chipset = Chipset::detect(cfg.read16(host, reg::VENDOR), cfg.read16(host, reg::DEVICE));
        irq::route_pirqs(cfg, chipset);
        let mut pci = Pci {
            bus,
            root,
            chipset,
            functions: BTreeMap::new(),
            windows: BTreeMap::new(),
            bus_paths: BTreeMap::new(),
            bus_parents: BTreeMap::new(),
            bus_numbers: BTreeMap::new(),
        };
        pci.bus_numbers.insert(0, BusNumbers { next: 1, limit: 255 });
        pci.bus_parents.insert(0, root);
        pci.windows.insert(0, resources::root_window());
        pci.scan_bus(core, cfg, 0);
        pci
    }

    /// Registered function at `bdf`, if any.
    pub fn function(&self, bdf: Bdf) -> Option<DeviceId> {
        self.functions.get(&bdf).copied()
    }

    fn scan_bus(&mut self, core: &mut Core, cfg: &dyn ConfigSpace, bus: u8) {
        // Firmware may have numbered the bridges differently (qboot gives
        // q35's second root port the bus the guest gives the first): a stale
        // range on a sibling not renumbered yet would catch config cycles
        // meant for the first one's secondary bus. Close every bridge on
        // this bus before numbering any of them, as Linux does when it
        // assigns all buses itself.
        for slot in 0..32 {
            let f0 = Bdf::new(bus, slot, 0);
            if cfg.read16(f0, reg::VENDOR) == 0xffff {
                continue;
            }
            let functions = if cfg.read8(f0, reg::HEADER_TYPE) & 0x80 != 0 { 8 } else { 1 };
            for func in 0..functions {
                let bdf = Bdf::new(bus, slot, func);
                if cfg.read16(bdf, reg::VENDOR) != 0xffff && cfg.read8(bdf, reg::HEADER_TYPE) & 0x7f == 1 {
                    cfg.write8(bdf, reg::SUBORDINATE_BUS, 0);
                    cfg.write8(bdf, reg::SECONDARY_BUS, 0);
                }
            }
        }
        for slot in 0..32 {
            self.scan_slot(core, cfg, bus, slot);
        }
    }

    /// Register every function present in a slot that is not registered yet
    /// (boot enumeration, and rescans after a hot-add). Returns how many
    /// were added; [`Pci::scan_slot_checked`] also tells whether one has to
    /// wait for an old object's release.
    pub fn scan_slot(&mut self, core: &mut Core, cfg: &dyn ConfigSpace, bus: u8, slot: u8) -> usize {
        self.scan_slot_checked(core, cfg, bus, slot).0
    }

    /// `scan_slot`, also saying whether a function could not register
    /// because the object that last held its name is not released yet
    /// (EBUSY): the caller retries once it is.
    pub fn scan_slot_checked(&mut self, core: &mut Core, cfg: &dyn ConfigSpace, bus: u8, slot: u8) -> (usize, bool) {
        let Some(&parent) = self.bus_parents.get(&bus) else { return (0, false) };
        let f0 = Bdf::new(bus, slot, 0);
        if cfg.read16(f0, reg::VENDOR) == 0xffff {
            return (0, false);
        }
        let functions = if cfg.read8(f0, reg::HEADER_TYPE) & 0x80 != 0 { 8 } else { 1 };
        let (mut added, mut busy) = (0, false);
        for func in 0..functions {
            let bdf = Bdf::new(bus, slot, func);
            if self.functions.contains_key(&bdf) || cfg.read16(bdf, reg::VENDOR) == 0xffff {
                continue;
            }
            match self.add_function(core, cfg, bdf, parent) {
                Ok(_) => added += 1,
                Err(Errno::EBUSY) => busy = true,
                Err(_) => {}
            }
        }
        (added, busy)
    }

    /// Is anything present in config space at this slot?
    pub fn slot_present(cfg: &dyn ConfigSpace, bus: u8, slot: u8) -> bool {
        cfg.read16(Bdf::new(bus, slot, 0), reg::VENDOR) != 0xffff
    }

    fn add_function(
        &mut self,
        core: &mut Core,
        cfg: &dyn ConfigSpace,
        bdf: Bdf,
        parent: DeviceId,
    ) -> Result<DeviceId, Errno> {
        let header_type = cfg.read8(bdf, reg::HEADER_TYPE);
        let class_rev = cfg.read32(bdf, reg::CLASS_REV);
        let irq_pin = cfg.read8(bdf, reg::INTERRUPT_PIN);
        let path = match self.bus_paths.get(&bdf.bus) {
            None => IrqPath::root(bdf.dev),
            Some(upstream) => upstream.below(bdf.dev),
        };
        let vendor = cfg.read16(bdf, reg::VENDOR);
        let device = cfg.read16(bdf, reg::DEVICE);
        let irq_line =
            irq::fixed_irq(vendor, device).or_else(|| irq::irq_for(self.chipset, path, irq_pin)).unwrap_or(0);
        if irq_pin != 0 {
            cfg.write8(bdf, reg::INTERRUPT_LINE, irq_line);
        }
        let is_bridge = header_type & 0x7f == 1;
        let bar_count = match header_type & 0x7f {
            0 => 6,
            1 => 2,
            _ => 0,
        };
        let mut bars = resources::probe_bars(cfg, bdf, bar_count);
        if let Some(window) = self.windows.get_mut(&bdf.bus) {
            resources::assign_bars(cfg, bdf, &mut bars, window);
        }
        let mut function = PciFunction {
            bdf,
            vendor,
            device,
            class: class_rev >> 8,
            revision: class_rev as u8,
            header_type,
            irq_pin,
            irq_line,
            bars,
            windows: None,
            secondary: None,
            subordinate: None,
        };
        let mut child_window = None;
        let parent_numbers = self.bus_numbers.get(&bdf.bus).copied();
        match parent_numbers {
            Some(range) if is_bridge && range.next <= range.limit => {
                let secondary = range.next as u8;
                cfg.write8(bdf, reg::PRIMARY_BUS, bdf.bus);
                cfg.write8(bdf, reg::SECONDARY_BUS, secondary);
                // Everything the parent still has, while the scan below runs.
                cfg.write8(bdf, reg::SUBORDINATE_BUS, range.limit as u8);
                self.bus_numbers.insert(secondary, BusNumbers { next: range.next + 1, limit: range.limit });
                let parent_window = self.windows.get_mut(&bdf.bus).ok_or(Errno::ENOSPC)?;
                let (windows, child) = resources::assign_bridge_windows(cfg, bdf, parent_window);
                function.windows = Some(windows);
                function.secondary = Some(secondary);
                child_window = Some((secondary, child));
            }
            // No bus number left in the parent's range: the bridge is shown,
            // with no buses, rather than given numbers nobody routes to it.
            _ if is_bridge => cfg.write8(bdf, reg::SECONDARY_BUS, 0),
            _ => {}
        }
        let name = format!("{bdf}");
        let rollback = function.clone();
        let dev = match core.device_register(&name, Some(parent), Some(self.bus), Box::new(function)) {
            Ok(dev) => dev,
            Err(e) => {
                // Nothing may stay allocated for a function that is not in
                // the model: give back its BARs, windows and bus numbers.
                if let Some(window) = self.windows.get_mut(&bdf.bus) {
                    resources::release_bars(&rollback.bars, window);
                    if let Some(w) = rollback.windows {
                        resources::release_windows(&w, window);
                    }
                }
                if let Some(secondary) = rollback.secondary {
                    self.bus_numbers.remove(&secondary);
                }
                return Err(e);
            }
        };
        self.functions.insert(bdf, dev);
        if let Some((secondary, window)) = child_window {
            self.windows.insert(secondary, window);
            self.bus_paths.insert(secondary, path);
            self.bus_parents.insert(secondary, dev);
            self.scan_bus(core, cfg, secondary);
            // Close the range: what the scan used, plus the hot-plug reserve.
            let limit = parent_numbers.map_or(255, |r| r.limit);
            let used = self.bus_numbers[&secondary].next - 1;
            let reserve = if hotplug::pciehp::is_hotplug_slot(cfg, bdf) { HOTPLUG_BUS_RESERVE } else { 0 };
            let subordinate = used.max(u16::from(secondary) + u16::from(reserve)).min(limit);
            cfg.write8(bdf, reg::SUBORDINATE_BUS, subordinate as u8);
            if let Some(numbers) = self.bus_numbers.get_mut(&secondary) {
                numbers.limit = subordinate;
            }
            if let Some(numbers) = self.bus_numbers.get_mut(&bdf.bus) {
                numbers.next = subordinate + 1;
            }
            if let Some(f) = core.data_mut::<PciFunction>(dev) {
                f.subordinate = Some(subordinate as u8);
            }
        }
        Ok(dev)
    }
}

impl Pci {
    /// Registered functions in one slot, highest function first (the order
    /// to remove them in).
    pub fn functions_in_slot(&self, bus: u8, slot: u8) -> Vec<(Bdf, DeviceId)> {
        let mut out: Vec<(Bdf, DeviceId)> =
            self.functions.iter().filter(|(b, _)| b.bus == bus && b.dev == slot).map(|(b, d)| (*b, *d)).collect();
        out.reverse();
        out
    }

    /// The bridge functions (with their secondary bus), for hot-plug
    /// controller discovery.
    pub fn bridges(&self, core: &Core) -> Vec<(Bdf, u8)> {
        self.functions
            .iter()
            .filter_map(|(bdf, dev)| core.data::<PciFunction>(*dev).and_then(|f| f.secondary).map(|s| (*bdf, s)))
            .collect()
    }

    /// Forget a function that has been unregistered: give back its BARs and,
    /// for a bridge, everything below it. Call after `device_unregister`.
    pub fn forget(&mut self, function: &PciFunction) {
        self.functions.remove(&function.bdf);
        if let Some(window) = self.windows.get_mut(&function.bdf.bus) {
            resources::release_bars(&function.bars, window);
            if let Some(w) = function.windows {
                resources::release_windows(&w, window);
            }
        }
        // Functions below the bridge went with it (the tree removes children
        // first); their resources lived in its window. That holds for every
        // bus below, not just the first: follow bridges on those buses down.
        let mut gone: Vec<u8> = function.secondary.into_iter().collect();
        while let Some(bus) = gone.pop() {
            let on_this_bus: Vec<DeviceId> =
                self.functions.iter().filter(|(bdf, _)| bdf.bus == bus).map(|(_, dev)| *dev).collect();
            gone.extend(self.bus_parents.iter().filter(|(_, parent)| on_this_bus.contains(parent)).map(|(b, _)| *b));
            self.functions.retain(|bdf, _| bdf.bus != bus);
            self.windows.remove(&bus);
            self.bus_paths.remove(&bus);
            self.bus_parents.remove(&bus);
            self.bus_numbers.remove(&bus);
        }
        // Give the bridge's bus numbers back if nothing was numbered after
        // them, so one slot can take a bridge again and again.
        if let (Some(secondary), Some(subordinate)) = (function.secondary, function.subordinate)
            && let Some(numbers) = self.bus_numbers.get_mut(&function.bdf.bus)
            && numbers.next == u16::from(subordinate) + 1
        {
            numbers.next = u16::from(secondary);
        }
    }
}
