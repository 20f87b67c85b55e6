//! Shared helpers for the end-to-end tests: every test boots the real guest
//! under real QEMU. Tests return `anyhow::Result` so a failure prints the
//! whole error chain: what was waited for, the guest's BUG lines, the
//! console tail and where the artifacts are.
#![allow(dead_code)]

use anyhow::Result;
use harness::{Vm, VmConfig};

/// Assert a snapshot with insta, one file per profile (`@pc`, `@q35`).
#[macro_export]
macro_rules! assert_profile_snapshot {
    ($profile:expr, $name:expr, $value:expr) => {{
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_suffix($profile);
        settings.set_prepend_module_to_snapshot(false);
        // Relative to this file: every test shares harness/tests/snapshots.
        settings.set_snapshot_path("../snapshots");
        settings.bind(|| insta::assert_snapshot!($name, $value));
    }};
}

/// Boot `profile` with artifacts named after the test.
pub async fn boot(profile: &str, test: &str) -> Result<Vm> {
    harness::testing::boot(profile, test).await
}

/// Boot for a test that kills or breaks the guest on purpose: no artifact
/// directory (its errors still carry the console tail and QEMU's stderr),
/// so passing runs leave nothing behind.
pub async fn boot_to_break(profile: &str, test: &str) -> Result<Vm> {
    let mut config = harness::testing::config(profile, test)?;
    config.quiet = true;
    Vm::boot(config).await
}

/// One `#[tokio::test]` per profile for each scenario, named after it: the
/// scenario `pci-held-read-eject` on `pc` is the test
/// `pci_held_read_eject::pc` (`_` in a name stands for `-`), so
/// `cargo test pci_held_read_eject` and `cargo xtask matrix --scenario
/// pci-held-read-eject` run the same thing. A name that is not in
/// `harness::scenario::all()` fails its test.
#[macro_export]
macro_rules! scenario_tests {
    ($($scenario:ident on [$($profile:ident),+ $(,)?]),+ $(,)?) => {$(
        mod $scenario {
            $(
                #[tokio::test]
                async fn $profile() -> anyhow::Result<()> {
                    let name = |ident: &str| ident.replace('_', "-");
                    $crate::common::scenario(&name(stringify!($profile)), &name(stringify!($scenario))).await
                }
            )+
        }
    )+};
}

/// Run a scenario from `harness::scenario` on a fresh guest, assert the
/// snapshots it returns against the committed goldens (one insta file per
/// profile: `<name>@pc.snap`), and require a clean power-off.
pub async fn scenario(profile: &str, name: &str) -> Result<()> {
    let scenario = harness::scenario::get(name)?;
    let mut config = VmConfig::new(profile, &format!("{name}-{profile}"))?;
    config.append = scenario.append.to_string();
    let mut vm = Vm::boot(config).await?;
    let goldens = (scenario.run)(&mut vm).await?;
    for (golden, text) in goldens.0 {
        assert_profile_snapshot!(profile, golden, text);
    }
    vm.shutdown().await
}
