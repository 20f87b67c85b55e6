//! An emulated PCI configuration space for host tests.
//!
//! Functions live on *segments*: the root bus is [`Segment::ROOT`], and every
//! bridge (header type 1) owns one child segment. As on real hardware, bus
//! numbers are not a property of the functions: a config access for bus `n`
//! reaches a child segment only once the bridge above it has been programmed
//! with SECONDARY_BUS..=SUBORDINATE_BUS covering `n`. Until then, and for
//! absent functions, reads return all ones (vendor 0xffff).
//!
//! Each function is 256 bytes of config space plus a per-byte mask of the
//! bits software may write. Everything else follows from the mask: writing
//! all ones to a BAR reads back its size mask with the read-only type bits,
//! and a bridge without an I/O window simply has IO_BASE read-only zero.
//!
//! Functions can be inserted and removed at any time, which is how tests
//! model hot-plug ([`FakePci::insert`], [`FakePci::remove`]).

use alloc::collections::BTreeMap;
use core::cell::RefCell;

use super::config::{Bdf, ConfigSpace, reg};

/// The functions behind one bridge, or the root bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Segment(u32);

impl Segment {
    pub const ROOT: Segment = Segment(0);
}

/// A BAR as the hardware implements it. Sizes are powers of two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeBar {
    /// An I/O BAR decoding 16 address bits (the upper half reads 0, which
    /// the kernel's sizing must tolerate).
    Io {
        size: u32,
    },
    Mem32 {
        size: u32,
        prefetchable: bool,
    },
    /// Takes this BAR and the next one.
    Mem64 {
        size: u64,
        prefetchable: bool,
    },
}

/// One function's configuration space.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    config: [u8; 256],
    writable: [u8; 256],
}

impl FakeFunction {
    fn blank(vendor: u16, device: u16, class: u32, header_type: u8) -> Self {
        let mut f = FakeFunction { config: [0; 256], writable: [0; 256] };
        f.set16(reg::VENDOR, vendor);
        f.set16(reg::DEVICE, device);
        f.set32(reg::CLASS_REV, class << 8);
        f.config[usize::from(reg::HEADER_TYPE)] = header_type;
        // COMMAND: I/O, memory and bus-master enables.
        f.writable[usize::from(reg::COMMAND)] = 0x07;
        // Cache line size, latency timer, interrupt line.
        f.writable[0x0c] = 0xff;
        f.writable[0x0d] = 0xff;
        f.writable[usize::from(reg::INTERRUPT_LINE)] = 0xff;
        f
    }

    /// A type 0 function: no BARs, no interrupt pin until given.
    pub fn endpoint(vendor: u16, device: u16, class: u32) -> Self {
        Self::blank(vendor, device, class, 0x00)
    }

    /// A PCI-to-PCI bridge (class 0x060400, header type 1) that forwards
    /// I/O, memory and prefetchable memory and has programmable bus numbers.
    pub fn bridge(vendor: u16, device: u16) -> Self {
        let mut f = Self::blank(vendor, device, 0x06_04_00, 0x01);
        for offset in [reg::PRIMARY_BUS, reg::SECONDARY_BUS, reg::SUBORDINATE_BUS, 0x1b] {
            f.writable[usize::from(offset)] = 0xff;
        }
        // I/O window, 32-bit capable (type nibble 0x1, read-only).
        f.config[usize::from(reg::IO_BASE)] = 0x01;
        f.config[usize::from(reg::IO_LIMIT)] = 0x01;
        f.writable[usize::from(reg::IO_BASE)] = 0xf0;
        f.writable[usize::from(reg::IO_LIMIT)] = 0xf0;
        f.set_writable(reg::IO_BASE_UPPER, &[0xff; 4]);
        // Memory window: bits 31..20 of base and limit.
        f.set_writable(reg::MEMORY_BASE, &[0xf0, 0xff, 0xf0, 0xff]);
        // Prefetchable window, 64-bit capable (type nibble 0x1).
        f.config[usize::from(reg::PREF_MEMORY_BASE)] = 0x01;
        f.config[usize::from(reg::PREF_MEMORY_LIMIT)] = 0x01;
        f.set_writable(reg::PREF_MEMORY_BASE, &[0xf0, 0xff, 0xf0, 0xff]);
        f.set_writable(reg::PREF_BASE_UPPER, &[0xff; 8]);
        f.set_writable(reg::BRIDGE_CONTROL, &[0xff, 0x0f]);
        f
    }

    /// A bridge that does not forward I/O: IO_BASE/IO_LIMIT are read-only 0
    /// (PCIe root ports may be built this way, e.g. `io-reserve=0`).
    pub fn without_io_window(mut self) -> Self {
        for offset in [reg::IO_BASE, reg::IO_LIMIT] {
            self.config[usize::from(offset)] = 0;
            self.writable[usize::from(offset)] = 0;
        }
        self.set_writable(reg::IO_BASE_UPPER, &[0; 4]);
        self
    }

    /// Set the multifunction bit of the header type (meaningful on func 0).
    pub fn multifunction(mut self) -> Self {
        self.config[usize::from(reg::HEADER_TYPE)] |= 0x80;
        self
    }

    /// Interrupt pin: 1 = INTA .. 4 = INTD.
    pub fn pin(mut self, pin: u8) -> Self {
        self.config[usize::from(reg::INTERRUPT_PIN)] = pin;
        self
    }

    pub fn revision(mut self, revision: u8) -> Self {
        self.config[usize::from(reg::CLASS_REV)] = revision;
        self
    }

    /// Make `len` bytes at `offset` fully writable (chipset registers such
    /// as the PIRQ route controls).
    pub fn writable(mut self, offset: u8, len: usize) -> Self {
        let start = usize::from(offset);
        for mask in &mut self.writable[start..start + len] {
            *mask = 0xff;
        }
        self
    }

    /// Implement BAR `index` (0..=5) with the given type and size.
    pub fn bar(mut self, index: u8, bar: FakeBar) -> Self {
        let offset = reg::BAR0 + 4 * index;
        match bar {
            FakeBar::Io { size } => {
                assert!(size.is_power_of_two() && size >= 4, "I/O BAR size {size:#x}");
                let mask = !(size - 1) & 0xfffc;
                self.set32(offset, 0x1);
                self.set_writable(offset, &mask.to_le_bytes());
            }
            FakeBar::Mem32 { size, prefetchable } => {
                assert!(size.is_power_of_two() && size >= 16, "memory BAR size {size:#x}");
                self.set32(offset, if prefetchable { 0x8 } else { 0x0 });
                self.set_writable(offset, &(!(size - 1) & !0xf).to_le_bytes());
            }
            FakeBar::Mem64 { size, prefetchable } => {
                assert!(size.is_power_of_two() && size >= 16, "memory BAR size {size:#x}");
                assert!(index < 5, "a 64-bit BAR needs the next BAR too");
                let mask = !(size - 1);
                self.set32(offset, if prefetchable { 0xc } else { 0x4 });
                self.set_writable(offset, &((mask as u32) & !0xf).to_le_bytes());
                self.set_writable(offset + 4, &((mask >> 32) as u32).to_le_bytes());
            }
        }
        self
    }

    fn set16(&mut self, offset: u8, value: u16) {
        let at = usize::from(offset);
        self.config[at..at + 2].copy_from_slice(&value.to_le_bytes());
    }

    fn set32(&mut self, offset: u8, value: u32) {
        let at = usize::from(offset);
        self.config[at..at + 4].copy_from_slice(&value.to_le_bytes());
    }

    fn set_writable(&mut self, offset: u8, masks: &[u8]) {
        let at = usize::from(offset);
        self.writable[at..at + masks.len()].copy_from_slice(masks);
    }

    /// Raw config bytes, as software would read them.
    pub fn read(&self, offset: u8, width: usize) -> u32 {
        let at = usize::from(offset);
        self.config[at..at + width].iter().rev().fold(0, |acc, b| (acc << 8) | u32::from(*b))
    }

    /// A software write: only the writable bits change.
    pub fn write(&mut self, offset: u8, width: usize, value: u32) {
        let at = usize::from(offset);
        for (i, byte) in value.to_le_bytes().iter().take(width).enumerate() {
            let mask = self.writable[at + i];
            self.config[at + i] = (self.config[at + i] & !mask) | (byte & mask);
        }
    }

    fn is_bridge(&self) -> bool {
        self.config[usize::from(reg::HEADER_TYPE)] & 0x7f == 1
    }
}

struct Entry {
    function: FakeFunction,
    /// The segment behind this function, for bridges.
    child: Option<Segment>,
}

#[derive(Default)]
struct Topology {
    functions: BTreeMap<(Segment, u8, u8), Entry>,
    next_segment: u32,
}

impl Topology {
    /// Which segment a config access for `bus` reaches, walking down from
    /// the root through bridges whose bus range covers it.
    fn route(&self, segment: Segment, segment_bus: u8, bus: u8) -> Option<Segment> {
        if bus == segment_bus {
            return Some(segment);
        }
        let bridges = self.functions.range((segment, 0, 0)..=(segment, 0xff, 0xff)).filter_map(|(_, e)| {
            let child = e.child?;
            let secondary = e.function.config[usize::from(reg::SECONDARY_BUS)];
            let subordinate = e.function.config[usize::from(reg::SUBORDINATE_BUS)];
            // Secondary 0 means "not programmed yet"; requiring it above our
            // own number also rules out loops through misprogrammed bridges.
            (secondary > segment_bus && (secondary..=subordinate).contains(&bus)).then_some((child, secondary))
        });
        for (child, secondary) in bridges {
            if let Some(found) = self.route(child, secondary, bus) {
                return Some(found);
            }
        }
        None
    }

    fn entry_mut(&mut self, bdf: Bdf) -> Option<&mut Entry> {
        let segment = self.route(Segment::ROOT, 0, bdf.bus)?;
        self.functions.get_mut(&(segment, bdf.dev, bdf.func))
    }
}

/// The emulated configuration space of a whole machine.
pub struct FakePci {
    topology: RefCell<Topology>,
}

impl Default for FakePci {
    fn default() -> Self {
        Self::new()
    }
}

impl FakePci {
    /// An empty root bus.
    pub fn new() -> Self {
        FakePci { topology: RefCell::new(Topology { functions: BTreeMap::new(), next_segment: 1 }) }
    }

    /// Plug a function in. A bridge gets a fresh, empty child segment,
    /// which [`FakePci::child_segment`] returns.
    pub fn insert(&self, segment: Segment, dev: u8, func: u8, function: FakeFunction) {
        assert!(dev < 32 && func < 8, "no such slot {dev:#x}.{func}");
        let mut t = self.topology.borrow_mut();
        let child = function.is_bridge().then(|| {
            let child = Segment(t.next_segment);
            t.next_segment += 1;
            child
        });
        t.functions.insert((segment, dev, func), Entry { function, child });
    }

    /// Unplug a function. Whatever sat behind a removed bridge becomes
    /// unreachable, as on hardware.
    pub fn remove(&self, segment: Segment, dev: u8, func: u8) -> Option<FakeFunction> {
        self.topology.borrow_mut().functions.remove(&(segment, dev, func)).map(|e| e.function)
    }

    /// The segment behind the bridge at (`segment`, `dev`, `func`).
    pub fn child_segment(&self, segment: Segment, dev: u8, func: u8) -> Option<Segment> {
        self.topology.borrow().functions.get(&(segment, dev, func))?.child
    }

    /// A copy of a function's current state, by position rather than by bus
    /// number, so tests can check what the kernel programmed.
    pub fn function(&self, segment: Segment, dev: u8, func: u8) -> Option<FakeFunction> {
        self.topology.borrow().functions.get(&(segment, dev, func)).map(|e| e.function.clone())
    }

    fn read(&self, bdf: Bdf, offset: u8, width: usize) -> u32 {
        let offset = offset & !(width as u8 - 1);
        let mut t = self.topology.borrow_mut();
        match t.entry_mut(bdf) {
            Some(e) => e.function.read(offset, width),
            None => u32::MAX >> (32 - 8 * width),
        }
    }

    fn write(&self, bdf: Bdf, offset: u8, width: usize, value: u32) {
        let offset = offset & !(width as u8 - 1);
        if let Some(e) = self.topology.borrow_mut().entry_mut(bdf) {
            e.function.write(offset, width, value);
        }
    }

    /// `-machine pc`: i440FX host bridge, PIIX3 ISA bridge (multifunction,
    /// with its PIRQ route registers at 0x60..0x63), PIIX3 IDE (legacy mode:
    /// no pin, bus-master I/O BAR4 of 16 bytes) and PIIX4 ACPI (pin A).
    pub fn pc() -> Self {
        let pci = FakePci::new();
        let root = Segment::ROOT;
        pci.insert(root, 0, 0, FakeFunction::endpoint(0x8086, 0x1237, 0x06_00_00).revision(0x02));
        pci.insert(root, 1, 0, FakeFunction::endpoint(0x8086, 0x7000, 0x06_01_00).multifunction().writable(0x60, 4));
        pci.insert(root, 1, 1, FakeFunction::endpoint(0x8086, 0x7010, 0x01_01_80).bar(4, FakeBar::Io { size: 16 }));
        pci.insert(root, 1, 3, FakeFunction::endpoint(0x8086, 0x7113, 0x06_80_00).revision(0x03).pin(1));
        pci
    }

    /// `-machine q35` with two `pcie-root-port`s at 00:10.0 and 00:11.0:
    /// Q35 host bridge, ICH9 LPC (multifunction, PIRQ A–H routes at
    /// 0x60..0x63 and 0x68..0x6b), ICH9 AHCI (BAR4 I/O 32, BAR5 4 KiB, pin A)
    /// and ICH9 SMBus (BAR4 I/O 64).
    pub fn q35() -> Self {
        let pci = FakePci::new();
        let root = Segment::ROOT;
        pci.insert(root, 0, 0, FakeFunction::endpoint(0x8086, 0x29c0, 0x06_00_00));
        pci.insert(root, 0x10, 0, FakeFunction::bridge(0x1b36, 0x000c).pin(1));
        pci.insert(root, 0x11, 0, FakeFunction::bridge(0x1b36, 0x000c).pin(1));
        pci.insert(
            root,
            0x1f,
            0,
            FakeFunction::endpoint(0x8086, 0x2918, 0x06_01_00).multifunction().writable(0x60, 4).writable(0x68, 4),
        );
        pci.insert(
            root,
            0x1f,
            2,
            FakeFunction::endpoint(0x8086, 0x2922, 0x01_06_01)
                .bar(4, FakeBar::Io { size: 32 })
                .bar(5, FakeBar::Mem32 { size: 0x1000, prefetchable: false })
                .pin(1),
        );
        pci.insert(root, 0x1f, 3, FakeFunction::endpoint(0x8086, 0x2930, 0x0c_05_00).bar(4, FakeBar::Io { size: 64 }));
        pci
    }
}

impl ConfigSpace for FakePci {
    fn read32(&self, bdf: Bdf, offset: u8) -> u32 {
        self.read(bdf, offset, 4)
    }
    fn write32(&self, bdf: Bdf, offset: u8, value: u32) {
        self.write(bdf, offset, 4, value)
    }
    fn read16(&self, bdf: Bdf, offset: u8) -> u16 {
        self.read(bdf, offset, 2) as u16
    }
    fn write16(&self, bdf: Bdf, offset: u8, value: u16) {
        self.write(bdf, offset, 2, u32::from(value))
    }
    fn read8(&self, bdf: Bdf, offset: u8) -> u8 {
        self.read(bdf, offset, 1) as u8
    }
    fn write8(&self, bdf: Bdf, offset: u8, value: u8) {
        self.write(bdf, offset, 1, u32::from(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_functions_read_all_ones() {
        let pci = FakePci::pc();
        assert_eq!(pci.read16(Bdf::new(0, 2, 0), reg::VENDOR), 0xffff);
        assert_eq!(pci.read32(Bdf::new(0, 1, 2), reg::VENDOR), 0xffff_ffff);
        assert_eq!(pci.read8(Bdf::new(5, 0, 0), reg::HEADER_TYPE), 0xff, "no bridge decodes bus 5");
        assert_eq!(pci.read16(Bdf::new(0, 1, 1), reg::VENDOR), 0x8086);
    }

    #[test]
    fn bar_sizing_reads_back_the_mask_with_read_only_type_bits() {
        let pci = FakePci::new();
        let f = FakeFunction::endpoint(0x1af4, 0x1000, 0x02_00_00)
            .bar(0, FakeBar::Io { size: 32 })
            .bar(1, FakeBar::Mem32 { size: 0x1000, prefetchable: false })
            .bar(2, FakeBar::Mem64 { size: 0x4000, prefetchable: true });
        pci.insert(Segment::ROOT, 3, 0, f);
        let bdf = Bdf::new(0, 3, 0);
        let probe = |offset| {
            pci.write32(bdf, offset, 0xffff_ffff);
            pci.read32(bdf, offset)
        };
        assert_eq!(probe(0x10), 0x0000_ffe1, "I/O: 16 decoded bits, type bit 0 set");
        assert_eq!(probe(0x14), 0xffff_f000, "mem32, not prefetchable");
        assert_eq!(probe(0x18), 0xffff_c00c, "mem64 prefetchable: type bits 0b1100");
        assert_eq!(probe(0x1c), 0xffff_ffff, "the upper half of a small 64-bit BAR");
        assert_eq!(probe(0x20), 0, "unimplemented BAR");
        pci.write32(bdf, 0x10, 0xc040);
        assert_eq!(pci.read32(bdf, 0x10), 0xc041);
        pci.write32(bdf, 0x10, 0xc04c);
        assert_eq!(pci.read32(bdf, 0x10), 0xc041, "bits below the size stay zero");
        pci.write16(bdf, reg::VENDOR, 0x1234);
        assert_eq!(pci.read16(bdf, reg::VENDOR), 0x1af4, "IDs are read-only");
    }

    #[test]
    fn bridges_route_their_secondary_bus_to_the_child_segment() {
        let pci = FakePci::q35();
        let port = Bdf::new(0, 0x10, 0);
        let behind = pci.child_segment(Segment::ROOT, 0x10, 0).expect("a root port is a bridge");
        pci.insert(behind, 0, 0, FakeFunction::endpoint(0x1af4, 0x1000, 0x02_00_00));
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0xffff, "bus 1 is not decoded before numbering");
        pci.write8(port, reg::SECONDARY_BUS, 1);
        pci.write8(port, reg::SUBORDINATE_BUS, 1);
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0x1af4);
        assert_eq!(pci.read16(Bdf::new(2, 0, 0), reg::VENDOR), 0xffff, "outside the bridge's range");
        pci.remove(behind, 0, 0);
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0xffff, "hot-removed");
    }

    #[test]
    fn a_bridge_without_an_io_window_keeps_io_base_zero() {
        let pci = FakePci::new();
        pci.insert(Segment::ROOT, 2, 0, FakeFunction::bridge(0x1b36, 0x000c).without_io_window());
        pci.insert(Segment::ROOT, 3, 0, FakeFunction::bridge(0x1b36, 0x000c));
        for (dev, expected) in [(2, 0x00), (3, 0xf1)] {
            let bdf = Bdf::new(0, dev, 0);
            pci.write8(bdf, reg::IO_BASE, 0xf0);
            assert_eq!(pci.read8(bdf, reg::IO_BASE), expected);
        }
        assert_eq!(pci.read8(Bdf::new(0, 3, 0), reg::HEADER_TYPE), 0x01);
        assert_eq!(pci.read32(Bdf::new(0, 3, 0), reg::CLASS_REV) >> 8, 0x06_04_00);
    }
}
