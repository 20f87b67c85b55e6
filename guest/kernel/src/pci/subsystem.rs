//! PCI as a [`Subsystem`]: enumeration at boot, the hot-plug controllers'
//! pollers, and the state they share.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::RefCell;
use core::fmt::Write;

use super::Pci;
use super::config::{Bdf, ConfigSpace, PortConfig};
use super::device::PciFunction;
use super::hotplug;
use crate::base::device::LocalFuture;
use crate::control::request::{Reply, Request, fail};
use crate::errno::Errno;
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

impl PciSubsystem {
    /// `pcihp bsel <bsel> <bus>` (hex): which bus an ACPI hot-plug selector
    /// selects. Config space does not tell; QEMU keeps it in each bridge's
    /// bus (`acpi-pcihp-bsel`), where the harness reads it.
    fn serve_pcihp(&self, args: &[&str]) -> Reply {
        let hex = |t: &str| {
            u32::from_str_radix(t.trim_start_matches("0x"), 16)
                .map_err(|_| (Errno::EINVAL, alloc::format!("not a hex number: {t}")))
        };
        match args {
            ["bsel", bsel, bus] => {
                let (bsel, bus) = (hex(bsel)?, hex(bus)?);
                let bus =
                    u8::try_from(bus).map_err(|_| (Errno::EINVAL, alloc::format!("bus {bus:#x} is above 0xff")))?;
                self.state.borrow_mut().acpi_bsel.insert(bsel, bus);
                Ok(alloc::vec::Vec::new())
            }
            _ => fail(Errno::EINVAL, "usage: pcihp bsel <bsel> <bus>"),
        }
    }
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

    fn verbs(&self) -> &'static [&'static str] {
        &["pci", "pcihp"]
    }

    /// `pci config <bb:ss.f>`: the function's configuration space as hex.
    /// `pcihp bsel <bsel> <bus>`: see [`PciSubsystem::serve_pcihp`].
    fn serve(self: Rc<Self>, sys: ServicesRef, req: Request) -> LocalFuture<'static, Reply> {
        Box::pin(async move {
            let args = req.args();
            if req.verb == "pcihp" {
                return self.serve_pcihp(&args);
            }
            let (["config", _], Some(bdf)) = (args.as_slice(), args.get(1).and_then(|a| parse_bdf(a))) else {
                return fail(Errno::EINVAL, "usage: pci config <bb:ss.f>");
            };
            let Some(dev) = self.state.borrow().function(bdf) else {
                return fail(Errno::ENOENT, alloc::format!("no PCI function {bdf}"));
            };
            let sizes: alloc::vec::Vec<(u8, u64)> = sys
                .core
                .borrow()
                .data::<PciFunction>(dev)
                .map(|f| f.bars.iter().map(|b| (b.index, b.size)).collect())
                .unwrap_or_default();
            Ok(config_dump(&PortConfig::new(sys.platform), bdf, &sizes).into_bytes())
        })
    }

    fn pending_work(&self) -> u32 {
        self.work.count()
    }
}

/// `bb:ss.f`, as the snapshot names functions.
fn parse_bdf(text: &str) -> Option<Bdf> {
    let (bus, rest) = text.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let (bus, dev, func) =
        (u8::from_str_radix(bus, 16).ok()?, u8::from_str_radix(dev, 16).ok()?, func.parse::<u8>().ok()?);
    (dev < 32 && func < 8).then_some(Bdf::new(bus, dev, func))
}

/// The 256 bytes of a function's configuration space, 16 per line as
/// `<offset>: <byte> ...`, then `bar<N> size <bytes>` for each BAR the
/// guest sized (`rom` is BAR 6): what a test needs to compare a host fake
/// with the real function.
pub fn config_dump(cfg: &dyn ConfigSpace, bdf: Bdf, bar_sizes: &[(u8, u64)]) -> String {
    let mut out = String::new();
    for row in 0..16u8 {
        let _ = write!(out, "{:02x}:", row * 16);
        for word in 0..4u8 {
            let value = cfg.read32(bdf, row * 16 + word * 4);
            for byte in value.to_le_bytes() {
                let _ = write!(out, " {byte:02x}");
            }
        }
        out.push('\n');
    }
    for (index, size) in bar_sizes {
        let _ = writeln!(out, "bar{index} size {size:#x}");
    }
    out
}
