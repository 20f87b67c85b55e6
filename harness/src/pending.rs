//! Requests waiting for their reply, shared by the QMP and control clients.
//!
//! The channel's failure and the table of waiters live under one lock, so a
//! request registered just as the reader task fails cannot be stranded: it
//! either sees the failure or is failed along with everyone else.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::sync::oneshot;

/// Where a waiter gets its reply.
pub type Reply<V, E> = oneshot::Receiver<Result<V, E>>;

/// Requests waiting for their reply, by key (tag or command id).
pub struct Pending<K, V, E> {
    inner: Mutex<Inner<K, V, E>>,
}

struct Inner<K, V, E> {
    waiting: HashMap<K, oneshot::Sender<Result<V, E>>>,
    failure: Option<E>,
}

impl<K: Eq + Hash, V, E: Clone> Default for Pending<K, V, E> {
    fn default() -> Self {
        Pending { inner: Mutex::new(Inner { waiting: HashMap::new(), failure: None }) }
    }
}

impl<K: Eq + Hash, V, E: Clone> Pending<K, V, E> {
    /// Wait for `key`'s reply; fails at once if the channel already failed.
    pub fn register(&self, key: K) -> Result<Reply<V, E>, E> {
        let mut inner = self.inner.lock().unwrap();
        if let Some(e) = &inner.failure {
            return Err(e.clone());
        }
        let (tx, rx) = oneshot::channel();
        inner.waiting.insert(key, tx);
        Ok(rx)
    }

    /// Deliver a reply. False if nobody registered `key`: the peer answered
    /// something that was never asked (or answered twice).
    pub fn resolve(&self, key: &K, result: Result<V, E>) -> bool {
        match self.inner.lock().unwrap().waiting.remove(key) {
            Some(tx) => {
                // The waiter may have given up (timed out); that is fine.
                let _ = tx.send(result);
                true
            }
            None => false,
        }
    }

    /// Forget a request that could not be sent.
    pub fn cancel(&self, key: &K) {
        self.inner.lock().unwrap().waiting.remove(key);
    }

    /// The channel is gone: record why and fail every waiter with it.
    pub fn fail(&self, error: E) {
        let mut inner = self.inner.lock().unwrap();
        if inner.failure.is_none() {
            inner.failure = Some(error.clone());
        }
        for (_, tx) in inner.waiting.drain() {
            let _ = tx.send(Err(error.clone()));
        }
    }

    /// Why the channel failed, once it has.
    pub fn failure(&self) -> Option<E> {
        self.inner.lock().unwrap().failure.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_registered_after_the_failure_sees_it() {
        let p: Pending<u32, (), String> = Pending::default();
        let early = p.register(1).unwrap();
        p.fail("gone".into());
        assert_eq!(early.await.unwrap(), Err("gone".to_string()));
        assert_eq!(p.register(2).err(), Some("gone".to_string()));
        assert!(!p.resolve(&1, Ok(())), "nothing is waiting any more");
    }

    #[tokio::test]
    async fn replies_reach_their_waiter_and_unknown_keys_are_reported() {
        let p: Pending<&str, u8, String> = Pending::default();
        let rx = p.register("7").unwrap();
        assert!(p.resolve(&"7", Ok(42)));
        assert_eq!(rx.await.unwrap(), Ok(42));
        assert!(!p.resolve(&"7", Ok(1)), "a second reply to the same tag is unexpected");
    }
}
