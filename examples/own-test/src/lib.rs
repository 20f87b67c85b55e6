//! Nothing here: the example is its tests (`tests/hotplug.rs`).
