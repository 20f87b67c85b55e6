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
    /// Cold-plugged IDE drives and where the guest shows them.
    pub ide: Vec<IdeDrive>,
    /// The disk image behind block node `hd0`, from the `images` recipes.
    /// Each VM boots a private copy, so parallel VMs never share a
    /// writable file.
    pub disk_image: Option<&'static str>,
}

/// An IDE drive on the command line: its QEMU id and the guest's path for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdeDrive {
    pub id: &'static str,
    pub devpath: &'static str,
    pub cdrom: bool,
}

/// Where a hot-plugged PCI device goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciSlot {
    pub bus: String,
    pub addr: String,
}

impl Profile {
    /// The cold-plugged IDE drive with this QEMU id.
    pub fn ide_drive(&self, id: &str) -> Result<&IdeDrive> {
        self.ide
            .iter()
            .find(|d| d.id == id)
            .ok_or_else(|| anyhow::anyhow!("profile {} has no IDE drive {id:?}", self.name))
    }

    /// The `n`th hot-pluggable PCI slot (1-based): slots 5, 6, 7 ... of the
    /// root bus on `pc`; root ports rp1, rp2, rp3 on `q35`, where a device
    /// always sits at device 0 (QEMU would otherwise put a second device
    /// on an occupied port at device 1, which no root port has).
    pub fn pci_slot(&self, n: u8) -> Result<PciSlot> {
        match self.name {
            "pc" if (1..=20).contains(&n) => Ok(PciSlot { bus: "pci.0".into(), addr: format!("{:#x}", 4 + n) }),
            "q35" if (1..=3).contains(&n) => Ok(PciSlot { bus: format!("rp{n}"), addr: "0x0".into() }),
            _ => bail!("profile {} has no hot-pluggable PCI slot {n}", self.name),
        }
    }
}

/// Names of every profile, in the order the matrix runs them.
pub const NAMES: &[&str] = &["pc", "q35"];

impl Profile {
    pub fn get(name: &str) -> Result<Profile> {
        match name {
            "pc" => Ok(Profile {
                name: "pc",
                machine: "pc",
                // `hd0` is the block node of `disk_image` (see LaunchSpec).
                args: vec![
                    "-device".into(),
                    "ide-hd,drive=hd0,bus=ide.0,unit=0,id=hd0".into(),
                    "-device".into(),
                    "ide-cd,bus=ide.1,unit=0,id=cd0".into(),
                ],
                summary: "i440fx + PIIX3/PIIX4; PCI hot-plug through ACPI (0xae00); IDE disk + CD",
                ide: vec![
                    IdeDrive { id: "hd0", devpath: "root/pci0/00:01.1/ide0/0.0", cdrom: false },
                    IdeDrive { id: "cd0", devpath: "root/pci0/00:01.1/ide1/1.0", cdrom: true },
                ],
                disk_image: Some(images::DISK.file),
            }),
            "q35" => Ok(Profile {
                name: "q35",
                machine: "q35",
                // Native PCIe hot-plug on three root ports: the guest drives the
                // slots through their own registers, so it needs nothing from
                // the harness (ACPI mode would need the bus↔bsel mapping).
                args: [
                    "-global",
                    "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
                    "-device",
                    "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,addr=0x10",
                    "-device",
                    "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,slot=2,addr=0x11",
                    "-device",
                    "pcie-root-port,id=rp3,bus=pcie.0,chassis=3,slot=3,addr=0x12",
                ]
                .map(String::from)
                .to_vec(),
                summary: "ICH9 + 3 pcie-root-ports (rp1-rp3); native PCIe hot-plug",
                ide: Vec::new(),
                disk_image: None,
            }),
            other => bail!("unknown machine profile {other:?}; known profiles: {}", NAMES.join(", ")),
        }
    }

    pub fn all() -> Vec<Profile> {
        NAMES.iter().map(|n| Profile::get(n).expect("NAMES lists known profiles")).collect()
    }
}
