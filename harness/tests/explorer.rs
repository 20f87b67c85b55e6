//! The explorer in CI: a few fixed seeds, short runs, every profile, both
//! firmwares. A failure prints the shrunk plan, a rerun command and a test
//! to paste (see `cargo xtask explore --help`). The long soak is
//! `cargo xtask explore --steps 10000` (README, "Exploring").

mod common;

use anyhow::{Result, bail};
use harness::explorer;
use harness::qemu::Firmware;

/// Seeds and firmwares CI runs: each profile gets two topologies.
const RUNS: [(u64, Firmware); 2] = [(1, Firmware::Qboot), (2, Firmware::SeaBios)];
const STEPS: usize = 12;

/// Every bus the explorer has on `profile` gets a step in CI's runs.
fn check_every_bus_is_exercised(profile: &str, plans: &[explorer::Plan]) -> Result<()> {
    let machine = harness::profile::Profile::get(profile)?;
    for bus in explorer::explorers(&machine, &plans[0]) {
        let prefix = format!("{} ", bus.name());
        if !plans.iter().any(|p| p.steps.iter().any(|s| s.starts_with(&prefix))) {
            bail!("CI's explore runs on {profile} never step the {} bus: pick other seeds or more steps", bus.name());
        }
    }
    Ok(())
}

async fn explore_profile(profile: &str) -> Result<()> {
    let mut failures = Vec::new();
    let plans = RUNS
        .iter()
        .map(|(seed, firmware)| explorer::generate(*seed, profile, *firmware, STEPS))
        .collect::<Result<Vec<_>>>()?;
    check_every_bus_is_exercised(profile, &plans)?;
    for ((seed, firmware), plan) in RUNS.into_iter().zip(plans) {
        let outcome = explorer::execute(&plan, None, false).await;
        if let Some((_, error)) = outcome.failure {
            failures.push(format!("seed {seed} {}: {error}\n{}", firmware.name(), plan.render()));
        }
    }
    if !failures.is_empty() {
        bail!(
            "explore failed (rerun with `cargo xtask explore --seed N --profile {profile}` to shrink):\n{}",
            failures.join("\n")
        );
    }
    Ok(())
}

#[tokio::test]
async fn explore_pc() -> Result<()> {
    explore_profile("pc").await
}

#[tokio::test]
async fn explore_q35() -> Result<()> {
    explore_profile("q35").await
}

#[tokio::test]
async fn explore_q35_acpi() -> Result<()> {
    explore_profile("q35-acpi").await
}

/// A plan replayed from text, as the explorer prints it for a failure.
#[tokio::test]
async fn replayed_plan() -> Result<()> {
    explorer::replay(
        r"
profile pc
firmware seabios
device pci-bridge,id=c1,chassis_nr=11,addr=0x9
device edu,id=c2,bus=c1,addr=0x2
step pci add edu h1 c1 0x1
step testbus add t1
step pci wave pci-testdev:h2@pci.0/0x5 e1000:h3@c1/0x3
step pci held-del h1
step media change cd0 alpha
step testbus del t1
",
    )
    .await
}

/// Found by the explorer (seed 1 on pc): a disk re-added at 3:0 while a
/// `devref` held the old one waited forever, because target 3 still had
/// LUN 1 and the guest waited for the live target's release too.
#[tokio::test]
async fn explored_scsi_readd_beside_a_live_lun() -> Result<()> {
    explorer::replay(
        r"
profile pc
firmware qboot
step scsi adds hd,s1,3:0,10240 hd,s2,3:1,2048
step scsi devref-readd s1 hd,s3,3:0,4097
",
    )
    .await
}
