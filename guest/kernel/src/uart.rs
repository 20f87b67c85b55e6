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
/// THR and the shift register both empty: the last byte has left the UART.
const LSR_TX_EMPTY: u8 = 0x40;

/// How long a writer waits for the transmitter to take one byte before it
/// gives up on it, in TSC ticks: about 10 ms at 2 GHz, the order of the
/// bounded per-character wait of Linux's 8250 console. A 16550 whose host
/// side stopped reading (QEMU's socket chardev with a full buffer) never
/// shows THR empty again, so an unbounded wait would freeze the guest.
pub const BYTE_WAIT_TICKS: u64 = 20_000_000;

/// The longest the dying paths (panic, BUG) wait for a stalled port to
/// drain their last words, in TSC ticks: one to a few seconds depending on
/// the TSC's rate. They must get their text out if the port drains at all,
/// and must still exit if it never does.
pub const LAST_WORDS_TICKS: u64 = 4_000_000_000;

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

    /// The transmitter holding register can take a byte now.
    pub fn can_send(&self, p: &dyn Platform) -> bool {
        p.inb(self.base + LSR) & LSR_THR_EMPTY != 0
    }

    /// Every byte written so far has left the UART (THR and shift register
    /// empty), so exiting now loses nothing.
    pub fn is_idle(&self, p: &dyn Platform) -> bool {
        let lsr = p.inb(self.base + LSR);
        lsr & (LSR_THR_EMPTY | LSR_TX_EMPTY) == LSR_THR_EMPTY | LSR_TX_EMPTY
    }

    /// Send `byte` if the UART takes it right now; never waits.
    pub fn try_send(&self, p: &dyn Platform, byte: u8) -> bool {
        if !self.can_send(p) {
            return false;
        }
        p.outb(self.base + RBR_THR, byte);
        true
    }

    /// Send `byte`, waiting for the transmitter until `deadline` (a
    /// [`Platform::ticks`] value) at most. False: the byte was not sent.
    pub fn send_before(&self, p: &dyn Platform, byte: u8, deadline: u64) -> bool {
        loop {
            if self.try_send(p, byte) {
                return true;
            }
            if p.ticks() >= deadline {
                return false;
            }
            p.relax();
        }
    }

    /// Send `bytes`, waiting at most until `deadline` for the whole of them;
    /// answers how many were sent (a prefix).
    pub fn send_all_before(&self, p: &dyn Platform, bytes: &[u8], deadline: u64) -> usize {
        bytes.iter().take_while(|b| self.send_before(p, **b, deadline)).count()
    }

    pub fn read_byte(&self, p: &dyn Platform) -> Option<u8> {
        if p.inb(self.base + LSR) & LSR_DATA_READY != 0 { Some(p.inb(self.base + RBR_THR)) } else { None }
    }
}
