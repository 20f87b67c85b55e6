//! What a QEMU binary can emulate, as it says itself: the device models of
//! `-device help` and a model's properties from `-device <model>,help`.
//! Profiles are checked against these before anything boots, so a typo is
//! an error that names the file, not a QEMU that fails at start.
//!
//! Answers are cached per binary (its path, size and modification time): in
//! memory for the process, and on disk under `target/qemu-device-help` so
//! repeated commands do not start QEMU again.

use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// How long one `-device help` may take.
const HELP_TIMEOUT: Duration = Duration::from_secs(20);

/// Device model names `qemu -device help` lists.
pub fn models(qemu: &Path) -> Result<BTreeSet<String>> {
    cached(qemu, "models", &["-device", "help"], parse_models)
}

/// Property names `qemu -device <model>,help` lists.
pub fn properties(qemu: &Path, model: &str) -> Result<BTreeSet<String>> {
    if !model.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        bail!("{model:?} is not a device model name");
    }
    cached(qemu, &format!("props-{model}"), &["-device", &format!("{model},help")], parse_properties)
}

/// `name "edu", bus PCI, desc "..."` lines.
pub fn parse_models(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter_map(|l| l.strip_prefix("name \""))
        .filter_map(|rest| rest.split_once('"').map(|(name, _)| name.to_string()))
        .collect()
}

/// `  addr=<int32>  - ...` lines after `<model> options:`.
pub fn parse_properties(help: &str) -> BTreeSet<String> {
    help.lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.trim_start().split_once('=').map(|(name, _)| name.to_string()))
        .collect()
}

/// (the binary's key, what was asked).
type CacheKey = (String, String);

fn cached(qemu: &Path, what: &str, args: &[&str], parse: fn(&str) -> BTreeSet<String>) -> Result<BTreeSet<String>> {
    static MEMORY: OnceLock<Mutex<HashMap<CacheKey, BTreeSet<String>>>> = OnceLock::new();
    let key = binary_key(qemu)?;
    let memo = MEMORY.get_or_init(Default::default);
    if let Some(hit) = memo.lock().unwrap().get(&(key.clone(), what.to_string())) {
        return Ok(hit.clone());
    }
    let file = cache_dir().join(&key).join(format!("{what}.txt"));
    let help = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(_) => {
            let text = ask(qemu, args)?;
            // Best effort: a cache that cannot be written only costs time.
            if std::fs::create_dir_all(file.parent().expect("has a parent")).is_ok() {
                let partial = file.with_extension(format!("tmp{}", std::process::id()));
                if std::fs::write(&partial, &text).is_ok() {
                    let _ = std::fs::rename(&partial, &file);
                }
            }
            text
        }
    };
    let parsed = parse(&help);
    if parsed.is_empty() {
        bail!("`{} {}` listed nothing; is it a QEMU binary?", qemu.display(), args.join(" "));
    }
    memo.lock().unwrap().insert((key, what.to_string()), parsed.clone());
    Ok(parsed)
}

fn cache_dir() -> PathBuf {
    guest_build::workspace_root().join("target").join("qemu-device-help")
}

/// Names one build of one binary: path, size, modification time.
fn binary_key(qemu: &Path) -> Result<String> {
    let meta = std::fs::metadata(qemu).with_context(|| format!("reading {}", qemu.display()))?;
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    qemu.hash(&mut hasher);
    meta.len().hash(&mut hasher);
    meta.modified().ok().hash(&mut hasher);
    Ok(format!("{:016x}", hasher.finish()))
}

/// Run QEMU with `args` and return its standard output, within a deadline.
fn ask(qemu: &Path, args: &[&str]) -> Result<String> {
    let shown = format!("{} {}", qemu.display(), args.join(" "));
    let child = Command::new(qemu)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting `{shown}`"))?;
    let done = crate::subprocess::finish(child, None, HELP_TIMEOUT, &format!("`{shown}`"))?;
    if !done.status.success() {
        bail!("`{shown}` failed ({}): {}", done.status, String::from_utf8_lossy(&done.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&done.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_texts_parse() {
        let models = parse_models(
            "Controller/Bridge/Hub devices:\nname \"pci-bridge\", bus PCI, desc \"Standard PCI Bridge\"\n\
             name \"pcie-pci-bridge\", bus PCI\n\nMisc devices:\nname \"edu\", bus PCI\n",
        );
        assert_eq!(models, ["edu", "pci-bridge", "pcie-pci-bridge"].map(String::from).into());
        let props = parse_properties(
            "pcie-root-port options:\n  addr=<int32>           - Slot (default: -1)\n  chassis=<uint8>        -  (default: 0)\n",
        );
        assert_eq!(props, ["addr", "chassis"].map(String::from).into());
    }
}
