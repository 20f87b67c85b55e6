//! The kernel heap: a linked-list allocator over a fixed RAM range.
//!
//! The range lies above the loaded image (at 1 MiB) and inside the 128 MiB
//! every harness profile gives the guest; `init` checks it against the PVH
//! memory map so a smaller `-m` fails loudly instead of corrupting memory.

use linked_list_allocator::LockedHeap;

use crate::pvh::StartInfo;

#[global_allocator]
static ALLOCATOR: LockedHeap = LockedHeap::empty();

pub const HEAP_START: u64 = 8 << 20;
pub const HEAP_SIZE: u64 = 48 << 20;

pub fn init(info: &StartInfo) {
    let end = HEAP_START + HEAP_SIZE;
    if !info.is_ram(HEAP_START, end) {
        panic!("heap range {HEAP_START:#x}-{end:#x} is not RAM: give the guest at least 64 MiB (-m 128M)");
    }
    // SAFETY: the range is RAM (checked above), identity-mapped by the boot
    // stub, above the loaded image and its stack, and given to the allocator
    // exactly once, before any allocation.
    unsafe { ALLOCATOR.lock().init(HEAP_START as *mut u8, HEAP_SIZE as usize) };
}
