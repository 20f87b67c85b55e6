//! The guest kernel: a faithful small implementation of the 2002 Linux driver
//! model (refcounted devices, buses, drivers, driverfs) with drivers for the
//! hardware QEMU emulates, answering the control protocol on COM2.
//!
//! This crate is `no_std` and has no `unsafe`: hardware is reached only
//! through [`hw::Platform`], implemented by the image crate (guest/image) and
//! by fakes in host tests.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod base;
pub mod checkpoint;
pub mod cmdline;
pub mod console;
pub mod control;
pub mod driverfs;
pub mod errno;
pub mod executor;
pub mod fault;
pub mod hw;
pub mod ide;
pub mod pci;
pub mod scsi;
pub mod subsystem;
pub mod system;
pub mod testbus;
pub mod uart;
pub mod usb;
pub mod virtio;

#[cfg(test)]
mod fake_platform;
#[cfg(test)]
mod tests;
