//! What SCSI hosts, targets and LUNs show in driverfs.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::cdb::device_type;
use crate::base::{Attribute, DeviceData};
use crate::ide::mbr::Mbr;

/// `host<H>`: the midlayer's view of one adapter.
pub struct HostData {
    pub number: u32,
    /// The adapter driver, e.g. `virtio-scsi`.
    pub proc_name: &'static str,
}

impl DeviceData for HostData {
    fn description(&self) -> String {
        format!("SCSI host {}", self.number)
    }
    fn attributes(&self) -> Vec<Attribute> {
        vec![Attribute::ro("proc_name")]
    }
    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "proc_name" => Some(format!("{}\n", self.proc_name)),
            _ => None,
        }
    }
}

/// `target<H>:0:<id>`.
pub struct TargetData {
    pub host: u32,
    pub id: u16,
}

impl DeviceData for TargetData {
    fn description(&self) -> String {
        format!("SCSI target {}:0:{}", self.host, self.id)
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

/// What the scan learnt about a disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskInfo {
    /// 512-byte sectors.
    pub sectors: u64,
    pub block_size: u32,
    /// `None` when sector 0 holds no MBR (or could not be read).
    pub mbr: Option<Mbr>,
}

/// What the scan learnt about the medium in a CD-ROM drive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediumInfo {
    /// 512-byte sectors.
    pub sectors: u64,
}

/// `<H>:0:<id>:<lun>`: one logical unit, on bus `scsi`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunData {
    pub host: u32,
    pub id: u16,
    pub lun: u32,
    pub device_type: u8,
    pub vendor: String,
    pub model: String,
    pub rev: String,
    pub scsi_level: u8,
    pub removable: bool,
    /// Disks.
    pub disk: Option<DiskInfo>,
    /// CD-ROMs: the medium in the drive, if any.
    pub medium: Option<MediumInfo>,
}

impl LunData {
    pub fn is_disk(&self) -> bool {
        self.device_type == device_type::DISK
    }

    pub fn is_cdrom(&self) -> bool {
        self.device_type == device_type::CDROM
    }
}

impl DeviceData for LunData {
    fn description(&self) -> String {
        self.model.clone()
    }

    fn attributes(&self) -> Vec<Attribute> {
        let mut attrs = vec![
            Attribute::ro("vendor"),
            Attribute::ro("model"),
            Attribute::ro("rev"),
            Attribute::ro("type"),
            Attribute::ro("scsi_level"),
        ];
        if self.is_disk() {
            attrs.extend([Attribute::ro("capacity"), Attribute::ro("block_size"), Attribute::ro("signature")]);
        }
        if self.is_cdrom() {
            attrs.push(Attribute::ro("media_present"));
        }
        attrs
    }

    fn show(&self, attr: &str) -> Option<String> {
        let disk = self.disk.as_ref();
        match attr {
            "vendor" => Some(format!("{}\n", self.vendor)),
            "model" => Some(format!("{}\n", self.model)),
            "rev" => Some(format!("{}\n", self.rev)),
            "type" => Some(format!("{}\n", self.device_type)),
            "scsi_level" => Some(format!("{}\n", self.scsi_level)),
            "capacity" => disk.map(|d| format!("{}\n", d.sectors)),
            "block_size" => disk.map(|d| format!("{}\n", d.block_size)),
            "signature" => disk.map(|d| match &d.mbr {
                Some(mbr) => format!("{:#010x}\n", mbr.signature),
                None => String::from("none\n"),
            }),
            "media_present" if self.is_cdrom() => Some(format!("{}\n", u8::from(self.medium.is_some()))),
            _ => None,
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        env.push(("DEVTYPE", String::from("scsi_device")));
        env.push(("SCSI_TYPE", format!("{}", self.device_type)));
        // Values may not contain spaces (the model does): Linux's alias form.
        env.push(("MODALIAS", format!("scsi:t-0x{:02x}", self.device_type)));
        if self.is_cdrom() {
            env.push(("MEDIA_PRESENT", format!("{}", u8::from(self.medium.is_some()))));
        }
    }
}
