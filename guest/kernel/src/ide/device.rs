//! What IDE objects show in driverfs.
//!
//! ```text
//! root/pci0/00:01.1/ide0                 channel (no bus, like 2.5's hwif gendev)
//! root/pci0/00:01.1/ide0/0.0             drive on bus "ide": model, media, capacity, signature
//! root/pci0/00:01.1/ide0/0.0/part1       MBR partition: start, size, type
//! root/pci0/00:01.1/ide1/1.0             CD drive: model, media, media_present, tray_open, locked
//! root/pci0/00:01.1/ide1/1.0/disc        the medium in it: capacity, volume
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use super::mbr::Partition;
use crate::base::{Attribute, DeviceData};

pub struct IdeChannel {
    pub index: u8,
}

impl DeviceData for IdeChannel {
    fn description(&self) -> String {
        format!("IDE channel {}", self.index)
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    Disk,
    Cdrom,
}

/// A drive in one of the four static positions.
pub struct IdeDrive {
    pub channel: u8,
    pub unit: u8,
    pub media: Media,
    pub model: String,
    /// Disks: 512-byte sectors from IDENTIFY.
    pub sectors: u64,
    /// Disks: the MBR's disk signature, if sector 0 holds an MBR.
    pub signature: Option<u32>,
    /// CD drives: what the last media poll found.
    pub media_present: bool,
    pub tray_open: bool,
    /// CD drives: PREVENT MEDIUM REMOVAL in force.
    pub locked: bool,
}

impl DeviceData for IdeDrive {
    fn description(&self) -> String {
        self.model.clone()
    }

    fn attributes(&self) -> Vec<Attribute> {
        match self.media {
            Media::Disk => vec![
                Attribute::ro("model"),
                Attribute::ro("media"),
                Attribute::ro("capacity"),
                Attribute::ro("signature"),
            ],
            Media::Cdrom => vec![
                Attribute::ro("model"),
                Attribute::ro("media"),
                Attribute::ro("media_present"),
                Attribute::ro("tray_open"),
                Attribute::ro("locked"),
            ],
        }
    }

    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "model" => Some(format!("{}\n", self.model)),
            "media" => Some(String::from(match self.media {
                Media::Disk => "disk\n",
                Media::Cdrom => "cdrom\n",
            })),
            "capacity" if self.media == Media::Disk => Some(format!("{}\n", self.sectors)),
            "signature" if self.media == Media::Disk => {
                Some(self.signature.map_or_else(|| String::from("none\n"), |s| format!("{s:#010x}\n")))
            }
            "media_present" => Some(format!("{}\n", u8::from(self.media_present))),
            "tray_open" => Some(format!("{}\n", u8::from(self.tray_open))),
            "locked" => Some(format!("{}\n", u8::from(self.locked))),
            _ => None,
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        match self.media {
            Media::Disk => env.push(("MEDIA", String::from("disk"))),
            Media::Cdrom => {
                env.push(("MEDIA", String::from("cdrom")));
                env.push(("MEDIA_PRESENT", format!("{}", u8::from(self.media_present))));
            }
        }
    }
}

/// One MBR partition of a disk.
pub struct IdePartition(pub Partition);

impl DeviceData for IdePartition {
    fn description(&self) -> String {
        format!("Partition {}", self.0.number)
    }

    fn attributes(&self) -> Vec<Attribute> {
        vec![Attribute::ro("start"), Attribute::ro("size"), Attribute::ro("type")]
    }

    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "start" => Some(format!("{}\n", self.0.start)),
            "size" => Some(format!("{}\n", self.0.sectors)),
            "type" => Some(format!("{:#04x}\n", self.0.kind)),
            _ => None,
        }
    }
}

/// The medium in a CD drive. A new object for every medium: a handle on an
/// old one reads ENODEV, never the new medium's data.
pub struct Disc {
    /// 512-byte sectors, as Linux's `size` counts them.
    pub sectors: u64,
    /// The ISO 9660 volume identifier, if block 16 holds one.
    pub volume: Option<String>,
}

impl DeviceData for Disc {
    fn description(&self) -> String {
        String::from("CD-ROM medium")
    }

    fn attributes(&self) -> Vec<Attribute> {
        vec![Attribute::ro("capacity"), Attribute::ro("volume")]
    }

    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "capacity" => Some(format!("{}\n", self.sectors)),
            "volume" => Some(format!("{}\n", self.volume.as_deref().unwrap_or(""))),
            _ => None,
        }
    }
}
