//! Host tests of the kernel's parts working together, one file per concept:
//!
//! - [`lifetime_races`]: the five race scenarios of driver-model.md §6;
//! - [`uevents`]: what userspace is told, and in which order;
//! - [`binding`]: bind/unbind, including children a driver created;
//! - [`self_removal`]: a store() that unregisters its own device;
//! - [`model`]: a property test over random operation sequences;
//! - [`pci_enumeration`]: PCI on the emulated pc and q35 machines;
//! - [`system`]: the whole guest on a fake platform, through COM2;
//! - [`ide`]: IDE drives and CD media changes, through the whole guest;
//! - [`scsi`]: virtio-scsi (both transports) and the SCSI midlayer:
//!   scanning, events, removal, re-adds, the adapter's own removal;
//! - [`pciehp`]: native PCIe hot-plug on q35 root ports, likewise
//!   ([`machine`] is the control-protocol driver both use);
//! - [`subsystems`]: the subsystem seam, with a fake HBA subsystem plugged
//!   in beside the real ones;
//! - [`usb`]: USB enumeration, hubs and removal on a fake controller.
//!
//! Tests drive the core the way the guest does: async operations run as
//! tasks on an [`Executor`], and tests run passes in between to choose the
//! interleaving.

mod binding;
mod fake_vs_qemu;
mod ide;
mod lifetime_races;
mod machine;
mod model;
mod pci_enumeration;
mod pciehp;
mod scsi;
mod self_removal;
mod subsystems;
mod system;
mod uevents;
mod usb;

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;

use crate::base::{Attribute, Core, CoreRef, DeviceData, DeviceId, Driver, KernelEvent, Uevent, device_unregister};
use crate::driverfs::file;
use crate::errno::Errno;
use crate::executor::Executor;
use crate::testbus::TestBus;

/// More passes than any test needs: reaching it means a task never finishes.
const MAX_PASSES: usize = 1000;

/// Where a spawned task leaves its result.
pub(crate) type Outcome<T> = Rc<RefCell<Option<T>>>;

/// A shared, ordered record of what happened, written by tasks and by
/// [`ProbeDevice::show`].
pub(crate) type Log = Rc<RefCell<Vec<String>>>;

/// A driver core with the test bus, and an executor to run operations on.
pub(crate) struct Fixture {
    pub core: CoreRef,
    pub exec: Executor,
    pub tb: TestBus,
}

impl Fixture {
    pub fn new() -> Self {
        let core = Core::new_shared();
        let tb = TestBus::init(&mut core.borrow_mut());
        Fixture { core, exec: Executor::new(), tb }
    }

    /// Start `task`; its result appears in the returned cell when it ends.
    pub fn spawn<T: 'static>(&self, task: impl Future<Output = T> + 'static) -> Outcome<T> {
        let outcome: Outcome<T> = Rc::new(RefCell::new(None));
        let slot = outcome.clone();
        self.exec.spawner().spawn(async move {
            let value = task.await;
            *slot.borrow_mut() = Some(value);
        });
        outcome
    }

    pub fn run(&mut self, passes: usize) {
        for _ in 0..passes {
            self.exec.run_pass();
        }
    }

    /// Run until no task is left; panics (a deadlock) if that never happens.
    pub fn run_until_idle(&mut self) {
        for _ in 0..MAX_PASSES {
            if self.exec.is_empty() {
                return;
            }
            self.exec.run_pass();
        }
        panic!("{} tasks still pending after {MAX_PASSES} passes", self.exec.len());
    }

    /// `testdev add`, which must succeed.
    pub fn add(&self, name: &str, parent: Option<&str>) -> DeviceId {
        let mut core = self.core.borrow_mut();
        self.tb.add(&mut core, name, parent).unwrap_or_else(|e| panic!("testdev add {name}: {e}"))
    }

    /// Register a [`ProbeDevice`] on the test bus (no driver matches it).
    pub fn add_probe(&self, name: &str, parent: Option<DeviceId>, log: &Log) -> DeviceId {
        let parent = parent.unwrap_or(self.tb.root);
        let probe = ProbeDevice { label: String::from(name), log: log.clone() };
        self.core
            .borrow_mut()
            .device_register(name, Some(parent), Some(self.tb.bus), Box::new(probe))
            .expect("probe registers")
    }

    pub fn open(&self, path: &str) -> Result<u32, Errno> {
        self.core.borrow_mut().fs.open(path)
    }

    pub fn spawn_read(&self, handle: u32) -> Outcome<Result<Vec<u8>, Errno>> {
        let core = self.core.clone();
        self.spawn(async move { file::read(&core, handle).await })
    }

    /// A read that is not expected to block.
    pub fn read(&mut self, handle: u32) -> Result<Vec<u8>, Errno> {
        let outcome = self.spawn_read(handle);
        self.run_until_idle();
        outcome.take().expect("the read finished")
    }

    pub fn spawn_unregister(&self, dev: DeviceId) -> Outcome<Result<(), Errno>> {
        let core = self.core.clone();
        self.spawn(async move { device_unregister(&core, dev).await })
    }

    /// `device_unregister` run to completion.
    pub fn unregister(&mut self, dev: DeviceId) {
        let outcome = self.spawn_unregister(dev);
        self.run_until_idle();
        assert_eq!(outcome.take(), Some(Ok(())), "unregister {}", self.core.borrow().device_path(dev));
    }

    /// Kernel events since the last call.
    pub fn events(&self) -> Vec<KernelEvent> {
        self.core.borrow_mut().take_events().into_iter().collect()
    }

    /// Uevents since the last call, as `<action> <devpath>`; panics on a BUG.
    pub fn uevents(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .map(|e| match e {
                KernelEvent::Uevent(u) => format!("{} {}", u.action.as_str(), u.devpath),
                KernelEvent::Bug(text) => panic!("unexpected BUG: {text}"),
                KernelEvent::Notice(text) => panic!("unexpected notice: {text}"),
            })
            .collect()
    }
}

/// Full uevent lines (`<action> <devpath> KEY=VALUE...`); panics on a BUG.
pub(crate) fn uevent_lines(events: impl IntoIterator<Item = KernelEvent>) -> Vec<String> {
    events
        .into_iter()
        .map(|e| match e {
            KernelEvent::Uevent(u) => u.to_line(),
            KernelEvent::Bug(text) => panic!("unexpected BUG: {text}"),
            KernelEvent::Notice(text) => panic!("unexpected notice: {text}"),
        })
        .collect()
}

/// `SEQNUM` of a uevent.
pub(crate) fn seqnum(u: &Uevent) -> u64 {
    let (_, value) = u.env.iter().find(|(k, _)| *k == "SEQNUM").expect("every uevent has a SEQNUM");
    value.parse().expect("SEQNUM is a number")
}

/// A device whose show() leaves a trace (`show <label> <attr>`), so tests
/// can tell whether and when it was called. Shows its label as `value`.
pub(crate) struct ProbeDevice {
    pub label: String,
    pub log: Log,
}

impl DeviceData for ProbeDevice {
    fn description(&self) -> String {
        format!("Probe {}", self.label)
    }

    fn attributes(&self) -> Vec<Attribute> {
        alloc::vec![Attribute::ro("value")]
    }

    fn show(&self, attr: &str) -> Option<String> {
        self.log.borrow_mut().push(format!("show {} {attr}", self.label));
        Some(format!("{}\n", self.label))
    }
}

/// A driver for [`ProbeDevice`]s that counts its probes.
pub(crate) struct ProbeDriver {
    pub name: &'static str,
    pub log: Log,
}

impl Driver for ProbeDriver {
    fn name(&self) -> &'static str {
        self.name
    }
    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<ProbeDevice>(dev).is_some()
    }
    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        self.log.borrow_mut().push(format!("probe {}", core.name(dev)));
        Ok(())
    }
    fn remove(&self, core: &mut Core, dev: DeviceId) {
        self.log.borrow_mut().push(format!("remove {}", core.name(dev)));
    }
}
