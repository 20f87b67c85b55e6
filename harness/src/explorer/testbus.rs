//! The software test bus in the explorer: devices added under the bus root
//! or under another test device, removed (with their children).

use std::collections::BTreeMap;

use anyhow::ensure;

use super::rng::Rng;
use super::{BusExplorer, BusFuture};
use crate::driverfs::Snapshot;
use crate::vm::Vm;

/// Explores the test bus: devices added under the root or another test device, removed with their children.
#[derive(Default)]
pub struct TestbusExplorer {
    /// name → parent name.
    devices: BTreeMap<String, Option<String>>,
    next: usize,
}

impl TestbusExplorer {
    /// `name` and everything below it.
    fn subtree(&self, name: &str) -> Vec<String> {
        let mut out = vec![name.to_string()];
        let mut i = 0;
        while i < out.len() {
            let parent = out[i].clone();
            out.extend(self.devices.iter().filter(|(_, p)| p.as_deref() == Some(&parent)).map(|(n, _)| n.clone()));
            i += 1;
        }
        out
    }
}

impl BusExplorer for TestbusExplorer {
    fn name(&self) -> &'static str {
        "testbus"
    }

    fn generate(&mut self, rng: &mut Rng) -> Option<String> {
        let names: Vec<String> = self.devices.keys().cloned().collect();
        let weights = [u64::from(names.len() < 6) * 10, u64::from(!names.is_empty()) * 8];
        match rng.weighted(&weights)? {
            0 => {
                self.next += 1;
                let name = format!("t{}", self.next);
                match rng.chance(40).then(|| rng.pick(&names)).flatten() {
                    Some(parent) => Some(format!("add {name} {parent}")),
                    None => Some(format!("add {name}")),
                }
            }
            _ => Some(format!("del {}", rng.pick(&names)?)),
        }
    }

    fn accept(&mut self, op: &str) -> bool {
        let words: Vec<&str> = op.split_whitespace().collect();
        match words.as_slice() {
            ["add", name, rest @ ..] if !self.devices.contains_key(*name) && rest.len() <= 1 => {
                let parent = rest.first().map(|p| p.to_string());
                if parent.as_ref().is_some_and(|p| !self.devices.contains_key(p)) {
                    return false;
                }
                self.devices.insert(name.to_string(), parent);
                true
            }
            ["del", name] if self.devices.contains_key(*name) => {
                for gone in self.subtree(name) {
                    self.devices.remove(&gone);
                }
                true
            }
            _ => false,
        }
    }

    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a> {
        Box::pin(async move {
            vm.call(&format!("testdev {op}")).await?;
            Ok(())
        })
    }

    fn check<'a>(&'a self, _vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a> {
        Box::pin(async move {
            let shown: Vec<String> = snapshot
                .entries()
                .iter()
                .filter_map(|e| match e {
                    crate::driverfs::Entry::Link { path, .. } => {
                        path.strip_prefix("bus/testbus/devices/").map(str::to_string)
                    }
                    _ => None,
                })
                .collect();
            let want: Vec<String> = self.devices.keys().cloned().collect();
            ensure!(shown == want, "test bus devices: guest {shown:?}, model {want:?}");
            Ok(())
        })
    }

    fn teardown(&self) -> Vec<String> {
        self.devices.iter().filter(|(_, p)| p.is_none()).map(|(n, _)| format!("del {n}")).collect()
    }
}
