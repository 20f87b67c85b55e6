//! BARs and address windows: sizing, allocation, programming.
//!
//! The guest assigns every BAR and bridge window itself (as Linux does with
//! `pci=realloc`), so `resource` is the same whichever firmware booted the
//! machine and hot-added functions take the same path as boot-time ones.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::config::{Bdf, ConfigSpace, reg};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Mem32,
    Mem64,
    /// The expansion ROM BAR (QEMU's "BAR 6"): 32-bit memory, own enable bit.
    Rom,
}

/// One implemented BAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    pub index: u8,
    pub kind: BarKind,
    pub prefetchable: bool,
    pub size: u64,
    /// Where it was placed; `None` when no window had room.
    pub base: Option<u64>,
}

/// First-fit allocator over `[base, limit]`, deterministic and able to free,
/// so 50 plug/unplug cycles on one slot do not exhaust a bridge window.
#[derive(Clone, Debug)]
pub struct RangeAllocator {
    base: u64,
    limit: u64,
    used: BTreeMap<u64, u64>,
}

impl RangeAllocator {
    pub fn new(base: u64, limit: u64) -> Self {
        RangeAllocator { base, limit, used: BTreeMap::new() }
    }

    /// Allocate `size` bytes aligned to `align` (a power of two).
    pub fn alloc(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 {
            return None;
        }
        let align = align.max(1);
        let mut candidate = align_up(self.base, align)?;
        for (&start, &end) in &self.used {
            if candidate.checked_add(size - 1)? < start {
                break;
            }
            if end >= candidate {
                candidate = align_up(end.checked_add(1)?, align)?;
            }
        }
        let end = candidate.checked_add(size - 1)?;
        if end > self.limit {
            return None;
        }
        self.used.insert(candidate, end);
        Some(candidate)
    }

    pub fn free(&mut self, start: u64) {
        self.used.remove(&start);
    }

    pub fn bounds(&self) -> (u64, u64) {
        (self.base, self.limit)
    }

    /// Take `[start, end]` out of the range for good (a fixed block some
    /// other device decodes).
    pub fn reserve(&mut self, start: u64, end: u64) {
        self.used.insert(start, end);
    }

    /// One past the highest allocated address relative to the base (0 when
    /// nothing is allocated): the span allocations take.
    pub fn end(&self) -> u64 {
        self.used.values().next_back().map_or(0, |&end| end + 1 - self.base)
    }
}

fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

/// The address space a bus decodes: the root bus's part of the PCI hole, or
/// what its upstream bridge forwards. `io` is `None` when the bridge has no
/// I/O window.
#[derive(Clone, Debug)]
pub struct Window {
    pub io: Option<RangeAllocator>,
    pub mem: RangeAllocator,
}

/// The root bus: all of the I/O space the chipset forwards to PCI above the
/// legacy ISA range (0x1000–0xffff, as Linux's `PCIBIOS_MIN_IO`), minus the
/// fixed blocks QEMU's ACPI hardware decodes there (`reserved_io`), and
/// memory 0xc0000000 up to the IOAPIC (clear of RAM and of q35's MMCONFIG
/// at 0xb0000000).
pub fn root_window(reserved_io: &[(u64, u64)]) -> Window {
    let mut io = RangeAllocator::new(ROOT_IO_START, 0xffff);
    for &(start, end) in reserved_io {
        io.reserve(start, end);
    }
    Window { io: Some(io), mem: RangeAllocator::new(0xc000_0000, 0xfebf_ffff) }
}

/// Below this, I/O belongs to ISA devices and the chipset's fixed blocks.
pub const ROOT_IO_START: u64 = 0x1000;

/// The least a bridge's windows get, whatever is behind it at boot, so that
/// functions hot-plugged below it later find room (Linux's
/// `pci=hpmemsize,hpiosize`, rounded to the window granularity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Room {
    pub mem: u64,
    pub io: u64,
}

/// A cold-plugged bridge: room for any single function QEMU can hot-plug
/// (edu's 1 MiB BAR is the largest here, a bridge with its own windows
/// fits too) and one I/O window.
pub const HOTPLUG_ROOM: Room = Room { mem: 4 << 20, io: IO_WINDOW_GRANULARITY };
/// A bridge that was itself hot-added: it must fit beside its own BARs in
/// the window of the slot it went into.
pub const HOT_ADDED_BRIDGE_ROOM: Room = Room { mem: MEM_WINDOW_GRANULARITY, io: IO_WINDOW_GRANULARITY };
/// Bridge windows are 1 MiB (memory) and 4 KiB (I/O) aligned and sized.
pub const MEM_WINDOW_GRANULARITY: u64 = 1 << 20;
pub const IO_WINDOW_GRANULARITY: u64 = 4 << 10;

/// What the functions on one bus need: for each space, the size of the
/// span first-fit placement in scan order takes from a base aligned to
/// `align`, and that alignment. Computed by running the same allocator the
/// real assignment uses over an unbounded range, so the two cannot differ.
#[derive(Clone, Debug)]
pub struct Demand {
    io: RangeAllocator,
    mem: RangeAllocator,
    io_align: u64,
    mem_align: u64,
}

impl Default for Demand {
    fn default() -> Self {
        Demand {
            io: RangeAllocator::new(0, u64::MAX >> 1),
            mem: RangeAllocator::new(0, u64::MAX >> 1),
            io_align: 1,
            mem_align: 1,
        }
    }
}

/// A bridge window size and alignment, per space; zero size = no window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowSizes {
    pub io: u64,
    pub io_align: u64,
    pub mem: u64,
    pub mem_align: u64,
}

impl Demand {
    /// Account for a function's BARs, in the order `assign_bars` places them.
    pub fn add_bars(&mut self, bars: &[Bar]) {
        for i in placement_order(bars) {
            let bar = &bars[i];
            let (alloc, align) = match bar.kind {
                BarKind::Io => (&mut self.io, &mut self.io_align),
                _ => (&mut self.mem, &mut self.mem_align),
            };
            alloc.alloc(bar.size, bar.size);
            *align = (*align).max(bar.size);
        }
    }

    /// Account for a bridge's windows (after its own BARs, as assigned).
    pub fn add_window(&mut self, w: &WindowSizes) {
        if w.io > 0 {
            self.io.alloc(w.io, w.io_align);
            self.io_align = self.io_align.max(w.io_align);
        }
        if w.mem > 0 {
            self.mem.alloc(w.mem, w.mem_align);
            self.mem_align = self.mem_align.max(w.mem_align);
        }
    }

    /// The windows a bridge needs to forward this bus: what is behind it,
    /// rounded to the window granularity, and at least the hot-plug room
    /// when functions can be plugged in below it later.
    pub fn window_sizes(&self, room: Room) -> WindowSizes {
        let round = |v: u64, g: u64| v.div_ceil(g) * g;
        let io = round(self.io.end(), IO_WINDOW_GRANULARITY).max(room.io);
        let mem = round(self.mem.end(), MEM_WINDOW_GRANULARITY).max(room.mem);
        WindowSizes {
            io,
            io_align: self.io_align.max(IO_WINDOW_GRANULARITY),
            mem,
            mem_align: self.mem_align.max(MEM_WINDOW_GRANULARITY),
        }
    }
}

/// Size the BARs of a function. Decoding is off while sizing, as the PCI
/// spec requires, and every BAR gets its original value back.
pub fn probe_bars(cfg: &dyn ConfigSpace, bdf: Bdf, count: u8) -> Vec<Bar> {
    let command = cfg.read16(bdf, reg::COMMAND);
    cfg.write16(bdf, reg::COMMAND, command & !(reg::COMMAND_IO | reg::COMMAND_MEMORY));
    let mut bars = Vec::new();
    let mut index = 0;
    while index < count {
        let offset = reg::BAR0 + 4 * index;
        let original = cfg.read32(bdf, offset);
        cfg.write32(bdf, offset, 0xffff_ffff);
        let probed = cfg.read32(bdf, offset);
        cfg.write32(bdf, offset, original);
        if probed == 0 {
            index += 1;
            continue;
        }
        if probed & 1 == 1 {
            // I/O BARs may implement only 16 address bits.
            let mask = (probed & !0x3) | 0xffff_0000;
            bars.push(Bar { index, kind: BarKind::Io, prefetchable: false, size: u64::from(!mask) + 1, base: None });
            index += 1;
            continue;
        }
        let prefetchable = probed & 0x8 != 0;
        if (probed >> 1) & 0x3 == 0x2 {
            let high_offset = offset + 4;
            let high_original = cfg.read32(bdf, high_offset);
            cfg.write32(bdf, high_offset, 0xffff_ffff);
            let high = cfg.read32(bdf, high_offset);
            cfg.write32(bdf, high_offset, high_original);
            let mask = (u64::from(high) << 32) | u64::from(probed & !0xf);
            bars.push(Bar { index, kind: BarKind::Mem64, prefetchable, size: (!mask).wrapping_add(1), base: None });
            index += 2;
        } else {
            let mask = probed & !0xf;
            bars.push(Bar { index, kind: BarKind::Mem32, prefetchable, size: u64::from(!mask) + 1, base: None });
            index += 1;
        }
    }
    if let Some(rom) = probe_rom(cfg, bdf, rom_offset(count)) {
        bars.push(rom);
    }
    cfg.write16(bdf, reg::COMMAND, command);
    bars
}

/// The expansion ROM register: 0x30 in a type 0 header, 0x38 in a bridge's.
fn rom_offset(bar_count: u8) -> u8 {
    if bar_count == 2 { reg::BRIDGE_ROM } else { reg::ROM }
}

/// Size the expansion ROM BAR (address bits 31:11; bit 0 enables decoding).
fn probe_rom(cfg: &dyn ConfigSpace, bdf: Bdf, offset: u8) -> Option<Bar> {
    let original = cfg.read32(bdf, offset);
    cfg.write32(bdf, offset, ROM_ADDRESS_MASK);
    let probed = cfg.read32(bdf, offset) & ROM_ADDRESS_MASK;
    cfg.write32(bdf, offset, original);
    (probed != 0).then(|| Bar {
        index: 6,
        kind: BarKind::Rom,
        prefetchable: false,
        size: u64::from(!probed) + 1,
        base: None,
    })
}

const ROM_ADDRESS_MASK: u32 = 0xffff_f800;
const ROM_ENABLE: u32 = 1;

/// Place each BAR in the window (largest first, so alignment wastes
/// little), program it and enable the decoders that are needed.
///
/// Expansion ROMs are placed and enabled too, as firmware does before it
/// runs option ROMs, so what QEMU reports as mapped is what `resource` shows.
pub fn assign_bars(cfg: &dyn ConfigSpace, bdf: Bdf, bars: &mut [Bar], window: &mut Window) {
    let header = cfg.read8(bdf, reg::HEADER_TYPE) & 0x7f;
    let order = placement_order(bars);
    let mut command = cfg.read16(bdf, reg::COMMAND) & !(reg::COMMAND_IO | reg::COMMAND_MEMORY);
    for i in order {
        let bar = &mut bars[i];
        let allocator = match bar.kind {
            BarKind::Io => window.io.as_mut(),
            BarKind::Mem32 | BarKind::Mem64 | BarKind::Rom => Some(&mut window.mem),
        };
        bar.base = allocator.and_then(|a| a.alloc(bar.size, bar.size));
        let Some(base) = bar.base else { continue };
        if bar.kind == BarKind::Rom {
            cfg.write32(bdf, rom_offset(if header == 1 { 2 } else { 6 }), base as u32 | ROM_ENABLE);
            command |= reg::COMMAND_MEMORY;
            continue;
        }
        let offset = reg::BAR0 + 4 * bar.index;
        cfg.write32(bdf, offset, base as u32);
        if bar.kind == BarKind::Mem64 {
            cfg.write32(bdf, offset + 4, (base >> 32) as u32);
        }
        command |= if bar.kind == BarKind::Io { reg::COMMAND_IO } else { reg::COMMAND_MEMORY };
    }
    cfg.write16(bdf, reg::COMMAND, command);
}

/// Largest first, so alignment wastes little; by index among equals.
fn placement_order(bars: &[Bar]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|i| (core::cmp::Reverse(bars[*i].size), bars[*i].index));
    order
}

/// Give the allocations back, e.g. after a hot-unplug.
pub fn release_bars(bars: &[Bar], window: &mut Window) {
    for bar in bars {
        let Some(base) = bar.base else { continue };
        match bar.kind {
            BarKind::Io => {
                if let Some(io) = window.io.as_mut() {
                    io.free(base)
                }
            }
            BarKind::Mem32 | BarKind::Mem64 | BarKind::Rom => window.mem.free(base),
        }
    }
}

/// Give a bridge's windows back to its parent's window.
pub fn release_windows(windows: &BridgeWindows, parent: &mut Window) {
    if let Some((base, _)) = windows.mem {
        parent.mem.free(base);
    }
    if let (Some((base, _)), Some(io)) = (windows.io, parent.io.as_mut()) {
        io.free(base);
    }
}

/// A bridge's forwarding windows as programmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BridgeWindows {
    pub io: Option<(u64, u64)>,
    pub mem: Option<(u64, u64)>,
}

/// Does the bridge forward I/O at all? Its I/O base register reads back 0
/// when it does not.
pub fn bridge_decodes_io(cfg: &dyn ConfigSpace, bdf: Bdf) -> bool {
    let original = cfg.read8(bdf, reg::IO_BASE);
    cfg.write8(bdf, reg::IO_BASE, 0xf0);
    let supported = cfg.read8(bdf, reg::IO_BASE) & 0xf0 != 0;
    cfg.write8(bdf, reg::IO_BASE, original);
    supported
}

/// Carve windows of the given sizes for a bridge out of its parent's,
/// program them (the prefetchable window stays closed: prefetchable BARs
/// below 4 GiB may live in the plain memory window), and return the child
/// bus's window.
pub fn assign_bridge_windows(
    cfg: &dyn ConfigSpace,
    bdf: Bdf,
    sizes: &WindowSizes,
    parent: &mut Window,
) -> (BridgeWindows, Window) {
    let io = match (sizes.io, bridge_decodes_io(cfg, bdf)) {
        (0, _) | (_, false) => None,
        (size, true) => parent.io.as_mut().and_then(|a| a.alloc(size, sizes.io_align)).map(|b| (b, b + size - 1)),
    };
    let mem = match sizes.mem {
        0 => None,
        size => parent.mem.alloc(size, sizes.mem_align).map(|b| (b, b + size - 1)),
    };

    match io {
        Some((base, limit)) => {
            cfg.write8(bdf, reg::IO_BASE, ((base >> 8) & 0xf0) as u8);
            cfg.write8(bdf, reg::IO_LIMIT, ((limit >> 8) & 0xf0) as u8);
        }
        None => {
            cfg.write8(bdf, reg::IO_BASE, 0xf0);
            cfg.write8(bdf, reg::IO_LIMIT, 0x00);
        }
    }
    cfg.write16(bdf, reg::IO_BASE_UPPER, 0);
    cfg.write16(bdf, reg::IO_LIMIT_UPPER, 0);
    match mem {
        Some((base, limit)) => {
            cfg.write16(bdf, reg::MEMORY_BASE, ((base >> 16) & 0xfff0) as u16);
            cfg.write16(bdf, reg::MEMORY_LIMIT, ((limit >> 16) & 0xfff0) as u16);
        }
        None => {
            cfg.write16(bdf, reg::MEMORY_BASE, 0xfff0);
            cfg.write16(bdf, reg::MEMORY_LIMIT, 0x0000);
        }
    }
    cfg.write16(bdf, reg::PREF_MEMORY_BASE, 0xfff0);
    cfg.write16(bdf, reg::PREF_MEMORY_LIMIT, 0x0000);
    cfg.write32(bdf, reg::PREF_BASE_UPPER, 0);
    cfg.write32(bdf, reg::PREF_LIMIT_UPPER, 0);
    let command = cfg.read16(bdf, reg::COMMAND);
    cfg.write16(bdf, reg::COMMAND, command | reg::COMMAND_IO | reg::COMMAND_MEMORY | reg::COMMAND_MASTER);

    let windows = BridgeWindows { io, mem };
    let child = Window {
        io: io.map(|(b, l)| RangeAllocator::new(b, l)),
        // An empty allocator when there is no window: BARs stay unassigned.
        mem: mem.map_or(RangeAllocator::new(1, 0), |(b, l)| RangeAllocator::new(b, l)),
    };
    (windows, child)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocator_is_first_fit_aligned_and_reuses_freed_space() {
        let mut a = RangeAllocator::new(0x1000, 0x1fff);
        assert_eq!(a.alloc(0x100, 0x100), Some(0x1000));
        assert_eq!(a.alloc(0x800, 0x800), Some(0x1800));
        assert_eq!(a.alloc(0x100, 0x100), Some(0x1100));
        assert_eq!(a.alloc(0x1000, 0x1000), None, "no room");
        a.free(0x1800);
        assert_eq!(a.alloc(0x800, 0x800), Some(0x1800));
        for _ in 0..50 {
            let b = a.alloc(0x400, 0x400).expect("the freed range is reused every cycle");
            a.free(b);
        }
    }
}
