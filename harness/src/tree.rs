//! Pictures of the device tree: a driverfs snapshot drawn as a graph (one
//! node per device, grouped by bus, attributes in the hover text), and a
//! changed snapshot beside the old one with changed, added and removed
//! devices coloured. The layout is Graphviz's `dot`; this module only
//! writes the graph.
//!
//! A device is a directory of the snapshot outside `bus/`; its bus comes
//! from the `bus/<bus>/devices/<name>` links, or else from its driver link
//! (`driver -> ../bus/pci/drivers/...`) or a bound sibling's, so subtree
//! snapshots are grouped too. Its attributes are the files and links
//! directly in its directory; the node shows its name and `name` file.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::driverfs::{Entry, Snapshot};

/// How a newcomer gets Graphviz on Debian.
pub const INSTALL_COMMAND: &str = "apt-get install -y --no-install-recommends graphviz";

/// How long `dot` may take for one picture.
const DOT_TIMEOUT: Duration = Duration::from_secs(60);

/// The devices of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// By device path, in path order (parents before children).
    pub devices: BTreeMap<String, Device>,
}

/// One device of the tree: its bus and attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Device {
    /// The bus it is on (from the bus links or its driver link), if known.
    pub bus: Option<String>,
    /// `name value` for files, `name -> target` for links.
    pub attributes: BTreeMap<String, String>,
}

/// What happened to a device between two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Present in both, the same.
    Same,
    /// Present in both, with different attributes.
    Changed,
    /// Only in the new snapshot.
    Added,
    /// Only in the old snapshot.
    Removed,
}

impl Change {
    fn class(self) -> &'static str {
        match self {
            Change::Same => "same",
            Change::Changed => "changed",
            Change::Added => "added",
            Change::Removed => "removed",
        }
    }

    fn fill(self) -> &'static str {
        match self {
            Change::Same => "white",
            Change::Changed => "#ffd27f",
            Change::Added => "#a8e6a1",
            Change::Removed => "#f4a3a3",
        }
    }
}

fn parent(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

impl Tree {
    /// The device tree a snapshot describes.
    pub fn from_snapshot(snapshot: &Snapshot) -> Tree {
        let mut devices: BTreeMap<String, Device> = BTreeMap::new();
        for entry in snapshot.entries() {
            if let Entry::Dir { path } = entry
                && path != "root"
                && path != "bus"
                && !path.starts_with("bus/")
            {
                devices.insert(path.clone(), Device::default());
            }
        }
        // `bus/<bus>/devices/<name> -> ../../../<devpath>`.
        let mut bus_of: BTreeMap<String, String> = BTreeMap::new();
        for entry in snapshot.entries() {
            let Entry::Link { path, target } = entry else { continue };
            let mut parts = path.split('/');
            if let (Some("bus"), Some(bus), Some("devices")) = (parts.next(), parts.next(), parts.next()) {
                let devpath = target.trim_start_matches("../").to_string();
                bus_of.insert(devpath, bus.to_string());
            }
        }
        for entry in snapshot.entries() {
            let (path, text) = match entry {
                Entry::File { path, value } => (path, value.clone()),
                Entry::Link { path, target } => (path, format!("-> {target}")),
                Entry::Dir { .. } => continue,
            };
            let Some((dir, name)) = path.rsplit_once('/') else { continue };
            if let Some(device) = devices.get_mut(dir) {
                device.attributes.insert(name.to_string(), text);
            }
        }
        for (path, device) in devices.iter_mut() {
            device.bus = bus_of.get(path).cloned().or_else(|| {
                let driver = device.attributes.get("driver")?;
                let (_, after) = driver.split_once("bus/")?;
                after.split('/').next().map(str::to_string)
            });
        }
        // Siblings share their parent's bus: an unbound device takes the
        // bus a bound sibling names.
        let sibling_bus: BTreeMap<String, String> =
            devices.iter().filter_map(|(path, d)| Some((parent(path)?.to_string(), d.bus.clone()?))).collect();
        for (path, device) in devices.iter_mut() {
            if device.bus.is_none() {
                device.bus = parent(path).and_then(|p| sibling_bus.get(p)).cloned();
            }
        }
        Tree { devices }
    }

    /// Each device's change from `old` to `self`, removed ones included.
    pub fn changes_from(&self, old: &Tree) -> BTreeMap<String, Change> {
        let mut changes = BTreeMap::new();
        for (path, device) in &self.devices {
            let change = match old.devices.get(path) {
                None => Change::Added,
                Some(before) if before != device => Change::Changed,
                Some(_) => Change::Same,
            };
            changes.insert(path.clone(), change);
        }
        for path in old.devices.keys().filter(|p| !self.devices.contains_key(*p)) {
            changes.insert(path.clone(), Change::Removed);
        }
        changes
    }
}

/// A DOT string literal.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n"))
}

/// One side of a picture: devices grouped by bus, parent → child edges.
/// `prefix` keeps the two sides' node names apart; `changes` colours them,
/// and `other` supplies the other side's values for the hover text.
fn side(
    out: &mut String,
    prefix: &str,
    title: &str,
    tree: &Tree,
    changes: &BTreeMap<String, Change>,
    other: Option<&Tree>,
) {
    out.push_str(&format!(
        "  subgraph {} {{\n    label={};\n    style=rounded;\n",
        quote(&format!("cluster_{prefix}")),
        quote(title)
    ));
    let mut by_bus: BTreeMap<Option<&str>, Vec<&String>> = BTreeMap::new();
    for (path, device) in &tree.devices {
        by_bus.entry(device.bus.as_deref()).or_default().push(path);
    }
    for (bus, paths) in &by_bus {
        if let Some(bus) = bus {
            out.push_str(&format!(
                "    subgraph {} {{\n      label={};\n      style=dashed;\n",
                quote(&format!("cluster_{prefix}_{bus}")),
                quote(&format!("bus {bus}"))
            ));
        }
        for path in paths {
            let device = &tree.devices[*path];
            let change = changes.get(*path).copied().unwrap_or(Change::Same);
            let mut name = path.rsplit('/').next().unwrap_or(path).to_string();
            if let Some(what) = device.attributes.get("name") {
                let short: String = what.chars().take(24).collect();
                name.push_str(&format!("\n{short}"));
            }
            let mut hover = format!("{path}\n");
            let before = other.and_then(|o| o.devices.get(*path));
            for (attr, value) in &device.attributes {
                match before.and_then(|b| b.attributes.get(attr)) {
                    Some(old) if old != value && change == Change::Changed => {
                        hover.push_str(&format!("{attr}: {old} => {value}\n"))
                    }
                    _ => hover.push_str(&format!("{attr}: {value}\n")),
                }
            }
            out.push_str(&format!(
                "      {} [label={}, tooltip={}, class={}, fillcolor={}];\n",
                quote(&format!("{prefix}:{path}")),
                quote(&name),
                quote(&hover),
                quote(change.class()),
                quote(change.fill())
            ));
        }
        if bus.is_some() {
            out.push_str("    }\n");
        }
    }
    for path in tree.devices.keys() {
        if let Some(parent) = parent(path).filter(|p| tree.devices.contains_key(*p)) {
            out.push_str(&format!(
                "    {} -> {};\n",
                quote(&format!("{prefix}:{parent}")),
                quote(&format!("{prefix}:{path}"))
            ));
        }
    }
    out.push_str("  }\n");
}

fn header(title: &str) -> String {
    format!(
        "digraph devices {{\n  label={};\n  labelloc=t;\n  ordering=out;\n  fontname=\"sans-serif\";\n  \
         node [shape=box, style=\"rounded,filled\", fontname=\"monospace\", fontsize=10];\n  \
         edge [arrowsize=0.6];\n",
        quote(title)
    )
}

/// The DOT text for one snapshot's tree.
pub fn dot(title: &str, tree: &Tree) -> String {
    let mut out = header(title);
    side(&mut out, "tree", title, tree, &BTreeMap::new(), None);
    out.push_str("}\n");
    out
}

/// The DOT text for an old and a new snapshot side by side: in the new
/// tree changed devices are orange and added ones green, in the old one
/// removed devices are red; the hover text shows `old => new` values.
pub fn diff_dot(title: &str, old: &Tree, new: &Tree) -> String {
    let changes = new.changes_from(old);
    let old_changes: BTreeMap<String, Change> = changes
        .iter()
        .filter(|(p, _)| old.devices.contains_key(*p))
        .map(|(p, c)| (p.clone(), if *c == Change::Removed { Change::Removed } else { Change::Same }))
        .collect();
    let mut out = header(title);
    side(&mut out, "old", "old", old, &old_changes, None);
    side(&mut out, "new", "new", new, &changes, Some(old));
    out.push_str(&format!(
        "  legend [shape=plaintext, style=\"\", label=<<table border=\"0\" cellborder=\"1\" cellspacing=\"0\">\
         <tr><td bgcolor=\"{}\">changed</td><td bgcolor=\"{}\">added</td><td bgcolor=\"{}\">removed</td></tr></table>>];\n",
        Change::Changed.fill(),
        Change::Added.fill(),
        Change::Removed.fill()
    ));
    out.push_str("}\n");
    out
}

/// Lay out and draw `dot_text` as SVG with Graphviz. Without Graphviz this
/// fails and says how to install it.
pub fn svg(dot_text: &str) -> Result<String> {
    let child = match Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "Graphviz is not installed: `dot` was not found. Install it with `sudo {INSTALL_COMMAND}` \
             (`cargo xtask test` and `cargo xtask matrix` run that for you when they run as root)."
        ),
        Err(e) => return Err(e).context("starting Graphviz's dot"),
    };
    let done = crate::subprocess::finish(child, Some(dot_text.as_bytes().to_vec()), DOT_TIMEOUT, "Graphviz's dot")?;
    if !done.status.success() {
        bail!("Graphviz's dot failed ({}): {}", done.status, String::from_utf8_lossy(&done.stderr).trim());
    }
    String::from_utf8(done.stdout).context("dot's SVG is not UTF-8")
}

/// A snapshot from a file: an insta `.snap`/`.snap.new` (its header is
/// skipped) or the guest's plain snapshot text.
pub fn read_snapshot(path: &Path) -> Result<Snapshot> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let body = match text.strip_prefix("---\n").and_then(|rest| rest.split_once("\n---\n")) {
        Some((_, body)) => body,
        None => &text,
    };
    parse_snapshot(body).with_context(|| format!("{} is not a driverfs snapshot", path.display()))
}

/// Parse snapshot text, a subtree one too (the goldens are `root/pci0`
/// subtrees): the directories above its first entry are added.
pub fn parse_snapshot(text: &str) -> Result<Snapshot> {
    let first = text.lines().next().and_then(|l| l.get(2..)).unwrap_or("");
    let first = first.split(' ').next().unwrap_or("");
    let mut above = String::new();
    let mut prefix = String::new();
    for part in first.split('/').collect::<Vec<_>>().iter().rev().skip(1).rev() {
        prefix = if prefix.is_empty() { part.to_string() } else { format!("{prefix}/{part}") };
        above.push_str(&format!("d {prefix}\n"));
    }
    Snapshot::parse(format!("{above}{text}").as_bytes())
}

/// Draw `new` (and `old` beside it, if given) into `out` as SVG.
pub fn render(old: Option<&Snapshot>, new: &Snapshot, title: &str, out: &Path) -> Result<()> {
    let new_tree = Tree::from_snapshot(new);
    let dot_text = match old {
        Some(old) => diff_dot(title, &Tree::from_snapshot(old), &new_tree),
        None => dot(title, &new_tree),
    };
    let picture = svg(&dot_text)?;
    std::fs::write(out, picture).with_context(|| format!("writing {}", out.display()))
}

/// Draw every pending insta snapshot (`<name>.snap.new` in `snapshots`)
/// beside its committed `<name>.snap` into `out_dir`; returns the pictures.
pub fn render_pending(snapshots: &Path, out_dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut pending: Vec<std::path::PathBuf> = std::fs::read_dir(snapshots)
        .with_context(|| format!("reading {}", snapshots.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".snap.new"))
        .collect();
    pending.sort();
    let mut drawn = Vec::new();
    for new_file in pending {
        let committed = std::path::PathBuf::from(new_file.to_string_lossy().trim_end_matches(".new"));
        let name = committed.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let old = committed.is_file().then(|| read_snapshot(&committed)).transpose()?;
        std::fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
        let out = out_dir.join(format!("{name}.svg"));
        render(old.as_ref(), &read_snapshot(&new_file)?, &name, &out)?;
        drawn.push(out);
    }
    Ok(drawn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SNAPSHOT: &str = "d bus\nd bus/pci\nd bus/pci/devices\nl bus/pci/devices/00:05.0 -> ../../../root/pci0/00:05.0\n\
        d root\nd root/pci0\nd root/pci0/00:05.0\n\
        l root/pci0/00:05.0/driver -> ../../../bus/pci/drivers/edu\nf root/pci0/00:05.0/vendor 0x1234\nd root/testbus\nd root/testbus/t1\nf root/testbus/t1/value t1\n";

    #[test]
    fn devices_buses_and_attributes() {
        let tree = Tree::from_snapshot(&Snapshot::parse(SNAPSHOT.as_bytes()).unwrap());
        assert_eq!(
            tree.devices.keys().collect::<Vec<_>>(),
            ["root/pci0", "root/pci0/00:05.0", "root/testbus", "root/testbus/t1"]
        );
        let edu = &tree.devices["root/pci0/00:05.0"];
        assert_eq!(edu.bus.as_deref(), Some("pci"));
        assert_eq!(edu.attributes["vendor"], "0x1234");
        assert_eq!(edu.attributes["driver"], "-> ../../../bus/pci/drivers/edu");
        assert_eq!(tree.devices["root/testbus/t1"].bus, None);
    }

    #[test]
    fn changes_are_classified() {
        let old = Tree::from_snapshot(&Snapshot::parse(SNAPSHOT.as_bytes()).unwrap());
        let changed = SNAPSHOT
            .replace("vendor 0x1234", "vendor 0x1b36")
            .replace("d root/testbus/t1\nf root/testbus/t1/value t1\n", "d root/testbus/t2\n");
        let new = Tree::from_snapshot(&Snapshot::parse(changed.as_bytes()).unwrap());
        let changes = new.changes_from(&old);
        assert_eq!(changes["root/pci0/00:05.0"], Change::Changed);
        assert_eq!(changes["root/testbus/t2"], Change::Added);
        assert_eq!(changes["root/testbus/t1"], Change::Removed);
        assert_eq!(changes["root/pci0"], Change::Same);
        let dot = diff_dot("t", &old, &new);
        assert!(dot.contains("vendor: 0x1234 => 0x1b36"), "{dot}");
    }
}
