//! Reads and writes through handles, after `fs/kernfs/file.c`: each one runs
//! under an active reference on its node, never under a device reference.

use alloc::string::String;
use alloc::vec::Vec;

use super::{NodeId, NodeKind};
use crate::base::{CoreRef, DeviceId, StoreEffect, device_unregister};
use crate::errno::Errno;
use crate::executor::wait_until;
use crate::fault::{self, Fault};

/// Take the active reference for one operation on the handle's node.
fn begin(core: &CoreRef, handle: u32) -> Result<(NodeId, DeviceId, bool, String), Errno> {
    let mut c = core.borrow_mut();
    let mut node = c.fs.handle_node(handle)?;
    if fault::planted(Fault::StaleHandleReachesNew) && !c.fs.is_active_node(node) {
        // The bug: the handle remembers a path, not a node.
        node = c.fs.lookup(&c.fs.path(node)).unwrap_or(node);
    }
    c.fs.get_active(node)?;
    match c.fs.kind(node) {
        Some(NodeKind::Attr { dev, writable }) => Ok((node, dev, writable, String::from(c.fs.node_name(node)))),
        _ => {
            c.fs.put_active(node);
            Err(Errno::EISDIR)
        }
    }
}

/// `read <handle>`: the attribute's show() output (first page).
///
/// If the attribute is held, show() blocks inside its active reference until
/// `unhold`, which is how tests catch a read in flight while removal starts.
/// It first says so with a `* held <path>` notice (the canonical path), so
/// the harness knows the read is inside show() before it starts a removal.
pub async fn read(core: &CoreRef, handle: u32) -> Result<Vec<u8>, Errno> {
    let (node, dev, _, attr) = begin(core, handle)?;
    let held = core.borrow_mut().fs.hold_begin(node);
    if held {
        let path = core.borrow().fs.path(node);
        core.borrow_mut().notice(alloc::format!("held {path}"));
        wait_until(|| core.borrow().fs.hold_released(node)).await;
        core.borrow_mut().fs.hold_end(node);
    }
    let mut c = core.borrow_mut();
    let value = c.show_attr(dev, &attr);
    c.fs.put_active(node);
    let mut bytes = value.ok_or(Errno::EIO)?.into_bytes();
    bytes.truncate(super::snapshot::PAGE_SIZE);
    Ok(bytes)
}

/// `write <handle> <data>`: the attribute's store().
///
/// A store that unregisters its own device drops its active reference first
/// (`kernfs_remove_self`): removal waits for active references to drain, so
/// holding our own would wait forever.
pub async fn write(core: &CoreRef, handle: u32, data: &[u8]) -> Result<(), Errno> {
    let (node, dev, writable, attr) = begin(core, handle)?;
    let effect = if writable { core.borrow_mut().store_attr(dev, &attr, data) } else { Err(Errno::EACCES) };
    core.borrow_mut().fs.put_active(node);
    match effect? {
        StoreEffect::None => Ok(()),
        StoreEffect::UnregisterSelf => match device_unregister(core, dev).await {
            // Someone else removed it in between: the store still happened.
            Ok(()) | Err(Errno::ENODEV) => Ok(()),
            Err(e) => Err(e),
        },
    }
}
