//! The verbs of the control protocol. Each request runs as its own task;
//! see `control/mod.rs` for the framing.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::Request;
use crate::base::dd;
use crate::driverfs::{file, snapshot};
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::system::KernelRef;

/// Protocol version announced by `hello`. Bumped only for incompatible
/// changes; new verbs are announced as features.
pub const PROTOCOL_VERSION: u32 = 1;

/// Announced by `hello`, space-separated: the verbs, plus `pci-hotplug`
/// (the guest follows PCI hot-plug and ejects on request).
pub const FEATURES: &str = "snapshot stats settle open read write close hold unhold bind unbind testdev selftest \
                            poweroff devref ide pci-hotplug";

type Reply = Result<Vec<u8>, (Errno, String)>;

/// Executor passes `settle` waits: more than the slowest poller's period
/// (the CD media poll runs every 8 passes).
const SETTLE_PASSES: u64 = 20;

fn fail<T>(errno: Errno, text: impl Into<String>) -> Result<T, (Errno, String)> {
    Err((errno, text.into()))
}

fn with_context(errno: Errno, what: &str) -> (Errno, String) {
    let text = match errno {
        Errno::ENOENT => format!("no such entry: {what}"),
        Errno::ENODEV => format!("removed: {what}"),
        Errno::EBADF => format!("no such handle: {what}"),
        Errno::EBUSY => format!("busy: {what}"),
        Errno::EEXIST => format!("already exists: {what}"),
        Errno::EISDIR => format!("not an attribute: {what}"),
        Errno::ENOTDIR => format!("not a directory: {what}"),
        Errno::EACCES => format!("not writable: {what}"),
        _ => String::from(what),
    };
    (errno, text)
}

fn arg_count(req: &Request, min: usize, max: usize, usage: &str) -> Result<(), (Errno, String)> {
    let n = req.args().len();
    if n < min || n > max { fail(Errno::EINVAL, format!("usage: {usage}")) } else { Ok(()) }
}

fn parse_handle(text: &str) -> Result<u32, (Errno, String)> {
    text.parse::<u32>().map_err(|_| (Errno::EINVAL, format!("bad handle: {text}")))
}

/// Start the task that serves `req`.
pub fn dispatch(k: &KernelRef, req: Request) {
    if req.verb == "selftest" && req.args().first() == Some(&"garbage") {
        // The garbage is the answer: no well-formed reply follows it.
        if let Err((errno, text)) = garbage(k, &req) {
            k.reply(&req.tag, Err((errno, text)));
        }
        return;
    }
    let k2 = k.clone();
    k.spawner.spawn(async move {
        let result = serve(&k2, &req).await;
        k2.reply(&req.tag, result);
    });
}

async fn serve(k: &KernelRef, req: &Request) -> Reply {
    let args = req.args();
    match req.verb.as_str() {
        "hello" => {
            arg_count(req, 0, 0, "hello")?;
            Ok(format!(
                "protocol {PROTOCOL_VERSION}\nguest driverfs-guest {}\nfeatures {}\n",
                env!("CARGO_PKG_VERSION"),
                FEATURES
            )
            .into_bytes())
        }
        "snapshot" => {
            arg_count(req, 0, 1, "snapshot [subtree]")?;
            let core = k.core.borrow();
            snapshot::render(&core, args.first().copied())
                .map(String::into_bytes)
                .map_err(|e| with_context(e, args.first().copied().unwrap_or("")))
        }
        "stats" => {
            arg_count(req, 0, 0, "stats")?;
            Ok(k.core.borrow().render_stats().into_bytes())
        }
        "settle" => {
            arg_count(req, 0, 0, "settle")?;
            // Enough passes that every bus poller has looked at its hardware
            // at least once since the request came in, and nothing in flight.
            let start = k.passes.get();
            wait_until(|| k.passes.get() >= start + SETTLE_PASSES && k.bus_work.get() == 0).await;
            Ok(Vec::new())
        }
        "open" => {
            arg_count(req, 1, 1, "open <path>")?;
            let handle = k.core.borrow_mut().fs.open(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(format!("{handle}").into_bytes())
        }
        "read" => {
            arg_count(req, 1, 1, "read <handle>")?;
            let handle = parse_handle(args[0])?;
            file::read(&k.core, handle).await.map_err(|e| with_context(e, args[0]))
        }
        "write" => {
            let (handle, data) = req.rest.split_once(' ').unwrap_or((req.rest.as_str(), ""));
            let handle = parse_handle(handle)?;
            file::write(&k.core, handle, data.as_bytes()).await.map_err(|e| with_context(e, &format!("{handle}")))?;
            Ok(Vec::new())
        }
        "close" => {
            arg_count(req, 1, 1, "close <handle>")?;
            let handle = parse_handle(args[0])?;
            k.core.borrow_mut().fs.close(handle).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "hold" => {
            arg_count(req, 1, 1, "hold <path>")?;
            k.core.borrow_mut().fs.hold(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "unhold" => {
            arg_count(req, 1, 1, "unhold <path>")?;
            k.core.borrow_mut().fs.unhold(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "bind" | "unbind" => {
            arg_count(req, 3, 3, "bind|unbind <bus> <device> <driver>")?;
            let (bus, dev, drv) = {
                let core = k.core.borrow();
                let bus = core.find_bus(args[0]).ok_or_else(|| with_context(Errno::ENOENT, args[0]))?;
                let dev = core.bus_find_device(bus, args[1]).ok_or_else(|| with_context(Errno::ENOENT, args[1]))?;
                let drv = core.find_driver(bus, args[2]).ok_or_else(|| with_context(Errno::ENOENT, args[2]))?;
                (bus, dev, drv)
            };
            if req.verb == "bind" {
                dd::bind(&mut k.core.borrow_mut(), bus, dev, drv).map_err(|e| with_context(e, args[1]))?;
            } else {
                if k.core.borrow().driver(dev) != Some(drv) {
                    return fail(Errno::ENODEV, format!("{} is not bound to {}", args[1], args[2]));
                }
                dd::device_release_driver(&k.core, dev).await.map_err(|e| with_context(e, args[1]))?;
            }
            Ok(Vec::new())
        }
        "testdev" => testdev(k, req).await,
        "devref" => devref(k, req),
        "ide" => {
            let args = req.args();
            match (args.first().copied(), args.get(2).copied()) {
                (Some("lock"), Some(state @ ("on" | "off"))) if args.len() == 3 => {
                    crate::ide::set_lock(&k.ide, &mut k.core.borrow_mut(), args[1], state == "on")
                        .map_err(|e| with_context(e, args[1]))?;
                    Ok(Vec::new())
                }
                _ => fail(Errno::EINVAL, "usage: ide lock <drive> on|off"),
            }
        }
        "selftest" => selftest(k, req),
        "poweroff" => {
            arg_count(req, 0, 0, "poweroff")?;
            k.poweroff.set(true);
            Ok(Vec::new())
        }
        other => fail(Errno::ENOSYS, format!("unknown verb: {other}")),
    }
}

/// `testdev add <name> [parent]` answers the new device's path;
/// `testdev del <name>` answers once the removal has completed.
async fn testdev(k: &KernelRef, req: &Request) -> Reply {
    let args = req.args();
    match args.first().copied() {
        Some("add") if (2..=3).contains(&args.len()) => {
            let mut core = k.core.borrow_mut();
            let dev = k.testbus.add(&mut core, args[1], args.get(2).copied()).map_err(|e| with_context(e, args[1]))?;
            Ok(core.device_path(dev).into_bytes())
        }
        Some("del") if args.len() == 2 => {
            k.testbus.del(&k.core, args[1]).await.map_err(|e| with_context(e, args[1]))?;
            Ok(Vec::new())
        }
        _ => fail(Errno::EINVAL, "usage: testdev add <name> [parent] | testdev del <name>"),
    }
}

/// `devref get <devpath>` takes a reference on a registered device and
/// keeps it; `devref put <devpath>` drops one taken that way. This is how a
/// test holds an object past its removal (as a driver holding
/// `pci_dev_get` would) to see that its slot is not reused before release.
fn devref(k: &KernelRef, req: &Request) -> Reply {
    let args = req.args();
    let (Some(op), Some(path), 2) = (args.first().copied(), args.get(1).copied(), args.len()) else {
        return fail(Errno::EINVAL, "usage: devref get|put <devpath>");
    };
    let path = path.trim_matches('/');
    let mut core = k.core.borrow_mut();
    match op {
        "get" => {
            let dev = core
                .device_ids()
                .find(|d| core.state(*d) == crate::base::DeviceState::Registered && core.device_path(*d) == path)
                .ok_or_else(|| with_context(Errno::ENOENT, path))?;
            core.get(dev);
            k.held_refs.borrow_mut().push((String::from(path), dev));
            Ok(Vec::new())
        }
        "put" => {
            let mut held = k.held_refs.borrow_mut();
            let i = held
                .iter()
                .position(|(p, _)| p == path)
                .ok_or_else(|| (Errno::EINVAL, format!("no reference on {path} was taken with devref get")))?;
            let (_, dev) = held.remove(i);
            core.put(dev);
            Ok(Vec::new())
        }
        _ => fail(Errno::EINVAL, "usage: devref get|put <devpath>"),
    }
}

/// Deliberate failures, so the harness's handling of each is testable
/// against the real guest:
/// - `selftest panic <text>`: a Rust panic;
/// - `selftest put <testdev>`: one put_device too many on a registered test
///   device, which the driver core reports as a BUG;
/// - `selftest hang`: stop answering the control channel;
/// - `selftest garbage <kind>`: see [`garbage`].
fn selftest(k: &KernelRef, req: &Request) -> Reply {
    let args = req.args();
    match args.first().copied() {
        Some("panic") => {
            let text = req.rest.strip_prefix("panic").unwrap_or("").trim();
            panic!("selftest panic: {text}");
        }
        Some("put") if args.len() == 2 => {
            let mut core = k.core.borrow_mut();
            let dev =
                core.bus_find_device(k.testbus.bus, args[1]).ok_or_else(|| with_context(Errno::ENOENT, args[1]))?;
            core.put(dev);
            Ok(Vec::new())
        }
        Some("hang") => {
            k.hang.set(true);
            Ok(Vec::new())
        }
        _ => fail(Errno::EINVAL, "usage: selftest panic <text> | put <testdev> | hang | garbage <kind>"),
    }
}

/// `selftest garbage <kind>`: send malformed bytes instead of a reply, so the
/// harness's protocol errors can be tested against the real guest:
/// `long-line`, `bad-length`, `truncated` (then power off, so the payload
/// stays short for good), `non-utf8`, `bad-status`.
fn garbage(k: &KernelRef, req: &Request) -> Result<(), (Errno, String)> {
    let args = req.args();
    let tag = req.tag.as_str();
    let mut out = k.out.borrow_mut();
    match args.get(1).copied() {
        Some("long-line") => {
            let mut line = format!("{tag} ok 0 ").into_bytes();
            line.resize(20_000, b'x');
            line.push(b'\n');
            out.raw(&line);
        }
        Some("bad-length") => out.raw(format!("{tag} ok twelve\n").as_bytes()),
        Some("truncated") => {
            out.raw(format!("{tag} ok 100\nonly ten b").as_bytes());
            k.poweroff.set(true);
        }
        Some("non-utf8") => out.raw(b"* uevent add \xff\xfe\xfd\n"),
        Some("bad-status") => out.raw(format!("{tag} maybe 3\n").as_bytes()),
        _ => return fail(Errno::EINVAL, "usage: selftest garbage long-line|bad-length|truncated|non-utf8|bad-status"),
    }
    Ok(())
}
