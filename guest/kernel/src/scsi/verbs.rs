//! The `scsi` control verbs.
//!
//! - `scsi scan <H>`: scan every target of host H and probe every known LUN,
//!   as after EVENTS_MISSED (Linux: writing `- - -` to the host's `scan`);
//! - `scsi rescan <H>:0:<id>:<lun>`: probe one address (INQUIRY, TEST UNIT
//!   READY): a LUN that is gone is removed and the verb fails with ENODEV;
//!   an address with no LUN registered is scanned and added if present.
//!   Its commands pass the `scsi-io` checkpoint, so a test can unplug the
//!   LUN with a command in flight.
//! - `scsi cmd <H>:0:<id>:<lun> <cdb-hex> [in <len> | out <len>]`: send one
//!   command as it is (Linux's `sg_raw`): no retries, no unit-attention
//!   handling; a data phase of `len` bytes in, or `len` zero bytes out. The
//!   answer is the status, residue, sense and data-in. The transport sees
//!   exactly what was asked for, so a data direction that disagrees with
//!   the CDB reaches the device as such (that is how a test drives a
//!   usb-storage stick into its stall recovery).

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use super::cdb;
use super::host::{CommandError, Scsi};
use super::{DataDir, TransportError};
use crate::errno::Errno;

type Reply = Result<String, (Errno, String)>;

pub async fn serve(scsi: &Rc<Scsi>, args: &[&str]) -> Reply {
    match args {
        ["scan", host] => {
            let number: u32 = host.parse().map_err(|_| (Errno::EINVAL, format!("bad host number: {host}")))?;
            let host = scsi.find_host(number).ok_or((Errno::ENOENT, format!("no such host: host{number}")))?;
            host.scan_host().await;
            host.probe_known_luns().await;
            Ok(String::new())
        }
        ["rescan", address] => {
            let (host, id, lun) =
                scsi.find_lun(address).ok_or((Errno::ENOENT, format!("no such host or bad address: {address}")))?;
            if host.lun_device(id, lun).is_none() {
                return match host.scan_lun(id, lun).await {
                    Ok(true) => Ok(String::new()),
                    Ok(false) => Err((Errno::ENOENT, format!("nothing at {address}"))),
                    Err(e) => Err((e, format!("scan of {address} failed"))),
                };
            }
            let gone = match host.inquiry(id, lun).await {
                Ok(Some(_)) => matches!(
                    host.command(id, lun, cdb::test_unit_ready(), DataDir::None).await,
                    Err(CommandError::NoDevice)
                ),
                Ok(None) | Err(CommandError::NoDevice) => true,
                Err(e) => return Err((e.errno(), format!("{address}: {e:?}"))),
            };
            if gone {
                host.remove_lun(id, lun).await;
                return Err((Errno::ENODEV, format!("removed: {address}")));
            }
            Ok(String::new())
        }
        ["cmd", address, cdb_hex, phase @ ..] => raw_command(scsi, address, cdb_hex, phase).await,
        _ => Err((Errno::EINVAL, String::from(USAGE))),
    }
}

const USAGE: &str = "usage: scsi scan <host> | scsi rescan <H>:0:<id>:<lun> | \
                     scsi cmd <H>:0:<id>:<lun> <cdb-hex> [in <len> | out <len>]";

/// The largest data phase `scsi cmd` takes (64 KiB).
pub const RAW_MAX_DATA: u32 = 65536;

/// `scsi cmd`: one command to a registered LUN, exactly as given.
async fn raw_command(scsi: &Rc<Scsi>, address: &str, cdb_hex: &str, phase: &[&str]) -> Reply {
    let cdb = parse_hex(cdb_hex)
        .filter(|c| (1..=16).contains(&c.len()))
        .ok_or_else(|| (Errno::EINVAL, format!("bad CDB {cdb_hex:?}: 1 to 16 bytes as hex digits, e.g. 1200000024")))?;
    let length = |len: &str| {
        len.parse::<u32>()
            .ok()
            .filter(|n| (1..=RAW_MAX_DATA).contains(n))
            .ok_or_else(|| (Errno::EINVAL, format!("bad data length {len:?}: 1 to {RAW_MAX_DATA}")))
    };
    let dir = match phase {
        [] => DataDir::None,
        ["in", len] => DataDir::FromDevice(length(len)?),
        ["out", len] => DataDir::ToDevice(alloc::vec![0; length(len)? as usize]),
        _ => return Err((Errno::EINVAL, String::from(USAGE))),
    };
    let (host, id, lun) =
        scsi.find_lun(address).ok_or((Errno::ENOENT, format!("no such host or bad address: {address}")))?;
    if host.lun_device(id, lun).is_none() {
        return Err((Errno::ENOENT, format!("no LUN registered at {address}")));
    }
    let response = host.send(id, lun, cdb, dir).await.map_err(|e| match e {
        TransportError::NoDevice => (Errno::ENODEV, format!("{address}: no device")),
        TransportError::Reset => {
            (Errno::EIO, format!("{address}: the transport reset the device; the command did not complete"))
        }
        TransportError::Failed(code) => (Errno::EIO, format!("{address}: transport error {code}")),
    })?;
    Ok(format!(
        "status {:#04x}\nresidue {}\nsense {}\ndata {}\n",
        response.status,
        response.residue,
        hex(&response.sense),
        hex(&response.data)
    ))
}

fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok()).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// For tests: the LUN names a host has registered.
pub fn lun_names(scsi: &Scsi) -> Vec<String> {
    scsi.hosts().iter().flat_map(|h| h.luns().into_iter().map(|((id, lun), _)| h.lun_name(id, lun))).collect()
}
