//! Planted bugs, for proving that the harness catches a broken driver model.
//!
//! A guest booted with `fault=<name>` on its command line runs with exactly
//! one of these bugs switched on; `cargo xtask mutants` boots the matrix once
//! per fault and reports which scenarios caught it. Without `fault=` every
//! switch reads as off: one relaxed load of a byte at each use site.
//!
//! Adding a fault is one line in the list below plus `fault::planted(...)`
//! at the place the bug goes. The harness reads the list from the guest
//! (the `faults` verb), so nothing else needs to know the names.

use core::sync::atomic::{AtomicU8, Ordering};

macro_rules! faults {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal,)*) => {
        /// One planted bug.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Fault {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Fault {
            /// Every fault, in the order `faults` lists them.
            pub const ALL: &'static [Fault] = &[$(Fault::$variant,)*];

            /// The name `fault=<name>` takes.
            pub fn name(self) -> &'static str {
                match self {
                    $(Fault::$variant => $name,)*
                }
            }
        }
    };
}

faults! {
    /// The last `put` never calls `release`: objects are never freed.
    ReleaseNeverCalled = "release-never-called",
    /// `device_unregister` releases the object even while others still
    /// hold references (release on unregister instead of the last put).
    ReleaseOnUnregister = "release-on-unregister",
    /// A device re-added under a name an older object had reuses that
    /// object's generation.
    GenerationNotBumped = "generation-not-bumped",
    /// `device_del` does not wait for show()/store() in flight before it
    /// removes the driverfs entries.
    RemovalSkipsDrain = "removal-skips-drain",
    /// A read or write on a handle whose node was removed looks the path up
    /// again and reaches whatever lives there now.
    StaleHandleReachesNew = "stale-handle-reaches-new",
    /// `open` finds attributes of a device whose removal has started.
    OpenOnDying = "open-on-dying",
    /// PCI hot-plug lets QEMU eject the slot before the guest removed its
    /// functions from the driver model.
    EjectBeforeRemoval = "eject-before-removal",
    /// A child drops its reference on its parent when it is deleted, not
    /// when it is released: the parent can go first.
    ParentPutBeforeChildRelease = "parent-put-before-child-release",
    /// A released child never drops its reference on its parent.
    ParentRefLeaked = "parent-ref-leaked",
    /// `device_del` sends no `remove` uevent.
    NoRemoveUevent = "no-remove-uevent",
    /// `device_del` leaves the driver bound.
    DriverNotUnbound = "driver-not-unbound",
    /// An IDE medium change registers the new disc without waiting for the
    /// old one's release.
    MediumChangeSkipsRelease = "medium-change-skips-release",
    /// A SCSI LUN that QEMU removed on its own is torn down without waiting
    /// for the driverfs reads still inside it (other devices drain).
    ScsiLunNotDrained = "scsi-lun-not-drained",
    /// A USB port reset (usb-storage's recovery from a stall) is done as an
    /// unplug and a replug: the device, its interfaces and the SCSI host
    /// and LUNs below are removed and registered again under new objects,
    /// instead of staying as they were.
    UsbResetRebinds = "usb-reset-rebinds",
    /// Unbinding the `hub` driver from a hub stops watching its ports but
    /// leaves the devices behind it registered, with no hub driver above
    /// them (Linux's `hub_disconnect` disconnects them).
    HubChildrenKept = "hub-children-kept",
}

/// 0: no fault; otherwise the planted fault's index + 1.
static PLANTED: AtomicU8 = AtomicU8::new(0);

/// Is this bug switched on?
#[inline]
pub fn planted(fault: Fault) -> bool {
    PLANTED.load(Ordering::Relaxed) == fault as u8 + 1
}

/// The planted fault, if any.
pub fn current() -> Option<Fault> {
    let index = PLANTED.load(Ordering::Relaxed).checked_sub(1)?;
    Fault::ALL.get(usize::from(index)).copied()
}

/// The fault called `name`.
pub fn by_name(name: &str) -> Option<Fault> {
    Fault::ALL.iter().copied().find(|f| f.name() == name)
}

/// Switch on the fault named by `fault=<name>` on the command line. An
/// unknown name is an error, so a typo never passes for a clean run.
pub fn plant_from_cmdline(cmdline: &crate::cmdline::Cmdline) -> Result<Option<Fault>, alloc::string::String> {
    let Some(name) = cmdline.value("fault") else { return Ok(None) };
    let fault = by_name(name).ok_or_else(|| {
        let names: alloc::vec::Vec<&str> = Fault::ALL.iter().map(|f| f.name()).collect();
        alloc::format!("unknown fault {name:?}; known: {}", names.join(" "))
    })?;
    PLANTED.store(fault as u8 + 1, Ordering::Relaxed);
    Ok(Some(fault))
}

/// The `faults` answer: one fault name per line, the planted one marked.
pub fn render_list() -> alloc::string::String {
    let mut out = alloc::string::String::new();
    for f in Fault::ALL {
        out.push_str(f.name());
        if Some(*f) == current() {
            out.push_str(" planted");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Host tests never plant a fault (the switch is global and tests run in
    // parallel); they check the list and the parsing only.
    #[test]
    fn names_are_unique_and_round_trip() {
        for (i, f) in Fault::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(by_name(f.name()), Some(*f));
            assert!(Fault::ALL.iter().filter(|g| g.name() == f.name()).count() == 1);
        }
        assert!(Fault::ALL.len() >= 12);
        assert_eq!(by_name("no-such-fault"), None);
    }

    #[test]
    fn no_fault_without_the_boot_argument() {
        assert_eq!(plant_from_cmdline(&crate::cmdline::Cmdline::new("selftest.hang")), Ok(None));
        let err = plant_from_cmdline(&crate::cmdline::Cmdline::new("fault=typo")).unwrap_err();
        assert!(err.contains("unknown fault \"typo\""), "{err}");
        assert_eq!(current(), None);
        assert!(!planted(Fault::ReleaseNeverCalled));
    }
}
