//! The seam between the kernel's main loop and a bus subsystem (the test
//! bus, PCI, IDE, ...). A subsystem owns its bus state, its drivers, its
//! pollers and its control verbs; the wiring (`system.rs`) only lists the
//! subsystems, and nothing a subsystem does goes through it.
//!
//! # Adding a bus
//!
//! 1. Write a module with a `register` function of type [`Register`]. It
//!    runs once at boot, in list order: register the bus
//!    (`core.bus_register`), its drivers, and whatever the hardware already
//!    holds; a driver for a device on *another* subsystem's bus (e.g. an HBA
//!    driver on `pci`) registers there with [`Services::bus`], which works
//!    when that subsystem is listed earlier. It returns the subsystem object,
//!    which keeps the subsystem's state (drivers and pollers hold `Rc`s or
//!    `Weak`s of what they share with it).
//! 2. Implement [`Subsystem`] on that object: [`Subsystem::start`] spawns
//!    its pollers once every subsystem is registered; [`Subsystem::verbs`]
//!    and [`Subsystem::serve`] are its control verbs (the control module
//!    routes each declared verb to it, and `hello` lists it);
//!    [`Subsystem::features`] adds other words to `hello`;
//!    [`Subsystem::pending_work`] counts the bus work `settle` must wait for.
//! 3. List its `register` in `system::SUBSYSTEMS`, after the subsystems
//!    whose buses it uses. Order is part of the boot: it fixes the order of
//!    the boot uevents and of device registration, so the snapshot stays
//!    byte-identical run to run.
//!
//! Rules a subsystem keeps:
//! - A poller is an executor task that looks at its hardware and then
//!   yields ([`crate::executor::yield_now`]); the main loop executes `pause`
//!   between passes. Under TCG a guest that spins without it keeps QEMU from
//!   delivering DEVICE_DELETED. A poller looks at its hardware at least every
//!   [`SETTLE_PASSES`] passes, so that `settle` has seen every change that
//!   happened before it was asked.
//! - Work that has started but not finished (a hot-plug event being handled,
//!   a media change, a new device waiting for the release of the old object
//!   in its place) holds a [`WorkGuard`] from the subsystem's
//!   [`PendingWork`]: `settle` returns only when every subsystem reports zero.
//! - Children a driver creates under its device are marked with
//!   `Core::set_managed`. Removing the device (unbind, or its bus removing
//!   it) unregisters every child depth first, newest first, before the
//!   device's own `remove` uevent; a bus that announces a removal to the
//!   hardware (PCI's eject) does so only after that.
//! - Notices (`* hotplug eject 00:05`) go through [`Services::notice`]: they
//!   are ordered with the uevents around them on the control channel.
//! - A point where a test must be able to stop a task deterministically (a
//!   command in flight, a scan under way) calls
//!   [`Checkpoints::reach`](crate::checkpoint::Checkpoints::reach) on
//!   [`Services::checkpoints`] with a name README's verb table lists.
//! - Hardware is reached only through [`crate::hw::Platform`], so the
//!   subsystem runs under `cargo test` on a fake platform.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::Cell;
use core::future::Future;

use crate::base::device::LocalFuture;
use crate::base::{BusId, CoreRef};
use crate::checkpoint::Checkpoints;
use crate::cmdline::Cmdline;
use crate::control::request::{Reply, Request, fail};
use crate::errno::Errno;
use crate::executor::Spawner;
use crate::hw::Platform;

/// Executor passes `settle` waits at least, so that every poller has looked
/// at its hardware since the request came in: more than the slowest
/// poller's period (IDE's CD media poll runs every 8 passes).
pub const SETTLE_PASSES: u64 = 20;

/// What the kernel gives every subsystem: the hardware, the driver core,
/// the executor, the command line, and the ordered channel for notices.
pub struct Services {
    /// The hardware boundary.
    pub platform: &'static dyn Platform,
    /// The driver core (devices, buses, drivers, driverfs, events).
    pub core: CoreRef,
    /// Starts tasks (pollers, removals) on the executor.
    pub spawner: Spawner,
    /// Deterministic race hooks any bus can place (`checkpoint` verb).
    pub checkpoints: Rc<Checkpoints>,
    /// The SCSI midlayer, for host adapters on buses registered after it
    /// (`usb-storage` on `usb`).
    pub scsi: core::cell::RefCell<Option<Rc<crate::scsi::Scsi>>>,
    cmdline: Cmdline,
}

/// How subsystems and their tasks share [`Services`].
pub type ServicesRef = Rc<Services>;

impl Services {
    /// The services of one boot (`system.rs` makes them once).
    pub fn new(platform: &'static dyn Platform, core: CoreRef, spawner: Spawner, cmdline: Cmdline) -> ServicesRef {
        Rc::new(Services {
            platform,
            core,
            spawner,
            checkpoints: Rc::new(Checkpoints::new()),
            scsi: Default::default(),
            cmdline,
        })
    }

    /// The kernel command line, e.g. for `scsi.event_buffers=0`.
    pub fn cmdline(&self) -> &Cmdline {
        &self.cmdline
    }

    /// Queue a `* <text>` line on the control channel, after every uevent
    /// queued before it (e.g. `hotplug eject 00:05` after the `remove`s).
    pub fn notice(&self, text: String) {
        self.core.borrow_mut().notice(text);
    }

    /// Start a task on the executor.
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.spawner.spawn(task);
    }

    /// A bus another subsystem registered, to register a driver on it.
    ///
    /// # Panics
    /// If no subsystem listed earlier registered it: the list in
    /// `system::SUBSYSTEMS` is in the wrong order, which every boot shows.
    pub fn bus(&self, name: &str) -> BusId {
        self.core
            .borrow()
            .find_bus(name)
            .unwrap_or_else(|| panic!("bus `{name}` is not registered: list its subsystem earlier in SUBSYSTEMS"))
    }
}

/// Counts a subsystem's bus work in flight, for `settle`.
#[derive(Clone, Default)]
pub struct PendingWork {
    count: Rc<Cell<u32>>,
}

impl PendingWork {
    /// Mark one piece of work as started; it ends when the guard drops.
    pub fn start(&self) -> WorkGuard {
        self.count.set(self.count.get() + 1);
        WorkGuard { count: Rc::clone(&self.count) }
    }

    /// Pieces of work started and not yet ended.
    pub fn count(&self) -> u32 {
        self.count.get()
    }
}

/// One piece of bus work in flight (see [`PendingWork::start`]); move it into
/// the task that does the work.
pub struct WorkGuard {
    count: Rc<Cell<u32>>,
}

impl Drop for WorkGuard {
    fn drop(&mut self) {
        self.count.set(self.count.get() - 1);
    }
}

/// A bus subsystem, as the kernel's main loop and control module see it.
/// See the module documentation for how to add one.
pub trait Subsystem {
    /// Short name, for the console log (`pci`, `ide`).
    fn name(&self) -> &'static str;

    /// Boot, second phase (list order, once every subsystem registered):
    /// spawn the pollers.
    fn start(self: Rc<Self>, _sys: &ServicesRef) {}

    /// The control verbs this subsystem serves. Each verb has exactly one
    /// owner; `hello` lists them as features.
    fn verbs(&self) -> &'static [&'static str] {
        &[]
    }

    /// Words `hello` adds to its feature list besides the verbs (e.g.
    /// `pci-hotplug`: the guest follows PCI hot-plug and ejects on request).
    fn features(&self) -> &'static [&'static str] {
        &[]
    }

    /// Serve a request for one of [`Subsystem::verbs`]. It runs as its own
    /// task: it may wait, and other requests are answered meanwhile.
    fn serve(self: Rc<Self>, _sys: ServicesRef, req: Request) -> LocalFuture<'static, Reply> {
        Box::pin(async move { fail(Errno::ENOSYS, format!("unknown verb: {}", req.verb)) })
    }

    /// Bus work in flight, including work waiting for the release of an
    /// object someone still references: `settle` waits for zero.
    fn pending_work(&self) -> u32 {
        0
    }
}

/// Boot, first phase: register a subsystem's buses and drivers and what the
/// hardware holds at boot; returns the subsystem. `system::SUBSYSTEMS`
/// lists these.
pub type Register = fn(&ServicesRef) -> Rc<dyn Subsystem>;

/// The booted subsystems, in list order.
pub struct Subsystems {
    list: Vec<Rc<dyn Subsystem>>,
}

impl Subsystems {
    /// Register every subsystem in order, then start every one in order.
    ///
    /// # Panics
    /// If two subsystems declare the same verb.
    pub fn boot(sys: &ServicesRef, registers: &[Register]) -> Subsystems {
        let list: Vec<Rc<dyn Subsystem>> = registers.iter().map(|register| register(sys)).collect();
        for (i, a) in list.iter().enumerate() {
            for b in &list[..i] {
                if let Some(verb) = a.verbs().iter().find(|v| b.verbs().contains(v)) {
                    panic!("subsystems {} and {} both declare the verb `{verb}`", b.name(), a.name());
                }
            }
        }
        for subsystem in &list {
            Rc::clone(subsystem).start(sys);
        }
        Subsystems { list }
    }

    /// The subsystem that declares `verb`.
    pub fn owner(&self, verb: &str) -> Option<&Rc<dyn Subsystem>> {
        self.list.iter().find(|s| s.verbs().contains(&verb))
    }

    /// Every declared verb and feature, subsystem by subsystem.
    pub fn features(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.list.iter().flat_map(|s| s.verbs().iter().chain(s.features()).copied())
    }

    /// Bus work in flight over all subsystems.
    pub fn pending_work(&self) -> u32 {
        self.list.iter().map(|s| s.pending_work()).sum()
    }

    /// The subsystems, in list order.
    pub fn iter(&self) -> impl Iterator<Item = &Rc<dyn Subsystem>> {
        self.list.iter()
    }
}
