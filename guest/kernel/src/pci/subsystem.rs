//! PCI as a [`Subsystem`]: enumeration at boot, the hot-plug controllers'
//! pollers, and the state they share.

use alloc::rc::Rc;
use core::cell::RefCell;

use super::Pci;
use super::config::PortConfig;
use super::hotplug;
use crate::klog;
use crate::subsystem::{PendingWork, ServicesRef, Subsystem};

/// The PCI subsystem: the bus's bookkeeping and its hot-plug work.
pub struct PciSubsystem {
    /// The kernel's services, for the pollers and removal tasks.
    pub sys: ServicesRef,
    /// Functions, windows and bus numbers beside the driver model.
    pub state: RefCell<Pci>,
    /// Hot-plug events being handled, and hot-adds waiting for a release.
    pub work: PendingWork,
}

/// How the hot-plug pollers and removal tasks share the subsystem.
pub type PciRef = Rc<PciSubsystem>;

/// Boot: register the `pci` bus and every function reachable from bus 0.
/// Drivers for PCI functions come from other subsystems, listed after this
/// one; each probes what is already registered when it registers.
pub fn register(sys: &ServicesRef) -> Rc<dyn Subsystem> {
    let pci = Pci::init(&mut sys.core.borrow_mut(), &PortConfig::new(sys.platform));
    Rc::new(PciSubsystem { sys: Rc::clone(sys), state: RefCell::new(pci), work: PendingWork::default() })
}

impl Subsystem for PciSubsystem {
    fn name(&self) -> &'static str {
        super::BUS_NAME
    }

    /// Start the hot-plug controllers' pollers (every driver has probed by
    /// now).
    fn start(self: Rc<Self>, sys: &ServicesRef) {
        klog!(
            sys.platform,
            "pci: {:?} chipset, {} devices registered",
            self.state.borrow().chipset,
            sys.core.borrow().totals().registered
        );
        hotplug::start(&self);
    }

    /// The guest follows PCI hot-plug and ejects on request.
    fn features(&self) -> &'static [&'static str] {
        &["pci-hotplug"]
    }

    fn pending_work(&self) -> u32 {
        self.work.count()
    }
}
