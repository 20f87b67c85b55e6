//! The control protocol on COM2 (DESIGN.md, contract 2), guest side.
//!
//! - request: one line `<tag> <verb> [args...]`, ASCII, at most 4096 bytes;
//! - reply: `<tag> ok <n>\n` + exactly n payload bytes, or
//!   `<tag> err <ERRNO> <text>\n`;
//! - asynchronous lines start with `*` (`* uevent ...`, `* bug ...`) and are
//!   only ever written between whole messages.
//!
//! Every request runs as its own task, so one that waits (a held read, a
//! removal draining it) never stops the next one from being answered.
//!
//! - [`request`]: a parsed request and the reply type (what subsystems see);
//! - [`server`]: the control state and the routing of verbs, the core's
//!   own or a subsystem's ([`crate::subsystem`]);
//! - [`verbs`]: the driver core's verbs (`snapshot`, `open`, `settle`, ...);
//! - this file: framing, both ways.

pub mod request;
pub mod server;
pub mod verbs;

pub use request::{Reply, Request};
pub use server::{Control, ControlRef};

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::base::KernelEvent;
use crate::errno::Errno;

/// Longest request line, newline excluded.
pub const MAX_LINE: usize = 4096;
/// Longest tag the guest echoes back.
pub const MAX_TAG: usize = 32;

/// What the line assembler made of the input so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Request(Request),
    /// A line that cannot be served; answer it with this error.
    Invalid {
        tag: String,
        errno: Errno,
        text: String,
    },
}

/// Splits the byte stream into request lines, bounded to [`MAX_LINE`].
#[derive(Default)]
pub struct LineAssembler {
    line: Vec<u8>,
    overflow: bool,
}

impl LineAssembler {
    pub fn feed(&mut self, byte: u8) -> Option<Incoming> {
        match byte {
            b'\n' => {
                let line = core::mem::take(&mut self.line);
                let overflow = core::mem::replace(&mut self.overflow, false);
                parse_line(&line, overflow)
            }
            b'\r' => None,
            _ => {
                if self.line.len() < MAX_LINE {
                    self.line.push(byte);
                } else {
                    self.overflow = true;
                }
                None
            }
        }
    }
}

fn parse_line(line: &[u8], overflow: bool) -> Option<Incoming> {
    if line.iter().all(|b| *b == b' ') && !overflow {
        return None;
    }
    // The tag is whatever precedes the first space, if it is sane; else "-".
    let tag_end = line.iter().position(|b| *b == b' ').unwrap_or(line.len());
    let tag_bytes = &line[..tag_end];
    let tag_ok = !tag_bytes.is_empty()
        && tag_bytes.len() <= MAX_TAG
        && tag_bytes[0] != b'*'
        && tag_bytes.iter().all(|b| b.is_ascii_graphic());
    let tag = if tag_ok { String::from_utf8_lossy(tag_bytes).into_owned() } else { String::from("-") };
    let invalid = |errno, text: &str| Some(Incoming::Invalid { tag: tag.clone(), errno, text: String::from(text) });
    if overflow {
        return invalid(Errno::E2BIG, "request line longer than 4096 bytes");
    }
    if !tag_ok {
        return invalid(Errno::EINVAL, "bad tag");
    }
    if !line.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t') {
        return invalid(Errno::EINVAL, "request is not printable ASCII");
    }
    let text = core::str::from_utf8(line).ok()?;
    let after_tag = text[tag_end..].trim_start_matches(' ');
    let (verb, rest) = match after_tag.find(' ') {
        Some(i) => (&after_tag[..i], &after_tag[i + 1..]),
        None => (after_tag, ""),
    };
    if verb.is_empty() {
        return invalid(Errno::EINVAL, "missing verb");
    }
    Some(Incoming::Request(Request { tag, verb: String::from(verb), rest: String::from(rest) }))
}

/// Bytes waiting for COM2, always whole messages.
#[derive(Default)]
pub struct Outbox {
    bytes: VecDeque<u8>,
}

impl Outbox {
    pub fn ok(&mut self, tag: &str, payload: &[u8]) {
        self.bytes.extend(format!("{tag} ok {}\n", payload.len()).bytes());
        self.bytes.extend(payload.iter().copied());
    }

    pub fn err(&mut self, tag: &str, errno: Errno, text: &str) {
        // The text is ours, but keep the line a line whatever it holds.
        let text: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
        self.bytes.extend(format!("{tag} err {errno} {text}\n").bytes());
    }

    pub fn reply(&mut self, tag: &str, result: Result<Vec<u8>, (Errno, String)>) {
        match result {
            Ok(payload) => self.ok(tag, &payload),
            Err((errno, text)) => self.err(tag, errno, &text),
        }
    }

    /// An asynchronous line (`* ...`).
    pub fn event(&mut self, event: &KernelEvent) {
        let line = match event {
            KernelEvent::Uevent(u) => format!("* uevent {}\n", u.to_line()),
            KernelEvent::Bug(text) => format!("* bug BUG: {text}\n"),
            KernelEvent::Notice(text) => format!("* {text}\n"),
        };
        self.bytes.extend(line.bytes());
    }

    /// Raw bytes, for the `selftest garbage` verbs only.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.bytes.extend(bytes.iter().copied());
    }

    pub fn take(&mut self) -> VecDeque<u8> {
        core::mem::take(&mut self.bytes)
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(line: &[u8]) -> Option<Incoming> {
        let mut a = LineAssembler::default();
        let mut last = None;
        for b in line {
            if let Some(x) = a.feed(*b) {
                last = Some(x);
            }
        }
        last
    }

    #[test]
    fn parses_tag_verb_and_rest() {
        let Some(Incoming::Request(r)) = feed(b"7 write 3 hello  world\n") else { panic!() };
        assert_eq!((r.tag.as_str(), r.verb.as_str(), r.rest.as_str()), ("7", "write", "3 hello  world"));
        assert_eq!(r.args(), ["3", "hello", "world"]);
    }

    #[test]
    fn rejects_bad_lines_with_a_reply() {
        assert_eq!(
            feed(b"12\n"),
            Some(Incoming::Invalid { tag: "12".into(), errno: Errno::EINVAL, text: "missing verb".into() })
        );
        assert!(matches!(feed(b"* hello\n"), Some(Incoming::Invalid { errno: Errno::EINVAL, .. })));
        assert!(matches!(feed(b"1 hello \xff\n"), Some(Incoming::Invalid { errno: Errno::EINVAL, .. })));
        assert_eq!(feed(b"\n"), None);
    }

    #[test]
    fn overlong_lines_are_refused_and_the_stream_recovers() {
        let mut a = LineAssembler::default();
        let mut out = Vec::new();
        let mut input = b"9 ".to_vec();
        input.extend(core::iter::repeat_n(b'x', 5000));
        input.extend(b"\n10 hello\n");
        for b in input {
            out.extend(a.feed(b));
        }
        assert!(matches!(&out[0], Incoming::Invalid { tag, errno: Errno::E2BIG, .. } if tag == "9"));
        assert!(matches!(&out[1], Incoming::Request(r) if r.tag == "10" && r.verb == "hello"));
    }

    #[test]
    fn replies_are_framed_with_exact_lengths() {
        let mut o = Outbox::default();
        o.ok("3", b"ab\ncd");
        o.err("4", Errno::ENOENT, "no such\npath");
        let bytes: Vec<u8> = o.take().into_iter().collect();
        assert_eq!(bytes, b"3 ok 5\nab\ncd4 err ENOENT no such?path\n");
    }
}
