//! Following the medium of a CD-ROM LUN (`sr`), as IDE's CD poll does:
//! every [`POLL_PASSES`] passes a TEST UNIT READY; 6/28/00 (medium may have
//! changed) or a change between "ready" and 2/3A (no medium) replaces the
//! LUN's `disc` child with a new object for the new medium (a handle on the
//! old one reads ENODEV, never the new medium) and sends `change` on the
//! LUN. The poll ends when the LUN goes.

use alloc::boxed::Box;
use alloc::rc::Rc;

use super::cdb::{self, Sense, key};
use super::device::{LunData, MediumInfo};
use super::host::ScsiHost;
use super::{DataDir, TransportError};
use crate::base::{DeviceId, DeviceState, UeventAction, device_unregister};
use crate::executor::yield_now;
use crate::ide::device::Disc;

/// Executor passes between two polls (fewer than `settle` waits).
pub const POLL_PASSES: u32 = 8;

pub async fn poll(host: Rc<ScsiHost>, lun_dev: DeviceId, id: u16, lun: u32) {
    let Some(core) = host.scsi.core.upgrade() else { return };
    loop {
        for _ in 0..POLL_PASSES {
            yield_now().await;
        }
        if core.borrow().state(lun_dev) != DeviceState::Registered {
            return;
        }
        let response = match host.send(id, lun, cdb::test_unit_ready(), DataDir::None).await {
            Ok(r) => r,
            Err(TransportError::NoDevice) => return,
            Err(TransportError::Failed(_) | TransportError::Reset) => continue,
        };
        let sense = Sense::parse(&response.sense);
        let changed = sense.is_some_and(Sense::is_medium_changed);
        let present = match sense {
            None => true,
            Some(s) if s.key == key::NOT_READY => false,
            // Another unit attention (6/29, 6/3F) or 6/28: ask again next time.
            Some(_) if !changed => continue,
            Some(_) => true,
        };
        let had = core.borrow().data::<LunData>(lun_dev).is_some_and(|d| d.medium.is_some());
        if !changed && present == had {
            continue;
        }
        let _work = host.scsi.work.start();
        let medium = if present {
            match host.read_capacity(id, lun).await {
                Ok((sectors, _)) => Some(MediumInfo { sectors }),
                Err(_) => None,
            }
        } else {
            None
        };
        replace_medium(&host, lun_dev, medium).await;
    }
}

/// Unregister the old `disc` (waiting for its reads), record the new
/// medium, register a new `disc` if there is one, send `change`.
async fn replace_medium(host: &ScsiHost, lun_dev: DeviceId, medium: Option<MediumInfo>) {
    let Some(core) = host.scsi.core.upgrade() else { return };
    let old = {
        let c = core.borrow();
        c.find_child(Some(lun_dev), "disc")
    };
    if let Some(old) = old {
        let _ = device_unregister(&core, old).await;
    }
    let mut c = core.borrow_mut();
    if c.state(lun_dev) != DeviceState::Registered {
        return;
    }
    if let Some(data) = c.data_mut::<LunData>(lun_dev) {
        data.medium = medium.clone();
    }
    if let Some(m) = medium {
        super::upper::add_managed(&mut c, lun_dev, "disc", Box::new(Disc { sectors: m.sectors, volume: None }));
    }
    c.uevent(lun_dev, UeventAction::Change);
}
