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
//! - Physical memory ([`FakeMemory`]) for the kernel's DMA buffers, shared
//!   with fake devices, and devices behind BARs ([`FakeBarDevice`]): I/O and
//!   memory accesses reach a device at whatever address the guest programmed
//!   into its function's BARs, while the function decodes them.
//! - `exit(code)` records the code and how much COM2 output existed at that
//!   moment ([`FakePlatform::exited`]), then panics with `guest exit:
//!   <code>`, which tests catch with `std::panic::catch_unwind` (the test
//!   harness keeps the message out of the log unless the test fails).
//!
//! `System::boot` wants a `&'static dyn Platform`: tests `Box::leak` one per
//! test with [`FakePlatform::leak`]. Tests are single-threaded, so interior
//! mutability is plain `Cell`/`RefCell`.

mod ide;
mod memory;
pub mod virtio_scsi;

pub use ide::{CD_BLOCK, FakeDrive, FakeIde, MediaError, SECTOR};
pub use memory::FakeMemory;
pub use virtio_scsi::{FakeMedia, FakeVirtioScsi};

use alloc::collections::VecDeque;
use alloc::rc::Rc;
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
    /// Bytes the host side takes before it stops reading (`None`: no
    /// limit). At 0 THR never empties, as QEMU's 16550 behind a full socket
    /// chardev, until the test gives more room.
    room: Cell<Option<usize>>,
    lcr: Cell<u8>,
    input: RefCell<VecDeque<u8>>,
    output: RefCell<Vec<u8>>,
}

impl FakeUart {
    fn inb(&self, offset: u16) -> u8 {
        match offset {
            RBR_THR if self.lcr.get() & LCR_DLAB == 0 => self.input.borrow_mut().pop_front().unwrap_or(0),
            LCR => self.lcr.get(),
            LSR => {
                let tx = if self.room.get() == Some(0) { 0 } else { LSR_TX_IDLE };
                tx | if self.input.borrow().is_empty() { 0 } else { LSR_DATA_READY }
            }
            _ => 0,
        }
    }

    fn outb(&self, offset: u16, value: u8) {
        match offset {
            // With DLAB set, offsets 0 and 1 are the divisor latch, not data.
            RBR_THR if self.lcr.get() & LCR_DLAB == 0 => {
                self.room.set(self.room.get().map(|n| n.saturating_sub(1)));
                self.output.borrow_mut().push(value);
            }
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

/// A device model behind a function's BARs (I/O or memory).
pub trait FakeBarDevice {
    /// Where the function sits: (segment, device, function) in the [`FakePci`].
    fn location(&self) -> (Segment, u8, u8);
    fn bar_read(&self, bar: u8, offset: u64, width: usize) -> u64;
    fn bar_write(&self, bar: u8, offset: u64, width: usize, value: u64);
    /// Work the device does in its own time, between the guest's passes
    /// (QEMU's main loop): called from `relax`.
    fn tick(&self) {}
}

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
    /// Physical memory: DMA buffers, shared with the devices.
    pub memory: Rc<FakeMemory>,
    bar_devices: RefCell<Vec<Rc<dyn FakeBarDevice>>>,
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
            memory: Rc::new(FakeMemory::default()),
            bar_devices: RefCell::new(Vec::new()),
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

    /// Put a device model behind its function's BARs (insert the function
    /// into [`FakePlatform::pci`] too). It answers until detached.
    pub fn attach_bar_device(&self, device: Rc<dyn FakeBarDevice>) {
        self.bar_devices.borrow_mut().push(device);
    }

    /// Take away the device models at `location` (after removing the
    /// function, as an unplug does).
    pub fn detach_bar_device(&self, location: (Segment, u8, u8)) {
        self.bar_devices.borrow_mut().retain(|d| d.location() != location);
    }

    /// The device and offset an access of `width` bytes at `addr` reaches.
    fn bar_target(&self, io: bool, addr: u64, width: usize) -> Option<(Rc<dyn FakeBarDevice>, u8, u64)> {
        let devices = self.bar_devices.borrow();
        for device in devices.iter() {
            let (segment, dev, func) = device.location();
            let Some(function) = self.pci.function(segment, dev, func) else { continue };
            for bar in function.decoded_bars() {
                if bar.io == io && addr >= bar.base && addr + width as u64 <= bar.base + bar.size {
                    return Some((Rc::clone(device), bar.index, addr - bar.base));
                }
            }
        }
        None
    }

    fn bar_read(&self, io: bool, addr: u64, width: usize) -> Option<u64> {
        let (device, bar, offset) = self.bar_target(io, addr, width)?;
        Some(device.bar_read(bar, offset, width))
    }

    fn bar_write(&self, io: bool, addr: u64, width: usize, value: u64) -> bool {
        match self.bar_target(io, addr, width) {
            Some((device, bar, offset)) => {
                device.bar_write(bar, offset, width, value);
                true
            }
            None => false,
        }
    }

    /// Memory accesses nothing decodes read all ones, as on PCI.
    fn mmio_read(&self, addr: u64, width: usize) -> u64 {
        self.bar_read(false, addr, width).unwrap_or(u64::MAX >> (64 - 8 * width))
    }

    fn mmio_write(&self, addr: u64, width: usize, value: u64) {
        self.bar_write(false, addr, width, value);
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

    /// Stop (true) or resume (false) reading COM1 on the host side.
    pub fn stall_console(&self, stalled: bool) {
        self.com1.room.set(stalled.then_some(0));
    }

    /// Stop (true) or resume (false) reading COM2 on the host side.
    pub fn stall_control(&self, stalled: bool) {
        self.com2.room.set(stalled.then_some(0));
    }

    /// The host side reads `bytes` more bytes of COM2, then stops.
    pub fn control_room(&self, bytes: usize) {
        self.com2.room.set(Some(bytes));
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
            p => self.bar_read(true, u64::from(p), 1).map_or(0xff, |v| v as u8),
        }
    }

    fn outb(&self, port: u16, value: u8) {
        if let Some((uart, offset)) = self.uart(port) {
            uart.outb(offset, value);
        } else if let (CONFIG_DATA..=0xcff, Some((bdf, reg))) = (port, self.config_target(port)) {
            self.pci.write8(bdf, reg, value);
        } else if FakeIde::claims(port) {
            self.ide.outb(port, value);
        } else {
            self.bar_write(true, u64::from(port), 1, u64::from(value));
        }
    }

    fn inw(&self, port: u16) -> u16 {
        match (port, self.config_target(port)) {
            (0xcfc | 0xcfe, Some((bdf, reg))) => self.pci.read16(bdf, reg),
            (GPE0_STS, _) => self.hotplug.gpe_status.get(),
            (p, _) if FakeIde::claims(p) => self.ide.inw(p),
            (p, _) => self.bar_read(true, u64::from(p), 2).map_or(0xffff, |v| v as u16),
        }
    }

    fn outw(&self, port: u16, value: u16) {
        match (port, self.config_target(port)) {
            (0xcfc | 0xcfe, Some((bdf, reg))) => self.pci.write16(bdf, reg, value),
            // Write 1 to clear.
            (GPE0_STS, _) => self.hotplug.gpe_status.set(self.hotplug.gpe_status.get() & !value),
            (p, _) if FakeIde::claims(p) => self.ide.outw(p, value),
            (p, _) => {
                self.bar_write(true, u64::from(p), 2, u64::from(value));
            }
        }
    }

    fn inl(&self, port: u16) -> u32 {
        match (port, self.config_target(port)) {
            (CONFIG_ADDRESS, _) => self.config_address.get(),
            (CONFIG_DATA, Some((bdf, reg))) => self.pci.read32(bdf, reg),
            (PCIHP_UP..=0xae13, _) => self.pcihp_read(port),
            (p, _) => self.bar_read(true, u64::from(p), 4).map_or(0xffff_ffff, |v| v as u32),
        }
    }

    fn outl(&self, port: u16, value: u32) {
        match (port, self.config_target(port)) {
            (CONFIG_ADDRESS, _) => self.config_address.set(value),
            (CONFIG_DATA, Some((bdf, reg))) => self.pci.write32(bdf, reg, value),
            (PCIHP_UP..=0xae13, _) => self.pcihp_write(port, value),
            (p, _) => {
                self.bar_write(true, u64::from(p), 4, u64::from(value));
            }
        }
    }

    fn relax(&self) {
        self.relaxed.set(self.relaxed.get() + 1);
        let devices: Vec<Rc<dyn FakeBarDevice>> = self.bar_devices.borrow().clone();
        for device in devices {
            device.tick();
        }
    }

    /// Advances a millisecond's worth (at 1 GHz) per call, so bounded waits
    /// on a stalled fake UART end after a few dozen polls.
    fn ticks(&self) -> u64 {
        self.ticks.set(self.ticks.get() + 1_000_000);
        self.ticks.get()
    }

    fn mmio_read8(&self, addr: u64) -> u8 {
        self.mmio_read(addr, 1) as u8
    }
    fn mmio_read16(&self, addr: u64) -> u16 {
        self.mmio_read(addr, 2) as u16
    }
    fn mmio_read32(&self, addr: u64) -> u32 {
        self.mmio_read(addr, 4) as u32
    }
    fn mmio_read64(&self, addr: u64) -> u64 {
        self.mmio_read(addr, 8)
    }
    fn mmio_write8(&self, addr: u64, value: u8) {
        self.mmio_write(addr, 1, u64::from(value));
    }
    fn mmio_write16(&self, addr: u64, value: u16) {
        self.mmio_write(addr, 2, u64::from(value));
    }
    fn mmio_write32(&self, addr: u64, value: u32) {
        self.mmio_write(addr, 4, u64::from(value));
    }
    fn mmio_write64(&self, addr: u64, value: u64) {
        self.mmio_write(addr, 8, value);
    }

    fn dma_alloc(&self, size: usize, align: usize) -> Option<u64> {
        self.memory.alloc(size, align)
    }
    fn dma_free(&self, phys: u64, size: usize, _align: usize) {
        self.memory.free(phys, size);
    }
    fn dma_read(&self, phys: u64, buf: &mut [u8]) {
        self.memory.read(phys, buf);
    }
    fn dma_write(&self, phys: u64, data: &[u8]) {
        self.memory.write(phys, data);
    }
    fn dma_load(&self, phys: u64, width: usize) -> u64 {
        self.memory.load(phys, width)
    }
    fn dma_store(&self, phys: u64, width: usize, value: u64) {
        self.memory.store(phys, width, value);
    }
    fn dma_fence(&self) {}

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
        assert_eq!(com2.send_all_before(&p, b"1 ok 0\n", 0), 7, "an idle UART takes bytes without waiting");
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

    /// Remembers the last write and answers reads with bar/offset.
    struct Probe {
        last: RefCell<Option<(u8, u64, usize, u64)>>,
    }

    impl FakeBarDevice for Probe {
        fn location(&self) -> (Segment, u8, u8) {
            (Segment::ROOT, 4, 0)
        }
        fn bar_read(&self, bar: u8, offset: u64, _width: usize) -> u64 {
            u64::from(bar) << 16 | offset
        }
        fn bar_write(&self, bar: u8, offset: u64, width: usize, value: u64) {
            *self.last.borrow_mut() = Some((bar, offset, width, value));
        }
    }

    #[test]
    fn bar_devices_answer_at_the_programmed_addresses_while_decoding() {
        use crate::pci::fake::{FakeBar, FakeFunction};
        let p = FakePlatform::new(FakePci::pc());
        let f = FakeFunction::endpoint(0x1af4, 0x1004, 0x01_00_00)
            .bar(0, FakeBar::Io { size: 64 })
            .bar(4, FakeBar::Mem64 { size: 0x4000, prefetchable: true });
        p.pci.insert(Segment::ROOT, 4, 0, f);
        let probe = Rc::new(Probe { last: RefCell::new(None) });
        p.attach_bar_device(probe.clone());
        let cfg = PortConfig::new(&p);
        let bdf = Bdf::new(0, 4, 0);
        cfg.write32(bdf, reg::BAR0, 0xc040);
        cfg.write32(bdf, reg::BAR0 + 16, 0xfe00_000c);
        cfg.write32(bdf, reg::BAR0 + 20, 0);
        assert_eq!(p.inw(0xc042), 0xffff, "nothing decodes before COMMAND enables it");
        cfg.write16(bdf, reg::COMMAND, reg::COMMAND_IO | reg::COMMAND_MEMORY);
        assert_eq!(p.inw(0xc042), 2);
        p.outl(0xc050, 7);
        assert_eq!(*probe.last.borrow(), Some((0, 0x10, 4, 7)));
        assert_eq!(p.mmio_read32(0xfe00_3000), 4 << 16 | 0x3000);
        p.mmio_write64(0xfe00_0008, 1 << 40);
        assert_eq!(*probe.last.borrow(), Some((4, 8, 8, 1 << 40)));
        assert_eq!(p.mmio_read32(0xfe00_4000), 0xffff_ffff, "past the BAR");
        p.detach_bar_device((Segment::ROOT, 4, 0));
        assert_eq!(p.inw(0xc042), 0xffff);
    }

    #[test]
    fn dma_buffers_free_on_drop_and_check_their_bounds() {
        use crate::hw::DmaBuffer;
        let p = FakePlatform::new(FakePci::new()).leak();
        let buf = DmaBuffer::new(p, 100, 64).unwrap();
        assert_eq!(buf.phys() % 64, 0);
        buf.write_u32(4, 0xdead_beef);
        buf.write(8, b"abc");
        assert_eq!(p.memory.u32(buf.phys() + 4), 0xdead_beef, "devices see the same memory");
        assert_eq!(p.memory.u64(buf.phys()), 0xdead_beef_0000_0000);
        assert_eq!(buf.to_vec(8, 3), b"abc");
        let overrun = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| buf.read_u32(98)));
        assert!(overrun.is_err(), "an access past the end panics");
        assert_eq!(p.memory.live_allocations(), 1);
        drop(buf);
        assert_eq!(p.memory.live_allocations(), 0);
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
