//! A broadcast stop signal for tunnels.
//!
//! Every open tunnel must notice promptly when its configuration is retired
//! or the server stops, yet checking must cost nothing on the per-message
//! path and almost nothing per idle tunnel. A waiter registers its task's
//! waker once (tokio's waker for a task never changes) and from then on a
//! check is one atomic load; triggering wakes every registered waiter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Waker};

#[derive(Debug, Default)]
struct Inner {
    stopped: AtomicBool,
    /// A std mutex, never held across an await: taken once when a tunnel
    /// registers (and when it ends) and once by a trigger; tunnels check
    /// `stopped` without it.
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    slots: Vec<Option<Waker>>,
    free: Vec<usize>,
}

/// The trigger side.
#[derive(Debug, Default, Clone)]
pub struct StopSignal {
    inner: Arc<Inner>,
}

/// One waiter; unregisters itself on drop.
#[derive(Debug)]
pub struct StopWaiter {
    inner: Arc<Inner>,
    slot: Option<usize>,
}

impl StopSignal {
    /// A signal that has not fired.
    pub fn new() -> StopSignal {
        StopSignal::default()
    }

    /// Fires the signal and wakes every waiter.
    pub fn trigger(&self) {
        self.inner.stopped.store(true, Ordering::Release);
        let wakers: Vec<Waker> = {
            let mut w = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.slots.iter_mut().filter_map(Option::take).collect()
        };
        for waker in wakers {
            waker.wake();
        }
    }

    /// Whether it fired.
    pub fn is_triggered(&self) -> bool {
        self.inner.stopped.load(Ordering::Acquire)
    }

    /// Whether anything besides this handle still refers to the signal (a
    /// generation, a waiting tunnel).
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.inner) > 1
    }

    /// A new waiter.
    pub fn waiter(&self) -> StopWaiter {
        StopWaiter {
            inner: self.inner.clone(),
            slot: None,
        }
    }
}

impl StopWaiter {
    /// True once the signal fired; otherwise makes sure this task will be
    /// woken when it does (registering only on the first call).
    pub fn poll_stopped(&mut self, cx: &mut Context<'_>) -> bool {
        if self.inner.stopped.load(Ordering::Acquire) {
            return true;
        }
        if self.slot.is_none() {
            let mut w = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            // Re-check under the lock: trigger() sets the flag before it
            // takes the wakers.
            if self.inner.stopped.load(Ordering::Acquire) {
                return true;
            }
            let waker = Some(cx.waker().clone());
            let slot = match w.free.pop() {
                Some(i) => {
                    w.slots[i] = waker;
                    i
                }
                None => {
                    w.slots.push(waker);
                    w.slots.len() - 1
                }
            };
            self.slot = Some(slot);
        }
        false
    }
}

impl Drop for StopWaiter {
    fn drop(&mut self) {
        if let Some(i) = self.slot {
            let mut w = self.inner.waiters.lock().unwrap_or_else(|e| e.into_inner());
            w.slots[i] = None;
            w.free.push(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_wakes_registered_waiters_and_reuses_slots() {
        let signal = StopSignal::new();
        let mut a = signal.waiter();
        let b = signal.waiter();
        drop(b);
        let task = tokio::spawn(async move {
            std::future::poll_fn(|cx| {
                if a.poll_stopped(cx) {
                    std::task::Poll::Ready(())
                } else {
                    std::task::Poll::Pending
                }
            })
            .await
        });
        tokio::task::yield_now().await;
        assert!(!task.is_finished());
        signal.trigger();
        task.await.unwrap();
        assert!(signal.is_triggered());
        let waiters = signal.inner.waiters.lock().unwrap();
        assert!(waiters.slots.iter().all(Option::is_none));
    }
}
