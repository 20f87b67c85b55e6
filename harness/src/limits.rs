//! Bounds on what a guest (or a QEMU it drives) can make the harness hold.
//! Everything the guest sends is untrusted: a guest gone wild must end in a
//! clear error or be cut with a note in the artifacts, never exhaust the
//! harness's memory or disk. Lines (8 KiB) and payloads (16 MiB) are bounded
//! by the decoder (`control::frame`); the rest is here.
//!
//! | path | bound | beyond it |
//! |---|---|---|
//! | uevent log | [`Limits::uevent_bytes`] | the channel fails with an error naming the limit |
//! | notice log (`* ...` lines) | [`Limits::notice_bytes`] | the same |
//! | `* bug` lines | [`Limits::bugs_kept`] lines, [`Limits::bug_bytes`] | the rest are counted, not kept; errors quote at most [`BUGS_QUOTED`] |
//! | QMP events | [`Limits::qmp_event_bytes`] | the QMP connection fails with an error naming the limit |
//! | each transcript file | [`Limits::transcript_bytes`] | later lines are not written; the file says so |
//! | one transcript entry | [`TRANSCRIPT_ENTRY_BYTES`] | the entry is cut and says how much |
//! | console tail in errors | [`CONSOLE_TAIL_BYTES`] read from the end of the file | never more is read |
//!
//! The uevent, notice and QMP event bounds count what is kept, not what was
//! ever received: a long run drops what it has handled with
//! [`crate::Vm::forget_events`] (the explorer does after every step), so
//! only a guest that floods between two forgets reaches them.

/// Most `* bug` lines quoted in one error message.
pub const BUGS_QUOTED: usize = 5;
/// Longest transcript entry (a payload, a line); the rest is cut with a note.
pub const TRANSCRIPT_ENTRY_BYTES: usize = 16 << 10;
/// How much of the end of the console log an error message reads.
pub const CONSOLE_TAIL_BYTES: u64 = 16 << 10;

/// The bounds of one VM's channels (see the module doc). The defaults are
/// far beyond any scenario; tests of the bounds themselves lower them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of memory uevents may take (their text, plus the overhead of
    /// each key and value as strings).
    pub uevent_bytes: usize,
    /// Bytes of notice lines kept.
    pub notice_bytes: usize,
    /// `* bug` lines kept.
    pub bugs_kept: usize,
    /// Bytes of `* bug` lines kept.
    pub bug_bytes: usize,
    /// Bytes of QMP events kept (their JSON text).
    pub qmp_event_bytes: usize,
    /// Bytes written to each transcript file.
    pub transcript_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            uevent_bytes: 8 << 20,
            notice_bytes: 4 << 20,
            bugs_kept: 64,
            bug_bytes: 64 << 10,
            qmp_event_bytes: 4 << 20,
            transcript_bytes: 32 << 20,
        }
    }
}

/// Human-readable byte counts for error messages and notes.
pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// The last `max` bytes of a file, from the first whole line in them, read
/// without reading the rest. Empty if the file cannot be read.
pub fn file_tail(path: &std::path::Path, max: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else { return String::new() };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let from = len.saturating_sub(max);
    if file.seek(SeekFrom::Start(from)).is_err() {
        return String::new();
    }
    let mut bytes = Vec::new();
    let _ = file.take(max).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    match (from > 0, text.find('\n')) {
        (true, Some(newline)) => text[newline + 1..].to_string(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tail_reads_only_the_end_from_a_line_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        let mut text = String::new();
        for i in 0..200_000 {
            text.push_str(&format!("line {i}\n"));
        }
        std::fs::write(&path, &text).unwrap();
        let tail = file_tail(&path, 100);
        assert!(tail.len() <= 100 && tail.starts_with("line "), "{tail:?}");
        assert!(tail.ends_with("line 199999\n"));
        assert_eq!(file_tail(&dir.path().join("missing"), 100), "");
        std::fs::write(&path, "short\n").unwrap();
        assert_eq!(file_tail(&path, 100), "short\n");
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(bytes(8 << 20), "8 MiB");
        assert_eq!(bytes(64 << 10), "64 KiB");
        assert_eq!(bytes(1000), "1000 bytes");
    }
}
