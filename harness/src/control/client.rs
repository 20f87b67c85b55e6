//! The control-channel client: send `<tag> <verb> ...`, await the reply with
//! that tag. Requests may overlap (a held read and the removal it blocks),
//! so every request gets its own tag and waits independently.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{oneshot, watch};

use super::frame::{Decoder, Frame, ProtocolError, Uevent};
use crate::transcript::Transcript;

/// Longest request line the guest accepts (contract 2).
pub const MAX_REQUEST: usize = 4096;
/// Most uevents kept: far beyond any scenario, and a bound on what a guest
/// gone wild can make the harness hold.
pub const MAX_UEVENTS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The guest answered `err <ERRNO> <text>`.
    Guest { errno: String, text: String },
    /// The guest sent bytes that break the protocol.
    Protocol(ProtocolError),
    /// The channel closed (QEMU exited, or the guest stopped).
    Closed(String),
    /// No reply within the deadline.
    Timeout { request: String, after: Duration },
    /// The request itself cannot be sent (too long, not ASCII).
    BadRequest(String),
}

impl ControlError {
    /// The errno of a guest error, for assertions.
    pub fn errno(&self) -> Option<&str> {
        match self {
            ControlError::Guest { errno, .. } => Some(errno),
            _ => None,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::Guest { errno, text } => write!(f, "guest answered {errno}: {text}"),
            ControlError::Protocol(e) => write!(f, "control protocol error: {e}"),
            ControlError::Closed(why) => write!(f, "control channel closed: {why}"),
            ControlError::Timeout { request, after } => {
                write!(f, "timed out after {after:?} waiting for the guest to answer {request:?}")
            }
            ControlError::BadRequest(why) => write!(f, "bad request: {why}"),
        }
    }
}

impl std::error::Error for ControlError {}

type Pending = HashMap<String, oneshot::Sender<Result<Vec<u8>, ControlError>>>;

struct Shared {
    pending: Mutex<Pending>,
    /// Tags whose reply has arrived.
    answered: Mutex<std::collections::HashSet<String>>,
    uevents: Mutex<Vec<Uevent>>,
    /// When each uevent was read, in the same order.
    uevent_times: Mutex<Vec<Instant>>,
    bugs: Mutex<Vec<String>>,
    /// Set once; every later request fails with it.
    failure: Mutex<Option<ControlError>>,
    changed: watch::Sender<u64>,
}

#[derive(Clone)]
pub struct Control {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    shared: Arc<Shared>,
    next_tag: Arc<AtomicU64>,
    transcript: Transcript,
    uevent_log: Transcript,
    pub request_timeout: Duration,
}

/// A request on the wire whose reply has not been awaited yet.
pub struct PendingReply {
    request: String,
    tag: String,
    shared: Arc<Shared>,
    rx: oneshot::Receiver<Result<Vec<u8>, ControlError>>,
    timeout: Duration,
}

impl PendingReply {
    /// Wait for the reply, up to the channel's request timeout.
    pub async fn wait(self) -> Result<Vec<u8>, ControlError> {
        let timeout = self.timeout;
        self.wait_for(timeout).await
    }

    pub async fn wait_for(self, timeout: Duration) -> Result<Vec<u8>, ControlError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::Closed(format!("no reply to {:?}", self.request))),
            Err(_) => Err(ControlError::Timeout { request: self.request, after: timeout }),
        }
    }

    /// Has the reply (or a channel failure) arrived? Does not consume it.
    pub fn is_answered(&self) -> bool {
        self.shared.answered.lock().unwrap().contains(&self.tag) || self.shared.failure.lock().unwrap().is_some()
    }

    pub fn request(&self) -> &str {
        &self.request
    }
}

impl Control {
    pub async fn connect(
        path: &std::path::Path,
        transcript: Transcript,
        uevent_log: Transcript,
        request_timeout: Duration,
    ) -> std::io::Result<Control> {
        let stream = UnixStream::connect(path).await?;
        let (read, write) = stream.into_split();
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            answered: Mutex::new(std::collections::HashSet::new()),
            uevents: Mutex::new(Vec::new()),
            uevent_times: Mutex::new(Vec::new()),
            bugs: Mutex::new(Vec::new()),
            failure: Mutex::new(None),
            changed,
        });
        tokio::spawn(read_loop(read, Arc::clone(&shared), transcript.clone(), uevent_log.clone()));
        Ok(Control {
            writer: Arc::new(tokio::sync::Mutex::new(write)),
            shared,
            next_tag: Arc::new(AtomicU64::new(1)),
            transcript,
            uevent_log,
            request_timeout,
        })
    }

    /// Send a request now; await its reply later with [`PendingReply::wait`].
    pub async fn send(&self, request: &str) -> Result<PendingReply, ControlError> {
        if request.len() > MAX_REQUEST - 24 || request.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            return Err(ControlError::BadRequest(format!("not a printable ASCII line of at most {MAX_REQUEST} bytes")));
        }
        if let Some(e) = self.shared.failure.lock().unwrap().clone() {
            return Err(e);
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = oneshot::channel();
        self.shared.pending.lock().unwrap().insert(tag.clone(), tx);
        let line = format!("{tag} {request}\n");
        self.transcript.line("->", line.trim_end());
        let mut w = self.writer.lock().await;
        if let Err(e) = w.write_all(line.as_bytes()).await {
            self.shared.pending.lock().unwrap().remove(&tag);
            return Err(ControlError::Closed(format!("sending {request:?}: {e}")));
        }
        Ok(PendingReply {
            request: request.to_string(),
            tag,
            shared: Arc::clone(&self.shared),
            rx,
            timeout: self.request_timeout,
        })
    }

    /// Send and wait: the payload of an `ok` reply.
    pub async fn call(&self, request: &str) -> Result<Vec<u8>, ControlError> {
        self.send(request).await?.wait().await
    }

    /// `call` for replies that are text.
    pub async fn call_text(&self, request: &str) -> Result<String, ControlError> {
        let bytes = self.call(request).await?;
        String::from_utf8(bytes).map_err(|e| ControlError::Protocol(ProtocolError::NonUtf8 { bytes: e.into_bytes() }))
    }

    /// Every uevent received so far, in arrival order.
    pub fn uevents(&self) -> Vec<Uevent> {
        self.shared.uevents.lock().unwrap().clone()
    }

    /// Position in the uevent log, for [`Control::wait_uevent`].
    pub fn uevent_cursor(&self) -> usize {
        self.shared.uevents.lock().unwrap().len()
    }

    /// Wait for the first uevent at or after `from` that matches; returns
    /// its position and the event. Fails when the channel fails first.
    /// Callers put their own deadline around this.
    pub async fn wait_uevent(
        &self,
        from: usize,
        matches: impl Fn(&Uevent) -> bool,
    ) -> Result<(usize, Uevent), ControlError> {
        let mut rx = self.shared.changed.subscribe();
        loop {
            {
                let uevents = self.shared.uevents.lock().unwrap();
                if let Some((i, u)) = uevents.iter().enumerate().skip(from).find(|(_, u)| matches(u)) {
                    return Ok((i, u.clone()));
                }
            }
            if let Some(e) = self.shared.failure.lock().unwrap().clone() {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return Err(ControlError::Closed("control reader stopped".into()));
            }
        }
    }

    /// When the uevent at `index` was read.
    pub fn uevent_received_at(&self, index: usize) -> Option<Instant> {
        self.shared.uevent_times.lock().unwrap().get(index).copied()
    }

    /// `* bug` lines received so far (BUGs and panics).
    pub fn bugs(&self) -> Vec<String> {
        self.shared.bugs.lock().unwrap().clone()
    }

    /// Why the channel failed, if it did.
    pub fn failure(&self) -> Option<ControlError> {
        self.shared.failure.lock().unwrap().clone()
    }

    /// Resolves once the channel has failed or closed.
    pub async fn closed(&self) -> ControlError {
        let mut rx = self.shared.changed.subscribe();
        loop {
            if let Some(e) = self.failure() {
                return e;
            }
            if rx.changed().await.is_err() {
                return ControlError::Closed("control reader stopped".into());
            }
        }
    }

    pub fn uevent_log(&self) -> &Transcript {
        &self.uevent_log
    }
}

async fn read_loop(mut read: OwnedReadHalf, shared: Arc<Shared>, transcript: Transcript, uevent_log: Transcript) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let failure = 'outer: loop {
        let n = match read.read(&mut buf).await {
            Ok(0) => match decoder.finish() {
                Ok(()) => break ControlError::Closed("the guest closed the channel (QEMU exited?)".into()),
                Err(e) => break ControlError::Protocol(e),
            },
            Ok(n) => n,
            Err(e) => break ControlError::Closed(format!("reading: {e}")),
        };
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next_frame() {
            let frame = match frame {
                Ok(f) => f,
                Err(e) => {
                    transcript.line("!!", &e.to_string());
                    break 'outer ControlError::Protocol(e);
                }
            };
            match frame {
                Frame::Ok { tag, payload } => {
                    transcript.line("<-", &format!("{tag} ok {} {}", payload.len(), String::from_utf8_lossy(&payload)));
                    reply(&shared, &tag, Ok(payload));
                }
                Frame::Err { tag, errno, text } => {
                    transcript.line("<-", &format!("{tag} err {errno} {text}"));
                    reply(&shared, &tag, Err(ControlError::Guest { errno, text }));
                }
                Frame::Uevent(_) if shared.uevents.lock().unwrap().len() >= MAX_UEVENTS => {
                    break 'outer ControlError::Closed(format!("the guest sent more than {MAX_UEVENTS} uevents"));
                }
                Frame::Uevent(u) => {
                    transcript.line("<-", &format!("* uevent {u}"));
                    uevent_log.line("", &u.to_string());
                    shared.uevent_times.lock().unwrap().push(Instant::now());
                    shared.uevents.lock().unwrap().push(u);
                }
                Frame::Bug(text) => {
                    transcript.line("<-", &format!("* bug {text}"));
                    shared.bugs.lock().unwrap().push(text);
                }
                Frame::Async(line) => transcript.line("<-", &format!("* {line}")),
            }
            shared.changed.send_modify(|n| *n += 1);
        }
    };
    transcript.line("--", &failure.to_string());
    *shared.failure.lock().unwrap() = Some(failure.clone());
    for (_, tx) in shared.pending.lock().unwrap().drain() {
        let _ = tx.send(Err(failure.clone()));
    }
    shared.changed.send_modify(|n| *n += 1);
}

fn reply(shared: &Shared, tag: &str, result: Result<Vec<u8>, ControlError>) {
    shared.answered.lock().unwrap().insert(tag.to_string());
    if let Some(tx) = shared.pending.lock().unwrap().remove(tag) {
        let _ = tx.send(result);
    }
}
