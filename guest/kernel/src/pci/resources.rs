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

/// The root bus on both machines: I/O 0xc000–0xffff (clear of the ACPI
/// blocks at 0x600, 0xae00, 0xafe0 and 0xcc0) and memory 0xc0000000 up to
/// the IOAPIC (clear of RAM and of q35's MMCONFIG at 0xb0000000).
pub fn root_window() -> Window {
    Window { io: Some(RangeAllocator::new(0xc000, 0xffff)), mem: RangeAllocator::new(0xc000_0000, 0xfebf_ffff) }
}

/// What a bridge on the root bus gets: enough for any single function QEMU
/// can hot-plug (edu's 1 MiB BAR is the largest here) or a bridge below.
pub const BRIDGE_MEM_WINDOW: u64 = 4 << 20;
/// What a bridge below another bridge gets: a quarter of its parent's, so
/// its own BARs and its siblings still fit beside it.
pub const NESTED_BRIDGE_MEM_WINDOW: u64 = 1 << 20;
/// I/O windows have a 4 KiB granularity; one is the most a nested bridge can
/// get from a parent that has one.
pub const BRIDGE_IO_WINDOW: u64 = 4 << 10;

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
    let mut order: Vec<usize> = (0..bars.len()).collect();
    order.sort_by_key(|i| (core::cmp::Reverse(bars[*i].size), bars[*i].index));
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

/// Carve windows for a bridge out of its parent's, program them (the
/// prefetchable window stays closed: prefetchable BARs below 4 GiB may live
/// in the plain memory window), and return the child bus's window.
pub fn assign_bridge_windows(cfg: &dyn ConfigSpace, bdf: Bdf, parent: &mut Window) -> (BridgeWindows, Window) {
    let mem_size = if bdf.bus == 0 { BRIDGE_MEM_WINDOW } else { NESTED_BRIDGE_MEM_WINDOW };
    // Does the bridge forward I/O at all? The base register reads back 0
    // when it does not.
    cfg.write8(bdf, reg::IO_BASE, 0xf0);
    let io_supported = cfg.read8(bdf, reg::IO_BASE) & 0xf0 != 0;
    let io =
        if io_supported { parent.io.as_mut().and_then(|a| a.alloc(BRIDGE_IO_WINDOW, BRIDGE_IO_WINDOW)) } else { None };
    let mem = parent.mem.alloc(mem_size, mem_size);

    match io {
        Some(base) => {
            let limit = base + BRIDGE_IO_WINDOW - 1;
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
        Some(base) => {
            let limit = base + mem_size - 1;
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

    let windows =
        BridgeWindows { io: io.map(|b| (b, b + BRIDGE_IO_WINDOW - 1)), mem: mem.map(|b| (b, b + mem_size - 1)) };
    let child = Window {
        io: windows.io.map(|(b, l)| RangeAllocator::new(b, l)),
        // An empty allocator when the parent had no room: BARs stay unassigned.
        mem: windows.mem.map_or(RangeAllocator::new(1, 0), |(b, l)| RangeAllocator::new(b, l)),
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
