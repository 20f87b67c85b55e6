//! The guest image: the hardware and allocator layer under the `kernel`
//! crate. Only this crate contains `unsafe` code (port I/O, memory-mapped
//! registers, DMA memory, the boot stub, memory functions, the heap, reading
//! the PVH start info).
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod heap;
mod pvh;
mod runtime;

use core::cell::UnsafeCell;

use arch::ports::X86;
use kernel::control::ControlRef;

/// The booted kernel, for the panic handler: it finishes the control
/// message in flight before it reports, so a panic never lands inside a
/// payload.
struct BootedKernel(UnsafeCell<Option<ControlRef>>);

// SAFETY: the guest runs on one CPU with interrupts off; the cell is written
// once, before the main loop starts, and read only by the panic handler.
unsafe impl Sync for BootedKernel {}

static BOOTED: BootedKernel = BootedKernel(UnsafeCell::new(None));

/// Called by the boot stub in long mode with the PVH start-info address.
#[unsafe(no_mangle)]
pub extern "C" fn kmain(start_info: u32) -> ! {
    let info = pvh::StartInfo::read(start_info);
    heap::init(&info);
    kernel::system::run(&X86, info.cmdline(), |k| {
        // SAFETY: single CPU, written once before anything reads it (see
        // `BootedKernel`).
        unsafe { *BOOTED.0.get() = Some(k.clone()) };
    })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    // SAFETY: single CPU; the only write happened before the main loop, so
    // no `&mut` to the cell exists while the panic handler runs.
    let kernel = unsafe { (*BOOTED.0.get()).as_ref() };
    kernel::system::panic_report(&X86, info, kernel.map(|k| k.output()))
}
