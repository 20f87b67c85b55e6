//! The control protocol on COM2 (docs/control-protocol.md), guest side.
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
//! - [`flood`]: `selftest flood`, a guest gone wild for the harness's bounds;
//! - this file: framing, both ways, and the queue of output for COM2.

mod flood;
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
use crate::hw::Platform;
use crate::uart::Uart;

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

/// Bytes waiting for COM2, queued as whole messages and sent as fast as the
/// UART takes them.
///
/// The control channel never drops a byte, but a slow reader must not stop
/// the guest either: [`Outbox::pump`] sends what the UART accepts right now
/// and leaves the rest for the next pass of the main loop, so bus work goes
/// on while the host is not reading. The queue remembers where each message
/// ends, so the panic path can finish the one the UART is in the middle of
/// before it writes its own line ([`Outbox::finish_message`]).
#[derive(Default)]
pub struct Outbox {
    bytes: VecDeque<u8>,
    /// Length of each queued message, front first; the front one counts only
    /// its bytes not yet sent.
    messages: VecDeque<usize>,
    /// Some bytes of the front message are already on the wire.
    front_started: bool,
}

impl Outbox {
    fn push_message(&mut self, bytes: impl IntoIterator<Item = u8>) {
        let before = self.bytes.len();
        self.bytes.extend(bytes);
        let len = self.bytes.len() - before;
        if len > 0 {
            self.messages.push_back(len);
        }
    }

    pub fn ok(&mut self, tag: &str, payload: &[u8]) {
        let header = format!("{tag} ok {}\n", payload.len());
        self.push_message(header.bytes().chain(payload.iter().copied()));
    }

    pub fn err(&mut self, tag: &str, errno: Errno, text: &str) {
        // The text is ours, but keep the line a line whatever it holds.
        let text: String = text.chars().map(|c| if c.is_ascii_graphic() || c == ' ' { c } else { '?' }).collect();
        self.push_message(format!("{tag} err {errno} {text}\n").bytes());
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
        self.push_message(line.bytes());
    }

    /// Raw bytes, for the `selftest garbage` verbs only.
    pub fn raw(&mut self, bytes: &[u8]) {
        self.push_message(bytes.iter().copied());
    }

    /// Bytes queued and not yet sent.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Drop everything queued (`selftest hang`: the guest stops talking).
    pub fn discard(&mut self) {
        *self = Outbox::default();
    }

    /// Send one byte through `send`; false if it did not take it.
    fn send_front(&mut self, send: impl FnOnce(u8) -> bool) -> bool {
        let Some(&byte) = self.bytes.front() else { return false };
        if !send(byte) {
            return false;
        }
        self.bytes.pop_front();
        self.front_started = true;
        if let Some(left) = self.messages.front_mut() {
            *left -= 1;
            if *left == 0 {
                self.messages.pop_front();
                self.front_started = false;
            }
        }
        true
    }

    /// Send what the UART takes right now, without waiting; answers the
    /// number of bytes sent. Called once per pass of the main loop.
    pub fn pump(&mut self, uart: &Uart, p: &dyn Platform) -> usize {
        let mut sent = 0;
        while self.send_front(|b| uart.try_send(p, b)) {
            sent += 1;
        }
        sent
    }

    /// Send everything queued, waiting for a slow reader until `deadline`
    /// (a [`Platform::ticks`] value) at most: the BUG path's last words.
    /// True if the queue is empty at the end.
    pub fn flush_before(&mut self, uart: &Uart, p: &dyn Platform, deadline: u64) -> bool {
        while self.send_front(|b| uart.send_before(p, b, deadline)) {}
        self.is_empty()
    }

    /// Finish the message the UART is in the middle of, if any, waiting
    /// until `deadline` at most, so that a line written next starts at a
    /// message boundary (the panic path). True if the channel is at a
    /// boundary at the end.
    pub fn finish_message(&mut self, uart: &Uart, p: &dyn Platform, deadline: u64) -> bool {
        while self.front_started {
            if !self.send_front(|b| uart.send_before(p, b, deadline)) {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_platform::FakePlatform;
    use crate::pci::fake::FakePci;

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
        let bytes: Vec<u8> = o.bytes.iter().copied().collect();
        assert_eq!(bytes, b"3 ok 5\nab\ncd4 err ENOENT no such?path\n");
        assert_eq!(o.messages, [12, 26]);
    }

    #[test]
    fn pump_sends_what_the_uart_takes_and_keeps_the_rest_in_order() {
        let uart = Uart::new(crate::uart::COM2);
        let host = FakePlatform::new(FakePci::new());
        host.control_room(4);
        let mut o = Outbox::default();
        o.ok("7", b"0123456789");
        o.err("8", Errno::EIO, "x");
        assert_eq!(o.pump(&uart, &host), 4, "the UART took four bytes, then stalled");
        assert_eq!(o.pump(&uart, &host), 0, "a stalled UART costs one poll, no wait");
        host.stall_control(false);
        o.pump(&uart, &host);
        assert!(o.is_empty());
        assert_eq!(host.control_output(), b"7 ok 10\n01234567898 err EIO x\n");
    }

    /// The panic path finishes the message in flight and stops there, so its
    /// own line starts on a boundary; a port that never drains ends the wait
    /// at the deadline.
    #[test]
    fn finish_message_completes_only_the_message_in_flight() {
        let uart = Uart::new(crate::uart::COM2);
        let host = FakePlatform::new(FakePci::new());
        host.control_room(3);
        let mut o = Outbox::default();
        o.ok("7", b"0123456789");
        o.err("8", Errno::EIO, "x");
        o.pump(&uart, &host);
        let deadline = host.ticks() + 50_000_000;
        assert!(!o.finish_message(&uart, &host, deadline), "the port never drains: give up at the deadline");
        assert!(host.ticks() >= deadline);
        host.stall_control(false);
        assert!(o.finish_message(&uart, &host, host.ticks()));
        assert_eq!(host.control_output(), b"7 ok 10\n0123456789");
        assert!(o.finish_message(&uart, &host, 0), "at a boundary already");
        assert!(o.flush_before(&uart, &host, 0));
        assert_eq!(host.control_output(), b"7 ok 10\n01234567898 err EIO x\n");
    }
}
