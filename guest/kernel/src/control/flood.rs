//! `selftest flood <kind> <count>`: a guest gone wild, so the harness's
//! bounds can be tested against the real guest. Each kind floods one path
//! the harness must keep bounded:
//!
//! - `console <bytes>`: console lines (COM1) totalling about `bytes`;
//! - `uevents <count>`: `* uevent` lines of about 8000 bytes, each with
//!   hundreds of keys;
//! - `notices <count>`: `* flood ...` notice lines of about 8000 bytes;
//! - `bugs <count>`: `* bug` lines of about 1000 bytes (the guest does not
//!   stop: they are raw lines, not BUGs of its driver core);
//! - `lines <count>`: empty lines, the shortest thing a decoder must skip.
//!
//! The lines are made as the UART drains, never more than [`QUEUE_LIMIT`]
//! bytes ahead, so a flood of any size costs the guest no memory. The reply
//! comes once everything is queued.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use super::{ControlRef, Request};
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::klog;

/// Most control-channel bytes queued ahead of the UART while flooding.
const QUEUE_LIMIT: usize = 64 * 1024;
/// Longest line a flood makes: under the harness's 8192-byte line limit, so
/// the flood is well-formed and must be bounded by size, not refused.
const LINE_BYTES: usize = 8000;

const USAGE: &str = "usage: selftest flood console|uevents|notices|bugs|lines <count>";

pub async fn flood(k: &ControlRef, req: &Request) -> Result<Vec<u8>, (Errno, String)> {
    let args = req.args();
    let (Some(kind), Some(count), 3) = (args.get(1).copied(), args.get(2), args.len()) else {
        return Err((Errno::EINVAL, String::from(USAGE)));
    };
    let count: u64 = count.parse().map_err(|_| (Errno::EINVAL, String::from(USAGE)))?;
    let line: fn(u64) -> String = match kind {
        "console" => {
            // 64-byte lines; the console never waits for long (console.rs).
            let chunk = "flood flood flood flood flood flood flood flood flood flood";
            for i in 0..count.div_ceil(64) {
                klog!(k.sys.platform, "{:03} {chunk}", i % 1000);
            }
            return Ok(Vec::new());
        }
        "uevents" => |i| {
            let mut line = format!("* uevent add flood/{i} SUBSYSTEM=flood SEQNUM={i}");
            let mut key = 0;
            while line.len() < LINE_BYTES - 16 {
                line.push_str(&format!(" K{key}=v"));
                key += 1;
            }
            line + "\n"
        },
        "notices" => |i| padded(format!("* flood notice {i} "), LINE_BYTES),
        "bugs" => |i| padded(format!("* bug flood {i} "), 1000),
        "lines" => |_| String::from("\n"),
        _ => return Err((Errno::EINVAL, String::from(USAGE))),
    };
    for i in 0..count {
        wait_until(|| k.out.borrow().len() < QUEUE_LIMIT).await;
        k.out.borrow_mut().raw(line(i).as_bytes());
    }
    Ok(Vec::new())
}

fn padded(mut line: String, len: usize) -> String {
    while line.len() < len - 1 {
        line.push('x');
    }
    line + "\n"
}
