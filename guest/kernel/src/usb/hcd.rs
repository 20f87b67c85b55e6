//! The host-controller interface: the one seam between a controller driver
//! (UHCI today; xHCI would be another implementation) and the hub, HID and
//! storage code above it.
//!
//! It is deliberately narrow: root ports look like the ports of any hub
//! (`wPortStatus`/`wPortChange` bits, §11.24.2.7), and a transfer is
//! submitted, polled and cancelled by id. Addresses, data toggles and the
//! schedule are the controller's business; the stack never sees a TD.

use alloc::vec::Vec;

use super::request::Setup;
use crate::executor::yield_now;
use crate::hw::Platform;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsbError {
    /// The device is gone: a dead handle, or the controller reported no
    /// answer (UHCI: CRC/timeout with the port disconnected).
    NoDevice,
    /// The endpoint answered STALL.
    Stall,
    /// More data than the buffer holds.
    Babble,
    /// No completion within the transfer timeout; the transfer was cancelled.
    Timeout,
    /// The controller has no room for another transfer right now.
    Busy,
    /// The answer made no sense (short descriptor, bad signature).
    Protocol,
}

impl UsbError {
    pub fn errno(self) -> crate::errno::Errno {
        use crate::errno::Errno;
        match self {
            UsbError::NoDevice => Errno::ENODEV,
            UsbError::Busy => Errno::EBUSY,
            _ => Errno::EIO,
        }
    }
}

/// `wPortStatus` bits (hub class), shared by root and external hub ports.
pub mod port {
    pub const CONNECTION: u16 = 0x0001;
    pub const ENABLE: u16 = 0x0002;
    pub const RESET: u16 = 0x0010;
    pub const POWER: u16 = 0x0100;
    pub const LOW_SPEED: u16 = 0x0200;
    pub const HIGH_SPEED: u16 = 0x0400;
    /// `wPortChange` bits.
    pub const C_CONNECTION: u16 = 0x0001;
    pub const C_ENABLE: u16 = 0x0002;
    pub const C_SUSPEND: u16 = 0x0004;
    pub const C_OVER_CURRENT: u16 = 0x0008;
    pub const C_RESET: u16 = 0x0010;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStatus {
    pub status: u16,
    pub change: u16,
}

impl PortStatus {
    pub fn connected(&self) -> bool {
        self.status & port::CONNECTION != 0
    }
    pub fn enabled(&self) -> bool {
        self.status & port::ENABLE != 0
    }
    pub fn speed(&self) -> Speed {
        if self.status & port::LOW_SPEED != 0 {
            Speed::Low
        } else if self.status & port::HIGH_SPEED != 0 {
            Speed::High
        } else {
            Speed::Full
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speed {
    Low,
    Full,
    High,
}

impl Speed {
    /// As Linux's `speed` attribute shows it, in Mb/s.
    pub fn mbps(self) -> &'static str {
        match self {
            Speed::Low => "1.5",
            Speed::Full => "12",
            Speed::High => "480",
        }
    }
}

/// Where a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pipe {
    pub address: u8,
    pub endpoint: u8,
    pub max_packet: u16,
    pub speed: Speed,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// SETUP, an optional data stage (`Setup::length` bytes, direction from
    /// the request type; `out` is the OUT data), STATUS.
    Control { setup: Setup, out: Vec<u8> },
    /// Up to `length` bytes in from a bulk or interrupt IN endpoint.
    In { length: usize },
    /// The bytes out to a bulk or interrupt OUT endpoint.
    Out { data: Vec<u8> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct TransferId(pub u32);

/// A USB host controller as the stack needs it.
pub trait HostController {
    /// The root hub's product string (`UHCI Host Controller`).
    fn product(&self) -> &'static str;
    /// How many root ports.
    fn root_ports(&self) -> u8;
    /// Ports are numbered from 1, as on hubs.
    fn root_port_status(&self, port: u8) -> PortStatus;
    /// Acknowledge the given `wPortChange` bits.
    fn root_port_clear_change(&self, port: u8, change: u16);
    /// Reset the port and enable it; afterwards the device answers at
    /// address 0. Synchronous: controllers that need time do it inside.
    fn root_port_reset(&self, port: u8);
    /// Queue a transfer. The data toggle of bulk and interrupt pipes is the
    /// controller's to keep.
    fn submit(&self, pipe: Pipe, transfer: Transfer) -> Result<TransferId, UsbError>;
    /// `None` while in flight; then the IN data (empty for OUT) or the error.
    /// A finished transfer is forgotten once its result has been taken.
    fn poll(&self, id: TransferId) -> Option<Result<Vec<u8>, UsbError>>;
    /// Stop a transfer; its id is dead afterwards.
    fn cancel(&self, id: TransferId);
    /// A new device took this address: start its pipes' toggles at DATA0.
    fn reset_pipes(&self, address: u8);
    /// The controller goes away: stop it. Transfers fail from now on.
    fn shutdown(&self);
}

/// How long one transfer may take before it is cancelled, in TSC ticks
/// (about a second under TCG; QEMU finishes a control transfer in 1–2 ms,
/// so only a device that stopped answering gets near it).
pub const TRANSFER_TIMEOUT_TICKS: u64 = 3_000_000_000;

/// Submit, then wait (yielding to other tasks) for the result.
pub async fn transfer(
    hc: &dyn HostController,
    platform: &dyn Platform,
    pipe: Pipe,
    t: Transfer,
) -> Result<Vec<u8>, UsbError> {
    let id = hc.submit(pipe, t)?;
    let start = platform.ticks();
    loop {
        if let Some(result) = hc.poll(id) {
            return result;
        }
        if platform.ticks().wrapping_sub(start) > TRANSFER_TIMEOUT_TICKS {
            hc.cancel(id);
            return Err(UsbError::Timeout);
        }
        yield_now().await;
    }
}
