//! The ATA taskfile protocol on one legacy channel, polled (nIEN set),
//! programmed I/O only: IDENTIFY, READ SECTORS and the PACKET command that
//! carries ATAPI CDBs (ATA/ATAPI-6 §8, §9.7–9.10).
//!
//! Every wait is bounded and executes `pause` (TCG, see
//! docs/qemu-behaviour.md); a device that never answers is an
//! [`AtaError::Timeout`] naming the step, not a hang.

use alloc::vec::Vec;
use core::fmt;

use super::atapi::{self, Cdb, Sense};
use super::identify::{self, Identify};
use crate::hw::Platform;

/// A channel's two register blocks: commands at `cmd`, control at `ctrl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub cmd: u16,
    pub ctrl: u16,
}

/// The two legacy (compatibility-mode) channels of a PCI IDE controller.
pub const PRIMARY: Channel = Channel { cmd: 0x1f0, ctrl: 0x3f6 };
pub const SECONDARY: Channel = Channel { cmd: 0x170, ctrl: 0x376 };

mod reg {
    pub const DATA: u16 = 0;
    pub const ERROR: u16 = 1;
    pub const FEATURES: u16 = 1;
    pub const SECTOR_COUNT: u16 = 2;
    pub const LBA_LOW: u16 = 3;
    pub const LBA_MID: u16 = 4;
    pub const LBA_HIGH: u16 = 5;
    pub const DEVICE: u16 = 6;
    pub const STATUS: u16 = 7;
    pub const COMMAND: u16 = 7;
}

const STATUS_BSY: u8 = 0x80;
const STATUS_DRQ: u8 = 0x08;
const STATUS_ERR: u8 = 0x01;
/// Device control: interrupts off; we poll.
const CONTROL_NIEN: u8 = 0x02;

const CMD_IDENTIFY: u8 = 0xec;
const CMD_IDENTIFY_PACKET: u8 = 0xa1;
const CMD_READ_SECTORS: u8 = 0x20;
const CMD_PACKET: u8 = 0xa0;

/// The signature an ATAPI device leaves in LBA mid/high after aborting
/// IDENTIFY DEVICE.
const ATAPI_SIGNATURE: (u8, u8) = (0x14, 0xeb);

/// Polls before a wait gives up. A poll is a port read plus `pause`, a
/// microsecond or so under TCG: seconds in all, far beyond any QEMU command.
const MAX_POLLS: u32 = 2_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AtaError {
    /// Nothing answers at this position.
    NoDevice,
    Timeout(&'static str),
    /// The device set ERR: the error register and status.
    Aborted {
        error: u8,
        status: u8,
    },
    /// An ATAPI command ended in CHECK CONDITION; the sense key comes from
    /// the error register (its high nibble).
    CheckCondition {
        sense_key: u8,
    },
    /// The device offered more data than the command could take.
    Overrun,
}

impl fmt::Display for AtaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AtaError::NoDevice => write!(f, "no device"),
            AtaError::Timeout(step) => write!(f, "timed out waiting for {step}"),
            AtaError::Aborted { error, status } => write!(f, "aborted (error {error:#04x}, status {status:#04x})"),
            AtaError::CheckCondition { sense_key } => write!(f, "check condition (sense key {sense_key:#x})"),
            AtaError::Overrun => write!(f, "device sent more data than expected"),
        }
    }
}

/// What answers at a drive position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    Ata(Identify),
    Atapi(Identify),
}

impl Channel {
    fn inb(&self, p: &dyn Platform, r: u16) -> u8 {
        p.inb(self.cmd + r)
    }

    fn outb(&self, p: &dyn Platform, r: u16, v: u8) {
        p.outb(self.cmd + r, v)
    }

    /// Interrupts off for the whole channel.
    pub fn init(&self, p: &dyn Platform) {
        p.outb(self.ctrl, CONTROL_NIEN);
    }

    /// Select master (0) or slave (1) and give it the 400 ns the spec asks
    /// for before its status is valid (four alternate-status reads).
    fn select(&self, p: &dyn Platform, unit: u8, extra: u8) {
        self.outb(p, reg::DEVICE, 0xa0 | (unit << 4) | extra);
        for _ in 0..4 {
            p.inb(self.ctrl);
        }
    }

    fn wait_not_busy(&self, p: &dyn Platform, step: &'static str) -> Result<u8, AtaError> {
        for _ in 0..MAX_POLLS {
            let status = self.inb(p, reg::STATUS);
            if status & STATUS_BSY == 0 {
                return Ok(status);
            }
            p.relax();
        }
        Err(AtaError::Timeout(step))
    }

    fn check(&self, p: &dyn Platform, status: u8) -> Result<u8, AtaError> {
        if status & STATUS_ERR != 0 {
            return Err(AtaError::Aborted { error: self.inb(p, reg::ERROR), status });
        }
        Ok(status)
    }

    fn read_words(&self, p: &dyn Platform, out: &mut [u8]) {
        for pair in out.chunks_mut(2) {
            let w = p.inw(self.cmd + reg::DATA).to_le_bytes();
            pair.copy_from_slice(&w[..pair.len()]);
        }
    }

    /// IDENTIFY DEVICE, falling back to IDENTIFY PACKET DEVICE when the
    /// device aborts with the ATAPI signature.
    pub fn identify(&self, p: &dyn Platform, unit: u8) -> Result<Probe, AtaError> {
        self.select(p, unit, 0);
        let status = self.inb(p, reg::STATUS);
        // Floating bus (0xff) or an empty position QEMU answers with 0.
        if status == 0xff || status == 0 {
            return Err(AtaError::NoDevice);
        }
        self.wait_not_busy(p, "the drive to accept IDENTIFY")?;
        self.outb(p, reg::COMMAND, CMD_IDENTIFY);
        let status = self.wait_not_busy(p, "IDENTIFY DEVICE")?;
        if status == 0 {
            return Err(AtaError::NoDevice);
        }
        let mut data = [0u8; 512];
        if status & STATUS_ERR != 0 {
            let signature = (self.inb(p, reg::LBA_MID), self.inb(p, reg::LBA_HIGH));
            if signature != ATAPI_SIGNATURE {
                return Err(AtaError::Aborted { error: self.inb(p, reg::ERROR), status });
            }
            self.outb(p, reg::COMMAND, CMD_IDENTIFY_PACKET);
            let status = self.check(p, self.wait_not_busy(p, "IDENTIFY PACKET DEVICE")?)?;
            if status & STATUS_DRQ == 0 {
                return Err(AtaError::Timeout("IDENTIFY PACKET DEVICE data"));
            }
            self.read_words(p, &mut data);
            return Ok(Probe::Atapi(identify::parse(&data, true)));
        }
        if status & STATUS_DRQ == 0 {
            return Err(AtaError::NoDevice);
        }
        self.read_words(p, &mut data);
        Ok(Probe::Ata(identify::parse(&data, false)))
    }

    /// READ SECTORS (LBA28, PIO): `buf.len() / 512` sectors from `lba`.
    pub fn read_sectors(&self, p: &dyn Platform, unit: u8, lba: u32, buf: &mut [u8]) -> Result<(), AtaError> {
        let count = buf.len() / 512;
        assert!((1..=256).contains(&count) && lba < (1 << 28), "read_sectors: 1-256 sectors within LBA28");
        self.select(p, unit, 0x40 | ((lba >> 24) as u8 & 0x0f));
        self.wait_not_busy(p, "the drive to accept READ SECTORS")?;
        self.outb(p, reg::SECTOR_COUNT, count as u8); // 0 means 256
        self.outb(p, reg::LBA_LOW, lba as u8);
        self.outb(p, reg::LBA_MID, (lba >> 8) as u8);
        self.outb(p, reg::LBA_HIGH, (lba >> 16) as u8);
        self.outb(p, reg::COMMAND, CMD_READ_SECTORS);
        for sector in buf.chunks_mut(512) {
            let status = self.check(p, self.wait_not_busy(p, "READ SECTORS")?)?;
            if status & STATUS_DRQ == 0 {
                return Err(AtaError::Timeout("READ SECTORS data"));
            }
            self.read_words(p, sector);
        }
        Ok(())
    }

    /// Send an ATAPI command with the PACKET command and read up to `max`
    /// bytes of data-in. CHECK CONDITION comes back as its sense key.
    pub fn packet(&self, p: &dyn Platform, unit: u8, cdb: &Cdb, max: usize) -> Result<Vec<u8>, AtaError> {
        self.select(p, unit, 0);
        self.wait_not_busy(p, "the drive to accept PACKET")?;
        self.outb(p, reg::FEATURES, 0); // PIO, no overlap
        // Byte count limit: the most the device may send per DRQ block.
        self.outb(p, reg::LBA_MID, 0xfe);
        self.outb(p, reg::LBA_HIGH, 0xff);
        self.outb(p, reg::COMMAND, CMD_PACKET);
        let status = self.wait_not_busy(p, "the drive to ask for the packet")?;
        if status & STATUS_ERR != 0 {
            return Err(AtaError::CheckCondition { sense_key: self.inb(p, reg::ERROR) >> 4 });
        }
        if status & STATUS_DRQ == 0 {
            return Err(AtaError::Timeout("the drive to ask for the packet"));
        }
        for pair in cdb.chunks(2) {
            p.outw(self.cmd + reg::DATA, u16::from_le_bytes([pair[0], pair[1]]));
        }
        let mut data = Vec::new();
        loop {
            let status = self.wait_not_busy(p, "the ATAPI command")?;
            if status & STATUS_ERR != 0 {
                return Err(AtaError::CheckCondition { sense_key: self.inb(p, reg::ERROR) >> 4 });
            }
            if status & STATUS_DRQ == 0 {
                return Ok(data);
            }
            let count = usize::from(self.inb(p, reg::LBA_MID)) | (usize::from(self.inb(p, reg::LBA_HIGH)) << 8);
            if count == 0 || data.len() + count > max {
                return Err(AtaError::Overrun);
            }
            let start = data.len();
            data.resize(start + count, 0);
            self.read_words(p, &mut data[start..]);
        }
    }

    /// REQUEST SENSE: why the last command failed.
    pub fn request_sense(&self, p: &dyn Platform, unit: u8) -> Result<Sense, AtaError> {
        let data = self.packet(p, unit, &atapi::request_sense(18), 18)?;
        atapi::parse_sense(&data).ok_or(AtaError::Overrun)
    }
}
