//! Device-tree pictures drawn by Graphviz: every device of a snapshot is in
//! the SVG, and a changed, an added and a removed device are marked. Needs
//! `dot` (`cargo xtask test` installs Graphviz like QEMU); without it these
//! tests fail, saying how to install it.

use anyhow::{Context, Result, ensure};
use harness::driverfs::Snapshot;
use harness::tree::{self, Tree};

fn golden(name: &str) -> Result<Snapshot> {
    let path = guest_build::workspace_root().join("harness/tests/snapshots").join(name);
    tree::read_snapshot(&path)
}

/// The SVG with the entities dot writes (`&#45;` for `-`) turned back.
fn unescape(svg: &str) -> String {
    svg.replace("&#45;", "-").replace("&#160;", " ")
}

/// The class graphviz gave the node titled `title`.
fn node_class<'a>(svg: &'a str, title: &str) -> Result<&'a str> {
    let at = svg.find(&format!("<title>{title}</title>")).with_context(|| format!("no node {title} in the SVG"))?;
    let group = svg[..at].rfind("<g id=").context("node without a group")?;
    let class = svg[group..at].split("class=\"").nth(1).context("group without a class")?;
    Ok(class.split('"').next().unwrap_or_default())
}

#[test]
fn the_picture_holds_every_device_of_the_snapshot() -> Result<()> {
    let snapshot = golden("boot@pc.snap")?;
    let devices = Tree::from_snapshot(&snapshot);
    ensure!(devices.devices.len() >= 10, "the boot tree has more devices than {:?}", devices.devices.keys());
    let svg = unescape(&tree::svg(&tree::dot("boot@pc", &devices))?);
    ensure!(svg.contains("<svg"), "not an SVG: {}", &svg[..svg.len().min(200)]);
    // Every directory under root/ in the snapshot itself is a device.
    let expected: Vec<&str> = snapshot
        .entries()
        .iter()
        .filter_map(|e| match e {
            harness::driverfs::Entry::Dir { path } if path.starts_with("root/") => Some(path.as_str()),
            _ => None,
        })
        .collect();
    ensure!(expected.len() == devices.devices.len(), "{} devices drawn of {}", devices.devices.len(), expected.len());
    for path in expected {
        ensure!(svg.contains(&format!("<title>tree:{path}</title>")), "{path} is missing from the picture");
    }
    // Grouped by bus, with the attributes as hover text.
    ensure!(svg.contains("bus pci") && svg.contains("bus ide"), "no bus groups");
    ensure!(svg.contains("vendor: 0x8086"), "no attributes in the hover text");
    Ok(())
}

#[test]
fn a_changed_snapshot_marks_changed_added_and_removed_devices() -> Result<()> {
    let old = golden("pci_three_added@pc.snap")?;
    let text = old.render();
    // edu at 00:05.0 gets another vendor; the device at 00:06.0 goes; a new one appears.
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.contains("root/pci0/00:06.0"))
        .map(|l| if l == "f root/pci0/00:05.0/vendor 0x1234" { "f root/pci0/00:05.0/vendor 0x1b36" } else { l })
        .collect();
    ensure!(lines.contains(&"f root/pci0/00:05.0/vendor 0x1b36"), "the golden has no edu at 00:05.0:\n{text}");
    // 00:09.0 goes after the last device, before root/pci0's own files.
    let own_files = lines
        .iter()
        .position(|l| l.strip_prefix("f root/pci0/").is_some_and(|rest| !rest.contains('/')))
        .context("root/pci0 has no files")?;
    lines.splice(own_files..own_files, ["d root/pci0/00:09.0", "f root/pci0/00:09.0/vendor 0x8086"]);
    let new = tree::parse_snapshot(&(lines.join("\n") + "\n"))?;
    let svg = unescape(&tree::svg(&tree::diff_dot("review", &Tree::from_snapshot(&old), &Tree::from_snapshot(&new)))?);
    ensure!(node_class(&svg, "new:root/pci0/00:05.0")? == "node changed", "changed device not marked");
    ensure!(node_class(&svg, "new:root/pci0/00:09.0")? == "node added", "added device not marked");
    ensure!(node_class(&svg, "old:root/pci0/00:06.0")? == "node removed", "removed device not marked");
    ensure!(node_class(&svg, "new:root/pci0/00:01.1")? == "node same", "an unchanged device is marked");
    ensure!(svg.contains("vendor: 0x1234 =&gt; 0x1b36"), "the hover text does not show the change");
    Ok(())
}
