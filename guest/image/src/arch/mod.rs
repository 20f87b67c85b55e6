//! Everything that is x86_64-specific: the PVH entry stub and port I/O.
mod boot;
pub mod ports;
