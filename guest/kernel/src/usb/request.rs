//! Control requests (USB 2.0 §9.3, §9.4; hub §11.24.2; HID §7.2): the
//! 8-byte SETUP packet of each request this stack sends.

use super::descriptor::{TYPE_CONFIG, TYPE_DEVICE, TYPE_HID_REPORT, TYPE_HUB, TYPE_STRING};

/// English (US), the language every QEMU device answers in.
pub const LANG_EN_US: u16 = 0x0409;

/// Longest string descriptor (bLength is one byte).
pub const MAX_DESCRIPTOR: u16 = 255;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setup {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl Setup {
    pub fn bytes(&self) -> [u8; 8] {
        let [v0, v1] = self.value.to_le_bytes();
        let [i0, i1] = self.index.to_le_bytes();
        let [l0, l1] = self.length.to_le_bytes();
        [self.request_type, self.request, v0, v1, i0, i1, l0, l1]
    }

    /// Device-to-host (a data stage that reads).
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }
}

// bRequest codes.
const GET_STATUS: u8 = 0;
const CLEAR_FEATURE: u8 = 1;
const SET_FEATURE: u8 = 3;
const SET_ADDRESS: u8 = 5;
const GET_DESCRIPTOR: u8 = 6;
const SET_CONFIGURATION: u8 = 9;
const HID_SET_PROTOCOL: u8 = 0x0b;
const MASS_STORAGE_GET_MAX_LUN: u8 = 0xfe;

pub fn get_descriptor(kind: u8, index: u8, lang: u16, length: u16) -> Setup {
    Setup {
        request_type: 0x80,
        request: GET_DESCRIPTOR,
        value: u16::from(kind) << 8 | u16::from(index),
        index: lang,
        length,
    }
}

pub fn device_descriptor(length: u16) -> Setup {
    get_descriptor(TYPE_DEVICE, 0, 0, length)
}

pub fn config_descriptor(length: u16) -> Setup {
    get_descriptor(TYPE_CONFIG, 0, 0, length)
}

/// The first `length` bytes of a string (2: just bLength and the type).
pub fn string_descriptor(index: u8, length: u16) -> Setup {
    get_descriptor(TYPE_STRING, index, LANG_EN_US, length.min(MAX_DESCRIPTOR))
}

/// A HID report descriptor, an interface-recipient GET_DESCRIPTOR.
pub fn hid_report_descriptor(interface: u8, length: u16) -> Setup {
    Setup {
        request_type: 0x81,
        request: GET_DESCRIPTOR,
        value: u16::from(TYPE_HID_REPORT) << 8,
        index: u16::from(interface),
        length,
    }
}

/// SET_PROTOCOL(boot) on a boot-interface HID device.
pub fn hid_set_boot_protocol(interface: u8) -> Setup {
    Setup { request_type: 0x21, request: HID_SET_PROTOCOL, value: 0, index: u16::from(interface), length: 0 }
}

pub fn set_address(address: u8) -> Setup {
    Setup { request_type: 0x00, request: SET_ADDRESS, value: u16::from(address), index: 0, length: 0 }
}

pub fn set_configuration(value: u8) -> Setup {
    Setup { request_type: 0x00, request: SET_CONFIGURATION, value: u16::from(value), index: 0, length: 0 }
}

/// CLEAR_FEATURE(ENDPOINT_HALT).
pub fn clear_halt(endpoint: u8) -> Setup {
    Setup { request_type: 0x02, request: CLEAR_FEATURE, value: 0, index: u16::from(endpoint), length: 0 }
}

pub fn get_max_lun(interface: u8) -> Setup {
    Setup { request_type: 0xa1, request: MASS_STORAGE_GET_MAX_LUN, value: 0, index: u16::from(interface), length: 1 }
}

/// Hub class requests (§11.24.2) and port features (Table 11-17).
pub mod hub {
    use super::*;

    pub const PORT_RESET: u16 = 4;
    pub const PORT_POWER: u16 = 8;
    pub const C_PORT_CONNECTION: u16 = 16;
    pub const C_PORT_ENABLE: u16 = 17;
    pub const C_PORT_SUSPEND: u16 = 18;
    pub const C_PORT_OVER_CURRENT: u16 = 19;
    pub const C_PORT_RESET: u16 = 20;

    pub fn get_hub_descriptor() -> Setup {
        Setup { request_type: 0xa0, request: GET_DESCRIPTOR, value: u16::from(TYPE_HUB) << 8, index: 0, length: 16 }
    }

    pub fn get_port_status(port: u8) -> Setup {
        Setup { request_type: 0xa3, request: GET_STATUS, value: 0, index: u16::from(port), length: 4 }
    }

    pub fn set_port_feature(port: u8, feature: u16) -> Setup {
        Setup { request_type: 0x23, request: SET_FEATURE, value: feature, index: u16::from(port), length: 0 }
    }

    pub fn clear_port_feature(port: u8, feature: u16) -> Setup {
        Setup { request_type: 0x23, request: CLEAR_FEATURE, value: feature, index: u16::from(port), length: 0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_packets_are_little_endian() {
        assert_eq!(device_descriptor(18).bytes(), [0x80, 0x06, 0x00, 0x01, 0x00, 0x00, 0x12, 0x00]);
        assert_eq!(string_descriptor(2, 300).bytes(), [0x80, 0x06, 0x02, 0x03, 0x09, 0x04, 0xff, 0x00]);
        assert_eq!(set_address(5).bytes(), [0x00, 0x05, 0x05, 0x00, 0, 0, 0, 0]);
        assert_eq!(hub::get_port_status(3).bytes(), [0xa3, 0x00, 0, 0, 0x03, 0x00, 0x04, 0x00]);
        assert_eq!(hub::clear_port_feature(1, hub::C_PORT_RESET).bytes(), [0x23, 0x01, 20, 0, 1, 0, 0, 0]);
        assert_eq!(hid_report_descriptor(0, 63).bytes(), [0x81, 0x06, 0x00, 0x22, 0, 0, 63, 0]);
        assert!(device_descriptor(8).is_in() && !set_configuration(1).is_in());
    }
}
