//! IDE end to end on `pc` (q35 has only AHCI, which has no driver): the
//! bodies live in `harness::scenario::ide`.

mod common;

scenario_tests! {
    ide_disk on [pc],
    ide_media on [pc],
    ide_stale_capacity on [pc],
    ide_medium_waits_release on [pc],
    ide_fifty_changes on [pc],
    ide_refusals on [pc],
    ide_locked_tray on [pc],
    ide_rebind_busy on [pc],
}
