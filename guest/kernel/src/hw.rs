//! The boundary between kernel logic and hardware.
//!
//! The image crate implements [`Platform`] with real port I/O, memory-mapped
//! registers and heap-backed DMA memory; host tests implement it with fakes.
//! Nothing else in this crate touches hardware.
//!
//! DMA memory is reached only through physical addresses: drivers own it as a
//! [`DmaBuffer`], which frees it when dropped, and hand its
//! [`phys`](DmaBuffer::phys) address to devices. The kernel never sees a
//! pointer, so it stays free of `unsafe`.

use alloc::format;
use alloc::string::String;

/// Port I/O, memory-mapped registers, DMA memory and the few CPU services
/// the kernel needs.
pub trait Platform {
    fn inb(&self, port: u16) -> u8;
    fn outb(&self, port: u16, value: u8);
    fn inw(&self, port: u16) -> u16;
    fn outw(&self, port: u16, value: u16);
    fn inl(&self, port: u16) -> u32;
    fn outl(&self, port: u16, value: u32);
    /// Executed in every poll loop (`pause` on x86). Under TCG a guest that
    /// spins without it keeps QEMU from ever emitting DEVICE_DELETED.
    fn relax(&self);
    /// A free-running counter (the TSC). Only differences are meaningful.
    fn ticks(&self) -> u64;
    /// Leave the machine through `isa-debug-exit`.
    fn exit(&self, code: ExitCode) -> !;

    // Memory-mapped registers: `addr` is a physical address inside a memory
    // BAR the kernel programmed (the PCI hole below 4 GiB, identity-mapped).
    // Accesses are single, naturally aligned, uncombined loads and stores.
    fn mmio_read8(&self, addr: u64) -> u8;
    fn mmio_read16(&self, addr: u64) -> u16;
    fn mmio_read32(&self, addr: u64) -> u32;
    fn mmio_read64(&self, addr: u64) -> u64;
    fn mmio_write8(&self, addr: u64, value: u8);
    fn mmio_write16(&self, addr: u64, value: u16);
    fn mmio_write32(&self, addr: u64, value: u32);
    fn mmio_write64(&self, addr: u64, value: u64);

    /// Allocate `size` bytes of zeroed, physically contiguous memory aligned
    /// to `align` (a power of two) that devices may read and write, and
    /// return its physical address; `None` when memory is exhausted. Use
    /// [`DmaBuffer::new`] rather than calling this directly.
    fn dma_alloc(&self, size: usize, align: usize) -> Option<u64>;
    /// Give back an allocation, with the `size` and `align` it was made with.
    fn dma_free(&self, phys: u64, size: usize, align: usize);
    /// Copy bytes out of DMA memory (volatile: the device may be writing).
    /// The range must lie inside one live allocation.
    fn dma_read(&self, phys: u64, buf: &mut [u8]);
    /// Copy bytes into DMA memory (volatile). The range must lie inside one
    /// live allocation.
    fn dma_write(&self, phys: u64, data: &[u8]);
    /// A naturally aligned little-endian load of `width` bytes (1, 2, 4 or
    /// 8) as one access, so a device's concurrent store is seen whole.
    fn dma_load(&self, phys: u64, width: usize) -> u64;
    /// A naturally aligned little-endian store of `width` bytes (1, 2, 4 or
    /// 8) as one access.
    fn dma_store(&self, phys: u64, width: usize, value: u64);
    /// Order every DMA-memory access before it against every one after it,
    /// as seen by devices (publish a descriptor before its index).
    fn dma_fence(&self);
}

/// Why a [`DmaBuffer`] could not be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaExhausted {
    pub size: usize,
    pub align: usize,
}

impl core::fmt::Display for DmaExhausted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "no DMA memory for {} bytes aligned to {}", self.size, self.align)
    }
}

/// Zeroed, physically contiguous memory shared with devices, owned by the
/// driver that allocated it and freed when dropped.
///
/// Offsets are relative to the start of the buffer; an access outside it is
/// a driver bug and panics with the buffer's address rather than touching
/// memory that belongs to something else.
pub struct DmaBuffer {
    platform: &'static dyn Platform,
    phys: u64,
    len: usize,
    align: usize,
}

impl DmaBuffer {
    pub fn new(platform: &'static dyn Platform, len: usize, align: usize) -> Result<Self, DmaExhausted> {
        assert!(len > 0 && align.is_power_of_two(), "DMA buffer of {len} bytes aligned to {align}");
        let phys = platform.dma_alloc(len, align).ok_or(DmaExhausted { size: len, align })?;
        Ok(DmaBuffer { platform, phys, len, align })
    }

    /// The physical address devices use.
    pub fn phys(&self) -> u64 {
        self.phys
    }

    /// The physical address of byte `offset`.
    pub fn phys_at(&self, offset: usize) -> u64 {
        self.check(offset, 0);
        self.phys + offset as u64
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn check(&self, offset: usize, width: usize) {
        let inside = offset.checked_add(width).is_some_and(|end| end <= self.len);
        assert!(inside, "{}", self.describe_overrun(offset, width));
    }

    fn describe_overrun(&self, offset: usize, width: usize) -> String {
        format!("DMA access {offset}+{width} outside the {}-byte buffer at {:#x}", self.len, self.phys)
    }

    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        self.check(offset, buf.len());
        self.platform.dma_read(self.phys + offset as u64, buf);
    }

    pub fn write(&self, offset: usize, data: &[u8]) {
        self.check(offset, data.len());
        self.platform.dma_write(self.phys + offset as u64, data);
    }

    /// Zero `len` bytes from `offset`.
    pub fn zero(&self, offset: usize, len: usize) {
        self.check(offset, len);
        const ZEROS: [u8; 256] = [0; 256];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len());
            self.platform.dma_write(self.phys + (offset + done) as u64, &ZEROS[..n]);
            done += n;
        }
    }

    pub fn to_vec(&self, offset: usize, len: usize) -> alloc::vec::Vec<u8> {
        let mut v = alloc::vec![0; len];
        self.read(offset, &mut v);
        v
    }

    pub fn read_u8(&self, offset: usize) -> u8 {
        self.check(offset, 1);
        self.platform.dma_load(self.phys + offset as u64, 1) as u8
    }

    pub fn read_u16(&self, offset: usize) -> u16 {
        self.check(offset, 2);
        self.platform.dma_load(self.phys + offset as u64, 2) as u16
    }

    pub fn read_u32(&self, offset: usize) -> u32 {
        self.check(offset, 4);
        self.platform.dma_load(self.phys + offset as u64, 4) as u32
    }

    pub fn read_u64(&self, offset: usize) -> u64 {
        self.check(offset, 8);
        self.platform.dma_load(self.phys + offset as u64, 8)
    }

    pub fn write_u8(&self, offset: usize, value: u8) {
        self.check(offset, 1);
        self.platform.dma_store(self.phys + offset as u64, 1, u64::from(value));
    }

    pub fn write_u16(&self, offset: usize, value: u16) {
        self.check(offset, 2);
        self.platform.dma_store(self.phys + offset as u64, 2, u64::from(value));
    }

    pub fn write_u32(&self, offset: usize, value: u32) {
        self.check(offset, 4);
        self.platform.dma_store(self.phys + offset as u64, 4, u64::from(value));
    }

    pub fn write_u64(&self, offset: usize, value: u64) {
        self.check(offset, 8);
        self.platform.dma_store(self.phys + offset as u64, 8, value);
    }

    /// See [`Platform::dma_fence`].
    pub fn fence(&self) {
        self.platform.dma_fence();
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        self.platform.dma_free(self.phys, self.len, self.align);
    }
}

impl core::fmt::Debug for DmaBuffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "DmaBuffer({:#x}, {} bytes)", self.phys, self.len)
    }
}

/// Values written to `isa-debug-exit`. QEMU exits with `(code << 1) | 1`, so
/// the host sees 33, 35 and 37. A triple fault exits with 0, which the harness
/// must never read as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// `poweroff` on the control channel.
    PowerOff = 0x10,
    /// A Rust panic.
    Panic = 0x11,
    /// A driver-model BUG (refcount underflow, double release, ...).
    Bug = 0x12,
}

impl ExitCode {
    /// The exit status of the QEMU process for this code.
    pub const fn host_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}
