//! x86 port I/O and CPU primitives, and the `Platform` implementation that
//! joins them with [`memory`]: the guest's only hardware-access layer.
//! Everything above this file reaches hardware through `kernel::hw::Platform`.

use core::arch::asm;

use kernel::hw::{ExitCode, Platform};

use super::memory;

/// The machine as seen from ring 0 on x86_64, with `isa-debug-exit` at 0xf4.
pub struct X86;

/// `-device isa-debug-exit,iobase=0xf4,iosize=0x04`: writing `v` makes QEMU
/// exit with status `(v << 1) | 1`.
const DEBUG_EXIT_PORT: u16 = 0xf4;

impl Platform for X86 {
    fn inb(&self, port: u16) -> u8 {
        let value: u8;
        // SAFETY: port reads have no memory effects on guest memory. The
        // kernel reads only ports of devices it found in config space or the
        // fixed blocks of the chipset it detected (UARTs, 0xcf8/0xcfc, IDE
        // compatibility ports, QEMU's ACPI hot-plug block).
        unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) };
        value
    }

    fn outb(&self, port: u16, value: u8) {
        // SAFETY: see `inb`; port writes touch device state, never guest memory.
        unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) };
    }

    fn inw(&self, port: u16) -> u16 {
        let value: u16;
        // SAFETY: see `inb`.
        unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags)) };
        value
    }

    fn outw(&self, port: u16, value: u16) {
        // SAFETY: see `outb`.
        unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) };
    }

    fn inl(&self, port: u16) -> u32 {
        let value: u32;
        // SAFETY: see `inb`.
        unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) };
        value
    }

    fn outl(&self, port: u16, value: u32) {
        // SAFETY: see `outb`.
        unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) };
    }

    fn relax(&self) {
        // `pause` lets a TCG vCPU leave its execution loop; without it QEMU
        // never finishes an RCU grace period and DEVICE_DELETED never arrives
        // (docs/qemu-behaviour.md, "TCG and `pause`").
        core::hint::spin_loop();
    }

    fn ticks(&self) -> u64 {
        let lo: u32;
        let hi: u32;
        // SAFETY: rdtsc only reads the time-stamp counter.
        unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) };
        (u64::from(hi) << 32) | u64::from(lo)
    }

    fn mmio_read8(&self, addr: u64) -> u8 {
        memory::mmio_read(addr)
    }
    fn mmio_read16(&self, addr: u64) -> u16 {
        memory::mmio_read(addr)
    }
    fn mmio_read32(&self, addr: u64) -> u32 {
        memory::mmio_read(addr)
    }
    fn mmio_read64(&self, addr: u64) -> u64 {
        memory::mmio_read(addr)
    }
    fn mmio_write8(&self, addr: u64, value: u8) {
        memory::mmio_write(addr, value);
    }
    fn mmio_write16(&self, addr: u64, value: u16) {
        memory::mmio_write(addr, value);
    }
    fn mmio_write32(&self, addr: u64, value: u32) {
        memory::mmio_write(addr, value);
    }
    fn mmio_write64(&self, addr: u64, value: u64) {
        memory::mmio_write(addr, value);
    }
    fn dma_alloc(&self, size: usize, align: usize) -> Option<u64> {
        memory::dma_alloc(size, align)
    }
    fn dma_free(&self, phys: u64, size: usize, align: usize) {
        memory::dma_free(phys, size, align);
    }
    fn dma_read(&self, phys: u64, buf: &mut [u8]) {
        memory::dma_read(phys, buf);
    }
    fn dma_write(&self, phys: u64, data: &[u8]) {
        memory::dma_write(phys, data);
    }
    fn dma_load(&self, phys: u64, width: usize) -> u64 {
        memory::dma_load(phys, width)
    }
    fn dma_store(&self, phys: u64, width: usize, value: u64) {
        memory::dma_store(phys, width, value);
    }
    fn dma_fence(&self) {
        memory::dma_fence();
    }

    fn exit(&self, code: ExitCode) -> ! {
        self.outb(DEBUG_EXIT_PORT, code as u8);
        // Only reached without isa-debug-exit: stop the CPU for good.
        loop {
            // SAFETY: interrupts are off; `hlt` just parks the CPU.
            unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
        }
    }
}
