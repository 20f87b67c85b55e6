//! The guest's `stats` answer: totals plus one line per unreleased device.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};

/// The guest's `stats` answer (see `docs/control-protocol.md`, "Stats").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The `<key> <n>` totals (`live`, `released`, `leaked`, `bugs`, `handles`, `active`, `seqnum`, ...).
    pub totals: BTreeMap<String, u64>,
    /// One entry per unreleased device, by path.
    pub devices: BTreeMap<String, DeviceStats>,
}

/// One `device` line of the stats.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceStats {
    /// `initialized`, `registered`, `dying` or `deleted`.
    pub state: String,
    /// Device references held.
    pub refcount: u64,
    /// Active references on its attributes (reads and writes in flight).
    pub active: u64,
    /// A new number for every object: a re-added device differs from the old one.
    pub generation: u64,
}

impl Stats {
    /// Parse the guest's answer; the totals every guest reports must be there.
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

    /// A total by key, 0 if absent.
    pub fn total(&self, key: &str) -> u64 {
        self.totals.get(key).copied().unwrap_or(0)
    }

    /// Device objects not yet released.
    pub fn live(&self) -> u64 {
        self.total("live")
    }
    /// Objects deleted from the system but still referenced.
    pub fn leaked(&self) -> u64 {
        self.total("leaked")
    }
    /// Driver-model BUGs so far.
    pub fn bugs(&self) -> u64 {
        self.total("bugs")
    }
    /// Active references (reads and writes inside show()/store()).
    pub fn active(&self) -> u64 {
        self.total("active")
    }
    /// Open driverfs handles.
    pub fn handles(&self) -> u64 {
        self.total("handles")
    }
    /// Objects released so far.
    pub fn released(&self) -> u64 {
        self.total("released")
    }

    /// One device's line; an error (not a panic) when it is missing.
    pub fn device(&self, path: &str) -> Result<&DeviceStats> {
        self.devices.get(path).with_context(|| format!("stats list no unreleased device {path}"))
    }

    /// The same live objects, no leaks, no BUGs, nothing in flight: what a
    /// scenario must return to once it has undone everything it did. Every
    /// device of the baseline is still there with the same state, refcount
    /// and active count, and every object created since was released.
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
        // Released counts are compared as deltas: the objects created since
        // the baseline must all have been released since.
        let created = self.total("created").checked_sub(baseline.total("created"));
        let released = self.released().checked_sub(baseline.released());
        match (created, released) {
            (Some(created), Some(released)) if created == released => {}
            (Some(created), Some(released)) => problems
                .push(format!("released: {released} objects released since the baseline, but {created} created")),
            _ => problems.push("released/created counters went backwards since the baseline".to_string()),
        }
        for (path, before) in &baseline.devices {
            let Some(now) = self.devices.get(path) else {
                problems.push(format!("{path} was released (baseline: {})", before.describe()));
                continue;
            };
            for (field, was, is) in [
                ("state", before.state.clone(), now.state.clone()),
                ("refcount", before.refcount.to_string(), now.refcount.to_string()),
                ("active", before.active.to_string(), now.active.to_string()),
            ] {
                if was != is {
                    problems.push(format!("{path} {field}: {is}, baseline {was}"));
                }
            }
        }
        for (path, now) in &self.devices {
            if !baseline.devices.contains_key(path) {
                problems.push(format!("{path} is new since the baseline ({})", now.describe()));
            }
        }
        if problems.is_empty() { Ok(()) } else { bail!("stats are not back at the baseline: {}", problems.join("; ")) }
    }
}

impl DeviceStats {
    fn describe(&self) -> String {
        format!("state={} refcount={} active={}", self.state, self.refcount, self.active)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_totals_and_devices() {
        let s = Stats::parse(b"live 2\nregistered 2\ncreated 2\nreleased 0\nleaked 0\nbugs 0\nhandles 1\nactive 1\nseqnum 4\ndevice root/testbus state=registered refcount=1 active=0 generation=1\ndevice root/testbus/t state=dying refcount=1 active=1 generation=5\n").unwrap();
        assert_eq!((s.live(), s.handles(), s.active()), (2, 1, 1));
        assert_eq!(
            s.devices["root/testbus/t"],
            DeviceStats { state: "dying".into(), refcount: 1, active: 1, generation: 5 }
        );
        let err = s.check_baseline(&s).unwrap_err().to_string();
        assert!(err.contains("active"), "{err}");
    }

    const BASE: &str = "live 2\nregistered 2\ncreated 5\nreleased 3\nleaked 0\nbugs 0\nhandles 0\nactive 0\n\
                        device root/testbus state=registered refcount=2 active=0 generation=1\n\
                        device root/testbus/t state=registered refcount=1 active=0 generation=5\n";

    fn changed(from: &str, to: &str) -> Stats {
        assert!(BASE.contains(from), "{from}");
        Stats::parse(BASE.replacen(from, to, 1).as_bytes()).unwrap()
    }

    fn baseline_error(now: &Stats) -> String {
        now.check_baseline(&Stats::parse(BASE.as_bytes()).unwrap()).unwrap_err().to_string()
    }

    #[test]
    fn back_at_the_baseline_after_creating_and_releasing() {
        let base = Stats::parse(BASE.as_bytes()).unwrap();
        // Ten objects made and freed since, and t re-created (new generation).
        let text =
            BASE.replace("created 5\nreleased 3", "created 15\nreleased 13").replace("generation=5", "generation=14");
        let later = Stats::parse(text.as_bytes()).unwrap();
        assert_ne!(later, base);
        later.check_baseline(&base).unwrap();
    }

    #[test]
    fn a_device_that_differs_from_the_baseline_is_named_with_its_field() {
        let err = baseline_error(&changed("refcount=2", "refcount=3"));
        assert!(err.contains("root/testbus refcount: 3, baseline 2"), "{err}");
        let err = baseline_error(&changed("t state=registered", "t state=dying"));
        assert!(err.contains("root/testbus/t state: dying, baseline registered"), "{err}");
        let err = baseline_error(&changed(
            "t state=registered refcount=1 active=0",
            "t state=registered refcount=1 active=1",
        ));
        assert!(err.contains("root/testbus/t active: 1, baseline 0"), "{err}");
        let err =
            baseline_error(&changed("device root/testbus/t state=registered refcount=1 active=0 generation=5\n", ""));
        assert!(err.contains("root/testbus/t was released"), "{err}");
        let extra =
            changed("active 0\n", "active 0\ndevice root/testbus/u state=deleted refcount=1 active=0 generation=9\n");
        let err = baseline_error(&extra);
        assert!(err.contains("root/testbus/u is new since the baseline"), "{err}");
    }

    #[test]
    fn released_is_compared_as_a_delta() {
        // Two objects created, one released: one is still around somewhere.
        let err = baseline_error(&changed("created 5\nreleased 3", "created 7\nreleased 4"));
        assert!(err.contains("released: 1 objects released since the baseline, but 2 created"), "{err}");
        let err = baseline_error(&changed("live 2", "live 3"));
        assert!(err.contains("3 live objects, baseline 2"), "{err}");
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
