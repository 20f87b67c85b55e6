//! The driverfs snapshot (docs/snapshot-format.md): one entry per line,
//! depth-first, children in bytewise order, paths from the driverfs root.
//!
//! ```text
//! d root/pci0/00:01.1
//! f root/pci0/00:01.1/vendor 0x8086
//! l root/pci0/00:01.1/driver -> ../../../bus/pci/drivers/piix-ide
//! ```
//!
//! Attributes show the first page of show() with its trailing newline
//! dropped; `\`, newlines and bytes outside printable ASCII are escaped.
//! Nodes being removed are not listed, as kernfs readdir skips them.

use alloc::string::String;
use core::fmt::Write;

use super::{NodeId, NodeKind};
use crate::base::Core;
use crate::errno::Errno;

/// Size of the "first page" of an attribute.
pub const PAGE_SIZE: usize = 4096;

/// Render the whole tree, or the subtree at `path` (the entry itself
/// included). The path is walked without following links.
pub fn render(core: &Core, path: Option<&str>) -> Result<String, Errno> {
    let fs = &core.fs;
    let start = match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        None => None,
        Some(p) => {
            let mut cur = fs.root();
            for comp in p.split('/') {
                cur = fs.child(cur, comp).filter(|n| fs.is_active_node(*n)).ok_or(Errno::ENOENT)?;
            }
            Some(cur)
        }
    };
    let mut out = String::new();
    match start {
        None => {
            for (_, child) in fs.active_children(fs.root()) {
                entry(core, child, &mut out);
            }
        }
        Some(node) => entry(core, node, &mut out),
    }
    Ok(out)
}

fn entry(core: &Core, node: NodeId, out: &mut String) {
    let fs = &core.fs;
    let path = fs.path(node);
    match fs.kind(node) {
        Some(NodeKind::Dir) => {
            let _ = writeln!(out, "d {path}");
            for (_, child) in fs.active_children(node) {
                entry(core, child, out);
            }
        }
        Some(NodeKind::Attr { dev, .. }) => {
            let value = core.show_attr_ref(dev, fs.node_name(node)).unwrap_or_default();
            let value = escape_value(value.as_bytes());
            // An empty value leaves no trailing space.
            let sep = if value.is_empty() { "" } else { " " };
            let _ = writeln!(out, "f {path}{sep}{value}");
        }
        Some(NodeKind::Link { target }) => {
            let _ = writeln!(out, "l {path} -> {}", fs.link_target(node, target));
        }
        None => {}
    }
}

/// First page, one trailing newline dropped, then `\\`, `\n` and
/// non-printable bytes escaped (`\xNN`).
pub fn escape_value(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(PAGE_SIZE)];
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape_value;

    #[test]
    fn escapes_backslash_newline_and_non_printable() {
        assert_eq!(escape_value(b"PIIX3 IDE\n"), "PIIX3 IDE");
        assert_eq!(escape_value(b"a\\b\nc\n"), "a\\\\b\\nc");
        assert_eq!(escape_value(b"\x00\xff\t~"), "\\x00\\xff\\x09~");
        assert_eq!(escape_value(b"two\n\n"), "two\\n", "only one trailing newline is dropped");
    }

    #[test]
    fn keeps_only_the_first_page() {
        let long = [b'x'; super::PAGE_SIZE + 10];
        assert_eq!(escape_value(&long).len(), super::PAGE_SIZE);
    }
}
