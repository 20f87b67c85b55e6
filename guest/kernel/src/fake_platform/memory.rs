//! Sparse physical memory for host tests, shared by the kernel (through the
//! platform's DMA calls) and by fake devices (which parse virtqueues and
//! write data there as QEMU does in guest RAM).
//!
//! Every access must lie inside one live allocation, from either side: a
//! driver that frees a buffer a device still uses, or reads past its end,
//! panics here instead of passing by accident.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::cell::RefCell;

use crate::pci::resources::RangeAllocator;

const PAGE: u64 = 4096;
/// Fake RAM handed out for DMA: far from the addresses PCI BARs get.
const DMA_BASE: u64 = 0x0100_0000;
const DMA_LIMIT: u64 = 0x3fff_ffff;

pub struct FakeMemory {
    pages: RefCell<BTreeMap<u64, Box<[u8; PAGE as usize]>>>,
    allocator: RefCell<RangeAllocator>,
    /// Live allocations: start -> length.
    live: RefCell<BTreeMap<u64, usize>>,
}

impl Default for FakeMemory {
    fn default() -> Self {
        FakeMemory {
            pages: RefCell::new(BTreeMap::new()),
            allocator: RefCell::new(RangeAllocator::new(DMA_BASE, DMA_LIMIT)),
            live: RefCell::new(BTreeMap::new()),
        }
    }
}

impl FakeMemory {
    pub fn alloc(&self, size: usize, align: usize) -> Option<u64> {
        let phys = self.allocator.borrow_mut().alloc(size as u64, align as u64)?;
        self.live.borrow_mut().insert(phys, size);
        self.fill(phys, size, 0);
        Some(phys)
    }

    pub fn free(&self, phys: u64, size: usize) {
        let recorded = self.live.borrow_mut().remove(&phys);
        assert_eq!(recorded, Some(size), "free of {phys:#x} ({size} bytes): not a live allocation of that size");
        // Poison it, so a device that still uses it reads garbage loudly.
        let mut pages = self.pages.borrow_mut();
        for_each_chunk(phys, size, |page, off, n| {
            if let Some(p) = pages.get_mut(&page) {
                p[off..off + n].fill(0xa5);
            }
        });
        self.allocator.borrow_mut().free(phys);
    }

    /// Live allocations, for leak checks.
    pub fn live_allocations(&self) -> usize {
        self.live.borrow().len()
    }

    fn check(&self, phys: u64, len: usize) {
        let live = self.live.borrow();
        let inside =
            live.range(..=phys).next_back().is_some_and(|(&start, &size)| phys + len as u64 <= start + size as u64);
        assert!(inside, "memory access of {len} bytes at {phys:#x} outside every live DMA allocation");
    }

    fn fill(&self, phys: u64, len: usize, value: u8) {
        let mut pages = self.pages.borrow_mut();
        for_each_chunk(phys, len, |page, off, n| {
            pages.entry(page).or_insert_with(|| Box::new([0; PAGE as usize]))[off..off + n].fill(value);
        });
    }

    pub fn read(&self, phys: u64, buf: &mut [u8]) {
        self.check(phys, buf.len());
        let pages = self.pages.borrow();
        let mut done = 0;
        for_each_chunk(phys, buf.len(), |page, off, n| {
            match pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        });
    }

    pub fn write(&self, phys: u64, data: &[u8]) {
        self.check(phys, data.len());
        let mut pages = self.pages.borrow_mut();
        let mut done = 0;
        for_each_chunk(phys, data.len(), |page, off, n| {
            pages.entry(page).or_insert_with(|| Box::new([0; PAGE as usize]))[off..off + n]
                .copy_from_slice(&data[done..done + n]);
            done += n;
        });
    }

    pub fn load(&self, phys: u64, width: usize) -> u64 {
        assert!(phys.is_multiple_of(width as u64), "unaligned {width}-byte load at {phys:#x}");
        let mut bytes = [0u8; 8];
        self.read(phys, &mut bytes[..width]);
        u64::from_le_bytes(bytes)
    }

    pub fn store(&self, phys: u64, width: usize, value: u64) {
        assert!(phys.is_multiple_of(width as u64), "unaligned {width}-byte store at {phys:#x}");
        self.write(phys, &value.to_le_bytes()[..width]);
    }

    pub fn u16(&self, phys: u64) -> u16 {
        self.load(phys, 2) as u16
    }

    pub fn u32(&self, phys: u64) -> u32 {
        self.load(phys, 4) as u32
    }

    pub fn u64(&self, phys: u64) -> u64 {
        self.load(phys, 8)
    }

    pub fn bytes(&self, phys: u64, len: usize) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec![0; len];
        self.read(phys, &mut v);
        v
    }
}

/// Split `[phys, phys + len)` at page boundaries: (page number, offset, length).
fn for_each_chunk(phys: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut at = phys;
    let end = phys + len as u64;
    while at < end {
        let page = at / PAGE;
        let off = (at % PAGE) as usize;
        let n = ((PAGE - at % PAGE).min(end - at)) as usize;
        f(page, off, n);
        at += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_zeroed_aligned_and_checked() {
        let m = FakeMemory::default();
        let a = m.alloc(10000, 4096).unwrap();
        assert_eq!(a % 4096, 0);
        assert!(m.bytes(a, 10000).iter().all(|b| *b == 0));
        m.store(a + 4094, 2, 0xbeef);
        m.write(a + 4095, &[1, 2, 3]);
        assert_eq!(m.bytes(a + 4094, 4), [0xef, 1, 2, 3], "writes cross page boundaries");
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.bytes(a + 9999, 2)));
        assert!(out.is_err(), "reading past the end panics");
        m.free(a, 10000);
        assert_eq!(m.live_allocations(), 0);
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| m.u16(a))).is_err(), "use after free panics");
        let b = m.alloc(16, 16).unwrap();
        assert_eq!(m.bytes(b, 16), [0; 16], "reused memory is zeroed again");
    }
}
