//! The `scsi` control verbs.
//!
//! - `scsi scan <H>`: scan every target of host H and probe every known LUN,
//!   as after EVENTS_MISSED (Linux: writing `- - -` to the host's `scan`);
//! - `scsi rescan <H>:0:<id>:<lun>`: probe one address (INQUIRY, TEST UNIT
//!   READY): a LUN that is gone is removed and the verb fails with ENODEV;
//!   an address with no LUN registered is scanned and added if present.
//!   Its commands pass the `scsi-io` checkpoint, so a test can unplug the
//!   LUN with a command in flight.

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use super::DataDir;
use super::cdb;
use super::host::{CommandError, Scsi};
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
        _ => Err((Errno::EINVAL, String::from("usage: scsi scan <host> | scsi rescan <H>:0:<id>:<lun>"))),
    }
}

/// For tests: the LUN names a host has registered.
pub fn lun_names(scsi: &Scsi) -> Vec<String> {
    scsi.hosts().iter().flat_map(|h| h.luns().into_iter().map(|((id, lun), _)| h.lun_name(id, lun))).collect()
}
