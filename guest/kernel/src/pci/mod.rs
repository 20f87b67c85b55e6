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
    /// True while the boot-time tree is enumerated (bridges then get the
    /// full hot-plug reserve in their windows).
    booting: bool,
    /// QEMU's ACPI hot-plug selectors: bsel → the bus number it selects.
    /// The root bus of `pc` is always bsel 0; the others are told by the
    /// harness (`pcihp bsel`), since config space does not reveal them.
    pub acpi_bsel: BTreeMap<u32, u8>,
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
            booting: true,
            acpi_bsel: BTreeMap::new(),
        };
        if chipset == Chipset::I440fx {
            pci.acpi_bsel.insert(0, 0);
        }
        pci.bus_numbers.insert(0, BusNumbers { next: 1, limit: 255 });
        pci.bus_parents.insert(0, root);
        pci.windows.insert(0, resources::root_window(chipset.reserved_io()));
        pci.number_bus(cfg, 0);
        pci.scan_bus(core, cfg, 0);
        pci.booting = false;
        pci
    }

    /// Give every bridge on `bus` (and below) its bus numbers, depth first
    /// in slot order, from what `bus` still has free.
    ///
    /// Firmware leaves numbers behind, and not always in this order (qboot
    /// numbers sibling bridges in reverse slot order). A bridge still
    /// holding an old number claims config cycles for it, so when that
    /// number is handed to a sibling, QEMU routes the sibling's cycles to
    /// the wrong bridge and its devices show up twice. So, as a kernel that
    /// renumbers must, every bridge on a bus is closed (secondary and
    /// subordinate 0: it forwards nothing) before any of them is given a
    /// number; the bridges below are closed when their bus is numbered.
    fn number_bus(&mut self, cfg: &dyn ConfigSpace, bus: u8) {
        let bridges = bridges_on(cfg, bus);
        for &bdf in &bridges {
            close_bridge(cfg, bdf);
        }
        self.number_bridges(cfg, &bridges);
    }

    /// Number these (closed) bridges of one bus, in order, each with its
    /// subtree and its hot-plug reserve; a bridge that finds no number left
    /// stays closed and is shown without buses.
    fn number_bridges(&mut self, cfg: &dyn ConfigSpace, bridges: &[Bdf]) {
        for &bdf in bridges {
            let Some(range) = self.bus_numbers.get(&bdf.bus).copied() else { return };
            if range.next > range.limit {
                close_bridge(cfg, bdf);
                continue;
            }
            let secondary = range.next as u8;
            cfg.write8(bdf, reg::PRIMARY_BUS, bdf.bus);
            cfg.write8(bdf, reg::SECONDARY_BUS, secondary);
            // Everything the parent still has, while the bus below is numbered.
            cfg.write8(bdf, reg::SUBORDINATE_BUS, range.limit as u8);
            self.bus_numbers.insert(secondary, BusNumbers { next: range.next + 1, limit: range.limit });
            self.number_bus(cfg, secondary);
            // Close the range: what the bus below used, plus the reserve.
            let used = self.bus_numbers[&secondary].next - 1;
            let reserve = if hotplug::pciehp::is_hotplug_slot(cfg, bdf) { HOTPLUG_BUS_RESERVE } else { 0 };
            let subordinate = used.max(u16::from(secondary) + u16::from(reserve)).min(range.limit);
            cfg.write8(bdf, reg::SUBORDINATE_BUS, subordinate as u8);
            if let Some(numbers) = self.bus_numbers.get_mut(&secondary) {
                numbers.limit = subordinate;
            }
            if let Some(numbers) = self.bus_numbers.get_mut(&bdf.bus) {
                numbers.next = subordinate + 1;
            }
        }
    }

    /// What the functions on `bus` (numbered, not yet registered) need from
    /// the window of the bridge above it, in the order registration will
    /// place them.
    fn demand_of_bus(&self, cfg: &dyn ConfigSpace, bus: u8, boot: bool) -> resources::Demand {
        let mut demand = resources::Demand::default();
        for bdf in functions_on(cfg, bus) {
            let header = cfg.read8(bdf, reg::HEADER_TYPE) & 0x7f;
            let bar_count = match header {
                0 => 6,
                1 => 2,
                _ => 0,
            };
            demand.add_bars(&resources::probe_bars(cfg, bdf, bar_count));
            if header == 1 {
                demand.add_window(&self.bridge_window_sizes(cfg, bdf, boot));
            }
        }
        demand
    }

    /// The windows a bridge gets: what is behind it, plus room for what can
    /// be hot-plugged below it later. Every cold-plugged bridge can take
    /// hot-plugs (a PCIe slot, or QEMU's ACPI hot-plug on its bus); a bridge
    /// that was itself hot-added gets a smaller reserve, since it has to fit
    /// in the window of the slot it was plugged into.
    fn bridge_window_sizes(&self, cfg: &dyn ConfigSpace, bdf: Bdf, boot: bool) -> resources::WindowSizes {
        let secondary = cfg.read8(bdf, reg::SECONDARY_BUS);
        let demand = if secondary > bdf.bus { self.demand_of_bus(cfg, secondary, boot) } else { Default::default() };
        let room = if boot || hotplug::pciehp::is_hotplug_slot(cfg, bdf) {
            resources::HOTPLUG_ROOM
        } else {
            resources::HOT_ADDED_BRIDGE_ROOM
        };
        demand.window_sizes(room)
    }

    /// Registered function at `bdf`, if any.
    pub fn function(&self, bdf: Bdf) -> Option<DeviceId> {
        self.functions.get(&bdf).copied()
    }

    fn scan_bus(&mut self, core: &mut Core, cfg: &dyn ConfigSpace, bus: u8) {
        let Some(&parent) = self.bus_parents.get(&bus) else { return };
        for bdf in functions_on(cfg, bus) {
            if !self.functions.contains_key(&bdf) {
                let _ = self.add_function(core, cfg, bdf, parent);
            }
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
        let new: Vec<Bdf> =
            functions_in(cfg, bus, slot).into_iter().filter(|bdf| !self.functions.contains_key(bdf)).collect();
        // Bridges plugged in after boot are numbered here, from what their
        // bus keeps free; boot-time ones were numbered before the scan.
        let new_bridges: Vec<Bdf> = new
            .iter()
            .copied()
            .filter(|&bdf| is_bridge_header(cfg, bdf) && cfg.read8(bdf, reg::SECONDARY_BUS) <= bus)
            .collect();
        for &bdf in &new_bridges {
            close_bridge(cfg, bdf);
        }
        self.number_bridges(cfg, &new_bridges);
        let (mut added, mut busy) = (0, false);
        for bdf in new {
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
        let secondary = cfg.read8(bdf, reg::SECONDARY_BUS);
        // Numbered (before the scan, or just now for a hot-added bridge)
        // unless no bus number was left for it.
        if is_bridge && secondary > bdf.bus {
            let boot = self.booting;
            let sizes = self.bridge_window_sizes(cfg, bdf, boot);
            let parent_window = self.windows.get_mut(&bdf.bus).ok_or(Errno::ENOSPC)?;
            let (windows, child) = resources::assign_bridge_windows(cfg, bdf, &sizes, parent_window);
            function.windows = Some(windows);
            function.secondary = Some(secondary);
            function.subordinate = Some(cfg.read8(bdf, reg::SUBORDINATE_BUS));
            child_window = Some((secondary, child));
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
                if let (Some(secondary), Some(subordinate)) = (rollback.secondary, rollback.subordinate) {
                    // Closed again, so a retry numbers it afresh.
                    close_bridge(cfg, bdf);
                    self.bus_numbers.retain(|&bus, _| !(secondary..=subordinate).contains(&bus));
                    if let Some(numbers) = self.bus_numbers.get_mut(&bdf.bus)
                        && numbers.next == u16::from(subordinate) + 1
                    {
                        numbers.next = u16::from(secondary);
                    }
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
        }
        Ok(dev)
    }
}

/// Every function present in a slot: function 0, and 1–7 when function 0
/// says the device is multifunction.
fn functions_in(cfg: &dyn ConfigSpace, bus: u8, slot: u8) -> Vec<Bdf> {
    let f0 = Bdf::new(bus, slot, 0);
    if cfg.read16(f0, reg::VENDOR) == 0xffff {
        return Vec::new();
    }
    let count = if cfg.read8(f0, reg::HEADER_TYPE) & 0x80 != 0 { 8 } else { 1 };
    (0..count).map(|func| Bdf::new(bus, slot, func)).filter(|&bdf| cfg.read16(bdf, reg::VENDOR) != 0xffff).collect()
}

/// Every function on a bus, in slot and function order.
fn functions_on(cfg: &dyn ConfigSpace, bus: u8) -> Vec<Bdf> {
    (0..32).flat_map(|slot| functions_in(cfg, bus, slot)).collect()
}

fn is_bridge_header(cfg: &dyn ConfigSpace, bdf: Bdf) -> bool {
    cfg.read8(bdf, reg::HEADER_TYPE) & 0x7f == 1
}

/// The PCI-PCI bridges on a bus.
fn bridges_on(cfg: &dyn ConfigSpace, bus: u8) -> Vec<Bdf> {
    functions_on(cfg, bus).into_iter().filter(|&bdf| is_bridge_header(cfg, bdf)).collect()
}

/// A bridge with secondary and subordinate 0 forwards no config cycles.
fn close_bridge(cfg: &dyn ConfigSpace, bdf: Bdf) {
    cfg.write8(bdf, reg::PRIMARY_BUS, bdf.bus);
    cfg.write8(bdf, reg::SECONDARY_BUS, 0);
    cfg.write8(bdf, reg::SUBORDINATE_BUS, 0);
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
