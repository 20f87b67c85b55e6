//! The drivers on the `usb` bus, as Linux names them:
//!
//! - `usb`: the generic device driver; it binds every `usb_device` (the
//!   configuration was set during enumeration, as `usb_generic_driver`
//!   does right after binding);
//! - `hub`: hub interfaces (class 9), root hubs included; binding one
//!   hands it to the bus's hub thread;
//! - `usbhid`: HID interfaces (class 3): adds `report_descriptor_length`
//!   (the report descriptor as read from the device) and `boot_protocol`.

use alloc::rc::Rc;
use alloc::vec::Vec;

use super::UsbContext;
use super::descriptor::{CLASS_HID, CLASS_HUB};
use super::device::{UsbDevice, UsbInterface};
use super::hub::{Hub, disconnect, hub_bound};
use crate::base::{Attribute, Core, DeviceId, Driver};
use crate::errno::Errno;

pub fn register(core: &mut Core, ctx: &Rc<UsbContext>) {
    core.driver_register(ctx.bus, Rc::new(Generic));
    core.driver_register(ctx.bus, Rc::new(HubDriver { ctx: Rc::clone(ctx) }));
    core.driver_register(ctx.bus, Rc::new(HidDriver));
}

struct Generic;

impl Driver for Generic {
    fn name(&self) -> &'static str {
        "usb"
    }
    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<UsbDevice>(dev).is_some()
    }
    fn probe(&self, _core: &mut Core, _dev: DeviceId) -> Result<(), Errno> {
        Ok(())
    }
}

struct HubDriver {
    ctx: Rc<UsbContext>,
}

impl Driver for HubDriver {
    fn name(&self) -> &'static str {
        "hub"
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<UsbInterface>(dev).is_some_and(|i| i.interface.class == CLASS_HUB)
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let iface = core.data::<UsbInterface>(dev).ok_or(Errno::ENODEV)?;
        let host = self.ctx.host(iface.bus).ok_or(Errno::ENODEV)?;
        if iface.path.is_empty() {
            host.hubs.borrow_mut().insert(0, Hub::root(dev, host.hc.root_ports()));
            return Ok(());
        }
        let usb_dev = host.device_at(&iface.path).ok_or(Errno::ENODEV)?;
        hub_bound(&host, usb_dev, dev, iface.interface.endpoints.first().copied());
        Ok(())
    }

    /// Unbinding a hub disconnects everything behind it, as Linux's
    /// `hub_disconnect` does; the hub itself stays.
    fn remove(&self, core: &mut Core, dev: DeviceId) {
        let Some(iface) = core.data::<UsbInterface>(dev) else { return };
        let Some(host) = self.ctx.host(iface.bus) else { return };
        let path = iface.path.clone();
        let mut cancelled = Vec::new();
        host.hubs.borrow_mut().retain(|h| {
            if h.interface == dev {
                cancelled.extend(h.status_transfer);
                false
            } else {
                true
            }
        });
        for id in cancelled {
            host.hc.cancel(id);
        }
        if crate::fault::planted(crate::fault::Fault::HubChildrenKept) {
            return;
        }
        let children: Vec<_> = host
            .devices
            .borrow()
            .iter()
            .filter(|d| d.path.len() == path.len() + 1 && d.path.starts_with(&path))
            .cloned()
            .collect();
        if children.is_empty() {
            return;
        }
        let ctx = Rc::clone(&self.ctx);
        let work = ctx.work.start();
        self.ctx.spawner.spawn(async move {
            let _work = work;
            for child in children {
                disconnect(&ctx, &host, &child).await;
            }
        });
    }
}

struct HidDriver;

const HID_ATTRIBUTES: [&str; 2] = ["report_descriptor_length", "boot_protocol"];

impl Driver for HidDriver {
    fn name(&self) -> &'static str {
        "usbhid"
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<UsbInterface>(dev).is_some_and(|i| i.interface.class == CLASS_HID)
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        for name in HID_ATTRIBUTES {
            core.device_create_file(dev, Attribute::ro(name))?;
        }
        if let Some(iface) = core.data_mut::<UsbInterface>(dev) {
            iface.driver_attributes = HID_ATTRIBUTES.to_vec();
        }
        Ok(())
    }

    fn remove(&self, core: &mut Core, dev: DeviceId) {
        // The files go (open handles read ENODEV); a show() already
        // running on one still finds its value in the interface.
        for name in HID_ATTRIBUTES {
            core.device_remove_file(dev, name);
        }
    }
}
