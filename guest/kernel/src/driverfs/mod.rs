//! driverfs: the file view of the device model, after `fs/kernfs`.
//!
//! Two counts per node, as in kernfs:
//! - `open` keeps the node's memory (a handle can always be closed safely);
//! - `active` is taken around each show()/store() and never around open.
//!   Removal first *deactivates* a node, so no new operation starts, then
//!   waits until `active` drops to zero, then unlinks it.
//!
//! So a handle opened before a removal reads ENODEV after it, an open after
//! it is ENOENT, and a read already inside show() finishes first. Nodes are
//! addressed by index + generation: a handle never reaches a node that reused
//! its slot.

pub mod file;
pub mod snapshot;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use crate::base::DeviceId;
use crate::errno::Errno;
use crate::fault::{self, Fault};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId {
    index: u32,
    generation: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeKind {
    Dir,
    Attr { dev: DeviceId, writable: bool },
    Link { target: NodeId },
}

struct Node {
    name: String,
    /// Full path from the driverfs root; nodes are never renamed, and a node
    /// kept alive by a handle must still be able to name itself.
    path: String,
    parent: Option<NodeId>,
    kind: NodeKind,
    children: BTreeMap<String, NodeId>,
    active: u32,
    open: u32,
    deactivated: bool,
    linked: bool,
    /// Unlink as soon as `active` reaches zero (single-attribute removal).
    unlink_when_drained: bool,
}

struct Slot {
    generation: u32,
    node: Option<Node>,
}

/// The state of a `hold` on an attribute path (the race-test hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    /// The next show() of the attribute will block.
    Armed,
    /// A show() is blocked on it.
    Blocking,
    /// `unhold` came: the blocked show() may go on.
    Released,
}

pub struct Driverfs {
    slots: Vec<Slot>,
    free: Vec<u32>,
    root: NodeId,
    handles: BTreeMap<u32, NodeId>,
    next_handle: u32,
    holds: BTreeMap<String, Hold>,
}

/// Longest path `lookup` accepts, and most links it follows.
const MAX_PATH: usize = 1024;
const MAX_LINK_DEPTH: usize = 8;

impl Default for Driverfs {
    fn default() -> Self {
        Self::new()
    }
}

impl Driverfs {
    pub fn new() -> Self {
        let mut fs = Driverfs {
            slots: Vec::new(),
            free: Vec::new(),
            root: NodeId { index: 0, generation: 0 },
            handles: BTreeMap::new(),
            next_handle: 1,
            holds: BTreeMap::new(),
        };
        fs.root = fs.alloc(Node {
            name: String::new(),
            path: String::new(),
            parent: None,
            kind: NodeKind::Dir,
            children: BTreeMap::new(),
            active: 0,
            open: 0,
            deactivated: false,
            linked: true,
            unlink_when_drained: false,
        });
        fs
    }

    pub fn root(&self) -> NodeId {
        self.root
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.generation += 1;
            slot.node = Some(node);
            NodeId { index, generation: slot.generation }
        } else {
            self.slots.push(Slot { generation: 1, node: Some(node) });
            NodeId { index: self.slots.len() as u32 - 1, generation: 1 }
        }
    }

    fn node(&self, id: NodeId) -> Option<&Node> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_ref()
    }

    fn node_mut(&mut self, id: NodeId) -> Option<&mut Node> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.node.as_mut()
    }

    fn add_child(&mut self, parent: NodeId, name: &str, kind: NodeKind) -> Result<NodeId, Errno> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        let p = self.node(parent).ok_or(Errno::ENOENT)?;
        if p.kind != NodeKind::Dir || !p.linked {
            return Err(Errno::ENOTDIR);
        }
        if p.children.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let path = if p.path.is_empty() { String::from(name) } else { alloc::format!("{}/{}", p.path, name) };
        let id = self.alloc(Node {
            name: String::from(name),
            path,
            parent: Some(parent),
            kind,
            children: BTreeMap::new(),
            active: 0,
            open: 0,
            deactivated: false,
            linked: true,
            unlink_when_drained: false,
        });
        self.node_mut(parent).expect("checked above").children.insert(String::from(name), id);
        Ok(id)
    }

    pub fn mkdir(&mut self, parent: NodeId, name: &str) -> Result<NodeId, Errno> {
        self.add_child(parent, name, NodeKind::Dir)
    }

    pub fn create_attr(&mut self, parent: NodeId, name: &str, dev: DeviceId, writable: bool) -> Result<NodeId, Errno> {
        self.add_child(parent, name, NodeKind::Attr { dev, writable })
    }

    pub fn symlink(&mut self, parent: NodeId, name: &str, target: NodeId) -> Result<NodeId, Errno> {
        self.add_child(parent, name, NodeKind::Link { target })
    }

    pub fn child(&self, dir: NodeId, name: &str) -> Option<NodeId> {
        self.node(dir)?.children.get(name).copied()
    }

    pub fn kind(&self, node: NodeId) -> Option<NodeKind> {
        self.node(node).map(|n| n.kind)
    }

    /// Usable for new operations: linked and not deactivated.
    pub fn is_active_node(&self, node: NodeId) -> bool {
        self.node(node).is_some_and(|n| n.linked && !n.deactivated)
    }

    /// Stop new operations on the node (kernfs: add the deactivation bias).
    pub fn deactivate(&mut self, node: NodeId) {
        if let Some(n) = self.node_mut(node) {
            n.deactivated = true;
        }
    }

    pub fn active(&self, node: NodeId) -> u32 {
        self.node(node).map_or(0, |n| n.active)
    }

    pub fn total_active(&self) -> u32 {
        self.slots.iter().filter_map(|s| s.node.as_ref()).map(|n| n.active).sum()
    }

    /// Take an active reference: the node may be called into until
    /// `put_active`. Fails with ENODEV once the node is being removed.
    pub fn get_active(&mut self, node: NodeId) -> Result<(), Errno> {
        let n = self.node_mut(node).ok_or(Errno::ENODEV)?;
        if !n.linked || n.deactivated {
            return Err(Errno::ENODEV);
        }
        n.active += 1;
        Ok(())
    }

    pub fn put_active(&mut self, node: NodeId) {
        let Some(n) = self.node_mut(node) else { return };
        n.active = n.active.saturating_sub(1);
        if n.active == 0 && n.unlink_when_drained {
            self.unlink(node);
        }
    }

    /// Take the node out of the tree. Its children go with it. The memory
    /// stays while handles are open.
    pub fn unlink(&mut self, node: NodeId) {
        let Some(n) = self.node_mut(node) else { return };
        if !n.linked {
            return;
        }
        n.linked = false;
        n.deactivated = true;
        let parent = n.parent;
        let name = n.name.clone();
        let children: Vec<NodeId> = n.children.values().copied().collect();
        for child in children {
            self.unlink(child);
        }
        if let Some(p) = parent.and_then(|p| self.node_mut(p))
            && p.children.get(&name) == Some(&node)
        {
            p.children.remove(&name);
        }
        self.maybe_free(node);
    }

    /// Unlink now if nothing runs in the node, else when the last active
    /// reference goes.
    pub fn unlink_when_drained(&mut self, node: NodeId) {
        let Some(n) = self.node_mut(node) else { return };
        if n.active == 0 {
            self.unlink(node);
        } else {
            n.unlink_when_drained = true;
        }
    }

    fn maybe_free(&mut self, node: NodeId) {
        let Some(n) = self.node(node) else { return };
        if n.linked || n.open > 0 || n.active > 0 {
            return;
        }
        self.slots[node.index as usize].node = None;
        self.free.push(node.index);
    }

    /// Resolve a snapshot path (`root/pci0/00:01.1/vendor`, or through a link
    /// such as `bus/pci/devices/00:01.1/vendor`). Inactive nodes do not
    /// exist for lookups: ENOENT.
    pub fn lookup(&self, path: &str) -> Result<NodeId, Errno> {
        self.lookup_in(path, false)
    }

    /// `lookup`, optionally also finding deactivated (dying) nodes that are
    /// still linked: only [`Fault::OpenOnDying`] asks for that.
    fn lookup_in(&self, path: &str, dying_too: bool) -> Result<NodeId, Errno> {
        let usable =
            |node| if dying_too { self.node(node).is_some_and(|n| n.linked) } else { self.is_active_node(node) };
        if path.len() > MAX_PATH {
            return Err(Errno::EINVAL);
        }
        let mut cur = self.root;
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            if comp == "." || comp == ".." {
                return Err(Errno::EINVAL);
            }
            cur = self.follow(cur, 0)?;
            let n = self.node(cur).ok_or(Errno::ENOENT)?;
            if n.kind != NodeKind::Dir {
                return Err(Errno::ENOTDIR);
            }
            cur = *n.children.get(comp).ok_or(Errno::ENOENT)?;
            if !usable(cur) {
                return Err(Errno::ENOENT);
            }
        }
        self.follow(cur, 0)
    }

    fn follow(&self, node: NodeId, depth: usize) -> Result<NodeId, Errno> {
        if depth > MAX_LINK_DEPTH {
            return Err(Errno::EINVAL);
        }
        match self.node(node).ok_or(Errno::ENOENT)?.kind {
            NodeKind::Link { target } => {
                if !self.is_active_node(target) {
                    return Err(Errno::ENOENT);
                }
                self.follow(target, depth + 1)
            }
            _ => Ok(node),
        }
    }

    /// The node's path from the driverfs root (`root/pci0/00:01.1`).
    pub fn path(&self, node: NodeId) -> String {
        self.node(node).map(|n| n.path.clone()).unwrap_or_default()
    }

    /// The relative target of a link, as `kernfs_get_target_path` builds it:
    /// one `..` per directory above the link, then the target's path.
    pub fn link_target(&self, link: NodeId, target: NodeId) -> String {
        let depth = self.path(link).matches('/').count();
        let mut out = String::new();
        for _ in 0..depth {
            out.push_str("../");
        }
        out.push_str(&self.path(target));
        out
    }

    // ---- handles ----

    /// Open an attribute. Holds the node's memory, not the device.
    pub fn open(&mut self, path: &str) -> Result<u32, Errno> {
        let node = self.lookup_in(path, fault::planted(Fault::OpenOnDying))?;
        match self.node(node).ok_or(Errno::ENOENT)?.kind {
            NodeKind::Dir => return Err(Errno::EISDIR),
            NodeKind::Link { .. } => return Err(Errno::ENOENT),
            NodeKind::Attr { .. } => {}
        }
        self.node_mut(node).expect("looked up").open += 1;
        let handle = self.next_handle;
        self.next_handle = self.next_handle.wrapping_add(1).max(1);
        self.handles.insert(handle, node);
        Ok(handle)
    }

    pub fn handle_node(&self, handle: u32) -> Result<NodeId, Errno> {
        self.handles.get(&handle).copied().ok_or(Errno::EBADF)
    }

    pub fn close(&mut self, handle: u32) -> Result<(), Errno> {
        let node = self.handles.remove(&handle).ok_or(Errno::EBADF)?;
        if let Some(n) = self.node_mut(node) {
            n.open -= 1;
        }
        self.maybe_free(node);
        Ok(())
    }

    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// Nodes out of the tree whose memory is still allocated. Only open
    /// handles and active references may keep such a node; at quiescence
    /// this must be 0, or a slot has leaked.
    #[cfg(test)]
    pub(crate) fn unlinked_nodes(&self) -> usize {
        self.slots.iter().filter_map(|s| s.node.as_ref()).filter(|n| !n.linked).count()
    }

    // ---- holds (the race-test hook) ----

    /// Arm a hold: the next show() of the attribute at `path` blocks until
    /// `unhold`. Paths through links are stored by their canonical path.
    pub fn hold(&mut self, path: &str) -> Result<(), Errno> {
        let node = self.lookup(path)?;
        if !matches!(self.kind(node), Some(NodeKind::Attr { .. })) {
            return Err(Errno::EISDIR);
        }
        let canonical = self.path(node);
        if self.holds.contains_key(&canonical) {
            return Err(Errno::EBUSY);
        }
        self.holds.insert(canonical, Hold::Armed);
        Ok(())
    }

    /// Release a hold. Works while the attribute is being removed (that is
    /// the point): the path is matched as given if it no longer resolves.
    pub fn unhold(&mut self, path: &str) -> Result<(), Errno> {
        let key = match self.lookup(path) {
            Ok(node) => self.path(node),
            Err(_) => String::from(path.trim_matches('/')),
        };
        match self.holds.get(&key) {
            None => Err(Errno::ENOENT),
            Some(Hold::Armed) => {
                self.holds.remove(&key);
                Ok(())
            }
            Some(Hold::Blocking) => {
                self.holds.insert(key, Hold::Released);
                Ok(())
            }
            Some(Hold::Released) => Err(Errno::ENOENT),
        }
    }

    /// Called by a show() with its active reference held: if the attribute
    /// is held, mark the hold as blocking and return true.
    pub(crate) fn hold_begin(&mut self, node: NodeId) -> bool {
        let key = self.path(node);
        if self.holds.get(&key) == Some(&Hold::Armed) {
            self.holds.insert(key, Hold::Blocking);
            true
        } else {
            false
        }
    }

    pub(crate) fn hold_released(&self, node: NodeId) -> bool {
        // Asked on every executor pass while a read is held: borrow the
        // path rather than clone it.
        let path = self.node(node).map_or("", |n| n.path.as_str());
        self.holds.get(path) != Some(&Hold::Blocking)
    }

    pub(crate) fn hold_end(&mut self, node: NodeId) {
        let key = self.path(node);
        if self.holds.get(&key) == Some(&Hold::Released) {
            self.holds.remove(&key);
        }
    }

    /// Paths with a hold armed, blocking or released but not yet consumed.
    pub fn holds(&self) -> Vec<String> {
        self.holds.keys().cloned().collect()
    }

    /// Children of a directory in bytewise order, active ones only.
    pub(crate) fn active_children(&self, dir: NodeId) -> Vec<(String, NodeId)> {
        let Some(n) = self.node(dir) else { return Vec::new() };
        n.children.iter().filter(|(_, id)| self.is_active_node(**id)).map(|(name, id)| (name.clone(), *id)).collect()
    }

    pub(crate) fn node_name(&self, node: NodeId) -> &str {
        self.node(node).map_or("", |n| n.name.as_str())
    }
}
