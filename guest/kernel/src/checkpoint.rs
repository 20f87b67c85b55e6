//! Deterministic race hooks: named points where a task stops on request.
//!
//! The harness arms a checkpoint (`checkpoint arm <name>`); the next task
//! that reaches it announces `* checkpoint <name> <detail>` on the control
//! channel and waits, while every other task and the control channel keep
//! running, until `checkpoint release <name>`. The harness can do anything
//! in between (unplug the device the task is working on, hold a read), so
//! an interleaving that would otherwise need luck happens every time.
//!
//! An armed checkpoint stops one task, once: it is disarmed when reached.
//! Releasing a checkpoint nobody has reached yet just disarms it. Any bus
//! can add checkpoints; the names in use are listed in README's verb table.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use core::cell::RefCell;

use crate::base::CoreRef;
use crate::executor::wait_until;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// The next task to reach it stops.
    Armed,
    /// A task is stopped here.
    Reached,
    /// Released while a task was stopped; that task goes on next pass.
    Released,
}

#[derive(Default)]
pub struct Checkpoints {
    points: RefCell<BTreeMap<String, State>>,
}

impl Checkpoints {
    pub fn new() -> Self {
        Self::default()
    }

    /// `checkpoint arm <name>`.
    pub fn arm(&self, name: &str) {
        self.points.borrow_mut().insert(String::from(name), State::Armed);
    }

    /// `checkpoint release <name>`: false if it was neither armed nor
    /// reached (a typo in a test should be loud).
    pub fn release(&self, name: &str) -> bool {
        let mut points = self.points.borrow_mut();
        match points.get(name).copied() {
            Some(State::Reached) => {
                points.insert(String::from(name), State::Released);
                true
            }
            Some(State::Armed) => {
                points.remove(name);
                true
            }
            Some(State::Released) | None => false,
        }
    }

    /// Is a task stopped at `name` right now?
    pub fn is_stopped(&self, name: &str) -> bool {
        self.points.borrow().get(name) == Some(&State::Reached)
    }

    /// Called by a task at checkpoint `name`: if armed, announce it with
    /// `detail` and wait for the release; otherwise return at once.
    pub async fn reach(&self, core: &CoreRef, name: &str, detail: &str) {
        {
            let mut points = self.points.borrow_mut();
            if points.get(name) != Some(&State::Armed) {
                return;
            }
            points.insert(String::from(name), State::Reached);
        }
        core.borrow_mut().notice(format!("checkpoint {name} {detail}"));
        wait_until(|| self.points.borrow().get(name) == Some(&State::Released)).await;
        self.points.borrow_mut().remove(name);
    }
}

/// The `checkpoint` control verb: `checkpoint arm <name>` and
/// `checkpoint release <name>`.
pub fn serve(points: &Checkpoints, args: &[&str]) -> Result<String, (crate::errno::Errno, String)> {
    use crate::errno::Errno;
    match args {
        ["arm", name] => {
            points.arm(name);
            Ok(String::new())
        }
        ["release", name] => {
            if points.release(name) {
                Ok(String::new())
            } else {
                Err((Errno::ENOENT, format!("checkpoint {name} is not armed")))
            }
        }
        _ => Err((Errno::EINVAL, String::from("usage: checkpoint arm|release <name>"))),
    }
}
