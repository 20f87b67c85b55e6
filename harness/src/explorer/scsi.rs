//! SCSI in the explorer, on the profile's cold-plugged HBA `scsi0` (whose
//! own disk `sd0` keeps target 0 LUN 0): disks (`scsi-hd` on `null-co`
//! nodes from 1 MiB to past 2 TiB) and CD drives (`scsi-cd`, empty or with
//! a medium) hot-plugged at free target/LUN addresses, LUN 1 or 2 on a
//! target without LUN 0 included, one or several at once; removed one or
//! several at once; a read held across a LUN's surprise removal; a
//! `devref` held across re-adding the same address (`* hotplug busy`);
//! CD media changes and ejects.
//!
//! Operations (`scsi <op>` in a plan), a LUN written `kind,id,target:lun,what`
//! (`hd,s1,1:0,2048`: a disk of 2048 sectors; `cd,s2,2:1,alpha`: a CD with
//! medium alpha, or `empty`):
//!
//! ```text
//! add <lun>                 adds <lun> <lun>...        del <id>    dels <id> <id>...
//! held-del <id>             devref-readd <id> <lun at the same address>
//! change <cd id> alpha|beta eject <cd id>
//! ```
//!
//! The oracle: the guest's SCSI view against QEMU's
//! ([`crate::bus::scsi::scsi_matches_qemu`], usb-storage sticks' disks
//! included), and the explorer's model against QEMU's SCSI devices on the
//! HBA (address, disk or CD, size, medium).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;

use super::rng::Rng;
use super::surprise::{add_cd_node, add_null_node, del_node, held_read_across_removal, node_name};
use super::{BusExplorer, BusFuture, join_all};
use crate::bus::scsi::{locate, qemu_scsi_devices, scsi_matches_qemu};
use crate::bus::usb::{qemu_usb_devices, root_hubs, storage_adapters};
use crate::driverfs::Snapshot;
use crate::hotplug::{Plug, UnplugOrder};
use crate::profile::Profile;
use crate::vm::Vm;

/// The HBA the profiles bring (the `scsi-disk` capability).
const HBA: &str = "scsi0";
/// Targets `0..TARGETS` and LUNs `0..LUNS` are drawn from.
const TARGETS: u32 = 4;
const LUNS: u32 = 3;
/// Most LUNs hot-plugged at once.
const MAX_LUNS: usize = 6;
/// Disk sizes in sectors: 1 MiB, odd, 5 MiB, 1 GiB, and past 2 TiB (READ
/// CAPACITY(16)).
const DISK_SECTORS: [u64; 5] = [2048, 4097, 10240, 1 << 21, (1 << 32) + 4096];

/// The CD media, by the name plans use.
pub const MEDIA: [(&str, images::CdRecipe); 2] = [("alpha", images::CD_ALPHA), ("beta", images::CD_BETA)];

fn medium(name: &str) -> Option<(&'static str, images::CdRecipe)> {
    MEDIA.iter().copied().find(|(n, _)| *n == name)
}

/// What a hot-plugged LUN is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A `scsi-hd` of this many sectors.
    Disk(u64),
    /// A `scsi-cd` with this medium in (`None`: empty).
    Cd(Option<&'static str>),
}

/// A hot-plugged LUN, as the model has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lun {
    /// QEMU's id.
    pub id: String,
    /// `scsi-id`.
    pub target: u32,
    /// `lun`.
    pub lun: u32,
    /// Disk or CD.
    pub kind: Kind,
}

impl Lun {
    /// `hd,<id>,<target>:<lun>,<sectors>` or `cd,<id>,<target>:<lun>,<medium|empty>`.
    pub fn parse(spec: &str) -> Option<Lun> {
        let mut parts = spec.split(',');
        let (kind, id, address, what) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return None;
        }
        let (target, lun) = address.split_once(':')?;
        let (target, lun) = (target.parse().ok()?, lun.parse().ok()?);
        let kind = match kind {
            "hd" => Kind::Disk(what.parse().ok().filter(|s| *s > 0)?),
            "cd" if what == "empty" => Kind::Cd(None),
            "cd" => Kind::Cd(Some(medium(what)?.0)),
            _ => return None,
        };
        Some(Lun { id: id.to_string(), target, lun, kind })
    }

    /// The text [`Lun::parse`] reads.
    pub fn render(&self) -> String {
        let (kind, what) = match &self.kind {
            Kind::Disk(sectors) => ("hd", sectors.to_string()),
            Kind::Cd(m) => ("cd", m.unwrap_or("empty").to_string()),
        };
        format!("{kind},{},{}:{},{what}", self.id, self.target, self.lun)
    }

    /// The block node made for it, if any: every disk's, and the first
    /// medium of a CD plugged with one.
    fn node(&self) -> Option<String> {
        match self.kind {
            Kind::Disk(_) | Kind::Cd(Some(_)) => Some(node_name(&self.id)),
            Kind::Cd(None) => None,
        }
    }

    /// Its node made, then the `device_add` for it.
    async fn make_node(&self, vm: &Vm) -> Result<Plug> {
        let mut plug = Plug::new(if matches!(self.kind, Kind::Disk(_)) { "scsi-hd" } else { "scsi-cd" }, &self.id)
            .bus(&format!("{HBA}.0"))
            .prop("scsi-id", self.target)
            .prop("lun", self.lun);
        let node = node_name(&self.id);
        match self.kind {
            Kind::Disk(sectors) => add_null_node(vm, &node, sectors).await?,
            Kind::Cd(Some(name)) => {
                let (_, recipe) = medium(name).context("a known medium")?;
                add_cd_node(vm, &node, &crate::paths::image(recipe.file)).await?
            }
            Kind::Cd(None) => return Ok(plug),
        }
        plug = plug.prop("drive", node);
        Ok(plug)
    }

    /// The size QEMU must report (`query-block`), in bytes.
    fn bytes(&self) -> Option<u64> {
        match self.kind {
            Kind::Disk(sectors) => Some(sectors * 512),
            Kind::Cd(m) => m.and_then(medium).map(|(_, r)| r.sectors() * 512),
        }
    }
}

/// Explores SCSI hot-plug on the profile's HBA.
pub struct ScsiExplorer {
    /// Addresses and ids the profile's own devices on the HBA hold.
    fixed: Vec<(u32, u32)>,
    fixed_ids: Vec<String>,
    /// Hot-plugged LUNs by id.
    luns: BTreeMap<String, Lun>,
    /// Every LUN as it was plugged, by id: a removal's `run` (after
    /// `accept` dropped it from the model) still knows its node.
    plugged_as: BTreeMap<String, Lun>,
    next: usize,
}

impl ScsiExplorer {
    /// `None` when the profile has no `virtio-scsi-pci` with id `scsi0`.
    pub fn new(profile: &Profile) -> Option<ScsiExplorer> {
        profile.devices.iter().find(|d| d.driver == "virtio-scsi-pci" && d.id.as_deref() == Some(HBA))?;
        let prop = |d: &crate::profile::Device, key: &str| {
            d.props.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
        };
        let on_hba: Vec<&crate::profile::Device> = profile
            .devices
            .iter()
            .filter(|d| d.driver.starts_with("scsi-") && prop(d, "bus") == format!("{HBA}.0"))
            .collect();
        let fixed =
            on_hba.iter().map(|d| (prop(d, "scsi-id").parse().unwrap_or(0), prop(d, "lun").parse().unwrap_or(0)));
        Some(ScsiExplorer {
            fixed: fixed.collect(),
            fixed_ids: on_hba.iter().filter_map(|d| d.id.clone()).collect(),
            luns: BTreeMap::new(),
            plugged_as: BTreeMap::new(),
            next: 0,
        })
    }

    fn free_addresses(&self) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        for target in 0..TARGETS {
            for lun in 0..LUNS {
                if self.is_free((target, lun)) {
                    out.push((target, lun));
                }
            }
        }
        out
    }

    fn is_free(&self, address: (u32, u32)) -> bool {
        address.0 < TARGETS
            && address.1 < LUNS
            && !self.fixed.contains(&address)
            && !self.luns.values().any(|l| (l.target, l.lun) == address)
    }

    fn fresh_id(&mut self) -> String {
        self.next += 1;
        format!("s{}", self.next)
    }

    /// A new LUN at `address`: a disk of a drawn size, or a CD, empty or with a medium.
    fn draw_lun(&mut self, rng: &mut Rng, address: (u32, u32)) -> Lun {
        let kind = if rng.chance(60) {
            Kind::Disk(*rng.pick(&DISK_SECTORS).expect("non-empty"))
        } else {
            *rng.pick(&[Kind::Cd(None), Kind::Cd(Some("alpha")), Kind::Cd(Some("beta"))]).expect("non-empty")
        };
        Lun { id: self.fresh_id(), target: address.0, lun: address.1, kind }
    }

    fn usable_id(&self, id: &str) -> bool {
        !self.luns.contains_key(id) && !self.fixed_ids.iter().any(|f| f == id)
    }

    fn insert(&mut self, lun: Lun) {
        self.plugged_as.insert(lun.id.clone(), lun.clone());
        self.luns.insert(lun.id.clone(), lun);
    }
}

impl BusExplorer for ScsiExplorer {
    fn name(&self) -> &'static str {
        "scsi"
    }

    fn generate(&mut self, rng: &mut Rng) -> Option<String> {
        let free = self.free_addresses();
        let ids: Vec<String> = self.luns.keys().cloned().collect();
        let cds: Vec<String> =
            self.luns.values().filter(|l| matches!(l.kind, Kind::Cd(_))).map(|l| l.id.clone()).collect();
        let loaded: Vec<String> =
            self.luns.values().filter(|l| matches!(l.kind, Kind::Cd(Some(_)))).map(|l| l.id.clone()).collect();
        let room = MAX_LUNS.saturating_sub(ids.len()).min(free.len());
        let weights = [
            30 * u64::from(room >= 1),
            10 * u64::from(room >= 2),
            20 * u64::from(!ids.is_empty()),
            8 * u64::from(ids.len() >= 2),
            8 * u64::from(!ids.is_empty()),
            8 * u64::from(!ids.is_empty()),
            12 * u64::from(!cds.is_empty()),
            6 * u64::from(!loaded.is_empty()),
        ];
        let op = match rng.weighted(&weights)? {
            0 => {
                let address = *rng.pick(&free)?;
                format!("add {}", self.draw_lun(rng, address).render())
            }
            1 => {
                let mut free = free;
                let specs: Vec<String> = (0..rng.range(2, room.min(3)))
                    .map(|_| {
                        let address = free.remove(rng.below(free.len()));
                        self.draw_lun(rng, address).render()
                    })
                    .collect();
                format!("adds {}", specs.join(" "))
            }
            2 => format!("del {}", rng.pick(&ids)?),
            3 => {
                let mut ids = ids;
                let first = ids.remove(rng.below(ids.len()));
                format!("dels {first} {}", rng.pick(&ids)?)
            }
            4 => format!("held-del {}", rng.pick(&ids)?),
            5 => {
                let old = self.luns[rng.pick(&ids)?].clone();
                let new = self.draw_lun(rng, (old.target, old.lun));
                format!("devref-readd {} {}", old.id, new.render())
            }
            6 => format!("change {} {}", rng.pick(&cds)?, rng.pick(&MEDIA)?.0),
            _ => format!("eject {}", rng.pick(&loaded)?),
        };
        Some(op)
    }

    fn accept(&mut self, op: &str) -> bool {
        let words: Vec<&str> = op.split_whitespace().collect();
        match words.as_slice() {
            ["add", spec] => match Lun::parse(spec) {
                Some(lun) if self.usable_id(&lun.id) && self.is_free((lun.target, lun.lun)) => {
                    self.insert(lun);
                    true
                }
                _ => false,
            },
            ["adds", specs @ ..] if specs.len() >= 2 => {
                let Some(luns) = specs.iter().map(|s| Lun::parse(s)).collect::<Option<Vec<Lun>>>() else {
                    return false;
                };
                let distinct = |f: &dyn Fn(&Lun) -> String| {
                    let mut keys: Vec<String> = luns.iter().map(f).collect();
                    keys.sort();
                    keys.dedup();
                    keys.len() == luns.len()
                };
                if !distinct(&|l| l.id.clone())
                    || !distinct(&|l| format!("{}:{}", l.target, l.lun))
                    || !luns.iter().all(|l| self.usable_id(&l.id) && self.is_free((l.target, l.lun)))
                {
                    return false;
                }
                for lun in luns {
                    self.insert(lun);
                }
                true
            }
            ["del" | "held-del", id] => self.luns.remove(*id).is_some(),
            ["dels", ids @ ..] if ids.len() >= 2 => {
                let mut sorted = ids.to_vec();
                sorted.sort();
                sorted.dedup();
                if sorted.len() != ids.len() || !ids.iter().all(|id| self.luns.contains_key(*id)) {
                    return false;
                }
                for id in ids {
                    self.luns.remove(*id);
                }
                true
            }
            ["devref-readd", old, spec] => {
                let (Some(current), Some(new)) = (self.luns.get(*old), Lun::parse(spec)) else { return false };
                if (current.target, current.lun) != (new.target, new.lun) || new.id == *old || !self.usable_id(&new.id)
                {
                    return false;
                }
                self.luns.remove(*old);
                self.insert(new);
                true
            }
            ["change", id, name] => match (self.luns.get_mut(*id), medium(name)) {
                (Some(Lun { kind: Kind::Cd(m), .. }), Some((name, _))) => {
                    *m = Some(name);
                    true
                }
                _ => false,
            },
            ["eject", id] => match self.luns.get_mut(*id) {
                Some(Lun { kind: Kind::Cd(m @ Some(_)), .. }) => {
                    *m = None;
                    true
                }
                _ => false,
            },
            _ => false,
        }
    }

    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a> {
        Box::pin(async move {
            let words: Vec<&str> = op.split_whitespace().collect();
            match words.as_slice() {
                ["add", spec] => plug_all(vm, &[Lun::parse(spec).context("accepted")?]).await?,
                ["adds", specs @ ..] => {
                    let luns = specs.iter().map(|s| Lun::parse(s)).collect::<Option<Vec<Lun>>>().context("accepted")?;
                    plug_all(vm, &luns).await?
                }
                ["del", id] => self.unplug_all(vm, &[id]).await?,
                ["dels", ids @ ..] => self.unplug_all(vm, ids).await?,
                ["held-del", id] => {
                    let lun = self.plugged_as.get(*id).context("accepted")?;
                    let devpath = locate(vm, id).await?.devpath;
                    let attr = if matches!(lun.kind, Kind::Disk(_)) { "capacity" } else { "model" };
                    held_read_across_removal(vm, id, &devpath, attr).await?;
                    self.drop_node(vm, id).await?;
                }
                ["devref-readd", old, spec] => {
                    let new = Lun::parse(spec).context("accepted")?;
                    self.devref_across_readd(vm, old, &new).await?
                }
                ["change", id, name] => {
                    let (_, recipe) = medium(name).context("accepted")?;
                    let devpath = locate(vm, id).await?.devpath;
                    let ucursor = vm.control.uevent_cursor();
                    let filename = crate::paths::image(recipe.file).display().to_string();
                    vm.qmp
                        .execute_raw(
                            "blockdev-change-medium",
                            json!({"id": id, "filename": filename, "format": "raw", "read-only-mode": "read-only"}),
                        )
                        .await
                        .with_context(|| format!("blockdev-change-medium {id} {name}"))?;
                    wait_medium(vm, ucursor, &devpath, Some(recipe.sectors())).await?
                }
                ["eject", id] => {
                    let devpath = locate(vm, id).await?.devpath;
                    let ucursor = vm.control.uevent_cursor();
                    vm.qmp
                        .execute_raw("eject", json!({"id": id, "force": true}))
                        .await
                        .with_context(|| format!("eject {id}"))?;
                    wait_medium(vm, ucursor, &devpath, None).await?
                }
                _ => bail!("not a scsi operation: {op}"),
            }
            vm.settle().await
        })
    }

    fn check<'a>(&'a self, vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a> {
        Box::pin(async move {
            let qemu = qemu_scsi_devices(vm).await?;
            let pci = vm.query_pci().await?;
            let sticks = storage_adapters(&qemu_usb_devices(vm).await?, &root_hubs(vm, snapshot).await?);
            scsi_matches_qemu(snapshot, &qemu, &pci, &sticks)?;
            // The model against QEMU: exactly the LUNs the operations left,
            // where they were put, with the size and medium they were given.
            let mut problems = Vec::new();
            for lun in self.luns.values() {
                let Some(d) = qemu.iter().find(|d| d.id == lun.id) else {
                    problems.push(format!("{} should be plugged but QEMU has no such SCSI device", lun.render()));
                    continue;
                };
                let place = (d.address.hba.as_str(), d.address.target, d.address.lun);
                if place != (HBA, lun.target, lun.lun) || d.cdrom != matches!(lun.kind, Kind::Cd(_)) {
                    problems.push(format!("{}: QEMU has it at {place:?}, cdrom {}", lun.render(), d.cdrom));
                }
                if d.bytes != lun.bytes() {
                    problems.push(format!(
                        "{}: QEMU's medium is {:?} bytes, the model's {:?}",
                        lun.render(),
                        d.bytes,
                        lun.bytes()
                    ));
                }
            }
            for d in qemu.iter().filter(|d| d.address.hba == HBA) {
                if !self.luns.contains_key(&d.id) && !self.fixed_ids.contains(&d.id) {
                    problems.push(format!(
                        "QEMU still has SCSI device {} (target {} LUN {})",
                        d.id, d.address.target, d.address.lun
                    ));
                }
            }
            ensure!(problems.is_empty(), "the SCSI model disagrees with QEMU:\n  {}", problems.join("\n  "));
            Ok(())
        })
    }

    fn teardown(&self) -> Vec<String> {
        self.luns.keys().map(|id| format!("del {id}")).collect()
    }
}

/// Make their nodes, then plug them all at once; each waits for the
/// guest's `add` of its LUN.
async fn plug_all(vm: &Vm, luns: &[Lun]) -> Result<()> {
    let mut plugs = Vec::new();
    for lun in luns {
        plugs.push(lun.make_node(vm).await?);
    }
    let adds: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::hotplug::Plugged>> + Send + '_>>> =
        plugs.iter().map(|p| Box::pin(vm.plug(p)) as _).collect();
    for r in join_all(adds).await {
        r?;
    }
    Ok(())
}

impl ScsiExplorer {
    /// Unplug them all at once (QEMU removes each on its own), then drop
    /// their nodes.
    async fn unplug_all(&self, vm: &Vm, ids: &[&str]) -> Result<()> {
        let dels: Vec<
            std::pin::Pin<Box<dyn std::future::Future<Output = Result<crate::hotplug::Unplugged>> + Send + '_>>,
        > = ids.iter().map(|id| Box::pin(vm.unplug(id)) as _).collect();
        for r in join_all(dels).await {
            let unplugged = r?;
            ensure!(unplugged.order == UnplugOrder::NoEject, "{unplugged:?}");
        }
        for id in ids {
            self.drop_node(vm, id).await?;
        }
        Ok(())
    }

    /// Drop the node made for the LUN `id` was plugged as (it is gone).
    async fn drop_node(&self, vm: &Vm, id: &str) -> Result<()> {
        match self.plugged_as.get(id).and_then(Lun::node) {
            Some(node) => del_node(vm, &node).await,
            None => Ok(()),
        }
    }

    /// A `devref` kept on LUN `old` across its unplug and a new LUN at the
    /// same address: the guest holds the new one back (`* hotplug busy
    /// H:0:t:l`, no `add`) until the reference is put.
    async fn devref_across_readd(&self, vm: &Vm, old: &str, new: &Lun) -> Result<()> {
        let devpath = locate(vm, old).await?.devpath;
        vm.call(&format!("devref get {devpath}")).await?;
        vm.unplug(old).await?;
        self.drop_node(vm, old).await?;
        let plug = new.make_node(vm).await?;
        let (ucursor, ncursor) = (vm.control.uevent_cursor(), vm.control.notice_cursor());
        vm.device_add(&plug).await.with_context(|| format!("device_add {}", new.render()))?;
        let busy = format!("hotplug busy {}", devpath.rsplit('/').next().unwrap_or_default());
        vm.wait_notice(ncursor, &busy, |n| n == busy).await?;
        ensure!(
            !vm.control.uevents_since(ucursor).iter().any(|u| u.action == "add" && u.devpath == devpath),
            "{} registered at {devpath} before the old LUN's release",
            new.id
        );
        vm.call(&format!("devref put {devpath}")).await?;
        vm.wait_uevent(ucursor, &format!("add {devpath}"), |u| u.action == "add" && u.devpath == devpath).await?;
        Ok(())
    }
}

/// After a media change or an eject (started after uevent position
/// `from`): the guest's `change` of the LUN, then it shows the new medium
/// (`disc/capacity`), or none (`media_present` 0). It may show "no medium"
/// first.
async fn wait_medium(vm: &Vm, from: usize, devpath: &str, sectors: Option<u64>) -> Result<()> {
    vm.wait_uevent(from, &format!("change {devpath}"), |u| u.action == "change" && u.devpath == devpath).await?;
    let (path, want) = match sectors {
        Some(s) => (format!("{devpath}/disc/capacity"), s.to_string()),
        None => (format!("{devpath}/media_present"), "0".to_string()),
    };
    let deadline = Instant::now() + vm.config.timeouts.event;
    loop {
        vm.settle().await?;
        let got = vm.read_attr(&path).await.ok();
        if got.as_deref() == Some(want.as_str()) {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "{path} is {got:?}, not {want:?}, {:?} after the change",
            vm.config.timeouts.event
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explorer(profile: &str) -> ScsiExplorer {
        ScsiExplorer::new(&Profile::get(profile).unwrap()).expect("every profile has scsi0")
    }

    #[test]
    fn luns_round_trip_through_their_text() {
        for spec in ["hd,s1,1:0,2048", "cd,s2,2:1,alpha", "cd,s3,3:2,empty", "hd,s4,0:1,4294971392"] {
            assert_eq!(Lun::parse(spec).unwrap().render(), spec);
        }
        for bad in ["hd,s1,1:0", "hd,s1,1,2048", "xx,s1,1:0,1", "cd,s1,1:0,gamma", "hd,s1,1:0,0", "hd,s-1,1:0,1"] {
            assert!(Lun::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn the_profiles_disk_keeps_its_address_and_luns_need_free_ones() {
        let mut scsi = explorer("pc");
        assert!(!scsi.accept("add hd,s1,0:0,2048"), "sd0 is at 0:0");
        assert!(!scsi.accept("add hd,sd0,1:0,2048"), "the profile's id");
        assert!(scsi.accept("add hd,s1,2:1,2048"), "LUN 1 on a target without LUN 0");
        assert!(!scsi.accept("add cd,s2,2:1,empty"), "taken");
        assert!(!scsi.accept("add cd,s1,3:0,empty"), "id in use");
        assert!(!scsi.accept("add hd,s2,9:0,2048"), "target out of range");
        assert!(!scsi.accept("adds cd,s2,3:0,empty cd,s3,3:0,alpha"), "one address twice");
        assert!(scsi.accept("adds cd,s2,3:0,empty cd,s3,3:1,alpha"));
        assert!(!scsi.accept("eject s2"), "nothing in s2");
        assert!(scsi.accept("change s2 beta") && scsi.accept("eject s2") && scsi.accept("eject s3"));
        assert!(!scsi.accept("change s1 alpha"), "a disk has no media");
        assert!(!scsi.accept("devref-readd s1 hd,s4,1:0,2048"), "another address");
        assert!(scsi.accept("devref-readd s1 hd,s4,2:1,10240"));
        assert!(!scsi.accept("del s1"), "s1 was replaced");
        assert!(!scsi.accept("dels s4 s4"));
        assert!(scsi.accept("dels s4 s2") && scsi.accept("held-del s3"));
        assert!(scsi.teardown().is_empty());
    }

    #[test]
    fn generated_operations_are_valid_and_cover_every_kind() {
        let mut scsi = explorer("q35");
        let mut rng = Rng::new(5);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..2000 {
            let op = scsi.generate(&mut rng).expect("always something to do");
            assert!(scsi.accept(&op), "{op}");
            seen.insert(op.split(' ').next().unwrap().to_string());
            assert!(scsi.luns.len() <= MAX_LUNS);
        }
        let all = ["add", "adds", "del", "dels", "held-del", "devref-readd", "change", "eject"];
        assert_eq!(seen, all.iter().map(|s| s.to_string()).collect());
        for op in scsi.teardown() {
            assert!(scsi.accept(&op), "{op}");
        }
        assert!(scsi.luns.is_empty());
    }
}
