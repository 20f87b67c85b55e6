//! Running a short-lived helper program (QEMU's `-device help`, Graphviz's
//! `dot`) to completion within a deadline.
//!
//! Both pipes are drained on their own threads while waiting, because a
//! program that fills a pipe nobody reads stops forever; and the input is
//! written on a thread too, because a program may not read all of it before
//! it starts writing.

use std::io::{Read, Write};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What a finished program left.
pub struct Finished {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it wrote to standard output.
    pub stdout: Vec<u8>,
    /// Everything it wrote to standard error.
    pub stderr: Vec<u8>,
}

/// Feed `input` to a spawned `child` (spawned with piped stdout and stderr,
/// and piped stdin if `input` is given), and wait for it to exit. Past
/// `timeout` it is killed and the error says that `what` did not finish.
pub fn finish(mut child: Child, input: Option<Vec<u8>>, timeout: Duration, what: &str) -> Result<Finished> {
    let writer = match input {
        Some(input) => {
            let mut stdin = child.stdin.take().with_context(|| format!("{what}: its standard input"))?;
            Some(std::thread::spawn(move || stdin.write_all(&input)))
        }
        None => None,
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if let Some(writer) = writer {
        // A program may exit without reading all its input (a broken
        // pipe): its status says whether that was a failure.
        let _ = writer.join();
    }
    Ok(Finished { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    fn spawn(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn collects_both_pipes_and_feeds_input() {
        // More than a pipe holds on each side: neither may block.
        let input = vec![b'x'; 1 << 20];
        let done =
            finish(spawn("cat; head -c 200000 /dev/zero >&2"), Some(input.clone()), Duration::from_secs(20), "cat")
                .unwrap();
        assert!(done.status.success());
        assert_eq!(done.stdout, input);
        assert_eq!(done.stderr.len(), 200_000);
    }

    #[test]
    fn a_program_past_its_deadline_is_killed_and_named() {
        let started = Instant::now();
        let error = finish(spawn("sleep 30"), None, Duration::from_millis(200), "the sleeper").err().unwrap();
        assert_eq!(error.to_string(), "the sleeper did not finish within 200ms");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
