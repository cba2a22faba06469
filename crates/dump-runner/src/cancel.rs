//! A cancellation signal shared between a signal handler and running steps.
//!
//! `backup-cron` turns SIGTERM/SIGINT into [`Cancellation::cancel`]; a running
//! `pg_dump` step reacts at once (it registers a callback that wakes its control
//! loop) and the scheduler's sleep until the next tick ends early
//! ([`Cancellation::wait_timeout`]).

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cloneable handle; all clones see the same state.
#[derive(Clone, Default)]
pub struct Cancellation {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    cancelled: bool,
    next_id: u64,
    callbacks: Vec<(u64, Box<dyn FnOnce() + Send>)>,
}

/// Keeps a callback registered; dropping it unregisters the callback.
pub struct Subscription {
    inner: Arc<Inner>,
    id: u64,
}

impl Cancellation {
    /// A fresh, not yet cancelled signal.
    pub fn new() -> Cancellation {
        Cancellation::default()
    }

    /// Cancels: wakes every waiter and runs every registered callback once.
    pub fn cancel(&self) {
        let callbacks = {
            let mut state = self.inner.state.lock().expect("cancellation lock");
            state.cancelled = true;
            std::mem::take(&mut state.callbacks)
        };
        self.inner.changed.notify_all();
        for (_, callback) in callbacks {
            callback();
        }
    }

    /// Whether [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner
            .state
            .lock()
            .expect("cancellation lock")
            .cancelled
    }

    /// Runs `callback` on cancellation (at once if already cancelled) unless the
    /// returned subscription was dropped first.
    pub fn on_cancel(&self, callback: impl FnOnce() + Send + 'static) -> Subscription {
        let mut state = self.inner.state.lock().expect("cancellation lock");
        let id = state.next_id;
        state.next_id += 1;
        if state.cancelled {
            drop(state);
            callback();
        } else {
            state.callbacks.push((id, Box::new(callback)));
        }
        Subscription {
            inner: Arc::clone(&self.inner),
            id,
        }
    }

    /// Sleeps up to `timeout`; returns `true` as soon as cancelled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        // `None`: a timeout too long to represent, i.e. wait for cancellation only.
        let deadline = Instant::now().checked_add(timeout);
        let mut state = self.inner.state.lock().expect("cancellation lock");
        while !state.cancelled {
            state = match deadline {
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    self.inner
                        .changed
                        .wait_timeout(state, deadline - now)
                        .expect("cancellation lock")
                        .0
                }
                None => self.inner.changed.wait(state).expect("cancellation lock"),
            };
        }
        true
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut state) = self.inner.state.lock() {
            state.callbacks.retain(|(id, _)| *id != self.id);
        }
    }
}
