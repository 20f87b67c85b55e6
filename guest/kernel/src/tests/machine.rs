//! A booted guest on a [`FakePlatform`], driven through the control
//! protocol on COM2 the way the harness drives QEMU: send a request, run the
//! main loop until its reply is on the wire, read the uevents in between.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::system::{Message, parse};
use crate::cmdline::Cmdline;
use crate::fake_platform::FakePlatform;
use crate::subsystem::Register;
use crate::system::{SUBSYSTEMS, System};

/// Main-loop turns a request may take before the test calls it stuck.
const MAX_STEPS: usize = 500;

pub(crate) struct Machine {
    pub p: &'static FakePlatform,
    sys: System,
    next_tag: u32,
}

/// The outcome of one request: the payload, or the errno.
pub(crate) type Answer = Result<String, String>;

impl Machine {
    pub fn boot(platform: FakePlatform) -> Machine {
        Machine::boot_with(platform, "console=ttyS0", SUBSYSTEMS)
    }

    /// Boot with another command line and list of subsystems.
    pub fn boot_with(platform: FakePlatform, cmdline: &str, subsystems: &[Register]) -> Machine {
        let p = platform.leak();
        let sys = System::boot_with(p, &Cmdline::new(cmdline), subsystems);
        let mut m = Machine { p, sys, next_tag: 1 };
        m.step(1);
        m
    }

    /// Turns of the main loop (one executor pass each).
    pub fn step(&mut self, n: usize) {
        for _ in 0..n {
            self.sys.step();
            // As `System::run` does between passes (devices that work in
            // their own time, like QEMU's main loop, run here).
            crate::hw::Platform::relax(self.p);
        }
    }

    pub fn messages(&self) -> Vec<Message> {
        parse(&self.p.control_output())
    }

    /// Queue a request without running the guest; returns its tag.
    pub fn send(&mut self, request: &str) -> String {
        let tag = format!("t{}", self.next_tag);
        self.next_tag += 1;
        self.p.push_control(&format!("{tag} {request}\n"));
        tag
    }

    /// The reply to `tag`, if it has come.
    pub fn answer(&self, tag: &str) -> Option<Answer> {
        self.messages().into_iter().find_map(|m| match m {
            Message::Ok { tag: t, payload } if t == tag => Some(Ok(payload)),
            Message::Err { tag: t, errno } if t == tag => Some(Err(errno)),
            _ => None,
        })
    }

    /// Run until `tag` is answered; panics if it never is.
    pub fn wait(&mut self, tag: &str) -> Answer {
        for _ in 0..MAX_STEPS {
            if let Some(answer) = self.answer(tag) {
                return answer;
            }
            self.step(1);
        }
        panic!("no reply to {tag} after {MAX_STEPS} steps; console:\n{}", self.p.console_output())
    }

    pub fn call(&mut self, request: &str) -> Answer {
        let tag = self.send(request);
        self.wait(&tag)
    }

    /// A request that must succeed.
    pub fn ok(&mut self, request: &str) -> String {
        self.call(request).unwrap_or_else(|errno| panic!("{request}: {errno}"))
    }

    pub fn snapshot(&mut self, path: &str) -> String {
        self.ok(&format!("snapshot {path}"))
    }

    pub fn settle(&mut self) {
        self.ok("settle");
    }

    pub fn stats(&mut self) -> String {
        self.ok("stats")
    }

    /// Every `* ...` notice that is not a uevent, without the `* `.
    pub fn notices(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Async(text) if !text.starts_with("uevent ") => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Every `* uevent` line so far, without the `uevent ` prefix.
    pub fn uevents(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                Message::Async(text) => text.strip_prefix("uevent ").map(String::from),
                _ => None,
            })
            .collect()
    }

    /// Position of a message in the stream, for ordering checks.
    pub fn position(&self, wanted: impl Fn(&Message) -> bool) -> Option<usize> {
        self.messages().iter().position(wanted)
    }

    /// Read an attribute through a fresh handle.
    pub fn read(&mut self, path: &str) -> Answer {
        let handle = self.call(&format!("open {path}"))?;
        let value = self.call(&format!("read {handle}"));
        self.ok(&format!("close {handle}"));
        value
    }
}

/// The `device <path> ...` line of a `stats` answer.
pub(crate) fn stats_line<'a>(stats: &'a str, path: &str) -> Option<&'a str> {
    let prefix = format!("device {path} ");
    stats.lines().find(|l| l.starts_with(&prefix))
}

/// The generation in a device's `stats` line.
pub(crate) fn generation(stats: &str, path: &str) -> u64 {
    let line = stats_line(stats, path).unwrap_or_else(|| panic!("{path} not in stats:\n{stats}"));
    line.rsplit_once("generation=").and_then(|(_, g)| g.parse().ok()).expect("a generation")
}

/// A `stats` answer without the counters that grow with history (releases
/// and the uevent sequence number): what must be back where it was once
/// everything added has gone again.
pub(crate) fn baseline(stats: &str) -> String {
    stats
        .lines()
        .filter(|l| !["released ", "created ", "seqnum "].iter().any(|counter| l.starts_with(counter)))
        .map(|l| format!("{l}\n"))
        .collect()
}
