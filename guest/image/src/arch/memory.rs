//! Memory-mapped registers and DMA memory for `kernel::hw::Platform`.
//!
//! The boot stub identity-maps the first 4 GiB, so a physical address below
//! 4 GiB is also the address the CPU uses. DMA memory comes from the kernel
//! heap (8–56 MiB, RAM the PVH memory map confirmed), which is therefore
//! physically contiguous; each live allocation is recorded, and every DMA
//! access is checked against that record, so a stale or wild physical
//! address from the kernel panics instead of corrupting memory.
//! Memory-mapped register accesses are checked against the PCI hole the
//! kernel places BARs in.

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use alloc::collections::BTreeMap;
use core::cell::RefCell;
use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{Ordering, fence};

/// Where memory BARs and other device registers may live: the PCI hole
/// between the end of RAM the profiles give the guest (at most 2 GiB) and
/// 4 GiB, the end of the identity map.
const MMIO_START: u64 = 0x8000_0000;
const MMIO_END: u64 = 0x1_0000_0000;

/// Live DMA allocations: start -> length.
struct DmaTable(RefCell<BTreeMap<u64, usize>>);

// SAFETY: the guest runs on one CPU with interrupts disabled and never
// re-enters the platform layer, so the RefCell is never shared between
// threads; `Sync` is needed only to make it a `static`.
unsafe impl Sync for DmaTable {}

static DMA: DmaTable = DmaTable(RefCell::new(BTreeMap::new()));

fn check_mmio(addr: u64, width: u64) {
    let inside = addr >= MMIO_START && addr.checked_add(width).is_some_and(|end| end <= MMIO_END);
    assert!(
        inside && addr.is_multiple_of(width),
        "MMIO access of {width} bytes at {addr:#x} outside the PCI hole or unaligned"
    );
}

/// Panic unless `[phys, phys + len)` lies inside one live DMA allocation.
fn check_dma(phys: u64, len: usize) {
    let table = DMA.0.borrow();
    let inside = table
        .range(..=phys)
        .next_back()
        .is_some_and(|(&start, &size)| phys.checked_add(len as u64).is_some_and(|end| end <= start + size as u64));
    assert!(inside, "DMA access of {len} bytes at {phys:#x} outside every live DMA allocation");
}

pub fn mmio_read<T: Copy>(addr: u64) -> T {
    check_mmio(addr, size_of::<T>() as u64);
    // SAFETY: the address is inside the identity-mapped PCI hole (checked),
    // where the kernel maps only BARs it programmed; it is naturally aligned,
    // and a volatile load is one access of exactly this width.
    unsafe { read_volatile(addr as *const T) }
}

pub fn mmio_write<T: Copy>(addr: u64, value: T) {
    check_mmio(addr, size_of::<T>() as u64);
    // SAFETY: as in `mmio_read`; the store reaches device registers only.
    unsafe { write_volatile(addr as *mut T, value) }
}

pub fn dma_alloc(size: usize, align: usize) -> Option<u64> {
    let layout = Layout::from_size_align(size, align).ok()?;
    if size == 0 {
        return None;
    }
    // SAFETY: the layout has a non-zero size (checked above).
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return None;
    }
    // Heap addresses are identity-mapped: the pointer is the physical address.
    let phys = ptr as u64;
    DMA.0.borrow_mut().insert(phys, size);
    Some(phys)
}

pub fn dma_free(phys: u64, size: usize, align: usize) {
    let recorded = DMA.0.borrow_mut().remove(&phys);
    assert_eq!(recorded, Some(size), "dma_free of {phys:#x} ({size} bytes) that is not a live allocation of that size");
    let layout = Layout::from_size_align(size, align).expect("the layout it was allocated with");
    // SAFETY: `phys` was returned by `dma_alloc` with this size (checked
    // against the table) and this alignment, and is freed exactly once: its
    // record is gone now.
    unsafe { dealloc(phys as *mut u8, layout) }
}

pub fn dma_read(phys: u64, buf: &mut [u8]) {
    check_dma(phys, buf.len());
    for (i, byte) in buf.iter_mut().enumerate() {
        // SAFETY: the whole range lies inside a live allocation (checked).
        *byte = unsafe { read_volatile((phys as *const u8).add(i)) };
    }
}

pub fn dma_write(phys: u64, data: &[u8]) {
    check_dma(phys, data.len());
    for (i, byte) in data.iter().enumerate() {
        // SAFETY: the whole range lies inside a live allocation (checked).
        unsafe { write_volatile((phys as *mut u8).add(i), *byte) };
    }
}

pub fn dma_load(phys: u64, width: usize) -> u64 {
    check_dma(phys, width);
    assert!(phys.is_multiple_of(width as u64), "unaligned {width}-byte DMA load at {phys:#x}");
    // SAFETY: inside a live allocation (checked) and naturally aligned
    // (checked), so each volatile load is a single access of that width.
    unsafe {
        match width {
            1 => u64::from(read_volatile(phys as *const u8)),
            2 => u64::from(u16::from_le(read_volatile(phys as *const u16))),
            4 => u64::from(u32::from_le(read_volatile(phys as *const u32))),
            8 => u64::from_le(read_volatile(phys as *const u64)),
            _ => panic!("DMA load width {width}"),
        }
    }
}

pub fn dma_store(phys: u64, width: usize, value: u64) {
    check_dma(phys, width);
    assert!(phys.is_multiple_of(width as u64), "unaligned {width}-byte DMA store at {phys:#x}");
    // SAFETY: as in `dma_load`.
    unsafe {
        match width {
            1 => write_volatile(phys as *mut u8, value as u8),
            2 => write_volatile(phys as *mut u16, (value as u16).to_le()),
            4 => write_volatile(phys as *mut u32, (value as u32).to_le()),
            8 => write_volatile(phys as *mut u64, value.to_le()),
            _ => panic!("DMA store width {width}"),
        }
    }
}

pub fn dma_fence() {
    // x86 orders stores with stores and loads with loads; a full fence also
    // keeps the compiler from moving volatile accesses across it.
    fence(Ordering::SeqCst);
}
