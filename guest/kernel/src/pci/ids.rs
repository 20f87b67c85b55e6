//! Names for the functions QEMU emulates, for the `name` attribute (2.5 took
//! them from the pci.ids database; this is the subset that matters here).

use alloc::format;
use alloc::string::String;

const NAMES: &[(u16, u16, &str)] = &[
    (0x8086, 0x1237, "i440FX Host Bridge"),
    (0x8086, 0x7000, "PIIX3 ISA Bridge"),
    (0x8086, 0x7010, "PIIX3 IDE"),
    (0x8086, 0x7020, "PIIX3 USB UHCI"),
    (0x8086, 0x7113, "PIIX4 ACPI"),
    (0x8086, 0x29c0, "Q35 Host Bridge"),
    (0x8086, 0x2918, "ICH9 LPC Bridge"),
    (0x8086, 0x2922, "ICH9 AHCI"),
    (0x8086, 0x2930, "ICH9 SMBus"),
    (0x8086, 0x293a, "ICH9 USB EHCI"),
    (0x8086, 0x2934, "ICH9 USB UHCI"),
    (0x8086, 0x100e, "82540EM Gigabit Ethernet"),
    (0x8086, 0x10d3, "82574L Gigabit Ethernet"),
    (0x1b36, 0x0001, "PCI-PCI Bridge"),
    (0x1b36, 0x0005, "PCI Test Device"),
    (0x1b36, 0x000c, "PCIe Root Port"),
    (0x1b36, 0x000d, "QEMU xHCI"),
    (0x1b36, 0x000e, "PCIe-PCI Bridge"),
    (0x1234, 0x11e8, "QEMU edu"),
    (0x1af4, 0x1000, "Virtio Network"),
    (0x1af4, 0x1001, "Virtio Block"),
    (0x1af4, 0x1004, "Virtio SCSI"),
    (0x1af4, 0x1005, "Virtio RNG"),
    (0x1af4, 0x1041, "Virtio 1.0 Network"),
    (0x1af4, 0x1042, "Virtio 1.0 Block"),
    (0x1af4, 0x1044, "Virtio 1.0 RNG"),
    (0x1af4, 0x1048, "Virtio 1.0 SCSI"),
    (0x106b, 0x003f, "Apple OHCI"),
    (0x1000, 0x0012, "LSI 53c895a"),
    (0x1000, 0x0060, "MegaRAID SAS 1078"),
];

pub fn name(vendor: u16, device: u16) -> String {
    NAMES
        .iter()
        .find(|(v, d, _)| *v == vendor && *d == device)
        .map(|(_, _, n)| String::from(*n))
        .unwrap_or_else(|| format!("PCI device {vendor:04x}:{device:04x}"))
}
