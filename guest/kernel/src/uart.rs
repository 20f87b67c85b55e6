//! Polled 16550 UART driver. COM1 (0x3f8) is the free-form console, COM2
//! (0x2f8) carries the control protocol.

use crate::hw::Platform;

pub const COM1: u16 = 0x3f8;
pub const COM2: u16 = 0x2f8;

const RBR_THR: u16 = 0;
const IER: u16 = 1;
const LCR: u16 = 3;
const MCR: u16 = 4;
const LSR: u16 = 5;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;

/// One UART, addressed by its base port. The device keeps all the state, so
/// this is a plain value that the panic path can rebuild from nothing.
#[derive(Clone, Copy)]
pub struct Uart {
    base: u16,
}

impl Uart {
    pub const fn new(base: u16) -> Self {
        Uart { base }
    }

    /// 115200 8N1, interrupts off. The FIFO control register is left alone on
    /// purpose: enabling the FIFO makes QEMU reset it and drop host input
    /// that arrived before this point (guest-build.md, gotcha 8).
    pub fn init(&self, p: &dyn Platform) {
        p.outb(self.base + IER, 0x00);
        p.outb(self.base + LCR, 0x80);
        p.outb(self.base + RBR_THR, 0x01);
        p.outb(self.base + IER, 0x00);
        p.outb(self.base + LCR, 0x03);
        p.outb(self.base + MCR, 0x0b);
    }

    pub fn write_byte(&self, p: &dyn Platform, byte: u8) {
        while p.inb(self.base + LSR) & LSR_THR_EMPTY == 0 {
            p.relax();
        }
        p.outb(self.base + RBR_THR, byte);
    }

    pub fn write(&self, p: &dyn Platform, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(p, b);
        }
    }

    pub fn read_byte(&self, p: &dyn Platform) -> Option<u8> {
        if p.inb(self.base + LSR) & LSR_DATA_READY != 0 { Some(p.inb(self.base + RBR_THR)) } else { None }
    }
}

/// `core::fmt::Write` adapter so the console can take `format_args!`.
pub struct UartWriter<'a> {
    pub uart: Uart,
    pub platform: &'a dyn Platform,
}

impl core::fmt::Write for UartWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.uart.write_byte(self.platform, b'\r');
            }
            self.uart.write_byte(self.platform, b);
        }
        Ok(())
    }
}
