//! Uevents: what the kernel tells userspace about devices, in the order Linux
//! sends them: `add` then `bind` on registration; `unbind` then `remove` on
//! removal, children before parents.
//!
//! Like Linux's `dev_uevent_filter`, a device with no bus (a PCI root, an IDE
//! channel) sends none: nothing in userspace could match it to a subsystem.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::{Core, DeviceId, KernelEvent};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UeventAction {
    Add,
    Remove,
    Change,
    Bind,
    Unbind,
}

impl UeventAction {
    pub fn as_str(self) -> &'static str {
        match self {
            UeventAction::Add => "add",
            UeventAction::Remove => "remove",
            UeventAction::Change => "change",
            UeventAction::Bind => "bind",
            UeventAction::Unbind => "unbind",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    pub action: UeventAction,
    /// The device's directory as the snapshot names it.
    pub devpath: String,
    /// `KEY=VALUE` pairs, `SUBSYSTEM` first and `SEQNUM` last.
    pub env: Vec<(&'static str, String)>,
}

impl Uevent {
    /// `<action> <devpath> KEY=VALUE...`, the tail of a `* uevent` line.
    pub fn to_line(&self) -> String {
        let mut line = String::new();
        let _ = write!(line, "{} {}", self.action.as_str(), self.devpath);
        for (key, value) in &self.env {
            let _ = write!(line, " {key}={value}");
        }
        line
    }
}

impl Core {
    /// Queue a uevent for `dev` (nothing for bus-less devices).
    pub fn uevent(&mut self, dev: DeviceId, action: UeventAction) {
        let Some(bus) = self.device(dev).bus else { return };
        self.seqnum += 1;
        let mut env = Vec::new();
        env.push(("SUBSYSTEM", String::from(self.bus_name(bus))));
        if let Some(drv) = self.device(dev).driver
            && matches!(action, UeventAction::Bind | UeventAction::Unbind | UeventAction::Change | UeventAction::Add)
        {
            env.push(("DRIVER", String::from(self.driver_name(drv))));
        }
        if let Some(data) = self.device(dev).data.as_ref() {
            data.uevent_env(&mut env);
        }
        env.push(("SEQNUM", alloc::format!("{}", self.seqnum)));
        let devpath = self.device_path(dev);
        self.events.push_back(KernelEvent::Uevent(Uevent { action, devpath, env }));
    }

    pub fn seqnum(&self) -> u64 {
        self.seqnum
    }
}
