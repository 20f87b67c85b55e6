//! The free-form console on COM1. Its output is kept by the harness as a test
//! artifact; nothing parses it.
//!
//! The console must never stop the guest. Whoever is on the other end of
//! COM1 may stop reading (a socket that is connected but not read fills up,
//! and QEMU's 16550 then never shows THR empty again), so each byte waits a
//! bounded time ([`BYTE_WAIT_TICKS`]), and once one byte has timed out the
//! console counts as stalled: later bytes are sent only if the UART takes
//! them at once, and dropped otherwise. The first byte the UART takes again
//! ends the stall. Dropped bytes are counted ([`dropped_bytes`], the
//! `console_dropped` line of `stats`).

use core::fmt::Write;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::hw::Platform;
use crate::uart::{BYTE_WAIT_TICKS, COM1, Uart};

/// The console's state lives in statics, not in the kernel, because the
/// panic path prints from nothing. The guest has one CPU; the atomics are
/// only there because statics must be `Sync`.
static STALLED: AtomicBool = AtomicBool::new(false);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Console bytes dropped because COM1 was stalled, since boot.
pub fn dropped_bytes() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Writes to COM1 under the stall rules above.
pub struct ConsoleWriter<'a> {
    pub platform: &'a dyn Platform,
}

impl ConsoleWriter<'_> {
    fn send(&self, byte: u8) {
        let uart = Uart::new(COM1);
        let p = self.platform;
        let sent = if STALLED.load(Ordering::Relaxed) {
            uart.try_send(p, byte)
        } else {
            uart.send_before(p, byte, p.ticks().saturating_add(BYTE_WAIT_TICKS))
        };
        STALLED.store(!sent, Ordering::Relaxed);
        if !sent {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Write for ConsoleWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.send(b'\r');
            }
            self.send(b);
        }
        Ok(())
    }
}

/// Print one line on the console. Works from anywhere, including the panic
/// path, and never blocks for long (see the module doc).
pub fn print(p: &dyn Platform, args: core::fmt::Arguments<'_>) {
    let mut w = ConsoleWriter { platform: p };
    let _ = w.write_fmt(args);
    let _ = w.write_str("\n");
}

/// `klog!(platform, "fmt", args...)`: one console line.
#[macro_export]
macro_rules! klog {
    ($p:expr, $($arg:tt)*) => {
        $crate::console::print($p, format_args!($($arg)*))
    };
}
