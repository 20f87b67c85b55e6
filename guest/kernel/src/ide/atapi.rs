//! The SCSI commands an ATAPI CD-ROM takes (MMC-2), built and parsed here so
//! the logic is testable without hardware. QEMU's sense sequence after a
//! media change (docs/qemu-behaviour.md, "CD media changes"): TEST UNIT READY
//! answers NOT READY/MEDIUM NOT PRESENT (2/3a/00), then UNIT ATTENTION/
//! MEDIUM MAY HAVE CHANGED (6/28/00), then GOOD.

pub type Cdb = [u8; 12];

pub const TEST_UNIT_READY: Cdb = [0; 12];

pub fn request_sense(length: u8) -> Cdb {
    [0x03, 0, 0, 0, length, 0, 0, 0, 0, 0, 0, 0]
}

/// GET EVENT STATUS NOTIFICATION, polled, media class (bit 4), 8 bytes.
pub fn get_event_status_media() -> Cdb {
    [0x4a, 0x01, 0, 0, 1 << 4, 0, 0, 0, 8, 0, 0, 0]
}

pub fn read_capacity() -> Cdb {
    [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
}

pub fn read10(lba: u32, blocks: u16) -> Cdb {
    let l = lba.to_be_bytes();
    let b = blocks.to_be_bytes();
    [0x28, 0, l[0], l[1], l[2], l[3], 0, b[0], b[1], 0, 0, 0]
}

/// PREVENT ALLOW MEDIUM REMOVAL: `prevent` locks the tray.
pub fn prevent_allow(prevent: bool) -> Cdb {
    [0x1e, 0, 0, 0, u8::from(prevent), 0, 0, 0, 0, 0, 0, 0]
}

/// START STOP UNIT with LoEj: `open` opens the tray, else closes it.
pub fn start_stop_tray(open: bool) -> Cdb {
    [0x1b, 0, 0, 0, 0x02 | u8::from(!open), 0, 0, 0, 0, 0, 0, 0]
}

/// MODE SENSE(10) of the CD capabilities page (0x2a): 8-byte header + page.
pub fn mode_sense_capabilities() -> Cdb {
    [0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 36, 0, 0, 0]
}

/// The "lock state" bit of the capabilities page: is the tray locked now?
/// The drive's own answer matters, not what the guest last asked for: a
/// forced eject from the host unlocks the tray behind the guest's back.
pub fn parse_lock_state(data: &[u8]) -> Option<bool> {
    let page = data.get(8..)?;
    (page.len() > 6 && page[0] & 0x3f == 0x2a).then(|| page[6] & 0x02 != 0)
}

/// Sense key, additional sense code and qualifier (fixed format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sense {
    pub key: u8,
    pub asc: u8,
    pub ascq: u8,
}

pub fn parse_sense(data: &[u8]) -> Option<Sense> {
    (data.len() >= 14).then(|| Sense { key: data[2] & 0x0f, asc: data[12], ascq: data[13] })
}

/// The media event descriptor of a GESN reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaStatus {
    /// 0 no change, 1 eject request, 2 new media, 3 media removal, ...
    pub event: u8,
    pub tray_open: bool,
    pub present: bool,
}

pub const EVENT_EJECT_REQUEST: u8 = 1;

pub fn parse_media_event(data: &[u8]) -> Option<MediaStatus> {
    // Header: event data length (2), class (1; bit 7 = no event available),
    // supported classes (1); then the 4-byte media descriptor.
    if data.len() < 8 || data[2] & 0x80 != 0 {
        return None;
    }
    Some(MediaStatus { event: data[4] & 0x0f, tray_open: data[5] & 0x01 != 0, present: data[5] & 0x02 != 0 })
}

/// READ CAPACITY: (last LBA, block length).
pub fn parse_capacity(data: &[u8]) -> Option<(u32, u32)> {
    (data.len() >= 8).then(|| {
        (
            u32::from_be_bytes([data[0], data[1], data[2], data[3]]),
            u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        )
    })
}

/// The volume identifier of an ISO 9660 primary volume descriptor (block
/// 16): type 1, "CD001", then the identifier at bytes 40–71.
pub fn iso9660_volume_id(block: &[u8]) -> Option<alloc::string::String> {
    if block.len() < 72 || block[0] != 1 || &block[1..6] != b"CD001" {
        return None;
    }
    let id: alloc::string::String =
        block[40..72].iter().map(|b| if b.is_ascii_graphic() || *b == b' ' { *b as char } else { '?' }).collect();
    Some(alloc::string::String::from(id.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemus_gesn_replies() {
        // New media, present (docs/qemu-behaviour.md).
        let new = [0x00, 0x04, 0x04, 0x10, 0x02, 0x02, 0x00, 0x00];
        assert_eq!(parse_media_event(&new), Some(MediaStatus { event: 2, tray_open: false, present: true }));
        let open = [0x00, 0x04, 0x04, 0x10, 0x00, 0x01, 0x00, 0x00];
        assert_eq!(parse_media_event(&open), Some(MediaStatus { event: 0, tray_open: true, present: false }));
        assert_eq!(parse_media_event(&[0x00, 0x02, 0x84, 0x10, 0, 0, 0, 0]), None, "no event available");
    }

    #[test]
    fn builds_cdbs_and_parses_replies() {
        assert_eq!(read10(0x01020304, 2), [0x28, 0, 1, 2, 3, 4, 0, 0, 2, 0, 0, 0]);
        assert_eq!(prevent_allow(true)[4], 1);
        assert_eq!(parse_capacity(&[0, 0, 0x01, 0xff, 0, 0, 0x08, 0]), Some((511, 2048)));
        let mut sense = [0u8; 18];
        sense[2] = 0x06;
        sense[12] = 0x28;
        assert_eq!(parse_sense(&sense), Some(Sense { key: 6, asc: 0x28, ascq: 0 }));
        let mut pvd = [b' '; 2048];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[40..45].copy_from_slice(b"ALPHA");
        assert_eq!(iso9660_volume_id(&pvd).as_deref(), Some("ALPHA"));
        pvd[1] = b'X';
        assert_eq!(iso9660_volume_id(&pvd), None);
        let mut caps = [0u8; 36];
        caps[8] = 0x2a;
        caps[14] = 0x29;
        assert_eq!(parse_lock_state(&caps), Some(false));
        caps[14] |= 0x02;
        assert_eq!(parse_lock_state(&caps), Some(true));
        caps[8] = 0x01;
        assert_eq!(parse_lock_state(&caps), None, "wrong page");
    }
}
