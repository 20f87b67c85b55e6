//! Bus types and drivers, after `drivers/base/bus.c`: registration, the
//! `bus/<bus>/{devices,drivers}` directories and bus membership.

use alloc::rc::Rc;
use alloc::vec::Vec;

use super::{Core, DeviceId, DeviceState};
use crate::driverfs::NodeId;
use crate::errno::Errno;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BusId(pub(crate) u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriverId(pub(crate) u16);

/// A driver for devices on one bus. Matching and probing get the whole core
/// so a driver can read its device's data and register children.
pub trait Driver {
    fn name(&self) -> &'static str;
    /// Does this driver handle the device? Must not change anything.
    fn matches(&self, core: &Core, dev: DeviceId) -> bool;
    /// Take the device. On error the device stays unbound.
    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno>;
    /// Let go of the device. Children the driver created with
    /// [`Core::set_managed`] are already unregistered when this runs.
    fn remove(&self, _core: &mut Core, _dev: DeviceId) {}
}

pub(crate) struct Bus {
    pub(crate) name: &'static str,
    /// Registered devices, in registration order.
    pub(crate) devices: Vec<DeviceId>,
    pub(crate) drivers: Vec<DriverId>,
    pub(crate) devices_dir: NodeId,
    pub(crate) drivers_dir: NodeId,
}

pub(crate) struct DriverEntry {
    pub(crate) bus: BusId,
    pub(crate) ops: Rc<dyn Driver>,
    pub(crate) devices: Vec<DeviceId>,
    pub(crate) dir: NodeId,
}

impl Core {
    /// Create `bus/<name>/{devices,drivers}`.
    pub fn bus_register(&mut self, name: &'static str) -> BusId {
        let dir = self.fs.mkdir(self.bus_dir, name).expect("bus names are unique");
        let devices_dir = self.fs.mkdir(dir, "devices").expect("fresh bus directory");
        let drivers_dir = self.fs.mkdir(dir, "drivers").expect("fresh bus directory");
        self.buses.push(Bus { name, devices: Vec::new(), drivers: Vec::new(), devices_dir, drivers_dir });
        BusId(self.buses.len() as u16 - 1)
    }

    pub fn bus_name(&self, bus: BusId) -> &'static str {
        self.buses[bus.0 as usize].name
    }

    /// Is `dev` on the bus called `name`?
    pub fn is_on_bus(&self, dev: DeviceId, name: &str) -> bool {
        self.device(dev).bus.is_some_and(|bus| self.bus_name(bus) == name)
    }

    pub fn find_bus(&self, name: &str) -> Option<BusId> {
        self.buses.iter().position(|b| b.name == name).map(|i| BusId(i as u16))
    }

    /// Registered devices on the bus, in registration order. The ids are not
    /// retained: take a reference with [`Core::get`] to keep one.
    pub fn bus_devices(&self, bus: BusId) -> Vec<DeviceId> {
        self.buses[bus.0 as usize].devices.clone()
    }

    /// Find a registered device on the bus by name. Dying devices are never
    /// found (docs/driver-model.md, "Removal order").
    pub fn bus_find_device(&self, bus: BusId, name: &str) -> Option<DeviceId> {
        self.buses[bus.0 as usize]
            .devices
            .iter()
            .copied()
            .find(|d| self.device(*d).name == name && self.device(*d).state == DeviceState::Registered)
    }

    /// `bus/<bus>/devices/<name>` is one namespace for the whole bus. A
    /// removed device leaves the bus list before its link has drained, so
    /// the list alone cannot tell: a name still held by an object that is
    /// not yet released is busy, as in [`Core::device_add`]'s own check.
    pub(super) fn bus_check_name_free(&self, bus: BusId, name: &str) -> Result<(), Errno> {
        // Only a registered device makes the name exist: one whose removal
        // has started is still on the list until it unlinks, but its name
        // is merely busy, as for a removed object not yet released.
        let registered =
            |d: &DeviceId| self.device(*d).name == name && self.device(*d).state == DeviceState::Registered;
        if self.buses[bus.0 as usize].devices.iter().any(registered) {
            return Err(Errno::EEXIST);
        }
        let draining = self.devices.iter().any(|d| {
            d.bus == Some(bus) && d.name == name && matches!(d.state, DeviceState::Dying | DeviceState::Deleted)
        });
        if draining { Err(Errno::EBUSY) } else { Ok(()) }
    }

    /// Add to the bus list and create `bus/<bus>/devices/<name>`.
    pub(super) fn bus_add_device(&mut self, bus: BusId, dev: DeviceId) {
        let b = &self.buses[bus.0 as usize];
        let devices_dir = b.devices_dir;
        let target = self.device(dev).dir.expect("added devices have a directory");
        let name = self.device(dev).name.clone();
        if let Ok(link) = self.fs.symlink(devices_dir, &name, target) {
            self.device_mut(dev).nodes.push(link);
        }
        self.buses[bus.0 as usize].devices.push(dev);
    }

    /// Leave the bus list. The `bus/<bus>/devices` link is one of the
    /// device's nodes and goes with them once they have drained.
    pub(super) fn bus_remove_device(&mut self, bus: BusId, dev: DeviceId) {
        self.buses[bus.0 as usize].devices.retain(|d| *d != dev);
    }

    /// Register a driver and offer it every unbound device on its bus.
    pub fn driver_register(&mut self, bus: BusId, ops: Rc<dyn Driver>) -> DriverId {
        let drivers_dir = self.buses[bus.0 as usize].drivers_dir;
        let dir = self.fs.mkdir(drivers_dir, ops.name()).expect("driver names are unique per bus");
        self.drivers.push(DriverEntry { bus, ops, devices: Vec::new(), dir });
        let id = DriverId(self.drivers.len() as u16 - 1);
        self.buses[bus.0 as usize].drivers.push(id);
        for dev in self.bus_devices(bus) {
            if self.device(dev).driver.is_none() {
                // Not matching, or a failed probe, leaves the device for others.
                let _ = self.driver_probe_device(id, dev);
            }
        }
        id
    }

    pub fn driver_name(&self, drv: DriverId) -> &'static str {
        self.drivers[drv.0 as usize].ops.name()
    }

    pub fn find_driver(&self, bus: BusId, name: &str) -> Option<DriverId> {
        self.buses[bus.0 as usize].drivers.iter().copied().find(|d| self.driver_name(*d) == name)
    }

    /// The devices bound to a driver, in bind order.
    pub fn driver_devices(&self, drv: DriverId) -> Vec<DeviceId> {
        self.drivers[drv.0 as usize].devices.clone()
    }
}
