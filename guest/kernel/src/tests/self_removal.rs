//! A store() that removes its own device (`kernfs_remove_self`): the write
//! holds an active reference on the very node the removal drains, so it must
//! drop it first or wait for itself forever.

use alloc::string::String;
use alloc::vec::Vec;

use super::Fixture;
use crate::base::DeviceState;
use crate::driverfs::file;
use crate::errno::Errno;

/// `stats` without the lines that count history (releases, SEQNUM).
fn stats_without_history(fx: &Fixture) -> Vec<String> {
    fx.core
        .borrow()
        .render_stats()
        .lines()
        .filter(|l| !["released ", "created ", "seqnum "].iter().any(|counter| l.starts_with(counter)))
        .map(String::from)
        .collect()
}

#[test]
fn a_store_that_removes_its_own_device_completes_and_leaves_stats_at_baseline() {
    let mut fx = Fixture::new();
    let baseline = stats_without_history(&fx);
    let released_before = fx.core.borrow().totals().released;
    let dev = fx.add("t1", None);
    fx.add("child", Some("t1"));
    let handle = fx.open("root/testbus/t1/remove").unwrap();

    let core = fx.core.clone();
    let write = fx.spawn(async move { file::write(&core, handle, b"1\n").await });
    fx.run(10);
    assert!(fx.exec.is_empty(), "the self-removal deadlocked");
    assert_eq!(write.take(), Some(Ok(())));
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Released);
    assert_eq!(
        fx.uevents(),
        [
            "add root/testbus/t1",
            "bind root/testbus/t1",
            "add root/testbus/t1/child",
            "bind root/testbus/t1/child",
            "unbind root/testbus/t1/child",
            "remove root/testbus/t1/child",
            "unbind root/testbus/t1",
            "remove root/testbus/t1",
        ]
    );

    let core = fx.core.clone();
    let again = fx.spawn(async move { file::write(&core, handle, b"1\n").await });
    fx.run_until_idle();
    assert_eq!(again.take(), Some(Err(Errno::ENODEV)), "the handle is stale now");
    fx.core.borrow_mut().fs.close(handle).unwrap();

    assert_eq!(stats_without_history(&fx), baseline);
    let totals = fx.core.borrow().totals();
    assert_eq!(totals.released - released_before, 2);
    assert_eq!((totals.leaked, totals.bugs, totals.handles, totals.active), (0, 0, 0, 0));
}

/// Anything but "1" is refused and removes nothing.
#[test]
fn a_bad_remove_value_is_einval() {
    let mut fx = Fixture::new();
    let dev = fx.add("t1", None);
    let handle = fx.open("root/testbus/t1/remove").unwrap();
    let core = fx.core.clone();
    let write = fx.spawn(async move { file::write(&core, handle, b"yes").await });
    fx.run_until_idle();
    assert_eq!(write.take(), Some(Err(Errno::EINVAL)));
    assert_eq!(fx.core.borrow().state(dev), DeviceState::Registered);
    assert_eq!(fx.core.borrow().totals().active, 0, "the failed store dropped its active reference");
}
