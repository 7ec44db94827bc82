//! Stopping: [`Stop`], which resolves when the daemon shuts down (or, for a serving
//! socket, when it is demoted), and [`Tracker`], which counts open connections so that
//! shutdown can drain them. Leaves that the accept loops, the control socket and the
//! promotion import.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// Stops when the daemon shuts down or, for a serving socket, when it is demoted.
#[derive(Debug, Clone)]
pub(crate) struct Stop {
    global: watch::Receiver<bool>,
    local: Option<watch::Receiver<bool>>,
}

impl Stop {
    /// Stops on the daemon's shutdown only.
    pub(crate) fn global(global: watch::Receiver<bool>) -> Stop {
        Stop {
            global,
            local: None,
        }
    }

    /// Stops on the daemon's shutdown or on `local`.
    pub(crate) fn with(global: watch::Receiver<bool>, local: watch::Receiver<bool>) -> Stop {
        Stop {
            global,
            local: Some(local),
        }
    }

    /// Resolves once stopped (at once if already stopped).
    pub(crate) async fn wait(&mut self) {
        let Stop { global, local } = self;
        match local {
            Some(local) => tokio::select! {
                () = wait_true(global) => {}
                () = wait_true(local) => {}
            },
            None => wait_true(global).await,
        }
    }
}

/// Counts every open connection of the daemon, to drain them on shutdown.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Debug, Default)]
struct TrackerInner {
    open: AtomicUsize,
    idle: Notify,
}

impl Tracker {
    /// Counts a connection until the guard drops.
    pub(crate) fn enter(&self) -> TrackerGuard {
        self.0.open.fetch_add(1, Ordering::SeqCst);
        TrackerGuard(self.clone())
    }

    /// Open connections now.
    pub(crate) fn open(&self) -> usize {
        self.0.open.load(Ordering::SeqCst)
    }

    /// Waits until no connection is open or `deadline` passes; returns how many are
    /// still open.
    pub(crate) async fn wait_idle(&self, deadline: Instant) -> usize {
        loop {
            let notified = self.0.idle.notified();
            let open = self.open();
            if open == 0 {
                return 0;
            }
            tokio::select! {
                () = notified => {}
                () = tokio::time::sleep_until(deadline) => return self.open(),
            }
        }
    }
}

/// Keeps a connection counted.
#[derive(Debug)]
pub(crate) struct TrackerGuard(Tracker);

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = rx.wait_for(|stopped| *stopped).await;
}
