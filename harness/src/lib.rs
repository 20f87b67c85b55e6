//! A QEMU-backed hot-plug test harness for the guest's 2002-style driver
//! model: boot the guest under QEMU, drive devices through QMP, talk to the
//! guest over its control channel, and check driverfs snapshots.
//!
//! It is a library: write your own `#[tokio::test]`s with it (the README's
//! "Write your own test" and `examples/own-test` in the repository):
//!
//! ```no_run
//! use harness::Plug;
//!
//! #[tokio::test]
//! async fn edu_and_its_vendor() -> anyhow::Result<()> {
//!     let vm = harness::testing::boot("pc", harness::test_name!()).await?;
//!     let edu = vm.plug(&Plug::new("edu", "edu0").at(&vm.config.profile.pci_slot(1)?)).await?;
//!     assert_eq!(vm.read_attr(&format!("{}/vendor", edu.devpath)).await?, "0x1234");
//!     let held = vm.hold_read(&format!("{}/vendor", edu.devpath)).await?;
//!     // ... start a removal, check that it waits ...
//!     assert_eq!(held.release().await?, b"0x1234\n");
//!     vm.unplug("edu0").await?;
//!     vm.shutdown().await
//! }
//! ```
//!
//! - [`vm`]: one running guest ([`Vm`], [`VmConfig`]), with deadlines on
//!   every wait; [`hotplug`] and [`media`]: QMP hot-plug and CD media
//!   changes checked against the guest; [`files`]: typed driverfs helpers
//!   ([`Vm::read_attr`], [`Vm::open`], [`Vm::devref`], [`Vm::hold_read`]);
//! - [`testing`]: support for your own tests (run names, `test_name!`,
//!   `assert_profile_snapshot!` with the `insta` feature);
//! - [`qemu`], [`profile`], [`paths`], [`artifacts`]: command lines, machine
//!   profiles, exit statuses, where builds and artifacts go;
//! - [`qmp`]: QMP client (typed commands from `qapi`, events as JSON);
//! - [`bus`]: what plugging and unplugging means on each bus;
//! - [`control`]: the control protocol; [`driverfs`], [`stats`]: parsing
//!   what the guest reports; [`checks`], [`golden`]: comparing it with QEMU
//!   and with committed goldens;
//! - [`matrix`], [`scenario`], [`mod@bench`]: the hardware matrix, its
//!   scenarios, and benchmarks; [`mutants`]: the matrix once per planted
//!   guest bug (the kill table).
//!
//! The contracts behind them are in the repository's `docs/`:
//! `snapshot-format.md`, `control-protocol.md` (every verb, its reply and
//! errors; uevent, bug and notice lines; stats keys and device states) and
//! `running.md` (environment variables, exit statuses, artifacts).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod artifacts;
pub mod bench;
pub mod bus;
pub mod checks;
pub mod control;
pub mod driverfs;
pub mod eventlog;
pub mod explore;
pub mod explorer;
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
pub mod subprocess;
pub mod testing;
pub mod transcript;
pub mod tree;
pub mod vm;

pub use files::{DevRef, Handle, HeldRead};
pub use hotplug::Plug;
pub use vm::{Timeouts, Vm, VmConfig};
