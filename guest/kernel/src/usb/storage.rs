//! `usb-storage`: mass-storage interfaces (class 8, SCSI command set,
//! Bulk-Only Transport) as a SCSI host adapter. Binding one registers
//! `host<H>` under the interface and scans it, so a stick's disk shows as
//! `1-1:1.0/host<H>/target<H>:0:0/<H>:0:0:0`; unplugging the stick removes
//! the LUN, the target, the host, then the interface and the device.
//!
//! Bulk-Only Transport, as QEMU's usb-storage implements it:
//! - a command is a 31-byte CBW in one OUT transfer, the data phase, then a
//!   13-byte CSW IN with the residue and status (0 good, 1 failed);
//! - the CBW's transfer length is the exact expected length: QEMU pads a
//!   short data-in answer up to it rather than ending it early;
//! - BOT has no autosense: after a failed command the next command must be
//!   REQUEST SENSE (any other command drops the sense), so the transport
//!   sends it itself, before letting another command through;
//! - a STALL (a CBW whose direction disagrees with the command, say) can
//!   leave QEMU's device in `needs_reset`, stalling every bulk packet until
//!   a port reset; class Mass Storage Reset and CLEAR_FEATURE(HALT) do not
//!   clear it. So on any STALL the transport has the USB core reset the
//!   device's port ([`super::reset_device`]: same address, same objects)
//!   and fails the command with [`TransportError::Reset`]; the midlayer
//!   retries its own commands once, a raw command reports it.

use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::descriptor::{CLASS_MASS_STORAGE, Endpoint, TransferType};
use super::device::UsbInterface;
use super::hcd::{self, Transfer, UsbError};
use super::{UsbContext, UsbDev, UsbHost};
use crate::base::device::LocalFuture;
use crate::base::{Core, DeviceId, Driver};
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::klog;
use crate::scsi::cdb::{self, status};
use crate::scsi::{DataDir, Request, Response, Scsi, ScsiHost, ScsiTransport, TransportError};

pub const DRIVER_NAME: &str = "usb-storage";
/// Interface subclass: the SCSI transparent command set.
pub const SUBCLASS_SCSI: u8 = 0x06;
/// Interface protocol: Bulk-Only Transport.
pub const PROTOCOL_BOT: u8 = 0x50;

pub const CBW_LEN: usize = 31;
pub const CSW_LEN: usize = 13;
const CBW_SIGNATURE: u32 = 0x4342_5355;
const CSW_SIGNATURE: u32 = 0x5342_5355;
const CBW_FLAG_IN: u8 = 0x80;

/// The Command Block Wrapper for one command.
pub fn cbw(tag: u32, length: u32, data_in: bool, lun: u8, cdb: &[u8]) -> [u8; CBW_LEN] {
    let mut b = [0u8; CBW_LEN];
    b[0..4].copy_from_slice(&CBW_SIGNATURE.to_le_bytes());
    b[4..8].copy_from_slice(&tag.to_le_bytes());
    b[8..12].copy_from_slice(&length.to_le_bytes());
    b[12] = if data_in { CBW_FLAG_IN } else { 0 };
    b[13] = lun;
    let n = cdb.len().min(16);
    b[14] = n as u8;
    b[15..15 + n].copy_from_slice(&cdb[..n]);
    b
}

/// A parsed Command Status Wrapper.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Csw {
    pub tag: u32,
    pub residue: u32,
    pub status: u8,
}

impl Csw {
    pub fn parse(b: &[u8]) -> Option<Csw> {
        if b.len() != CSW_LEN || u32::from_le_bytes(b[0..4].try_into().ok()?) != CSW_SIGNATURE {
            return None;
        }
        Some(Csw {
            tag: u32::from_le_bytes(b[4..8].try_into().ok()?),
            residue: u32::from_le_bytes(b[8..12].try_into().ok()?),
            status: b[12],
        })
    }
}

/// One stick's Bulk-Only Transport.
pub struct Bot {
    ctx: Rc<UsbContext>,
    host: Rc<UsbHost>,
    dev: Rc<UsbDev>,
    bulk_in: Endpoint,
    bulk_out: Endpoint,
    tag: Cell<u32>,
    /// A command is on the wire (BOT runs one at a time); held across the
    /// port reset after a stall, so no command goes out meanwhile.
    busy: Cell<bool>,
}

struct Busy<'a>(&'a Cell<bool>);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

impl Bot {
    async fn bulk(&self, endpoint: &Endpoint, transfer: Transfer) -> Result<Vec<u8>, UsbError> {
        if !self.dev.alive() || !self.host.alive.get() {
            return Err(UsbError::NoDevice);
        }
        hcd::transfer(&*self.host.hc, self.ctx.platform, self.dev.pipe(endpoint), transfer).await
    }

    /// CBW, data, CSW.
    async fn run(&self, lun: u32, cdb: &[u8], dir: &DataDir) -> Result<Response, UsbError> {
        let tag = self.tag.get().wrapping_add(1);
        self.tag.set(tag);
        let (length, data_in) = match dir {
            DataDir::None => (0, false),
            DataDir::FromDevice(n) => (*n, true),
            DataDir::ToDevice(d) => (d.len() as u32, false),
        };
        let wrapper = cbw(tag, length, data_in, lun as u8, cdb);
        self.bulk(&self.bulk_out, Transfer::Out { data: wrapper.to_vec() }).await?;
        let mut data = match dir {
            DataDir::FromDevice(n) if *n > 0 => self.bulk(&self.bulk_in, Transfer::In { length: *n as usize }).await?,
            DataDir::ToDevice(d) if !d.is_empty() => {
                self.bulk(&self.bulk_out, Transfer::Out { data: d.clone() }).await?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        let raw = self.bulk(&self.bulk_in, Transfer::In { length: CSW_LEN }).await?;
        let csw = Csw::parse(&raw).filter(|c| c.tag == tag).ok_or(UsbError::Protocol)?;
        if data_in {
            data.truncate(length.saturating_sub(csw.residue) as usize);
        }
        let status = match csw.status {
            0 => status::GOOD,
            1 => status::CHECK_CONDITION,
            _ => return Err(UsbError::Protocol),
        };
        Ok(Response { status, sense: Vec::new(), residue: csw.residue, data })
    }

    async fn queue(&self, request: Request) -> Result<Response, TransportError> {
        wait_until(|| !self.busy.get()).await;
        self.busy.set(true);
        let _busy = Busy(&self.busy);
        match self.run_with_sense(&request).await {
            Ok(response) => Ok(response),
            Err(UsbError::NoDevice) => Err(TransportError::NoDevice),
            Err(UsbError::Stall) => Err(self.recover().await),
            Err(other) => Err(TransportError::Failed(other as u8)),
        }
    }

    /// The command, then at once REQUEST SENSE if it failed.
    async fn run_with_sense(&self, request: &Request) -> Result<Response, UsbError> {
        let mut response = self.run(request.lun, &request.cdb, &request.dir).await?;
        if response.status == status::CHECK_CONDITION {
            // Right now, before any other command drops the sense.
            let sense_len = u32::from(cdb::SENSE_LEN);
            let sense = self.run(request.lun, &cdb::request_sense(), &DataDir::FromDevice(sense_len)).await?;
            if sense.status == status::GOOD {
                response.sense = sense.data;
            }
        }
        Ok(response)
    }

    /// A bulk pipe stalled: QEMU's stick now stalls everything until its
    /// port is reset. Reset it (the device keeps its address, objects and
    /// configuration); the command itself is lost.
    async fn recover(&self) -> TransportError {
        klog!(self.ctx.platform, "usb-storage: {}: a bulk pipe stalled; resetting the port", self.dev.name());
        match super::reset_device(&self.ctx, &self.host, &self.dev).await {
            Ok(()) => TransportError::Reset,
            Err(_) => TransportError::NoDevice,
        }
    }
}

struct BotTransport(Rc<Bot>);

impl ScsiTransport for BotTransport {
    fn max_target(&self) -> u16 {
        0
    }
    /// QEMU's GetMaxLun answers 0.
    fn max_lun(&self) -> u32 {
        0
    }
    fn queue_command(&self, request: Request) -> LocalFuture<'static, Result<Response, TransportError>> {
        let bot = Rc::clone(&self.0);
        alloc::boxed::Box::pin(async move { bot.queue(request).await })
    }
}

/// The `usb-storage` driver on the `usb` bus.
pub struct StorageDriver {
    pub ctx: Rc<UsbContext>,
    pub scsi: Rc<Scsi>,
    hosts: RefCell<BTreeMap<DeviceId, Rc<ScsiHost>>>,
}

impl StorageDriver {
    pub fn new(ctx: Rc<UsbContext>, scsi: Rc<Scsi>) -> Self {
        StorageDriver { ctx, scsi, hosts: RefCell::new(BTreeMap::new()) }
    }
}

fn bulk_endpoint(iface: &UsbInterface, data_in: bool) -> Option<Endpoint> {
    iface.interface.endpoints.iter().copied().find(|e| e.kind == TransferType::Bulk && e.is_in() == data_in)
}

impl Driver for StorageDriver {
    fn name(&self) -> &'static str {
        DRIVER_NAME
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<UsbInterface>(dev).is_some_and(|i| {
            i.interface.class == CLASS_MASS_STORAGE
                && i.interface.subclass == SUBCLASS_SCSI
                && i.interface.protocol == PROTOCOL_BOT
        })
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let iface = core.data::<UsbInterface>(dev).ok_or(Errno::ENODEV)?;
        let host = self.ctx.host(iface.bus).ok_or(Errno::ENODEV)?;
        let usb_dev = host.device_at(&iface.path).ok_or(Errno::ENODEV)?;
        let (Some(bulk_in), Some(bulk_out)) = (bulk_endpoint(iface, true), bulk_endpoint(iface, false)) else {
            return Err(Errno::ENODEV);
        };
        let bot = Rc::new(Bot {
            ctx: Rc::clone(&self.ctx),
            host,
            dev: usb_dev,
            bulk_in,
            bulk_out,
            tag: Cell::new(0),
            busy: Cell::new(false),
        });
        let scsi_host = self.scsi.add_host(core, dev, DRIVER_NAME, Rc::new(BotTransport(bot)))?;
        self.hosts.borrow_mut().insert(dev, Rc::clone(&scsi_host));
        let work = self.scsi.work.start();
        self.scsi.spawner.spawn(async move {
            scsi_host.scan_host().await;
            drop(work);
        });
        Ok(())
    }

    /// The interface goes (its `host<H>` and everything below were
    /// unregistered first, children before parents).
    fn remove(&self, _core: &mut Core, dev: DeviceId) {
        if let Some(host) = self.hosts.borrow_mut().remove(&dev) {
            host.forget_all();
            self.scsi.forget_host(&host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cbw_is_31_bytes_with_the_exact_length_direction_and_command() {
        let read_capacity = [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let b = cbw(7, 8, true, 0, &read_capacity);
        assert_eq!(b.len(), 31);
        assert_eq!(&b[0..4], b"USBC");
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 7);
        assert_eq!(u32::from_le_bytes(b[8..12].try_into().unwrap()), 8);
        assert_eq!(b[12], 0x80);
        assert_eq!(b[14], 10);
        assert_eq!(&b[15..25], &read_capacity);
        assert!(b[25..].iter().all(|&x| x == 0));
        assert_eq!(cbw(1, 0, false, 0, &[0; 6])[12], 0, "no data phase: OUT flag");
    }

    #[test]
    fn a_csw_gives_tag_residue_and_status_and_anything_else_is_refused() {
        let mut b = [0u8; CSW_LEN];
        b[0..4].copy_from_slice(b"USBS");
        b[4..8].copy_from_slice(&9u32.to_le_bytes());
        b[8..12].copy_from_slice(&28u32.to_le_bytes());
        b[12] = 1;
        assert_eq!(Csw::parse(&b), Some(Csw { tag: 9, residue: 28, status: 1 }));
        assert_eq!(Csw::parse(&b[..12]), None, "short");
        b[0] = b'X';
        assert_eq!(Csw::parse(&b), None, "bad signature");
    }
}
