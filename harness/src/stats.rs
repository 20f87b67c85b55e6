//! The guest's `stats` answer: totals plus one line per unreleased device.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub totals: BTreeMap<String, u64>,
    pub devices: BTreeMap<String, DeviceStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    pub state: String,
    pub refcount: u64,
    pub active: u64,
    pub generation: u64,
}

impl Stats {
    pub fn parse(bytes: &[u8]) -> Result<Stats> {
        let text = std::str::from_utf8(bytes).context("stats are not UTF-8")?;
        let mut stats = Stats::default();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("device ") {
                let mut words = rest.split(' ');
                let path = words.next().filter(|p| !p.is_empty()).context("device line without a path")?;
                let mut dev = DeviceStats::default();
                for word in words {
                    let (key, value) = word.split_once('=').with_context(|| format!("bad stats field {word:?}"))?;
                    match key {
                        "state" => dev.state = value.to_string(),
                        "refcount" => dev.refcount = value.parse().context("refcount")?,
                        "active" => dev.active = value.parse().context("active")?,
                        "generation" => dev.generation = value.parse().context("generation")?,
                        _ => {}
                    }
                }
                // Two unreleased objects never share a path (re-registration
                // waits for release), so a duplicate is a lying guest.
                if stats.devices.insert(path.to_string(), dev).is_some() {
                    bail!("stats list {path} twice");
                }
            } else {
                let Some((key, value)) = line.split_once(' ') else { bail!("bad stats line {line:?}") };
                stats.totals.insert(key.to_string(), value.parse().with_context(|| format!("stats {key}"))?);
            }
        }
        for key in ["live", "released", "leaked", "bugs", "active", "handles"] {
            if !stats.totals.contains_key(key) {
                bail!("stats lack the {key:?} total");
            }
        }
        Ok(stats)
    }

    pub fn total(&self, key: &str) -> u64 {
        self.totals.get(key).copied().unwrap_or(0)
    }

    pub fn live(&self) -> u64 {
        self.total("live")
    }
    pub fn leaked(&self) -> u64 {
        self.total("leaked")
    }
    pub fn bugs(&self) -> u64 {
        self.total("bugs")
    }
    pub fn active(&self) -> u64 {
        self.total("active")
    }
    pub fn handles(&self) -> u64 {
        self.total("handles")
    }
    pub fn released(&self) -> u64 {
        self.total("released")
    }

    /// One device's line; an error (not a panic) when it is missing.
    pub fn device(&self, path: &str) -> Result<&DeviceStats> {
        self.devices.get(path).with_context(|| format!("stats list no unreleased device {path}"))
    }

    /// The same live objects, no leaks, no BUGs, nothing in flight: what a
    /// scenario must return to once it has undone everything it did.
    pub fn check_baseline(&self, baseline: &Stats) -> Result<()> {
        let mut problems = Vec::new();
        if self.leaked() != 0 {
            problems.push(format!("{} leaked objects", self.leaked()));
        }
        if self.bugs() != 0 {
            problems.push(format!("{} BUGs", self.bugs()));
        }
        if self.active() != 0 {
            problems.push(format!("{} active references", self.active()));
        }
        if self.handles() != baseline.handles() {
            problems.push(format!("{} open handles, baseline {}", self.handles(), baseline.handles()));
        }
        if self.live() != baseline.live() {
            problems.push(format!("{} live objects, baseline {}", self.live(), baseline.live()));
        }
        let before: Vec<&String> = baseline.devices.keys().collect();
        let after: Vec<&String> = self.devices.keys().collect();
        if before != after {
            problems.push(format!("device set changed: baseline {before:?}, now {after:?}"));
        }
        if problems.is_empty() { Ok(()) } else { bail!("stats are not back at the baseline: {}", problems.join("; ")) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_totals_and_devices() {
        let s = Stats::parse(b"live 2\nregistered 2\nreleased 0\nleaked 0\nbugs 0\nhandles 1\nactive 1\nseqnum 4\ndevice root/testbus state=registered refcount=1 active=0 generation=1\ndevice root/testbus/t state=dying refcount=1 active=1 generation=5\n").unwrap();
        assert_eq!((s.live(), s.handles(), s.active()), (2, 1, 1));
        assert_eq!(
            s.devices["root/testbus/t"],
            DeviceStats { state: "dying".into(), refcount: 1, active: 1, generation: 5 }
        );
        let err = s.check_baseline(&s).unwrap_err().to_string();
        assert!(err.contains("active"), "{err}");
    }

    #[test]
    fn rejects_garbage() {
        assert!(Stats::parse(b"live many\n").is_err());
        assert!(Stats::parse(b"live 1\n").is_err(), "missing totals");
        assert!(Stats::parse(b"device \n").is_err());
        let twice = "live 2\nreleased 0\nleaked 0\nbugs 0\nactive 0\nhandles 0\ndevice root/x state=registered\ndevice root/x state=dying\n";
        assert!(Stats::parse(twice.as_bytes()).unwrap_err().to_string().contains("twice"));
    }
}
