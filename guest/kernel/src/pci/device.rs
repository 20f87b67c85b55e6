//! What a PCI function shows in driverfs.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::config::Bdf;
use super::ids;
use super::resources::{Bar, BarKind, BridgeWindows};
use crate::base::{Attribute, DeviceData};

/// The root of a PCI hierarchy: `root/pci0` (2.5: "PCI Bus #00").
pub struct PciRoot {
    pub number: u8,
}

impl DeviceData for PciRoot {
    fn description(&self) -> String {
        format!("PCI Bus #{:02x}", self.number)
    }
    fn show(&self, _attr: &str) -> Option<String> {
        None
    }
}

/// One PCI function, as read and configured at enumeration time.
#[derive(Clone, Debug)]
pub struct PciFunction {
    pub bdf: Bdf,
    pub vendor: u16,
    pub device: u16,
    /// Base class, subclass, programming interface.
    pub class: u32,
    pub revision: u8,
    pub header_type: u8,
    pub irq_pin: u8,
    /// INTERRUPT_LINE as programmed (0 when the function has no pin).
    pub irq_line: u8,
    pub bars: Vec<Bar>,
    /// Forwarding windows, for bridges.
    pub windows: Option<BridgeWindows>,
    /// Secondary and subordinate bus numbers, for bridges that got them.
    pub secondary: Option<u8>,
    pub subordinate: Option<u8>,
}

impl PciFunction {
    pub fn is_bridge(&self) -> bool {
        self.header_type & 0x7f == 1
    }

    /// One line per resource: `bar<N> <kind> <start>-<end>` (`rom` for the
    /// expansion ROM), then for bridges `buses <secondary>-<subordinate>` and
    /// windows as `window <kind> <start>-<end>`. An unassigned BAR shows its
    /// size instead, so a missing window is visible rather than silent.
    pub fn resource_text(&self) -> String {
        let mut out = String::new();
        for bar in &self.bars {
            let label = if bar.kind == BarKind::Rom { String::from("rom") } else { format!("bar{}", bar.index) };
            let kind = match (bar.kind, bar.prefetchable) {
                (BarKind::Io, _) => "io",
                (BarKind::Rom, _) | (BarKind::Mem32, false) => "mem32",
                (BarKind::Mem32, true) => "mem32-pref",
                (BarKind::Mem64, false) => "mem64",
                (BarKind::Mem64, true) => "mem64-pref",
            };
            let _ = match bar.base {
                Some(base) => writeln!(out, "{label} {kind} {:#x}-{:#x}", base, base + bar.size - 1),
                None => writeln!(out, "{label} {kind} unassigned size={:#x}", bar.size),
            };
        }
        if let (Some(secondary), Some(subordinate)) = (self.secondary, self.subordinate) {
            let _ = writeln!(out, "buses {secondary:02x}-{subordinate:02x}");
        }
        if let Some(w) = &self.windows {
            for (kind, range) in [("io", w.io), ("mem", w.mem)] {
                let _ = match range {
                    Some((start, end)) => writeln!(out, "window {kind} {start:#x}-{end:#x}"),
                    None => writeln!(out, "window {kind} none"),
                };
            }
        }
        out
    }
}

const PCI_ATTRIBUTES: [Attribute; 5] = [
    Attribute::ro("vendor"),
    Attribute::ro("device"),
    Attribute::ro("class"),
    Attribute::ro("irq"),
    Attribute::ro("resource"),
];

impl DeviceData for PciFunction {
    fn description(&self) -> String {
        ids::name(self.vendor, self.device)
    }

    fn attributes(&self) -> Vec<Attribute> {
        PCI_ATTRIBUTES.to_vec()
    }

    fn show(&self, attr: &str) -> Option<String> {
        match attr {
            "vendor" => Some(format!("{:#06x}\n", self.vendor)),
            "device" => Some(format!("{:#06x}\n", self.device)),
            "class" => Some(format!("{:#08x}\n", self.class)),
            "irq" => Some(format!("{}\n", self.irq_line)),
            "resource" => Some(self.resource_text()),
            _ => None,
        }
    }

    fn uevent_env(&self, env: &mut Vec<(&'static str, String)>) {
        env.push(("PCI_CLASS", format!("{:X}", self.class)));
        env.push(("PCI_ID", format!("{:04X}:{:04X}", self.vendor, self.device)));
        env.push(("PCI_SLOT_NAME", format!("{}", self.bdf)));
    }
}
