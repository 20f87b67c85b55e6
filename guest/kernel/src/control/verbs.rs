//! The driver core's verbs of the control protocol (a subsystem's verbs are its
//! own, see [`crate::subsystem`]). Each request runs as its own task; see
//! `control/mod.rs` for the framing.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::ControlRef;
use super::request::{Reply, Request, arg_count, fail, with_context};
use crate::base::dd;
use crate::driverfs::{file, snapshot};
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::subsystem::SETTLE_PASSES;

/// Protocol version announced by `hello`. Bumped only for incompatible
/// changes; new verbs are announced as features.
pub const PROTOCOL_VERSION: u32 = 1;

/// The verbs the driver core serves itself. A subsystem may not declare
/// one of them.
pub const CORE_VERBS: &[&str] = &[
    "hello",
    "snapshot",
    "stats",
    "settle",
    "open",
    "read",
    "write",
    "close",
    "hold",
    "unhold",
    "bind",
    "unbind",
    "selftest",
    "poweroff",
    "devref",
    "faults",
    "checkpoint",
];

fn parse_handle(text: &str) -> Result<u32, (Errno, String)> {
    text.parse::<u32>().map_err(|_| (Errno::EINVAL, format!("bad handle: {text}")))
}

/// Serve one of [`CORE_VERBS`].
pub(super) async fn serve(k: &ControlRef, req: &Request) -> Reply {
    let args = req.args();
    match req.verb.as_str() {
        "hello" => {
            arg_count(req, 0, 0, "hello")?;
            Ok(format!(
                "protocol {PROTOCOL_VERSION}\nguest driverfs-guest {}\nfeatures {}\n",
                env!("CARGO_PKG_VERSION"),
                k.features()
            )
            .into_bytes())
        }
        "snapshot" => {
            arg_count(req, 0, 1, "snapshot [subtree]")?;
            let core = k.sys.core.borrow();
            snapshot::render(&core, args.first().copied())
                .map(String::into_bytes)
                .map_err(|e| with_context(e, args.first().copied().unwrap_or("")))
        }
        "stats" => {
            arg_count(req, 0, 0, "stats")?;
            Ok(k.sys.core.borrow().render_stats().into_bytes())
        }
        "settle" => {
            arg_count(req, 0, 0, "settle")?;
            // Enough passes that every bus poller has looked at its hardware
            // at least once since the request came in, and nothing in flight.
            let start = k.passes();
            wait_until(|| k.passes() >= start + SETTLE_PASSES && k.subsystems.pending_work() == 0).await;
            Ok(Vec::new())
        }
        "open" => {
            arg_count(req, 1, 1, "open <path>")?;
            let handle = k.sys.core.borrow_mut().fs.open(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(format!("{handle}").into_bytes())
        }
        "read" => {
            arg_count(req, 1, 1, "read <handle>")?;
            let handle = parse_handle(args[0])?;
            file::read(&k.sys.core, handle).await.map_err(|e| with_context(e, args[0]))
        }
        "write" => {
            let (handle, data) = req.rest.split_once(' ').unwrap_or((req.rest.as_str(), ""));
            let handle = parse_handle(handle)?;
            file::write(&k.sys.core, handle, data.as_bytes())
                .await
                .map_err(|e| with_context(e, &format!("{handle}")))?;
            Ok(Vec::new())
        }
        "close" => {
            arg_count(req, 1, 1, "close <handle>")?;
            let handle = parse_handle(args[0])?;
            k.sys.core.borrow_mut().fs.close(handle).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "hold" => {
            arg_count(req, 1, 1, "hold <path>")?;
            k.sys.core.borrow_mut().fs.hold(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "unhold" => {
            arg_count(req, 1, 1, "unhold <path>")?;
            k.sys.core.borrow_mut().fs.unhold(args[0]).map_err(|e| with_context(e, args[0]))?;
            Ok(Vec::new())
        }
        "bind" | "unbind" => {
            arg_count(req, 3, 3, "bind|unbind <bus> <device> <driver>")?;
            let (bus, dev, drv) = {
                let core = k.sys.core.borrow();
                let bus = core.find_bus(args[0]).ok_or_else(|| with_context(Errno::ENOENT, args[0]))?;
                let dev = core.bus_find_device(bus, args[1]).ok_or_else(|| with_context(Errno::ENOENT, args[1]))?;
                let drv = core.find_driver(bus, args[2]).ok_or_else(|| with_context(Errno::ENOENT, args[2]))?;
                (bus, dev, drv)
            };
            if req.verb == "bind" {
                dd::bind(&mut k.sys.core.borrow_mut(), bus, dev, drv).map_err(|e| with_context(e, args[1]))?;
            } else {
                if k.sys.core.borrow().driver(dev) != Some(drv) {
                    return fail(Errno::ENODEV, format!("{} is not bound to {}", args[1], args[2]));
                }
                dd::device_release_driver(&k.sys.core, dev).await.map_err(|e| with_context(e, args[1]))?;
            }
            Ok(Vec::new())
        }
        "devref" => devref(k, req),
        "selftest" if args.first() == Some(&"flood") => super::flood::flood(k, req).await,
        "checkpoint" => crate::checkpoint::serve(&k.sys.checkpoints, &args).map(String::into_bytes),
        "selftest" => selftest(k, req),
        "faults" => {
            arg_count(req, 0, 0, "faults")?;
            Ok(crate::fault::render_list().into_bytes())
        }
        "poweroff" => {
            arg_count(req, 0, 0, "poweroff")?;
            k.poweroff.set(true);
            Ok(Vec::new())
        }
        other => fail(Errno::ENOSYS, format!("unknown verb: {other}")),
    }
}

/// `devref get <devpath>` takes a reference on a registered device and
/// keeps it; `devref put <devpath>` drops one taken that way. This is how a
/// test holds an object past its removal (as a driver holding
/// `pci_dev_get` would) to see that its slot is not reused before release.
fn devref(k: &ControlRef, req: &Request) -> Reply {
    let args = req.args();
    let (Some(op), Some(path), 2) = (args.first().copied(), args.get(1).copied(), args.len()) else {
        return fail(Errno::EINVAL, "usage: devref get|put <devpath>");
    };
    let path = path.trim_matches('/');
    let mut core = k.sys.core.borrow_mut();
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
/// - `selftest garbage <kind>`: see [`garbage`];
/// - `selftest flood <kind> <count>`: see [`super::flood`].
fn selftest(k: &ControlRef, req: &Request) -> Reply {
    let args = req.args();
    match args.first().copied() {
        Some("panic") => {
            let text = req.rest.strip_prefix("panic").unwrap_or("").trim();
            panic!("selftest panic: {text}");
        }
        Some("put") if args.len() == 2 => {
            let mut core = k.sys.core.borrow_mut();
            let dev = core
                .find_bus(crate::testbus::BUS_NAME)
                .and_then(|bus| core.bus_find_device(bus, args[1]))
                .ok_or_else(|| with_context(Errno::ENOENT, args[1]))?;
            core.put(dev);
            Ok(Vec::new())
        }
        Some("hang") => {
            k.hang.set(true);
            Ok(Vec::new())
        }
        _ => fail(
            Errno::EINVAL,
            "usage: selftest panic <text> | put <testdev> | hang | garbage <kind> | flood <kind> <count>",
        ),
    }
}

/// `selftest garbage <kind>`: send malformed bytes instead of a reply, so the
/// harness's protocol errors can be tested against the real guest:
/// `long-line`, `bad-length`, `truncated` (then power off, so the payload
/// stays short for good), `non-utf8`, `bad-status`.
pub(super) fn garbage(k: &ControlRef, req: &Request) -> Result<(), (Errno, String)> {
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
