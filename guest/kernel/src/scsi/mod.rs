//! The SCSI midlayer: hosts, targets and LUNs in the device model, the
//! `scsi` bus with its upper drivers, scanning and removal. Host adapters
//! (virtio-scsi on `pci`, usb-storage on `usb`) plug in through
//! [`ScsiTransport`]: "send this CDB to target/LUN with this data, give me
//! status, sense and residue, or a transport error".
//!
//! ```text
//! root/pci0/00:04.0/host0                       the HBA's SCSI host (H in registration order, never reused)
//! root/pci0/00:04.0/host0/target0:0:1           a target that has at least one LUN
//! root/pci0/00:04.0/host0/target0:0:1/0:0:1:0   a LUN: vendor, model, rev, type, scsi_level
//!                                   .../part1   disks (`sd`): capacity, block_size, signature, MBR partitions
//!                                   .../disc    CD-ROMs (`sr`): media_present; the medium in the drive
//! ```
//!
//! - [`cdb`]: command blocks, sense, INQUIRY / REPORT LUNS / capacity data;
//! - [`device`]: what hosts, targets and LUNs show;
//! - [`host`]: scanning, command execution with unit-attention handling,
//!   LUN and host removal;
//! - [`upper`]: the `sd` and `sr` drivers.

pub mod cdb;
pub mod device;
pub mod host;
pub mod media;
pub mod upper;
pub mod verbs;

use alloc::vec::Vec;

use crate::base::device::LocalFuture;

pub use host::{Scsi, ScsiHost};

pub const BUS_NAME: &str = "scsi";

/// The data phase of a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataDir {
    None,
    /// Read up to this many bytes from the device.
    FromDevice(u32),
    /// Write these bytes to the device.
    ToDevice(Vec<u8>),
}

/// One command for one LUN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub target: u16,
    pub lun: u32,
    pub cdb: Vec<u8>,
    pub dir: DataDir,
}

/// A command the target answered (the status may still be CHECK CONDITION).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u8,
    /// Autosense data, when the transport delivers it.
    pub sense: Vec<u8>,
    /// Bytes of the data phase that were not transferred.
    pub residue: u32,
    /// The data-in bytes (`FromDevice` length minus the residue).
    pub data: Vec<u8>,
}

/// The command never reached a target, or never came back from one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportError {
    /// No target at that address, or the LUN or host went away with the
    /// command in flight (virtio-scsi BAD_TARGET, ABORTED; the HBA removed).
    NoDevice,
    /// The transport had to reset the device to recover (usb-storage after
    /// a stall); the command did not complete and may be sent again.
    Reset,
    /// Any other transport failure, with the transport's own code.
    Failed(u8),
}

/// What a host adapter driver gives the midlayer.
pub trait ScsiTransport {
    /// Highest target id (virtio-scsi: `max_target`).
    fn max_target(&self) -> u16;
    /// Highest LUN the adapter can address.
    fn max_lun(&self) -> u32;
    /// Send one command; the future resolves when the device answered or
    /// the transport gave up on it.
    fn queue_command(&self, request: Request) -> LocalFuture<'static, Result<Response, TransportError>>;
}

/// SCSI as a subsystem: the `scsi` bus with `sd` and `sr`, and the host
/// adapter drivers that feed it (`virtio-scsi` on the `pci` bus).
pub struct ScsiSubsystem {
    scsi: alloc::rc::Rc<Scsi>,
}

/// Boot: register the `scsi` bus, its upper drivers, and `virtio-scsi` on
/// the `pci` bus (which probes the adapters already there and starts their
/// scans; the boot waits for those). `scsi.event_buffers=N` on the kernel
/// command line sets how many virtio-scsi event buffers stay posted.
pub fn register(sys: &crate::subsystem::ServicesRef) -> alloc::rc::Rc<dyn crate::subsystem::Subsystem> {
    use alloc::rc::Rc;
    let pci_bus = sys.bus(crate::pci::BUS_NAME);
    let mut core = sys.core.borrow_mut();
    let scsi = Scsi::register(&mut core, &sys.core, sys.platform, sys.spawner.clone(), Rc::clone(&sys.checkpoints));
    let event_buffers = sys
        .cmdline()
        .value("scsi.event_buffers")
        .and_then(|v| v.parse().ok())
        .unwrap_or(crate::virtio::scsi::DEFAULT_EVENT_BUFFERS);
    core.driver_register(pci_bus, Rc::new(crate::virtio::scsi::VirtioScsiDriver::new(Rc::clone(&scsi), event_buffers)));
    *sys.scsi.borrow_mut() = Some(Rc::clone(&scsi));
    Rc::new(ScsiSubsystem { scsi })
}

impl crate::subsystem::Subsystem for ScsiSubsystem {
    fn name(&self) -> &'static str {
        BUS_NAME
    }

    fn verbs(&self) -> &'static [&'static str] {
        &["scsi"]
    }

    fn serve(
        self: alloc::rc::Rc<Self>,
        _sys: crate::subsystem::ServicesRef,
        req: crate::control::request::Request,
    ) -> LocalFuture<'static, crate::control::request::Reply> {
        alloc::boxed::Box::pin(async move {
            let args = req.args();
            verbs::serve(&self.scsi, &args).await.map(alloc::string::String::into_bytes)
        })
    }

    fn pending_work(&self) -> u32 {
        self.scsi.work.count()
    }
}
