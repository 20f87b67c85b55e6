//! UHCI transfer descriptors and queue heads as bytes (UHCI 1.1 §3.2,
//! and QEMU 7.2's reading of them in `hw/usb/hcd-uhci.c`).
//!
//! Pure encoding and decoding, so the schedule's layout is host-tested
//! without a controller.

/// Link pointer bits.
pub const LINK_TERMINATE: u32 = 1 << 0;
pub const LINK_QH: u32 = 1 << 1;
/// Depth first: run the next TD of this queue in the same frame.
pub const LINK_DEPTH: u32 = 1 << 2;

// TD control/status dword.
pub const CTRL_ACTLEN: u32 = 0x7ff;
pub const CTRL_BITSTUFF: u32 = 1 << 17;
pub const CTRL_CRC_TIMEOUT: u32 = 1 << 18;
pub const CTRL_NAK: u32 = 1 << 19;
pub const CTRL_BABBLE: u32 = 1 << 20;
pub const CTRL_DATABUF: u32 = 1 << 21;
pub const CTRL_STALLED: u32 = 1 << 22;
pub const CTRL_ACTIVE: u32 = 1 << 23;
pub const CTRL_IOC: u32 = 1 << 24;
pub const CTRL_LOW_SPEED: u32 = 1 << 26;
/// Three retries on errors (C_ERR, b28:27).
pub const CTRL_RETRIES: u32 = 3 << 27;
pub const CTRL_SPD: u32 = 1 << 29;
/// Any of these on an inactive TD: the transfer failed.
pub const CTRL_ERRORS: u32 = CTRL_BITSTUFF | CTRL_CRC_TIMEOUT | CTRL_BABBLE | CTRL_DATABUF | CTRL_STALLED;

pub const PID_SETUP: u8 = 0x2d;
pub const PID_IN: u8 = 0x69;
pub const PID_OUT: u8 = 0xe1;

pub const TD_SIZE: usize = 16;
pub const QH_SIZE: usize = 16;

/// One TD as the controller reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Td {
    pub link: u32,
    pub ctrl: u32,
    pub token: u32,
    pub buffer: u32,
}

impl Td {
    /// An active TD moving `len` bytes (0..=1023) with the given PID.
    #[allow(clippy::too_many_arguments)]
    pub fn new(pid: u8, address: u8, endpoint: u8, toggle: bool, len: usize, buffer: u32, low_speed: bool) -> Td {
        // MaxLen is n-1; 0x7ff means zero bytes.
        let max_len = if len == 0 { 0x7ff } else { (len as u32 - 1) & 0x7ff };
        let token = u32::from(pid)
            | u32::from(address & 0x7f) << 8
            | u32::from(endpoint & 0xf) << 15
            | u32::from(toggle) << 19
            | max_len << 21;
        let ctrl = CTRL_ACTIVE | CTRL_RETRIES | if low_speed { CTRL_LOW_SPEED } else { 0 };
        Td { link: LINK_TERMINATE, ctrl, token, buffer }
    }

    pub fn bytes(&self) -> [u8; TD_SIZE] {
        let mut b = [0u8; TD_SIZE];
        for (i, word) in [self.link, self.ctrl, self.token, self.buffer].iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&word.to_le_bytes());
        }
        b
    }

    /// Bytes this TD asked for.
    pub fn max_len(&self) -> usize {
        ((self.token >> 21) + 1) as usize & 0x7ff
    }

    pub fn pid(&self) -> u8 {
        self.token as u8
    }
}

/// Bytes a completed TD moved, from its control/status dword.
pub fn actual_length(ctrl: u32) -> usize {
    ((ctrl & CTRL_ACTLEN) + 1) as usize & 0x7ff
}

/// What an inactive TD's status says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TdStatus {
    Active,
    Done {
        actual: usize,
    },
    Stalled,
    Babble,
    /// CRC/time-out: in QEMU, no device answered at that address.
    NoResponse,
    OtherError,
}

pub fn status(ctrl: u32) -> TdStatus {
    if ctrl & CTRL_ACTIVE != 0 {
        TdStatus::Active
    } else if ctrl & CTRL_BABBLE != 0 {
        TdStatus::Babble
    } else if ctrl & CTRL_STALLED != 0 {
        TdStatus::Stalled
    } else if ctrl & CTRL_CRC_TIMEOUT != 0 {
        TdStatus::NoResponse
    } else if ctrl & CTRL_ERRORS != 0 {
        TdStatus::OtherError
    } else {
        TdStatus::Done { actual: actual_length(ctrl) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_td_token_matches_the_layout_qemu_reads() {
        let td = Td::new(PID_SETUP, 0, 0, false, 8, 0x1000, false);
        assert_eq!(td.token, 0x2d | 7 << 21);
        assert_eq!(td.ctrl, CTRL_ACTIVE | CTRL_RETRIES);
        assert_eq!(td.max_len(), 8);
        let td = Td::new(PID_IN, 5, 1, true, 0, 0, true);
        assert_eq!(td.token, 0x69 | 5 << 8 | 1 << 15 | 1 << 19 | 0x7ff << 21);
        assert_eq!(td.max_len(), 0);
        assert_ne!(td.ctrl & CTRL_LOW_SPEED, 0);
        assert_eq!(&td.bytes()[..4], &[1, 0, 0, 0], "terminated link first");
    }

    #[test]
    fn status_decodes_what_qemu_writes_back() {
        assert_eq!(status(CTRL_ACTIVE | CTRL_NAK), TdStatus::Active, "a NAKed TD stays active");
        assert_eq!(status(0x7ff), TdStatus::Done { actual: 0 });
        assert_eq!(status(7), TdStatus::Done { actual: 8 });
        // device_del of the target: CRC/TO, C_ERR 0, inactive (usb-scsi §1).
        assert_eq!(status(0x0004_0000), TdStatus::NoResponse);
        assert_eq!(status(CTRL_STALLED), TdStatus::Stalled);
        assert_eq!(status(CTRL_STALLED | CTRL_BABBLE), TdStatus::Babble);
    }
}
