//! A fake machine for host tests: the two 16550 UARTs, PCI configuration
//! mechanism #1 in front of a [`FakePci`], and an `exit` that unwinds.
//!
//! - COM1 (0x3f8): output captured (the console).
//! - COM2 (0x2f8): the test queues request bytes as input and collects the
//!   guest's output (the control channel).
//! - QEMU's ACPI PCI hot-plug block on `pc` (0xae00, `hw/acpi/pcihp.c`) for
//!   the root bus: the test plugs a function into the [`FakePci`] and
//!   raises UP, or raises DOWN to ask for an unplug; the guest's write to EJ
//!   removes the slot's functions from the fake, as QEMU does.
//! - QEMU's PIIX IDE legacy channels ([`ide`]): tests attach disks and CD
//!   drives before boot and change, eject or force out media at run time
//!   through [`FakePlatform::ide`].
//! - `exit(code)` records the code and how much COM2 output existed at that
//!   moment ([`FakePlatform::exited`]), then panics with `guest exit:
//!   <code>`, which tests catch with `std::panic::catch_unwind` (the test
//!   harness keeps the message out of the log unless the test fails).
//!
//! `System::boot` wants a `&'static dyn Platform`: tests `Box::leak` one per
//! test with [`FakePlatform::leak`]. Tests are single-threaded, so interior
//! mutability is plain `Cell`/`RefCell`.

mod ide;

pub use ide::{CD_BLOCK, FakeDrive, FakeIde, MediaError, SECTOR};

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use crate::hw::{ExitCode, Platform};
use crate::pci::config::{Bdf, ConfigSpace};
use crate::pci::fake::{FakePci, Segment};
use crate::uart::{COM1, COM2};

// 16550 register offsets.
const RBR_THR: u16 = 0;
const LCR: u16 = 3;
const LSR: u16 = 5;
const LCR_DLAB: u8 = 0x80;
const LSR_DATA_READY: u8 = 0x01;
/// THR empty and transmitter empty: the fake sends instantly.
const LSR_TX_IDLE: u8 = 0x60;

#[derive(Default)]
struct FakeUart {
    lcr: Cell<u8>,
    input: RefCell<VecDeque<u8>>,
    output: RefCell<Vec<u8>>,
}

impl FakeUart {
    fn inb(&self, offset: u16) -> u8 {
        match offset {
            RBR_THR if self.lcr.get() & LCR_DLAB == 0 => self.input.borrow_mut().pop_front().unwrap_or(0),
            LCR => self.lcr.get(),
            LSR => LSR_TX_IDLE | if self.input.borrow().is_empty() { 0 } else { LSR_DATA_READY },
            _ => 0,
        }
    }

    fn outb(&self, offset: u16, value: u8) {
        match offset {
            // With DLAB set, offsets 0 and 1 are the divisor latch, not data.
            RBR_THR if self.lcr.get() & LCR_DLAB == 0 => self.output.borrow_mut().push(value),
            LCR => self.lcr.set(value),
            // Divisor, IER, FCR, MCR, scratch: nothing to emulate.
            _ => {}
        }
    }
}

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;

// ACPI PCI hot-plug registers (QEMU's pcihp) and the GPE status they set.
const PCIHP_UP: u16 = 0xae00;
const PCIHP_DOWN: u16 = 0xae04;
const PCIHP_EJ: u16 = 0xae08;
const PCIHP_SEL: u16 = 0xae10;
const GPE0_STS: u16 = 0xafe0;

/// The pcihp state of the root bus (bsel 0); other bsels read 0.
#[derive(Default)]
struct AcpiHotplug {
    sel: Cell<u32>,
    up: Cell<u32>,
    down: Cell<u32>,
    gpe_status: Cell<u16>,
    ejected: RefCell<Vec<u8>>,
}

pub struct FakePlatform {
    pub pci: FakePci,
    /// The IDE channels: empty unless a test attaches drives.
    pub ide: FakeIde,
    com1: FakeUart,
    com2: FakeUart,
    config_address: Cell<u32>,
    hotplug: AcpiHotplug,
    ticks: Cell<u64>,
    relaxed: Cell<u64>,
    /// The exit code and the length of COM2's output when `exit` ran.
    exited: Cell<Option<(ExitCode, usize)>>,
}

impl FakePlatform {
    pub fn new(pci: FakePci) -> Self {
        FakePlatform {
            pci,
            ide: FakeIde::default(),
            com1: FakeUart::default(),
            com2: FakeUart::default(),
            config_address: Cell::new(0),
            hotplug: AcpiHotplug::default(),
            ticks: Cell::new(0),
            relaxed: Cell::new(0),
            exited: Cell::new(None),
        }
    }

    /// Attach a drive before boot (see [`FakeIde::attach`]).
    pub fn with_drive(self, channel: usize, unit: usize, drive: FakeDrive) -> Self {
        self.ide.attach(channel, unit, drive);
        self
    }

    /// A platform that lives as long as the test process, as `System::boot`
    /// requires. One per test; the leak is the test's lifetime.
    pub fn leak(self) -> &'static FakePlatform {
        alloc::boxed::Box::leak(alloc::boxed::Box::new(self))
    }

    /// Queue bytes for the guest to read from COM2.
    pub fn push_control(&self, text: &str) {
        self.com2.input.borrow_mut().extend(text.bytes());
    }

    /// Everything the guest wrote to COM2 so far.
    pub fn control_output(&self) -> Vec<u8> {
        self.com2.output.borrow().clone()
    }

    /// Everything the guest wrote to COM1, the console.
    pub fn console_output(&self) -> String {
        String::from_utf8_lossy(&self.com1.output.borrow()).into_owned()
    }

    /// How the guest left, and how many COM2 bytes were out by then.
    pub fn exited(&self) -> Option<(ExitCode, usize)> {
        self.exited.get()
    }

    /// Signal a hot-add on root slot `slot` (plug the functions into
    /// [`FakePlatform::pci`] first), as QEMU's `device_add` does.
    pub fn acpi_hot_add(&self, slot: u8) {
        self.hotplug.up.set(self.hotplug.up.get() | 1 << slot);
        self.hotplug.gpe_status.set(self.hotplug.gpe_status.get() | 2);
    }

    /// Ask the guest to give root slot `slot` up, as QEMU's `device_del`
    /// does. The slot stays until the guest writes EJ.
    pub fn acpi_unplug_request(&self, slot: u8) {
        self.hotplug.down.set(self.hotplug.down.get() | 1 << slot);
        self.hotplug.gpe_status.set(self.hotplug.gpe_status.get() | 2);
    }

    /// Root slots the guest has ejected, in order.
    pub fn acpi_ejected(&self) -> Vec<u8> {
        self.hotplug.ejected.borrow().clone()
    }

    fn pcihp_read(&self, port: u16) -> u32 {
        let h = &self.hotplug;
        let root = h.sel.get() == 0;
        match port {
            // QEMU clears UP when it is read (non-legacy pcihp).
            PCIHP_UP if root => h.up.replace(0),
            PCIHP_DOWN if root => h.down.get(),
            PCIHP_SEL => h.sel.get(),
            _ => 0,
        }
    }

    fn pcihp_write(&self, port: u16, value: u32) {
        let h = &self.hotplug;
        match port {
            PCIHP_SEL => h.sel.set(value),
            // Only the lowest set bit is ejected, as in QEMU.
            PCIHP_EJ if h.sel.get() == 0 && value != 0 => {
                let slot = value.trailing_zeros() as u8;
                for func in 0..8 {
                    self.pci.remove(Segment::ROOT, slot, func);
                }
                h.down.set(h.down.get() & !(1 << slot));
                h.ejected.borrow_mut().push(slot);
            }
            _ => {}
        }
    }

    fn uart(&self, port: u16) -> Option<(&FakeUart, u16)> {
        match port {
            p if (COM1..COM1 + 8).contains(&p) => Some((&self.com1, p - COM1)),
            p if (COM2..COM2 + 8).contains(&p) => Some((&self.com2, p - COM2)),
            _ => None,
        }
    }

    /// The function and register that an access to data port `port`
    /// (0xcfc..=0xcff) reaches under the current CONFIG_ADDRESS.
    fn config_target(&self, port: u16) -> Option<(Bdf, u8)> {
        let address = self.config_address.get();
        if address & 0x8000_0000 == 0 || !(CONFIG_DATA..=CONFIG_DATA + 3).contains(&port) {
            return None;
        }
        let bdf = Bdf::new((address >> 16) as u8, ((address >> 11) & 0x1f) as u8, ((address >> 8) & 0x7) as u8);
        Some((bdf, (address as u8 & 0xfc) + (port - CONFIG_DATA) as u8))
    }
}

impl Platform for FakePlatform {
    fn inb(&self, port: u16) -> u8 {
        if let Some((uart, offset)) = self.uart(port) {
            return uart.inb(offset);
        }
        match port {
            CONFIG_DATA..=0xcff => self.config_target(port).map_or(0xff, |(bdf, reg)| self.pci.read8(bdf, reg)),
            p if FakeIde::claims(p) => self.ide.inb(p),
            _ => 0xff,
        }
    }

    fn outb(&self, port: u16, value: u8) {
        if let Some((uart, offset)) = self.uart(port) {
            uart.outb(offset, value);
        } else if let (CONFIG_DATA..=0xcff, Some((bdf, reg))) = (port, self.config_target(port)) {
            self.pci.write8(bdf, reg, value);
        } else if FakeIde::claims(port) {
            self.ide.outb(port, value);
        }
    }

    fn inw(&self, port: u16) -> u16 {
        match (port, self.config_target(port)) {
            (0xcfc | 0xcfe, Some((bdf, reg))) => self.pci.read16(bdf, reg),
            (GPE0_STS, _) => self.hotplug.gpe_status.get(),
            (p, _) if FakeIde::claims(p) => self.ide.inw(p),
            _ => 0xffff,
        }
    }

    fn outw(&self, port: u16, value: u16) {
        match (port, self.config_target(port)) {
            (0xcfc | 0xcfe, Some((bdf, reg))) => self.pci.write16(bdf, reg, value),
            // Write 1 to clear.
            (GPE0_STS, _) => self.hotplug.gpe_status.set(self.hotplug.gpe_status.get() & !value),
            (p, _) if FakeIde::claims(p) => self.ide.outw(p, value),
            _ => {}
        }
    }

    fn inl(&self, port: u16) -> u32 {
        match (port, self.config_target(port)) {
            (CONFIG_ADDRESS, _) => self.config_address.get(),
            (CONFIG_DATA, Some((bdf, reg))) => self.pci.read32(bdf, reg),
            (PCIHP_UP..=0xae13, _) => self.pcihp_read(port),
            _ => 0xffff_ffff,
        }
    }

    fn outl(&self, port: u16, value: u32) {
        match (port, self.config_target(port)) {
            (CONFIG_ADDRESS, _) => self.config_address.set(value),
            (CONFIG_DATA, Some((bdf, reg))) => self.pci.write32(bdf, reg, value),
            (PCIHP_UP..=0xae13, _) => self.pcihp_write(port, value),
            _ => {}
        }
    }

    fn relax(&self) {
        self.relaxed.set(self.relaxed.get() + 1);
    }

    fn ticks(&self) -> u64 {
        self.ticks.set(self.ticks.get() + 1);
        self.ticks.get()
    }

    fn exit(&self, code: ExitCode) -> ! {
        self.exited.set(Some((code, self.com2.output.borrow().len())));
        panic!("guest exit: {code:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::config::{PortConfig, reg};
    use crate::uart::Uart;

    #[test]
    fn uart_init_does_not_leak_divisor_bytes_into_the_output() {
        let p = FakePlatform::new(FakePci::new());
        let com2 = Uart::new(COM2);
        com2.init(&p);
        com2.write(&p, b"1 ok 0\n");
        assert_eq!(p.control_output(), b"1 ok 0\n");
        assert_eq!(com2.read_byte(&p), None);
        p.push_control("ab");
        assert_eq!((com2.read_byte(&p), com2.read_byte(&p), com2.read_byte(&p)), (Some(b'a'), Some(b'b'), None));
        assert!(p.console_output().is_empty(), "COM1 is a separate port");
    }

    #[test]
    fn config_mechanism_one_reaches_the_fake() {
        let p = FakePlatform::new(FakePci::pc());
        let cfg = PortConfig::new(&p);
        let ide = Bdf::new(0, 1, 1);
        assert_eq!(cfg.read32(ide, reg::VENDOR), 0x7010_8086);
        assert_eq!(cfg.read16(ide, reg::DEVICE), 0x7010);
        assert_eq!(cfg.read8(Bdf::new(0, 1, 0), reg::HEADER_TYPE), 0x80);
        assert_eq!(cfg.read16(Bdf::new(0, 9, 0), reg::VENDOR), 0xffff);
        cfg.write8(ide, reg::INTERRUPT_LINE, 14);
        assert_eq!(cfg.read8(ide, reg::INTERRUPT_LINE), 14);
        assert_eq!(cfg.read8(ide, reg::INTERRUPT_PIN), 0, "sub-dword writes do not touch neighbours");
    }

    #[test]
    fn exit_unwinds_with_the_code() {
        let p = FakePlatform::new(FakePci::new()).leak();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| p.exit(ExitCode::Bug)));
        let payload = outcome.expect_err("exit never returns");
        assert_eq!(payload.downcast_ref::<String>().map(String::as_str), Some("guest exit: Bug"));
        assert_eq!(p.exited(), Some((ExitCode::Bug, 0)));
    }
}
