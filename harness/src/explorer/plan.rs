//! A run's plan: the machine (profile, firmware), the cold-plugged
//! devices, and the operations, as text that can be saved, edited, shrunk
//! and replayed. One line each:
//!
//! ```text
//! profile q35
//! firmware qboot
//! append fault=scsi-lun-not-drained
//! device pcie-pci-bridge,id=c1,bus=rp1,addr=0x0
//! step pci add edu h3 c1 0x2
//! ```
//!
//! `append` (optional) is added to the guest's command line, as
//! `cargo xtask run --append` does: `fault=<name>` boots a guest with a
//! planted bug (`guest/kernel/src/fault.rs`), to see the explorer find it.

use anyhow::{Context, Result, bail};

use crate::qemu::Firmware;

/// A cold-plugged device: the `-device` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdDevice {
    /// The `-device` argument: `driver,key=value,...`.
    pub arg: String,
}

impl ColdDevice {
    /// A device from its driver and properties, in order.
    pub fn new(driver: &str, props: &[(&str, String)]) -> ColdDevice {
        let mut arg = driver.to_string();
        for (k, v) in props {
            arg.push_str(&format!(",{k}={v}"));
        }
        ColdDevice { arg }
    }

    /// The QEMU driver name.
    pub fn driver(&self) -> &str {
        self.arg.split(',').next().unwrap_or_default()
    }

    /// A property's value.
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.arg.split(',').skip(1).find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }

    /// The `id` property.
    pub fn id(&self) -> Option<&str> {
        self.prop("id")
    }

    /// The bus it sits on (`None`: the machine's root bus).
    pub fn bus(&self) -> Option<&str> {
        self.prop("bus")
    }

    /// Its function number, from `addr=0xS.F` (`addr=0xS`: 0).
    pub fn function(&self) -> Option<u8> {
        let addr = self.prop("addr")?;
        match addr.split_once('.') {
            Some((_, f)) => u8::from_str_radix(f.trim_start_matches("0x"), 16).ok(),
            None => Some(0),
        }
    }

    /// Its slot number on that bus, from `addr=0xS` or `addr=0xS.F`.
    pub fn slot(&self) -> Option<u8> {
        let addr = self.prop("addr")?;
        let slot = addr.split('.').next()?.trim_start_matches("0x");
        u8::from_str_radix(slot, 16).ok()
    }
}

/// One exploration run: profile, firmware, extra cold-plugged devices and the steps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The machine profile.
    pub profile: String,
    /// The firmware booted.
    pub firmware: Firmware,
    /// Extra guest command line (`fault=<name>`, `scsi.event_buffers=0`);
    /// empty: none.
    pub append: String,
    /// Devices cold-plugged on top of the profile's.
    pub devices: Vec<ColdDevice>,
    /// `<bus> <operation...>`, e.g. `pci add edu h3 rp1 0x0`.
    pub steps: Vec<String>,
}

impl Plan {
    /// The plan as text (`profile`, `firmware`, `append`, `device` and
    /// `step` lines), which [`Plan::parse`] reads back.
    pub fn render(&self) -> String {
        let mut out = format!("profile {}\nfirmware {}\n", self.profile, self.firmware.name());
        if !self.append.is_empty() {
            out.push_str(&format!("append {}\n", self.append));
        }
        for d in &self.devices {
            out.push_str(&format!("device {}\n", d.arg));
        }
        for s in &self.steps {
            out.push_str(&format!("step {s}\n"));
        }
        out
    }

    /// Reads a plan written by [`Plan::render`].
    pub fn parse(text: &str) -> Result<Plan> {
        let (mut profile, mut firmware, mut append) = (None, Firmware::default(), String::new());
        let (mut devices, mut steps) = (Vec::new(), Vec::new());
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, rest) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "profile" => profile = Some(rest.to_string()),
                "firmware" => firmware = Firmware::parse(rest).with_context(|| format!("line {}", n + 1))?,
                "append" => append = rest.to_string(),
                "device" => devices.push(ColdDevice { arg: rest.to_string() }),
                "step" => steps.push(rest.to_string()),
                other => {
                    bail!("line {}: unknown plan keyword {other:?} (profile, firmware, append, device, step)", n + 1)
                }
            }
        }
        let profile = profile.context("the plan names no profile (a `profile <name>` line)")?;
        crate::profile::Profile::get(&profile)?;
        Ok(Plan { profile, firmware, append, devices, steps })
    }

    /// The QEMU arguments for the cold-plugged devices.
    pub fn qemu_args(&self) -> Vec<String> {
        self.devices.iter().flat_map(|d| ["-device".to_string(), d.arg.clone()]).collect()
    }

    /// This plan without device `i` and everything plugged into it.
    pub fn without_device(&self, i: usize) -> Plan {
        let dropped = &self.devices[i];
        let mut gone: Vec<String> = dropped.id().map(str::to_string).into_iter().collect();
        // A multifunction slot whose function 0 goes loses its other
        // functions (QEMU refuses a slot without function 0).
        let same_slot =
            |d: &ColdDevice| dropped.function() == Some(0) && d.bus() == dropped.bus() && d.slot() == dropped.slot();
        let mut devices: Vec<ColdDevice> =
            self.devices.iter().enumerate().filter(|(j, d)| *j != i && !same_slot(d)).map(|(_, d)| d.clone()).collect();
        loop {
            let before = devices.len();
            devices.retain(|d| match d.bus() {
                Some(bus) if gone.iter().any(|g| g == bus) => {
                    gone.extend(d.id().map(str::to_string));
                    false
                }
                _ => true,
            });
            if devices.len() == before {
                break;
            }
        }
        Plan { devices, ..self.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip_and_lose_dependents() {
        let text = "profile q35\nfirmware seabios\ndevice pcie-pci-bridge,id=c1,bus=rp1,addr=0x0\n\
                    device edu,id=c2,bus=c1,addr=0x2\ndevice edu,id=c3,bus=rp2,addr=0x0\nstep pci del c3\n";
        let plan = Plan::parse(text).unwrap();
        assert_eq!(plan.render(), text);
        assert_eq!(plan.devices[1].slot(), Some(2));
        let smaller = plan.without_device(0);
        assert_eq!(smaller.devices.len(), 1, "the edu behind the bridge goes with it");
        let multi = Plan::parse(
            "profile pc\ndevice pci-testdev,id=c1,addr=0xe.0,multifunction=on\n\
             device virtio-net-pci,id=c2,addr=0xe.1\ndevice edu,id=c3,addr=0xd\ndevice edu,id=c4,bus=x,addr=0xe.1\n",
        )
        .unwrap();
        let ids = |p: &Plan| p.devices.iter().filter_map(|d| d.id().map(str::to_string)).collect::<Vec<_>>();
        assert_eq!(ids(&multi.without_device(0)), ["c3", "c4"], "function 0 takes its slot's other functions");
        assert_eq!(ids(&multi.without_device(1)), ["c1", "c3", "c4"], "another function goes alone");
        assert!(Plan::parse("firmware qboot\n").is_err());
        let faulty = "profile pc\nfirmware qboot\nappend fault=scsi-lun-not-drained\nstep scsi del s1\n";
        let plan = Plan::parse(faulty).unwrap();
        assert_eq!(plan.append, "fault=scsi-lun-not-drained");
        assert_eq!(plan.render(), faulty);
        assert!(Plan::parse("profile pc\nfirmwear qboot\n").unwrap_err().to_string().contains("append"));
        assert!(Plan::parse("profile nope\n").is_err());
    }
}
