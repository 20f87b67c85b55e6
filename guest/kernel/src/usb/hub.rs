//! The hub thread, after Linux's khubd: one task per bus that watches every
//! hub's ports, enumerates new devices one at a time (only one device may
//! answer at address 0) and takes disconnected subtrees down.
//!
//! Root ports are read from the controller; an external hub reports changes
//! on its status-change endpoint (a bitmap, bit N = port N), which stays
//! queued while the hub NAKs. On UHCI nothing wakes a hub, so the pipe is
//! simply polled. A change on a port whose C_CONNECTION is set disconnects
//! the device that was there first, even if a device is connected again
//! (a replug while the guest was not looking is a different device).
//!
//! Drivers' port resets ([`super::reset_device`]) run here too, between
//! two looks at the ports: a reset device answers at address 0 until it is
//! given its old address back, and only this thread talks to address 0.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::vec::Vec;

use super::descriptor::{self, Configuration, DeviceDescriptor, Endpoint, HubDescriptor, TransferType};
use super::device::{PortPath, UsbDevice, UsbInterface, interface_name};
use super::hcd::{self, Pipe, PortStatus, Transfer, TransferId, UsbError, port};
use super::request::{self, hub as hubreq};
use super::{Attachment, Enumerated, UsbContext, UsbDev, UsbHost, control};
use crate::base::{DeviceId, DeviceState, device_unregister};
use crate::errno::Errno;
use crate::executor::yield_now;
use crate::klog;

/// A hub bound to the `hub` driver.
pub struct Hub {
    /// The hub's own port path (empty: the root hub).
    pub path: PortPath,
    /// The external hub as a device (`None` for the root hub).
    pub dev: Option<Rc<UsbDev>>,
    /// The interface the `hub` driver is bound to.
    pub interface: DeviceId,
    pub status_endpoint: Option<Endpoint>,
    /// Ports; 0 until the hub descriptor has been read.
    pub ports: u8,
    /// The status-change transfer in flight.
    pub status_transfer: Option<TransferId>,
    /// Ports to look at (bit N = port N).
    pub pending: u32,
    /// Ports whose device failed to enumerate; retried after the next
    /// connect change only.
    pub failed: u32,
    /// Thread passes since the root ports were last read (root hub only).
    pub passes_since_poll: u32,
}

impl Hub {
    pub fn root(interface: DeviceId, ports: u8) -> Hub {
        Hub {
            path: Vec::new(),
            dev: None,
            interface,
            status_endpoint: None,
            ports,
            status_transfer: None,
            pending: 0,
            failed: 0,
            passes_since_poll: u32::MAX - 1,
        }
    }

    pub fn external(dev: Rc<UsbDev>, interface: DeviceId, status_endpoint: Option<Endpoint>) -> Hub {
        Hub {
            path: dev.path.clone(),
            dev: Some(dev),
            interface,
            status_endpoint,
            ports: 0,
            status_transfer: None,
            pending: 0,
            failed: 0,
            passes_since_poll: u32::MAX - 1,
        }
    }
}

/// The bus's thread: runs until the controller goes away.
pub async fn hub_thread(ctx: Rc<UsbContext>, host: Rc<UsbHost>) {
    loop {
        if !host.alive.get() {
            break;
        }
        let paths: Vec<PortPath> = host.hubs.borrow().iter().map(|h| h.path.clone()).collect();
        for path in paths {
            service_hub(&ctx, &host, &path).await;
        }
        serve_resets(&ctx, &host).await;
        register_pending(&ctx, &host);
        yield_now().await;
    }
    // The controller is gone: cancel what is queued and forget the hubs.
    for request in host.resets.borrow_mut().drain(..) {
        request.done.set(Some(Err(UsbError::NoDevice)));
    }
    for hub in host.hubs.borrow_mut().drain(..) {
        if let Some(id) = hub.status_transfer {
            host.hc.cancel(id);
        }
    }
}

fn with_hub<R>(host: &UsbHost, path: &[u8], f: impl FnOnce(&mut Hub) -> R) -> Option<R> {
    host.hubs.borrow_mut().iter_mut().find(|h| h.path == path).map(f)
}

/// Find out which ports of one hub need attention and handle them.
async fn service_hub(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, path: &[u8]) {
    if path.is_empty() {
        let due = with_hub(host, path, |h| {
            h.passes_since_poll += 1;
            let due = h.passes_since_poll >= ctx.root_poll_passes.get();
            if due {
                h.passes_since_poll = 0;
            }
            due
        });
        if due != Some(true) {
            return;
        }
        for p in 1..=host.hc.root_ports() {
            let status = host.hc.root_port_status(p);
            let mut child_path = path.to_vec();
            child_path.push(p);
            let has_child = host.device_at(&child_path).is_some();
            let failed = with_hub(host, path, |h| h.failed & 1 << p != 0).unwrap_or(false);
            if status.change != 0 || (status.connected() && !has_child && !failed) || (!status.connected() && has_child)
            {
                handle_port(ctx, host, path, p).await;
            }
        }
        return;
    }
    let Some((dev, ports)) = with_hub(host, path, |h| (h.dev.clone(), h.ports)) else { return };
    let Some(dev) = dev else { return };
    if !dev.alive() {
        return;
    }
    if ports == 0 {
        let _work = ctx.work.start();
        match init_hub(ctx, host, &dev).await {
            Ok(n) => {
                with_hub(host, path, |h| {
                    h.ports = n;
                    // Whatever is connected already gets looked at once.
                    h.pending = ((1u32 << (n + 1)) - 1) & !1;
                });
            }
            Err(e) => {
                klog!(ctx.platform, "usb: hub {} failed to start: {e:?}", dev.name());
                // Do not try again until the hub is replugged.
                with_hub(host, path, |h| h.ports = u8::MAX);
                return;
            }
        }
    }
    if ports == u8::MAX {
        return;
    }
    poll_status_pipe(host, path, &dev);
    loop {
        let next = with_hub(host, path, |h| {
            let bits = h.pending & !1;
            if bits == 0 {
                return None;
            }
            let port = bits.trailing_zeros() as u8;
            h.pending &= !(1 << port);
            Some(port)
        });
        let Some(Some(p)) = next else { break };
        handle_port(ctx, host, path, p).await;
        if !dev.alive() {
            break;
        }
    }
}

/// Collect the status pipe's bitmap, if it completed, and queue it again.
fn poll_status_pipe(host: &UsbHost, path: &[u8], dev: &UsbDev) {
    let (transfer, endpoint, ports) = match with_hub(host, path, |h| (h.status_transfer, h.status_endpoint, h.ports)) {
        Some(v) => v,
        None => return,
    };
    let Some(endpoint) = endpoint else { return };
    if let Some(id) = transfer {
        match host.hc.poll(id) {
            None => return,
            Some(Ok(bitmap)) => {
                let mut bits = 0u32;
                for (i, byte) in bitmap.iter().take(4).enumerate() {
                    bits |= u32::from(*byte) << (8 * i);
                }
                with_hub(host, path, |h| {
                    h.pending |= bits;
                    h.status_transfer = None;
                });
            }
            Some(Err(_)) => {
                // A hub that went away answers CRC/time-out; the port above
                // it reports the disconnect. Queue again unless it is gone.
                with_hub(host, path, |h| h.status_transfer = None);
            }
        }
    }
    let length = (usize::from(ports) + 1).div_ceil(8);
    if let Ok(id) = super::submit_in(host, dev, &endpoint, length) {
        with_hub(host, path, |h| h.status_transfer = Some(id));
    }
}

/// Hub descriptor, then power every port. Returns the port count.
async fn init_hub(ctx: &UsbContext, host: &UsbHost, dev: &UsbDev) -> Result<u8, UsbError> {
    let raw = control(ctx, host, dev, hubreq::get_hub_descriptor(), Vec::new()).await?;
    let desc = HubDescriptor::parse(&raw).ok_or(UsbError::Protocol)?;
    let ports = desc.ports.min(15);
    for p in 1..=ports {
        control(ctx, host, dev, hubreq::set_port_feature(p, hubreq::PORT_POWER), Vec::new()).await?;
    }
    klog!(ctx.platform, "usb: hub {} has {ports} ports", dev.name());
    Ok(ports)
}

async fn port_status(ctx: &UsbContext, host: &UsbHost, hub: Option<&UsbDev>, p: u8) -> Result<PortStatus, UsbError> {
    match hub {
        None => Ok(host.hc.root_port_status(p)),
        Some(dev) => {
            let raw = control(ctx, host, dev, hubreq::get_port_status(p), Vec::new()).await?;
            if raw.len() < 4 {
                return Err(UsbError::Protocol);
            }
            Ok(PortStatus {
                status: u16::from_le_bytes([raw[0], raw[1]]),
                change: u16::from_le_bytes([raw[2], raw[3]]),
            })
        }
    }
}

/// Acknowledge change bits. On a hub each is its own CLEAR_FEATURE; QEMU's
/// hub keeps reporting a port until C_RESET *and* C_ENABLE are cleared.
async fn clear_changes(
    ctx: &UsbContext,
    host: &UsbHost,
    hub: Option<&UsbDev>,
    p: u8,
    change: u16,
) -> Result<(), UsbError> {
    match hub {
        None => {
            host.hc.root_port_clear_change(p, change);
            Ok(())
        }
        Some(dev) => {
            for (bit, feature) in [
                (port::C_CONNECTION, hubreq::C_PORT_CONNECTION),
                (port::C_ENABLE, hubreq::C_PORT_ENABLE),
                (port::C_SUSPEND, hubreq::C_PORT_SUSPEND),
                (port::C_OVER_CURRENT, hubreq::C_PORT_OVER_CURRENT),
                (port::C_RESET, hubreq::C_PORT_RESET),
            ] {
                if change & bit != 0 {
                    control(ctx, host, dev, hubreq::clear_port_feature(p, feature), Vec::new()).await?;
                }
            }
            Ok(())
        }
    }
}

/// Reset a port and wait until it is enabled.
async fn reset_port(ctx: &UsbContext, host: &UsbHost, hub: Option<&UsbDev>, p: u8) -> Result<PortStatus, UsbError> {
    let Some(dev) = hub else {
        host.hc.root_port_reset(p);
        return Ok(host.hc.root_port_status(p));
    };
    control(ctx, host, dev, hubreq::set_port_feature(p, hubreq::PORT_RESET), Vec::new()).await?;
    for _ in 0..50 {
        let status = port_status(ctx, host, hub, p).await?;
        if status.status & port::RESET == 0 {
            clear_changes(ctx, host, hub, p, status.change & (port::C_RESET | port::C_ENABLE)).await?;
            return Ok(status);
        }
        yield_now().await;
    }
    Err(UsbError::Timeout)
}

/// Look at one port: acknowledge its changes, disconnect what left,
/// enumerate what arrived.
async fn handle_port(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, hub_path: &[u8], p: u8) {
    let _work = ctx.work.start();
    let hub_dev = if hub_path.is_empty() { None } else { host.device_at(hub_path) };
    if !hub_path.is_empty() && hub_dev.as_ref().is_none_or(|d| !d.alive()) {
        return;
    }
    let Ok(status) = port_status(ctx, host, hub_dev.as_deref(), p).await else { return };
    if status.change != 0 && clear_changes(ctx, host, hub_dev.as_deref(), p, status.change).await.is_err() {
        return;
    }
    let mut path = hub_path.to_vec();
    path.push(p);
    let existing = host.device_at(&path);
    if status.change & port::C_CONNECTION != 0 {
        with_hub(host, hub_path, |h| h.failed &= !(1 << p));
    }
    if let Some(old) = existing
        && (status.change & port::C_CONNECTION != 0 || !status.connected())
    {
        disconnect(ctx, host, &old).await;
    }
    if status.connected()
        && host.device_at(&path).is_none()
        && let Err(e) = enumerate(ctx, host, hub_dev.as_deref(), p, path.clone()).await
    {
        klog!(ctx.platform, "usb: {} failed to enumerate: {e:?}", super::device::device_name(host.number, &path));
        with_hub(host, hub_path, |h| h.failed |= 1 << p);
    }
}

/// Take a device and everything below it away: mark them not attached
/// (transfers fail with ENODEV from here on), stop their hubs, give back
/// their addresses, then unregister the object; the driver core removes
/// the children first, depth first, and drains reads in flight.
pub async fn disconnect(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &Rc<UsbDev>) {
    let _work = ctx.work.start();
    let gone: Vec<Rc<UsbDev>> =
        host.devices.borrow().iter().filter(|d| d.path.starts_with(&dev.path)).cloned().collect();
    for d in &gone {
        d.state.set(Attachment::NotAttached);
    }
    host.hubs.borrow_mut().retain(|h| {
        let below = !h.path.is_empty() && h.path.starts_with(&dev.path);
        if below && let Some(id) = h.status_transfer {
            host.hc.cancel(id);
        }
        !below
    });
    host.devices.borrow_mut().retain(|d| !d.path.starts_with(&dev.path));
    for d in &gone {
        host.free_address(d.address);
    }
    klog!(ctx.platform, "usb: {} disconnected", dev.name());
    if let (Some(object), Some(core)) = (dev.object.get(), ctx.core.upgrade()) {
        let _ = device_unregister(&core, object).await;
    }
}

/// The port resets drivers asked for ([`super::reset_device`]), in order.
async fn serve_resets(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>) {
    loop {
        let next = {
            let mut resets = host.resets.borrow_mut();
            if resets.is_empty() { None } else { Some(resets.remove(0)) }
        };
        let Some(request) = next else { break };
        let dev = &request.dev;
        if !dev.alive() {
            request.done.set(Some(Err(UsbError::NoDevice)));
            continue;
        }
        let result = reset_and_verify(ctx, host, dev).await;
        match result {
            Ok(()) if crate::fault::planted(crate::fault::Fault::UsbResetRebinds) => {
                // The planted bug: a reset done as an unplug and a replug.
                klog!(ctx.platform, "usb: {} reset; re-enumerating it", dev.name());
                logical_disconnect(ctx, host, dev).await;
                request.done.set(Some(Err(UsbError::NoDevice)));
            }
            Ok(()) => {
                klog!(ctx.platform, "usb: {} reset, address {} and configuration kept", dev.name(), dev.address);
                if let Some(core) = ctx.core.upgrade() {
                    core.borrow_mut().notice(format!("usb reset {}", dev.name()));
                }
                request.done.set(Some(Ok(())));
            }
            Err(e) => {
                if dev.alive() {
                    klog!(
                        ctx.platform,
                        "usb: {} did not come back from its reset ({e:?}): disconnecting it",
                        dev.name()
                    );
                    logical_disconnect(ctx, host, dev).await;
                }
                request.done.set(Some(Err(UsbError::NoDevice)));
            }
        }
    }
}

/// Take a device away although its port still shows it (a reset that
/// failed or found another device), and have the port looked at again so
/// whatever is there now enumerates afresh.
async fn logical_disconnect(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &Rc<UsbDev>) {
    disconnect(ctx, host, dev).await;
    let Some((&p, hub_path)) = dev.path.split_last() else { return };
    with_hub(host, hub_path, |h| {
        h.failed &= !(1 << p);
        h.pending |= 1 << p;
    });
}

/// What the device was when it enumerated: its descriptors and serial
/// number, from the registered object (or the registration still waiting).
fn identity(
    ctx: &UsbContext,
    dev: &UsbDev,
) -> Option<(DeviceDescriptor, Configuration, Option<alloc::string::String>)> {
    if let Some(found) = dev.pending.borrow().as_ref() {
        return Some((found.descriptor.clone(), found.config.clone(), found.serial.clone()));
    }
    let core = ctx.core.upgrade()?;
    let core = core.borrow();
    let data = core.data::<UsbDevice>(dev.object.get()?)?;
    Some((data.descriptor.clone(), data.config.clone(), data.serial.clone()))
}

/// Reset the port, give the device its old address and configuration
/// back, and check it is still the same device (Linux's
/// `usb_reset_and_verify_device`).
async fn reset_and_verify(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &Rc<UsbDev>) -> Result<(), UsbError> {
    let (descriptor, config, serial) = identity(ctx, dev).ok_or(UsbError::NoDevice)?;
    let Some((&p, hub_path)) = dev.path.split_last() else { return Err(UsbError::NoDevice) };
    let hub_dev = if hub_path.is_empty() {
        None
    } else {
        Some(host.device_at(hub_path).filter(|h| h.alive()).ok_or(UsbError::NoDevice)?)
    };
    let status = reset_port(ctx, host, hub_dev.as_deref(), p).await?;
    // A connect change means another device may be there now: the port's
    // own handling disconnects this one.
    if !status.connected() || !status.enabled() || status.change & port::C_CONNECTION != 0 {
        return Err(UsbError::NoDevice);
    }
    if let Some(core) = ctx.core.upgrade() {
        ctx.checkpoints.reach(&core, "usb-reset", &dev.name()).await;
    }
    if !dev.alive() {
        return Err(UsbError::NoDevice);
    }
    // The reset put it at address 0: only this device answers there, since
    // this thread is also the one that enumerates.
    set_address(ctx, host, dev).await?;
    let raw = control(ctx, host, dev, request::device_descriptor(DeviceDescriptor::LEN as u16), Vec::new()).await?;
    if DeviceDescriptor::parse(&raw).as_ref() != Some(&descriptor) {
        return Err(UsbError::Protocol);
    }
    let raw = control(ctx, host, dev, request::config_descriptor(config.total_length.max(9)), Vec::new()).await?;
    if Configuration::parse(&raw).as_ref() != Some(&config) {
        return Err(UsbError::Protocol);
    }
    if descriptor.i_serial != 0 && read_string(ctx, host, dev, descriptor.i_serial).await? != serial {
        return Err(UsbError::Protocol);
    }
    control(ctx, host, dev, request::set_configuration(config.value), Vec::new()).await?;
    Ok(())
}

/// Device descriptor at address 0, SET_ADDRESS, descriptors, strings,
/// HID report descriptors, SET_CONFIGURATION; then registration.
async fn enumerate(
    ctx: &Rc<UsbContext>,
    host: &Rc<UsbHost>,
    hub: Option<&UsbDev>,
    p: u8,
    path: PortPath,
) -> Result<(), UsbError> {
    let status = reset_port(ctx, host, hub, p).await?;
    if !status.connected() || !status.enabled() {
        return Err(UsbError::NoDevice);
    }
    let speed = status.speed();
    let hc = &*host.hc;
    // Address 0: only this device answers there (the thread is the only
    // one enumerating, and the port was just reset).
    let pipe0 = Pipe { address: 0, endpoint: 0, max_packet: 8, speed };
    let head = hcd::transfer(
        hc,
        ctx.platform,
        pipe0,
        Transfer::Control { setup: request::device_descriptor(8), out: Vec::new() },
    )
    .await?;
    let max_packet0 = match head.get(7) {
        Some(8 | 16 | 32 | 64) => u16::from(head[7]),
        _ => return Err(UsbError::Protocol),
    };
    let address = host.alloc_address().ok_or(UsbError::Busy)?;
    let dev = Rc::new(UsbDev {
        bus: host.number,
        path,
        address,
        speed,
        max_packet0,
        state: core::cell::Cell::new(Attachment::Attached),
        object: core::cell::Cell::new(None),
        pending: core::cell::RefCell::new(None),
        busy_noticed: core::cell::Cell::new(false),
    });
    let result = configure(ctx, host, &dev).await;
    match result {
        Ok(found) => {
            *dev.pending.borrow_mut() = Some(found);
            host.devices.borrow_mut().push(Rc::clone(&dev));
            try_register(ctx, host, &dev);
            Ok(())
        }
        Err(e) => {
            host.free_address(address);
            Err(e)
        }
    }
}

/// Move the device answering at address 0 to `dev.address`, with fresh
/// data toggles on its pipes.
async fn set_address(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &UsbDev) -> Result<(), UsbError> {
    let pipe0 = Pipe { address: 0, endpoint: 0, max_packet: dev.max_packet0, speed: dev.speed };
    hcd::transfer(
        &*host.hc,
        ctx.platform,
        pipe0,
        Transfer::Control { setup: request::set_address(dev.address), out: Vec::new() },
    )
    .await?;
    host.hc.reset_pipes(dev.address);
    Ok(())
}

/// A string descriptor, read with its exact length (asked for first): a
/// longer read costs QEMU's UHCI a frame per 8 bytes not there.
async fn read_string(
    ctx: &Rc<UsbContext>,
    host: &Rc<UsbHost>,
    dev: &Rc<UsbDev>,
    index: u8,
) -> Result<Option<alloc::string::String>, UsbError> {
    let head = control(ctx, host, dev, request::string_descriptor(index, 2), Vec::new()).await?;
    let length = head.first().map_or(2, |l| u16::from(*l).max(2));
    let raw = control(ctx, host, dev, request::string_descriptor(index, length), Vec::new()).await?;
    Ok(descriptor::parse_string(&raw))
}

async fn configure(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &Rc<UsbDev>) -> Result<Enumerated, UsbError> {
    set_address(ctx, host, dev).await?;
    if let Some(core) = ctx.core.upgrade() {
        ctx.checkpoints.reach(&core, "usb-enum", &dev.name()).await;
    }
    let raw = control(ctx, host, dev, request::device_descriptor(DeviceDescriptor::LEN as u16), Vec::new()).await?;
    let descriptor = DeviceDescriptor::parse(&raw).ok_or(UsbError::Protocol)?;
    // Exact lengths: QEMU's UHCI runs about one TD per frame on a control
    // pipe, so a 255-byte read of a 34-byte descriptor costs 30 frames.
    let head = Configuration::HEADER_LEN as u16;
    let raw = control(ctx, host, dev, request::config_descriptor(head), Vec::new()).await?;
    let total = Configuration::total_length(&raw).ok_or(UsbError::Protocol)?;
    let raw = control(ctx, host, dev, request::config_descriptor(total.clamp(head, 4096)), Vec::new()).await?;
    let config = Configuration::parse(&raw).ok_or(UsbError::Protocol)?;
    let mut strings = [None, None, None];
    for (slot, index) in strings.iter_mut().zip([descriptor.i_manufacturer, descriptor.i_product, descriptor.i_serial])
    {
        if index != 0 {
            *slot = read_string(ctx, host, dev, index).await?;
        }
    }
    let mut report_lengths = Vec::new();
    for iface in &config.interfaces {
        let length = match iface.hid_report_len {
            Some(len) if iface.class == descriptor::CLASS_HID => {
                let raw =
                    control(ctx, host, dev, request::hid_report_descriptor(iface.number, len), Vec::new()).await?;
                Some(raw.len())
            }
            _ => None,
        };
        report_lengths.push(length);
    }
    control(ctx, host, dev, request::set_configuration(config.value), Vec::new()).await?;
    let [manufacturer, product, serial] = strings;
    Ok(Enumerated { descriptor, config, manufacturer, product, serial, report_lengths })
}

/// Retry registrations that had to wait for an old object's release.
fn register_pending(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>) {
    let waiting: Vec<Rc<UsbDev>> =
        host.devices.borrow().iter().filter(|d| d.object.get().is_none() && d.alive()).cloned().collect();
    for dev in waiting {
        try_register(ctx, host, &dev);
    }
}

/// Register the device and its interfaces (drivers bind as they appear).
/// A name still held by an unreleased object (a stale reference to the
/// device that was on this port) waits: the device stays configured and
/// registration is retried on every pass, so a stale handle never aliases
/// the new device.
fn try_register(ctx: &Rc<UsbContext>, host: &Rc<UsbHost>, dev: &Rc<UsbDev>) {
    let Some(core) = ctx.core.upgrade() else { return };
    let parent = if dev.path.len() == 1 {
        Some(host.root_hub)
    } else {
        host.device_at(&dev.path[..dev.path.len() - 1]).and_then(|hub| hub.object.get())
    };
    let Some(parent) = parent else { return };
    let Some(found) = dev.pending.borrow_mut().take() else { return };
    let name = dev.name();
    let data = UsbDevice {
        bus: host.number,
        path: dev.path.clone(),
        descriptor: found.descriptor.clone(),
        config: found.config.clone(),
        manufacturer: found.manufacturer.clone(),
        product: found.product.clone(),
        serial: found.serial.clone(),
        speed: dev.speed,
    };
    let mut c = core.borrow_mut();
    if c.state(parent) != DeviceState::Registered {
        return;
    }
    let object = c.device_initialize(&name, Some(parent), Some(ctx.bus), Box::new(data));
    match c.device_add(object) {
        Ok(()) => {}
        Err(Errno::EBUSY) => {
            c.put(object);
            if !dev.busy_noticed.replace(true) {
                klog!(ctx.platform, "usb: {name} waits for the release of the device that was on its port");
                c.notice(format!("usb busy {name}"));
            }
            drop(c);
            *dev.pending.borrow_mut() = Some(found);
            return;
        }
        Err(e) => {
            c.put(object);
            klog!(ctx.platform, "usb: {name} failed to register: {e}");
            return;
        }
    }
    dev.object.set(Some(object));
    for (iface, report_len) in found.config.interfaces.iter().zip(found.report_lengths.iter()) {
        let data = UsbInterface {
            bus: host.number,
            path: dev.path.clone(),
            interface: iface.clone(),
            report_descriptor_len: *report_len,
            driver_attributes: Vec::new(),
        };
        let iname = interface_name(host.number, &dev.path, found.config.value, iface.number);
        let _ = c.device_register(&iname, Some(object), Some(ctx.bus), Box::new(data));
    }
    klog!(ctx.platform, "usb: {name} registered ({})", found.product.as_deref().unwrap_or("no product string"));
}

/// The `hub` driver bound an external hub's interface.
pub fn hub_bound(host: &UsbHost, dev: Rc<UsbDev>, interface: DeviceId, status: Option<Endpoint>) {
    let status = status.filter(|e| e.is_in() && e.kind == TransferType::Interrupt);
    host.hubs.borrow_mut().push(Hub::external(dev, interface, status));
}
