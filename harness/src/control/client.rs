//! The control-channel client: send `<tag> <verb> ...`, await the reply with
//! that tag. Requests may overlap (a held read and the removal it blocks),
//! so every request gets its own tag and waits independently.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::watch;

use super::frame::{Decoder, Frame, ProtocolError, Uevent};
use crate::eventlog::EventLog;
use crate::limits::{self, Limits};
use crate::pending::{Pending, Reply};
use crate::transcript::Transcript;

/// Longest request line the guest accepts (`docs/control-protocol.md`), tag included.
pub const MAX_REQUEST: usize = 4096;
/// Room kept for the tag and its space.
const TAG_ROOM: usize = 24;

/// Why a control-channel request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    /// The guest answered `err <ERRNO> <text>`.
    Guest {
        /// The errno name (`ENOENT`, `ENODEV`, ...).
        errno: String,
        /// The guest's text.
        text: String,
    },
    /// The guest sent bytes that break the protocol.
    Protocol(ProtocolError),
    /// The channel closed (QEMU exited, or the guest stopped).
    Closed(String),
    /// No reply within the deadline.
    Timeout {
        /// The request.
        request: String,
        /// How long it waited.
        after: Duration,
    },
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

/// A uevent or notice, with its position among everything the guest sent.
/// Positions on one channel are causal: the guest wrote them in that order.
#[derive(Clone, Debug)]
pub struct Received<T> {
    /// Position among every frame the guest sent on the channel (1-based).
    pub frame: u64,
    /// When the harness read it.
    pub at: Instant,
    /// The uevent or notice.
    pub item: T,
}

/// Bytes an allocator adds to each heap block, roughly (glibc: 16).
const ALLOCATION_OVERHEAD: usize = 16;

/// What the guest said besides replies, bounded in bytes ([`Limits`]).
struct Log {
    uevents: EventLog<Received<Uevent>>,
    /// Other `* ...` lines (e.g. `hotplug eject 00:05`), in order.
    notices: EventLog<Received<String>>,
    limits: Limits,
    bugs: Vec<String>,
    bug_bytes: usize,
    /// `* bug` lines beyond the limits: counted, not kept.
    bugs_cut: usize,
    bug_bytes_cut: usize,
    /// Tags whose reply has arrived.
    answered: HashSet<String>,
}

impl Log {
    fn new(limits: Limits) -> Log {
        Log {
            uevents: EventLog::new(limits.uevent_bytes),
            notices: EventLog::new(limits.notice_bytes),
            limits,
            bugs: Vec::new(),
            bug_bytes: 0,
            bugs_cut: 0,
            bug_bytes_cut: 0,
            answered: HashSet::new(),
        }
    }

    /// Keep a uevent, or say why the channel must stop.
    fn add_uevent(&mut self, item: Received<Uevent>) -> Result<(), ControlError> {
        let u = &item.item;
        // What it costs in memory, not on the wire: each key is two strings,
        // so a line of thousands of tiny keys weighs ten times its length.
        let per_key = std::mem::size_of::<(String, String)>() + 2 * ALLOCATION_OVERHEAD;
        let size =
            u.action.len() + u.devpath.len() + u.env.iter().map(|(k, v)| k.len() + v.len() + per_key).sum::<usize>();
        self.uevents.push(item, size).map_err(|full| {
            ControlError::Closed(format!(
                "the guest sent more than {} of uevents ({} uevents kept); the harness stopped reading it \
                 (limit: Limits::uevent_bytes)",
                limits::bytes(self.limits.uevent_bytes as u64),
                full.kept
            ))
        })
    }

    fn add_notice(&mut self, item: Received<String>) -> Result<(), ControlError> {
        let size = item.item.len();
        self.notices.push(item, size).map_err(|full| {
            ControlError::Closed(format!(
                "the guest sent more than {} of notice lines ({} kept); the harness stopped reading it \
                 (limit: Limits::notice_bytes)",
                limits::bytes(self.limits.notice_bytes as u64),
                full.kept
            ))
        })
    }

    /// Keep a `* bug` line if there is room; count it otherwise. Never fatal:
    /// the guest stops by itself after a BUG, and its exit says the rest.
    /// Answers whether it was kept.
    fn add_bug(&mut self, text: String) -> bool {
        if self.bugs.len() >= self.limits.bugs_kept || self.bug_bytes + text.len() > self.limits.bug_bytes {
            self.bugs_cut += 1;
            self.bug_bytes_cut += text.len();
            return false;
        }
        self.bug_bytes += text.len();
        self.bugs.push(text);
        true
    }

    /// The note that stands for the `* bug` lines not kept.
    fn bugs_cut_note(&self) -> Option<String> {
        (self.bugs_cut > 0).then(|| {
            format!(
                "... and {} more `* bug` lines ({}) not kept (limits: Limits::bugs_kept, Limits::bug_bytes)",
                self.bugs_cut,
                limits::bytes(self.bug_bytes_cut as u64)
            )
        })
    }
}

struct Shared {
    pending: Pending<String, Vec<u8>, ControlError>,
    log: Mutex<Log>,
    /// Bumped on every frame and when the channel fails.
    changed: watch::Sender<u64>,
    /// While true the reader leaves the socket alone ([`Control::pause_reading`]).
    paused: watch::Sender<bool>,
}

/// The control-channel client: requests with tags, replies matched to them, and the uevents, notices and BUG reports the guest sends. Cheap to clone; clones share the channel.
#[derive(Clone)]
pub struct Control {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    shared: Arc<Shared>,
    next_tag: Arc<AtomicU64>,
    transcript: Transcript,
    /// How long [`PendingReply::wait`] and [`Control::call`] wait for a reply.
    pub request_timeout: Duration,
}

/// A request on the wire whose reply has not been awaited yet.
pub struct PendingReply {
    request: String,
    tag: String,
    shared: Arc<Shared>,
    rx: Reply<Vec<u8>, ControlError>,
    timeout: Duration,
}

impl PendingReply {
    /// Wait for the reply, up to the channel's request timeout.
    pub async fn wait(self) -> Result<Vec<u8>, ControlError> {
        let timeout = self.timeout;
        self.wait_for(timeout).await
    }

    /// Wait for the reply, up to `timeout`.
    pub async fn wait_for(self, timeout: Duration) -> Result<Vec<u8>, ControlError> {
        match tokio::time::timeout(timeout, self.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::Closed(format!("no reply to {:?}", self.request))),
            Err(_) => Err(ControlError::Timeout { request: self.request, after: timeout }),
        }
    }

    /// Has the reply arrived? Does not consume it. (A failed channel is not
    /// an answer: `wait` reports that.)
    pub fn is_answered(&self) -> bool {
        self.shared.log.lock().unwrap().answered.contains(&self.tag)
    }

    /// The request, as sent (without the tag).
    pub fn request(&self) -> &str {
        &self.request
    }
}

impl Control {
    /// Connect to the guest's control socket. `transcript` records every line both ways, `uevent_log` every uevent.
    pub async fn connect(
        path: &std::path::Path,
        transcript: Transcript,
        uevent_log: Transcript,
        request_timeout: Duration,
        limits: Limits,
    ) -> std::io::Result<Control> {
        let stream = UnixStream::connect(path).await?;
        let (read, write) = stream.into_split();
        let (changed, _) = watch::channel(0);
        let (paused, _) = watch::channel(false);
        let shared =
            Arc::new(Shared { pending: Pending::default(), log: Mutex::new(Log::new(limits)), changed, paused });
        tokio::spawn(read_loop(read, Arc::clone(&shared), transcript.clone(), uevent_log));
        Ok(Control {
            writer: Arc::new(tokio::sync::Mutex::new(write)),
            shared,
            next_tag: Arc::new(AtomicU64::new(1)),
            transcript,
            request_timeout,
        })
    }

    /// Send a request now; await its reply later with [`PendingReply::wait`].
    /// Sending is bounded by the request timeout too: a guest that stops
    /// reading its UART must not hang the harness. A write that times out
    /// may have left half a line, so the channel is then failed for good.
    pub async fn send(&self, request: &str) -> Result<PendingReply, ControlError> {
        if request.len() > MAX_REQUEST - TAG_ROOM || request.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
            let limit = MAX_REQUEST - TAG_ROOM;
            return Err(ControlError::BadRequest(format!("not a printable ASCII line of at most {limit} bytes")));
        }
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed).to_string();
        let rx = self.shared.pending.register(tag.clone())?;
        let line = format!("{tag} {request}\n");
        self.transcript.line("->", line.trim_end());
        let written = tokio::time::timeout(self.request_timeout, async {
            self.writer.lock().await.write_all(line.as_bytes()).await
        })
        .await;
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(ControlError::Closed(format!("sending {request:?}: {e}"))),
            Err(_) => Some(ControlError::Closed(format!(
                "the guest did not take {request:?} within {:?}; channel abandoned",
                self.request_timeout
            ))),
        };
        if let Some(e) = failure {
            self.shared.pending.cancel(&tag);
            self.shared.pending.fail(e.clone());
            self.shared.changed.send_modify(|n| *n += 1);
            return Err(e);
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

    /// Every uevent received so far (since [`Control::forget_received`],
    /// if it was called), in arrival order.
    pub fn uevents(&self) -> Vec<Uevent> {
        self.shared.log.lock().unwrap().uevents.iter().map(|r| r.item.clone()).collect()
    }

    /// The uevents at or after position `from` (a [`Control::uevent_cursor`]
    /// taken before acting), in arrival order.
    pub fn uevents_since(&self, from: usize) -> Vec<Uevent> {
        self.shared.log.lock().unwrap().uevents.since(from).map(|(_, r)| r.item.clone()).collect()
    }

    /// Every notice received so far (the `* <text>` lines that are neither
    /// uevents nor BUGs, such as `hotplug eject 00:05` or `held <path>`),
    /// without the `* `, in arrival order (since
    /// [`Control::forget_received`], if it was called).
    pub fn notices(&self) -> Vec<String> {
        self.shared.log.lock().unwrap().notices.iter().map(|r| r.item.clone()).collect()
    }

    /// The notices at or after position `from` (a [`Control::notice_cursor`]).
    pub fn notices_since(&self, from: usize) -> Vec<String> {
        self.shared.log.lock().unwrap().notices.since(from).map(|(_, r)| r.item.clone()).collect()
    }

    /// Position in the uevent log, for [`Control::wait_uevent`] and
    /// [`Control::uevents_since`]. Positions are absolute: forgetting does
    /// not move them.
    pub fn uevent_cursor(&self) -> usize {
        self.shared.log.lock().unwrap().uevents.cursor()
    }

    /// Position in the notice log, for [`Control::wait_notice`].
    pub fn notice_cursor(&self) -> usize {
        self.shared.log.lock().unwrap().notices.cursor()
    }

    /// Drop the uevents and notices received so far, so that their bytes
    /// no longer count against [`Limits::uevent_bytes`] and
    /// [`Limits::notice_bytes`]. For long runs (the explorer forgets after
    /// every step): the bounds are meant to stop a flood, not a guest that
    /// has been busy for an hour. Positions taken earlier stay valid; what
    /// they pointed at is gone.
    pub fn forget_received(&self) {
        let mut log = self.shared.log.lock().unwrap();
        log.uevents.forget();
        log.notices.forget();
    }

    /// Wait for the first uevent at or after position `from` that matches.
    /// Fails when the channel fails first. Callers put their own deadline
    /// around this.
    pub async fn wait_uevent(
        &self,
        from: usize,
        matches: impl Fn(&Uevent) -> bool,
    ) -> Result<Received<Uevent>, ControlError> {
        self.wait_log(|log| log.uevents.since(from).map(|(_, r)| r).find(|r| matches(&r.item)).cloned()).await
    }

    /// Wait for the first notice at or after position `from` that matches.
    pub async fn wait_notice(
        &self,
        from: usize,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Received<String>, ControlError> {
        self.wait_log(|log| log.notices.since(from).map(|(_, r)| r).find(|r| matches(&r.item)).cloned()).await
    }

    async fn wait_log<T>(&self, find: impl Fn(&Log) -> Option<T>) -> Result<T, ControlError> {
        let mut rx = self.shared.changed.subscribe();
        loop {
            if let Some(found) = find(&self.shared.log.lock().unwrap()) {
                return Ok(found);
            }
            if let Some(e) = self.shared.pending.failure() {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return Err(ControlError::Closed("control reader stopped".into()));
            }
        }
    }

    /// `* bug` lines received so far (BUGs and panics), as many as the
    /// limits keep, then one line saying how many more were not kept.
    pub fn bugs(&self) -> Vec<String> {
        let log = self.shared.log.lock().unwrap();
        log.bugs.iter().cloned().chain(log.bugs_cut_note()).collect()
    }

    /// The `* bug` lines for an error message: at most
    /// [`limits::BUGS_QUOTED`], then how many more there are.
    pub fn bugs_for_error(&self) -> Vec<String> {
        let log = self.shared.log.lock().unwrap();
        let mut out: Vec<String> = log.bugs.iter().take(limits::BUGS_QUOTED).cloned().collect();
        let more = log.bugs.len().saturating_sub(limits::BUGS_QUOTED) + log.bugs_cut;
        if more > 0 {
            out.push(format!("... and {more} more `* bug` lines (in the control transcript)"));
        }
        out
    }

    /// Close the channel under everyone's feet, as if QEMU had closed its
    /// end: for testing how waits end when the channel goes away.
    pub async fn sever(&self) -> std::io::Result<()> {
        let writer = self.writer.lock().await;
        crate::qmp::sever(writer.as_ref())
    }

    /// Stop (true) or resume (false) reading the channel, as a slow reader
    /// would: the guest's output then backs up in QEMU and the guest's
    /// UART. For testing that the guest keeps working meanwhile.
    pub fn pause_reading(&self, paused: bool) {
        self.shared.paused.send_replace(paused);
    }

    /// Why the channel failed, if it did.
    pub fn failure(&self) -> Option<ControlError> {
        self.shared.pending.failure()
    }
}

async fn read_loop(mut read: OwnedReadHalf, shared: Arc<Shared>, transcript: Transcript, uevent_log: Transcript) {
    let mut decoder = Decoder::default();
    let mut buf = vec![0u8; 64 * 1024];
    let mut frame_index = 0u64;
    let mut paused = shared.paused.subscribe();
    let failure = 'outer: loop {
        while *paused.borrow_and_update() {
            let _ = paused.changed().await;
        }
        // A pause stops a read already waiting, too (reads are cancel-safe).
        let read = tokio::select! {
            read = read.read(&mut buf) => read,
            _ = paused.wait_for(|p| *p) => continue,
        };
        let n = match read {
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
            frame_index += 1;
            let at = Instant::now();
            match frame {
                Frame::Ok { tag, payload } => {
                    // Only the head of a big payload is worth converting.
                    let head = &payload[..payload.len().min(limits::TRANSCRIPT_ENTRY_BYTES + 1)];
                    transcript.line("<-", &format!("{tag} ok {} {}", payload.len(), String::from_utf8_lossy(head)));
                    if let Err(e) = reply(&shared, &tag, Ok(payload)) {
                        break 'outer e;
                    }
                }
                Frame::Err { tag, errno, text } => {
                    transcript.line("<-", &format!("{tag} err {errno} {text}"));
                    if let Err(e) = reply(&shared, &tag, Err(ControlError::Guest { errno, text })) {
                        break 'outer e;
                    }
                }
                Frame::Uevent(u) => {
                    transcript.line("<-", &format!("* uevent {u}"));
                    let line = u.to_string();
                    if let Err(e) = shared.log.lock().unwrap().add_uevent(Received { frame: frame_index, at, item: u })
                    {
                        uevent_log.line("--", &e.to_string());
                        break 'outer e;
                    }
                    uevent_log.line("", &line);
                }
                Frame::Bug(text) => {
                    transcript.line("<-", &format!("* bug {text}"));
                    let mut log = shared.log.lock().unwrap();
                    if !log.add_bug(text) && log.bugs_cut == 1 {
                        transcript.line("--", "later `* bug` lines are not kept in memory (Limits::bugs_kept)");
                    }
                }
                Frame::Async(line) => {
                    transcript.line("<-", &format!("* {line}"));
                    if let Err(e) =
                        shared.log.lock().unwrap().add_notice(Received { frame: frame_index, at, item: line })
                    {
                        break 'outer e;
                    }
                }
            }
            shared.changed.send_modify(|n| *n += 1);
        }
    };
    transcript.line("--", &failure.to_string());
    shared.pending.fail(failure);
    shared.changed.send_modify(|n| *n += 1);
}

/// Hand a reply to its request. A reply nobody asked for (unknown tag, or a
/// second answer) breaks the protocol: the guest is confused about what it
/// was asked, and nothing it says can be matched any more.
fn reply(shared: &Shared, tag: &str, result: Result<Vec<u8>, ControlError>) -> Result<(), ControlError> {
    shared.log.lock().unwrap().answered.insert(tag.to_string());
    if shared.pending.resolve(&tag.to_string(), result) {
        Ok(())
    } else {
        Err(ControlError::Protocol(ProtocolError::Malformed {
            line: format!("{tag} ..."),
            why: "reply to no pending request",
        }))
    }
}
