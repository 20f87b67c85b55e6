//! The `stats` answer: counters and per-device refcounts that must never
//! appear in a snapshot (they are not part of the hardware's description).

use alloc::string::String;
use core::fmt::Write;

use super::{Core, DeviceState};

/// Totals over every device object ever created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Objects not yet released (initialized, registered, dying or deleted).
    pub live: u64,
    pub registered: u64,
    pub released: u64,
    /// Deleted (no longer in the system) but still referenced. At quiescence
    /// this must be 0: the reference is lost, the memory never freed.
    pub leaked: u64,
    pub bugs: u64,
    pub handles: u64,
    pub active: u64,
}

impl Core {
    pub fn totals(&self) -> Totals {
        let mut t = Totals { bugs: self.bugs, released: self.released, ..Totals::default() };
        for dev in self.device_ids() {
            match self.device(dev).state {
                DeviceState::Released => {}
                DeviceState::Registered => {
                    t.live += 1;
                    t.registered += 1;
                }
                DeviceState::Deleted => {
                    t.live += 1;
                    t.leaked += 1;
                }
                DeviceState::Initialized | DeviceState::Dying => t.live += 1,
            }
        }
        t.handles = self.fs.handle_count() as u64;
        t.active = self.fs.total_active() as u64;
        t
    }

    /// The `stats` payload: totals, then one line per unreleased device.
    ///
    /// ```text
    /// live 9
    /// ...
    /// device root/pci0/00:01.1 state=registered refcount=1 active=0 generation=3
    /// ```
    pub fn render_stats(&self) -> String {
        let t = self.totals();
        let mut out = String::new();
        let _ = writeln!(out, "live {}", t.live);
        let _ = writeln!(out, "registered {}", t.registered);
        let _ = writeln!(out, "released {}", t.released);
        let _ = writeln!(out, "leaked {}", t.leaked);
        let _ = writeln!(out, "bugs {}", t.bugs);
        let _ = writeln!(out, "handles {}", t.handles);
        let _ = writeln!(out, "active {}", t.active);
        // Every object ever created: with `released`, a checker can tell
        // that everything made since a baseline was also freed.
        let _ = writeln!(out, "created {}", self.device_ids().count());
        let _ = writeln!(out, "seqnum {}", self.seqnum);
        // Not the driver core's, but this is where counters are read.
        let _ = writeln!(out, "console_dropped {}", crate::console::dropped_bytes());
        for dev in self.device_ids() {
            let d = self.device(dev);
            if d.state == DeviceState::Released {
                continue;
            }
            let active: u32 = d.nodes.iter().map(|n| self.fs.active(*n)).sum();
            let _ = writeln!(
                out,
                "device {} state={} refcount={} active={} generation={}",
                self.device_path(dev),
                d.state.as_str(),
                d.refcount,
                active,
                d.generation
            );
        }
        out
    }
}
