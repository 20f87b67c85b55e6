//! CD-ROM media: reading what is in the drive, and following changes.
//!
//! Every medium is its own `disc` device under the drive. On a change the
//! old one is unregistered (reads in flight drain first) and the new one is
//! registered only after the old object has been *released*, as the 2003
//! IDE fix made slot reuse wait on `release()`: a stale handle can never
//! reach the new medium's data, and a reference someone still holds on the
//! old medium delays the new one instead of aliasing it.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::string::String;

use super::IdeContext;
use super::ata::{AtaError, Channel};
use super::atapi::{self, MediaStatus};
use super::device::{Disc, IdeDrive};
use crate::base::{Core, CoreRef, DeviceId, DeviceState, UeventAction, device_unregister};
use crate::executor::{wait_until, yield_now};
use crate::fault::{self, Fault};
use crate::hw::Platform;
use crate::klog;

/// Executor passes between two media polls (GET EVENT STATUS NOTIFICATION
/// costs a few dozen port accesses).
const POLL_PASSES: u32 = 8;

/// What a drive holds right now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Medium {
    pub tray_open: bool,
    /// PREVENT MEDIUM REMOVAL in force, as the drive reports it.
    pub locked: bool,
    /// `Some` when a medium is present and readable.
    pub disc: Option<DiscInfo>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscInfo {
    pub sectors: u64,
    pub volume: Option<String>,
}

pub fn poll_status(p: &dyn Platform, channel: Channel, unit: u8) -> Result<MediaStatus, AtaError> {
    let data = channel.packet(p, unit, &atapi::get_event_status_media(), 8)?;
    atapi::parse_media_event(&data).ok_or(AtaError::Overrun)
}

/// Read the drive's state: tray, and for a present medium its capacity and
/// volume identifier (which proves a real read through the bus).
pub fn read_medium(p: &dyn Platform, channel: Channel, unit: u8) -> Medium {
    let locked = lock_state(p, channel, unit);
    let status = match poll_status(p, channel, unit) {
        Ok(s) => s,
        Err(_) => return Medium { tray_open: false, locked, disc: None },
    };
    if !status.present {
        return Medium { tray_open: status.tray_open, locked, disc: None };
    }
    // After a change QEMU answers NOT READY, then UNIT ATTENTION, then GOOD;
    // REQUEST SENSE after each CHECK CONDITION consumes the condition.
    let mut ready = false;
    for _ in 0..8 {
        match channel.packet(p, unit, &atapi::TEST_UNIT_READY, 0) {
            Ok(_) => {
                ready = true;
                break;
            }
            Err(AtaError::CheckCondition { .. }) => {
                let _ = channel.request_sense(p, unit);
            }
            Err(_) => break,
        }
    }
    if !ready {
        return Medium { tray_open: status.tray_open, locked, disc: None };
    }
    let capacity = channel.packet(p, unit, &atapi::read_capacity(), 8).ok().and_then(|d| atapi::parse_capacity(&d));
    let Some((last_lba, block_len)) = capacity else {
        return Medium { tray_open: status.tray_open, locked, disc: None };
    };
    let sectors = (u64::from(last_lba) + 1) * u64::from(block_len) / 512;
    let volume =
        channel.packet(p, unit, &atapi::read10(16, 1), 2048).ok().and_then(|block| atapi::iso9660_volume_id(&block));
    Medium { tray_open: status.tray_open, locked, disc: Some(DiscInfo { sectors, volume }) }
}

/// Is the tray locked? (MODE SENSE, capabilities page.)
pub fn lock_state(p: &dyn Platform, channel: Channel, unit: u8) -> bool {
    packet_past_attention(p, channel, unit, &atapi::mode_sense_capabilities(), 36)
        .ok()
        .and_then(|d| atapi::parse_lock_state(&d))
        .unwrap_or(false)
}

/// An ATAPI command that may meet what a medium change left pending: QEMU
/// answers every command but REQUEST SENSE, INQUIRY, GET CONFIGURATION and
/// GESN with NOT READY, then UNIT ATTENTION (held until REQUEST SENSE reads
/// it), MODE SENSE and PREVENT ALLOW MEDIUM REMOVAL included. Read each
/// condition out and retry, a bounded number of times.
pub fn packet_past_attention(
    p: &dyn Platform,
    channel: Channel,
    unit: u8,
    cdb: &atapi::Cdb,
    max: usize,
) -> Result<alloc::vec::Vec<u8>, AtaError> {
    for _ in 0..3 {
        match channel.packet(p, unit, cdb, max) {
            Err(AtaError::CheckCondition { .. }) => {
                let _ = channel.request_sense(p, unit);
            }
            other => return other,
        }
    }
    channel.packet(p, unit, cdb, max)
}

/// Record the medium in the drive's attributes and register its `disc`.
pub fn install(core: &mut Core, drive: DeviceId, medium: &Medium) {
    if let Some(d) = core.data_mut::<IdeDrive>(drive) {
        d.media_present = medium.disc.is_some();
        d.tray_open = medium.tray_open;
        d.locked = medium.locked;
    }
    if let Some(info) = &medium.disc {
        let disc = Disc { sectors: info.sectors, volume: info.volume.clone() };
        if let Err(e) = core.device_register("disc", Some(drive), None, Box::new(disc)) {
            // Only reachable if the old medium were still unreleased, which
            // `media_changed` waits out first.
            core.bug(alloc::format!("registering a new disc under {} failed: {e}", core.device_path(drive)));
        }
    }
}

/// Follow one CD drive's media until the drive goes away.
pub async fn poll(ctx: Rc<IdeContext>, drive: DeviceId, channel: Channel, unit: u8) {
    loop {
        for _ in 0..POLL_PASSES {
            yield_now().await;
        }
        let Some(core) = ctx.core.upgrade() else { return };
        if core.borrow().state(drive) != DeviceState::Registered {
            return;
        }
        let Ok(status) = poll_status(ctx.platform, channel, unit) else { continue };
        let known = core.borrow().data::<IdeDrive>(drive).map(|d| (d.media_present, d.tray_open));
        let unchanged = known == Some((status.present, status.tray_open));
        // An eject request the guest's lock refused changes nothing.
        if unchanged && (status.event == 0 || status.event == atapi::EVENT_EJECT_REQUEST) {
            continue;
        }
        let _work = ctx.work.start();
        media_changed(&ctx, &core, drive, channel, unit).await;
    }
}

async fn media_changed(ctx: &IdeContext, core: &CoreRef, drive: DeviceId, channel: Channel, unit: u8) {
    let old = core.borrow().find_child(Some(drive), "disc");
    if let Some(old) = old {
        let _ = device_unregister(core, old).await;
        if core.borrow().state(old) != DeviceState::Released {
            klog!(
                ctx.platform,
                "ide: old medium in {} still referenced; waiting for its release",
                core.borrow().device_path(drive)
            );
        }
        if !fault::planted(Fault::MediumChangeSkipsRelease) {
            wait_until(|| core.borrow().state(old) == DeviceState::Released).await;
        }
    }
    if core.borrow().state(drive) != DeviceState::Registered {
        return;
    }
    // Read the hardware only now: the medium may have changed again while
    // the old one drained.
    let medium = read_medium(ctx.platform, channel, unit);
    let mut c = core.borrow_mut();
    install(&mut c, drive, &medium);
    c.uevent(drive, UeventAction::Change);
    klog!(ctx.platform, "ide: {} medium: {:?}", c.device_path(drive), medium);
}
