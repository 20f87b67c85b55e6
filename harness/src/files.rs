//! Typed driverfs helpers on [`Vm`]: read one attribute, keep a file open,
//! hold a device reference, hold a read inside show(). Each wraps the
//! control-protocol verbs of the same name (`open`, `read`, `write`,
//! `close`, `devref`, `hold`, `unhold`; see `docs/control-protocol.md`).
//!
//! The guards ([`Handle`], [`DevRef`], [`HeldRead`]) borrow the `Vm`, so a
//! test cannot shut the guest down while it still holds one. End them
//! explicitly (`close`, `put`, `release`) to see errors and to order them
//! with what follows; a guard that is just dropped sends its `close`,
//! `devref put` or `unhold` in the background.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::control::{Control, ControlError, PendingReply};
use crate::vm::Vm;

/// The guest's errno (`"ENODEV"`, `"EBUSY"`, ...) if `error` is the guest's
/// `err` answer to a request, e.g. a read of a removed attribute:
///
/// ```no_run
/// # async fn f(vm: &harness::Vm, handle: &harness::files::Handle<'_>) {
/// let err = handle.read().await.unwrap_err();
/// assert_eq!(harness::files::errno(&err), Some("ENODEV"));
/// # }
/// ```
pub fn errno(error: &anyhow::Error) -> Option<&str> {
    error.chain().find_map(|e| e.downcast_ref::<ControlError>()).and_then(ControlError::errno)
}

/// Send `request` on `control` from a destructor, in the background (if a
/// tokio runtime is running; at the end of a test it no longer matters).
fn send_in_background(control: &Control, request: String) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let control = control.clone();
        runtime.spawn(async move {
            let _ = control.call(&request).await;
        });
    }
}

/// The text of an attribute's value: the trailing newline show() adds is
/// removed, nothing else is changed.
fn value_text(path: &str, bytes: Vec<u8>) -> Result<String> {
    let mut text = String::from_utf8(bytes).with_context(|| format!("the value of {path} is not UTF-8"))?;
    if text.ends_with('\n') {
        text.pop();
    }
    Ok(text)
}

impl Vm {
    /// Read one attribute (open, read, close) and return its value as text
    /// without the trailing newline: `vm.read_attr("root/pci0/00:05.0/vendor")`
    /// → `"0x1234"`. A guest error (`ENOENT`, `ENODEV`) is an `Err` whose
    /// [`errno`] says which.
    pub async fn read_attr(&self, path: &str) -> Result<String> {
        let handle = self.open(path).await?;
        let value = handle.read().await;
        handle.close().await?;
        value_text(path, value?)
    }

    /// Open a driverfs attribute. The handle keeps the node's memory, not
    /// the device: after the device is removed, reads fail with `ENODEV`.
    pub async fn open(&self, path: &str) -> Result<Handle<'_>> {
        let reply = self.call_text(&format!("open {path}")).await?;
        let id = reply.trim().parse().with_context(|| format!("the guest answered open {path} with {reply:?}"))?;
        Ok(Handle { vm: self, id, path: path.to_string(), open: true })
    }

    /// Take a device reference (`devref get`), as a driver holding the
    /// device would: its removal completes, but the object is not released,
    /// so whatever waits for that release (a re-add into its slot, a new
    /// medium) waits until [`DevRef::put`] or drop.
    pub async fn devref(&self, devpath: &str) -> Result<DevRef<'_>> {
        self.call(&format!("devref get {devpath}")).await?;
        Ok(DevRef { vm: self, devpath: devpath.trim_matches('/').to_string(), held: true })
    }

    /// Start a read of the attribute at `path` that blocks inside show()
    /// until [`HeldRead::release`], and return once it does: the guest says
    /// `* held <path>` when the read is inside show() with its active
    /// reference taken. That is the moment to start a removal: it must
    /// wait for the read.
    ///
    /// `path` may go through links (`bus/pci/devices/...`); the guest names
    /// the attribute by its canonical path, matched on the attribute name.
    pub async fn hold_read(&self, path: &str) -> Result<HeldRead<'_>> {
        self.call(&format!("hold {path}")).await?;
        let handle = match self.open(path).await {
            Ok(handle) => handle,
            Err(e) => {
                let _ = self.call(&format!("unhold {path}")).await;
                return Err(e);
            }
        };
        let cursor = self.control.notice_cursor();
        let reply = self.send(&format!("read {}", handle.id)).await?;
        let mut held = HeldRead {
            vm: self,
            path: path.to_string(),
            canonical: path.trim_matches('/').to_string(),
            handle: Some(handle),
            reply: Some(reply),
        };
        let wanted = path.trim_matches('/').to_string();
        let attr = format!("/{}", wanted.rsplit('/').next().unwrap_or_default());
        let is_ours = |n: &str| n.strip_prefix("held ").is_some_and(|p| p == wanted || p.ends_with(&attr));
        let what = format!("held {wanted}");
        let blocked = self.wait_notice(cursor, &what, is_ours);
        let answered = async {
            while !held.reply.as_ref().is_some_and(PendingReply::is_answered) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        };
        tokio::select! {
            blocked = blocked => {
                // The link it was opened through may go before the read
                // ends: unhold by the canonical path.
                let notice = blocked?.item;
                held.canonical = notice.strip_prefix("held ").unwrap_or(&notice).to_string();
            }
            () = answered => {
                let reply = held.reply.take().expect("set above");
                let result = self.wait_reply(reply).await;
                // The hold may still be armed: leave nothing behind.
                let _ = self.call(&format!("unhold {path}")).await;
                bail!("the read of {path} was answered instead of blocking inside show(): {result:?}");
            }
        }
        Ok(held)
    }
}

/// An open driverfs file (`open`); see [`Vm::open`].
pub struct Handle<'vm> {
    vm: &'vm Vm,
    id: u32,
    path: String,
    open: bool,
}

impl Handle<'_> {
    /// The guest's handle number, for raw requests (`read <id>`).
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The path it was opened with.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Read the attribute: show()'s bytes, trailing newline included.
    pub async fn read(&self) -> Result<Vec<u8>> {
        self.vm.call(&format!("read {}", self.id)).await.with_context(|| format!("reading {}", self.path))
    }

    /// [`Handle::read`] as text without the trailing newline.
    pub async fn read_text(&self) -> Result<String> {
        value_text(&self.path, self.read().await?)
    }

    /// Write to the attribute (its store()); `data` is one line of
    /// printable ASCII.
    pub async fn write(&self, data: &str) -> Result<()> {
        self.vm
            .call(&format!("write {} {data}", self.id))
            .await
            .map(drop)
            .with_context(|| format!("writing {}", self.path))
    }

    /// Close the handle.
    pub async fn close(mut self) -> Result<()> {
        self.open = false;
        self.vm.call(&format!("close {}", self.id)).await.map(drop)
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        if self.open {
            send_in_background(&self.vm.control, format!("close {}", self.id));
        }
    }
}

/// A device reference taken with `devref get`; see [`Vm::devref`].
pub struct DevRef<'vm> {
    vm: &'vm Vm,
    devpath: String,
    held: bool,
}

impl DevRef<'_> {
    /// The device path the reference is on.
    pub fn devpath(&self) -> &str {
        &self.devpath
    }

    /// Drop the reference (`devref put`) and wait for the guest to take it.
    pub async fn put(mut self) -> Result<()> {
        self.held = false;
        self.vm.call(&format!("devref put {}", self.devpath)).await.map(drop)
    }
}

impl Drop for DevRef<'_> {
    fn drop(&mut self) {
        if self.held {
            send_in_background(&self.vm.control, format!("devref put {}", self.devpath));
        }
    }
}

/// A read blocked inside show(); see [`Vm::hold_read`].
pub struct HeldRead<'vm> {
    vm: &'vm Vm,
    path: String,
    /// The attribute's path without links, from the guest's notice.
    canonical: String,
    handle: Option<Handle<'vm>>,
    reply: Option<PendingReply>,
}

impl HeldRead<'_> {
    /// The attribute's path, as given to [`Vm::hold_read`].
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The attribute's path without links, as the guest named it in its
    /// `* held <path>` notice.
    pub fn canonical_path(&self) -> &str {
        &self.canonical
    }

    /// Has the read been answered? While it is held, never.
    pub fn is_answered(&self) -> bool {
        self.reply.as_ref().is_none_or(PendingReply::is_answered)
    }

    /// Let show() go on (`unhold`), wait for the read's reply and close the
    /// handle. Returns what the read returned: the old data when the read
    /// was inside show() before a removal started.
    pub async fn release(mut self) -> Result<Vec<u8>> {
        self.vm.call(&format!("unhold {}", self.canonical)).await?;
        let reply = self.reply.take().expect("only release() takes the reply");
        let bytes = self.vm.wait_reply(reply).await.with_context(|| format!("the held read of {}", self.path));
        if let Some(handle) = self.handle.take() {
            handle.close().await?;
        }
        bytes
    }
}

impl Drop for HeldRead<'_> {
    fn drop(&mut self) {
        if self.reply.is_some() {
            // The handle's own drop closes it after this.
            send_in_background(&self.vm.control, format!("unhold {}", self.canonical));
        }
    }
}
