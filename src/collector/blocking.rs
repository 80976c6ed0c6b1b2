//! Waiting for the writer on the calling thread, wherever that thread is (issue 16, item 9).
//!
//! The blocking doors ([`super::Collector::ingest_events`], [`super::Collector::ingest_body`])
//! used tokio's `blocking_recv`, which panics on a runtime's thread ("Cannot block the current
//! thread from within a runtime") — exactly where an embedding service calls from. The choice
//! made here: a blocking call *works* everywhere and never panics.
//!
//! - Outside any runtime (a plain thread, `spawn_blocking`): the thread parks until the reply.
//! - On a multi-thread runtime (what `#[tokio::main]` builds): the wait runs inside
//!   [`tokio::task::block_in_place`], so the runtime hands this worker's other tasks to another
//!   worker while it waits.
//! - On a current-thread runtime: the one runtime thread parks until the commit (the writer is
//!   its own OS thread, so this cannot deadlock), stalling that runtime's other tasks for the
//!   commit's duration. Use the `_async` forms there.
//!
//! Failing with an error on a runtime thread was the alternative; it was not chosen because a
//! `spawn_blocking` thread cannot be told apart from a runtime thread by a library, and
//! refusing there would refuse the one place blocking is right.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio::runtime::{Handle, RuntimeFlavor};

/// Runs `f`, which blocks, so that it cannot starve a multi-thread runtime's worker.
pub(super) fn section<R>(f: impl FnOnce() -> R) -> R {
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Blocks the calling thread until `fut` (a writer reply) is ready. Never consults tokio's
/// "may this thread block?" check, and runs the future outside tokio's cooperative budget so
/// that an exhausted budget on a runtime thread cannot turn the wait into a spin.
pub(super) fn wait<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(tokio::task::unconstrained(fut));
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

/// Wakes the parked waiting thread.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_reply_from_another_thread_inside_both_runtime_flavors() {
        let plain = || {
            let (tx, rx) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let _ = tx.send(7);
            });
            section(|| wait(rx)).expect("reply")
        };
        assert_eq!(plain(), 7);
        let multi = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().expect("runtime");
        assert_eq!(multi.block_on(async { tokio::spawn(async move { plain() }).await.expect("no panic") }), 7);
        let current = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        assert_eq!(current.block_on(async { plain() }), 7);
    }
}
