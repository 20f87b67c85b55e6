//! A small cooperative executor for a single CPU.
//!
//! Every pass polls every task once with a no-op waker; a task that waits
//! re-checks its condition on the next pass. That keeps the executor tiny and
//! its schedule deterministic (tasks run in spawn order), which is what makes
//! "a read in progress while removal starts" a reproducible interleaving.

use alloc::boxed::Box;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Handle for starting tasks, cloneable into tasks themselves.
#[derive(Clone, Default)]
pub struct Spawner {
    queue: Rc<RefCell<Vec<Task>>>,
}

impl Spawner {
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        self.queue.borrow_mut().push(Box::pin(task));
    }
}

#[derive(Default)]
pub struct Executor {
    tasks: Vec<Task>,
    spawner: Spawner,
}

impl Executor {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    /// Poll every task once (tasks spawned during the pass wait for the next
    /// one). Returns how many tasks finished or started, a cheap progress hint.
    pub fn run_pass(&mut self) -> usize {
        let fresh: Vec<Task> = core::mem::take(&mut *self.spawner.queue.borrow_mut());
        let mut changes = fresh.len();
        self.tasks.extend(fresh);
        let mut cx = Context::from_waker(Waker::noop());
        let before = self.tasks.len();
        self.tasks.retain_mut(|task| task.as_mut().poll(&mut cx).is_pending());
        changes += before - self.tasks.len();
        changes
    }

    /// Tasks alive (running or waiting), including ones not yet started.
    pub fn len(&self) -> usize {
        self.tasks.len() + self.spawner.queue.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Resolve once `condition` holds; checked once per executor pass.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    core::future::poll_fn(move |_| if condition() { Poll::Ready(()) } else { Poll::Pending }).await
}

/// Give every other task one turn.
pub async fn yield_now() {
    let mut yielded = false;
    core::future::poll_fn(move |_| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            Poll::Pending
        }
    })
    .await
}

/// Run futures side by side; resolves with their outputs in order once all
/// are done (each is polled once per pass until it finishes).
pub async fn join_all<'a, T>(futures: Vec<Pin<Box<dyn Future<Output = T> + 'a>>>) -> Vec<T> {
    let mut pending: Vec<Option<Pin<Box<dyn Future<Output = T> + 'a>>>> = futures.into_iter().map(Some).collect();
    let mut results: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    core::future::poll_fn(move |cx| {
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(fut) = slot
                && let core::task::Poll::Ready(value) = fut.as_mut().poll(cx)
            {
                *result = Some(value);
                *slot = None;
            }
        }
        if pending.iter().all(Option::is_none) {
            core::task::Poll::Ready(results.iter_mut().map(|r| r.take().expect("finished")).collect())
        } else {
            core::task::Poll::Pending
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn tasks_run_in_spawn_order_and_wait_for_conditions() {
        let mut exec = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        let flag = Rc::new(RefCell::new(false));
        {
            let (log, flag) = (log.clone(), flag.clone());
            exec.spawner().spawn(async move {
                log.borrow_mut().push("a-start");
                wait_until(|| *flag.borrow()).await;
                log.borrow_mut().push("a-end");
            });
        }
        {
            let log = log.clone();
            exec.spawner().spawn(async move {
                log.borrow_mut().push("b");
            });
        }
        exec.run_pass();
        assert_eq!(*log.borrow(), vec!["a-start", "b"]);
        assert_eq!(exec.len(), 1);
        exec.run_pass();
        assert_eq!(exec.len(), 1, "a still waits");
        *flag.borrow_mut() = true;
        exec.run_pass();
        assert_eq!(*log.borrow(), vec!["a-start", "b", "a-end"]);
        assert!(exec.is_empty());
    }

    #[test]
    fn yield_now_gives_other_tasks_a_turn() {
        let mut exec = Executor::new();
        let log = Rc::new(RefCell::new(Vec::new()));
        for name in ["x", "y"] {
            let log = log.clone();
            exec.spawner().spawn(async move {
                log.borrow_mut().push(name);
                yield_now().await;
                log.borrow_mut().push(name);
            });
        }
        exec.run_pass();
        exec.run_pass();
        assert_eq!(*log.borrow(), vec!["x", "y", "x", "y"]);
    }
}
