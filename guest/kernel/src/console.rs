//! The free-form console on COM1. Its output is kept by the harness as a test
//! artifact; nothing parses it.

use core::fmt::Write;

use crate::hw::Platform;
use crate::uart::{COM1, Uart, UartWriter};

/// Print one line on the console. The UART holds no software state, so this
/// works from anywhere, including the panic path.
pub fn print(p: &dyn Platform, args: core::fmt::Arguments<'_>) {
    let mut w = UartWriter { uart: Uart::new(COM1), platform: p };
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
