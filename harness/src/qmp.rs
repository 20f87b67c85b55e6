//! A QMP client on tokio.
//!
//! Commands are typed with the `qapi` crate (`qapi::qmp::device_add`, ...);
//! the transport is ours. qapi 0.15 carries QEMU 9.1's schema and its event
//! decoder fails hard on an event it does not know, so events are kept as
//! `serde_json::Value`: an unknown event never breaks the stream.
//!
//! One reader task owns the socket's read half: replies go to the command
//! that waits for them (matched by `id`), events are appended to a log that
//! waiters scan from a cursor. QEMU's refusals come back as
//! [`QmpError::Qemu`] carrying QEMU's own text.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::watch;

use crate::eventlog::EventLog;
use crate::pending::Pending;
use crate::transcript::Transcript;

/// Longest QMP message accepted (query-pci of a big machine is ~100 KiB).
const MAX_MESSAGE: usize = 8 << 20;

/// An asynchronous QMP event, decoded only as JSON.
#[derive(Clone, Debug)]
pub struct Event {
    /// The event's name (`DEVICE_DELETED`, `DEVICE_TRAY_MOVED`, ...).
    pub name: String,
    /// Its `data` object.
    pub data: Value,
    /// QEMU's timestamp in seconds.
    pub timestamp: f64,
    /// When the harness read it.
    pub received: std::time::Instant,
}

impl Event {
    /// `data.<key>` as a string.
    pub fn str(&self, key: &str) -> Option<&str> {
        self.data.get(key)?.as_str()
    }
}

/// Why a QMP command failed.
#[derive(Debug, Clone)]
pub enum QmpError {
    /// QEMU refused the command: `{"error": {"class", "desc"}}`.
    Qemu {
        /// QEMU's error class (`GenericError`, ...).
        class: String,
        /// QEMU's text.
        desc: String,
    },
    /// The connection is gone (QEMU exited) or spoke something that is not QMP.
    Transport(String),
    /// The reply did not have the shape the command's type expects.
    Decode(String),
}

impl fmt::Display for QmpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QmpError::Qemu { class, desc } => write!(f, "QEMU refused: {desc} ({class})"),
            QmpError::Transport(e) => write!(f, "QMP connection: {e}"),
            QmpError::Decode(e) => write!(f, "unexpected QMP reply: {e}"),
        }
    }
}

impl std::error::Error for QmpError {}

struct Shared {
    pending: Pending<u64, Value, QmpError>,
    events: Mutex<EventLog<Event>>,
    /// Bumped on every event and when the stream ends.
    changed: watch::Sender<u64>,
}

/// The QMP client: typed commands (from `qapi`) and every event, kept in arrival order. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Qmp {
    writer: Arc<tokio::sync::Mutex<OwnedWriteHalf>>,
    shared: Arc<Shared>,
    next_id: Arc<AtomicU64>,
    transcript: Transcript,
    /// How long a command may take before it is reported as hung.
    command_timeout: Duration,
}

impl Qmp {
    /// Connect to QEMU's QMP socket, read the greeting and negotiate.
    /// Events are kept up to `event_bytes` of their JSON text
    /// ([`crate::limits::Limits::qmp_event_bytes`]): the guest can make QEMU
    /// emit some (DEVICE_TRAY_MOVED) at will. Beyond that the connection
    /// fails with an error that names the limit.
    pub async fn connect(
        path: &Path,
        transcript: Transcript,
        command_timeout: Duration,
        event_bytes: usize,
    ) -> Result<Qmp> {
        let stream =
            UnixStream::connect(path).await.with_context(|| format!("connecting to QMP at {}", path.display()))?;
        let (read, write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut greeting = String::new();
        tokio::time::timeout(command_timeout, read_bounded_line(&mut reader, &mut greeting))
            .await
            .map_err(|_| anyhow!("timed out after {command_timeout:?} waiting for the QMP greeting"))??;
        transcript.line("<-", greeting.trim_end());
        let greeting: Value = serde_json::from_str(&greeting).context("QMP greeting is not JSON")?;
        if greeting.get("QMP").is_none() {
            return Err(anyhow!("not a QMP greeting: {greeting}"));
        }
        let (changed, _) = watch::channel(0);
        let shared =
            Arc::new(Shared { pending: Pending::default(), events: Mutex::new(EventLog::new(event_bytes)), changed });
        tokio::spawn(read_loop(reader, Arc::clone(&shared), transcript.clone(), event_bytes));
        let qmp = Qmp {
            writer: Arc::new(tokio::sync::Mutex::new(write)),
            shared,
            next_id: Arc::new(AtomicU64::new(1)),
            transcript,
            command_timeout,
        };
        qmp.execute_raw("qmp_capabilities", json!({})).await.context("QMP capabilities negotiation")?;
        Ok(qmp)
    }

    /// Run a typed command.
    pub async fn execute<C: qapi::Command>(&self, command: C) -> Result<C::Ok, QmpError> {
        let args = serde_json::to_value(&command).map_err(|e| QmpError::Decode(e.to_string()))?;
        let ret = self.execute_raw(C::NAME, args).await?;
        serde_json::from_value(ret.clone()).map_err(|e| QmpError::Decode(format!("{}: {e}: {ret}", C::NAME)))
    }

    /// Run a command by name with JSON arguments.
    pub async fn execute_raw(&self, name: &str, arguments: Value) -> Result<Value, QmpError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self.shared.pending.register(id)?;
        let mut message = json!({ "execute": name, "id": id });
        if arguments.as_object().is_some_and(|a| !a.is_empty()) {
            message["arguments"] = arguments;
        }
        let line = message.to_string();
        self.transcript.line("->", &line);
        // Bounded like the reply: a QEMU that stops reading its monitor must
        // not hang the harness. A write cut short leaves half a line, so the
        // connection is then failed for good.
        let written = tokio::time::timeout(self.command_timeout, async {
            let mut w = self.writer.lock().await;
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\n").await
        })
        .await;
        let failure = match written {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("sending {name}: {e}")),
            Err(_) => Some(format!("QEMU did not take {name} within {:?}; connection abandoned", self.command_timeout)),
        };
        if let Some(reason) = failure {
            self.shared.pending.cancel(&id);
            self.shared.pending.fail(QmpError::Transport(reason.clone()));
            self.shared.changed.send_modify(|n| *n += 1);
            return Err(QmpError::Transport(reason));
        }
        match tokio::time::timeout(self.command_timeout, rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(QmpError::Transport(format!("connection closed before {name} was answered"))),
            Err(_) => {
                self.shared.pending.cancel(&id);
                Err(QmpError::Transport(format!(
                    "timed out after {:?} waiting for QEMU to answer {name}",
                    self.command_timeout
                )))
            }
        }
    }

    /// Close the connection under everyone's feet, as if QEMU had closed
    /// its end: for testing how waits end when QMP goes away.
    pub async fn sever(&self) -> std::io::Result<()> {
        let writer = self.writer.lock().await;
        sever(writer.as_ref())
    }

    /// Position in the event log; pass it to [`Qmp::wait_event`] or
    /// [`Qmp::events_since`] to see only events that arrive after this
    /// point. Positions are absolute: forgetting does not move them.
    pub fn cursor(&self) -> usize {
        self.shared.events.lock().unwrap().cursor()
    }

    /// Every event received so far (since [`Qmp::forget_received`], if it
    /// was called).
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().iter().cloned().collect()
    }

    /// The events at or after position `from`.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        self.shared.events.lock().unwrap().since(from).map(|(_, e)| e.clone()).collect()
    }

    /// Drop the events received so far, so that their bytes no longer count
    /// against [`crate::limits::Limits::qmp_event_bytes`] (see
    /// [`crate::control::Control::forget_received`]).
    pub fn forget_received(&self) {
        self.shared.events.lock().unwrap().forget();
    }

    /// Wait for the first event at or after `from` that `matches`; returns
    /// it and its position. Fails when the connection ends first. Callers
    /// put their own deadline around this.
    pub async fn wait_event(&self, from: usize, matches: impl Fn(&Event) -> bool) -> Result<(usize, Event), QmpError> {
        let mut rx = self.shared.changed.subscribe();
        loop {
            {
                let events = self.shared.events.lock().unwrap();
                if let Some((i, e)) = events.since(from).find(|(_, e)| matches(e)) {
                    return Ok((i, e.clone()));
                }
            }
            if let Some(e) = self.shared.pending.failure() {
                return Err(e);
            }
            if rx.changed().await.is_err() {
                return Err(QmpError::Transport("QMP reader stopped".into()));
            }
        }
    }
}

/// Shut a socket down both ways through a duplicate of its descriptor: the
/// reader sees end of stream, the peer sees the connection close.
pub(crate) fn sever(stream: &UnixStream) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    let fd = stream.as_fd().try_clone_to_owned()?;
    std::os::unix::net::UnixStream::from(fd).shutdown(std::net::Shutdown::Both)
}

async fn read_bounded_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R, line: &mut String) -> Result<usize> {
    let mut buf = Vec::new();
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Err(anyhow!("QMP connection closed"));
        }
        if let Some(pos) = available.iter().position(|b| *b == b'\n') {
            buf.extend_from_slice(&available[..=pos]);
            reader.consume(pos + 1);
            break;
        }
        let n = available.len();
        buf.extend_from_slice(available);
        reader.consume(n);
        if buf.len() > MAX_MESSAGE {
            return Err(anyhow!("QMP message longer than {MAX_MESSAGE} bytes"));
        }
    }
    *line = String::from_utf8(buf).context("QMP message is not UTF-8")?;
    Ok(line.len())
}

async fn read_loop<R: tokio::io::AsyncBufRead + Unpin>(
    mut reader: R,
    shared: Arc<Shared>,
    transcript: Transcript,
    event_bytes_limit: usize,
) {
    let reason = loop {
        let mut line = String::new();
        if let Err(e) = read_bounded_line(&mut reader, &mut line).await {
            break e.to_string();
        }
        transcript.line("<-", line.trim_end());
        let message: Value = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => break format!("QEMU sent something that is not JSON ({e})"),
        };
        if let Some(name) = message.get("event").and_then(Value::as_str) {
            let timestamp = message
                .get("timestamp")
                .map(|t| {
                    t.get("seconds").and_then(Value::as_f64).unwrap_or(0.0)
                        + t.get("microseconds").and_then(Value::as_f64).unwrap_or(0.0) / 1e6
                })
                .unwrap_or(0.0);
            let data = message.get("data").cloned().unwrap_or(Value::Null);
            let received = std::time::Instant::now();
            let event = Event { name: name.to_string(), data, timestamp, received };
            if let Err(full) = shared.events.lock().unwrap().push(event, line.len()) {
                let kept = full.kept;
                break format!(
                    "QEMU sent more than {} of events ({kept} kept; the guest can make it emit some at will); \
                     the harness stopped reading QMP (limit: Limits::qmp_event_bytes)",
                    crate::limits::bytes(event_bytes_limit as u64)
                );
            }
            shared.changed.send_modify(|n| *n += 1);
            continue;
        }
        let Some(id) = message.get("id").and_then(Value::as_u64) else { continue };
        let result = if let Some(ret) = message.get("return") {
            Ok(ret.clone())
        } else if let Some(err) = message.get("error") {
            Err(QmpError::Qemu {
                class: err.get("class").and_then(Value::as_str).unwrap_or("?").to_string(),
                desc: err.get("desc").and_then(Value::as_str).unwrap_or("?").to_string(),
            })
        } else {
            Err(QmpError::Decode(format!("reply without return or error: {message}")))
        };
        // A reply to a command that timed out on our side has no waiter any
        // more; QEMU is not at fault, so it is only noted.
        if !shared.pending.resolve(&id, result) {
            transcript.line("--", &format!("reply to id {id}, which no longer waits"));
        }
    };
    transcript.line("--", &format!("closed: {reason}"));
    shared.pending.fail(QmpError::Transport(reason));
    shared.changed.send_modify(|n| *n += 1);
}
