//! Decoding what the guest sends on the control channel (`docs/control-protocol.md`).
//!
//! Everything the guest sends is untrusted: lines and payloads are bounded,
//! and every malformation is a [`ProtocolError`], never a panic. The decoder
//! is pure (bytes in, frames out) so it is unit-tested on its own.

use std::fmt;

/// Longest header or asynchronous line accepted, newline excluded.
pub const MAX_LINE: usize = 8192;
/// Largest payload accepted (a full snapshot of a big tree is well below).
pub const MAX_PAYLOAD: usize = 16 << 20;

/// One decoded message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `<tag> ok <n>` + payload.
    Ok {
        /// The request's tag.
        tag: String,
        /// The payload bytes.
        payload: Vec<u8>,
    },
    /// `<tag> err <ERRNO> <text>`.
    Err {
        /// The request's tag.
        tag: String,
        /// The errno name (`ENOENT`, ...).
        errno: String,
        /// What failed, in words.
        text: String,
    },
    /// `* uevent <action> <devpath> KEY=VALUE...`
    Uevent(Uevent),
    /// `* bug <text>`: a kernel BUG or panic report.
    Bug(String),
    /// Another `* ...` line; kept for forward compatibility.
    Async(String),
}

/// A uevent as the guest announced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uevent {
    /// `add`, `remove`, `change`, `bind` or `unbind`.
    pub action: String,
    /// The device's directory, as the snapshot names it.
    pub devpath: String,
    /// The `KEY=VALUE` pairs, in order.
    pub env: Vec<(String, String)>,
}

impl Uevent {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// The `SEQNUM` key.
    pub fn seqnum(&self) -> Option<u64> {
        self.get("SEQNUM")?.parse().ok()
    }
}

impl fmt::Display for Uevent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.action, self.devpath)?;
        for (k, v) in &self.env {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

/// Bytes from the guest that break the protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolError {
    /// A header or asynchronous line longer than [`MAX_LINE`].
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// A line that is not UTF-8.
    NonUtf8 {
        /// The line's bytes.
        bytes: Vec<u8>,
    },
    /// An `ok` header whose length is not a number.
    BadLength {
        /// The header.
        line: String,
    },
    /// An `ok` header announcing more than [`MAX_PAYLOAD`].
    PayloadTooLarge {
        /// The announced length.
        announced: usize,
    },
    /// A header that is neither `ok` nor `err`.
    BadStatus {
        /// The header.
        line: String,
    },
    /// A line that does not have the form its kind needs.
    Malformed {
        /// The line.
        line: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The stream ended inside a line or a payload.
    Truncated {
        /// Bytes announced.
        expected: usize,
        /// Bytes received.
        got: usize,
    },
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::LineTooLong { limit } => write!(f, "line longer than {limit} bytes"),
            ProtocolError::NonUtf8 { bytes } => {
                write!(
                    f,
                    "line is not UTF-8: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(80)]).escape_debug()
                )
            }
            ProtocolError::BadLength { line } => write!(f, "bad payload length in {line:?}"),
            ProtocolError::PayloadTooLarge { announced } => {
                write!(f, "payload of {announced} bytes announced, limit is {MAX_PAYLOAD}")
            }
            ProtocolError::BadStatus { line } => write!(f, "reply is neither ok nor err: {line:?}"),
            ProtocolError::Malformed { line, why } => write!(f, "{why}: {line:?}"),
            ProtocolError::Truncated { expected, got } => {
                write!(f, "stream ended after {got} of {expected} announced bytes")
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

enum State {
    /// Expecting a header or an asynchronous line.
    Line,
    /// Inside the payload of an `ok` reply.
    Payload { tag: String, len: usize },
}

/// Incremental decoder: `push` bytes, then take frames with `next_frame`.
/// After the first error the stream is unusable and the caller stops.
///
/// The cost is linear in the bytes pushed, whatever their shape: frames are
/// taken from a read offset (`start`), never by draining the front of the
/// buffer per line, and the consumed front is dropped only once it is at
/// least half the buffer. A newline search resumes where the last one
/// stopped (`scanned`).
pub struct Decoder {
    buf: Vec<u8>,
    /// Bytes of `buf` before this are consumed.
    start: usize,
    /// Bytes of `buf` from `start` up to here hold no newline (line state).
    scanned: usize,
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { buf: Vec::new(), start: 0, scanned: 0, state: State::Line }
    }
}

impl Decoder {
    /// Feed bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.scanned -= self.start;
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet consumed by a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Consume `len` bytes from the read offset.
    fn take(&mut self, len: usize) -> &[u8] {
        let at = self.start;
        self.start += len;
        self.scanned = self.scanned.max(self.start);
        &self.buf[at..at + len]
    }

    /// The next complete frame, `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Option<Result<Frame, ProtocolError>> {
        loop {
            match &self.state {
                State::Payload { len, .. } => {
                    let len = *len;
                    if self.buffered() < len {
                        return None;
                    }
                    let State::Payload { tag, .. } = std::mem::replace(&mut self.state, State::Line) else {
                        unreachable!()
                    };
                    let payload = self.take(len).to_vec();
                    return Some(Ok(Frame::Ok { tag, payload }));
                }
                State::Line => {
                    let from = self.scanned.max(self.start);
                    let Some(offset) = self.buf[from..].iter().position(|b| *b == b'\n') else {
                        self.scanned = self.buf.len();
                        if self.buffered() > MAX_LINE {
                            return Some(Err(ProtocolError::LineTooLong { limit: MAX_LINE }));
                        }
                        return None;
                    };
                    let end = from + offset - self.start;
                    if end > MAX_LINE {
                        return Some(Err(ProtocolError::LineTooLong { limit: MAX_LINE }));
                    }
                    let mut line = &self.take(end + 1)[..end];
                    if line.last() == Some(&b'\r') {
                        line = &line[..line.len() - 1];
                    }
                    if line.is_empty() {
                        continue;
                    }
                    let line = match String::from_utf8(line.to_vec()) {
                        Ok(l) => l,
                        Err(e) => return Some(Err(ProtocolError::NonUtf8 { bytes: e.into_bytes() })),
                    };
                    match self.header(line) {
                        Ok(Some(frame)) => return Some(Ok(frame)),
                        Ok(None) => continue, // a payload follows
                        Err(e) => return Some(Err(e)),
                    }
                }
            }
        }
    }

    fn header(&mut self, line: String) -> Result<Option<Frame>, ProtocolError> {
        if let Some(rest) = line.strip_prefix("* ") {
            return parse_async(rest).map(Some);
        }
        let mut parts = line.splitn(3, ' ');
        let tag = parts.next().unwrap_or_default();
        let status = parts.next().unwrap_or_default();
        let rest = parts.next().unwrap_or_default();
        if tag.is_empty() || tag.starts_with('*') {
            return Err(ProtocolError::Malformed { line, why: "bad tag" });
        }
        match status {
            "ok" => {
                let len: usize = rest.parse().map_err(|_| ProtocolError::BadLength { line: line.clone() })?;
                if len > MAX_PAYLOAD {
                    return Err(ProtocolError::PayloadTooLarge { announced: len });
                }
                self.state = State::Payload { tag: tag.to_string(), len };
                Ok(None)
            }
            "err" => {
                let (errno, text) = rest.split_once(' ').unwrap_or((rest, ""));
                if errno.is_empty() || !errno.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                    return Err(ProtocolError::Malformed { line, why: "bad errno" });
                }
                Ok(Some(Frame::Err { tag: tag.to_string(), errno: errno.to_string(), text: text.to_string() }))
            }
            _ => Err(ProtocolError::BadStatus { line }),
        }
    }

    /// Call at end of stream: an unfinished payload or line is an error.
    pub fn finish(&self) -> Result<(), ProtocolError> {
        match &self.state {
            State::Payload { len, .. } => Err(ProtocolError::Truncated { expected: *len, got: self.buffered() }),
            State::Line if self.buffered() > 0 => {
                Err(ProtocolError::Truncated { expected: self.buffered() + 1, got: self.buffered() })
            }
            State::Line => Ok(()),
        }
    }
}

fn parse_async(rest: &str) -> Result<Frame, ProtocolError> {
    if let Some(text) = rest.strip_prefix("bug ") {
        return Ok(Frame::Bug(text.to_string()));
    }
    if let Some(body) = rest.strip_prefix("uevent ") {
        let mut words = body.split(' ').filter(|w| !w.is_empty());
        let malformed = |why| ProtocolError::Malformed { line: format!("* {rest}"), why };
        let action = words.next().ok_or_else(|| malformed("uevent without action"))?;
        let devpath = words.next().ok_or_else(|| malformed("uevent without devpath"))?;
        let mut env = Vec::new();
        for word in words {
            let (k, v) = word.split_once('=').ok_or_else(|| malformed("uevent key without '='"))?;
            env.push((k.to_string(), v.to_string()));
        }
        return Ok(Frame::Uevent(Uevent { action: action.to_string(), devpath: devpath.to_string(), env }));
    }
    Ok(Frame::Async(rest.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, ProtocolError>> {
        let mut d = Decoder::default();
        d.push(bytes);
        let mut out = Vec::new();
        while let Some(f) = d.next_frame() {
            let stop = f.is_err();
            out.push(f);
            if stop {
                break;
            }
        }
        if out.last().is_none_or(|f| f.is_ok())
            && let Err(e) = d.finish()
        {
            out.push(Err(e));
        }
        out
    }

    #[test]
    fn decodes_replies_and_async_lines_with_payloads_containing_newlines() {
        let frames = decode_all(b"* uevent add root/pci0/00:01.1 SUBSYSTEM=pci SEQNUM=3\n1 ok 4\na\nb\n2 err ENOENT no such entry: x\n* bug BUG: double release\n");
        assert_eq!(frames.len(), 4);
        let Ok(Frame::Uevent(u)) = &frames[0] else { panic!("{frames:?}") };
        assert_eq!(
            (u.action.as_str(), u.devpath.as_str(), u.get("SUBSYSTEM"), u.seqnum()),
            ("add", "root/pci0/00:01.1", Some("pci"), Some(3))
        );
        assert_eq!(frames[1], Ok(Frame::Ok { tag: "1".into(), payload: b"a\nb\n".to_vec() }));
        assert_eq!(
            frames[2],
            Ok(Frame::Err { tag: "2".into(), errno: "ENOENT".into(), text: "no such entry: x".into() })
        );
        assert_eq!(frames[3], Ok(Frame::Bug("BUG: double release".into())));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames() {
        let input = b"7 ok 3\nxyz* uevent remove root/testbus/t SEQNUM=9\n8 ok 0\n";
        let mut d = Decoder::default();
        let mut frames = Vec::new();
        for b in input {
            d.push(&[*b]);
            while let Some(f) = d.next_frame() {
                frames.push(f.unwrap());
            }
        }
        assert_eq!(frames.len(), 3);
        assert!(matches!(&frames[0], Frame::Ok { payload, .. } if payload == b"xyz"));
        assert!(d.finish().is_ok());
    }

    #[test]
    fn over_long_line_is_an_error_even_without_newline() {
        let frames = decode_all(&vec![b'x'; MAX_LINE + 10]);
        assert_eq!(frames, vec![Err(ProtocolError::LineTooLong { limit: MAX_LINE })]);
        let mut long = vec![b'1'; MAX_LINE + 10];
        long.push(b'\n');
        assert!(matches!(decode_all(&long)[0], Err(ProtocolError::LineTooLong { .. })));
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(matches!(decode_all(b"1 ok twelve\n")[0], Err(ProtocolError::BadLength { .. })));
        assert!(matches!(decode_all(b"1 ok -3\n")[0], Err(ProtocolError::BadLength { .. })));
        assert!(matches!(decode_all(b"1 ok 99999999999999999999999\n")[0], Err(ProtocolError::BadLength { .. })));
        assert_eq!(decode_all(b"1 ok 999999999\n")[0], Err(ProtocolError::PayloadTooLarge { announced: 999_999_999 }));
    }

    #[test]
    fn truncated_payload_and_line_are_errors_at_end_of_stream() {
        assert_eq!(decode_all(b"1 ok 100\nonly ten b"), vec![Err(ProtocolError::Truncated { expected: 100, got: 10 })]);
        assert!(matches!(decode_all(b"1 ok 3\nabc2 ok")[1], Err(ProtocolError::Truncated { .. })));
    }

    #[test]
    fn non_utf8_and_unknown_status_are_errors() {
        assert!(matches!(decode_all(b"* uevent add \xff\xfe\n")[0], Err(ProtocolError::NonUtf8 { .. })));
        assert!(matches!(decode_all(b"1 maybe 3\n")[0], Err(ProtocolError::BadStatus { .. })));
        assert!(matches!(decode_all(b"1 err lowercase text\n")[0], Err(ProtocolError::Malformed { .. })));
        assert!(matches!(decode_all(b"* uevent add\n")[0], Err(ProtocolError::Malformed { .. })));
        assert!(matches!(decode_all(b"*bad\n")[0], Err(ProtocolError::Malformed { .. })));
    }

    #[test]
    fn unknown_async_lines_are_kept_not_fatal() {
        assert_eq!(decode_all(b"* future thing\n"), vec![Ok(Frame::Async("future thing".into()))]);
    }

    /// A flood of the shortest lines and frames, pushed at once and byte by
    /// byte: every frame comes out, and the buffer never holds more than
    /// what is unconsumed plus as much again (no quadratic front-draining:
    /// a million lines would take hours with it).
    #[test]
    fn a_flood_of_short_lines_decodes_in_linear_time_and_bounded_memory() {
        let mut input = Vec::new();
        for i in 0..200_000 {
            input.extend_from_slice(b"\n\r\n");
            input.extend_from_slice(format!("* n{i}\n").as_bytes());
        }
        input.extend_from_slice(b"1 ok 2\nab");
        let mut d = Decoder::default();
        d.push(&input);
        let mut frames = 0;
        while let Some(f) = d.next_frame() {
            f.unwrap();
            frames += 1;
        }
        assert_eq!(frames, 200_001);
        assert_eq!(d.buffered(), 0);

        let mut d = Decoder::default();
        let mut frames = 0;
        let mut peak = 0;
        for chunk in input.chunks(7) {
            d.push(chunk);
            peak = peak.max(d.buf.len());
            while let Some(f) = d.next_frame() {
                f.unwrap();
                frames += 1;
            }
        }
        assert_eq!(frames, 200_001);
        assert!(peak <= 64, "the consumed front is dropped: peak buffer {peak} bytes");
    }
}
