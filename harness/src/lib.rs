//! A QEMU-backed hot-plug test harness for the guest's 2002-style driver
//! model: boot the guest under QEMU, drive devices through QMP, talk to the
//! guest over its control channel, and check driverfs snapshots.
//!
//! - [`vm`]: one running guest ([`vm::Vm`]), with deadlines on every wait;
//! - [`qemu`], [`profile`]: command lines, machine profiles, exit statuses;
//! - [`qmp`]: QMP client (typed commands from `qapi`, events as JSON);
//! - [`hotplug`], [`bus`]: plug and unplug on any bus, checked against the
//!   guest;
//! - [`control`]: the control protocol (contract 2);
//! - [`driverfs`], [`stats`]: parsing what the guest reports (contract 1);
//! - [`matrix`], [`scenario`], [`bench`]: the hardware matrix and benchmarks;
//! - [`mutants`]: the matrix once per planted guest bug (the kill table).
#![forbid(unsafe_code)]

pub mod artifacts;
pub mod bench;
pub mod bus;
pub mod checks;
pub mod control;
pub mod driverfs;
pub mod explore;
pub mod files;
pub mod golden;
pub mod guest;
pub mod hotplug;
pub mod interrupt;
pub mod limits;
pub mod matrix;
pub mod media;
pub mod mutants;
pub mod paths;
pub mod pending;
pub mod profile;
pub mod qemu;
pub mod qemu_devices;
pub mod qmp;
pub mod scenario;
pub mod stats;
pub mod testing;
pub mod transcript;
pub mod tree;
pub mod vm;

pub use files::{DevRef, Handle, HeldRead};
pub use hotplug::Plug;
pub use vm::{Timeouts, Vm, VmConfig};
