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
//!
//! Bridges built with [`FakeFunction::pcie_slot`] are PCIe root ports with a
//! hot-plug capable slot, following QEMU's native PCIe hot-plug
//! (`hw/pci/pcie.c`, docs/qemu-behaviour.md):
//! - [`FakePci::pcie_hot_add`] (`device_add`) sets SLTSTA PDS | PDC | ABP; a
//!   device behind a powered-off slot reads as absent until the guest powers
//!   the slot on (SLTCTL PCC=0);
//! - [`FakePci::pcie_unplug_request`] (`device_del`) sets ABP and nothing
//!   else; the device goes when the guest writes SLTCTL with PCC=1 and the
//!   power indicator off while the slot was not already in that state,
//!   leaving PDC set and PDS clear;
//! - SLTSTA is write-1-to-clear, but writing 1 to an event bit that is not
//!   set makes QEMU ignore the whole write; every SLTCTL write sets CC.
//!
//! Functions inserted behind a slot with [`FakePci::insert`] are cold-plugged:
//! the slot is powered and shows presence, as QEMU sets it up at reset.

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

/// A BAR as the function decodes it right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodedBar {
    pub index: u8,
    pub io: bool,
    pub base: u64,
    pub size: u64,
}

/// One function's configuration space.
#[derive(Clone, Debug)]
pub struct FakeFunction {
    config: [u8; 256],
    writable: [u8; 256],
    /// Offset of the PCIe capability of a hot-plug capable root port.
    slot_cap: Option<u8>,
}

/// Where the fake root ports keep their capabilities: power management at
/// 0x48, then PCIe at 0x54 (QEMU's offset for the PCIe capability).
pub const PCIE_CAP: u8 = 0x54;
/// Where QEMU's `pcie-root-port` has its MSI-X and bridge subsystem-ID
/// capabilities (the list runs PCIe → MSI-X → SSVID).
const MSIX_CAP: u8 = 0x48;
const SSVID_CAP: u8 = 0x40;

/// Slot registers, as offsets inside the PCIe capability, and their bits.
pub mod slot {
    pub const LNKSTA: u8 = 0x12;
    pub const SLTCAP: u8 = 0x14;
    pub const SLTCTL: u8 = 0x18;
    pub const SLTSTA: u8 = 0x1a;

    pub const ABP: u16 = 1 << 0;
    pub const PDC: u16 = 1 << 3;
    pub const CC: u16 = 1 << 4;
    pub const PDS: u16 = 1 << 6;
    /// ABP, PFD, MRLSC, PDC, CC: the bits a stray 1 makes QEMU revert.
    pub const EVENTS: u16 = 0x001f;
    /// The write-1-to-clear bits: the events and DLLSC.
    pub const W1C: u16 = 0x011f;

    pub const PIC_MASK: u16 = 0x0300;
    pub const PIC_ON: u16 = 0x0100;
    pub const PIC_OFF: u16 = 0x0300;
    pub const PCC_OFF: u16 = 0x0400;
    /// Everything software may write in SLTCTL.
    pub const CTL_WRITABLE: u16 = 0x1fff;
    /// An empty slot in native mode: power off, indicators off.
    pub const CTL_EMPTY: u16 = 0x07c0;
    /// Data link layer link active, x1 at 2.5 GT/s.
    pub const LNKSTA_UP: u16 = 0x2011;
    pub const LNKSTA_DOWN: u16 = 0x0011;

    /// QEMU removes the device only on this combination.
    pub fn powered_off(ctl: u16) -> bool {
        ctl & PCC_OFF != 0 && ctl & PIC_MASK == PIC_OFF
    }
}

impl FakeFunction {
    fn blank(vendor: u16, device: u16, class: u32, header_type: u8) -> Self {
        let mut f = FakeFunction { config: [0; 256], writable: [0; 256], slot_cap: None };
        f.set16(reg::VENDOR, vendor);
        f.set16(reg::DEVICE, device);
        f.set32(reg::CLASS_REV, class << 8);
        f.config[usize::from(reg::HEADER_TYPE)] = header_type;
        if header_type == 0 {
            // QEMU's default subsystem: Red Hat (0x1af4), 0x1100.
            f.set32(0x2c, 0x1100_1af4);
        }
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

    /// Make a bridge a PCIe root port with a hot-plug capable slot (number
    /// `number`): SLTCAP as QEMU's `pcie-root-port` (ABP, PCP, AIP, PIP,
    /// HPS, HPC), the slot-implemented flag, and an empty slot powered off.
    pub fn pcie_slot(mut self, number: u16) -> Self {
        assert!(self.is_bridge(), "only bridges have slots");
        self.config[usize::from(reg::STATUS)] |= reg::STATUS_CAP_LIST as u8;
        self.config[usize::from(reg::CAP_PTR)] = PCIE_CAP;
        self.config[usize::from(PCIE_CAP)] = 0x10;
        self.config[usize::from(PCIE_CAP) + 1] = MSIX_CAP;
        self.config[usize::from(MSIX_CAP)] = 0x11;
        self.config[usize::from(MSIX_CAP) + 1] = SSVID_CAP;
        self.config[usize::from(SSVID_CAP)] = 0x0d;
        self.config[usize::from(SSVID_CAP) + 1] = 0;
        // Version 2, root port (type 4), slot implemented.
        self.set16(PCIE_CAP + 2, 0x0002 | (4 << 4) | (1 << 8));
        self.set32(PCIE_CAP + slot::SLTCAP, 0x7b | (u32::from(number) << 19));
        self.set16(PCIE_CAP + slot::SLTCTL, slot::CTL_EMPTY);
        self.set16(PCIE_CAP + slot::LNKSTA, slot::LNKSTA_DOWN);
        self.slot_cap = Some(PCIE_CAP);
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

    /// Append a capability (`id`, then `body` after the next pointer) at
    /// `offset` to the capability list, as QEMU lays out vendor capabilities.
    pub fn capability(mut self, offset: u8, id: u8, body: &[u8]) -> Self {
        assert!(offset >= 0x40 && usize::from(offset) + 2 + body.len() <= 256, "capability at {offset:#x}");
        self.config[usize::from(reg::STATUS)] |= reg::STATUS_CAP_LIST as u8;
        // Walk to the end of the list and link the new one there.
        let mut link = usize::from(reg::CAP_PTR);
        while self.config[link] != 0 {
            link = usize::from(self.config[link]) + 1;
        }
        self.config[link] = offset;
        let at = usize::from(offset);
        self.config[at] = id;
        self.config[at + 1] = 0;
        self.config[at + 2..at + 2 + body.len()].copy_from_slice(body);
        self
    }

    /// The BARs that currently decode: enabled in COMMAND and programmed.
    /// Sizes come from the writable masks, as the hardware's decoders do.
    pub fn decoded_bars(&self) -> alloc::vec::Vec<DecodedBar> {
        let command = self.read(reg::COMMAND, 2) as u16;
        let count = if self.is_bridge() { 2 } else { 6 };
        let mut bars = alloc::vec::Vec::new();
        let mut index = 0;
        while index < count {
            let offset = reg::BAR0 + 4 * index;
            let value = self.read(offset, 4);
            let mask =
                u32::from_le_bytes(self.writable[usize::from(offset)..usize::from(offset) + 4].try_into().unwrap());
            if mask == 0 {
                index += 1;
                continue;
            }
            if value & 1 == 1 {
                let size = u64::from((!(mask | 0x3)).wrapping_add(1) & 0xffff);
                if command & reg::COMMAND_IO != 0 {
                    bars.push(DecodedBar { index, io: true, base: u64::from(value & 0xfffc), size });
                }
                index += 1;
            } else {
                let is64 = value & 0x6 == 0x4;
                let (base, full_mask) = if is64 {
                    let high = self.read(offset + 4, 4);
                    let high_mask = u32::from_le_bytes(
                        self.writable[usize::from(offset) + 4..usize::from(offset) + 8].try_into().unwrap(),
                    );
                    (u64::from(high) << 32 | u64::from(value & !0xf), u64::from(high_mask) << 32 | u64::from(mask))
                } else {
                    (u64::from(value & !0xf), 0xffff_ffff_0000_0000 | u64::from(mask))
                };
                if command & reg::COMMAND_MEMORY != 0 && base != 0 {
                    bars.push(DecodedBar { index, io: false, base, size: (!(full_mask | 0xf)).wrapping_add(1) });
                }
                index += if is64 { 2 } else { 1 };
            }
        }
        bars
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

    fn slot_reg(&self, offset: u8) -> Option<u16> {
        self.slot_cap.map(|cap| self.read(cap + offset, 2) as u16)
    }

    fn set_slot_reg(&mut self, offset: u8, value: u16) {
        if let Some(cap) = self.slot_cap {
            self.set16(cap + offset, value);
        }
    }

    /// A slot whose devices are cut off: power controller off.
    fn slot_unpowered(&self) -> bool {
        self.slot_reg(slot::SLTCTL).is_some_and(|ctl| ctl & slot::PCC_OFF != 0)
    }
}

/// What happened to a slot besides its registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotEvents {
    /// `device_del` asked and the device is not gone yet.
    pub unplug_pending: bool,
    /// Devices the guest removed by powering the slot off.
    pub unplugs: u32,
}

struct Entry {
    function: FakeFunction,
    /// The segment behind this function, for bridges.
    child: Option<Segment>,
    slot: SlotEvents,
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
            // Devices behind an unpowered slot do not answer.
            (secondary > segment_bus && (secondary..=subordinate).contains(&bus) && !e.function.slot_unpowered())
                .then_some((child, secondary))
        });
        // QEMU looks a bus number up among a bus's child buses newest
        // first (its child list is a LIFO); devices are created in slot
        // order here, so that is the highest slot first. With consistent
        // numbers the order does not matter; with stale ones it decides
        // which bridge wins.
        let bridges: Vec<(Segment, u8)> = bridges.collect();
        for (child, secondary) in bridges.into_iter().rev() {
            if let Some(found) = self.route(child, secondary, bus) {
                return Some(found);
            }
        }
        None
    }

    fn key(&self, bdf: Bdf) -> Option<(Segment, u8, u8)> {
        let segment = self.route(Segment::ROOT, 0, bdf.bus)?;
        let key = (segment, bdf.dev, bdf.func);
        self.functions.contains_key(&key).then_some(key)
    }

    /// The slotted bridge whose child segment is `segment`.
    fn port_above(&self, segment: Segment) -> Option<(Segment, u8, u8)> {
        self.functions.iter().find(|(_, e)| e.child == Some(segment) && e.function.slot_cap.is_some()).map(|(k, _)| *k)
    }

    fn port(&mut self, port: (Segment, u8, u8)) -> &mut Entry {
        let e = self.functions.get_mut(&port).unwrap_or_else(|| panic!("no function at {port:?}"));
        assert!(e.function.slot_cap.is_some(), "{port:?} has no hot-plug slot");
        e
    }

    /// A software write to a slotted bridge's SLTCTL/SLTSTA, as QEMU's
    /// `pcie_cap_slot_write_config` handles it; other bytes write normally.
    fn write_slot(&mut self, key: (Segment, u8, u8), offset: u8, width: usize, value: u32) {
        let e = self.functions.get_mut(&key).expect("located");
        let cap = e.function.slot_cap.expect("a slotted bridge");
        let (ctl_at, sta_at) = (cap + slot::SLTCTL, cap + slot::SLTSTA);
        let old_ctl = e.function.slot_reg(slot::SLTCTL).unwrap_or(0);
        let old_sta = e.function.slot_reg(slot::SLTSTA).unwrap_or(0);
        let (mut ctl, mut ctl_written, mut sta_written) = (old_ctl.to_le_bytes(), false, None::<u16>);
        for (i, byte) in value.to_le_bytes().iter().take(width).enumerate() {
            let at = offset + i as u8;
            if (ctl_at..ctl_at + 2).contains(&at) {
                ctl[usize::from(at - ctl_at)] = *byte;
                ctl_written = true;
            } else if (sta_at..sta_at + 2).contains(&at) {
                *sta_written.get_or_insert(0) |= u16::from(*byte) << (8 * (at - sta_at));
            } else {
                e.function.write(at, 1, u32::from(*byte));
            }
        }
        let mut sta = old_sta;
        if let Some(written) = sta_written
            && written & !old_sta & slot::EVENTS == 0
        {
            sta &= !(written & slot::W1C);
        }
        if ctl_written {
            let new_ctl = (old_ctl & !slot::CTL_WRITABLE) | (u16::from_le_bytes(ctl) & slot::CTL_WRITABLE);
            e.function.set_slot_reg(slot::SLTCTL, new_ctl);
            let unplug = sta & slot::PDS != 0 && slot::powered_off(new_ctl) && !slot::powered_off(old_ctl);
            if unplug {
                sta = (sta & !slot::PDS) | slot::PDC;
                e.function.set_slot_reg(slot::LNKSTA, slot::LNKSTA_DOWN);
                e.slot.unplug_pending = false;
                e.slot.unplugs += 1;
            }
            sta |= slot::CC;
            e.function.set_slot_reg(slot::SLTSTA, sta);
            if let (true, Some(child)) = (unplug, e.child) {
                self.functions.retain(|(segment, _, _), _| *segment != child);
            }
        } else {
            e.function.set_slot_reg(slot::SLTSTA, sta);
        }
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
        t.functions.insert((segment, dev, func), Entry { function, child, slot: SlotEvents::default() });
        // Cold-plugged behind a slot: QEMU powers populated slots at reset.
        if let Some(port) = t.port_above(segment) {
            let f = &mut t.functions.get_mut(&port).expect("found").function;
            let ctl = f.slot_reg(slot::SLTCTL).unwrap_or(0);
            f.set_slot_reg(slot::SLTCTL, (ctl & !(slot::PCC_OFF | slot::PIC_MASK)) | slot::PIC_ON);
            let sta = f.slot_reg(slot::SLTSTA).unwrap_or(0);
            f.set_slot_reg(slot::SLTSTA, sta | slot::PDS);
            f.set_slot_reg(slot::LNKSTA, slot::LNKSTA_UP);
        }
    }

    /// `device_add` of `function` on the root port at `port` (slot 0 of the
    /// port's secondary bus): presence detected, attention button pressed.
    /// It answers config cycles only once the slot is powered.
    pub fn pcie_hot_add(&self, port: (Segment, u8, u8), function: FakeFunction) {
        let mut t = self.topology.borrow_mut();
        let e = t.port(port);
        let child = e.child.expect("a bridge");
        let sta = e.function.slot_reg(slot::SLTSTA).unwrap_or(0);
        assert!(sta & slot::PDS == 0, "slot {port:?} is occupied");
        e.function.set_slot_reg(slot::SLTSTA, sta | slot::PDS | slot::PDC | slot::ABP);
        e.function.set_slot_reg(slot::LNKSTA, slot::LNKSTA_UP);
        let entry_child = function.is_bridge().then(|| {
            let c = Segment(t.next_segment);
            t.next_segment += 1;
            c
        });
        t.functions.insert((child, 0, 0), Entry { function, child: entry_child, slot: SlotEvents::default() });
    }

    /// `device_del` of the device on the root port at `port`: only the
    /// attention button. Refused like QEMU while an unplug is pending, and
    /// when the slot is empty.
    pub fn pcie_unplug_request(&self, port: (Segment, u8, u8)) -> Result<(), &'static str> {
        let mut t = self.topology.borrow_mut();
        let e = t.port(port);
        let sta = e.function.slot_reg(slot::SLTSTA).unwrap_or(0);
        if sta & slot::PDS == 0 {
            return Err("no device in the slot");
        }
        if e.slot.unplug_pending {
            return Err("Device is already in the process of unplug");
        }
        e.slot.unplug_pending = true;
        e.function.set_slot_reg(slot::SLTSTA, sta | slot::ABP);
        Ok(())
    }

    /// (SLTCTL, SLTSTA) of the root port at `port`.
    pub fn slot_registers(&self, port: (Segment, u8, u8)) -> (u16, u16) {
        let mut t = self.topology.borrow_mut();
        let f = &t.port(port).function;
        (f.slot_reg(slot::SLTCTL).unwrap_or(0), f.slot_reg(slot::SLTSTA).unwrap_or(0))
    }

    pub fn slot_events(&self, port: (Segment, u8, u8)) -> SlotEvents {
        self.topology.borrow_mut().port(port).slot
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
        let t = self.topology.borrow();
        match t.key(bdf).and_then(|key| t.functions.get(&key)) {
            Some(e) => e.function.read(offset, width),
            None => u32::MAX >> (32 - 8 * width),
        }
    }

    fn write(&self, bdf: Bdf, offset: u8, width: usize, value: u32) {
        let offset = offset & !(width as u8 - 1);
        let mut t = self.topology.borrow_mut();
        let Some(key) = t.key(bdf) else { return };
        let e = t.functions.get_mut(&key).expect("located");
        match e.function.slot_cap {
            Some(cap) if offset < cap + slot::SLTSTA + 2 && offset + width as u8 > cap + slot::SLTCTL => {
                t.write_slot(key, offset, width, value)
            }
            _ => e.function.write(offset, width, value),
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

    /// `-machine q35` with two `pcie-root-port`s at 00:10.0 and 00:11.0
    /// (hot-plug slots 1 and 2, native mode; BAR0 is their 4 KiB MSI-X
    /// table), Q35 host bridge, ICH9 LPC (multifunction, PIRQ A–H routes at
    /// 0x60..0x63 and 0x68..0x6b), ICH9 AHCI (BAR4 I/O 32, BAR5 4 KiB, pin
    /// A, MSI and SATA capabilities) and ICH9 SMBus (BAR4 I/O 64, pin A).
    /// The ICH9 functions are revision 2 and, like every function of a
    /// multifunction device in QEMU, carry the multifunction bit.
    pub fn q35() -> Self {
        let pci = FakePci::new();
        let root = Segment::ROOT;
        let msix = FakeBar::Mem32 { size: 0x1000, prefetchable: false };
        pci.insert(root, 0, 0, FakeFunction::endpoint(0x8086, 0x29c0, 0x06_00_00));
        pci.insert(root, 0x10, 0, FakeFunction::bridge(0x1b36, 0x000c).bar(0, msix).pin(1).pcie_slot(1));
        pci.insert(root, 0x11, 0, FakeFunction::bridge(0x1b36, 0x000c).bar(0, msix).pin(1).pcie_slot(2));
        pci.insert(
            root,
            0x1f,
            0,
            FakeFunction::endpoint(0x8086, 0x2918, 0x06_01_00)
                .revision(0x02)
                .multifunction()
                .writable(0x60, 4)
                .writable(0x68, 4),
        );
        pci.insert(
            root,
            0x1f,
            2,
            FakeFunction::endpoint(0x8086, 0x2922, 0x01_06_01)
                .revision(0x02)
                .multifunction()
                .bar(4, FakeBar::Io { size: 32 })
                .bar(5, FakeBar::Mem32 { size: 0x1000, prefetchable: false })
                .pin(1)
                .capability(0x80, 0x05, &[0; 8])
                .capability(0xa8, 0x12, &[0; 6]),
        );
        pci.insert(
            root,
            0x1f,
            3,
            FakeFunction::endpoint(0x8086, 0x2930, 0x0c_05_00)
                .revision(0x02)
                .multifunction()
                .bar(4, FakeBar::Io { size: 64 })
                .pin(1),
        );
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
    const PORT: (Segment, u8, u8) = (Segment::ROOT, 0x10, 0);
    const PORT_BDF: Bdf = Bdf::new(0, 0x10, 0);

    fn q35_with_bus_1() -> FakePci {
        let pci = FakePci::q35();
        pci.write8(PORT_BDF, reg::SECONDARY_BUS, 1);
        pci.write8(PORT_BDF, reg::SUBORDINATE_BUS, 1);
        pci
    }

    fn nic() -> FakeFunction {
        FakeFunction::endpoint(0x8086, 0x10d3, 0x02_00_00)
            .bar(0, FakeBar::Mem32 { size: 0x2_0000, prefetchable: false })
    }

    fn sltsta_write(pci: &FakePci, value: u16) {
        pci.write16(PORT_BDF, PCIE_CAP + slot::SLTSTA, value);
    }

    fn sltctl_write(pci: &FakePci, value: u16) {
        pci.write16(PORT_BDF, PCIE_CAP + slot::SLTCTL, value);
    }

    #[test]
    fn root_ports_describe_a_hot_plug_capable_slot() {
        let pci = FakePci::q35();
        let cap = crate::pci::config::find_capability(&pci, PORT_BDF, 0x10);
        assert_eq!(cap, Some(PCIE_CAP), "found through the list, after power management");
        assert_eq!(pci.read16(PORT_BDF, PCIE_CAP + 2) & (1 << 8), 1 << 8, "slot implemented");
        assert_eq!(pci.read32(PORT_BDF, PCIE_CAP + slot::SLTCAP), 0x0008_007b, "HPC and friends, slot 1");
        assert_eq!(pci.slot_registers(PORT), (slot::CTL_EMPTY, 0), "empty and powered off");
    }

    #[test]
    fn a_hot_added_device_answers_only_once_its_slot_is_powered() {
        let pci = q35_with_bus_1();
        pci.pcie_hot_add(PORT, nic());
        assert_eq!(pci.slot_registers(PORT), (0x07c0, slot::PDS | slot::PDC | slot::ABP));
        assert_eq!(pci.read32(PORT_BDF, PCIE_CAP + 0x10) >> 16, u32::from(slot::LNKSTA_UP));
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0xffff, "invisible while the slot is off");
        sltctl_write(&pci, 0x0100);
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0x8086);
        assert_eq!(pci.slot_registers(PORT), (0x0100, 0x49 | slot::CC), "every SLTCTL write completes a command");

        let powered_first = q35_with_bus_1();
        sltctl_write(&powered_first, 0x01c0);
        powered_first.pcie_hot_add(PORT, nic());
        assert_eq!(powered_first.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0x8086, "an already powered slot shows it");
    }

    #[test]
    fn sltsta_is_write_1_to_clear_and_a_stray_1_voids_the_write() {
        let pci = q35_with_bus_1();
        pci.pcie_hot_add(PORT, nic());
        sltsta_write(&pci, 0x1f);
        assert_eq!(pci.slot_registers(PORT).1, 0x49, "writing 1 to bits that are not set cleared nothing");
        sltsta_write(&pci, slot::PDS);
        assert_eq!(pci.slot_registers(PORT).1, 0x49, "PDS is read-only");
        sltsta_write(&pci, slot::PDC);
        assert_eq!(pci.slot_registers(PORT).1, 0x41, "writing back a subset of what was read clears it");
        sltsta_write(&pci, 0x41);
        assert_eq!(pci.slot_registers(PORT).1, slot::PDS);
        // A dword write at SLTCTL reaches both registers.
        pci.write32(PORT_BDF, PCIE_CAP + slot::SLTCTL, 0x0000_0100);
        assert_eq!(pci.slot_registers(PORT), (0x0100, slot::PDS | slot::CC));
        pci.write32(PORT_BDF, PCIE_CAP + slot::SLTCTL, u32::from(slot::CC) << 16 | 0x0100);
        assert_eq!(pci.slot_registers(PORT), (0x0100, slot::PDS | slot::CC), "cleared, then set by the write");
    }

    #[test]
    fn the_device_goes_only_when_the_guest_powers_the_slot_off_with_the_indicator_off() {
        let pci = q35_with_bus_1();
        pci.pcie_hot_add(PORT, nic());
        sltctl_write(&pci, slot::CTL_EMPTY);
        assert!(pci.function(pci.child_segment(PORT.0, PORT.1, PORT.2).unwrap(), 0, 0).is_some(), "already off");
        sltctl_write(&pci, 0x0100);
        sltsta_write(&pci, pci.slot_registers(PORT).1 & slot::W1C);
        assert_eq!(pci.pcie_unplug_request(PORT), Ok(()));
        assert_eq!(pci.slot_registers(PORT).1, slot::PDS | slot::ABP, "device_del presses the button, no more");
        assert!(pci.pcie_unplug_request(PORT).is_err(), "already in the process of unplug");
        sltctl_write(&pci, 0x0600);
        let behind = pci.child_segment(PORT.0, PORT.1, PORT.2).unwrap();
        assert!(pci.function(behind, 0, 0).is_some(), "power off with the indicator blinking removes nothing");
        assert_eq!(pci.read16(Bdf::new(1, 0, 0), reg::VENDOR), 0xffff, "but the device has no power");
        sltctl_write(&pci, 0x0700);
        assert!(pci.function(behind, 0, 0).is_none());
        assert_eq!(pci.slot_registers(PORT), (0x0700, slot::PDC | slot::CC | slot::ABP));
        assert_eq!(pci.slot_events(PORT), SlotEvents { unplug_pending: false, unplugs: 1 });
        assert!(pci.pcie_unplug_request(PORT).is_err(), "nothing left to unplug");
    }
}
