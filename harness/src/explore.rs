//! `harness run`: exploring a booted guest by hand.
//!
//! A request is a control-protocol line (`stats`, `hold <path>`, `read 3`)
//! or `qmp <command> [arguments]`, where the arguments are a JSON object or
//! `key=value` pairs separated by commas or spaces (`qmp device_add
//! driver=edu,id=e1,addr=5`; numbers and `true`/`false` become JSON numbers
//! and booleans). Every reply is printed with its request as a label:
//! `<request>: ok` for an empty reply, `<request>: <text>` for one line,
//! `<request>:` followed by the payload otherwise, and `<request>: error
//! <text>` for a refusal.
//!
//! Requests given on the command line run in order, each waiting for its
//! reply, except one that ends in ` &`: it is sent and its reply printed
//! when it comes (so `"hold P" "open P" "read 0 &" "unhold P"` works). In
//! the interactive mode ([`repl`]) every line is sent at once, so a held
//! read and the unplug or `unhold` that ends it can be typed one after the
//! other; uevents, notices (`* hotplug eject 00:05`) and QMP events are
//! printed as they arrive, and end of input powers the guest off.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Map, Value};
use tokio::task::JoinSet;

use crate::vm::Vm;

/// One request typed by the user.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// A control-protocol request line.
    Control(String),
    /// A QMP command and its arguments.
    Qmp {
        /// The command's name.
        command: String,
        /// Its arguments object.
        arguments: Value,
    },
}

impl Request {
    /// Parse a request line (without a trailing ` &`).
    pub fn parse(line: &str) -> Result<Request> {
        let line = line.trim();
        if line.is_empty() {
            bail!("empty request");
        }
        let Some(rest) = line.strip_prefix("qmp ").or_else(|| (line == "qmp").then_some("")) else {
            return Ok(Request::Control(line.to_string()));
        };
        let rest = rest.trim();
        let (command, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        if command.is_empty() {
            bail!("`qmp` needs a command, e.g. `qmp query-pci` or `qmp device_add driver=edu,id=e1,addr=5`");
        }
        let args = args.trim();
        let arguments = if args.starts_with('{') {
            let value: Value = serde_json::from_str(args)
                .map_err(|e| anyhow::anyhow!("qmp {command}: arguments are not JSON: {e}"))?;
            if !value.is_object() {
                bail!("qmp {command}: JSON arguments must be an object");
            }
            value
        } else {
            let mut map = Map::new();
            for pair in args.split([',', ' ']).filter(|p| !p.is_empty()) {
                let Some((key, value)) = pair.split_once('=') else {
                    bail!("qmp {command}: {pair:?} is not key=value");
                };
                map.insert(key.to_string(), scalar(value));
            }
            Value::Object(map)
        };
        Ok(Request::Qmp { command: command.to_string(), arguments })
    }
}

/// `5` → 5, `true` → true, anything else a string.
fn scalar(text: &str) -> Value {
    if let Ok(n) = text.parse::<i64>() {
        return Value::from(n);
    }
    match text {
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => Value::String(text.to_string()),
    }
}

/// Send `request` and wait for its answer: the payload, or why there is
/// none (the guest's or QEMU's refusal, a timeout, a dead VM).
pub async fn execute(vm: &Vm, request: &Request) -> std::result::Result<Vec<u8>, String> {
    match request {
        Request::Control(line) => match vm.try_call(line).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(refusal)) => Err(refusal.to_string()),
            Err(e) => Err(format!("{e:#}")),
        },
        Request::Qmp { command, arguments } => match vm.qmp.execute_raw(command, arguments.clone()).await {
            Ok(Value::Object(map)) if map.is_empty() => Ok(Vec::new()),
            Ok(value) => Ok(serde_json::to_string_pretty(&value).unwrap_or_default().into_bytes()),
            Err(e) => Err(e.to_string()),
        },
    }
}

/// The labelled reply: `<label>: ok`, `<label>: <line>`, `<label>:\n<payload>`
/// or `<label>: error <text>`. Always ends with a newline.
pub fn format_reply(label: &str, reply: &std::result::Result<Vec<u8>, String>) -> String {
    match reply {
        Ok(payload) if payload.is_empty() => format!("{label}: ok\n"),
        Ok(payload) => {
            let text = String::from_utf8_lossy(payload);
            let body = text.strip_suffix('\n').unwrap_or(&text);
            if body.contains('\n') { format!("{label}:\n{body}\n") } else { format!("{label}: {body}\n") }
        }
        Err(e) => format!("{label}: error {e}\n"),
    }
}

/// Where output goes: standard output, or rustyline's printer, which keeps
/// the prompt and the half-typed line intact.
#[derive(Clone)]
pub struct Output(Arc<Mutex<Sink>>);

enum Sink {
    Stdout,
    Printer(Box<dyn rustyline::ExternalPrinter + Send>),
}

impl Output {
    /// Print to standard output.
    pub fn stdout() -> Output {
        Output(Arc::new(Mutex::new(Sink::Stdout)))
    }

    /// Print one reply or event.
    pub fn print(&self, text: String) {
        match &mut *self.0.lock().unwrap() {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
            Sink::Printer(p) => {
                let _ = p.print(text.trim_end_matches('\n').to_string());
            }
        }
    }
}

/// Requests in flight and how many failed.
pub struct Session {
    vm: Arc<Vm>,
    out: Output,
    tasks: JoinSet<()>,
    /// How many of `tasks` watch events rather than wait for a reply.
    watchers: usize,
    failures: Arc<AtomicUsize>,
}

impl Session {
    /// A session on a booted VM, printing to `out`.
    pub fn new(vm: Vm, out: Output) -> Session {
        Session { vm: Arc::new(vm), out, tasks: JoinSet::new(), watchers: 0, failures: Arc::new(AtomicUsize::new(0)) }
    }

    /// Run one line: parse, send, print the labelled reply. With
    /// `background`, returns once it is sent and prints the reply later.
    pub async fn run_line(&mut self, line: &str, background: bool) {
        let label = line.trim().to_string();
        let request = match Request::parse(&label) {
            Ok(r) => r,
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                self.out.print(format!("{label}: error {e:#}\n"));
                return;
            }
        };
        let (vm, out, failures) = (Arc::clone(&self.vm), self.out.clone(), Arc::clone(&self.failures));
        let job = async move {
            let reply = execute(&vm, &request).await;
            if reply.is_err() {
                failures.fetch_add(1, Ordering::Relaxed);
            }
            out.print(format_reply(&label, &reply));
        };
        if background {
            self.tasks.spawn(job);
        } else {
            job.await;
        }
    }

    /// Print uevents, notices and QMP events as they arrive, until [`Session::finish`].
    pub fn watch_events(&mut self) {
        self.watchers += 3;
        let (vm, out) = (Arc::clone(&self.vm), self.out.clone());
        self.tasks.spawn(async move {
            let mut next = vm.control.uevent_cursor();
            while let Ok(u) = vm.control.wait_uevent(next, |_| true).await {
                out.print(format!("* uevent {}\n", u.item));
                next += 1;
            }
        });
        let (vm, out) = (Arc::clone(&self.vm), self.out.clone());
        self.tasks.spawn(async move {
            let mut next = vm.control.notice_cursor();
            while let Ok(n) = vm.control.wait_notice(next, |_| true).await {
                out.print(format!("* {}\n", n.item));
                next += 1;
            }
        });
        let (vm, out) = (Arc::clone(&self.vm), self.out.clone());
        self.tasks.spawn(async move {
            let mut next = vm.qmp.cursor();
            while let Ok((at, e)) = vm.qmp.wait_event(next, |_| true).await {
                out.print(format!("* qmp {} {}\n", e.name, e.data));
                next = at + 1;
            }
        });
    }

    /// Wait up to `grace` for the replies still due, stop watching
    /// events, power off. Returns how many requests failed (one left
    /// without a reply counts); a power-off that is not clean is an error.
    pub async fn finish(mut self, grace: Duration) -> Result<usize> {
        let watchers = self.watchers;
        // Event watchers never end on their own: wait for the rest.
        let _ = tokio::time::timeout(grace, async {
            while self.tasks.len() > watchers && self.tasks.join_next().await.is_some() {}
        })
        .await;
        let abandoned = self.tasks.len().saturating_sub(watchers);
        if abandoned > 0 {
            self.out.print(format!("({abandoned} request(s) still waiting for a reply at power-off)\n"));
            self.failures.fetch_add(abandoned, Ordering::Relaxed);
        }
        self.tasks.shutdown().await;
        let vm = Arc::try_unwrap(self.vm).map_err(|_| anyhow::anyhow!("a request still holds the VM"))?;
        vm.shutdown().await?;
        Ok(self.failures.load(Ordering::Relaxed))
    }
}

/// Requests from the command line, in order (` &` sends without waiting).
pub async fn run_requests(vm: Vm, requests: &[String]) -> Result<usize> {
    let mut session = Session::new(vm, Output::stdout());
    for line in requests {
        match line.trim_end().strip_suffix('&') {
            Some(request) => session.run_line(request, true).await,
            None => session.run_line(line, false).await,
        }
    }
    // Each reply has its own request timeout already.
    session.finish(Duration::MAX).await
}

/// The interactive mode: a line editor when standard input is a terminal,
/// plain lines otherwise. Every line is sent at once; end of input (Ctrl-D)
/// powers off.
pub async fn repl(vm: Vm) -> Result<usize> {
    use std::io::IsTerminal;
    let (tx, mut lines) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut out = Output::stdout();
    // Before the line editor starts, so it is not lost behind the prompt.
    out.print(format!(
        "guest {} is up; type control requests or `qmp <command> [key=value,...]`; end of input powers off\n",
        vm.config.profile.name
    ));
    if std::io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new()?;
        if let Ok(printer) = editor.create_external_printer() {
            out = Output(Arc::new(Mutex::new(Sink::Printer(Box::new(printer)))));
        }
        std::thread::spawn(move || {
            while let Ok(line) = editor.readline("> ") {
                let _ = editor.add_history_entry(line.as_str());
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        std::thread::spawn(move || {
            for line in std::io::stdin().lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    let mut session = Session::new(vm, out);
    session.watch_events();
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_suffix('&').unwrap_or(line);
        session.run_line(line, true).await;
    }
    session.finish(EOF_GRACE).await
}

/// At end of input, how long replies still due may take before power-off
/// (a read held by a `hold` nobody will release would otherwise wait for
/// the request timeout).
const EOF_GRACE: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_parse() {
        assert_eq!(Request::parse(" stats ").unwrap(), Request::Control("stats".into()));
        assert_eq!(
            Request::parse("qmp device_add driver=edu,id=e1,addr=5").unwrap(),
            Request::Qmp { command: "device_add".into(), arguments: json!({"driver": "edu", "id": "e1", "addr": 5}) }
        );
        assert_eq!(
            Request::parse("qmp device_del id=e1 force=true").unwrap(),
            Request::Qmp { command: "device_del".into(), arguments: json!({"id": "e1", "force": true}) }
        );
        assert_eq!(
            Request::parse(r#"qmp eject {"id": "cd0"}"#).unwrap(),
            Request::Qmp { command: "eject".into(), arguments: json!({"id": "cd0"}) }
        );
        assert_eq!(
            Request::parse("qmp query-pci").unwrap(),
            Request::Qmp { command: "query-pci".into(), arguments: json!({}) }
        );
        assert!(Request::parse("qmp").is_err());
        assert!(Request::parse("qmp device_add driver").is_err());
        assert!(Request::parse("qmp eject [1]").is_err());
    }

    #[test]
    fn replies_carry_their_request() {
        assert_eq!(format_reply("testdev add t1", &Ok(Vec::new())), "testdev add t1: ok\n");
        assert_eq!(format_reply("open x", &Ok(b"3".to_vec())), "open x: 3\n");
        assert_eq!(format_reply("stats", &Ok(b"a 1\nb 2\n".to_vec())), "stats:\na 1\nb 2\n");
        assert_eq!(format_reply("read 9", &Err("EBADF no such handle".into())), "read 9: error EBADF no such handle\n");
    }
}
