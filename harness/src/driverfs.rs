//! The driverfs snapshot (`docs/snapshot-format.md`), host side: parse and
//! validate what the guest sent, query it, and render it back byte for byte.
//!
//! A snapshot is untrusted input: its size is bounded, every line must have
//! one of the three forms, paths must be clean, and entries must come
//! depth-first with children in bytewise order, each under a directory that
//! was listed before it.

use std::collections::BTreeSet;
use std::fmt;

use anyhow::{Result, bail};

/// Bounds on what the harness accepts from the guest.
pub const MAX_SNAPSHOT_BYTES: usize = 4 << 20;
/// Most entries the harness accepts in a snapshot.
pub const MAX_ENTRIES: usize = 100_000;

/// One line of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// `d <path>`: a directory.
    Dir {
        /// Path from the driverfs root.
        path: String,
    },
    /// The value exactly as the snapshot has it (escaped).
    File {
        /// Path from the driverfs root.
        path: String,
        /// The value, escaped as in the snapshot (see [`unescape`]).
        value: String,
    },
    /// `l <path> -> <target>`: a symbolic link.
    Link {
        /// Path from the driverfs root.
        path: String,
        /// The target, relative to the link's directory.
        target: String,
    },
}

impl Entry {
    /// The entry's path.
    pub fn path(&self) -> &str {
        match self {
            Entry::Dir { path } | Entry::File { path, .. } | Entry::Link { path, .. } => path,
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Dir { path } => write!(f, "d {path}"),
            Entry::File { path, value } if value.is_empty() => write!(f, "f {path}"),
            Entry::File { path, value } => write!(f, "f {path} {value}"),
            Entry::Link { path, target } => write!(f, "l {path} -> {target}"),
        }
    }
}

/// A validated snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    entries: Vec<Entry>,
}

impl Snapshot {
    /// Parse and validate a snapshot (see `docs/snapshot-format.md`); the error names the offending line.
    pub fn parse(bytes: &[u8]) -> Result<Snapshot> {
        if bytes.len() > MAX_SNAPSHOT_BYTES {
            bail!("snapshot is {} bytes, limit is {MAX_SNAPSHOT_BYTES}", bytes.len());
        }
        let text = std::str::from_utf8(bytes).map_err(|e| anyhow::anyhow!("snapshot is not UTF-8: {e}"))?;
        if !text.is_empty() && !text.ends_with('\n') {
            bail!("snapshot does not end with a newline");
        }
        let mut entries = Vec::new();
        let mut dirs = BTreeSet::new();
        let mut previous: Option<String> = None;
        for (n, line) in text.lines().enumerate() {
            let lineno = n + 1;
            if entries.len() >= MAX_ENTRIES {
                bail!("snapshot has more than {MAX_ENTRIES} entries");
            }
            let entry = parse_line(line).map_err(|e| anyhow::anyhow!("snapshot line {lineno}: {e}: {line:?}"))?;
            let path = entry.path().to_string();
            check_path(&path).map_err(|e| anyhow::anyhow!("snapshot line {lineno}: {e}"))?;
            if let Some((parent, _)) = path.rsplit_once('/')
                && !dirs.contains(parent)
            {
                bail!("snapshot line {lineno}: {path} comes before (or without) its directory {parent}");
            }
            if let Some(prev) = &previous
                && depth_first_cmp(prev, &path) != std::cmp::Ordering::Less
            {
                bail!("snapshot line {lineno}: {path} is out of depth-first bytewise order after {prev}");
            }
            if let Entry::Dir { path } = &entry {
                dirs.insert(path.clone());
            }
            previous = Some(path);
            entries.push(entry);
        }
        Ok(Snapshot { entries })
    }

    /// Every entry, in snapshot order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.path() == path)
    }

    /// The escaped value of the attribute at `path`, as the snapshot line
    /// has it (`bar0 mem32 ...\nbar1 io ...`); [`Snapshot::text`] undoes
    /// the escaping.
    pub fn value(&self, path: &str) -> Option<&str> {
        match self.get(path)? {
            Entry::File { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The value of the attribute at `path` as show() wrote it (first page,
    /// without the trailing newline): [`Snapshot::value`] unescaped, bytes
    /// that are not UTF-8 replaced.
    pub fn text(&self, path: &str) -> Option<String> {
        self.value(path).map(|v| String::from_utf8_lossy(&unescape(v)).into_owned())
    }

    /// Names of the directory's direct entries, in snapshot order.
    pub fn children(&self, dir: &str) -> Vec<&str> {
        let prefix = format!("{dir}/");
        self.entries.iter().filter_map(|e| e.path().strip_prefix(&prefix)).filter(|rest| !rest.contains('/')).collect()
    }

    /// The snapshot text, identical to what a well-formed guest sent.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.entries {
            out.push_str(&e.to_string());
            out.push('\n');
        }
        out
    }

    /// Only the entries under `prefix` (a directory path), e.g. `root/pci0`.
    pub fn subtree(&self, prefix: &str) -> Snapshot {
        let below = format!("{prefix}/");
        Snapshot {
            entries: self
                .entries
                .iter()
                .filter(|e| e.path() == prefix || e.path().starts_with(&below))
                .cloned()
                .collect(),
        }
    }
}

fn parse_line(line: &str) -> Result<Entry> {
    let (kind, rest) = line.split_at_checked(2).ok_or_else(|| anyhow::anyhow!("line too short"))?;
    match kind {
        "d " => Ok(Entry::Dir { path: rest.to_string() }),
        "f " => {
            let (path, value) = rest.split_once(' ').unwrap_or((rest, ""));
            if value.bytes().any(|b| !(0x20..0x7f).contains(&b)) {
                bail!("attribute value has unescaped bytes");
            }
            Ok(Entry::File { path: path.to_string(), value: value.to_string() })
        }
        "l " => {
            let (path, target) = rest.split_once(" -> ").ok_or_else(|| anyhow::anyhow!("link without ' -> '"))?;
            if target.is_empty() || target.starts_with('/') {
                bail!("link target must be relative");
            }
            Ok(Entry::Link { path: path.to_string(), target: target.to_string() })
        }
        _ => bail!("unknown entry kind"),
    }
}

fn check_path(path: &str) -> Result<()> {
    if path.is_empty() || path.starts_with('/') || path.ends_with('/') {
        bail!("bad path {path:?}");
    }
    for comp in path.split('/') {
        if comp.is_empty() || comp == "." || comp == ".." || comp.contains(' ') {
            bail!("bad path component in {path:?}");
        }
        if comp.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
            bail!("non-printable byte in path {path:?}");
        }
    }
    Ok(())
}

/// Depth-first order with children sorted bytewise: compare component by
/// component, a directory before everything below it.
fn depth_first_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Undo the snapshot escaping (`\\`, `\n`, `\xNN`).
pub fn unescape(value: &str) -> Vec<u8> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 1 < bytes.len() {
            match bytes[i + 1] {
                b'\\' => {
                    out.push(b'\\');
                    i += 2;
                    continue;
                }
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                b'x' if i + 4 <= bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).ok();
                    if let Some(b) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        out.push(b);
                        i += 4;
                        continue;
                    }
                }
                _ => {}
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "d bus\nd bus/pci\nd bus/pci/devices\nl bus/pci/devices/00:01.1 -> ../../../root/pci0/00:01.1\nd root\nd root/pci0\nd root/pci0/00:01.1\nf root/pci0/00:01.1/name PIIX3 IDE\nf root/pci0/00:01.1/resource bar4 io 0xc000-0xc00f\\n\nf root/pci0/00:01.1/vendor 0x8086\nf root/pci0/name\n";

    #[test]
    fn parses_queries_and_renders_identically() {
        let s = Snapshot::parse(GOOD.as_bytes()).unwrap();
        assert_eq!(s.render(), GOOD);
        assert_eq!(s.value("root/pci0/00:01.1/vendor"), Some("0x8086"));
        assert_eq!(s.value("root/pci0/name"), Some(""));
        assert_eq!(s.value("root/pci0/00:01.1/resource"), Some("bar4 io 0xc000-0xc00f\\n"));
        assert_eq!(s.text("root/pci0/00:01.1/resource").as_deref(), Some("bar4 io 0xc000-0xc00f\n"));
        assert_eq!(s.text("root/pci0"), None, "a directory has no value");
        assert_eq!(s.children("root/pci0/00:01.1"), ["name", "resource", "vendor"]);
        assert_eq!(s.subtree("root/pci0/00:01.1").entries().len(), 4);
    }

    #[test]
    fn rejects_malformed_snapshots() {
        let cases: &[(&str, &str)] = &[
            ("d root\nd root/b\nd root/a\n", "order"),
            ("d root/a\n", "directory"),
            ("x root\n", "kind"),
            ("d root\nl root/l -> /abs\n", "relative"),
            ("d root\nd root/../etc\n", "component"),
            ("d root\nf root/v a\tb\n", "unescaped"),
            ("d root", "newline"),
            ("d root\nf root/x 1\nf root/x 2\n", "order"),
        ];
        for (text, needle) in cases {
            let err = Snapshot::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
        assert!(Snapshot::parse(&vec![b'd'; MAX_SNAPSHOT_BYTES + 1]).is_err());
        assert!(Snapshot::parse(b"d r\xffoot\n").is_err());
    }

    #[test]
    fn unescape_reverses_the_guest_escaping() {
        assert_eq!(unescape("a\\\\b\\nc\\x00\\xff"), b"a\\b\nc\x00\xff");
        assert_eq!(unescape("trailing\\"), b"trailing\\");
        assert_eq!(unescape("\\xzz"), b"\\xzz");
    }
}
