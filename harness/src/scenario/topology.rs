//! Topologies beyond the profiles' own: each scenario boots the profile
//! again with more cold-plugged hardware, under both firmwares (qboot and
//! SeaBIOS leave different bus numbers and windows behind, and the guest
//! must not care), and checks the snapshot against `query-pci` after every
//! step. These are the regression scenarios for the bugs found by trying
//! command lines a little different from the profiles.

use anyhow::{Context, Result, ensure};

use super::Goldens;
use crate::driverfs::Snapshot;
use crate::hotplug::Plug;
use crate::qemu::Firmware;
use crate::vm::Vm;

const FIRMWARES: [Firmware; 2] = [Firmware::Qboot, Firmware::SeaBios];

/// Boot the profile of `vm` again, with `extra` QEMU arguments and the
/// given firmware.
pub async fn boot_with(vm: &Vm, firmware: Firmware, extra: &[String]) -> Result<Vm> {
    let mut config = vm.config.clone();
    config.name = format!("{}-{}", config.name, firmware.name());
    config.firmware = firmware;
    config.extra_args.extend(extra.iter().cloned());
    Vm::boot(config).await.with_context(|| format!("booting {} with {}", firmware.name(), extra.join(" ")))
}

/// `-device` arguments.
fn args(devices: &[String]) -> Vec<String> {
    devices.iter().flat_map(|d| ["-device".to_string(), d.clone()]).collect()
}

/// Run `body` on the topology under each firmware; the snapshots it
/// returns must be the same under both (byte for byte).
async fn under_both_firmwares<F>(vm: &Vm, extra: &[String], body: F) -> Result<String>
where
    F: for<'a> Fn(&'a mut Vm) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<String>> + Send + 'a>>,
{
    let mut seen: Option<(Firmware, String)> = None;
    for firmware in FIRMWARES {
        let mut topo = boot_with(vm, firmware, extra).await?;
        let text = body(&mut topo).await.with_context(|| format!("under {}", firmware.name()))?;
        topo.shutdown().await?;
        if let Some((first, before)) = &seen {
            ensure!(
                before == &text,
                "the guest's tree differs between {} and {}:\n--- {}\n{before}\n--- {}\n{text}",
                first.name(),
                firmware.name(),
                first.name(),
                firmware.name()
            );
        } else {
            seen = Some((firmware, text));
        }
    }
    Ok(seen.map(|(_, t)| t).unwrap_or_default())
}

/// Bug: qboot numbers sibling bridges in reverse slot order, and a guest
/// renumbering them in slot order without closing the others first let a
/// stale number route a config cycle to the wrong bridge: the edu behind
/// rp3 also showed under rp1 (a phantom), and an e1000 hot-added on rp1
/// was never seen. On `pc`, two cold-plugged pci-bridges did the same.
pub async fn stale_bus_numbers(vm: &mut Vm) -> Result<Goldens> {
    let (first, third) = (vm.config.profile.pci_slot(1)?, vm.config.profile.pci_slot(3)?);
    // PCIe: an edu behind the third root port. PCI: two bridges, an edu
    // behind the second.
    let extra = if first.express {
        args(&[format!("edu,id=edu3,bus={},addr=0x0", third.bus)])
    } else {
        args(&[
            format!("pci-bridge,id=br1,chassis_nr=1,bus={},addr=0x8", first.bus),
            format!("pci-bridge,id=br2,chassis_nr=2,bus={},addr=0x9", first.bus),
            "edu,id=edu3,bus=br2,addr=0x1".to_string(),
        ])
    };
    let tree = under_both_firmwares(vm, &extra, |topo| {
        Box::pin(async move {
            let boot = topo.checked_snapshot().await.context("after boot")?;
            if topo.config.profile.pci_slot(1)?.express {
                let baseline = topo.stats().await?;
                let slot = topo.config.profile.pci_slot(1)?;
                let nic = topo.plug(&Plug::new("e1000", "nic1").at(&slot)).await?;
                let added = topo.checked_snapshot().await.context("after adding an e1000 on rp1")?;
                ensure!(added.value(&format!("{}/device", nic.devpath)) == Some("0x100e"), "no e1000 on rp1");
                topo.unplug("nic1").await?;
                topo.checked_snapshot().await?;
                topo.stats().await?.check_baseline(&baseline)?;
            }
            Ok(boot.subtree("root/pci0").render())
        })
    })
    .await?;
    let mut goldens = Goldens::new();
    goldens.push("pci_stale_bus_numbers", tree);
    Ok(goldens)
}

/// Bug: every bridge took a fixed 4 KiB of a 16 KiB I/O pool, so a fourth
/// root port left AHCI's and SMBus's I/O BARs unassigned. Windows are now
/// sized by what is behind them (plus hot-plug room) in the I/O range the
/// chipset really forwards.
pub async fn io_space(vm: &mut Vm) -> Result<Goldens> {
    let extra = args(&["pcie-root-port,id=rp4,bus=pcie.0,chassis=4,slot=4,addr=0x13".to_string()]);
    let tree = under_both_firmwares(vm, &extra, |topo| {
        Box::pin(async move {
            let snapshot = topo.checked_snapshot().await?;
            ensure_all_assigned(&snapshot)?;
            // The fourth port takes hot-plugs like the others.
            topo.plug(&Plug::new("pci-testdev", "t4").bus("rp4").prop("addr", "0x0")).await?;
            let added = topo.checked_snapshot().await?;
            ensure_all_assigned(&added)?;
            topo.unplug("t4").await?;
            Ok(snapshot.subtree("root/pci0").render())
        })
    })
    .await?;
    let mut goldens = Goldens::new();
    goldens.push("pci_io_space", tree);
    Ok(goldens)
}

/// Every BAR and bridge window in the tree got an address.
fn ensure_all_assigned(snapshot: &Snapshot) -> Result<()> {
    let unassigned: Vec<String> = snapshot
        .entries()
        .iter()
        .filter_map(|e| match e {
            crate::driverfs::Entry::File { path, value } if path.ends_with("/resource") => {
                let text = String::from_utf8_lossy(&crate::driverfs::unescape(value)).into_owned();
                text.lines()
                    .filter(|l| l.contains("unassigned") || l.ends_with(" none"))
                    .map(|l| format!("{path}: {l}"))
                    .reduce(|a, b| a + "; " + &b)
            }
            _ => None,
        })
        .collect();
    ensure!(unassigned.is_empty(), "resources left without an address:\n  {}", unassigned.join("\n  "));
    Ok(())
}

/// Bug: QEMU gives each cold-plugged bridge its own ACPI hot-plug selector
/// (bsel), and the guest polled only the root bus's, so a device hot-added
/// behind a bridge was never seen. On `pc` behind a pci-bridge (two of
/// them, so bsel order and slot order differ); on `q35` in ACPI mode
/// behind a pcie-pci-bridge on a root port.
pub async fn hotplug_behind_bridge(vm: &mut Vm) -> Result<Goldens> {
    let second = vm.config.profile.pci_slot(2)?;
    let extra = if second.express {
        args(&[format!("pcie-pci-bridge,id=br1,bus={},addr=0x0", second.bus)])
    } else {
        args(&[
            format!("pci-bridge,id=br2,chassis_nr=2,bus={},addr=0x9", second.bus),
            format!("pci-bridge,id=br1,chassis_nr=1,bus={},addr=0x8", second.bus),
        ])
    };
    let tree = under_both_firmwares(vm, &extra, |topo| {
        Box::pin(async move {
            let baseline = topo.stats().await?;
            topo.checked_snapshot().await?;
            let edu = topo.plug(&Plug::new("edu", "edu1").bus("br1").prop("addr", "0x3")).await?;
            let testdev = topo.plug(&Plug::new("pci-testdev", "t1").bus("br1").prop("addr", "0x5")).await?;
            let both = topo.checked_snapshot().await?;
            ensure!(both.value(&format!("{}/vendor", edu.devpath)) == Some("0x1234"), "no edu at {}", edu.devpath);
            ensure!(both.value(&format!("{}/vendor", testdev.devpath)) == Some("0x1b36"));
            let unplugged = topo.unplug("edu1").await?;
            ensure!(unplugged.order == crate::hotplug::UnplugOrder::RemovedBeforeEject, "{unplugged:?}");
            topo.checked_snapshot().await?;
            topo.unplug("t1").await?;
            topo.checked_snapshot().await?;
            topo.stats().await?.check_baseline(&baseline)?;
            Ok(both.subtree("root/pci0").render())
        })
    })
    .await?;
    let mut goldens = Goldens::new();
    goldens.push("pci_hotplug_behind_bridge", tree);
    Ok(goldens)
}
