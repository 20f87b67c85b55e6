//! Everything that is x86_64-specific: the PVH entry stub, port I/O,
//! memory-mapped registers and DMA memory.
mod boot;
pub mod memory;
pub mod ports;
