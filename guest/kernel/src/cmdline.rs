//! The kernel command line (PVH passes `-append` as is). Words are flags or
//! `key=value` pairs; unknown words are ignored.

use alloc::string::String;

#[derive(Clone, Debug)]
pub struct Cmdline {
    raw: String,
}

impl Cmdline {
    pub fn new(raw: &str) -> Self {
        Cmdline { raw: String::from(raw.trim()) }
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }

    pub fn flag(&self, name: &str) -> bool {
        self.raw.split_whitespace().any(|w| w == name)
    }

    pub fn value(&self, key: &str) -> Option<&str> {
        self.raw.split_whitespace().find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
    }
}
