//! Write-through logs of everything crossing a channel (QMP, control), kept
//! as test artifacts. Lines are written as they happen, so a hung or killed
//! run still leaves what it saw.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::limits::{self, Limits, TRANSCRIPT_ENTRY_BYTES};

/// A line-per-message log of a channel (an artifact), or nothing for quiet runs. Clones write to the same file.
#[derive(Clone)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    file: Option<File>,
    start: Instant,
    /// Bytes this transcript may still write; see [`crate::limits`].
    room: u64,
    limit: u64,
}

impl Transcript {
    /// A transcript written to `path` (created or truncated), with the
    /// default size bound ([`Limits::transcript_bytes`]).
    pub fn create(path: &Path) -> std::io::Result<Transcript> {
        Transcript::create_bounded(path, Limits::default().transcript_bytes)
    }

    /// A transcript of at most about `limit` bytes: once full, it says so in
    /// a last line and records nothing more.
    pub fn create_bounded(path: &Path, limit: u64) -> std::io::Result<Transcript> {
        let file = File::create(path)?;
        let inner = Inner { file: Some(file), start: Instant::now(), room: limit, limit };
        Ok(Transcript { inner: Arc::new(Mutex::new(inner)) })
    }

    /// A transcript that keeps nothing (benchmarks).
    pub fn discard() -> Transcript {
        Transcript { inner: Arc::new(Mutex::new(Inner { file: None, start: Instant::now(), room: 0, limit: 0 })) }
    }

    /// One line: milliseconds since the start, a direction marker, the text.
    pub fn line(&self, direction: &str, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ms = inner.start.elapsed().as_secs_f64() * 1000.0;
        if inner.file.is_none() {
            return;
        }
        // One entry is cut at a character boundary, with a note.
        let mut end = text.len().min(TRANSCRIPT_ENTRY_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let cut = match text.len() - end {
            0 => String::new(),
            rest => format!(" [... {} more bytes not recorded]", rest),
        };
        let entry = format!("{ms:10.3} {direction} {}{cut}\n", text[..end].escape_debug());
        let limit = inner.limit;
        let (fits, file) = (entry.len() as u64 <= inner.room, inner.file.as_mut().expect("checked above"));
        // Logging must never fail a test; a full disk shows up elsewhere.
        if fits {
            let _ = file.write_all(entry.as_bytes());
            inner.room -= entry.len() as u64;
        } else {
            let _ = writeln!(
                file,
                "{ms:10.3} -- transcript cut: it reached its limit of {}, later lines are not recorded",
                limits::bytes(limit)
            );
            inner.file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transcript_stops_at_its_limit_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.log");
        let t = Transcript::create_bounded(&path, 100_000).unwrap();
        t.line("<-", &"x".repeat(50_000));
        for i in 0..10_000 {
            t.line("<-", &format!("line {i}"));
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.len() < 100_000 + 200, "{} bytes", text.len());
        assert!(text.contains(&format!("[... {} more bytes not recorded]", 50_000 - TRANSCRIPT_ENTRY_BYTES)));
        assert!(text.contains("line 100\n"));
        assert!(
            text.trim_end()
                .ends_with("transcript cut: it reached its limit of 100000 bytes, later lines are not recorded")
        );
    }
}
