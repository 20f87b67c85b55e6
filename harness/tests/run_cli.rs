//! `harness run` as a user drives it: exit codes, labelled replies, QMP from
//! the command line, and the interactive mode fed through a pipe.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// The harness CLI, with artifacts in a directory of the test's own: runs
/// are all named `run-<profile>`, and parallel tests must not share one.
fn harness(artifacts: &tempfile::TempDir) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.env("HARNESS_ARTIFACTS_DIR", artifacts.path());
    c
}

fn run(args: &[&str]) -> Result<(i32, String, String)> {
    let artifacts = tempfile::tempdir()?;
    let out = harness(&artifacts).arg("run").args(args).stdin(Stdio::null()).output()?;
    let code = out.status.code().context("the harness was killed")?;
    Ok((code, String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned()))
}

#[test]
fn a_failed_request_fails_the_run_and_every_reply_is_labelled() -> Result<()> {
    let (code, out, err) = run(&["testdev add t1", "read nonsense", "qmp device_add driver=edu,id=e1,addr=5"])?;
    ensure!(code == 1, "a failed request must exit 1, got {code}\n{out}{err}");
    ensure!(out.contains("testdev add t1: root/testbus/t1\n"), "{out}{err}");
    ensure!(out.contains("read nonsense: error guest answered EINVAL"), "{out}");
    ensure!(out.contains("qmp device_add driver=edu,id=e1,addr=5: ok\n"), "{out}");
    ensure!(err.contains("1 request(s) failed"), "{err}");

    let (code, out, err) = run(&["--profile", "q35", "qmp device_add driver=nonexistent-dev,id=x,bus=rp1"])?;
    ensure!(code == 1 && out.contains("is not a valid device model name"), "{code}\n{out}{err}");
    Ok(())
}

#[test]
fn requests_that_all_succeed_exit_zero_and_a_background_read_waits_for_unhold() -> Result<()> {
    let attr = "root/pci0/00:05.0/vendor";
    let (code, out, err) = run(&[
        "--device",
        "edu,id=e1,addr=5",
        &format!("hold {attr}"),
        &format!("open {attr}"),
        "read 1 &",
        "stats",
        &format!("unhold {attr}"),
    ])?;
    ensure!(code == 0, "exit {code}\n{out}{err}");
    ensure!(out.contains(&format!("hold {attr}: ok\n")), "empty replies say ok: {out}");
    // Without ` &` the read would wait for `unhold`, which would never be
    // sent: the run would fail on the request timeout.
    ensure!(out.contains("read 1: 0x1234\n"), "no read reply: {out}");
    ensure!(out.contains(&format!("unhold {attr}: ok\n")), "{out}");
    Ok(())
}

/// Feeds the REPL line by line and waits for what each line must print.
struct Repl {
    _artifacts: tempfile::TempDir,
    child: std::process::Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Repl {
    fn start(profile: &str) -> Result<Repl> {
        let artifacts = tempfile::tempdir()?;
        let mut child = harness(&artifacts)
            .args(["run", "-i", "--profile", profile])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Repl { _artifacts: artifacts, child, lines, seen: Vec::new() })
    }

    fn send(&mut self, line: &str) -> Result<()> {
        let stdin = self.child.stdin.as_mut().context("stdin closed")?;
        writeln!(stdin, "{line}")?;
        Ok(stdin.flush()?)
    }

    fn expect(&mut self, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.seen.iter().any(|l| l.contains(what)) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => {
                    bail!("the REPL did not print {what:?} within a minute; it printed:\n{}", self.seen.join("\n"))
                }
            }
        }
    }

    /// Wait for the next line (up to a minute).
    fn expect_more(&mut self) -> Result<()> {
        let line = self.lines.recv_timeout(Duration::from_secs(60)).context("the REPL went quiet")?;
        self.seen.push(line);
        Ok(())
    }

    fn position(&self, what: &str) -> Option<usize> {
        self.seen.iter().position(|l| l.contains(what))
    }
}

#[test]
fn the_repl_sends_concurrently_prints_events_and_powers_off_at_eof() -> Result<()> {
    let attr = "root/pci0/00:05.0/vendor";
    let mut repl = Repl::start("pc")?;
    repl.expect("guest pc is up")?;
    repl.send("qmp device_add driver=edu,id=e1,addr=5")?;
    repl.expect("* uevent add root/pci0/00:05.0")?;
    repl.send(&format!("hold {attr}"))?;
    repl.expect(&format!("hold {attr}: ok"))?;
    repl.send(&format!("open {attr}"))?;
    repl.expect(&format!("open {attr}: 1"))?;
    // The read blocks in show(); the REPL keeps taking lines (stats shows
    // it as an active reference). Unplug only once it is held.
    repl.send("read 1")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !repl.seen.iter().any(|l| l == "active 1") {
        ensure!(Instant::now() < deadline, "the read never became active:\n{}", repl.seen.join("\n"));
        repl.send("stats")?;
        repl.expect_more()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    repl.send("qmp device_del id=e1")?;
    repl.expect("qmp device_del id=e1: ok")?;
    repl.expect("* uevent remove root/pci0/00:05.0")?;
    ensure!(repl.position("hotplug eject").is_none(), "ejected while a read was held:\n{}", repl.seen.join("\n"));
    repl.send(&format!("unhold {attr}"))?;
    repl.expect("read 1: 0x1234")?;
    repl.expect("* hotplug eject 00:05")?;
    repl.expect("* qmp DEVICE_DELETED {\"device\":\"e1\"")?;
    repl.send("read nonsense")?;
    repl.expect("read nonsense: error")?;
    drop(repl.child.stdin.take());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = repl.child.try_wait()? {
            break status;
        }
        ensure!(Instant::now() < deadline, "the REPL did not power off at end of input");
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(status.code() == Some(1), "one request failed, so exit 1: {status}");
    Ok(())
}
