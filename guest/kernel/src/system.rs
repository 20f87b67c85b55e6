//! Wiring and the main loop: boot the subsystems, then forever read the
//! control channel, run one executor pass, flush output, `pause`.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::fmt::Write;

use crate::base::{Core, CoreRef, KernelEvent};
use crate::cmdline::Cmdline;
use crate::control::{Incoming, LineAssembler, Outbox, verbs};
use crate::errno::Errno;
use crate::executor::{Executor, Spawner};
use crate::hw::{ExitCode, Platform};
use crate::ide::PiixIde;
use crate::klog;
use crate::pci::Pci;
use crate::pci::config::PortConfig;
use crate::testbus::TestBus;
use crate::uart::{COM1, COM2, Uart, UartWriter};

/// Everything a task may need. Shared as [`KernelRef`].
pub struct Kernel {
    pub platform: &'static dyn Platform,
    pub core: CoreRef,
    pub out: RefCell<Outbox>,
    pub spawner: Spawner,
    pub testbus: TestBus,
    pub pci: RefCell<Pci>,
    /// Set by `poweroff`: exit once the reply is on the wire.
    pub poweroff: Cell<bool>,
    /// Set by `selftest hang`: stop serving the control channel.
    pub hang: Cell<bool>,
    /// Executor passes so far (`settle` waits for pollers to run).
    pub passes: Cell<u64>,
    /// Bus work in flight (hot-plug handling, media changes); `settle`
    /// waits for zero.
    pub bus_work: Rc<Cell<u32>>,
    pub ide: Rc<crate::ide::IdeContext>,
    /// References taken with `devref get`, by device path, so tests can hold
    /// an object past its removal the way a driver would.
    pub held_refs: RefCell<Vec<(String, crate::base::DeviceId)>>,
}

pub type KernelRef = Rc<Kernel>;

/// Marks bus work in flight while alive (a hot-plug event being handled, a
/// media change), so `settle` waits for it.
pub struct BusWork {
    counter: Rc<Cell<u32>>,
}

impl BusWork {
    pub fn start(counter: &Rc<Cell<u32>>) -> Self {
        counter.set(counter.get() + 1);
        BusWork { counter: Rc::clone(counter) }
    }
}

impl Drop for BusWork {
    fn drop(&mut self) {
        self.counter.set(self.counter.get() - 1);
    }
}

impl Kernel {
    /// Queue a reply, after every kernel event that happened before it, so
    /// the channel shows cause before effect.
    pub fn reply(&self, tag: &str, result: Result<Vec<u8>, (Errno, String)>) {
        self.flush_events();
        self.out.borrow_mut().reply(tag, result);
    }

    pub fn flush_events(&self) {
        let events = self.core.borrow_mut().take_events();
        let mut out = self.out.borrow_mut();
        for event in &events {
            if let KernelEvent::Bug(text) = event {
                // The console gets it too: it is the artifact people read.
                klog!(self.platform, "BUG: {text}");
            }
            out.event(event);
        }
    }
}

pub struct System {
    pub kernel: KernelRef,
    executor: Executor,
    input: LineAssembler,
    control: Uart,
}

/// Most bytes taken from the control UART per pass, so a flood of input
/// cannot starve the tasks.
const MAX_INPUT_PER_PASS: usize = 4096;

impl System {
    pub fn boot(platform: &'static dyn Platform, cmdline: &Cmdline) -> System {
        let console = Uart::new(COM1);
        let control = Uart::new(COM2);
        console.init(platform);
        control.init(platform);
        klog!(platform, "driverfs-guest {} booting, cmdline \"{}\"", env!("CARGO_PKG_VERSION"), cmdline.raw());
        if cmdline.flag("selftest.panic") {
            panic!("selftest.panic on the kernel command line");
        }

        let core = Core::new_shared();
        let executor = Executor::new();
        let bus_work = Rc::new(Cell::new(0));
        let (testbus, pci, ide) = {
            let mut c = core.borrow_mut();
            let testbus = TestBus::init(&mut c);
            let pci = Pci::init(&mut c, &PortConfig::new(platform));
            let ide = PiixIde::register(&mut c, &core, platform, executor.spawner(), Rc::clone(&bus_work), pci.bus);
            (testbus, pci, ide)
        };
        klog!(platform, "pci: {:?} chipset, {} devices registered", pci.chipset, core.borrow().totals().registered);
        let kernel = Rc::new(Kernel {
            platform,
            core,
            out: RefCell::new(Outbox::default()),
            spawner: executor.spawner(),
            testbus,
            pci: RefCell::new(pci),
            poweroff: Cell::new(false),
            hang: Cell::new(cmdline.flag("selftest.hang")),
            passes: Cell::new(0),
            bus_work,
            ide,
            held_refs: RefCell::new(Vec::new()),
        });
        crate::pci::hotplug::start(&kernel);
        System { kernel, executor, input: LineAssembler::default(), control }
    }

    /// One turn of the main loop.
    pub fn step(&mut self) {
        let k = &self.kernel;
        if !k.hang.get() {
            for _ in 0..MAX_INPUT_PER_PASS {
                let Some(byte) = self.control.read_byte(k.platform) else { break };
                match self.input.feed(byte) {
                    Some(Incoming::Request(req)) => verbs::dispatch(k, req),
                    Some(Incoming::Invalid { tag, errno, text }) => k.reply(&tag, Err((errno, text))),
                    None => {}
                }
            }
        }
        self.executor.run_pass();
        k.passes.set(k.passes.get() + 1);
        k.flush_events();
        let bytes = k.out.borrow_mut().take();
        if !k.hang.get() {
            for b in bytes {
                self.control.write_byte(k.platform, b);
            }
        }
        if k.core.borrow().bug_count() > 0 {
            klog!(k.platform, "stopping after a BUG (exit code {})", ExitCode::Bug.host_status());
            k.platform.exit(ExitCode::Bug);
        }
        if k.poweroff.get() {
            klog!(k.platform, "poweroff");
            k.platform.exit(ExitCode::PowerOff);
        }
    }

    pub fn run(mut self) -> ! {
        loop {
            self.step();
            self.kernel.platform.relax();
        }
    }
}

/// Entry from the image crate once memory is set up.
pub fn run(platform: &'static dyn Platform, cmdline: &str) -> ! {
    System::boot(platform, &Cmdline::new(cmdline)).run()
}

/// The panic path: report on both ports and exit with the panic code.
/// Output is whole messages only, so a panic never lands inside a payload.
pub fn panic_report(platform: &dyn Platform, info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = String::new();
    let _ = write!(message, "{}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(message, " at {}:{}", loc.file(), loc.line());
    }
    let message: String = message.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    let _ = writeln!(UartWriter { uart: Uart::new(COM1), platform }, "panic: {message}");
    let line = alloc::format!("* bug panic: {message}\n");
    Uart::new(COM2).write(platform, line.as_bytes());
    platform.exit(ExitCode::Panic)
}
