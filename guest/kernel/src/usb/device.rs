//! What USB objects show in driverfs, with Linux's names and formats.
//!
//! ```text
//! root/pci0/00:01.2/usb1                     root hub (a usb_device)
//! root/pci0/00:01.2/usb1/1-0:1.0             its hub interface, bound to `hub`
//! root/pci0/00:01.2/usb1/1-1                 device on root port 1
//! root/pci0/00:01.2/usb1/1-1/1-1:1.0         its interface 0 of configuration 1
//! root/pci0/00:01.2/usb1/1-1/1-1.2           device on port 2 of the hub at 1-1
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use super::descriptor::{Configuration, DeviceDescriptor, Interface};
use super::hcd::Speed;
use crate::base::{Attribute, DeviceData};

/// A port path below a root hub: `[1]` is root port 1, `[1, 2]` port 2 of
/// the hub on root port 1. Empty for the root hub itself.
pub type PortPath = Vec<u8>;

/// `1-1.2` for bus 1, path [1, 2]; `usb1` for the root hub.
pub fn device_name(bus: u8, path: &[u8]) -> String {
    if path.is_empty() {
        return format!("usb{bus}");
    }
    let mut name = format!("{bus}-");
    for (i, port) in path.iter().enumerate() {
        let _ = write!(name, "{}{port}", if i == 0 { "" } else { "." });
    }
    name
}

/// `1-1.2:1.0`; the root hub's interface is `1-0:1.0`.
pub fn interface_name(bus: u8, path: &[u8], config: u8, interface: u8) -> String {
    let device = if path.is_empty() { format!("{bus}-0") } else { device_name(bus, path) };
    format!("{device}:{config}.{interface}")
}

/// A USB device: its descriptors and strings as read at enumeration.
pub struct UsbDevice {
    pub bus: u8,
    pub path: PortPath,
    pub descriptor: DeviceDescriptor,
    pub config: Configuration,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    pub serial: Option<String>,
    pub speed: Speed,
}

impl UsbDevice {
    pub fn is_hub(&self) -> bool {
        self.descriptor.class == super::descriptor::CLASS_HUB
    }
}

impl DeviceData for UsbDevice {
    fn description(&self) -> String {
        self.product
            .clone()
            .unwrap_or_else(|| format!("USB device {:04x}:{:04x}", self.descriptor.vendor, self.descriptor.product))
    }

    /// Linux leaves out a string attribute the device has no string for.
    fn attributes(&self) -> Vec<Attribute> {
        let mut attrs = vec![
            Attribute::ro("idVendor"),
            Attribute::ro("idProduct"),
            Attribute::ro("bcdDevice"),
            Attribute::ro("bDeviceClass"),
            Attribute::ro("bNumInterfaces"),
            Attribute::ro("bConfigurationValue"),
            Attribute::ro("speed"),
        ];
        for (name, value) in
            [("manufacturer", &self.manufacturer), ("product", &self.product), ("serial", &self.serial)]
        {
            if value.is_some() {
                attrs.push(Attribute::ro(name));
            }
        }
        attrs
    }

    fn show(&self, attr: &str) -> Option<String> {
        let d = &self.descriptor;
        match attr {
            "idVendor" => Some(format!("{:04x}\n", d.vendor)),
            "idProduct" => Some(format!("{:04x}\n", d.product)),
            "bcdDevice" => Some(format!("{:04x}\n", d.bcd_device)),
            "bDeviceClass" => Some(format!("{:02x}\n", d.class)),
            "bNumInterfaces" => Some(format!("{:2}\n", self.config.interfaces.len())),
            "bConfigurationValue" => Some(format!("{}\n", self.config.value)),
            "speed" => Some(format!("{}\n", self.speed.mbps())),
            "manufacturer" => self.manufacturer.as_ref().map(|s| format!("{s}\n")),
            "product" => self.product.as_ref().map(|s| format!("{s}\n")),
            "serial" => self.serial.as_ref().map(|s| format!("{s}\n")),
            _ => None,
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        let d = &self.descriptor;
        env.push(("DEVTYPE", String::from("usb_device")));
        env.push(("PRODUCT", format!("{:x}/{:x}/{:x}", d.vendor, d.product, d.bcd_device)));
        env.push(("TYPE", format!("{}/{}/{}", d.class, d.subclass, d.protocol)));
        env.push(("BUSNUM", format!("{:03}", self.bus)));
    }
}

/// One interface of the active configuration.
pub struct UsbInterface {
    pub bus: u8,
    /// The device's port path (empty for a root hub).
    pub path: PortPath,
    pub interface: Interface,
    /// HID: the report descriptor as read from the device, its length.
    pub report_descriptor_len: Option<usize>,
    /// Attributes the bound driver added (shown while it is bound).
    pub driver_attributes: Vec<&'static str>,
}

impl UsbInterface {
    /// HID boot interface protocol (subclass 1): 1 keyboard, 2 mouse.
    pub fn boot_protocol(&self) -> &'static str {
        match (self.interface.subclass, self.interface.protocol) {
            (1, 1) => "keyboard",
            (1, 2) => "mouse",
            _ => "none",
        }
    }
}

impl DeviceData for UsbInterface {
    fn description(&self) -> String {
        format!("USB interface {}", self.interface.number)
    }

    fn attributes(&self) -> Vec<Attribute> {
        vec![
            Attribute::ro("bInterfaceNumber"),
            Attribute::ro("bAlternateSetting"),
            Attribute::ro("bInterfaceClass"),
            Attribute::ro("bInterfaceSubClass"),
            Attribute::ro("bInterfaceProtocol"),
            Attribute::ro("bNumEndpoints"),
        ]
    }

    fn show(&self, attr: &str) -> Option<String> {
        let i = &self.interface;
        match attr {
            "bInterfaceNumber" => Some(format!("{:02x}\n", i.number)),
            "bAlternateSetting" => Some(format!("{:2}\n", i.alternate)),
            "bInterfaceClass" => Some(format!("{:02x}\n", i.class)),
            "bInterfaceSubClass" => Some(format!("{:02x}\n", i.subclass)),
            "bInterfaceProtocol" => Some(format!("{:02x}\n", i.protocol)),
            "bNumEndpoints" => Some(format!("{:02x}\n", i.endpoints.len())),
            "report_descriptor_length" if self.driver_attributes.contains(&attr) => {
                self.report_descriptor_len.map(|n| format!("{n}\n"))
            }
            "boot_protocol" if self.driver_attributes.contains(&attr) => Some(format!("{}\n", self.boot_protocol())),
            _ => None,
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        let i = &self.interface;
        env.push(("DEVTYPE", String::from("usb_interface")));
        env.push(("INTERFACE", format!("{}/{}/{}", i.class, i.subclass, i.protocol)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linux() {
        assert_eq!(device_name(1, &[]), "usb1");
        assert_eq!(device_name(1, &[1]), "1-1");
        assert_eq!(device_name(2, &[1, 2, 8]), "2-1.2.8");
        assert_eq!(interface_name(1, &[], 1, 0), "1-0:1.0");
        assert_eq!(interface_name(1, &[2, 3], 1, 0), "1-2.3:1.0");
    }
}
