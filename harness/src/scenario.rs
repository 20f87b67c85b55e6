//! Scenarios: what one matrix cell does to a booted guest. Each is a plain
//! async function over a [`Vm`]; the tests in `harness/tests` cover the same
//! ground in more detail.

use std::future::Future;
use std::pin::Pin;

use anyhow::{Result, ensure};

use crate::vm::Vm;

pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

pub struct Scenario {
    pub name: &'static str,
    pub summary: &'static str,
    /// Profiles the scenario applies to.
    pub profiles: &'static [&'static str],
    pub run: for<'a> fn(&'a mut Vm) -> ScenarioFuture<'a>,
}

pub fn all() -> Vec<Scenario> {
    vec![Scenario {
        name: "boot",
        summary: "boot snapshot equals the committed golden and matches query-pci; no BUGs or leaks",
        profiles: &["pc", "q35"],
        run: |vm| Box::pin(boot(vm)),
    }]
}

pub fn get(name: &str) -> Result<Scenario> {
    all().into_iter().find(|s| s.name == name).ok_or_else(|| {
        let names: Vec<&str> = all().iter().map(|s| s.name).collect();
        anyhow::anyhow!("unknown scenario {name:?}; known scenarios: {}", names.join(", "))
    })
}

async fn boot(vm: &mut Vm) -> Result<()> {
    let snapshot = vm.checked_snapshot().await?;
    crate::golden::check("boot", vm.config.profile.name, &snapshot.render())?;
    let stats = vm.stats().await?;
    ensure!(stats.bugs() == 0 && stats.leaked() == 0 && stats.active() == 0, "unclean stats after boot: {stats:?}");
    Ok(())
}
