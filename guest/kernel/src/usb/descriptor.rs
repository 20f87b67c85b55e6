//! USB descriptors (USB 2.0 §9.6, HID 1.11 §6.2.1, hub §11.23.2.1), parsed
//! from the little-endian bytes a device returns.

use alloc::string::String;
use alloc::vec::Vec;

pub const TYPE_DEVICE: u8 = 1;
pub const TYPE_CONFIG: u8 = 2;
pub const TYPE_STRING: u8 = 3;
pub const TYPE_INTERFACE: u8 = 4;
pub const TYPE_ENDPOINT: u8 = 5;
pub const TYPE_HID: u8 = 0x21;
pub const TYPE_HID_REPORT: u8 = 0x22;
pub const TYPE_HUB: u8 = 0x29;

pub const CLASS_HID: u8 = 3;
pub const CLASS_MASS_STORAGE: u8 = 8;
pub const CLASS_HUB: u8 = 9;

/// The 18-byte device descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceDescriptor {
    pub bcd_usb: u16,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    pub max_packet0: u8,
    pub vendor: u16,
    pub product: u16,
    pub bcd_device: u16,
    pub i_manufacturer: u8,
    pub i_product: u8,
    pub i_serial: u8,
    pub num_configurations: u8,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

impl DeviceDescriptor {
    pub const LEN: usize = 18;

    pub fn parse(b: &[u8]) -> Option<DeviceDescriptor> {
        if b.len() < Self::LEN || b[0] < Self::LEN as u8 || b[1] != TYPE_DEVICE {
            return None;
        }
        Some(DeviceDescriptor {
            bcd_usb: le16(b, 2),
            class: b[4],
            subclass: b[5],
            protocol: b[6],
            max_packet0: b[7],
            vendor: le16(b, 8),
            product: le16(b, 10),
            bcd_device: le16(b, 12),
            i_manufacturer: b[14],
            i_product: b[15],
            i_serial: b[16],
            num_configurations: b[17],
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferType {
    Control,
    Isochronous,
    Bulk,
    Interrupt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// bEndpointAddress: number in b3:0, IN when b7 is set.
    pub address: u8,
    pub kind: TransferType,
    pub max_packet: u16,
    pub interval: u8,
}

impl Endpoint {
    pub fn number(&self) -> u8 {
        self.address & 0x0f
    }
    pub fn is_in(&self) -> bool {
        self.address & 0x80 != 0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub number: u8,
    pub alternate: u8,
    pub class: u8,
    pub subclass: u8,
    pub protocol: u8,
    pub i_interface: u8,
    pub endpoints: Vec<Endpoint>,
    /// For HID interfaces: the report descriptor's length from the HID
    /// class descriptor that sits between the interface and its endpoints.
    pub hid_report_len: Option<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Configuration {
    pub total_length: u16,
    pub value: u8,
    pub attributes: u8,
    pub max_power: u8,
    /// Alternate setting 0 of each interface, in descriptor order.
    pub interfaces: Vec<Interface>,
}

impl Configuration {
    pub const HEADER_LEN: usize = 9;

    /// The total length a 9-byte (or longer) read announces.
    pub fn total_length(b: &[u8]) -> Option<u16> {
        (b.len() >= Self::HEADER_LEN && b[1] == TYPE_CONFIG).then(|| le16(b, 2))
    }

    /// Walk the whole configuration by bLength: interfaces (alternate 0
    /// only), the HID descriptor, endpoints. Unknown descriptors are skipped.
    pub fn parse(b: &[u8]) -> Option<Configuration> {
        let total = usize::from(Self::total_length(b)?);
        if b.len() < total {
            return None;
        }
        let mut config = Configuration {
            total_length: total as u16,
            value: b[5],
            attributes: b[7],
            max_power: b[8],
            interfaces: Vec::new(),
        };
        let mut at = usize::from(b[0]);
        let mut current_alt0 = false;
        while at + 2 <= total {
            let len = usize::from(b[at]);
            if len < 2 || at + len > total {
                return None;
            }
            let d = &b[at..at + len];
            match d[1] {
                TYPE_INTERFACE if len >= 9 => {
                    current_alt0 = d[3] == 0;
                    if current_alt0 {
                        config.interfaces.push(Interface {
                            number: d[2],
                            alternate: d[3],
                            class: d[5],
                            subclass: d[6],
                            protocol: d[7],
                            i_interface: d[8],
                            endpoints: Vec::new(),
                            hid_report_len: None,
                        });
                    }
                }
                TYPE_HID if len >= 9 && current_alt0 => {
                    // bNumDescriptors at 5, then (type, length) pairs.
                    let count = usize::from(d[5]);
                    for i in 0..count {
                        let at = 6 + 3 * i;
                        if at + 3 <= len
                            && d[at] == TYPE_HID_REPORT
                            && let Some(iface) = config.interfaces.last_mut()
                        {
                            iface.hid_report_len = Some(le16(d, at + 1));
                        }
                    }
                }
                TYPE_ENDPOINT if len >= 7 && current_alt0 => {
                    let kind = match d[3] & 3 {
                        0 => TransferType::Control,
                        1 => TransferType::Isochronous,
                        2 => TransferType::Bulk,
                        _ => TransferType::Interrupt,
                    };
                    let ep = Endpoint { address: d[2], kind, max_packet: le16(d, 4) & 0x7ff, interval: d[6] };
                    if let Some(iface) = config.interfaces.last_mut() {
                        iface.endpoints.push(ep);
                    }
                }
                _ => {}
            }
            at += len;
        }
        Some(config)
    }
}

/// A string descriptor's UTF-16LE text. Characters outside ASCII are kept
/// as they decode; unpaired surrogates become U+FFFD.
pub fn parse_string(b: &[u8]) -> Option<String> {
    if b.len() < 2 || b[1] != TYPE_STRING {
        return None;
    }
    let len = usize::from(b[0]).min(b.len());
    let units = b[2..len].chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]]));
    Some(char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect())
}

/// What a hub says about itself (USB 2.0 §11.23.2.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HubDescriptor {
    pub ports: u8,
    pub characteristics: u16,
    /// Time from power-on to power-good, in 2 ms units.
    pub power_on_to_good: u8,
}

impl HubDescriptor {
    pub fn parse(b: &[u8]) -> Option<HubDescriptor> {
        if b.len() < 7 || b[1] != TYPE_HUB {
            return None;
        }
        Some(HubDescriptor { ports: b[2], characteristics: le16(b, 3), power_on_to_good: b[5] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// usb-kbd's configuration as QEMU 7.2 returns it.
    pub const KBD_CONFIG: [u8; 34] = [
        0x09, 0x02, 0x22, 0x00, 0x01, 0x01, 0x08, 0xa0, 0x32, // config
        0x09, 0x04, 0x00, 0x00, 0x01, 0x03, 0x01, 0x01, 0x00, // interface 3/1/1
        0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, 0x3f, 0x00, // HID, report 63
        0x07, 0x05, 0x81, 0x03, 0x08, 0x00, 0x0a, // ep 0x81 int
    ];

    #[test]
    fn keyboard_configuration_walks_past_the_hid_descriptor() {
        let c = Configuration::parse(&KBD_CONFIG).unwrap();
        assert_eq!((c.total_length, c.value, c.attributes, c.max_power), (34, 1, 0xa0, 0x32));
        assert_eq!(c.interfaces.len(), 1);
        let i = &c.interfaces[0];
        assert_eq!((i.class, i.subclass, i.protocol, i.hid_report_len), (3, 1, 1, Some(63)));
        assert_eq!(
            i.endpoints,
            [Endpoint { address: 0x81, kind: TransferType::Interrupt, max_packet: 8, interval: 10 }]
        );
    }

    #[test]
    fn truncated_or_corrupt_configurations_are_refused() {
        assert_eq!(Configuration::total_length(&KBD_CONFIG[..9]), Some(34));
        assert!(Configuration::parse(&KBD_CONFIG[..20]).is_none(), "shorter than wTotalLength");
        let mut bad = KBD_CONFIG;
        bad[9] = 0; // a zero bLength would loop forever
        assert!(Configuration::parse(&bad).is_none());
        assert!(Configuration::parse(&[0x09, 0x04, 0, 0, 0, 0, 0, 0, 0]).is_none(), "not a config");
    }

    #[test]
    fn device_descriptor_fields() {
        let b = [18, 1, 0x00, 0x02, 0, 0, 0, 8, 0x27, 0x06, 0x01, 0x00, 0x00, 0x00, 1, 4, 11, 1];
        let d = DeviceDescriptor::parse(&b).unwrap();
        assert_eq!((d.vendor, d.product, d.bcd_usb, d.max_packet0), (0x0627, 0x0001, 0x0200, 8));
        assert_eq!((d.i_manufacturer, d.i_product, d.i_serial), (1, 4, 11));
        assert!(DeviceDescriptor::parse(&b[..8]).is_none());
    }

    #[test]
    fn strings_and_hub_descriptor() {
        assert_eq!(parse_string(&[10, 3, b'Q', 0, b'E', 0, b'M', 0, b'U', 0]).as_deref(), Some("QEMU"));
        assert_eq!(parse_string(&[2, 3]).as_deref(), Some(""));
        assert!(parse_string(&[4, 2, 0, 0]).is_none());
        let h = HubDescriptor::parse(&[0x0a, 0x29, 0x08, 0x0a, 0x00, 0x01, 0x00, 0, 0, 0xff]).unwrap();
        assert_eq!((h.ports, h.characteristics, h.power_on_to_good), (8, 0x000a, 1));
    }
}
