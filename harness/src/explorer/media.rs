//! IDE CD drives in the explorer (`pc`): media inserted, changed and
//! ejected; `query-block` and the guest must agree after every step.

use super::rng::Rng;
use super::{BusExplorer, BusFuture};
use crate::driverfs::Snapshot;
use crate::profile::Profile;
use crate::vm::Vm;

const MEDIA: [(&str, images::CdRecipe); 2] = [("alpha", images::CD_ALPHA), ("beta", images::CD_BETA)];

/// Explores media changes on the profile's IDE CD drives.
pub struct MediaExplorer {
    drives: Vec<String>,
    /// Drives with a medium in.
    loaded: Vec<String>,
}

impl MediaExplorer {
    /// `None` when the profile has no CD drive.
    pub fn new(profile: &Profile) -> Option<MediaExplorer> {
        let drives: Vec<String> = profile.ide.iter().filter(|d| d.cdrom).map(|d| d.id.clone()).collect();
        (!drives.is_empty()).then_some(MediaExplorer { drives, loaded: Vec::new() })
    }
}

impl BusExplorer for MediaExplorer {
    fn name(&self) -> &'static str {
        "media"
    }

    fn generate(&mut self, rng: &mut Rng) -> Option<String> {
        let drive = rng.pick(&self.drives)?.clone();
        let loaded = self.loaded.contains(&drive);
        if loaded && rng.chance(40) {
            Some(format!("eject {drive}"))
        } else {
            Some(format!("change {drive} {}", rng.pick(&MEDIA)?.0))
        }
    }

    fn accept(&mut self, op: &str) -> bool {
        let words: Vec<&str> = op.split_whitespace().collect();
        match words.as_slice() {
            ["change", drive, medium]
                if self.drives.iter().any(|d| d == drive) && MEDIA.iter().any(|m| m.0 == *medium) =>
            {
                if !self.loaded.iter().any(|d| d == drive) {
                    self.loaded.push(drive.to_string());
                }
                true
            }
            ["eject", drive] if self.loaded.iter().any(|d| d == drive) => {
                self.loaded.retain(|d| d != drive);
                true
            }
            _ => false,
        }
    }

    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a> {
        Box::pin(async move {
            let words: Vec<&str> = op.split_whitespace().collect();
            match words.as_slice() {
                ["change", drive, medium] => {
                    let recipe = MEDIA.iter().find(|m| m.0 == *medium).map(|m| m.1).expect("accepted");
                    vm.change_media(drive, &crate::paths::image(recipe.file)).await?;
                }
                ["eject", drive] => vm.eject(drive, false).await?,
                _ => anyhow::bail!("not a media operation: {op}"),
            }
            Ok(())
        })
    }

    fn check<'a>(&'a self, vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a> {
        Box::pin(async move {
            let blocks = vm.query_block().await?;
            crate::checks::ide_matches_qemu(snapshot, &vm.config.profile.ide, &blocks)
        })
    }

    fn teardown(&self) -> Vec<String> {
        self.loaded.iter().map(|d| format!("eject {d}")).collect()
    }
}
