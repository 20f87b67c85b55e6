//! The boundary between kernel logic and hardware.
//!
//! The image crate implements [`Platform`] with real port I/O; host tests
//! implement it with fakes. Nothing else in this crate touches hardware.

/// Port I/O and the few CPU services the kernel needs.
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
