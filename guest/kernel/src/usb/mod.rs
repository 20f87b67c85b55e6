//! USB: host controllers, the `usb` bus, hubs, enumeration, and the
//! interface drivers `hub` and `usbhid`.
//!
//! - [`hcd`]: the host-controller interface (the seam an xHCI driver would
//!   slot into);
//! - [`uhci`]: the UHCI controller and its PCI driver `uhci_hcd`;
//! - [`descriptor`], [`request`]: the wire formats;
//! - [`device`]: what devices and interfaces show, Linux's names;
//! - [`hub`]: the hub thread (Linux's khubd): port changes, serialized
//!   enumeration, disconnects, and the port resets drivers ask for
//!   ([`reset_device`]: same address, same objects);
//! - [`drivers`]: the drivers on the `usb` bus;
//! - [`storage`]: `usb-storage`, Bulk-Only Transport as a SCSI host adapter;
//! - this file: the per-controller state ([`UsbHost`]) and the registry of
//!   attached devices ([`UsbDev`]).
//!
//! QEMU unplugs USB devices without asking the guest, so every removal is a
//! surprise: the hub thread sees a port's connection go, marks everything
//! below it not-attached (new transfers fail with ENODEV), then unregisters
//! the subtree, children first.

pub mod descriptor;
pub mod device;
pub mod drivers;
pub mod hcd;
pub mod hub;
pub mod request;
pub mod storage;
pub mod uhci;

#[cfg(test)]
pub mod fake;

use alloc::boxed::Box;
use alloc::rc::{Rc, Weak};
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use descriptor::{Configuration, DeviceDescriptor, Endpoint, Interface, TransferType};
use device::{PortPath, UsbDevice, UsbInterface, device_name, interface_name};
use hcd::{HostController, Pipe, Speed, Transfer, TransferId, UsbError};

use crate::base::{BusId, Core, CoreRef, DeviceId, DeviceState};
use crate::errno::Errno;
use crate::executor::Spawner;
use crate::hw::Platform;
use crate::klog;
use crate::subsystem::{PendingWork, ServicesRef, Subsystem};

pub const BUS_NAME: &str = "usb";

/// See [`UsbContext::root_poll_passes`].
pub const ROOT_POLL_PASSES: u32 = 4;
const _: () = assert!((ROOT_POLL_PASSES as u64) < crate::subsystem::SETTLE_PASSES);

/// What the USB subsystem shares between its drivers and tasks.
pub struct UsbContext {
    pub platform: &'static dyn Platform,
    pub core: Weak<RefCell<Core>>,
    pub spawner: Spawner,
    /// Port changes being handled, registrations waiting for a release
    /// (`settle` waits for them).
    pub work: PendingWork,
    pub bus: BusId,
    pub hosts: RefCell<Vec<Rc<UsbHost>>>,
    /// Hub-thread passes between two reads of the root ports: each read
    /// takes QEMU's big lock, which its frame timer needs too; fewer than
    /// `subsystem::SETTLE_PASSES`, so `settle` has always seen the ports.
    pub root_poll_passes: Cell<u32>,
    /// Deterministic race hooks: `usb-enum` stops enumeration between
    /// SET_ADDRESS and the first request at the new address; `usb-reset`
    /// stops a device's reset between the port reset and SET_ADDRESS.
    pub checkpoints: Rc<crate::checkpoint::Checkpoints>,
}

/// Where a device sits and whether it is still there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Addressed and configured; transfers go out.
    Attached,
    /// Disconnected: every new transfer fails with ENODEV.
    NotAttached,
}

/// An attached device as the stack reaches it (Linux's `usb_device`
/// minus the driver-model part, which is the registered object).
pub struct UsbDev {
    pub bus: u8,
    pub path: PortPath,
    pub address: u8,
    pub speed: Speed,
    pub max_packet0: u16,
    pub state: Cell<Attachment>,
    /// The registered `usb_device` object, once registration succeeded.
    pub object: Cell<Option<DeviceId>>,
    /// What enumeration read, kept until registration (which may have to
    /// wait for the release of the object that last had this name).
    pub pending: RefCell<Option<Enumerated>>,
    /// A `usb busy` notice was sent for this device.
    pub busy_noticed: Cell<bool>,
}

/// Everything enumeration learned about a device.
pub struct Enumerated {
    pub descriptor: DeviceDescriptor,
    pub config: Configuration,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    /// Per interface (same order as `config.interfaces`): the HID report
    /// descriptor's length as read.
    pub report_lengths: Vec<Option<usize>>,
}

impl UsbDev {
    pub fn name(&self) -> String {
        device_name(self.bus, &self.path)
    }

    pub fn alive(&self) -> bool {
        self.state.get() == Attachment::Attached
    }

    fn pipe(&self, endpoint: &Endpoint) -> Pipe {
        Pipe { address: self.address, endpoint: endpoint.number(), max_packet: endpoint.max_packet, speed: self.speed }
    }

    fn pipe0(&self) -> Pipe {
        Pipe { address: self.address, endpoint: 0, max_packet: self.max_packet0, speed: self.speed }
    }
}

/// A driver's request to reset a device's port; the answer goes into `done`.
pub struct ResetRequest {
    pub dev: Rc<UsbDev>,
    pub done: Rc<Cell<Option<Result<(), UsbError>>>>,
    /// `settle` waits for a reset asked for and not yet done.
    _work: crate::subsystem::WorkGuard,
}

/// One controller's bus: `usb<N>`.
pub struct UsbHost {
    pub number: u8,
    pub hc: Rc<dyn HostController>,
    /// The controller's PCI function.
    pub controller: DeviceId,
    /// `usb<N>`.
    pub root_hub: DeviceId,
    pub alive: Cell<bool>,
    /// Hubs bound to the `hub` driver, the root hub first.
    pub hubs: RefCell<Vec<hub::Hub>>,
    /// Attached devices (not the root hub), in enumeration order.
    pub devices: RefCell<Vec<Rc<UsbDev>>>,
    /// Port resets asked for by drivers ([`reset_device`]), done by the
    /// hub thread one at a time, between its looks at the ports.
    resets: RefCell<Vec<ResetRequest>>,
    /// Addresses 1..=127 in use.
    addresses: RefCell<[bool; 128]>,
    next_address: Cell<u8>,
}

impl UsbHost {
    /// The next free address after the last one given out, as Linux does,
    /// so a new device never reuses the address of one just removed.
    fn alloc_address(&self) -> Option<u8> {
        let mut used = self.addresses.borrow_mut();
        let start = self.next_address.get();
        for i in 0..127u8 {
            let a = (start - 1 + i) % 127 + 1;
            if !used[usize::from(a)] {
                used[usize::from(a)] = true;
                self.next_address.set(a % 127 + 1);
                return Some(a);
            }
        }
        None
    }

    fn free_address(&self, address: u8) {
        self.addresses.borrow_mut()[usize::from(address)] = false;
        self.hc.reset_pipes(address);
    }

    pub fn device_at(&self, path: &[u8]) -> Option<Rc<UsbDev>> {
        self.devices.borrow().iter().find(|d| d.path == path).cloned()
    }

    pub fn addresses_in_use(&self) -> usize {
        self.addresses.borrow().iter().filter(|u| **u).count()
    }
}

impl UsbContext {
    /// Register the `usb` bus and its drivers (the PCI driver for UHCI is
    /// registered last, so a controller found at boot binds at once).
    pub fn register(
        core: &mut Core,
        shared: &CoreRef,
        platform: &'static dyn Platform,
        spawner: Spawner,
        checkpoints: Rc<crate::checkpoint::Checkpoints>,
        pci_bus: BusId,
    ) -> Rc<UsbContext> {
        let bus = core.bus_register(BUS_NAME);
        let ctx = Rc::new(UsbContext {
            platform,
            core: Rc::downgrade(shared),
            spawner,
            work: PendingWork::default(),
            bus,
            hosts: RefCell::new(Vec::new()),
            root_poll_passes: Cell::new(ROOT_POLL_PASSES),
            checkpoints,
        });
        drivers::register(core, &ctx);
        core.driver_register(pci_bus, Rc::new(uhci::UhciDriver { ctx: Rc::clone(&ctx) }));
        ctx
    }

    pub fn host(&self, number: u8) -> Option<Rc<UsbHost>> {
        self.hosts.borrow().iter().find(|h| h.number == number).cloned()
    }

    /// The lowest bus number no live root hub object holds.
    fn free_bus_number(&self, core: &Core) -> u8 {
        let hosts = self.hosts.borrow();
        (1..=u8::MAX)
            .find(|n| !hosts.iter().any(|h| h.number == *n && core.state(h.root_hub) != DeviceState::Released))
            .unwrap_or(u8::MAX)
    }
}

/// A controller was bound: register its root hub `usb<N>` (whose hub
/// interface binds to `hub`) and start the bus's hub thread.
pub fn add_host(
    ctx: &Rc<UsbContext>,
    core: &mut Core,
    controller: DeviceId,
    serial: &str,
    driver: &str,
    hc: Rc<dyn HostController>,
) -> Result<(), Errno> {
    let number = ctx.free_bus_number(core);
    // Forget hosts whose root hub has been released.
    ctx.hosts.borrow_mut().retain(|h| core.state(h.root_hub) != DeviceState::Released);
    let ports = hc.root_ports();
    let root_interface = Interface {
        number: 0,
        alternate: 0,
        class: descriptor::CLASS_HUB,
        subclass: 0,
        protocol: 0,
        i_interface: 0,
        endpoints: alloc::vec![Endpoint { address: 0x81, kind: TransferType::Interrupt, max_packet: 2, interval: 255 }],
        hid_report_len: None,
    };
    let data = UsbDevice {
        bus: number,
        path: Vec::new(),
        // Linux's root hub: vendor 1d6b (Linux Foundation), product 1 (1.1).
        descriptor: DeviceDescriptor {
            bcd_usb: 0x0110,
            class: descriptor::CLASS_HUB,
            subclass: 0,
            protocol: 0,
            max_packet0: 64,
            vendor: 0x1d6b,
            product: 0x0001,
            bcd_device: 0x0205,
            i_manufacturer: 3,
            i_product: 2,
            i_serial: 1,
            num_configurations: 1,
        },
        config: Configuration {
            total_length: 25,
            value: 1,
            attributes: 0xe0,
            max_power: 0,
            interfaces: alloc::vec![root_interface.clone()],
        },
        manufacturer: Some(alloc::format!("Linux 2.5 {driver}")),
        product: Some(String::from(hc.product())),
        serial: Some(String::from(serial)),
        speed: Speed::Full,
    };
    let root = core.device_initialize(&device_name(number, &[]), Some(controller), Some(ctx.bus), Box::new(data));
    core.set_managed(root);
    let host = Rc::new(UsbHost {
        number,
        hc: Rc::clone(&hc),
        controller,
        root_hub: root,
        alive: Cell::new(true),
        hubs: RefCell::new(Vec::new()),
        devices: RefCell::new(Vec::new()),
        resets: RefCell::new(Vec::new()),
        addresses: RefCell::new([false; 128]),
        next_address: Cell::new(1),
    });
    ctx.hosts.borrow_mut().push(Rc::clone(&host));
    if let Err(e) = core.device_add(root) {
        core.put(root);
        ctx.hosts.borrow_mut().retain(|h| !Rc::ptr_eq(h, &host));
        hc.shutdown();
        return Err(e);
    }
    let iface = UsbInterface {
        bus: number,
        path: Vec::new(),
        interface: root_interface,
        report_descriptor_len: None,
        driver_attributes: Vec::new(),
    };
    let _ = core.device_register(&interface_name(number, &[], 1, 0), Some(root), Some(ctx.bus), Box::new(iface));
    klog!(ctx.platform, "usb: bus {number} registered, {ports} root ports");
    ctx.spawner.spawn(hub::hub_thread(Rc::clone(ctx), host));
    Ok(())
}

/// The controller's driver is unbinding (the root hub and everything below
/// it are already unregistered): stop its thread and the controller.
pub fn remove_host(ctx: &UsbContext, _core: &mut Core, controller: DeviceId) {
    let hosts: Vec<Rc<UsbHost>> = ctx.hosts.borrow().iter().filter(|h| h.controller == controller).cloned().collect();
    for host in hosts {
        host.alive.set(false);
        for dev in host.devices.borrow().iter() {
            dev.state.set(Attachment::NotAttached);
        }
        host.hc.shutdown();
        klog!(ctx.platform, "usb: bus {} stopped", host.number);
    }
}

/// A control transfer to an attached device. ENODEV once it is gone.
pub async fn control(
    ctx: &UsbContext,
    host: &UsbHost,
    dev: &UsbDev,
    setup: request::Setup,
    out: Vec<u8>,
) -> Result<Vec<u8>, UsbError> {
    if !dev.alive() || !host.alive.get() {
        return Err(UsbError::NoDevice);
    }
    hcd::transfer(&*host.hc, ctx.platform, dev.pipe0(), Transfer::Control { setup, out }).await
}

/// Reset the device's port and bring it back as it was, keeping its
/// driver-model objects (Linux's `usb_reset_device`): the hub thread resets
/// the root or hub port the device sits on, gives it its old address again
/// (SET_ADDRESS), checks its descriptors and serial number are the ones it
/// had, re-applies SET_CONFIGURATION and starts its pipes' data toggles at
/// DATA0. The device, its interfaces and whatever their drivers registered
/// below them stay; the guest says `* usb reset <name>`.
///
/// The reset runs on the hub thread because a reset device answers at
/// address 0, where only one device may answer at a time: enumeration
/// runs there too. `Err(NoDevice)` when the device went away meanwhile,
/// or when the reset failed or found another device on the port: then it
/// was disconnected (depth first, as an unplug) and the port is looked at
/// again, as Linux's logical disconnect does.
pub async fn reset_device(ctx: &UsbContext, host: &UsbHost, dev: &Rc<UsbDev>) -> Result<(), UsbError> {
    if !dev.alive() || !host.alive.get() {
        return Err(UsbError::NoDevice);
    }
    let done = Rc::new(Cell::new(None));
    host.resets.borrow_mut().push(ResetRequest {
        dev: Rc::clone(dev),
        done: Rc::clone(&done),
        _work: ctx.work.start(),
    });
    crate::executor::wait_until(|| done.get().is_some() || !dev.alive() || !host.alive.get()).await;
    done.get().unwrap_or(Err(UsbError::NoDevice))
}

/// Submit an IN transfer on an interrupt or bulk endpoint without waiting
/// (the hub's status pipe stays queued while the device NAKs).
pub fn submit_in(host: &UsbHost, dev: &UsbDev, endpoint: &Endpoint, length: usize) -> Result<TransferId, UsbError> {
    if !dev.alive() || !host.alive.get() {
        return Err(UsbError::NoDevice);
    }
    host.hc.submit(dev.pipe(endpoint), Transfer::In { length })
}

/// USB as a subsystem: the `usb` bus and its drivers, `uhci_hcd` on `pci`.
pub struct UsbSubsystem {
    pub ctx: Rc<UsbContext>,
}

/// Boot: register the `usb` bus, its drivers and `uhci_hcd` on the `pci`
/// bus, which binds the controllers found at boot (so `pci` is listed
/// before `usb`).
pub fn register(sys: &ServicesRef) -> Rc<dyn Subsystem> {
    let pci_bus = sys.bus(crate::pci::BUS_NAME);
    let ctx = UsbContext::register(
        &mut sys.core.borrow_mut(),
        &sys.core,
        sys.platform,
        sys.spawner.clone(),
        Rc::clone(&sys.checkpoints),
        pci_bus,
    );
    // Sticks enumerate on the hub threads, after this: their interfaces
    // find `usb-storage` registered.
    if let Some(scsi) = sys.scsi.borrow().as_ref() {
        let storage = storage::StorageDriver::new(Rc::clone(&ctx), Rc::clone(scsi));
        sys.core.borrow_mut().driver_register(ctx.bus, Rc::new(storage));
    }
    Rc::new(UsbSubsystem { ctx })
}

impl Subsystem for UsbSubsystem {
    fn name(&self) -> &'static str {
        BUS_NAME
    }

    fn features(&self) -> &'static [&'static str] {
        &["usb-hotplug"]
    }

    fn pending_work(&self) -> u32 {
        self.ctx.work.count()
    }
}
