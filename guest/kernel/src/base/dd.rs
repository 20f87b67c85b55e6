//! Binding devices to drivers, after `drivers/base/dd.c`: match, probe,
//! the driver links, and unbinding in the reverse order.

use alloc::rc::Rc;

use super::{BusId, Core, CoreRef, DeviceId, DeviceState, DriverId, UeventAction, device_unregister};
use crate::errno::Errno;
use crate::executor::wait_until;

impl Core {
    /// Offer a new device to each driver of its bus, in registration order,
    /// until one binds.
    pub(super) fn bus_probe_device(&mut self, bus: BusId, dev: DeviceId) {
        for drv in self.buses[bus.0 as usize].drivers.clone() {
            if self.device(dev).driver.is_some() || self.device(dev).state != DeviceState::Registered {
                break;
            }
            let _ = self.driver_probe_device(drv, dev);
        }
    }

    /// Bind if the driver matches. A driver that does not match is not an
    /// error; a probe that fails leaves the device unbound for the next one.
    ///
    /// Only registered devices are probed: once `device_del` has started a
    /// device may still sit on its bus list (waiting for its children), and
    /// binding it then would create driver links and call probe() on an
    /// object that is going away (driver-model.md §6e: "probe checks dead").
    pub(super) fn driver_probe_device(&mut self, drv: DriverId, dev: DeviceId) -> Result<(), Errno> {
        if self.device(dev).state != DeviceState::Registered {
            return Err(Errno::ENODEV);
        }
        let ops = Rc::clone(&self.drivers[drv.0 as usize].ops);
        if !ops.matches(self, dev) {
            return Err(Errno::ENODEV);
        }
        self.really_probe(drv, dev)
    }

    /// Set the driver, create the links, call probe, announce `bind`.
    fn really_probe(&mut self, drv: DriverId, dev: DeviceId) -> Result<(), Errno> {
        self.device_mut(dev).driver = Some(drv);
        self.driver_sysfs_add(drv, dev);
        let ops = Rc::clone(&self.drivers[drv.0 as usize].ops);
        match ops.probe(self, dev) {
            Ok(()) => {
                self.drivers[drv.0 as usize].devices.push(dev);
                self.uevent(dev, UeventAction::Bind);
                Ok(())
            }
            Err(e) => {
                self.driver_sysfs_remove(dev);
                self.device_mut(dev).driver = None;
                Err(e)
            }
        }
    }

    /// `bus/<bus>/drivers/<drv>/<dev>` and `<dev>/driver`.
    fn driver_sysfs_add(&mut self, drv: DriverId, dev: DeviceId) {
        let driver_dir = self.drivers[drv.0 as usize].dir;
        let dev_dir = self.device(dev).dir.expect("bound devices are registered");
        let name = self.device(dev).name.clone();
        if let Ok(link) = self.fs.symlink(driver_dir, &name, dev_dir) {
            self.device_mut(dev).nodes.push(link);
        }
        if let Ok(link) = self.fs.symlink(dev_dir, "driver", driver_dir) {
            self.device_mut(dev).nodes.push(link);
        }
    }

    fn driver_sysfs_remove(&mut self, dev: DeviceId) {
        let Some(dir) = self.device(dev).dir else { return };
        let name = self.device(dev).name.clone();
        let Some(drv) = self.device(dev).driver else { return };
        let driver_dir = self.drivers[drv.0 as usize].dir;
        for node in [self.fs.child(driver_dir, &name), self.fs.child(dir, "driver")].into_iter().flatten() {
            self.fs.deactivate(node);
            self.fs.unlink_when_drained(node);
            self.device_mut(dev).nodes.retain(|n| *n != node);
        }
    }

    /// The synchronous half of unbinding: links, `remove()`, `unbind`.
    /// Managed children must already be gone (see [`device_release_driver`]).
    pub(super) fn release_driver_now(&mut self, dev: DeviceId) {
        let Some(drv) = self.device(dev).driver else { return };
        self.driver_sysfs_remove(dev);
        let ops = Rc::clone(&self.drivers[drv.0 as usize].ops);
        ops.remove(self, dev);
        self.drivers[drv.0 as usize].devices.retain(|d| *d != dev);
        self.uevent(dev, UeventAction::Unbind);
        self.device_mut(dev).driver = None;
    }

    fn managed_child(&self, dev: DeviceId) -> Option<DeviceId> {
        let drv = self.device(dev).driver?;
        self.device(dev)
            .children
            .iter()
            .rev()
            .copied()
            .find(|c| self.device(*c).managed_by == Some(drv) && self.device(*c).state == DeviceState::Registered)
    }

    fn managed_children_dying(&self, dev: DeviceId) -> bool {
        let Some(drv) = self.device(dev).driver else { return false };
        self.device(dev).children.iter().any(|c| self.device(*c).managed_by == Some(drv))
    }
}

/// Bind a registered, unbound device to a named driver (the `bind` verb).
pub fn bind(core: &mut Core, bus: BusId, dev: DeviceId, drv: DriverId) -> Result<(), Errno> {
    if core.device(dev).driver.is_some() {
        return Err(Errno::EBUSY);
    }
    if core.drivers[drv.0 as usize].bus != bus {
        return Err(Errno::EINVAL);
    }
    core.driver_probe_device(drv, dev)
}

/// Unbind: first unregister the children the driver created (newest first),
/// then remove links, call `remove()` and announce `unbind`.
pub async fn device_release_driver(core: &CoreRef, dev: DeviceId) -> Result<(), Errno> {
    if core.borrow().device(dev).driver.is_none() {
        return Err(Errno::ENODEV);
    }
    loop {
        let next = core.borrow().managed_child(dev);
        match next {
            Some(child) => {
                let _ = device_unregister(core, child).await;
            }
            None => break,
        }
    }
    wait_until(|| !core.borrow().managed_children_dying(dev)).await;
    core.borrow_mut().release_driver_now(dev);
    Ok(())
}
