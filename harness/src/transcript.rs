//! Write-through logs of everything crossing a channel (QMP, control), kept
//! as test artifacts. Lines are written as they happen, so a hung or killed
//! run still leaves what it saw.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone)]
pub struct Transcript {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    file: Option<File>,
    start: Instant,
}

impl Transcript {
    /// A transcript written to `path` (created or truncated).
    pub fn create(path: &Path) -> std::io::Result<Transcript> {
        let file = File::create(path)?;
        Ok(Transcript { inner: Arc::new(Mutex::new(Inner { file: Some(file), start: Instant::now() })) })
    }

    /// A transcript that keeps nothing (benchmarks).
    pub fn discard() -> Transcript {
        Transcript { inner: Arc::new(Mutex::new(Inner { file: None, start: Instant::now() })) }
    }

    /// One line: milliseconds since the start, a direction marker, the text.
    pub fn line(&self, direction: &str, text: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let ms = inner.start.elapsed().as_secs_f64() * 1000.0;
        if let Some(file) = inner.file.as_mut() {
            // Logging must never fail a test; a full disk shows up elsewhere.
            let _ = writeln!(file, "{ms:10.3} {direction} {}", text.escape_debug());
        }
    }
}
