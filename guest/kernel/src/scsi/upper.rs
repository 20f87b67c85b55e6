//! The upper drivers on the `scsi` bus, bound by peripheral device type:
//! `sd` for disks (type 0), `sr` for CD-ROMs (type 5).
//!
//! Both take what the scan already read into the LUN object; probing does
//! no I/O. `sd` creates the MBR partitions as `partN` children, `sr` the
//! `disc` child for the medium in the drive. The children are managed:
//! unbinding the driver (or removing the LUN) unregisters them first.

use alloc::boxed::Box;
use alloc::format;
use alloc::rc::Rc;

use super::device::LunData;
use super::host::Scsi;
use crate::base::{Core, DeviceId, Driver};
use crate::errno::Errno;
use crate::ide::device::{Disc, IdePartition};

pub const SD: &str = "sd";
pub const SR: &str = "sr";

pub fn register(core: &mut Core, scsi: &Rc<Scsi>) {
    core.driver_register(scsi.bus, Rc::new(Sd));
    core.driver_register(scsi.bus, Rc::new(Sr));
}

struct Sd;

impl Driver for Sd {
    fn name(&self) -> &'static str {
        SD
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<LunData>(dev).is_some_and(LunData::is_disk)
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        let partitions = core
            .data::<LunData>(dev)
            .and_then(|d| d.disk.as_ref())
            .and_then(|d| d.mbr.as_ref())
            .map(|m| m.partitions.clone())
            .unwrap_or_default();
        for part in partitions {
            add_managed(core, dev, &format!("part{}", part.number), Box::new(IdePartition(part)));
        }
        Ok(())
    }
}

struct Sr;

impl Driver for Sr {
    fn name(&self) -> &'static str {
        SR
    }

    fn matches(&self, core: &Core, dev: DeviceId) -> bool {
        core.data::<LunData>(dev).is_some_and(LunData::is_cdrom)
    }

    fn probe(&self, core: &mut Core, dev: DeviceId) -> Result<(), Errno> {
        if let Some(medium) = core.data::<LunData>(dev).and_then(|d| d.medium.clone()) {
            add_managed(core, dev, "disc", Box::new(Disc { sectors: medium.sectors, volume: None }));
        }
        Ok(())
    }
}

/// Register a child the LUN's current driver owns.
pub fn add_managed(core: &mut Core, parent: DeviceId, name: &str, data: Box<dyn crate::base::DeviceData>) {
    let child = core.device_initialize(name, Some(parent), None, data);
    core.set_managed(child);
    if core.device_add(child).is_err() {
        core.put(child);
    }
}
