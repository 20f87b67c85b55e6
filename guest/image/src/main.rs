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

use arch::ports::X86;

/// Called by the boot stub in long mode with the PVH start-info address.
#[unsafe(no_mangle)]
pub extern "C" fn kmain(start_info: u32) -> ! {
    let info = pvh::StartInfo::read(start_info);
    heap::init(&info);
    kernel::system::run(&X86, info.cmdline())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kernel::system::panic_report(&X86, info)
}
