//! The driver core, after Linux's `drivers/base`: one file per responsibility.
//!
//! - [`device`]: object lifetime (`device_initialize` / `device_add` /
//!   `device_del` / `device_unregister`, `get` / `put`, `release`): core.c.
//! - [`bus`]: bus types, driver registration and bus membership: bus.c.
//! - [`dd`]: binding a device to a driver and unbinding it: dd.c.
//! - [`uevent`]: the events userspace (here: the harness) is told about.
//! - [`stats`]: counters that never appear in the snapshot.
//!
//! [`Core`] owns all of it plus the driverfs tree. Tasks share it as a
//! [`CoreRef`]; borrows never cross an `.await`.

pub mod bus;
pub mod dd;
pub mod device;
pub mod stats;
pub mod uevent;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::RefCell;

use crate::driverfs::{Driverfs, NodeId};
use crate::errno::Errno;

pub use bus::{BusId, Driver, DriverId};
pub use device::{DeviceId, DeviceState, device_del, device_unregister};
pub use uevent::{Uevent, UeventAction};

/// The shared handle tasks use. Single CPU, cooperative: `RefCell` suffices.
pub type CoreRef = Rc<RefCell<Core>>;

/// An attribute a device exposes besides `name` and `power`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: &'static str,
    pub writable: bool,
}

impl Attribute {
    pub const fn ro(name: &'static str) -> Self {
        Attribute { name, writable: false }
    }
    pub const fn rw(name: &'static str) -> Self {
        Attribute { name, writable: true }
    }
}

/// What a store() asks the core to do once it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreEffect {
    /// Nothing beyond the store itself.
    None,
    /// Unregister the device the attribute belongs to. The core does it the
    /// way `device_remove_file_self` does: the writer's own active reference
    /// is dropped first, so the removal does not wait for itself.
    UnregisterSelf,
}

/// The bus- or driver-specific part of a device: what its attributes show.
///
/// Values live in the device object, not in the driver, so a show() that is
/// still running while the driver unbinds reads intact data; the device
/// object itself cannot be released before that show() ends.
pub trait DeviceData: Any {
    /// The `name` attribute: a human-readable description.
    fn description(&self) -> String;
    /// Attributes in addition to `name` and `power`, in creation order.
    fn attributes(&self) -> Vec<Attribute> {
        Vec::new()
    }
    /// The first page of the attribute, with its trailing newline.
    fn show(&self, attr: &str) -> Option<String>;
    fn store(&mut self, _attr: &str, _value: &[u8]) -> Result<StoreEffect, Errno> {
        Err(Errno::EACCES)
    }
    /// Extra `KEY=VALUE` pairs for this device's uevents.
    fn uevent_env(&self, _env: &mut Vec<(&'static str, String)>) {}
}

/// Something the kernel tells the control channel, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelEvent {
    Uevent(Uevent),
    Bug(String),
    /// Anything else the channel should see in order, e.g. `hotplug eject
    /// 00:05` just before the guest lets QEMU finish an unplug.
    Notice(String),
}

/// The driver core's state: devices, buses, drivers, driverfs, events.
pub struct Core {
    devices: Vec<device::Device>,
    buses: Vec<bus::Bus>,
    drivers: Vec<bus::DriverEntry>,
    pub fs: Driverfs,
    root_dir: NodeId,
    bus_dir: NodeId,
    events: VecDeque<KernelEvent>,
    seqnum: u64,
    next_generation: u64,
    released: u64,
    bugs: u64,
}

impl Default for Core {
    fn default() -> Self {
        Self::new()
    }
}

impl Core {
    pub fn new() -> Self {
        let mut fs = Driverfs::new();
        let top = fs.root();
        let bus_dir = fs.mkdir(top, "bus").expect("fresh driverfs has no bus/");
        let root_dir = fs.mkdir(top, "root").expect("fresh driverfs has no root/");
        Core {
            devices: Vec::new(),
            buses: Vec::new(),
            drivers: Vec::new(),
            fs,
            root_dir,
            bus_dir,
            events: VecDeque::new(),
            seqnum: 0,
            next_generation: 1,
            released: 0,
            bugs: 0,
        }
    }

    pub fn new_shared() -> CoreRef {
        Rc::new(RefCell::new(Self::new()))
    }

    /// Report a kernel BUG: the model's rules were broken. The guest stops
    /// after telling the control channel; host tests inspect the count.
    pub fn bug(&mut self, text: String) {
        self.bugs += 1;
        self.events.push_back(KernelEvent::Bug(text));
    }

    /// Queue a `* <text>` line, ordered with the uevents around it.
    pub fn notice(&mut self, text: String) {
        self.events.push_back(KernelEvent::Notice(text));
    }

    pub fn bug_count(&self) -> u64 {
        self.bugs
    }

    /// Take the events queued since the last call, oldest first.
    pub fn take_events(&mut self) -> VecDeque<KernelEvent> {
        core::mem::take(&mut self.events)
    }

    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }
}

/// Downcast helpers for bus code that stored its own type as device data.
impl Core {
    pub fn data<T: DeviceData>(&self, dev: DeviceId) -> Option<&T> {
        let data: &dyn Any = self.device(dev).data.as_deref()?;
        data.downcast_ref::<T>()
    }

    pub fn data_mut<T: DeviceData>(&mut self, dev: DeviceId) -> Option<&mut T> {
        let data: &mut dyn Any = self.device_mut(dev).data.as_deref_mut()?;
        data.downcast_mut::<T>()
    }
}

pub(crate) type BoxedData = Box<dyn DeviceData>;
