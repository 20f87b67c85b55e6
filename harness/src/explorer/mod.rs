//! `cargo xtask explore`: random cold-plug topologies and random operation
//! sequences on them, with the oracle after every step, and shrinking.
//!
//! A run is a [`Plan`]: a profile and firmware, cold-plugged devices, and
//! steps. A seed decides the plan completely (the generator keeps each
//! bus's own model of what is plugged, so it only draws operations that are
//! valid at that point), so `--seed N` reproduces a run exactly. Executing a
//! plan boots the machine, runs each step, and after every step runs every
//! bus's oracle (PCI: the snapshot against `query-pci` and the model
//! against QEMU; IDE: the snapshot against `query-block`; SCSI: the
//! guest's LUNs against QEMU's SCSI devices and the model against QEMU;
//! USB: the guest's tree against QOM and the model against QEMU; test bus:
//! the model). At the end it undoes what is still plugged, requires the stats
//! back at their baseline (refcounts included), and a clean power-off with
//! no BUG.
//!
//! On failure the plan is shrunk (cold-plugged devices dropped, steps
//! dropped in halves, then one by one, for as long as it still fails) and
//! printed as a rerun command and as a test to paste.
//!
//! A bus joins the explorer with a [`BusExplorer`]: its operations (text),
//! its model, and its oracle, listed in [`explorers`].

pub mod media;
pub mod pci;
pub mod plan;
pub mod rng;
pub mod scsi;
pub mod surprise;
pub mod testbus;
pub mod usb;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub use plan::Plan;
use rng::Rng;

use crate::driverfs::Snapshot;
use crate::profile::Profile;
use crate::qemu::Firmware;
use crate::vm::{Vm, VmConfig};

/// A bus explorer's step, run against the VM.
pub type BusFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// One bus's part of the explorer. Operations are text (`<verb> args`), so
/// a plan can be printed, edited and replayed.
pub trait BusExplorer: Send + Sync {
    /// The prefix of this bus's steps (`pci`, `testbus`, `media`, `scsi`, `usb`).
    fn name(&self) -> &'static str;
    /// An operation valid in the current model, or `None` if there is none.
    fn generate(&mut self, rng: &mut Rng) -> Option<String>;
    /// Update the model for `op`; `false` (model unchanged) when `op` is
    /// not valid now, e.g. after shrinking removed the step that made it so.
    fn accept(&mut self, op: &str) -> bool;
    /// Do an accepted operation on the VM, waiting for the guest's and
    /// QEMU's side of it.
    fn run<'a>(&'a self, vm: &'a mut Vm, op: &'a str) -> BusFuture<'a>;
    /// The oracle: what must be true after any step, given the snapshot
    /// taken after it (one per step, shared by every bus).
    fn check<'a>(&'a self, vm: &'a Vm, snapshot: &'a Snapshot) -> BusFuture<'a>;
    /// Operations that bring the bus back to where it was at boot.
    fn teardown(&self) -> Vec<String>;
}

/// Every bus the explorer drives on this machine: the one list a new bus
/// is added to.
pub fn explorers(profile: &Profile, plan: &Plan) -> Vec<Box<dyn BusExplorer>> {
    let mut out: Vec<Box<dyn BusExplorer>> = vec![Box::new(pci::PciExplorer::new(profile, plan))];
    out.push(Box::<testbus::TestbusExplorer>::default());
    if let Some(media) = media::MediaExplorer::new(profile) {
        out.push(Box::new(media));
    }
    if let Some(scsi) = scsi::ScsiExplorer::new(profile) {
        out.push(Box::new(scsi));
    }
    if let Some(usb) = usb::UsbExplorer::new(profile) {
        out.push(Box::new(usb));
    }
    out
}

/// Cold-plugged hardware from every bus that brings some.
fn cold_plug(rng: &mut Rng, profile: &Profile) -> Vec<plan::ColdDevice> {
    pci::cold_plug(rng, profile)
}

/// How often a bus gets the next step: PCI, the bus with the most to get
/// wrong, half of them or more; SCSI and USB, whose steps each plug or
/// unplug, a little more than the test bus and media.
fn bus_weight(name: &str) -> u64 {
    match name {
        "pci" => 10,
        "scsi" | "usb" => 3,
        _ => 2,
    }
}

/// The plan `seed` gives for a profile and firmware.
pub fn generate(seed: u64, profile: &str, firmware: Firmware, steps: usize) -> Result<Plan> {
    let profile = Profile::get(profile)?;
    let mut rng = Rng::derive(seed, &format!("{}/{}", profile.name, firmware.name()));
    let devices = cold_plug(&mut rng, &profile);
    let mut plan =
        Plan { profile: profile.name.to_string(), firmware, append: String::new(), devices, steps: Vec::new() };
    let mut buses = explorers(&profile, &plan);
    while plan.steps.len() < steps {
        let weights: Vec<u64> = buses.iter().map(|b| bus_weight(b.name())).collect();
        let first = rng.weighted(&weights).unwrap_or(0);
        let order: Vec<usize> = (0..buses.len()).map(|k| (first + k) % buses.len()).collect();
        let mut stepped = false;
        for i in order {
            if let Some(op) = buses[i].generate(&mut rng)
                && buses[i].accept(&op)
            {
                plan.steps.push(format!("{} {op}", buses[i].name()));
                stepped = true;
                break;
            }
        }
        if !stepped {
            bail!("no bus has an operation to offer on this topology");
        }
    }
    Ok(plan)
}

/// Where a run's time went: each bus's operations and oracle, and the
/// snapshots the oracles share.
#[derive(Clone, Debug, Default)]
pub struct Timing {
    /// Per bus: the steps run and the time their operations took.
    pub ops: BTreeMap<String, (usize, Duration)>,
    /// Per bus: the time its oracle took, after every step.
    pub checks: BTreeMap<String, Duration>,
    /// The snapshots taken for the oracles.
    pub snapshots: Duration,
}

impl Timing {
    /// `pci 60 steps 20.1s, scsi 15 steps 9.0s; oracles: snapshots 3.2s, pci 1.1s, ...`
    pub fn render(&self) -> String {
        let ops: Vec<String> =
            self.ops.iter().map(|(b, (n, t))| format!("{b} {n} steps {:.1}s", t.as_secs_f64())).collect();
        let checks: Vec<String> = self.checks.iter().map(|(b, t)| format!("{b} {:.1}s", t.as_secs_f64())).collect();
        format!("{}; oracles: snapshots {:.1}s, {}", ops.join(", "), self.snapshots.as_secs_f64(), checks.join(", "))
    }
}

/// How executing a plan went.
#[derive(Debug)]
pub struct Outcome {
    /// How many steps ran.
    pub steps_run: usize,
    /// Where the time went.
    pub timing: Timing,
    /// How long the run took.
    pub elapsed: Duration,
    /// The step that failed (`None`: boot, teardown or power-off) and why.
    pub failure: Option<(Option<usize>, String)>,
    /// What kind of failure it was: the first line of the root cause with
    /// numbers blanked, so shrinking keeps the failure it started from
    /// instead of drifting to another one.
    pub kind: Option<String>,
}

/// The kind of a failure: the first line of its root cause, with every
/// run of digits (ids, addresses, counts) replaced by `#`.
fn failure_kind(error: &anyhow::Error) -> String {
    let line = error.root_cause().to_string().lines().next().unwrap_or_default().to_string();
    let mut out = String::new();
    let mut in_digits = false;
    for c in line.chars() {
        if c.is_ascii_hexdigit() && (c.is_ascii_digit() || in_digits) {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

/// Run a plan on a fresh VM.
pub async fn execute(plan: &Plan, kernel: Option<PathBuf>, quiet: bool) -> Outcome {
    let started = Instant::now();
    let mut timing = Timing::default();
    let result = execute_inner(plan, kernel, quiet, &mut timing).await;
    let kind = result.as_ref().err().map(|(_, e)| failure_kind(e));
    Outcome {
        steps_run: timing.ops.values().map(|(n, _)| n).sum(),
        timing,
        elapsed: started.elapsed(),
        failure: result.err().map(|(step, e)| (step, format!("{e:#}"))),
        kind,
    }
}

async fn execute_inner(
    plan: &Plan,
    kernel: Option<PathBuf>,
    quiet: bool,
    timing: &mut Timing,
) -> std::result::Result<(), (Option<usize>, anyhow::Error)> {
    let at_start = |e: anyhow::Error| (None, e);
    let mut config = VmConfig::new(&plan.profile, &format!("explore-{}-{}", plan.profile, plan.firmware.name()))
        .map_err(at_start)?;
    config.firmware = plan.firmware;
    config.append = plan.append.clone();
    config.extra_args = plan.qemu_args();
    config.kernel = kernel;
    config.quiet = quiet;
    let profile = config.profile.clone();
    let mut vm = Vm::boot(config).await.map_err(at_start)?;
    match run_steps(plan, &profile, &mut vm, timing).await {
        Ok(()) => vm.shutdown().await.map_err(|e| (None, e.context("at the end"))),
        Err(e) => {
            // A failing run ends here on purpose: QEMU is stopped and the
            // artifacts kept, without the warning a forgotten shutdown gets.
            vm.kill();
            Err(e)
        }
    }
}

/// Boot state, every step with every oracle after it, teardown, stats back
/// at their baseline.
async fn run_steps(
    plan: &Plan,
    profile: &Profile,
    vm: &mut Vm,
    timing: &mut Timing,
) -> std::result::Result<(), (Option<usize>, anyhow::Error)> {
    let baseline = vm.stats().await.map_err(|e| (None, e))?;
    let mut buses = explorers(profile, plan);
    check_all(&buses, vm, timing).await.map_err(|e| (None, e.context("after boot")))?;
    for (i, step) in plan.steps.iter().enumerate() {
        let (name, op) = step.split_once(' ').unwrap_or((step, ""));
        let Some(b) = buses.iter().position(|b| b.name() == name) else {
            return Err((Some(i), anyhow::anyhow!("no bus {name:?} on this machine")));
        };
        if !buses[b].accept(op) {
            continue; // not valid here (a shrunk plan): skipped
        }
        let fail = |e: anyhow::Error| (Some(i), e.context(format!("step {i}: {step}")));
        let started = Instant::now();
        buses[b].run(vm, op).await.map_err(fail)?;
        let (count, spent) = timing.ops.entry(name.to_string()).or_default();
        *count += 1;
        *spent += started.elapsed();
        check_all(&buses, vm, timing).await.map_err(fail)?;
        // Each step waits only for what it caused: what came before may go,
        // or a soak of thousands of steps would reach the bounds on what
        // the harness keeps (Limits), which are there for floods.
        vm.forget_events();
    }
    let end = |e: anyhow::Error| (None, e.context("at the end"));
    for bus in buses.iter_mut() {
        for op in bus.teardown() {
            if bus.accept(&op) {
                bus.run(vm, &op).await.map_err(end)?;
            }
        }
    }
    check_all(&buses, vm, timing).await.map_err(end)?;
    vm.settle().await.map_err(end)?;
    vm.stats().await.map_err(end)?.check_baseline(&baseline).map_err(end)?;
    Ok(())
}

/// Every bus's oracle on one snapshot.
async fn check_all(buses: &[Box<dyn BusExplorer>], vm: &mut Vm, timing: &mut Timing) -> Result<()> {
    let started = Instant::now();
    let snapshot = vm.snapshot().await?;
    timing.snapshots += started.elapsed();
    for bus in buses {
        let started = Instant::now();
        bus.check(vm, &snapshot).await?;
        *timing.checks.entry(bus.name().to_string()).or_default() += started.elapsed();
    }
    Ok(())
}

/// Shrink a failing plan: fewer cold-plugged devices, fewer steps, as long
/// as it still fails. Every attempt is a full run on a fresh VM; at most
/// `budget` of them. Returns the smallest failing plan and the runs taken.
pub async fn shrink(
    plan: &Plan,
    failed_at: Option<usize>,
    kind: Option<String>,
    kernel: Option<PathBuf>,
    budget: usize,
) -> (Plan, usize) {
    shrink_with(plan, failed_at, budget, |candidate| {
        let (kernel, kind) = (kernel.clone(), kind.clone());
        async move { execute(&candidate, kernel, true).await.kind == kind }
    })
    .await
}

/// The shrinking strategy, over any test of "does this plan still fail":
/// drop the steps after the failing one, then cold-plugged devices one at a
/// time (with what hangs below them), then steps in halves, quarters, ...
/// down to single steps (delta debugging).
pub async fn shrink_with<F, Fut>(plan: &Plan, failed_at: Option<usize>, budget: usize, mut fails: F) -> (Plan, usize)
where
    F: FnMut(Plan) -> Fut,
    Fut: Future<Output = bool>,
{
    let mut best = plan.clone();
    if let Some(i) = failed_at {
        best.steps.truncate(i + 1);
    }
    let mut tries = 0;
    // Passes over the devices until one drops none: a device that could
    // not go alone may go once another one went.
    loop {
        let (before, mut i) = (best.devices.len(), 0);
        while i < best.devices.len() && tries < budget {
            let candidate = best.without_device(i);
            tries += 1;
            if fails(candidate.clone()).await {
                best = candidate;
            } else {
                i += 1;
            }
        }
        if best.devices.len() == before || tries >= budget {
            break;
        }
    }
    let mut chunk = best.steps.len().div_ceil(2).max(1);
    loop {
        let mut start = 0;
        while start < best.steps.len() && tries < budget {
            let mut candidate = best.clone();
            let end = (start + chunk).min(candidate.steps.len());
            candidate.steps.drain(start..end);
            tries += 1;
            if fails(candidate.clone()).await {
                best = candidate;
            } else {
                start += chunk;
            }
        }
        if chunk == 1 || tries >= budget {
            break;
        }
        chunk = chunk.div_ceil(2);
    }
    (best, tries)
}

/// What `cargo xtask explore` was asked.
pub struct Options {
    /// The seeds to explore, one run per seed, profile and firmware.
    pub seeds: Vec<u64>,
    /// Steps per generated plan.
    pub steps: usize,
    /// The profiles to run on.
    pub profiles: Vec<String>,
    /// The firmwares to boot with.
    pub firmwares: Vec<Firmware>,
    /// A plan file to run instead of generated ones.
    pub replay: Option<PathBuf>,
    /// Shrink a failing plan to a smaller one that fails the same way.
    pub shrink: bool,
    /// Most runs a shrink may take.
    pub shrink_budget: usize,
    /// Where reports and shrunk plans go.
    pub out: PathBuf,
    /// The guest kernel to boot (default: the built one).
    pub kernel: Option<PathBuf>,
    /// Added to every plan's guest command line (`fault=<name>` boots a
    /// guest with a planted bug).
    pub append: String,
}

/// Run every seed on every profile and firmware (or one replayed plan);
/// print a line per run, and for a failure the shrunk plan, a rerun command
/// and a test to paste. Returns whether everything passed.
pub async fn run(options: &Options) -> Result<bool> {
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let mut runs: Vec<(String, Plan)> = Vec::new();
    if let Some(file) = &options.replay {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let mut plan = Plan::parse(&text)?;
        plan.append = join_append(&plan.append, &options.append);
        runs.push((format!("replay {}", file.display()), plan));
    } else {
        for &seed in &options.seeds {
            for profile in &options.profiles {
                for &firmware in &options.firmwares {
                    let mut plan = generate(seed, profile, firmware, options.steps)?;
                    plan.append = options.append.clone();
                    runs.push((format!("seed {seed} {profile} {}", firmware.name()), plan));
                }
            }
        }
    }
    let (mut all_ok, mut total_steps, mut total_time) = (true, 0, Duration::ZERO);
    for (label, plan) in runs {
        let outcome = execute(&plan, options.kernel.clone(), false).await;
        total_steps += outcome.steps_run;
        total_time += outcome.elapsed;
        let rate = outcome.steps_run as f64 / outcome.elapsed.as_secs_f64().max(1e-9);
        let Some((failed_at, error)) = outcome.failure else {
            println!(
                "ok    {label}: {} devices, {} steps in {:.1}s ({rate:.1} steps/s), stats at baseline\n      {}",
                plan.devices.len(),
                outcome.steps_run,
                outcome.elapsed.as_secs_f64(),
                outcome.timing.render()
            );
            continue;
        };
        all_ok = false;
        println!("FAIL  {label}: {error}");
        let file = options.out.join(format!("failure-{}.plan", label.replace([' ', '/'], "-")));
        std::fs::write(&file, plan.render())?;
        println!("      plan: {}", file.display());
        if !options.shrink {
            continue;
        }
        let (small, tries) =
            shrink(&plan, failed_at, outcome.kind.clone(), options.kernel.clone(), options.shrink_budget).await;
        let small_file = file.with_extension("min.plan");
        std::fs::write(&small_file, small.render())?;
        let check = execute(&small, options.kernel.clone(), true).await;
        let failure = check.failure.map(|(_, e)| e);
        println!("{}", shrink_report(tries, &small, failure.as_deref(), &small_file));
    }
    if total_steps > 0 {
        println!(
            "{total_steps} steps in {:.1}s: {:.1} steps/s",
            total_time.as_secs_f64(),
            total_steps as f64 / total_time.as_secs_f64().max(1e-9)
        );
    }
    Ok(all_ok)
}

/// What a shrink found: its size, how the small plan fails (its first
/// line, on a line of its own: it often ends in a colon, "... disagrees
/// with QEMU's:"), the plan, a rerun command and a test to paste.
fn shrink_report(tries: usize, small: &Plan, failure: Option<&str>, file: &std::path::Path) -> String {
    let how = match failure {
        Some(e) => format!("it fails with:\n        {}", e.lines().next().unwrap_or_default()),
        None => "it no longer fails (flaky?)".into(),
    };
    format!(
        "      shrunk in {tries} runs to {} devices and {} steps; {how}\n      shrunk plan:\n{}\n      rerun: cargo xtask explore --replay {}\n      as a test (harness/tests/explorer.rs):\n{}",
        small.devices.len(),
        small.steps.len(),
        indent(&small.render()),
        file.display(),
        indent(&as_test(small))
    )
}

/// Two command lines as one (either may be empty).
fn join_append(a: &str, b: &str) -> String {
    format!("{a} {b}").trim().to_string()
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("        {l}")).collect::<Vec<_>>().join("\n")
}

/// A plan as a test to paste into the suite.
pub fn as_test(plan: &Plan) -> String {
    format!(
        "#[tokio::test]\nasync fn explored_{}_{}() -> anyhow::Result<()> {{\n    harness::explorer::replay(\n        r\"\n{}\"\n    )\n    .await\n}}\n",
        plan.profile.replace('-', "_"),
        plan.firmware.name(),
        plan.render()
    )
}

/// Run a plan given as text; the error says which step failed and why.
pub async fn replay(text: &str) -> Result<()> {
    let plan = Plan::parse(text)?;
    match execute(&plan, None, false).await.failure {
        None => Ok(()),
        Some((_, e)) => bail!("{e}"),
    }
}

/// Await every future (they run concurrently, on this task), results in order.
pub async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + Send + 'a>>>) -> Vec<T> {
    let mut pending: Vec<Option<Pin<Box<dyn Future<Output = T> + Send + 'a>>>> =
        futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(f) = slot
                && let Poll::Ready(v) = f.as_mut().poll(cx)
            {
                *result = Some(v);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    results.into_iter().map(|r| r.expect("every future finished")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_ignore_numbers() {
        let a = anyhow::anyhow!("01:00.0 is in the snapshot but QEMU does not report it").context("step 3");
        let b = anyhow::anyhow!("0a:02.1 is in the snapshot but QEMU does not report it");
        assert_eq!(failure_kind(&a), failure_kind(&b));
        assert_ne!(failure_kind(&a), failure_kind(&anyhow::anyhow!("stats are not back at the baseline")));
    }

    /// A "guest" that fails when a bridge is cold-plugged and two given
    /// steps both ran, in order: shrinking keeps exactly those.
    #[tokio::test]
    async fn shrinking_keeps_only_what_the_failure_needs() {
        let plan = generate(3, "q35", Firmware::Qboot, 40).unwrap();
        let mut plan = plan;
        plan.devices.push(plan::ColdDevice::new("pcie-pci-bridge", &[("id", "zb".into()), ("bus", "rp1".into())]));
        plan.steps.insert(7, "testbus add needle1".into());
        plan.steps.insert(30, "testbus add needle2 needle1".into());
        let fails = |p: Plan| async move {
            let a = p.steps.iter().position(|s| s == "testbus add needle1");
            let b = p.steps.iter().position(|s| s == "testbus add needle2 needle1");
            p.devices.iter().any(|d| d.id() == Some("zb")) && matches!((a, b), (Some(a), Some(b)) if a < b)
        };
        assert!(fails(plan.clone()).await);
        let (small, tries) = shrink_with(&plan, Some(30), 500, fails).await;
        assert_eq!(small.steps, ["testbus add needle1", "testbus add needle2 needle1"]);
        assert_eq!(small.devices.iter().filter_map(|d| d.id()).collect::<Vec<_>>(), ["zb"]);
        assert!(tries < 100, "{tries} runs");
    }

    #[test]
    fn a_seed_gives_the_same_plan_every_time() {
        for profile in ["pc", "q35", "q35-acpi"] {
            let a = generate(42, profile, Firmware::SeaBios, 200).unwrap();
            assert_eq!(a, generate(42, profile, Firmware::SeaBios, 200).unwrap());
            assert_ne!(a, generate(43, profile, Firmware::SeaBios, 200).unwrap());
            assert_eq!(a.steps.len(), 200);
            assert_eq!(Plan::parse(&a.render()).unwrap(), a);
        }
    }

    /// PCI gets about half of the steps; every other bus a fair share.
    #[test]
    fn pci_gets_most_steps_and_every_bus_some() {
        for profile in ["pc", "q35", "q35-acpi"] {
            let plan = generate(9, profile, Firmware::Qboot, 2000).unwrap();
            let machine = Profile::get(profile).unwrap();
            let share =
                |bus: &str| plan.steps.iter().filter(|s| s.starts_with(&format!("{bus} "))).count() as f64 / 2000.0;
            assert!(share("pci") > 0.4, "{profile}: pci {}", share("pci"));
            for bus in explorers(&machine, &plan) {
                let name = bus.name();
                assert!(
                    name == "pci" || (0.05..share("pci")).contains(&share(name)),
                    "{profile}: {name} {}",
                    share(name)
                );
            }
        }
    }

    /// The profiles hold 00:04.0 (their virtio-scsi HBA) on the root bus:
    /// no seed may cold-plug a device there (QEMU would refuse to start).
    #[test]
    fn cold_plugs_leave_the_profiles_slots_alone() {
        for (profile, root) in [("pc", None), ("q35", Some("pcie.0")), ("q35-acpi", Some("pcie.0"))] {
            for seed in 0..300 {
                let plan = generate(seed, profile, Firmware::SeaBios, 1).unwrap();
                for d in &plan.devices {
                    let on_root = match root {
                        Some(bus) => d.arg.contains(&format!(",bus={bus},")),
                        None => !d.arg.contains(",bus="),
                    };
                    let at_4 =
                        d.arg.contains(",addr=0x4,") || d.arg.ends_with(",addr=0x4") || d.arg.contains(",addr=0x4.");
                    assert!(!(on_root && at_4), "{profile} seed {seed}: {}", d.arg);
                }
            }
        }
    }

    /// A failure whose first line ends in a colon is not followed by
    /// another one (it once printed "QEMU's::").
    #[test]
    fn the_shrink_report_has_no_doubled_colons() {
        let plan = Plan::parse("profile pc\nfirmware qboot\nappend fault=x\nstep scsi held-del s1\n").unwrap();
        let failure = "step 0: scsi held-del s1: the guest's SCSI view disagrees with QEMU's:\n  s1 ...";
        let report = shrink_report(7, &plan, Some(failure), std::path::Path::new("target/explore/f.min.plan"));
        let (words, test) = report.split_once("as a test").unwrap();
        assert!(!words.contains("::"), "{report}");
        assert!(test.contains("harness::explorer::replay("), "{report}");
        assert!(report.contains("0 devices and 1 steps; it fails with:\n        step 0: scsi held-del s1"), "{report}");
        assert!(report.contains("        append fault=x\n") && report.contains("--replay target/explore/f.min.plan"));
        let flaky = shrink_report(7, &plan, None, std::path::Path::new("f"));
        assert!(flaky.contains("it no longer fails (flaky?)"), "{flaky}");
    }

    #[tokio::test]
    async fn join_all_keeps_order_and_runs_concurrently() {
        let started = std::time::Instant::now();
        let futures: Vec<Pin<Box<dyn Future<Output = u64> + Send>>> = (0..4u64)
            .map(|i| {
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(50 - 10 * i)).await;
                    i
                }) as _
            })
            .collect();
        assert_eq!(join_all(futures).await, [0, 1, 2, 3]);
        assert!(started.elapsed() < Duration::from_millis(150), "they ran one after another");
    }
}
