//! The control server's state and the routing of verbs: a verb of the
//! driver core is served by [`super::verbs`], any other by the subsystem
//! that declares it ([`crate::subsystem::Subsystem::verbs`]).

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};

use super::request::{Reply, Request, fail};
use super::{Outbox, verbs};
use crate::base::{DeviceId, KernelEvent};
use crate::errno::Errno;
use crate::klog;
use crate::subsystem::{ServicesRef, Subsystems};

/// Everything serving a request may need. Shared as [`ControlRef`].
pub struct Control {
    /// What the subsystems share: the driver core, the platform, tasks.
    pub sys: ServicesRef,
    /// The booted subsystems, which own every verb that is not the core's.
    pub subsystems: Subsystems,
    pub(super) out: RefCell<Outbox>,
    /// Set by `poweroff`: exit once the reply is on the wire.
    pub poweroff: Cell<bool>,
    /// Set by `selftest hang`: stop serving the control channel.
    pub hang: Cell<bool>,
    /// Executor passes so far (`settle` waits for pollers to run).
    passes: Cell<u64>,
    /// References taken with `devref get`, by device path, so tests can hold
    /// an object past its removal the way a driver would.
    pub(super) held_refs: RefCell<Vec<(String, DeviceId)>>,
}

/// How request tasks share [`Control`].
pub type ControlRef = Rc<Control>;

impl Control {
    /// The control state over booted subsystems; `hang` starts it deaf
    /// (`selftest.hang` on the command line).
    ///
    /// # Panics
    /// If a subsystem declares one of the driver core's verbs.
    pub fn new(sys: ServicesRef, subsystems: Subsystems, hang: bool) -> ControlRef {
        for s in subsystems.iter() {
            if let Some(verb) = s.verbs().iter().find(|v| verbs::CORE_VERBS.contains(v)) {
                panic!("subsystem {} declares the driver core's verb `{verb}`", s.name());
            }
        }
        Rc::new(Control {
            sys,
            subsystems,
            out: RefCell::new(Outbox::default()),
            poweroff: Cell::new(false),
            hang: Cell::new(hang),
            passes: Cell::new(0),
            held_refs: RefCell::new(Vec::new()),
        })
    }

    /// Start the task that serves `req`.
    pub fn dispatch(self: &Rc<Self>, req: Request) {
        if req.verb == "selftest" && req.args().first() == Some(&"garbage") {
            // The garbage is the answer: no well-formed reply follows it.
            if let Err((errno, text)) = verbs::garbage(self, &req) {
                self.reply(&req.tag, Err((errno, text)));
            }
            return;
        }
        let control = Rc::clone(self);
        self.sys.spawn(async move {
            let tag = req.tag.clone();
            let result = control.serve(req).await;
            control.reply(&tag, result);
        });
    }

    async fn serve(self: &Rc<Self>, req: Request) -> Reply {
        if verbs::CORE_VERBS.contains(&req.verb.as_str()) {
            return verbs::serve(self, &req).await;
        }
        match self.subsystems.owner(&req.verb) {
            Some(owner) => Rc::clone(owner).serve(Rc::clone(&self.sys), req).await,
            None => fail(Errno::ENOSYS, alloc::format!("unknown verb: {}", req.verb)),
        }
    }

    /// `hello`'s feature list: the driver core's verbs, then what each
    /// subsystem declares, in list order.
    pub fn features(&self) -> String {
        // The driver core's part of the list is its verbs but `hello`; the
        // subsystems' verbs and features follow it.
        let core = verbs::CORE_VERBS.iter().copied().filter(|verb| *verb != "hello");
        let words: Vec<&str> = core.chain(self.subsystems.features()).collect();
        words.join(" ")
    }

    /// Queue a reply, after every kernel event that happened before it, so
    /// the channel shows cause before effect.
    pub fn reply(&self, tag: &str, result: Reply) {
        self.flush_events();
        self.out.borrow_mut().reply(tag, result);
    }

    /// Move the driver core's events (uevents, notices, BUGs) to the output.
    pub fn flush_events(&self) {
        let events = self.sys.core.borrow_mut().take_events();
        let mut out = self.out.borrow_mut();
        for event in &events {
            if let KernelEvent::Bug(text) = event {
                // The console gets it too: it is the artifact people read.
                klog!(self.sys.platform, "BUG: {text}");
            }
            out.event(event);
        }
    }

    /// The queue of output for COM2 (the main loop pumps it; the panic path
    /// finishes its message in flight).
    pub fn output(&self) -> &RefCell<Outbox> {
        &self.out
    }

    /// The main loop ran one more executor pass.
    pub fn pass_done(&self) {
        self.passes.set(self.passes.get() + 1);
    }

    /// Executor passes so far.
    pub fn passes(&self) -> u64 {
        self.passes.get()
    }
}
