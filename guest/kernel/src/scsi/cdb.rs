//! Command blocks and what comes back: CDB builders (big-endian fields),
//! fixed-format sense, INQUIRY, REPORT LUNS and READ CAPACITY data.

use alloc::string::String;
use alloc::vec::Vec;

pub mod opcode {
    pub const TEST_UNIT_READY: u8 = 0x00;
    pub const REQUEST_SENSE: u8 = 0x03;
    pub const INQUIRY: u8 = 0x12;
    pub const READ_CAPACITY_10: u8 = 0x25;
    pub const READ_10: u8 = 0x28;
    pub const SERVICE_ACTION_IN_16: u8 = 0x9e;
    pub const REPORT_LUNS: u8 = 0xa0;
}

/// SCSI status bytes.
pub mod status {
    pub const GOOD: u8 = 0x00;
    pub const CHECK_CONDITION: u8 = 0x02;
    pub const BUSY: u8 = 0x08;
}

/// Sense keys.
pub mod key {
    pub const NO_SENSE: u8 = 0x0;
    pub const NOT_READY: u8 = 0x2;
    pub const ILLEGAL_REQUEST: u8 = 0x5;
    pub const UNIT_ATTENTION: u8 = 0x6;
}

/// Peripheral device types (INQUIRY byte 0, bits 4..0).
pub mod device_type {
    pub const DISK: u8 = 0x00;
    pub const CDROM: u8 = 0x05;
}

pub const INQUIRY_LEN: u8 = 36;
pub const SENSE_LEN: u8 = 18;

pub fn test_unit_ready() -> Vec<u8> {
    alloc::vec![opcode::TEST_UNIT_READY, 0, 0, 0, 0, 0]
}

pub fn request_sense() -> Vec<u8> {
    alloc::vec![opcode::REQUEST_SENSE, 0, 0, 0, SENSE_LEN, 0]
}

pub fn inquiry() -> Vec<u8> {
    alloc::vec![opcode::INQUIRY, 0, 0, 0, INQUIRY_LEN, 0]
}

pub fn report_luns(alloc_len: u32) -> Vec<u8> {
    let mut cdb = alloc::vec![0u8; 12];
    cdb[0] = opcode::REPORT_LUNS;
    cdb[6..10].copy_from_slice(&alloc_len.to_be_bytes());
    cdb
}

pub fn read_capacity_10() -> Vec<u8> {
    alloc::vec![opcode::READ_CAPACITY_10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

/// READ CAPACITY(16): SERVICE ACTION IN(16), service action 0x10.
pub fn read_capacity_16() -> Vec<u8> {
    let mut cdb = alloc::vec![0u8; 16];
    cdb[0] = opcode::SERVICE_ACTION_IN_16;
    cdb[1] = 0x10;
    cdb[13] = 32;
    cdb
}

pub fn read_10(lba: u32, blocks: u16) -> Vec<u8> {
    let mut cdb = alloc::vec![0u8; 10];
    cdb[0] = opcode::READ_10;
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    cdb
}

/// The parts of fixed-format sense data (response code 0x70/0x71) that
/// decide what to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    pub fn parse(data: &[u8]) -> Option<Sense> {
        let code = *data.first()? & 0x7f;
        if !matches!(code, 0x70 | 0x71) || data.len() < 14 {
            return None;
        }
        Some(Sense { key: data[2] & 0xf, asc: data[12], ascq: data[13] })
    }

    /// 6/29/xx: power on, reset or bus device reset occurred.
    pub fn is_power_on_reset(self) -> bool {
        self.key == key::UNIT_ATTENTION && self.asc == 0x29
    }

    /// 6/3F/0E: REPORTED LUNS DATA HAS CHANGED (virtio-scsi sets it on the
    /// bus when a LUN comes or goes; one LUN reports it).
    pub fn is_luns_changed(self) -> bool {
        self.key == key::UNIT_ATTENTION && self.asc == 0x3f && self.ascq == 0x0e
    }

    /// 6/28/00: not-ready-to-ready change, medium may have changed.
    pub fn is_medium_changed(self) -> bool {
        self.key == key::UNIT_ATTENTION && self.asc == 0x28
    }

    /// 2/3A/xx: medium not present.
    pub fn is_no_medium(self) -> bool {
        self.key == key::NOT_READY && self.asc == 0x3a
    }

    /// 5/25/00: logical unit not supported.
    pub fn is_lun_not_supported(self) -> bool {
        self.key == key::ILLEGAL_REQUEST && self.asc == 0x25
    }
}

impl core::fmt::Display for Sense {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:x}/{:02x}/{:02x}", self.key, self.asc, self.ascq)
    }
}

/// Standard INQUIRY data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inquiry {
    /// Peripheral qualifier: 0 = a device is connected at this LUN; 1 = the
    /// target could have one here but has none now; 3 = no device possible.
    pub qualifier: u8,
    pub device_type: u8,
    pub removable: bool,
    /// The VERSION byte (5 = SPC-3).
    pub version: u8,
    pub vendor: String,
    pub model: String,
    pub rev: String,
}

fn ascii_field(bytes: &[u8]) -> String {
    let text: String =
        bytes.iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '?' }).collect();
    String::from(text.trim_end())
}

impl Inquiry {
    pub fn parse(data: &[u8]) -> Option<Inquiry> {
        if data.len() < 36 {
            return None;
        }
        Some(Inquiry {
            qualifier: data[0] >> 5,
            device_type: data[0] & 0x1f,
            removable: data[1] & 0x80 != 0,
            version: data[2],
            vendor: ascii_field(&data[8..16]),
            model: ascii_field(&data[16..32]),
            rev: ascii_field(&data[32..36]),
        })
    }

    /// Linux's `scsi_level`: the VERSION byte plus one (SCSI-2 = 3, SPC-3 =
    /// 6), with VERSION 0 meaning "no standard claimed" (1).
    pub fn scsi_level(&self) -> u8 {
        if self.version == 0 { 1 } else { self.version.saturating_add(1) }
    }
}

/// REPORT LUNS data: LUN numbers, single-level (peripheral and flat forms).
pub fn parse_report_luns(data: &[u8]) -> Vec<u32> {
    if data.len() < 8 {
        return Vec::new();
    }
    let list_len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let entries = data[8..].chunks_exact(8).take(list_len / 8);
    let mut luns: Vec<u32> = entries
        .filter_map(|e| match e[0] >> 6 {
            // Peripheral device addressing (bus 0) and flat space addressing.
            0 if e[0] == 0 => Some(u32::from(e[1])),
            1 => Some(u32::from(e[0] & 0x3f) << 8 | u32::from(e[1])),
            _ => None,
        })
        .collect();
    luns.sort_unstable();
    luns.dedup();
    luns
}

/// READ CAPACITY(10): (last LBA, block length).
pub fn parse_capacity_10(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 8 {
        return None;
    }
    Some((
        u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
        u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
    ))
}

/// READ CAPACITY(16): (last LBA, block length).
pub fn parse_capacity_16(data: &[u8]) -> Option<(u64, u32)> {
    if data.len() < 12 {
        return None;
    }
    let mut lba = [0u8; 8];
    lba.copy_from_slice(&data[0..8]);
    Some((u64::from_be_bytes(lba), u32::from_be_bytes([data[8], data[9], data[10], data[11]])))
}
