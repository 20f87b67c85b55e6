//! Wiring and the main loop: list the subsystems, boot them, then forever
//! read the control channel, run one executor pass, flush output, `pause`.
//! Nothing imports this module back: subsystems get what they need through
//! [`crate::subsystem::Services`].

use alloc::string::String;
use core::cell::RefCell;
use core::fmt::Write;

use crate::base::Core;
use crate::cmdline::Cmdline;
use crate::console::ConsoleWriter;
use crate::control::{Control, ControlRef, Incoming, LineAssembler, Outbox};
use crate::executor::Executor;
use crate::hw::{ExitCode, Platform};
use crate::klog;
use crate::subsystem::{Register, Services, Subsystems};
use crate::uart::{COM1, COM2, LAST_WORDS_TICKS, Uart};
use crate::{ide, pci, scsi, testbus, usb};

/// The bus subsystems, in boot order: each registers after the ones whose
/// buses it uses (`ide` puts its driver on `pci`'s bus). Adding a bus is one
/// line here; see [`crate::subsystem`].
pub const SUBSYSTEMS: &[Register] = &[testbus::register, pci::register, ide::register, scsi::register, usb::register];

/// The booted kernel: the control state over the subsystems, the executor
/// and the control port.
pub struct System {
    /// The control state, which holds the services and the subsystems.
    pub control: ControlRef,
    executor: Executor,
    input: LineAssembler,
    control_port: Uart,
}

/// How long the boot waits at most for boot-time scans, in TSC ticks
/// (seconds at the GHz clocks TCG reports; host fakes count one per call).
const BOOT_SCAN_TICKS: u64 = 10_000_000_000;

/// Most bytes taken from the control UART per pass, so a flood of input
/// cannot starve the tasks.
const MAX_INPUT_PER_PASS: usize = 4096;

impl System {
    /// Boot with [`SUBSYSTEMS`].
    pub fn boot(platform: &'static dyn Platform, cmdline: &Cmdline) -> System {
        System::boot_with(platform, cmdline, SUBSYSTEMS)
    }

    /// Boot with the given subsystems (host tests add their own).
    pub fn boot_with(platform: &'static dyn Platform, cmdline: &Cmdline, subsystems: &[Register]) -> System {
        let console = Uart::new(COM1);
        let control_port = Uart::new(COM2);
        console.init(platform);
        control_port.init(platform);
        klog!(platform, "driverfs-guest {} booting, cmdline \"{}\"", env!("CARGO_PKG_VERSION"), cmdline.raw());
        if cmdline.flag("selftest.panic") {
            panic!("selftest.panic on the kernel command line");
        }
        match crate::fault::plant_from_cmdline(cmdline) {
            Ok(Some(fault)) => klog!(platform, "fault: planted {}", fault.name()),
            Ok(None) => {}
            Err(e) => panic!("{e}"),
        }

        let executor = Executor::new();
        let sys = Services::new(platform, Core::new_shared(), executor.spawner(), cmdline.clone());
        let subsystems = Subsystems::boot(&sys, subsystems);
        let control = Control::new(sys, subsystems, cmdline.flag("selftest.hang"));
        let mut executor = executor;
        // Scans started at boot (SCSI hosts) finish before the control
        // channel is served, so the boot tree is the same every run; one
        // that takes longer goes on, and `settle` waits for it.
        let start = platform.ticks();
        while control.subsystems.pending_work() > 0 && platform.ticks().wrapping_sub(start) < BOOT_SCAN_TICKS {
            executor.run_pass();
            platform.relax();
        }
        System { control, executor, input: LineAssembler::default(), control_port }
    }

    /// One turn of the main loop.
    pub fn step(&mut self) {
        let k = &self.control;
        let platform = k.sys.platform;
        if !k.hang.get() {
            for _ in 0..MAX_INPUT_PER_PASS {
                let Some(byte) = self.control_port.read_byte(platform) else { break };
                match self.input.feed(byte) {
                    Some(Incoming::Request(req)) => k.dispatch(req),
                    Some(Incoming::Invalid { tag, errno, text }) => k.reply(&tag, Err((errno, text))),
                    None => {}
                }
            }
        }
        self.executor.run_pass();
        k.pass_done();
        k.flush_events();
        let mut out = k.output().borrow_mut();
        if k.hang.get() {
            out.discard();
        } else {
            out.pump(&self.control_port, platform);
        }
        if k.sys.core.borrow().bug_count() > 0 {
            klog!(platform, "stopping after a BUG (exit code {})", ExitCode::Bug.host_status());
            out.flush_before(&self.control_port, platform, platform.ticks().saturating_add(LAST_WORDS_TICKS));
            platform.exit(ExitCode::Bug);
        }
        // Power off once the reply is on the wire, however slow the reader.
        if k.poweroff.get() && out.is_empty() && self.control_port.is_idle(platform) {
            klog!(platform, "poweroff");
            platform.exit(ExitCode::PowerOff);
        }
    }

    pub fn run(mut self) -> ! {
        loop {
            self.step();
            self.control.sys.platform.relax();
        }
    }
}

/// Entry from the image crate once memory is set up. `booted` sees the
/// control state before the main loop starts (the image keeps it for its
/// panic handler, see [`panic_report`]).
pub fn run(platform: &'static dyn Platform, cmdline: &str, booted: impl FnOnce(&ControlRef)) -> ! {
    let system = System::boot(platform, &Cmdline::new(cmdline));
    booted(&system.control);
    system.run()
}

/// The panic path: report on both ports and exit with the panic code.
/// Output is whole messages only, so a panic never lands inside a payload:
/// `pending` is the control channel's queue, whose message in flight is
/// finished first. Both ports wait a bounded time only.
pub fn panic_report(
    platform: &dyn Platform,
    info: &core::panic::PanicInfo<'_>,
    pending: Option<&RefCell<Outbox>>,
) -> ! {
    let mut message = String::new();
    let _ = write!(message, "{}", info.message());
    if let Some(loc) = info.location() {
        let _ = write!(message, " at {}:{}", loc.file(), loc.line());
    }
    let message: String = message.chars().map(|c| if c == '\n' { ' ' } else { c }).collect();
    let _ = writeln!(ConsoleWriter { platform }, "panic: {message}");
    let control = Uart::new(COM2);
    let deadline = platform.ticks().saturating_add(LAST_WORDS_TICKS);
    let at_boundary = pending
        .and_then(|out| out.try_borrow_mut().ok())
        .is_none_or(|mut out| out.finish_message(&control, platform, deadline));
    if at_boundary {
        let line = alloc::format!("* bug panic: {message}\n");
        control.send_all_before(platform, line.as_bytes(), deadline);
    }
    platform.exit(ExitCode::Panic)
}
