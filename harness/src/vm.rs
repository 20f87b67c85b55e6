//! A running guest: one QEMU process, its QMP connection, the control
//! channel, a private socket directory and the run's artifacts.
//!
//! Every wait here has a deadline and names what it waited for, and every
//! wait also watches QEMU: if it exits, the wait fails at once with how it
//! ended (panic, BUG, crash) and the guest's own last words, instead of
//! running into its timeout.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use crate::artifacts::Artifacts;
use crate::control::client::Received;
use crate::control::{Control, ControlError, PendingReply};
use crate::driverfs::Snapshot;
use crate::hotplug::Plug;
use crate::limits::{self, Limits};
use crate::profile::Profile;
use crate::qemu::{self, Accel, Firmware, GuestExit, LaunchSpec};
use crate::qmp::{Event, Qmp, QmpError};
use crate::stats::Stats;
use crate::transcript::Transcript;

/// Deadlines for each kind of wait. Generous by default: tests run VMs in
/// parallel under TCG on two cores.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// QEMU start → QMP greeting.
    pub qemu_start: Duration,
    /// `cont` → the guest's `hello` reply.
    pub boot: Duration,
    /// One control-channel request or QMP command.
    pub request: Duration,
    /// An asynchronous event (uevent, DEVICE_DELETED, tray move).
    pub event: Duration,
    /// `poweroff` → QEMU exit.
    pub shutdown: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            qemu_start: Duration::from_secs(15),
            boot: Duration::from_secs(30),
            request: Duration::from_secs(30),
            event: Duration::from_secs(30),
            shutdown: Duration::from_secs(15),
        }
    }
}

/// How to start a VM.
#[derive(Clone)]
pub struct VmConfig {
    /// The machine profile to boot.
    pub profile: Profile,
    /// Names the artifact directory; use the test's name.
    pub name: String,
    /// Deadlines for every kind of wait.
    pub timeouts: Timeouts,
    /// Firmware before the kernel's PVH entry (qboot by default).
    pub firmware: Firmware,
    /// The accelerator (`$HARNESS_ACCEL`, else TCG).
    pub accel: Accel,
    /// Kernel command line (`selftest.hang`, ...).
    pub append: String,
    /// Devices cold-plugged at start, after the profile's own (see
    /// [`VmConfig::device`]).
    pub devices: Vec<Plug>,
    /// More QEMU arguments after the profile's and the devices (anything
    /// [`VmConfig::device`] cannot say).
    pub extra_args: Vec<String>,
    /// Override the QEMU binary (else `$HARNESS_QEMU` or PATH).
    pub qemu: Option<PathBuf>,
    /// Override the guest image (else `$GUEST_KERNEL` or a build).
    pub kernel: Option<PathBuf>,
    /// Keep no artifacts and no transcripts (benchmarks).
    pub quiet: bool,
    /// Put COM1 on a socket that the harness connects to and never reads,
    /// as a tool that only reads the control channel would: QEMU's 16550
    /// stalls after a few hundred bytes. For testing that a stalled console
    /// never stops the guest; there is no console log then.
    pub console_unread: bool,
    /// Bounds on what the guest can make the harness hold.
    pub limits: Limits,
}

impl VmConfig {
    /// A built-in profile (see `profiles.toml`) with the defaults; `name`
    /// names the run's artifact directory and its messages: use the test's
    /// name (with the profile, e.g. `my_test-pc`).
    pub fn new(profile: &str, name: &str) -> Result<VmConfig> {
        VmConfig::with_profile(Profile::get(profile)?, name)
    }

    /// Any profile, e.g. one a matrix file declared.
    pub fn with_profile(profile: Profile, name: &str) -> Result<VmConfig> {
        Ok(VmConfig {
            profile,
            name: name.to_string(),
            timeouts: Timeouts::default(),
            firmware: Firmware::default(),
            accel: Accel::from_env()?,
            append: String::new(),
            devices: Vec::new(),
            extra_args: Vec::new(),
            qemu: None,
            kernel: None,
            quiet: false,
            console_unread: false,
            limits: Limits::default(),
        })
    }
}

impl VmConfig {
    /// Cold-plug a device: it is on QEMU's command line (`-device`), so the
    /// guest finds it at boot; [`Vm::boot`] returns once the guest has
    /// registered it (`settle`). The same [`Plug`] that [`Vm::plug`]
    /// hot-adds:
    ///
    /// ```no_run
    /// # fn f() -> anyhow::Result<()> {
    /// use harness::{Plug, VmConfig};
    /// let config = VmConfig::new("pc", "cold-e1000-pc")?
    ///     .device(Plug::new("e1000", "nic0").bus("pci.0").prop("addr", "0x6"));
    /// # Ok(()) }
    /// ```
    pub fn device(mut self, plug: Plug) -> VmConfig {
        self.devices.push(plug);
        self
    }

    /// The `-device` arguments for [`VmConfig::devices`].
    pub fn device_args(&self) -> Vec<String> {
        self.devices.iter().flat_map(|plug| ["-device".to_string(), device_option(plug)]).collect()
    }
}

/// A [`Plug`] as QEMU's `-device` option string:
/// `driver,id=...,bus=...,key=value...`, with commas in values doubled.
pub fn device_option(plug: &Plug) -> String {
    let escape = |text: &str| text.replace(',', ",,");
    let mut option = format!("{},id={}", escape(&plug.driver), escape(&plug.id));
    if let Some(bus) = &plug.bus {
        option.push_str(&format!(",bus={}", escape(bus)));
    }
    for (key, value) in &plug.props {
        let value = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Bool(true) => "on".into(),
            serde_json::Value::Bool(false) => "off".into(),
            other => other.to_string(),
        };
        option.push_str(&format!(",{}={}", escape(key), escape(&value)));
    }
    option
}

/// QEMU's exit status, as the watcher task saw it.
type ExitWatch = watch::Receiver<Option<GuestExit>>;

/// One running guest: QEMU, its QMP connection and the control channel. Boot it with [`Vm::boot`], end it with [`Vm::shutdown`].
pub struct Vm {
    /// How it was started.
    pub config: VmConfig,
    /// The QMP connection (typed commands with [`Vm::qmp`], events with [`Vm::wait_qmp_event`]).
    pub qmp: Qmp,
    /// The control channel (uevents, notices, raw requests).
    pub control: Control,
    exit: ExitWatch,
    /// Dropping this kills QEMU (the watcher task owns the child).
    _kill: tokio::sync::oneshot::Sender<()>,
    artifacts: Option<Artifacts>,
    /// Keeps the socket directory alive; removed on drop.
    sockets: tempfile::TempDir,
    /// Removes the socket directory if the process is interrupted.
    _interrupt: crate::interrupt::Registered,
    /// The console connection left unread ([`VmConfig::console_unread`]).
    _console_unread: Option<std::os::unix::net::UnixStream>,
    snapshots_taken: std::sync::atomic::AtomicUsize,
    /// `shutdown` (or `kill`) ran: dropping the `Vm` is expected.
    finished: bool,
    qemu_pid: Option<u32>,
    /// Block nodes `insert_media` created, by drive id.
    pub(crate) media_nodes: Mutex<std::collections::HashMap<String, String>>,
    /// When `boot` started, for latency measurements.
    pub started: Instant,
    /// When the guest answered `hello`.
    pub hello_at: Instant,
    waiter: Waiter,
}

impl Vm {
    /// Start QEMU paused, connect QMP and the control channel, `cont`, and
    /// wait for the guest's `hello`.
    pub async fn boot(mut config: VmConfig) -> Result<Vm> {
        let started = Instant::now();
        if config.accel == Accel::Auto {
            config.accel = if kvm_self_test().await { Accel::Kvm } else { Accel::Tcg };
        }
        config.accel.check()?;
        let qemu_bin = match &config.qemu {
            Some(path) if path.is_file() => path.clone(),
            Some(path) => bail!(qemu::missing_qemu_message(&path.display().to_string())),
            None => qemu::locate()?,
        };
        let kernel = match &config.kernel {
            Some(path) => path.clone(),
            None => crate::guest::kernel_image()?,
        };
        ensure_images()?;
        let artifacts = if config.quiet { None } else { Some(Artifacts::create(&config.name)?) };
        remove_stale_socket_dirs();
        // Private: whoever can reach the sockets can drive the VM.
        let sockets = tempfile::Builder::new()
            .prefix("harness-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()
            .context("creating the socket directory")?;
        // Names its owner, so a later run can remove it if this process is
        // SIGKILLed (and `TempDir`'s drop never runs).
        std::fs::write(sockets.path().join(OWNER_FILE), std::process::id().to_string())
            .context("writing the socket directory's owner file")?;
        let interrupt = crate::interrupt::register(sockets.path());
        let qmp_socket = sockets.path().join("qmp.sock");
        let control_socket = sockets.path().join("control.sock");
        let console_socket = config.console_unread.then(|| sockets.path().join("console.sock"));
        let disk = match &config.profile.disk_image {
            Some(file) => {
                let copy = sockets.path().join(file);
                let image = crate::paths::image(file);
                std::fs::copy(&image, &copy)
                    .with_context(|| format!("copying the disk image {} for this VM", image.display()))?;
                Some(copy)
            }
            None => None,
        };
        let mut block_images = Vec::new();
        for (node, file) in &config.profile.block_images {
            let copy = sockets.path().join(format!("{node}-{file}"));
            std::fs::copy(crate::paths::image(file), &copy)
                .with_context(|| format!("copying {file} for block node {node}"))?;
            block_images.push((node.clone(), copy));
        }
        let console_log = match &artifacts {
            Some(a) => a.path("console.log"),
            None => sockets.path().join("console.log"),
        };
        let mut extra_args = config.device_args();
        extra_args.extend(config.extra_args.iter().cloned());
        let spec = LaunchSpec {
            qemu: &qemu_bin,
            machine: &config.profile.machine,
            profile_args: &config.profile.args,
            extra_args: &extra_args,
            kernel: &kernel,
            append: &config.append,
            firmware: config.firmware,
            accel: config.accel,
            qmp_socket: &qmp_socket,
            control_socket: &control_socket,
            console_log: &console_log,
            console_socket: console_socket.as_deref(),
            disk: disk.as_deref(),
            block_images: &block_images,
        };
        let args = spec.args();
        if let Some(a) = &artifacts {
            let line: Vec<String> = std::iter::once(qemu_bin.display().to_string())
                .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
                .collect();
            a.write("qemu-command.txt", line.join(" ") + "\n");
        }

        let mut command = match qemu::setpriv() {
            // Parent-death signal: QEMU dies even if this process is SIGKILLed.
            Some(setpriv) => {
                let mut c = tokio::process::Command::new(setpriv);
                c.args(["--pdeathsig", "KILL", "--"]).arg(&qemu_bin);
                c
            }
            None => tokio::process::Command::new(&qemu_bin),
        };
        command.args(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {}", qemu_bin.display()))?;
        let qemu_pid = child.id();

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            let file = artifacts.as_ref().map(|a| a.path("qemu-stderr.log"));
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let _ = pipe.read_to_end(&mut buf).await;
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some(file) = file {
                    let _ = std::fs::write(file, &text);
                }
                *stderr.lock().unwrap() = text;
            });
        }
        let (exit_tx, exit) = watch::channel(None);
        let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let status = tokio::select! {
                status = child.wait() => status,
                _ = kill_rx => {
                    let _ = child.start_kill();
                    child.wait().await
                }
            };
            let exit = status.map(GuestExit::from_status).unwrap_or(GuestExit::Other(-1));
            let _ = exit_tx.send(Some(exit));
        });

        let transcript = |file: &str| match &artifacts {
            Some(a) => Transcript::create_bounded(&a.path(file), config.limits.transcript_bytes)
                .unwrap_or_else(|_| Transcript::discard()),
            None => Transcript::discard(),
        };
        let t = config.timeouts;
        let mut starting = Starting {
            exit: exit.clone(),
            stderr: Arc::clone(&stderr),
            console_log: console_log.clone(),
            control: None,
            qemu_pid,
        };

        // QEMU creates both sockets before it reads QMP; poll for QMP.
        starting
            .within("QEMU to open its QMP socket", t.qemu_start, async {
                loop {
                    if tokio::net::UnixStream::connect(&qmp_socket).await.is_ok() {
                        return Ok(());
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
            .await?;
        let qmp = starting
            .within(
                "the QMP greeting",
                t.qemu_start,
                Qmp::connect(&qmp_socket, transcript("qmp.log"), t.request, config.limits.qmp_event_bytes),
            )
            .await?;
        let control = Control::connect(
            &control_socket,
            transcript("control.log"),
            transcript("uevents.log"),
            t.request,
            config.limits,
        )
        .await
        .context("connecting to the control channel")?;
        starting.control = Some(control.clone());
        // Connected before `cont`: QEMU drops serial output with no client.
        let console_unread = match &console_socket {
            Some(path) => Some(
                std::os::unix::net::UnixStream::connect(path)
                    .context("connecting to the console socket (left unread)")?,
            ),
            None => None,
        };
        starting
            .within("QEMU to start the VM (cont)", t.request, async {
                Ok(qmp.execute_raw("cont", serde_json::json!({})).await?)
            })
            .await?;
        let hello = control.send("hello").await?;
        let hello = starting
            .within("the guest's hello on the control channel", t.boot, async {
                hello.wait_for(t.boot + Duration::from_secs(1)).await.map_err(anyhow::Error::from)
            })
            .await?;
        let hello_at = Instant::now();
        let text = String::from_utf8_lossy(&hello);
        if !text.lines().any(|l| l == "protocol 1") {
            bail!("the guest speaks an unknown control protocol: {text:?}");
        }
        let waiter = Waiter {
            qmp: qmp.clone(),
            control: control.clone(),
            exit: exit.clone(),
            stderr: Arc::clone(&stderr),
            console_log: console_log.clone(),
            artifacts_dir: artifacts.as_ref().map(|a| a.dir().to_path_buf()),
            timeouts: config.timeouts,
            qemu_pid,
        };
        let vm = Vm {
            config,
            qmp,
            control,
            exit,
            _kill: kill,
            artifacts,
            sockets,
            _interrupt: interrupt,
            _console_unread: console_unread,
            snapshots_taken: std::sync::atomic::AtomicUsize::new(0),
            finished: false,
            qemu_pid,
            media_nodes: Mutex::new(std::collections::HashMap::new()),
            started,
            hello_at,
            waiter,
        };
        // A guest without the verb (an older image) follows the root bus only.
        if text.lines().any(|l| l.starts_with("features ") && l.split_whitespace().any(|f| f == "pcihp")) {
            vm.tell_acpi_hotplug_selectors().await.context("telling the guest the ACPI hot-plug selectors")?;
        }
        // Cold-plugged devices are found by the guest's bus pollers (a
        // root port's slot is powered on after boot): make them registered
        // before the test sees the VM.
        if !vm.config.devices.is_empty() {
            vm.settle().await.context("waiting for the guest to register the cold-plugged devices")?;
        }
        Ok(vm)
    }

    /// A handle that waits on this VM's channels with its deadlines, for an
    /// operation that outlives a borrow of the `Vm` (see
    /// [`crate::hotplug::PendingUnplug`]).
    pub fn waiter(&self) -> Waiter {
        self.waiter.clone()
    }

    /// QEMU's process id (with `setpriv`, QEMU replaced it by exec).
    pub fn qemu_pid(&self) -> Option<u32> {
        self.qemu_pid
    }

    /// The private 0700 directory holding the QMP and control sockets.
    pub fn socket_dir(&self) -> &std::path::Path {
        self.sockets.path()
    }

    /// How QEMU ended, if it has.
    pub fn exited(&self) -> Option<GuestExit> {
        *self.exit.borrow()
    }

    /// The run's artifact directory (none for quiet runs); removed when the run passes.
    pub fn artifacts_dir(&self) -> Option<PathBuf> {
        self.artifacts.as_ref().map(|a| a.dir().to_path_buf())
    }

    /// Write a named artifact (a snapshot, a diff) for this run.
    pub fn save_artifact(&self, file: &str, contents: impl AsRef<[u8]>) {
        if let Some(a) = &self.artifacts {
            a.write(file, contents);
        }
    }

    /// Run `fut` with a deadline, failing early if QEMU exits. Errors name
    /// `what` and carry the guest's BUG lines and console tail.
    pub async fn within<T>(&self, what: &str, timeout: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
        self.waiter.within(what, timeout, fut).await
    }

    /// Add what the guest said about its death, and where the artifacts
    /// are, to an error ([`Waiter`]'s rules).
    fn enrich(&self, error: anyhow::Error) -> anyhow::Error {
        self.waiter.enrich(error)
    }

    /// Send a request and wait for its payload.
    pub async fn call(&self, request: &str) -> Result<Vec<u8>> {
        let pending = self.send(request).await?;
        self.wait_reply(pending).await
    }

    /// `call`, for text replies.
    pub async fn call_text(&self, request: &str) -> Result<String> {
        String::from_utf8(self.call(request).await?).with_context(|| format!("reply to {request:?} is not UTF-8"))
    }

    /// Send a request without waiting for its reply (a held read, a
    /// removal that will block): await it later with [`Vm::wait_reply`].
    pub async fn send(&self, request: &str) -> Result<PendingReply> {
        self.control.send(request).await.map_err(|e| self.enrich(e.into()))
    }

    /// Wait for the reply to a request sent with [`Vm::send`]; a guest error is an `Err` (see [`crate::files::errno`]).
    pub async fn wait_reply(&self, pending: PendingReply) -> Result<Vec<u8>> {
        let what = format!("the guest's reply to {:?}", pending.request());
        let t = self.config.timeouts.request;
        self.within(&what, t, async { pending.wait_for(t + Duration::from_secs(1)).await.map_err(anyhow::Error::from) })
            .await
    }

    /// Like `call`, but a guest error is returned as a value so tests can
    /// assert on the errno.
    pub async fn try_call(&self, request: &str) -> Result<Result<Vec<u8>, ControlError>> {
        match self.call(request).await {
            Ok(payload) => Ok(Ok(payload)),
            Err(e) => match e.downcast_ref::<ControlError>() {
                Some(ce @ ControlError::Guest { .. }) => Ok(Err(ce.clone())),
                _ => Err(e),
            },
        }
    }

    /// The guest's errno for a request that must fail; an error if it succeeds.
    pub async fn expect_errno(&self, request: &str) -> Result<String> {
        match self.try_call(request).await? {
            Ok(payload) => {
                bail!("{request:?} succeeded ({:?}) but should have failed", String::from_utf8_lossy(&payload))
            }
            Err(e) => Ok(e.errno().unwrap_or_default().to_string()),
        }
    }

    /// The whole driverfs snapshot, parsed and validated; also saved as an
    /// artifact (`snapshot-<n>.txt`).
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let bytes = self.call("snapshot").await?;
        let n = self.snapshots_taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        self.save_artifact(&format!("snapshot-{n}.txt"), &bytes);
        Snapshot::parse(&bytes).context("the guest's snapshot is malformed")
    }

    /// The guest's stats (counters and unreleased devices).
    pub async fn stats(&self) -> Result<Stats> {
        let bytes = self.call("stats").await?;
        Stats::parse(&bytes).context("the guest's stats are malformed")
    }

    /// Return once the guest has processed every pending bus event.
    pub async fn settle(&self) -> Result<()> {
        self.call("settle").await.map(drop)
    }

    /// Run a typed QMP command. It fails when QEMU's connection closes or the
    /// command times out; QEMU's own refusals come back as [`QmpError::Qemu`].
    pub async fn qmp<C: qapi::Command>(&self, command: C) -> Result<C::Ok, QmpError> {
        self.qmp.execute(command).await
    }

    /// Forget the uevents, notices and QMP events received so far: their
    /// bytes stop counting against [`crate::limits::Limits`], so a run of
    /// thousands of steps (the explorer's soak) never reaches a bound meant
    /// for a guest gone wild. Cursors taken earlier stay valid (positions
    /// are absolute), but the items they pointed at are gone; the
    /// transcripts and `uevents.log` keep everything.
    pub fn forget_events(&self) {
        self.control.forget_received();
        self.qmp.forget_received();
    }

    /// Wait for a uevent at or after position `from` of the uevent log
    /// (take it with `vm.control.uevent_cursor()` before acting).
    pub async fn wait_uevent(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&crate::control::Uevent) -> bool,
    ) -> Result<Received<crate::control::Uevent>> {
        self.waiter.wait_uevent(from, what, matches).await
    }

    /// Wait for a QMP event at or after position `from` of the event log
    /// (take it with `vm.qmp.cursor()` before acting).
    pub async fn wait_qmp_event(&self, from: usize, what: &str, matches: impl Fn(&Event) -> bool) -> Result<Event> {
        self.waiter.wait_qmp_event(from, what, matches).await
    }

    /// Fail if QEMU sends the event `name` within `for_duration` from now:
    /// the negative wait ("DEVICE_DELETED must not come while a read is
    /// held"). It also fails, naming the wait, if QEMU exits meanwhile.
    pub async fn expect_no_qmp_event(&self, name: &str, for_duration: Duration) -> Result<()> {
        let from = self.qmp.cursor();
        let what = format!("no QMP event {name} for {for_duration:?}");
        let watch = self.waiter.within(&what, for_duration + Duration::from_secs(1), async {
            Ok(self.qmp.wait_event(from, |e| e.name == name).await?.1)
        });
        match tokio::time::timeout(for_duration, watch).await {
            Err(_elapsed) => Ok(()),
            Ok(Ok(event)) => {
                Err(self
                    .enrich(anyhow!("QEMU sent {name} ({}) within {for_duration:?}, where none may come", event.data)))
            }
            Ok(Err(e)) => Err(e),
        }
    }

    /// Wait for a `* <notice>` line from the guest at or after position
    /// `from` (take it with `vm.control.notice_cursor()`).
    pub async fn wait_notice(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Received<String>> {
        self.waiter.wait_notice(from, what, matches).await
    }

    /// Poll the guest's stats until `condition` holds (a pending removal
    /// reaching a state, say), with a deadline naming `what`.
    pub async fn wait_stats(&self, what: &str, condition: impl Fn(&Stats) -> bool) -> Result<Stats> {
        let what = format!("the guest's stats to show {what}");
        self.within(&what, self.config.timeouts.event, async {
            loop {
                let stats = self.stats().await?;
                if condition(&stats) {
                    return Ok(stats);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// QEMU's `query-pci`, flattened.
    pub async fn query_pci(&self) -> Result<Vec<crate::checks::QemuFunction>> {
        let buses = self.qmp(qapi::qmp::query_pci {}).await.map_err(|e| self.enrich(e.into()))?;
        Ok(crate::checks::flatten_query_pci(&buses))
    }

    /// Take a snapshot and check its PCI part against `query-pci`, its USB
    /// tree against QEMU's (see [`crate::bus::usb`]) and its SCSI LUNs against
    /// QEMU's SCSI devices (see [`crate::bus::scsi`]).
    pub async fn checked_snapshot(&self) -> Result<Snapshot> {
        let snapshot = self.snapshot().await?;
        let qemu = self.query_pci().await?;
        crate::checks::pci_matches_qemu(&snapshot, &qemu)?;
        let hubs = crate::bus::usb::root_hubs(self, &snapshot).await?;
        let devices = crate::bus::usb::qemu_usb_devices(self).await?;
        crate::bus::usb::usb_matches_qemu(&snapshot, &devices, &hubs)?;
        let scsi = crate::bus::scsi::qemu_scsi_devices(self).await?;
        let sticks = crate::bus::usb::storage_adapters(&devices, &hubs);
        crate::bus::scsi::scsi_matches_qemu(&snapshot, &scsi, &qemu, &sticks)?;
        Ok(snapshot)
    }

    /// Power the guest off and require a clean exit with no BUG. This is how
    /// every test ends: it is what marks the run as passed (artifacts are
    /// then removed).
    pub async fn shutdown(mut self) -> Result<()> {
        // Whatever happens now, the test did not forget to end the run.
        self.finished = true;
        let pending = self.send("poweroff").await?;
        let t = self.config.timeouts;
        let exit = self.exit.clone();
        let wait_exit = async {
            let _ = pending.wait_for(t.shutdown).await;
            exited(exit).await
        };
        let ended = tokio::time::timeout(t.shutdown, wait_exit).await.map_err(|_| {
            self.enrich(anyhow!("timed out after {:?} waiting for QEMU to exit after poweroff", t.shutdown))
        })?;
        if ended != GuestExit::PowerOff {
            return Err(self.enrich(anyhow!("expected a clean power-off, but {ended}")));
        }
        let bugs = self.control.bugs_for_error();
        if !bugs.is_empty() {
            return Err(self.enrich(anyhow!("the guest reported BUGs: {bugs:?}")));
        }
        if let Some(a) = self.artifacts.as_mut() {
            a.mark_passed();
        }
        Ok(())
    }

    /// Stop QEMU now, without the clean power-off, for a test that is done
    /// with a guest it broke on purpose. The run counts as failed (its
    /// artifacts are kept); unlike a plain drop, nothing is printed.
    pub fn kill(mut self) {
        self.finished = true;
    }

    /// Wait until QEMU has exited and say how.
    pub async fn wait_exit(&self, timeout: Duration) -> Result<GuestExit> {
        tokio::time::timeout(timeout, exited(self.exit.clone()))
            .await
            .map_err(|_| anyhow!("timed out after {timeout:?} waiting for QEMU to exit"))
    }
}

/// Is this error an answer (the guest's `err` reply, QEMU's refusal) rather
/// than a failure of the VM or its channels?
fn is_answer(error: &anyhow::Error) -> bool {
    matches!(error.downcast_ref::<ControlError>(), Some(ControlError::Guest { .. }))
        || matches!(error.downcast_ref::<QmpError>(), Some(QmpError::Qemu { .. }))
}

/// A `Vm` dropped without [`Vm::shutdown`] kills QEMU and keeps its
/// artifacts; unless the test is already failing (panicking), it says so,
/// naming the run and the test: a test that forgot `shutdown()` proves less
/// than it seems (no check for a clean power-off or BUGs).
impl Drop for Vm {
    fn drop(&mut self) {
        if self.finished || std::thread::panicking() || self.exited().is_some() {
            return;
        }
        let thread = std::thread::current();
        let test = thread.name().filter(|n| *n != "main").map(|n| format!(" in test `{n}`")).unwrap_or_default();
        // Straight to the process's stderr: `eprintln!` in a test is
        // captured, and a passing test's output is never shown.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "harness: warning: the VM `{}`{test} was dropped without `shutdown()`: QEMU was killed, the clean \
             power-off and the BUG check never ran, and the run counts as failed",
            self.config.name
        );
    }
}

/// Is KVM usable here? Only if the CPU has vmx/svm and a guest boots under
/// KVM, answers `hello` and a snapshot (decimal formatting: SSE, which the
/// emulated KVM on the project's build machines cannot run) and powers off,
/// all within a few seconds. Decided once per process.
pub async fn kvm_self_test() -> bool {
    static RESULT: tokio::sync::OnceCell<bool> = tokio::sync::OnceCell::const_new();
    *RESULT
        .get_or_init(|| async {
            if !qemu::cpu_has_virtualisation() || !std::path::Path::new("/dev/kvm").exists() {
                return false;
            }
            let test = async {
                let mut config = VmConfig::new("pc", "kvm-self-test")?;
                config.accel = Accel::Kvm;
                config.quiet = true;
                config.timeouts = Timeouts {
                    qemu_start: Duration::from_secs(3),
                    boot: Duration::from_secs(3),
                    request: Duration::from_secs(3),
                    event: Duration::from_secs(3),
                    shutdown: Duration::from_secs(3),
                };
                let vm = Box::pin(Vm::boot(config)).await?;
                vm.snapshot().await?;
                vm.shutdown().await
            };
            matches!(tokio::time::timeout(Duration::from_secs(10), test).await, Ok(Ok(())))
        })
        .await
}

/// In each socket directory: the pid of the process that created it.
const OWNER_FILE: &str = "owner.pid";

/// Remove the socket directories (`$TMPDIR/harness-*`) left by harness
/// processes that were killed before they could clean up: only directories
/// with an owner file whose process is gone. Best effort: a directory that
/// cannot be read or removed is left alone.
pub fn remove_stale_socket_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("harness-") {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(entry.path().join(OWNER_FILE)) else { continue };
        let Ok(pid) = owner.trim().parse::<u32>() else { continue };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Build the disk and CD images once per process.
fn ensure_images() -> Result<()> {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| images::ensure_in(&crate::paths::images_dir()).map(drop).map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| anyhow!("building the disk and CD images in {}: {e}", crate::paths::images_dir().display()))
}

/// Resolves with how QEMU ended, once it has. (`Other(-1)` if the watcher
/// is gone, which only happens when the runtime shuts down.)
async fn exited(mut exit: ExitWatch) -> GuestExit {
    loop {
        if let Some(e) = *exit.borrow() {
            return e;
        }
        if exit.changed().await.is_err() {
            return GuestExit::Other(-1);
        }
    }
}

/// What every wait on a VM needs: its channels, how QEMU is doing, where
/// its artifacts go and its deadlines. Cheap to clone, so an operation that
/// must not borrow the [`Vm`] for its whole life (an unplug the test
/// observes half way, [`crate::hotplug::PendingUnplug`]) can wait later.
#[derive(Clone)]
pub struct Waiter {
    qmp: Qmp,
    control: Control,
    exit: ExitWatch,
    stderr: Arc<Mutex<String>>,
    console_log: PathBuf,
    artifacts_dir: Option<PathBuf>,
    timeouts: Timeouts,
    qemu_pid: Option<u32>,
}

impl Waiter {
    /// Run `fut` with a deadline, failing early if QEMU exits. Errors name
    /// `what` and carry the guest's BUG lines and console tail.
    pub async fn within<T>(&self, what: &str, timeout: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let mut starting = Starting {
            exit: self.exit.clone(),
            stderr: Arc::clone(&self.stderr),
            console_log: self.console_log.clone(),
            control: Some(self.control.clone()),
            qemu_pid: self.qemu_pid,
        };
        starting.within(what, timeout, fut).await.map_err(|e| self.enrich(e))
    }

    /// Add what the guest said about its death, and where the artifacts
    /// are, to an error. An answer (the guest's `err`, QEMU's refusal) is
    /// returned as it is: a test that expects it handles it and passes,
    /// and its artifact directory is then gone.
    fn enrich(&self, error: anyhow::Error) -> anyhow::Error {
        if is_answer(&error) {
            return error;
        }
        let already = format!("{error:#}");
        let mut context = String::new();
        for bug in self.control.bugs_for_error().iter().filter(|b| !already.contains(b.as_str())) {
            context.push_str(&format!("\n  guest: {bug}"));
        }
        if let Some(dir) = &self.artifacts_dir {
            match crate::artifacts::unwritable(dir) {
                Some(problem) => context.push_str(&format!("\n  artifacts could not be written: {problem}")),
                None => context.push_str(&format!("\n  artifacts: {}", dir.display())),
            }
        }
        if context.is_empty() { error } else { error.context(context.trim_start().to_string()) }
    }

    /// Wait for a uevent at or after position `from` of the uevent log.
    pub async fn wait_uevent(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&crate::control::Uevent) -> bool,
    ) -> Result<Received<crate::control::Uevent>> {
        let what = format!("the uevent {what}");
        self.within(&what, self.timeouts.event, async { Ok(self.control.wait_uevent(from, &matches).await?) }).await
    }

    /// Wait for a QMP event at or after position `from` of the event log.
    pub async fn wait_qmp_event(&self, from: usize, what: &str, matches: impl Fn(&Event) -> bool) -> Result<Event> {
        self.within(what, self.timeouts.event, async { Ok(self.qmp.wait_event(from, &matches).await?.1) }).await
    }

    /// Wait for a `* <notice>` line from the guest at or after position
    /// `from`.
    pub async fn wait_notice(
        &self,
        from: usize,
        what: &str,
        matches: impl Fn(&str) -> bool,
    ) -> Result<Received<String>> {
        let what = format!("the guest's notice {what:?}");
        self.within(&what, self.timeouts.event, async { Ok(self.control.wait_notice(from, &matches).await?) }).await
    }
}

/// Resolves with QEMU's pid once the process is stopped (state `T` or `t`
/// in `/proc/<pid>/stat`); never without a pid. A stopped QEMU neither exits
/// nor closes its sockets, so without this a wait would run into its
/// timeout.
async fn stopped(pid: Option<u32>) -> u32 {
    let Some(pid) = pid else { return std::future::pending().await };
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
        if matches!(state, Some('T' | 't')) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The waiting logic shared by boot (before a `Vm` exists) and `Vm::within`.
struct Starting {
    exit: ExitWatch,
    stderr: Arc<Mutex<String>>,
    console_log: PathBuf,
    /// For the guest's `* bug` lines, once connected.
    control: Option<Control>,
    /// To see QEMU stopped (SIGSTOP): it then neither exits nor answers.
    qemu_pid: Option<u32>,
}

impl Starting {
    async fn within<T>(&mut self, what: &str, timeout: Duration, fut: impl Future<Output = Result<T>>) -> Result<T> {
        let exit = self.exit.clone();
        tokio::select! {
            biased;
            result = fut => match result {
                Ok(v) => Ok(v),
                // The guest answered with an error: nothing is broken.
                Err(e) if is_answer(&e) => Err(e),
                // A channel that breaks usually means QEMU is exiting: say
                // how it ended rather than just "connection reset".
                Err(e) => match tokio::time::timeout(Duration::from_millis(500), exited(exit)).await.ok() {
                    Some(status) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Err(e.context(format!("{status} while waiting for {what}{}", self.last_words())))
                    }
                    None => Err(e.context(format!("while waiting for {what}"))),
                },
            },
            pid = stopped(self.qemu_pid) => {
                Err(anyhow!(
                    "QEMU (pid {pid}) is stopped (SIGSTOP or a debugger), so nothing can answer, while waiting for \
                     {what}{}",
                    self.last_words()
                ))
            }
            status = exited(self.exit.clone()) => {
                // Let QEMU's stderr reader and the channels catch up with
                // what was said before the exit.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(anyhow!("{status} while waiting for {what}{}", self.last_words()))
            }
            _ = tokio::time::sleep(timeout) => {
                Err(anyhow!("timed out after {timeout:?} waiting for {what}{}", self.last_words()))
            }
        }
    }

    /// QEMU's stderr and the tail of the guest console, for error messages.
    fn last_words(&self) -> String {
        let mut out = String::new();
        for bug in self.control.as_ref().map(Control::bugs_for_error).unwrap_or_default() {
            out.push_str(&format!("\n  guest: {bug}"));
        }
        let stderr = self.stderr.lock().unwrap().clone();
        if !stderr.trim().is_empty() {
            out.push_str(&format!("\n  QEMU stderr: {}", stderr.trim()));
        }
        // Only the end of the file is read: the guest can make it huge.
        let console = limits::file_tail(&self.console_log, limits::CONSOLE_TAIL_BYTES);
        let tail: Vec<&str> = console.lines().rev().take(15).collect();
        if !tail.is_empty() {
            out.push_str("\n  guest console (last lines):");
            for line in tail.iter().rev() {
                out.push_str(&format!("\n    {}", line.trim_end_matches('\r')));
            }
        }
        out
    }
}
