//! Machine profiles as data: a QEMU machine type, raw arguments, the
//! devices cold-plugged into it, its hot-pluggable PCI slots and the
//! capabilities it provides to scenarios. Snapshots carry the profile name
//! as their insta suffix.
//!
//! Profiles are declared in TOML. The built-in ones (`pc`, `q35`) live in
//! `profiles.toml` at the repository root; a matrix file can add more (see
//! [`crate::matrix::MatrixFile`]). The format:
//!
//! ```toml
//! [profile.pc]
//! machine = "pc"                      # QEMU's -machine
//! summary = "i440fx + PIIX3/PIIX4"    # one line for `run --help`
//! provides = ["pci-hotplug", "ide-disk", "ide-cd"]   # see CAPABILITIES
//! args = []                           # raw QEMU arguments, before the devices
//! disk-image = "disk.img"             # an `images` recipe, as block node hd0
//! block-images = { sd0 = "disk.img" } # more recipes, by block node name
//! pci-slots = [{ bus = "pci.0", addr = 5, count = 20 }]   # express = false
//! no-hotplug-buses = []               # buses where QEMU must refuse device_add
//!
//! [[profile.pc.device]]               # one -device, properties in order
//! driver = "ide-hd"
//! drive = "hd0"
//! bus = "ide.0"
//! unit = 0
//! id = "hd0"
//! guest-path = "root/pci0/00:01.1/ide0/0.0"   # for the harness, not QEMU
//! ```
//!
//! A device's keys other than `driver` and `guest-path` are QEMU properties,
//! rendered `driver,key=value,...` in the order written (booleans as
//! `on`/`off`). Loading checks the shape (unknown keys, duplicate ids,
//! capabilities backed by the data they need);
//! [`Profiles::check_against_qemu`] also asks the QEMU binary whether every
//! device model and property exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

/// What a profile can provide and a scenario can need, with what backs it.
pub const CAPABILITIES: &[(&str, &str)] = &[
    ("pci-hotplug", "at least three hot-pluggable PCI slots in `pci-slots`"),
    ("ide-disk", "an `ide-hd` device with id hd0 and a guest-path, backed by `disk-image`"),
    ("ide-cd", "an `ide-cd` device with id cd0 and a guest-path"),
    ("usb-uhci", "a UHCI controller device (`piix3-usb-uhci`, `ich9-usb-uhci1`, ...) with id uhci"),
    (
        "scsi-disk",
        "a `virtio-scsi-pci` with id scsi0 and a `scsi-hd` with id sd0 on it whose drive is a `block-images` node",
    ),
    ("pcie-hotplug", "hot-pluggable slots on PCIe root ports (`express = true` in `pci-slots`)"),
    (
        "pci-bridge-hotplug",
        "QEMU's ACPI PCI hot-plug, which follows cold-plugged bridges: machine pc, or q35 without \
         `ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off`",
    ),
];

/// Slots the PCI scenarios use at most.
const PCI_SLOTS_NEEDED: usize = 3;

/// A machine profile: a QEMU machine and its cold-plugged devices, declared in `profiles.toml`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Profile {
    /// The profile's name (`pc`, `q35`), also the snapshot suffix.
    pub name: String,
    /// QEMU's `-machine` type.
    pub machine: String,
    /// One line for `--help` and the README table.
    pub summary: String,
    /// Capabilities, from [`CAPABILITIES`].
    pub provides: BTreeSet<String>,
    /// Raw QEMU arguments followed by one `-device` per cold-plugged device.
    pub args: Vec<String>,
    /// The cold-plugged devices, in command-line order.
    pub devices: Vec<Device>,
    /// Hot-pluggable slots, in the order scenarios use them.
    pub pci_slots: Vec<PciSlot>,
    /// Buses on which QEMU must refuse `device_add`.
    pub no_hotplug_buses: Vec<String>,
    /// Cold-plugged IDE drives (devices `ide-hd`/`ide-cd` with a guest path).
    pub ide: Vec<IdeDrive>,
    /// The disk image behind block node `hd0`, from the `images` recipes.
    /// Each VM boots a private copy, so parallel VMs never share a
    /// writable file.
    pub disk_image: Option<String>,
    /// More images from the recipes, by the block node they are attached
    /// as (`sd0` → `disk.img`); each VM boots a private copy of each.
    pub block_images: BTreeMap<String, String>,
    /// The file the profile was declared in, for messages.
    pub origin: String,
}

/// A cold-plugged `-device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// QEMU's device model.
    pub driver: String,
    /// The qdev id, where one was given.
    pub id: Option<String>,
    /// QEMU properties as written, `id` included where it was written.
    pub props: Vec<(String, String)>,
    /// Where the guest shows the device (`root/pci0/...`), if the harness needs it.
    pub guest_path: Option<String>,
}

impl Device {
    /// The `-device` argument: `driver,key=value,...`.
    pub fn arg(&self) -> String {
        let mut arg = self.driver.clone();
        for (key, value) in &self.props {
            // QEMU's option syntax escapes a comma by doubling it.
            arg.push_str(&format!(",{key}={}", value.replace(',', ",,")));
        }
        arg
    }
}

/// An IDE drive on the command line: its QEMU id and the guest's path for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdeDrive {
    /// QEMU's qdev id of the drive.
    pub id: String,
    /// Where the guest shows it.
    pub devpath: String,
    /// A CD drive (removable medium) rather than a disk.
    pub cdrom: bool,
}

/// Where a hot-plugged PCI device goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PciSlot {
    /// QEMU's bus name (`pci.0`, `rp1`).
    pub bus: String,
    /// The slot on that bus (`0x5`).
    pub addr: String,
    /// A PCI Express slot (a root port): bridges plugged here are PCIe-to-PCI.
    pub express: bool,
}

impl Profile {
    /// The built-in profile `name` (from `profiles.toml`).
    pub fn get(name: &str) -> Result<Profile> {
        Profiles::builtin()?.get(name).cloned()
    }

    /// The cold-plugged IDE drive with this QEMU id.
    pub fn ide_drive(&self, id: &str) -> Result<&IdeDrive> {
        self.ide.iter().find(|d| d.id == id).ok_or_else(|| anyhow!("profile {} has no IDE drive {id:?}", self.name))
    }

    /// The `n`th hot-pluggable PCI slot (1-based).
    pub fn pci_slot(&self, n: u8) -> Result<PciSlot> {
        usize::from(n).checked_sub(1).and_then(|i| self.pci_slots.get(i)).cloned().ok_or_else(|| {
            anyhow!("profile {} has no hot-pluggable PCI slot {n} (it has {})", self.name, self.pci_slots.len())
        })
    }

    /// Why this profile cannot run something that needs `needs`, if it cannot.
    pub fn lacks(&self, needs: &[&str]) -> Option<String> {
        let missing: Vec<&str> = needs.iter().copied().filter(|n| !self.provides.contains(*n)).collect();
        if missing.is_empty() {
            return None;
        }
        Some(format!("needs {}, which {} does not provide", missing.join(", "), self.name))
    }
}

/// A set of profiles by name.
#[derive(Clone, Debug, Default)]
pub struct Profiles {
    by_name: BTreeMap<String, Profile>,
}

/// The path of the built-in profiles file.
pub fn builtin_file() -> PathBuf {
    guest_build::workspace_root().join("profiles.toml")
}

/// A profiles file: `[profile.<name>]` tables and nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    #[serde(default)]
    profile: BTreeMap<String, ProfileSpec>,
}

/// One `[profile.<name>]` table as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ProfileSpec {
    machine: String,
    summary: String,
    #[serde(default)]
    provides: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    disk_image: Option<String>,
    #[serde(default)]
    block_images: BTreeMap<String, String>,
    #[serde(default)]
    pci_slots: Vec<SlotSpec>,
    #[serde(default)]
    no_hotplug_buses: Vec<String>,
    #[serde(default)]
    device: Vec<toml::Table>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SlotSpec {
    bus: String,
    addr: u8,
    #[serde(default = "one")]
    count: u8,
    #[serde(default)]
    express: bool,
}

fn one() -> u8 {
    1
}

impl Profiles {
    /// The built-in profiles, read once per process.
    pub fn builtin() -> Result<&'static Profiles> {
        static BUILTIN: OnceLock<std::result::Result<Profiles, String>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| Profiles::load(&builtin_file()).map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// Read a profiles file.
    pub fn load(path: &Path) -> Result<Profiles> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading profiles file {}", path.display()))?;
        Profiles::parse(&text, &path.display().to_string())
    }

    /// Parse a profiles file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Profiles> {
        let file: ProfilesFile = toml::from_str(text).map_err(|e| anyhow!("{origin}: {e}"))?;
        Profiles::from_specs(file.profile, origin)
    }

    /// Build and check profiles from their tables (a profiles file's, or a
    /// matrix file's own `[profile.<name>]` tables).
    pub fn from_specs(specs: BTreeMap<String, ProfileSpec>, origin: &str) -> Result<Profiles> {
        let mut by_name = BTreeMap::new();
        for (name, spec) in specs {
            let profile = build(&name, spec, origin).with_context(|| format!("{origin}: profile {name:?}"))?;
            by_name.insert(name, profile);
        }
        Ok(Profiles { by_name })
    }

    /// Add `other`'s profiles; a name declared twice is an error.
    pub fn merge(&mut self, other: Profiles) -> Result<()> {
        for (name, profile) in other.by_name {
            if let Some(existing) = self.by_name.get(&name) {
                bail!("profile {name:?} is declared twice: in {} and in {}", existing.origin, profile.origin);
            }
            self.by_name.insert(name, profile);
        }
        Ok(())
    }

    /// The profile called `name`; an error lists the known ones.
    pub fn get(&self, name: &str) -> Result<&Profile> {
        self.by_name
            .get(name)
            .ok_or_else(|| anyhow!("unknown machine profile {name:?}; known profiles: {}", self.names().join(", ")))
    }

    /// Profile names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }

    /// Every profile, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.by_name.values()
    }

    /// Ask `qemu` whether every device model and property the profiles use
    /// exists (see [`Profile::check_against_qemu`]).
    pub fn check_against_qemu(&self, qemu: &Path) -> Result<()> {
        self.iter().try_for_each(|p| p.check_against_qemu(qemu))
    }
}

impl Profile {
    /// Ask `qemu` whether every device model and property this profile uses
    /// exists (`-device help`, `-device <model>,help`; cached per binary).
    pub fn check_against_qemu(&self, qemu: &Path) -> Result<()> {
        let context = || format!("{}: profile {:?}", self.origin, self.name);
        let models = crate::qemu_devices::models(qemu)?;
        for device in &self.devices {
            if !models.contains(&device.driver) {
                return Err(anyhow!(
                    "unknown device model {:?}: `{} -device help` does not list it",
                    device.driver,
                    qemu.display()
                ))
                .with_context(context);
            }
            let props = crate::qemu_devices::properties(qemu, &device.driver)?;
            for (key, _) in &device.props {
                // `id` and `bus` belong to every device and are not listed.
                if !["id", "bus"].contains(&key.as_str()) && !props.contains(key) {
                    return Err(anyhow!(
                        "device {:?} has no property {key:?} (`{} -device {},help` lists {})",
                        device.driver,
                        qemu.display(),
                        device.driver,
                        props.iter().cloned().collect::<Vec<_>>().join(", ")
                    ))
                    .with_context(context);
                }
            }
        }
        Ok(())
    }
}

/// Turn a table into a profile, checking everything QEMU is not needed for.
fn build(name: &str, spec: ProfileSpec, origin: &str) -> Result<Profile> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("a profile name is letters, digits, '-' and '_' (it names snapshot files)");
    }
    for capability in &spec.provides {
        if !CAPABILITIES.iter().any(|(known, _)| known == capability) {
            let known: Vec<&str> = CAPABILITIES.iter().map(|(k, _)| *k).collect();
            bail!("unknown capability {capability:?} in `provides`; known capabilities: {}", known.join(", "));
        }
    }
    let mut devices = Vec::new();
    let mut ids = BTreeSet::new();
    for (n, table) in spec.device.into_iter().enumerate() {
        let device = device(table).with_context(|| format!("device {}", n + 1))?;
        if let Some(id) = &device.id
            && !ids.insert(id.clone())
        {
            bail!("duplicate device id {id:?}");
        }
        devices.push(device);
    }
    let mut pci_slots = Vec::new();
    for slot in &spec.pci_slots {
        if slot.count == 0 {
            bail!("pci-slots: count 0 on bus {:?} declares no slot", slot.bus);
        }
        for i in 0..slot.count {
            let addr = slot
                .addr
                .checked_add(i)
                .filter(|a| *a < 32)
                .ok_or_else(|| anyhow!("pci-slots: bus {:?} has devices 0-31 only", slot.bus))?;
            let slot = PciSlot { bus: slot.bus.clone(), addr: format!("{addr:#x}"), express: slot.express };
            if pci_slots.contains(&slot) {
                bail!("pci-slots: slot {} on bus {:?} is listed twice", slot.addr, slot.bus);
            }
            pci_slots.push(slot);
        }
    }
    let ide: Vec<IdeDrive> = devices
        .iter()
        .filter(|d| d.driver == "ide-hd" || d.driver == "ide-cd")
        .filter_map(|d| {
            Some(IdeDrive { id: d.id.clone()?, devpath: d.guest_path.clone()?, cdrom: d.driver == "ide-cd" })
        })
        .collect();
    if let Some(image) = &spec.disk_image
        && *image != images::DISK.file
    {
        bail!("disk-image {image:?} is not an image recipe (known: {})", images::DISK.file);
    }
    for (node, image) in &spec.block_images {
        if *image != images::DISK.file {
            bail!("block-images: {node} = {image:?} is not an image recipe (known: {})", images::DISK.file);
        }
        if node == "hd0" && spec.disk_image.is_some() {
            bail!("block-images: node hd0 is disk-image's");
        }
        if node.is_empty() || !node.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            bail!("block-images: node name {node:?} is letters, digits, '-' and '_'");
        }
    }
    let provides: BTreeSet<String> = spec.provides.into_iter().collect();
    let has_drive = |id: &str, cdrom: bool| ide.iter().any(|d| d.id == id && d.cdrom == cdrom);
    for capability in &provides {
        let backed = match capability.as_str() {
            "pci-hotplug" => pci_slots.len() >= PCI_SLOTS_NEEDED,
            "ide-disk" => has_drive("hd0", false) && spec.disk_image.is_some(),
            "ide-cd" => has_drive("cd0", true),
            "usb-uhci" => devices.iter().any(|d| d.id.as_deref() == Some("uhci") && d.driver.contains("uhci")),
            "scsi-disk" => {
                let hba = devices.iter().any(|d| d.driver == "virtio-scsi-pci" && d.id.as_deref() == Some("scsi0"));
                let disk = devices.iter().any(|d| {
                    d.driver == "scsi-hd"
                        && d.id.as_deref() == Some("sd0")
                        && d.props.iter().any(|(k, v)| k == "drive" && spec.block_images.contains_key(v))
                });
                hba && disk
            }
            "pcie-hotplug" => pci_slots.iter().any(|s| s.express),
            "pci-bridge-hotplug" => {
                spec.machine == "pc"
                    || (spec.machine == "q35"
                        && !spec.args.iter().any(|a| a.contains("acpi-pci-hotplug-with-bridge-support=off")))
            }
            _ => true,
        };
        if !backed {
            let (_, needs) = CAPABILITIES.iter().find(|(k, _)| k == capability).expect("checked above");
            bail!("provides {capability:?}, which needs {needs}");
        }
    }
    let mut args = spec.args;
    for device in &devices {
        args.push("-device".into());
        args.push(device.arg());
    }
    Ok(Profile {
        name: name.to_string(),
        machine: spec.machine,
        summary: spec.summary,
        provides,
        args,
        devices,
        pci_slots,
        no_hotplug_buses: spec.no_hotplug_buses,
        ide,
        disk_image: spec.disk_image,
        block_images: spec.block_images,
        origin: origin.to_string(),
    })
}

/// A `[[profile.<name>.device]]` table.
fn device(table: toml::Table) -> Result<Device> {
    let mut driver = None;
    let mut guest_path = None;
    let mut props = Vec::new();
    for (key, value) in table {
        let text = match &value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => (if *b { "on" } else { "off" }).to_string(),
            other => bail!("{key} = {other}: a device property is a string, an integer or a boolean"),
        };
        match key.as_str() {
            "driver" => driver = Some(text),
            "guest-path" => guest_path = Some(text),
            _ => props.push((key, text)),
        }
    }
    let driver = driver.ok_or_else(|| anyhow!("a device needs `driver` (a QEMU device model)"))?;
    let id = props.iter().find(|(k, _)| k == "id").map(|(_, v)| v.clone());
    Ok(Device { driver, id, props, guest_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    /// The built-in profiles give exactly the command lines they had when
    /// they were Rust code.
    #[test]
    fn builtin_profiles_keep_their_command_lines() {
        let pc = Profile::get("pc").unwrap();
        assert_eq!(pc.machine, "pc");
        assert_eq!(
            pc.args,
            strings(&[
                "-device",
                "ide-hd,drive=hd0,bus=ide.0,unit=0,id=hd0",
                "-device",
                "ide-cd,bus=ide.1,unit=0,id=cd0",
                "-device",
                "piix3-usb-uhci,id=uhci,bus=pci.0,addr=0x1.0x2",
                "-device",
                "virtio-scsi-pci,id=scsi0,bus=pci.0,addr=0x4",
                "-device",
                "scsi-hd,drive=sd0,bus=scsi0.0,scsi-id=0,lun=0,id=sd0",
            ])
        );
        assert_eq!(pc.block_images.get("sd0").map(String::as_str), Some("disk.img"));
        assert_eq!(pc.disk_image.as_deref(), Some("disk.img"));
        assert_eq!(pc.pci_slot(1).unwrap(), PciSlot { bus: "pci.0".into(), addr: "0x5".into(), express: false });
        assert_eq!(pc.pci_slot(20).unwrap().addr, "0x18");
        assert!(pc.pci_slot(21).is_err() && pc.pci_slot(0).is_err());
        assert_eq!(pc.ide_drive("cd0").unwrap().devpath, "root/pci0/00:01.1/ide1/1.0");
        assert!(pc.ide_drive("cd0").unwrap().cdrom && !pc.ide_drive("hd0").unwrap().cdrom);

        let q35 = Profile::get("q35").unwrap();
        assert_eq!(q35.machine, "q35");
        assert_eq!(
            q35.args,
            strings(&[
                "-global",
                "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",
                "-device",
                "pcie-root-port,id=rp1,bus=pcie.0,chassis=1,slot=1,addr=0x10",
                "-device",
                "pcie-root-port,id=rp2,bus=pcie.0,chassis=2,slot=2,addr=0x11",
                "-device",
                "pcie-root-port,id=rp3,bus=pcie.0,chassis=3,slot=3,addr=0x12",
                "-device",
                "ich9-usb-uhci1,id=uhci,bus=pcie.0,addr=0x1d.0x0",
                "-device",
                "virtio-scsi-pci,id=scsi0,bus=pcie.0,addr=0x4",
                "-device",
                "scsi-hd,drive=sd0,bus=scsi0.0,scsi-id=0,lun=0,id=sd0",
            ])
        );
        assert_eq!(q35.pci_slot(3).unwrap(), PciSlot { bus: "rp3".into(), addr: "0x0".into(), express: true });
        assert!(q35.pci_slot(4).is_err());
        assert!(q35.ide.is_empty() && q35.disk_image.is_none());
        assert_eq!(q35.lacks(&["ide-cd"]).unwrap(), "needs ide-cd, which q35 does not provide");
        assert_eq!(pc.lacks(&["ide-cd", "pci-hotplug"]), None);
    }

    fn parse_err(text: &str) -> String {
        format!("{:#}", Profiles::parse(text, "test.toml").expect_err("must be refused"))
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nmachin = \"q35\"\n");
        assert!(e.contains("unknown field `machin`") && e.contains("test.toml"), "{e}");
        let e =
            parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\npci-slots = [{ bus = \"pci.0\", adr = 5 }]\n");
        assert!(e.contains("unknown field `adr`"), "{e}");
        let e = parse_err("[profiles.x]\nmachine = \"pc\"\n");
        assert!(e.contains("unknown field `profiles`"), "{e}");
    }

    #[test]
    fn duplicate_ids_and_names_are_refused() {
        let e = parse_err(
            "[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\n\
             [[profile.x.device]]\ndriver = \"edu\"\nid = \"a\"\n\
             [[profile.x.device]]\ndriver = \"e1000\"\nid = \"a\"\n",
        );
        assert!(e.contains("duplicate device id \"a\"") && e.contains("profile \"x\""), "{e}");
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\n[profile.x]\nmachine = \"q35\"\n");
        assert!(e.contains("duplicate key") || e.contains("defined multiple times") || e.contains("duplicate"), "{e}");
        let mut builtin = Profiles::builtin().unwrap().clone();
        let again = Profiles::parse("[profile.pc]\nmachine = \"pc\"\nsummary = \"mine\"\n", "mine.toml").unwrap();
        let e = format!("{:#}", builtin.merge(again).unwrap_err());
        assert!(e.contains("\"pc\" is declared twice") && e.contains("mine.toml"), "{e}");
        let e = parse_err(
            "[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\npci-slots = [{ bus = \"b\", addr = 5 }, { bus = \"b\", addr = 4, count = 2 }]\n",
        );
        assert!(e.contains("listed twice"), "{e}");
    }

    #[test]
    fn capabilities_must_be_known_and_backed() {
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nprovides = [\"usb\"]\n");
        assert!(e.contains("unknown capability \"usb\"") && e.contains("pci-hotplug"), "{e}");
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nprovides = [\"ide-cd\"]\n");
        assert!(e.contains("provides \"ide-cd\", which needs an `ide-cd` device"), "{e}");
        let e = parse_err(
            "[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nprovides = [\"pci-hotplug\"]\npci-slots = [{ bus = \"pci.0\", addr = 5 }]\n",
        );
        assert!(e.contains("at least three"), "{e}");
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\ndisk-image = \"mine.img\"\n");
        assert!(e.contains("not an image recipe"), "{e}");
        let e = parse_err(
            "[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nprovides = [\"scsi-disk\"]\nblock-images = { sd0 = \"disk.img\" }\n",
        );
        assert!(e.contains("provides \"scsi-disk\", which needs a `virtio-scsi-pci`"), "{e}");
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\nblock-images = { sd0 = \"mine.img\" }\n");
        assert!(e.contains("block-images: sd0 = \"mine.img\" is not an image recipe"), "{e}");
    }

    #[test]
    fn device_properties_render_in_order_with_escapes() {
        let p = Profiles::parse(
            "[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\n\
             [[profile.x.device]]\ndriver = \"virtio-scsi-pci\"\nid = \"scsi0\"\nbus = \"pci.0\"\naddr = \"0x9\"\n\
             iothread = \"a,b\"\nhotplug = false\nguest-path = \"root/pci0/00:09.0\"\n",
            "t",
        )
        .unwrap();
        let x = p.get("x").unwrap();
        assert_eq!(
            x.args,
            strings(&["-device", "virtio-scsi-pci,id=scsi0,bus=pci.0,addr=0x9,iothread=a,,b,hotplug=off"])
        );
        assert_eq!(x.devices[0].guest_path.as_deref(), Some("root/pci0/00:09.0"));
        let e = parse_err("[profile.x]\nmachine = \"pc\"\nsummary = \"s\"\n[[profile.x.device]]\nid = \"a\"\n");
        assert!(e.contains("needs `driver`"), "{e}");
    }
}
