//! The two legacy channels of QEMU's PIIX IDE (`hw/ide/core.c`,
//! `hw/ide/atapi.c`), as a polling guest sees them through port I/O.
//!
//! - command blocks at 0x1f0/0x170, control (device control / alternate
//!   status) at 0x3f6/0x376; the data port is read and written as words;
//! - a position is empty, an ATA disk backed by a byte vector (IDENTIFY
//!   DEVICE, READ SECTORS in LBA28 PIO) or an ATAPI CD-ROM (IDENTIFY DEVICE
//!   aborts and leaves the 0x14/0xeb signature; IDENTIFY PACKET DEVICE;
//!   PACKET with a 12-byte command block written as 6 words, then data-in
//!   in DRQ blocks whose size is in LBA mid/high);
//! - CHECK CONDITION is status ERR with the sense key in the error
//!   register's high nibble, the details kept for REQUEST SENSE;
//! - an empty position reads status 0 when the other drive on its channel
//!   exists, and a channel with no drive at all floats (0xff).
//!
//! Media changes follow QEMU (docs/qemu-behaviour.md, "CD media changes"): after a
//! new medium the first medium-access command gets NOT READY/MEDIUM NOT
//! PRESENT (2/3a/00), the second UNIT ATTENTION/MEDIUM MAY HAVE CHANGED
//! (6/28/00), then they succeed; GET EVENT STATUS NOTIFICATION (polled,
//! media class) reports NewMedia once, then no change, and never an event
//! while the tray is open; a locked tray refuses an eject that is not
//! forced and GESN then reports EjectRequest.

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

/// What sits at one drive position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeDrive {
    /// An ATA disk: its contents, a whole number of 512-byte sectors.
    Disk(Vec<u8>),
    /// An ATAPI CD-ROM, with the medium it was started with (2048-byte
    /// blocks), or an empty, closed tray.
    Cdrom(Option<Vec<u8>>),
}

/// Why QEMU refused a media command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MediaError {
    /// Not a CD drive, or nothing at that position.
    NotRemovable,
    /// The guest locked the tray and `force` was not given; the drive now
    /// has an eject request pending for the guest.
    Locked,
    /// `blockdev-insert-medium` / `-remove-medium` with the tray closed.
    TrayClosed,
}

pub const SECTOR: usize = 512;
pub const CD_BLOCK: usize = 2048;

// Status bits.
const DRDY: u8 = 0x40;
const DSC: u8 = 0x10;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;
const READY: u8 = DRDY | DSC;
// Error bits.
const ABRT: u8 = 0x04;
// Interrupt reason (sector count register) for ATAPI.
const REASON_COD: u8 = 0x01;
const REASON_IO: u8 = 0x02;

/// Sense key, additional sense code, qualifier.
type Sense = (u8, u8, u8);
const NOT_READY_NO_MEDIUM: Sense = (0x02, 0x3a, 0x00);
const MEDIUM_MAY_HAVE_CHANGED: Sense = (0x06, 0x28, 0x00);
const INVALID_OPCODE: Sense = (0x05, 0x20, 0x00);
const INVALID_FIELD: Sense = (0x05, 0x24, 0x00);
const LBA_OUT_OF_RANGE: Sense = (0x05, 0x21, 0x00);

#[derive(Default)]
struct Cd {
    medium: Option<Vec<u8>>,
    tray_open: bool,
    locked: bool,
    /// QEMU's `cdrom_changed`: 1 after a change (next access: NOT READY),
    /// 2 after that (next access: UNIT ATTENTION), 0 when settled.
    changed: u8,
    new_media: bool,
    eject_request: bool,
    sense: Sense,
    /// Opcodes of every PACKET command, in order, for tests.
    log: Vec<u8>,
}

impl Cd {
    /// QEMU's `ide_cd_change_cb`: the tray moved (`load` = closed).
    fn tray_moved(&mut self, load: bool) {
        self.tray_open = !load;
        self.changed = 1;
        self.new_media = true;
        self.eject_request = false;
    }

    fn present(&self) -> bool {
        !self.tray_open && self.medium.is_some()
    }

    fn blocks(&self) -> usize {
        self.medium.as_ref().map_or(0, |m| m.len() / CD_BLOCK)
    }
}

enum Kind {
    Disk(Vec<u8>),
    Cd(Cd),
}

struct Drive {
    kind: Kind,
    status: u8,
    error: u8,
}

enum Transfer {
    /// Data for the host in DRQ blocks of at most `block` bytes.
    In { data: Vec<u8>, pos: usize, block: usize, atapi: bool },
    /// PACKET: collecting the command block.
    Packet { cdb: Vec<u8>, limit: usize },
}

#[derive(Default)]
struct Channel {
    drives: [Option<Drive>; 2],
    features: u8,
    nsector: u8,
    lba_low: u8,
    lba_mid: u8,
    lba_high: u8,
    select: u8,
    control: u8,
    transfer: Option<Transfer>,
    /// Commands written to the command register, for tests.
    commands: Vec<(u8, u8)>,
}

fn put_string(words: &mut [u16], first: usize, len_words: usize, text: &str) {
    let mut bytes: Vec<u8> = text.bytes().collect();
    bytes.resize(2 * len_words, b' ');
    for (i, pair) in bytes.chunks(2).enumerate() {
        words[first + i] = u16::from_be_bytes([pair[0], pair[1]]);
    }
}

fn words_to_bytes(words: &[u16]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn identify_disk(sectors: usize) -> Vec<u8> {
    let mut w = [0u16; 256];
    w[0] = 0x0040; // fixed device
    put_string(&mut w, 10, 10, "QM00001");
    put_string(&mut w, 23, 4, "2.5+");
    put_string(&mut w, 27, 20, "QEMU HARDDISK");
    w[49] = 1 << 9; // LBA
    let lba28 = sectors.min(0x0fff_ffff) as u32;
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    w[83] = 1 << 14; // valid; no 48-bit feature set, so words 60-61 count
    words_to_bytes(&w)
}

fn identify_cdrom() -> Vec<u8> {
    let mut w = [0u16; 256];
    w[0] = 0x85c0; // ATAPI, CD-ROM, removable, 12-byte packets
    put_string(&mut w, 10, 10, "QM00003");
    put_string(&mut w, 23, 4, "2.5+");
    put_string(&mut w, 27, 20, "QEMU DVD-ROM");
    w[49] = 1 << 9;
    words_to_bytes(&w)
}

impl Channel {
    fn has_drives(&self) -> bool {
        self.drives.iter().any(Option::is_some)
    }

    fn unit(&self) -> usize {
        usize::from((self.select >> 4) & 1)
    }

    fn status(&self) -> u8 {
        if !self.has_drives() {
            return 0xff;
        }
        self.drives[self.unit()].as_ref().map_or(0, |d| d.status)
    }

    fn read(&mut self, reg: u16) -> u8 {
        if !self.has_drives() {
            return 0xff;
        }
        match reg {
            1 => self.drives[self.unit()].as_ref().map_or(0, |d| d.error),
            2 => self.nsector,
            3 => self.lba_low,
            4 => self.lba_mid,
            5 => self.lba_high,
            6 => self.select,
            7 => self.status(),
            _ => 0xff,
        }
    }

    fn write(&mut self, reg: u16, value: u8) {
        match reg {
            1 => self.features = value,
            2 => self.nsector = value,
            3 => self.lba_low = value,
            4 => self.lba_mid = value,
            5 => self.lba_high = value,
            6 => self.select = value,
            7 => self.command(value),
            _ => {}
        }
    }

    fn write_control(&mut self, value: u8) {
        // SRST: abandon whatever was in progress.
        if value & 0x04 != 0 {
            self.transfer = None;
            for d in self.drives.iter_mut().flatten() {
                d.status = READY;
                d.error = 0;
            }
        }
        self.control = value;
    }

    fn abort(&mut self) {
        let unit = self.unit();
        if let Some(d) = self.drives[unit].as_mut() {
            d.status = READY | ERR;
            d.error = ABRT;
        }
        self.transfer = None;
    }

    fn start_in(&mut self, data: Vec<u8>, block: usize, atapi: bool) {
        let unit = self.unit();
        let first = data.len().min(block);
        if atapi {
            self.lba_mid = first as u8;
            self.lba_high = (first >> 8) as u8;
            self.nsector = REASON_IO;
        }
        let d = self.drives[unit].as_mut().expect("commands reach present drives only");
        d.status = READY | DRQ;
        d.error = 0;
        self.transfer = Some(Transfer::In { data, pos: 0, block, atapi });
    }

    fn command(&mut self, cmd: u8) {
        let unit = self.unit();
        self.commands.push((unit as u8, cmd));
        let Some(drive) = self.drives[unit].as_ref() else { return };
        self.transfer = None;
        let disk = match &drive.kind {
            Kind::Disk(data) => Some(data),
            Kind::Cd(_) => None,
        };
        match (cmd, disk) {
            (0xec, Some(data)) => {
                let id = identify_disk(data.len() / SECTOR);
                self.start_in(id, SECTOR, false);
            }
            (0xec, None) => {
                // QEMU sets the ATAPI signature, then aborts.
                self.nsector = 1;
                self.lba_low = 1;
                self.lba_mid = 0x14;
                self.lba_high = 0xeb;
                self.abort();
            }
            (0xa1, None) => self.start_in(identify_cdrom(), SECTOR, false),
            (0x20 | 0x21, Some(data)) => {
                let count = if self.nsector == 0 { 256 } else { usize::from(self.nsector) };
                let lba = (usize::from(self.select & 0x0f) << 24)
                    | (usize::from(self.lba_high) << 16)
                    | (usize::from(self.lba_mid) << 8)
                    | usize::from(self.lba_low);
                let lba_mode = self.select & 0x40 != 0;
                if !lba_mode || (lba + count) * SECTOR > data.len() {
                    self.abort();
                    return;
                }
                let bytes = data[lba * SECTOR..(lba + count) * SECTOR].to_vec();
                self.start_in(bytes, SECTOR, false);
            }
            (0xa0, None) => {
                // The byte count limit: even, and 0 means the most there is.
                let mut limit = usize::from(self.lba_mid) | (usize::from(self.lba_high) << 8);
                limit &= !1;
                if limit == 0 {
                    limit = 0xfffe;
                }
                self.nsector = REASON_COD;
                let d = self.drives[unit].as_mut().expect("present");
                d.status = READY | DRQ;
                d.error = 0;
                self.transfer = Some(Transfer::Packet { cdb: Vec::new(), limit });
            }
            _ => self.abort(),
        }
    }

    fn read_data(&mut self) -> u16 {
        if !self.has_drives() {
            return 0xffff;
        }
        let Some(Transfer::In { data, pos, block, atapi }) = self.transfer.as_mut() else { return 0 };
        let word = u16::from_le_bytes([data.get(*pos).copied().unwrap_or(0), data.get(*pos + 1).copied().unwrap_or(0)]);
        *pos += 2;
        let (pos, len, block, atapi) = (*pos, data.len(), *block, *atapi);
        if pos >= len {
            self.transfer = None;
            if atapi {
                self.nsector = REASON_IO | REASON_COD;
            }
            let unit = self.unit();
            if let Some(d) = self.drives[unit].as_mut() {
                d.status = READY;
            }
        } else if pos.is_multiple_of(block) && atapi {
            let next = (len - pos).min(block);
            self.lba_mid = next as u8;
            self.lba_high = (next >> 8) as u8;
        }
        word
    }

    fn write_data(&mut self, value: u16) {
        let Some(Transfer::Packet { cdb, limit }) = self.transfer.as_mut() else { return };
        cdb.extend_from_slice(&value.to_le_bytes());
        if cdb.len() < 12 {
            return;
        }
        let (cdb, limit) = (core::mem::take(cdb), *limit);
        self.transfer = None;
        let unit = self.unit();
        let Some(Drive { kind: Kind::Cd(cd), .. }) = self.drives[unit].as_mut() else { return };
        cd.log.push(cdb[0]);
        let result = atapi_command(cd, &cdb);
        match result {
            Ok(data) if data.is_empty() => {
                self.nsector = REASON_IO | REASON_COD;
                let d = self.drives[unit].as_mut().expect("present");
                d.status = READY;
                d.error = 0;
            }
            Ok(data) => {
                let block = if cdb[0] == 0x28 { limit.min(CD_BLOCK) } else { limit };
                self.start_in(data, block, true);
            }
            Err(sense) => {
                cd.sense = sense;
                self.nsector = REASON_IO | REASON_COD;
                let d = self.drives[unit].as_mut().expect("present");
                d.status = READY | ERR;
                d.error = sense.0 << 4;
            }
        }
    }
}

fn be16(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[0], b[1]]))
}

/// One ATAPI command: the data-in bytes (empty for none) or CHECK CONDITION.
/// The checks before the command runs are QEMU's `ide_atapi_cmd`.
fn atapi_command(cd: &mut Cd, cdb: &[u8]) -> Result<Vec<u8>, Sense> {
    let op = cdb[0];
    // REQUEST SENSE, INQUIRY, GET CONFIGURATION and GESN (ALLOW_UA) run
    // whatever is pending; everything else, PREVENT ALLOW MEDIUM REMOVAL and
    // MODE SENSE included, first meets a pending unit attention, then the
    // media change sequence.
    let allow_ua = matches!(op, 0x03 | 0x12 | 0x46 | 0x4a);
    if !allow_ua && cd.sense.0 == MEDIUM_MAY_HAVE_CHANGED.0 {
        return Err(cd.sense);
    }
    if !allow_ua && cd.present() && cd.changed != 0 {
        if cd.changed == 1 {
            cd.changed = 2;
            return Err(NOT_READY_NO_MEDIUM);
        }
        cd.changed = 0;
        return Err(MEDIUM_MAY_HAVE_CHANGED);
    }
    let check_ready = matches!(op, 0x00 | 0x25 | 0x28);
    if check_ready && !cd.present() {
        return Err(NOT_READY_NO_MEDIUM);
    }
    match op {
        0x00 => Ok(Vec::new()),
        0x03 => {
            let mut buf = vec![0u8; 18];
            buf[0] = 0x70;
            buf[2] = cd.sense.0;
            buf[7] = 10;
            buf[12] = cd.sense.1;
            buf[13] = cd.sense.2;
            // Reading a unit attention clears it; other sense stays.
            if cd.sense.0 == MEDIUM_MAY_HAVE_CHANGED.0 {
                cd.sense = (0, 0, 0);
            }
            buf.truncate(usize::from(cdb[4]));
            Ok(buf)
        }
        0x12 => {
            let mut buf = vec![0u8; 36];
            buf[0] = 0x05;
            buf[1] = 0x80;
            buf[2] = 0x05;
            buf[3] = 0x32;
            buf[4] = 31;
            buf[8..16].copy_from_slice(b"QEMU    ");
            buf[16..32].copy_from_slice(b"QEMU DVD-ROM    ");
            buf[32..36].copy_from_slice(b"2.5+");
            buf.truncate(usize::from(cdb[4]));
            Ok(buf)
        }
        0x1e => {
            cd.locked = cdb[4] & 1 != 0;
            Ok(Vec::new())
        }
        0x25 => {
            let last = (cd.blocks() as u32).wrapping_sub(1);
            let mut buf = last.to_be_bytes().to_vec();
            buf.extend_from_slice(&(CD_BLOCK as u32).to_be_bytes());
            Ok(buf)
        }
        0x28 => {
            let lba = u32::from_be_bytes([cdb[2], cdb[3], cdb[4], cdb[5]]) as usize;
            let count = be16(&cdb[7..9]);
            if lba + count > cd.blocks() {
                return Err(LBA_OUT_OF_RANGE);
            }
            let medium = cd.medium.as_ref().expect("present");
            Ok(medium[lba * CD_BLOCK..(lba + count) * CD_BLOCK].to_vec())
        }
        0x5a => {
            // MODE SENSE(10), current values of the capabilities page only.
            if cdb[2] != 0x2a {
                return Err(INVALID_FIELD);
            }
            let mut buf = vec![0u8; 28];
            buf[0..2].copy_from_slice(&(28u16 + 6).to_be_bytes());
            buf[2] = 0x70;
            buf[8] = 0x2a;
            buf[9] = 28 - 10;
            buf[10] = 0x3b;
            buf[12] = 0x71;
            buf[13] = 3 << 5;
            buf[14] = 0x29 | if cd.locked { 0x02 } else { 0 };
            buf[16..18].copy_from_slice(&704u16.to_be_bytes());
            buf[19] = 2;
            buf[20..22].copy_from_slice(&512u16.to_be_bytes());
            buf[22..24].copy_from_slice(&704u16.to_be_bytes());
            buf.truncate(be16(&cdb[7..9]));
            Ok(buf)
        }
        0x4a => {
            if cdb[1] & 1 == 0 {
                // QEMU supports polled mode only.
                return Err(INVALID_FIELD);
            }
            let mut buf = if cdb[4] & (1 << 4) != 0 {
                let status = if cd.tray_open {
                    1
                } else if cd.medium.is_some() {
                    2
                } else {
                    0
                };
                let mut event = 0;
                if !cd.tray_open {
                    if cd.new_media {
                        event = 2;
                        cd.new_media = false;
                    } else if cd.eject_request {
                        event = 1;
                        cd.eject_request = false;
                    }
                }
                vec![0x00, 0x04, 0x04, 0x10, event, status, 0, 0]
            } else {
                // No event of a requested class: NEA.
                vec![0x00, 0x02, 0x80, 0x10]
            };
            buf.truncate(be16(&cdb[7..9]));
            Ok(buf)
        }
        _ => Err(INVALID_OPCODE),
    }
}

/// Both legacy channels.
#[derive(Default)]
pub struct FakeIde {
    channels: [RefCell<Channel>; 2],
}

pub const PRIMARY_CMD: u16 = 0x1f0;
pub const PRIMARY_CTRL: u16 = 0x3f6;
pub const SECONDARY_CMD: u16 = 0x170;
pub const SECONDARY_CTRL: u16 = 0x376;

/// Which channel and register a port reaches: `Ok(reg)` in the command
/// block, `Err(())` for the control register.
fn decode(port: u16) -> Option<(usize, Result<u16, ()>)> {
    match port {
        PRIMARY_CMD..=0x1f7 => Some((0, Ok(port - PRIMARY_CMD))),
        SECONDARY_CMD..=0x177 => Some((1, Ok(port - SECONDARY_CMD))),
        PRIMARY_CTRL => Some((0, Err(()))),
        SECONDARY_CTRL => Some((1, Err(()))),
        _ => None,
    }
}

impl FakeIde {
    /// Put a drive at `channel` (0, 1), `unit` (0 master, 1 slave).
    pub fn attach(&self, channel: usize, unit: usize, drive: FakeDrive) {
        let kind = match drive {
            FakeDrive::Disk(data) => {
                assert!(data.len().is_multiple_of(SECTOR) && !data.is_empty(), "a disk is whole sectors");
                Kind::Disk(data)
            }
            FakeDrive::Cdrom(medium) => {
                if let Some(m) = &medium {
                    assert!(m.len().is_multiple_of(CD_BLOCK) && !m.is_empty(), "a CD is whole blocks");
                }
                Kind::Cd(Cd { medium, ..Cd::default() })
            }
        };
        self.channels[channel].borrow_mut().drives[unit] = Some(Drive { kind, status: READY, error: 0 });
    }

    pub fn claims(port: u16) -> bool {
        decode(port).is_some()
    }

    pub fn inb(&self, port: u16) -> u8 {
        let Some((ch, reg)) = decode(port) else { return 0xff };
        let mut c = self.channels[ch].borrow_mut();
        match reg {
            Ok(reg) => c.read(reg),
            // Alternate status: the status without side effects.
            Err(()) => c.status(),
        }
    }

    pub fn outb(&self, port: u16, value: u8) {
        let Some((ch, reg)) = decode(port) else { return };
        let mut c = self.channels[ch].borrow_mut();
        match reg {
            Ok(reg) => c.write(reg, value),
            Err(()) => c.write_control(value),
        }
    }

    pub fn inw(&self, port: u16) -> u16 {
        match decode(port) {
            Some((ch, Ok(0))) => self.channels[ch].borrow_mut().read_data(),
            _ => 0xffff,
        }
    }

    pub fn outw(&self, port: u16, value: u16) {
        if let Some((ch, Ok(0))) = decode(port) {
            self.channels[ch].borrow_mut().write_data(value);
        }
    }

    fn with_cd<R>(&self, channel: usize, unit: usize, f: impl FnOnce(&mut Cd) -> R) -> Result<R, MediaError> {
        let mut c = self.channels[channel].borrow_mut();
        match c.drives[unit].as_mut() {
            Some(Drive { kind: Kind::Cd(cd), .. }) => Ok(f(cd)),
            _ => Err(MediaError::NotRemovable),
        }
    }

    /// `blockdev-open-tray`. A locked tray stays shut unless `force` (which
    /// unlocks it, as QEMU does); the guest gets an eject request instead.
    pub fn open_tray(&self, channel: usize, unit: usize, force: bool) -> Result<(), MediaError> {
        self.with_cd(channel, unit, |cd| open_tray(cd, force))?
    }

    /// `blockdev-remove-medium`: the tray must be open.
    pub fn remove_medium(&self, channel: usize, unit: usize) -> Result<(), MediaError> {
        self.with_cd(channel, unit, |cd| {
            if !cd.tray_open {
                return Err(MediaError::TrayClosed);
            }
            cd.medium = None;
            Ok(())
        })?
    }

    /// `blockdev-insert-medium`: the tray must be open.
    pub fn insert_medium(&self, channel: usize, unit: usize, medium: Vec<u8>) -> Result<(), MediaError> {
        assert!(medium.len().is_multiple_of(CD_BLOCK) && !medium.is_empty(), "a CD is whole blocks");
        self.with_cd(channel, unit, |cd| {
            if !cd.tray_open {
                return Err(MediaError::TrayClosed);
            }
            cd.medium = Some(medium);
            Ok(())
        })?
    }

    /// `blockdev-close-tray`.
    pub fn close_tray(&self, channel: usize, unit: usize) -> Result<(), MediaError> {
        self.with_cd(channel, unit, |cd| {
            if cd.tray_open {
                cd.tray_moved(true);
            }
        })
    }

    /// `blockdev-change-medium`: open the tray, swap the medium, close it.
    /// Refused on a locked tray unless `force`.
    pub fn change_medium(&self, channel: usize, unit: usize, medium: Vec<u8>, force: bool) -> Result<(), MediaError> {
        self.open_tray(channel, unit, force)?;
        self.remove_medium(channel, unit)?;
        self.insert_medium(channel, unit, medium)?;
        self.close_tray(channel, unit)
    }

    /// `eject`: open the tray and take the medium out (the tray stays
    /// open). Refused on a locked tray unless `force`.
    pub fn eject(&self, channel: usize, unit: usize, force: bool) -> Result<(), MediaError> {
        self.open_tray(channel, unit, force)?;
        self.remove_medium(channel, unit)
    }

    /// (tray open, locked, medium present) of a CD drive.
    pub fn tray(&self, channel: usize, unit: usize) -> Option<(bool, bool, bool)> {
        self.with_cd(channel, unit, |cd| (cd.tray_open, cd.locked, cd.medium.is_some())).ok()
    }

    /// An eject request (a refused eject of a locked tray) that GESN has not
    /// reported to the guest yet.
    pub fn eject_request_pending(&self, channel: usize, unit: usize) -> bool {
        self.with_cd(channel, unit, |cd| cd.eject_request).unwrap_or(false)
    }

    /// Opcodes of the PACKET commands a CD drive has received.
    pub fn packets(&self, channel: usize, unit: usize) -> Vec<u8> {
        self.with_cd(channel, unit, |cd| cd.log.clone()).unwrap_or_default()
    }

    /// (unit, command) pairs written to a channel's command register.
    pub fn commands(&self, channel: usize) -> Vec<(u8, u8)> {
        self.channels[channel].borrow().commands.clone()
    }
}

fn open_tray(cd: &mut Cd, force: bool) -> Result<(), MediaError> {
    if cd.locked && !force {
        cd.eject_request = true;
        return Err(MediaError::Locked);
    }
    if force {
        cd.locked = false;
    }
    if !cd.tray_open {
        cd.tray_moved(false);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_platform::FakePlatform;
    use crate::ide::ata::{self, AtaError, Probe};
    use crate::ide::atapi::{self, MediaStatus};
    use crate::pci::fake::FakePci;

    fn cd_with(blocks: usize) -> Vec<u8> {
        let mut m = vec![0u8; blocks * CD_BLOCK];
        m[16 * CD_BLOCK] = 1;
        m
    }

    fn platform() -> FakePlatform {
        let p = FakePlatform::new(FakePci::pc());
        let mut disk = vec![0u8; 64 * SECTOR];
        disk[SECTOR + 7] = 0xa5;
        p.ide.attach(0, 0, FakeDrive::Disk(disk));
        p.ide.attach(1, 0, FakeDrive::Cdrom(None));
        p
    }

    fn sense(p: &FakePlatform) -> (u8, u8, u8) {
        let s = ata::SECONDARY.request_sense(p, 0).unwrap();
        (s.key, s.asc, s.ascq)
    }

    fn gesn(p: &FakePlatform) -> MediaStatus {
        let data = ata::SECONDARY.packet(p, 0, &atapi::get_event_status_media(), 8).unwrap();
        atapi::parse_media_event(&data).unwrap()
    }

    #[test]
    fn empty_positions_and_channels_read_as_qemu_answers_them() {
        let p = platform();
        let pri = ata::PRIMARY;
        assert!(matches!(pri.identify(&p, 0), Ok(Probe::Ata(id)) if id.model == "QEMU HARDDISK" && id.sectors == 64));
        assert_eq!(pri.identify(&p, 1), Err(AtaError::NoDevice), "slave absent next to a master: status 0");
        p.ide.attach(0, 1, FakeDrive::Disk(vec![0; SECTOR]));
        assert!(matches!(pri.identify(&p, 1), Ok(Probe::Ata(_))));
        let empty = FakePlatform::new(FakePci::pc());
        use crate::hw::Platform;
        empty.outb(0x176, 0xa0);
        assert_eq!(empty.inb(0x177), 0xff, "a channel without drives floats");
        assert!(matches!(ata::SECONDARY.identify(&p, 0), Ok(Probe::Atapi(id)) if id.model == "QEMU DVD-ROM"));
        assert_eq!(p.ide.commands(1), [(0, 0xec), (0, 0xa1)], "IDENTIFY DEVICE aborted, then IDENTIFY PACKET");
    }

    #[test]
    fn read_sectors_returns_the_disk_contents() {
        let p = platform();
        let mut buf = [0u8; 2 * SECTOR];
        ata::PRIMARY.read_sectors(&p, 0, 0, &mut buf).unwrap();
        assert_eq!(buf[SECTOR + 7], 0xa5);
        assert_eq!(buf.iter().filter(|b| **b != 0).count(), 1);
        let mut past_the_end = [0u8; SECTOR];
        assert!(matches!(
            ata::PRIMARY.read_sectors(&p, 0, 64, &mut past_the_end),
            Err(AtaError::Aborted { error: ABRT, .. })
        ));
    }

    #[test]
    fn a_new_medium_gives_not_ready_then_unit_attention_then_good() {
        let p = platform();
        let cd = ata::SECONDARY;
        let tur = |p: &FakePlatform| cd.packet(p, 0, &atapi::TEST_UNIT_READY, 0).map(|_| ());
        assert_eq!(tur(&p), Err(AtaError::CheckCondition { sense_key: 2 }));
        assert_eq!(sense(&p), (2, 0x3a, 0));
        assert_eq!(gesn(&p), MediaStatus { event: 0, tray_open: false, present: false });

        p.ide.change_medium(1, 0, cd_with(20), false).unwrap();
        assert_eq!(gesn(&p), MediaStatus { event: 2, tray_open: false, present: true }, "NewMedia once");
        assert_eq!(gesn(&p), MediaStatus { event: 0, tray_open: false, present: true }, "then no change");
        assert_eq!(tur(&p), Err(AtaError::CheckCondition { sense_key: 2 }));
        assert_eq!(sense(&p), (2, 0x3a, 0));
        assert_eq!(tur(&p), Err(AtaError::CheckCondition { sense_key: 6 }));
        assert_eq!(sense(&p), (6, 0x28, 0));
        assert_eq!(tur(&p), Ok(()));
        let cap = cd.packet(&p, 0, &atapi::read_capacity(), 8).unwrap();
        assert_eq!(atapi::parse_capacity(&cap), Some((19, 2048)));
        let block = cd.packet(&p, 0, &atapi::read10(16, 1), 2048).unwrap();
        assert_eq!((block.len(), block[0]), (2048, 1));
        let two = cd.packet(&p, 0, &atapi::read10(15, 2), 4096).unwrap();
        assert_eq!((two.len(), two[2048]), (4096, 1), "one DRQ block per CD block");
        assert_eq!(
            cd.packet(&p, 0, &atapi::read10(19, 2), 4096),
            Err(AtaError::CheckCondition { sense_key: 5 }),
            "past the end"
        );
    }

    /// Consume the media change sequence the way a driver does.
    fn settle_unit(p: &FakePlatform) {
        for _ in 0..3 {
            if ata::SECONDARY.packet(p, 0, &atapi::TEST_UNIT_READY, 0).is_ok() {
                return;
            }
            let _ = sense(p);
        }
        panic!("the drive never became ready");
    }

    #[test]
    fn every_command_but_the_allow_ua_ones_meets_the_change_sequence() {
        let p = platform();
        let cd = ata::SECONDARY;
        p.ide.change_medium(1, 0, cd_with(20), false).unwrap();
        assert_eq!(
            cd.packet(&p, 0, &atapi::prevent_allow(true), 0),
            Err(AtaError::CheckCondition { sense_key: 2 }),
            "PREVENT ALLOW MEDIUM REMOVAL is not exempt"
        );
        assert_eq!(
            cd.packet(&p, 0, &atapi::mode_sense_capabilities(), 36),
            Err(AtaError::CheckCondition { sense_key: 6 })
        );
        assert_eq!(
            cd.packet(&p, 0, &atapi::TEST_UNIT_READY, 0),
            Err(AtaError::CheckCondition { sense_key: 6 }),
            "a unit attention stays pending until REQUEST SENSE reads it"
        );
        assert_eq!(gesn(&p).event, 2, "GESN runs regardless");
        assert_eq!(sense(&p), (6, 0x28, 0));
        assert_eq!(cd.packet(&p, 0, &atapi::TEST_UNIT_READY, 0), Ok(Vec::new()));
        let caps = cd.packet(&p, 0, &atapi::mode_sense_capabilities(), 36).unwrap();
        assert_eq!((caps.len(), atapi::parse_lock_state(&caps)), (28, Some(false)));
        cd.packet(&p, 0, &atapi::prevent_allow(true), 0).unwrap();
        let caps = cd.packet(&p, 0, &atapi::mode_sense_capabilities(), 36).unwrap();
        assert_eq!(atapi::parse_lock_state(&caps), Some(true));
    }

    #[test]
    fn eject_and_lock_follow_qemu() {
        let p = platform();
        p.ide.change_medium(1, 0, cd_with(20), false).unwrap();
        let _ = gesn(&p);
        p.ide.eject(1, 0, false).unwrap();
        assert_eq!(gesn(&p), MediaStatus { event: 0, tray_open: true, present: false }, "tray open, no media");
        assert_eq!(p.ide.tray(1, 0), Some((true, false, false)));
        p.ide.change_medium(1, 0, cd_with(20), false).unwrap();
        assert_eq!(gesn(&p).event, 2);
        settle_unit(&p);

        ata::SECONDARY.packet(&p, 0, &atapi::prevent_allow(true), 0).unwrap();
        assert_eq!(p.ide.tray(1, 0), Some((false, true, true)));
        assert_eq!(p.ide.eject(1, 0, false), Err(MediaError::Locked));
        assert_eq!(p.ide.change_medium(1, 0, cd_with(17), false), Err(MediaError::Locked));
        assert_eq!(gesn(&p), MediaStatus { event: 1, tray_open: false, present: true }, "EjectRequest");
        assert_eq!(gesn(&p).event, 0);
        assert_eq!(p.ide.eject(1, 0, true), Ok(()));
        assert_eq!(p.ide.tray(1, 0), Some((true, false, false)), "force unlocks");
        assert_eq!(p.ide.eject(0, 0, false), Err(MediaError::NotRemovable));
        p.ide.close_tray(1, 0).unwrap();
        assert_eq!(gesn(&p), MediaStatus { event: 2, tray_open: false, present: false });
        assert!(p.ide.packets(1, 0).contains(&0x1e));
    }

    #[test]
    fn the_tray_commands_need_an_open_tray_and_a_lock_does_not_keep_it_shut_once_open() {
        let p = platform();
        assert_eq!(p.ide.insert_medium(1, 0, cd_with(20)), Err(MediaError::TrayClosed));
        p.ide.open_tray(1, 0, false).unwrap();
        assert_eq!(gesn(&p), MediaStatus { event: 0, tray_open: true, present: false });
        // The guest may lock an open tray; closing it is still the host's.
        ata::SECONDARY.packet(&p, 0, &atapi::prevent_allow(true), 0).unwrap();
        p.ide.insert_medium(1, 0, cd_with(20)).unwrap();
        p.ide.close_tray(1, 0).unwrap();
        assert_eq!(p.ide.tray(1, 0), Some((false, true, true)));
        assert_eq!(gesn(&p), MediaStatus { event: 2, tray_open: false, present: true });
        assert_eq!(p.ide.remove_medium(1, 0), Err(MediaError::TrayClosed));
    }
}
