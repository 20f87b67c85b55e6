//! `cargo xtask bench`: latency medians, printed as a table and written as
//! JSON under `target/bench`. Speed goals are checked here, never by timed
//! assertions in tests.
//!
//! Boot latency is QEMU spawn → the guest's `hello` reply, measured for
//! each profile with each firmware (qboot and SeaBIOS), VMs one at a time so
//! they do not compete for the two cores.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::qemu::Firmware;
use crate::vm::{Vm, VmConfig};

#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    pub metric: String,
    pub profile: String,
    pub firmware: String,
    pub runs: usize,
    pub min_ms: f64,
    pub median_ms: f64,
    pub max_ms: f64,
    /// The goal, where the project set one.
    pub goal_ms: Option<f64>,
}

impl Measurement {
    pub fn from_samples(
        metric: &str,
        profile: &str,
        firmware: Firmware,
        samples: &mut [Duration],
        goal_ms: Option<f64>,
    ) -> Self {
        samples.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = if samples.len() % 2 == 1 {
            ms(samples[samples.len() / 2])
        } else {
            (ms(samples[samples.len() / 2 - 1]) + ms(samples[samples.len() / 2])) / 2.0
        };
        Measurement {
            metric: metric.to_string(),
            profile: profile.to_string(),
            firmware: firmware.name().to_string(),
            runs: samples.len(),
            min_ms: ms(samples[0]),
            median_ms: median,
            max_ms: ms(samples[samples.len() - 1]),
            goal_ms,
        }
    }
}

pub struct Options {
    pub runs: usize,
    pub profiles: Vec<String>,
    pub firmwares: Vec<Firmware>,
}

/// Boot latency goal on `pc` under TCG.
pub const BOOT_GOAL_PC_MS: f64 = 60.0;

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
    Ok(Measurement::from_samples("boot (spawn -> hello)", profile, firmware, &mut samples, goal))
}

pub async fn run(options: &Options, out_dir: &Path) -> Result<Vec<Measurement>> {
    let mut results = Vec::new();
    for profile in &options.profiles {
        for firmware in &options.firmwares {
            let m = boot_latency(profile, *firmware, options.runs).await?;
            eprintln!("bench: {} {} {}: median {:.1} ms", m.metric, profile, firmware.name(), m.median_ms);
            results.push(m);
        }
    }
    print_table(&results);
    std::fs::create_dir_all(out_dir)?;
    let path = out_dir.join("bench.json");
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)?;
    println!("\nwrote {}", path.display());
    Ok(results)
}

pub fn print_table(results: &[Measurement]) {
    println!(
        "{:<28} {:<6} {:<8} {:>5} {:>9} {:>9} {:>9} {:>8}",
        "metric", "profile", "firmware", "runs", "min ms", "median ms", "max ms", "goal"
    );
    for m in results {
        let goal = match m.goal_ms {
            Some(g) if m.median_ms <= g => format!("<={g:.0} ok"),
            Some(g) => format!("<={g:.0} MISS"),
            None => String::new(),
        };
        println!(
            "{:<28} {:<6} {:<8} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>8}",
            m.metric, m.profile, m.firmware, m.runs, m.min_ms, m.median_ms, m.max_ms, goal
        );
    }
}
