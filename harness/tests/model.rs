//! The driver model's lifetime rules, end to end on the real guest through
//! the software test bus. The bodies live in `harness::scenario::model`, so
//! the hardware matrix runs exactly these checks too.

mod common;

scenario_tests! {
    testbus_held_read on [pc, q35],
    testbus_stale_handle on [pc, q35],
    testbus_depth_first on [pc, q35],
    testbus_child_pins_parent on [pc, q35],
    testbus_store_removes_self on [pc, q35],
    testbus_rebind on [pc, q35],
}
