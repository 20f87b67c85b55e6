//! Device object lifetime, after `drivers/base/core.c` as it settled at the
//! end of 2002 (device_initialize/add/del, unregister = del + put) with the
//! modern removal order.
//!
//! Rules this file enforces:
//! - A device starts with one reference, the creator's. `release` runs exactly
//!   once, on the last `put`, and only for a device that is not registered.
//! - A child holds a reference on its parent object until the child is
//!   released, so children are always released before their parents.
//! - After `device_del` starts, lookups refuse the device: no new reference
//!   can be taken through the tree, the bus or driverfs.
//! - Slots are never reused: a `DeviceId` of a released device stays a
//!   tombstone, so a late `put` is caught as a BUG instead of hitting a new
//!   object.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::future::Future;
use core::pin::Pin;

use super::{Attribute, BoxedData, BusId, Core, CoreRef, DeviceData, DriverId, UeventAction};
use crate::driverfs::NodeId;
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::fault::{self, Fault};

/// Index of a device object. Never reused, so it can name a released object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId(pub(crate) u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceState {
    /// `device_initialize` done, not yet visible anywhere.
    Initialized,
    /// `device_add` done: in the tree, on its bus, in driverfs.
    Registered,
    /// `device_del` has started: lookups refuse it, driverfs is draining.
    Dying,
    /// `device_del` finished; only references keep the object.
    Deleted,
    /// `release` ran. Any further get or put is a BUG.
    Released,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Initialized => "initialized",
            DeviceState::Registered => "registered",
            DeviceState::Dying => "dying",
            DeviceState::Deleted => "deleted",
            DeviceState::Released => "released",
        }
    }
}

pub(crate) struct Device {
    pub(crate) name: String,
    pub(crate) parent: Option<DeviceId>,
    pub(crate) bus: Option<BusId>,
    pub(crate) driver: Option<DriverId>,
    /// Set for children a driver created: they go when the driver unbinds
    /// (what devres does for Linux drivers).
    pub(crate) managed_by: Option<DriverId>,
    pub(crate) refcount: u32,
    pub(crate) state: DeviceState,
    /// Registration generation: new on every `device_add`, so a reused name
    /// is always a distinguishable object.
    pub(crate) generation: u64,
    /// The creator's reference, dropped by `device_unregister`.
    creator_ref: bool,
    /// The reference on the parent that `device_add` took for the tree link;
    /// dropped at the end of `device_del`.
    membership_ref: bool,
    /// The reference on the parent object, dropped after our own release.
    object_ref: bool,
    /// Children until their `device_del` has finished, not just started:
    /// a parent whose removal finds a child already being removed by
    /// someone else waits for it here, so its directory never goes while a
    /// child's read is still in flight (children before parents).
    pub(crate) children: Vec<DeviceId>,
    pub(crate) dir: Option<NodeId>,
    /// Every driverfs node that exists for this device: its directory, its
    /// attributes, the links that point at it. Deactivated together.
    pub(crate) nodes: Vec<NodeId>,
    pub(crate) data: Option<BoxedData>,
    /// Order of release among all devices (0 = not released).
    pub(crate) release_seq: u64,
}

/// The built-in attributes every device has.
const CORE_ATTRIBUTES: [Attribute; 2] = [Attribute::ro("name"), Attribute::ro("power")];

impl Core {
    pub(crate) fn device(&self, dev: DeviceId) -> &Device {
        &self.devices[dev.0 as usize]
    }

    pub(crate) fn device_mut(&mut self, dev: DeviceId) -> &mut Device {
        &mut self.devices[dev.0 as usize]
    }

    /// Create a device object holding one reference (the creator's).
    pub fn device_initialize(
        &mut self,
        name: &str,
        parent: Option<DeviceId>,
        bus: Option<BusId>,
        data: BoxedData,
    ) -> DeviceId {
        let id = DeviceId(self.devices.len() as u32);
        self.devices.push(Device {
            name: String::from(name),
            parent,
            bus,
            driver: None,
            managed_by: None,
            refcount: 1,
            state: DeviceState::Initialized,
            generation: 0,
            creator_ref: true,
            membership_ref: false,
            object_ref: false,
            children: Vec::new(),
            dir: None,
            nodes: Vec::new(),
            data: Some(data),
            release_seq: 0,
        });
        id
    }

    /// Mark a not-yet-added child as created by its parent's current driver,
    /// so unbinding that driver unregisters it.
    pub fn set_managed(&mut self, dev: DeviceId) {
        let driver = self.device(dev).parent.and_then(|p| self.device(p).driver);
        self.device_mut(dev).managed_by = driver;
    }

    /// `device_initialize` + `device_add`; on failure the object is put.
    pub fn device_register(
        &mut self,
        name: &str,
        parent: Option<DeviceId>,
        bus: Option<BusId>,
        data: BoxedData,
    ) -> Result<DeviceId, Errno> {
        let dev = self.device_initialize(name, parent, bus, data);
        match self.device_add(dev) {
            Ok(()) => Ok(dev),
            Err(e) => {
                self.put(dev);
                Err(e)
            }
        }
    }

    /// Make an initialized device visible: tree, driverfs, bus, then probe.
    ///
    /// A name still held by a sibling that is registered gives EEXIST; one
    /// held by a removed sibling that is not yet released gives EBUSY, as
    /// the 2003 IDE fix made re-registration wait for `release()`.
    pub fn device_add(&mut self, dev: DeviceId) -> Result<(), Errno> {
        if self.device(dev).state != DeviceState::Initialized {
            let name = self.device_path(dev);
            self.bug(format!("device_add on {name} in state {}", self.device(dev).state.as_str()));
            return Err(Errno::EINVAL);
        }
        let parent = self.device(dev).parent;
        if let Some(p) = parent
            && self.device(p).state != DeviceState::Registered
        {
            return Err(Errno::ENODEV);
        }
        self.check_name_free(dev)?;
        if let Some(bus) = self.device(dev).bus {
            self.bus_check_name_free(bus, &self.device(dev).name)?;
        }

        // The parent's directory, created in the tree.
        let parent_dir = match parent {
            Some(p) => self.device(p).dir.expect("registered devices have a directory"),
            None => self.root_dir,
        };
        let name = self.device(dev).name.clone();
        let dir = self.fs.mkdir(parent_dir, &name)?;
        self.device_mut(dev).dir = Some(dir);
        self.device_mut(dev).nodes.push(dir);
        let extra = self.device(dev).data.as_ref().map(|d| d.attributes()).unwrap_or_default();
        for attr in CORE_ATTRIBUTES.iter().chain(extra.iter()) {
            self.device_create_file(dev, *attr)?;
        }

        if let Some(p) = parent {
            self.get(p); // membership: dropped at the end of device_del
            self.get(p); // object: dropped after this device's release
            self.device_mut(dev).membership_ref = true;
            self.device_mut(dev).object_ref = true;
            self.device_mut(p).children.push(dev);
        }
        let generation = match self.fault_reused_generation(dev) {
            Some(old) => old,
            None => {
                self.next_generation += 1;
                self.next_generation - 1
            }
        };
        let d = self.device_mut(dev);
        d.generation = generation;
        d.state = DeviceState::Registered;

        if let Some(bus) = self.device(dev).bus {
            self.bus_add_device(bus, dev);
        }
        self.uevent(dev, UeventAction::Add);
        if let Some(bus) = self.device(dev).bus {
            self.bus_probe_device(bus, dev);
        }
        Ok(())
    }

    fn check_name_free(&self, dev: DeviceId) -> Result<(), Errno> {
        let me = self.device(dev);
        for (i, other) in self.devices.iter().enumerate() {
            if i as u32 == dev.0 || other.parent != me.parent || other.name != me.name {
                continue;
            }
            match other.state {
                DeviceState::Registered => return Err(Errno::EEXIST),
                DeviceState::Dying | DeviceState::Deleted => return Err(Errno::EBUSY),
                DeviceState::Initialized | DeviceState::Released => {}
            }
        }
        Ok(())
    }

    /// Add one attribute file to a registered (or registering) device.
    pub fn device_create_file(&mut self, dev: DeviceId, attr: Attribute) -> Result<NodeId, Errno> {
        let dir = self.device(dev).dir.ok_or(Errno::ENODEV)?;
        let node = self.fs.create_attr(dir, attr.name, dev, attr.writable)?;
        self.device_mut(dev).nodes.push(node);
        Ok(node)
    }

    /// Remove one attribute file now. Open handles on it read ENODEV from
    /// here on; a show() already running finishes first (the node drains).
    /// Returns the node so callers can wait with [`Core::nodes_drained`].
    pub fn device_remove_file(&mut self, dev: DeviceId, attr: &str) -> Option<NodeId> {
        let dir = self.device(dev).dir?;
        let node = self.fs.child(dir, attr)?;
        self.fs.deactivate(node);
        self.device_mut(dev).nodes.retain(|n| *n != node);
        self.fs.unlink_when_drained(node);
        Some(node)
    }

    /// Take a reference. Taking one on a released object is a BUG.
    pub fn get(&mut self, dev: DeviceId) {
        let d = self.device_mut(dev);
        if d.state == DeviceState::Released {
            let path = self.device_path(dev);
            self.bug(format!("get_device on released device {path}"));
            return;
        }
        d.refcount += 1;
    }

    /// Drop a reference; the last one releases the object.
    pub fn put(&mut self, dev: DeviceId) {
        let d = self.device(dev);
        if d.state == DeviceState::Released || d.refcount == 0 {
            let path = self.device_path(dev);
            self.bug(format!("put_device after release (refcount underflow) on {path}"));
            return;
        }
        self.device_mut(dev).refcount -= 1;
        if self.device(dev).refcount == 0 && !fault::planted(Fault::ReleaseNeverCalled) {
            self.release(dev);
        }
    }

    fn release(&mut self, dev: DeviceId) {
        let state = self.device(dev).state;
        let path = self.device_path(dev);
        match state {
            DeviceState::Released => {
                self.bug(format!("double release of {path}"));
                return;
            }
            DeviceState::Registered | DeviceState::Dying => {
                self.bug(format!("release of {path} while still registered"));
                return;
            }
            DeviceState::Initialized | DeviceState::Deleted => {}
        }
        self.released += 1;
        let seq = self.released;
        let d = self.device_mut(dev);
        d.state = DeviceState::Released;
        d.release_seq = seq;
        d.data = None; // the release() proper: the object's memory goes
        let parent = d.parent;
        let object_ref = core::mem::replace(&mut d.object_ref, false);
        if let (Some(p), true) = (parent, object_ref && !fault::planted(Fault::ParentRefLeaked)) {
            self.put(p);
        }
    }

    pub fn state(&self, dev: DeviceId) -> DeviceState {
        self.device(dev).state
    }

    pub fn refcount(&self, dev: DeviceId) -> u32 {
        self.device(dev).refcount
    }

    pub fn generation(&self, dev: DeviceId) -> u64 {
        self.device(dev).generation
    }

    pub fn name(&self, dev: DeviceId) -> &str {
        &self.device(dev).name
    }

    pub fn parent(&self, dev: DeviceId) -> Option<DeviceId> {
        self.device(dev).parent
    }

    pub fn driver(&self, dev: DeviceId) -> Option<DriverId> {
        self.device(dev).driver
    }

    /// The position in the global release order, if released.
    pub fn release_seq(&self, dev: DeviceId) -> Option<u64> {
        let seq = self.device(dev).release_seq;
        (seq != 0).then_some(seq)
    }

    /// Registered children, oldest first. The returned ids are not retained.
    pub fn children(&self, dev: DeviceId) -> Vec<DeviceId> {
        self.device(dev).children.iter().copied().filter(|c| self.device(*c).state == DeviceState::Registered).collect()
    }

    /// Find a registered child by name. Dying children are refused: after
    /// `device_del` starts, nobody finds the device any more.
    pub fn find_child(&self, parent: Option<DeviceId>, name: &str) -> Option<DeviceId> {
        match parent {
            Some(p) => self
                .device(p)
                .children
                .iter()
                .copied()
                .find(|c| self.device(*c).name == name && self.device(*c).state == DeviceState::Registered),
            None => self.devices.iter().enumerate().find_map(|(i, d)| {
                (d.parent.is_none() && d.name == name && d.state == DeviceState::Registered)
                    .then_some(DeviceId(i as u32))
            }),
        }
    }

    /// The device's directory path as the snapshot names it
    /// (`root/pci0/00:01.1`). Works for removed devices too.
    pub fn device_path(&self, dev: DeviceId) -> String {
        let mut names = Vec::new();
        let mut cur = Some(dev);
        while let Some(d) = cur {
            names.push(self.device(d).name.as_str());
            cur = self.device(d).parent;
        }
        let mut path = String::from("root");
        for name in names.iter().rev() {
            path.push('/');
            path.push_str(name);
        }
        path
    }

    /// The text of an attribute, as `show()` produces it. Called only with an
    /// active reference held on the node (or from the snapshot walk, which
    /// never yields). Reading a released device would be a use-after-free in
    /// C: here it is a BUG and returns nothing.
    pub fn show_attr(&mut self, dev: DeviceId, attr: &str) -> Option<String> {
        let d = self.device(dev);
        if d.state == DeviceState::Released {
            let path = self.device_path(dev);
            self.bug(format!("show({attr}) on released device {path}"));
            return None;
        }
        self.show_attr_ref(dev, attr)
    }

    /// `show_attr` for the read-only snapshot walk.
    pub fn show_attr_ref(&self, dev: DeviceId, attr: &str) -> Option<String> {
        let d = self.device(dev);
        let data = d.data.as_ref()?;
        match attr {
            "name" => Some(format!("{}\n", data.description())),
            // 2.5's `power`: the current state as "%d\n"; everything is D0.
            "power" => Some(String::from("0\n")),
            _ => data.show(attr),
        }
    }

    pub fn store_attr(&mut self, dev: DeviceId, attr: &str, value: &[u8]) -> Result<super::StoreEffect, Errno> {
        let d = self.device_mut(dev);
        if d.state != DeviceState::Registered {
            return Err(Errno::ENODEV);
        }
        d.data.as_mut().ok_or(Errno::ENODEV)?.store(attr, value)
    }

    /// Run `f` on the device's data, e.g. to update what an attribute shows.
    pub fn with_data_mut<R>(&mut self, dev: DeviceId, f: impl FnOnce(&mut dyn DeviceData) -> R) -> Option<R> {
        self.device_mut(dev).data.as_deref_mut().map(f)
    }

    // ---- device_del, in steps (the async driver is `device_del` below) ----

    /// Step 1: mark dead. Lookups refuse the device and every driverfs node
    /// that exists for it is deactivated: new opens get ENOENT, reads on old
    /// handles get ENODEV, and no new show() starts.
    fn del_mark_dead(&mut self, dev: DeviceId) -> Result<(), Errno> {
        if self.device(dev).state != DeviceState::Registered {
            return Err(Errno::ENODEV);
        }
        self.device_mut(dev).state = DeviceState::Dying;
        for node in self.device(dev).nodes.clone() {
            self.fs.deactivate(node);
        }
        Ok(())
    }

    fn del_next_child(&self, dev: DeviceId) -> ChildStep {
        let d = self.device(dev);
        if let Some(c) = d.children.iter().rev().find(|c| self.device(**c).state == DeviceState::Registered) {
            return ChildStep::Remove(*c);
        }
        if d.children.is_empty() { ChildStep::Done } else { ChildStep::WaitForOthers }
    }

    /// Steps 3–5: leave the bus's list, unbind the driver, emit `remove`.
    /// The parent's list is left in `del_finish`, see [`Device::children`].
    fn del_unlink(&mut self, dev: DeviceId) {
        if let Some(bus) = self.device(dev).bus {
            self.bus_remove_device(bus, dev);
        }
        if !fault::planted(Fault::DriverNotUnbound) {
            self.release_driver_now(dev);
        }
        if !fault::planted(Fault::NoRemoveUevent) {
            self.uevent(dev, UeventAction::Remove);
        }
    }

    /// True once no show()/store() runs on any node of the device.
    pub fn nodes_drained(&self, dev: DeviceId) -> bool {
        self.device(dev).nodes.iter().all(|n| self.fs.active(*n) == 0)
    }

    /// Steps 6–7, after draining: the driverfs entries go (directory last),
    /// the device leaves its parent's list, then the membership reference on
    /// the parent goes.
    fn del_finish(&mut self, dev: DeviceId) {
        let nodes = core::mem::take(&mut self.device_mut(dev).nodes);
        for node in nodes.iter().rev() {
            self.fs.unlink(*node);
        }
        let d = self.device_mut(dev);
        d.dir = None;
        d.state = DeviceState::Deleted;
        let parent = d.parent;
        let membership = core::mem::replace(&mut d.membership_ref, false);
        if let Some(p) = parent {
            self.device_mut(p).children.retain(|c| *c != dev);
        }
        if let (Some(p), true) = (parent, membership) {
            self.put(p);
        }
        if fault::planted(Fault::ParentPutBeforeChildRelease)
            && let (Some(p), true) = (parent, core::mem::replace(&mut self.device_mut(dev).object_ref, false))
        {
            self.put(p);
        }
    }

    /// Drop the creator's reference (the second half of unregister).
    fn put_creator(&mut self, dev: DeviceId) {
        if core::mem::replace(&mut self.device_mut(dev).creator_ref, false) {
            if fault::planted(Fault::ReleaseOnUnregister) {
                self.device_mut(dev).refcount = 0;
                self.release(dev);
                return;
            }
            self.put(dev);
        }
    }

    /// [`Fault::GenerationNotBumped`]: the generation of the newest older
    /// object that had this device's parent and name.
    fn fault_reused_generation(&self, dev: DeviceId) -> Option<u64> {
        if !fault::planted(Fault::GenerationNotBumped) {
            return None;
        }
        let me = self.device(dev);
        self.devices
            .iter()
            .enumerate()
            .filter(|(i, d)| *i as u32 != dev.0 && d.parent == me.parent && d.name == me.name && d.generation != 0)
            .map(|(_, d)| d.generation)
            .max()
    }
}

enum ChildStep {
    Remove(DeviceId),
    WaitForOthers,
    Done,
}

pub type LocalFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// `device_del`: take the device out of the system, children first.
///
/// Order (docs/driver-model.md, "Removal order"): mark dead → unregister children,
/// newest first, and wait for any child someone else is removing → leave the
/// bus's list → unbind the driver → `remove` uevent → wait for show()/store()
/// in flight, then remove the driverfs entries → leave the parent's list and
/// put the parent. Lookups refuse the device from the first step, so the
/// parent's list keeping it until the end is invisible to them. Fails with
/// ENODEV if the device is not registered (e.g. someone else is already
/// removing it).
pub fn device_del(core: &CoreRef, dev: DeviceId) -> LocalFuture<'_, Result<(), Errno>> {
    Box::pin(async move {
        core.borrow_mut().del_mark_dead(dev)?;
        loop {
            let step = core.borrow().del_next_child(dev);
            match step {
                ChildStep::Remove(child) => {
                    // A concurrent removal of the same child is fine: it
                    // fails with ENODEV and the loop waits for the other.
                    let _ = device_unregister(core, child).await;
                }
                ChildStep::WaitForOthers => {
                    wait_until(|| !matches!(core.borrow().del_next_child(dev), ChildStep::WaitForOthers)).await
                }
                ChildStep::Done => break,
            }
        }
        core.borrow_mut().del_unlink(dev);
        let skip_drain = fault::planted(Fault::RemovalSkipsDrain)
            || (fault::planted(Fault::ScsiLunNotDrained) && core.borrow().is_on_bus(dev, crate::scsi::BUS_NAME));
        if !skip_drain {
            wait_until(|| core.borrow().nodes_drained(dev)).await;
        }
        core.borrow_mut().del_finish(dev);
        Ok(())
    })
}

/// `device_unregister` = `device_del` + dropping the creator's reference.
pub fn device_unregister(core: &CoreRef, dev: DeviceId) -> LocalFuture<'_, Result<(), Errno>> {
    Box::pin(async move {
        device_del(core, dev).await?;
        core.borrow_mut().put_creator(dev);
        Ok(())
    })
}

impl Core {
    /// Every device object ever created, released ones included.
    pub fn device_ids(&self) -> impl Iterator<Item = DeviceId> + '_ {
        (0..self.devices.len() as u32).map(DeviceId)
    }
}
