//! Machine profiles: a QEMU machine type and the controllers cold-plugged
//! into it. Snapshots carry the profile name as their insta suffix.

use anyhow::{Result, bail};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub machine: &'static str,
    /// Extra QEMU arguments: cold-plugged devices, globals.
    pub args: Vec<String>,
    /// One line for `--help` and the README table.
    pub summary: &'static str,
}

/// Names of every profile, in the order the matrix runs them.
pub const NAMES: &[&str] = &["pc", "q35"];

impl Profile {
    pub fn get(name: &str) -> Result<Profile> {
        match name {
            "pc" => Ok(Profile {
                name: "pc",
                machine: "pc",
                args: Vec::new(),
                summary: "i440fx + PIIX3/PIIX4; PCI hot-plug through ACPI (0xae00)",
            }),
            "q35" => Ok(Profile {
                name: "q35",
                machine: "q35",
                // Native PCIe hot-plug on two root ports: the guest drives the
                // slots through their own registers, so it needs nothing from
                // the harness (ACPI mode would need the bus↔bsel mapping).
                args: [
                    "-global",
                    "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
                    "-device",
                    "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,addr=0x10",
                    "-device",
                    "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,slot=2,addr=0x11",
                ]
                .map(String::from)
                .to_vec(),
                summary: "ICH9 + 2 pcie-root-ports (rp1, rp2); native PCIe hot-plug",
            }),
            other => bail!("unknown machine profile {other:?}; known profiles: {}", NAMES.join(", ")),
        }
    }

    pub fn all() -> Vec<Profile> {
        NAMES.iter().map(|n| Profile::get(n).expect("NAMES lists known profiles")).collect()
    }
}
