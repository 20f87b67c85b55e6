//! `cargo xtask bench`: latency medians, printed as a table and written as
//! JSON under `target/bench`. Speed goals are checked here, never by timed
//! assertions in tests.
//!
//! - boot: QEMU spawn → the guest's `hello` reply, for each profile with
//!   each firmware (qboot and SeaBIOS);
//! - hotplug: `device_add` → the guest's `add` uevent, `device_del` →
//!   DEVICE_DELETED and → the guest's `remove`, and plug+unplug cycles per
//!   second, on one booted guest per profile;
//! - usb: `device_add usb-kbd` → the guest's `add` of the device and of its
//!   interface, `device_del` → its `remove`, cycles per second;
//! - media: a CD medium change through QMP → the guest's `change` uevent
//!   (profiles with an IDE CD);
//! - scsi: `device_add scsi-hd` → the guest's `add` of the LUN, `device_del`
//!   → its `remove` (QEMU does not wait for the guest), plug+unplug cycles
//!   per second (profiles with the `scsi-disk` capability).
//!
//! VMs run one at a time so they do not compete for the two cores.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::hotplug::Plug;
use crate::qemu::Firmware;
use crate::vm::{Vm, VmConfig};

/// One benchmark result (a row of the table and of `bench.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub metric: String,
    /// The machine profile.
    pub profile: String,
    /// The firmware.
    pub firmware: String,
    /// How many samples.
    pub runs: usize,
    /// `ms`, or `cycles/s` for rates.
    pub unit: &'static str,
    /// Smallest sample.
    pub min: f64,
    /// Median sample.
    pub median: f64,
    /// Largest sample.
    pub max: f64,
    /// The goal, where the project set one: an upper bound for `ms`, a
    /// lower bound for rates.
    pub goal: Option<f64>,
}

fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 }
}

impl Measurement {
    fn from_values(metric: &str, profile: &str, firmware: Firmware, unit: &'static str, mut values: Vec<f64>) -> Self {
        values.sort_by(f64::total_cmp);
        Measurement {
            metric: metric.to_string(),
            profile: profile.to_string(),
            firmware: firmware.name().to_string(),
            runs: values.len(),
            unit,
            min: values[0],
            median: median(&values),
            max: values[values.len() - 1],
            goal: None,
        }
    }

    /// Latencies in milliseconds.
    pub fn latency(metric: &str, profile: &str, firmware: Firmware, samples: &[Duration], goal: Option<f64>) -> Self {
        let ms = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
        Measurement { goal, ..Self::from_values(metric, profile, firmware, "ms", ms) }
    }

    /// A rate from the duration of each cycle.
    pub fn rate(metric: &str, profile: &str, firmware: Firmware, cycles: &[Duration]) -> Self {
        let per_second = cycles.iter().map(|d| 1.0 / d.as_secs_f64().max(1e-9)).collect();
        Self::from_values(metric, profile, firmware, "cycles/s", per_second)
    }

    /// Does the median meet the goal? `None` without a goal.
    pub fn meets_goal(&self) -> Option<bool> {
        let goal = self.goal?;
        Some(if self.unit == "ms" { self.median <= goal } else { self.median >= goal })
    }
}

/// What `cargo xtask bench` runs.
pub struct Options {
    /// Samples per metric.
    pub runs: usize,
    /// Profiles to measure.
    pub profiles: Vec<String>,
    /// Firmwares to measure boot with.
    pub firmwares: Vec<Firmware>,
    /// Which groups to run: `boot`, `hotplug`, `usb`, `media`, `scsi` (all when empty).
    pub only: Vec<String>,
}

/// Boot latency goal on `pc` under TCG.
pub const BOOT_GOAL_PC_MS: f64 = 60.0;

/// Boot latency: QEMU spawn to the guest's `hello`.
pub async fn boot_latency(profile: &str, firmware: Firmware, runs: usize) -> Result<Measurement> {
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let mut config = VmConfig::new(profile, &format!("bench-boot-{profile}-{}", firmware.name()))?;
        config.firmware = firmware;
        config.quiet = true;
        let vm = Vm::boot(config).await.with_context(|| format!("boot {i} of {profile} with {}", firmware.name()))?;
        samples.push(vm.hello_at - vm.started);
        vm.shutdown().await?;
    }
    let goal = (profile == "pc").then_some(BOOT_GOAL_PC_MS);
    Ok(Measurement::latency("boot: spawn -> hello", profile, firmware, &samples, goal))
}

/// `device_add` return → the guest's `add` uevent.
pub const PLUG_GOAL_MS: f64 = 10.0;
/// `device_del` return → DEVICE_DELETED, and → the guest's `remove`.
/// QEMU's own floor is about 50 ms under TCG (an RCU grace period).
pub const UNPLUG_GOAL_MS: f64 = 70.0;

/// Plug and unplug `edu` in the first hot-pluggable slot, `runs` times.
pub async fn hotplug_latency(profile: &str, runs: usize) -> Result<Vec<Measurement>> {
    let firmware = Firmware::default();
    let mut config = VmConfig::new(profile, &format!("bench-hotplug-{profile}"))?;
    config.quiet = true;
    let vm = Vm::boot(config).await?;
    let slot = vm.config.profile.pci_slot(1)?;
    let (mut added, mut deleted, mut removed, mut cycles) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let start = std::time::Instant::now();
        let id = format!("bench{i}");
        let plugged = vm.plug(&Plug::new("edu", &id).at(&slot)).await?;
        let unplugged = vm.unplug(&id).await?;
        cycles.push(start.elapsed());
        added.push(plugged.add_latency);
        deleted.push(unplugged.deleted_after);
        removed.push(unplugged.removed_after);
    }
    vm.shutdown().await?;
    Ok(vec![
        Measurement::latency("pci: device_add -> add uevent", profile, firmware, &added, Some(PLUG_GOAL_MS)),
        Measurement::latency("pci: device_del -> DEVICE_DELETED", profile, firmware, &deleted, Some(UNPLUG_GOAL_MS)),
        Measurement::latency("pci: device_del -> remove uevent", profile, firmware, &removed, Some(UNPLUG_GOAL_MS)),
        Measurement::rate("pci: plug+unplug cycles", profile, firmware, &cycles),
    ])
}

/// `device_add usb-kbd` → the guest's `add` of the device and of its
/// interface (Linux took 464 ms here: root-hub polling and debounce).
pub const USB_PLUG_GOAL_MS: f64 = 50.0;
/// `device_del` of a USB device → the guest's `remove`.
pub const USB_UNPLUG_GOAL_MS: f64 = 20.0;

/// Plug and unplug a `usb-kbd` on root port 1 of the profile's UHCI
/// controller, `runs` times. Profiles without one give no rows.
pub async fn usb_latency(profile: &str, runs: usize) -> Result<Vec<Measurement>> {
    let firmware = Firmware::default();
    let mut config = VmConfig::new(profile, &format!("bench-usb-{profile}"))?;
    config.quiet = true;
    let vm = Vm::boot(config).await?;
    if vm.config.profile.lacks(&["usb-uhci"]).is_some() {
        vm.shutdown().await?;
        return Ok(Vec::new());
    }
    let (mut added, mut interface, mut removed, mut cycles) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let start = std::time::Instant::now();
        let id = format!("kbd{i}");
        let plugged = vm.usb_plug(&Plug::new("usb-kbd", &id).bus("uhci.0").prop("port", "1")).await?;
        let unplugged = vm.unplug(&id).await?;
        cycles.push(start.elapsed());
        added.push(plugged.add_latency);
        interface.push(plugged.interface_latency);
        removed.push(unplugged.removed_after);
    }
    // A stick: enumeration, then the SCSI host's scan over Bulk-Only
    // Transport (INQUIRY, capacity, the partition table) until the disk's add.
    let mut disk = Vec::new();
    for i in 0..runs {
        let id = format!("stick{i}");
        let cursor = vm.control.uevent_cursor();
        let start = std::time::Instant::now();
        let plugged =
            vm.usb_plug(&Plug::new("usb-storage", &id).bus("uhci.0").prop("port", "1").prop("drive", "usb0")).await?;
        let below = format!("{}/", plugged.devpath);
        vm.wait_uevent(cursor, "the stick's SCSI disk add", |u| {
            u.action == "add" && u.devpath.starts_with(&below) && u.devpath.ends_with(":0:0:0")
        })
        .await?;
        disk.push(start.elapsed());
        vm.unplug(&id).await?;
        vm.settle().await?;
    }
    vm.shutdown().await?;
    Ok(vec![
        Measurement::latency("usb: device_add kbd -> add", profile, firmware, &added, Some(USB_PLUG_GOAL_MS)),
        Measurement::latency(
            "usb: device_add kbd -> interface add",
            profile,
            firmware,
            &interface,
            Some(USB_PLUG_GOAL_MS),
        ),
        Measurement::latency("usb: device_del -> remove", profile, firmware, &removed, Some(USB_UNPLUG_GOAL_MS)),
        Measurement::rate("usb: plug+unplug cycles", profile, firmware, &cycles),
        Measurement::latency("usb: device_add usb-storage -> disk add", profile, firmware, &disk, None),
    ])
}

/// `blockdev-change-medium` issued → the guest's `change` uevent for the new
/// medium (tray open and close, sense sequence, capacity and volume read).
pub async fn media_latency(profile: &str, runs: usize) -> Result<Vec<Measurement>> {
    let mut config = VmConfig::new(profile, &format!("bench-media-{profile}"))?;
    config.quiet = true;
    let vm = Vm::boot(config).await?;
    let Some(drive) = vm.config.profile.ide.iter().find(|d| d.cdrom).map(|d| d.id.clone()) else {
        vm.shutdown().await?;
        return Ok(Vec::new());
    };
    let mut samples = Vec::new();
    for i in 0..runs {
        let recipe = if i % 2 == 0 { &images::CD_ALPHA } else { &images::CD_BETA };
        let start = std::time::Instant::now();
        vm.change_media(&drive, &crate::paths::image(recipe.file)).await?;
        samples.push(start.elapsed());
    }
    vm.shutdown().await?;
    Ok(vec![Measurement::latency("ide: change medium -> change uevent", profile, Firmware::default(), &samples, None)])
}

/// `device_add scsi-hd` return → the guest's `add` of the LUN.
pub const SCSI_PLUG_GOAL_MS: f64 = 5.0;
/// `device_del` of a `scsi-hd` return → the guest's `remove` of the LUN.
pub const SCSI_UNPLUG_GOAL_MS: f64 = 10.0;

/// Plug and unplug a `scsi-hd` (a `null-co` node) at target 1 of the
/// profile's HBA, `runs` times. QEMU unplugs it without asking the guest.
pub async fn scsi_latency(profile: &str, runs: usize) -> Result<Vec<Measurement>> {
    let firmware = Firmware::default();
    let mut config = VmConfig::new(profile, &format!("bench-scsi-{profile}"))?;
    config.quiet = true;
    let vm = Vm::boot(config).await?;
    if vm.config.profile.lacks(&["scsi-disk"]).is_some() {
        vm.shutdown().await?;
        return Ok(Vec::new());
    }
    vm.qmp
        .execute_raw(
            "blockdev-add",
            serde_json::json!({"driver": "null-co", "node-name": "bench", "size": 1 << 20, "read-zeroes": true}),
        )
        .await
        .context("blockdev-add null-co")?;
    let (mut added, mut removed, mut cycles) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..runs {
        let start = std::time::Instant::now();
        let id = format!("bench{i}");
        let disk = Plug::new("scsi-hd", &id).bus("scsi0.0").prop("drive", "bench").prop("scsi-id", 1).prop("lun", 0);
        let plugged = vm.plug(&disk).await?;
        let unplugged = vm.unplug(&id).await?;
        cycles.push(start.elapsed());
        added.push(plugged.add_latency);
        removed.push(unplugged.removed_after);
    }
    vm.shutdown().await?;
    Ok(vec![
        Measurement::latency("scsi: device_add hd -> add uevent", profile, firmware, &added, Some(SCSI_PLUG_GOAL_MS)),
        Measurement::latency(
            "scsi: device_del hd -> remove uevent",
            profile,
            firmware,
            &removed,
            Some(SCSI_UNPLUG_GOAL_MS),
        ),
        Measurement::rate("scsi: plug+unplug cycles", profile, firmware, &cycles),
    ])
}

/// Run the selected benchmarks, print the table, write `bench.json` into `out_dir`.
pub async fn run(options: &Options, out_dir: &Path) -> Result<Vec<Measurement>> {
    let mut results = Vec::new();
    let wants = |group: &str| options.only.is_empty() || options.only.iter().any(|g| g == group);
    for profile in &options.profiles {
        if wants("boot") {
            for firmware in &options.firmwares {
                let m = boot_latency(profile, *firmware, options.runs).await?;
                eprintln!("bench: {} {} {}: median {:.1} ms", m.metric, profile, firmware.name(), m.median);
                results.push(m);
            }
        }
        if wants("hotplug") {
            let ms = hotplug_latency(profile, options.runs.max(10)).await?;
            eprintln!("bench: hot-plug on {profile} done");
            results.extend(ms);
        }
        if wants("usb") {
            results.extend(usb_latency(profile, options.runs.max(10)).await?);
        }
        if wants("scsi") {
            results.extend(scsi_latency(profile, options.runs.max(10)).await?);
        }
        if wants("media") {
            results.extend(media_latency(profile, options.runs.max(10)).await?);
        }
    }
    print_table(&results);
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("\nwrote {}", path.display());
    Ok(results)
}

/// Print the results as a table.
pub fn print_table(results: &[Measurement]) {
    println!(
        "{:<36} {:<7} {:<8} {:>4} {:>9} {:>9} {:>9} {:<9} goal",
        "metric", "profile", "firmware", "runs", "min", "median", "max", "unit"
    );
    for m in results {
        let bound = if m.unit == "ms" { "<=" } else { ">=" };
        let goal = match (m.goal, m.meets_goal()) {
            (Some(g), Some(true)) => format!("{bound}{g:.0} ok"),
            (Some(g), _) => format!("{bound}{g:.0} MISSED"),
            (None, _) => String::new(),
        };
        println!(
            "{:<36} {:<7} {:<8} {:>4} {:>9.1} {:>9.1} {:>9.1} {:<9} {}",
            m.metric, m.profile, m.firmware, m.runs, m.min, m.median, m.max, m.unit, goal
        );
    }
    // Which firmware boots faster, per profile: the default should be it.
    let boot: Vec<&Measurement> = results.iter().filter(|m| m.metric.starts_with("boot")).collect();
    let profiles: std::collections::BTreeSet<&str> = boot.iter().map(|m| m.profile.as_str()).collect();
    for profile in profiles {
        let candidates = boot.iter().filter(|m| m.profile == profile);
        if let Some(fastest) = candidates.min_by(|a, b| a.median.total_cmp(&b.median)) {
            let note = if fastest.firmware == Firmware::default().name() { "the default" } else { "NOT the default" };
            println!("fastest firmware on {profile}: {} ({note})", fastest.firmware);
        }
    }
}
