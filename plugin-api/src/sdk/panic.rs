//! Panic containment: a future adapter that turns a panic during `poll` into an error value,
//! and a panic hook that records the message and source location for the report.
//!
//! A panic must never unwind out of an `extern "C"` function (that aborts the process), so
//! every entry point into plugin code runs under `catch_unwind` inside the plugin. The host
//! reuses [`CatchPanic`] as a backstop around every plugin future it polls.

use std::{
    any::Any,
    cell::RefCell,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    task::{Context, Poll},
};

thread_local! {
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Replaces this library's panic hook with one that records the message and location of a
/// panic (for [`panic_message`]) instead of printing it to stderr: the host logs it once,
/// with the plugin id. Each cdylib links its own std, so this affects only this library.
pub fn install_recording_hook() {
    std::panic::set_hook(Box::new(|info| {
        let message = payload_text(info.payload());
        let report = match info.location() {
            Some(location) => format!("{message} (at {location})"),
            None => message,
        };
        LAST_PANIC.with(|last| *last.borrow_mut() = Some(report));
    }));
}

/// The best description of a caught panic: what the recording hook saw on this thread, or
/// else the payload's text.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    LAST_PANIC
        .with(|last| last.borrow_mut().take())
        .unwrap_or_else(|| payload_text(payload))
}

fn payload_text(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}

/// Runs `f`, turning a panic into `Err(message)`.
pub fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| panic_message(&*payload))
}

/// A future that resolves to `Err(message)` if polling the inner future panics.
///
/// After a panic the inner future is not polled again.
pub struct CatchPanic<F> {
    inner: Option<F>,
}

impl<F> CatchPanic<F> {
    /// Wraps `inner`.
    pub fn new(inner: F) -> CatchPanic<F> {
        CatchPanic { inner: Some(inner) }
    }
}

impl<F: Future> Future for CatchPanic<F> {
    type Output = Result<F::Output, String>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // SAFETY: `inner` is structurally pinned: it is never moved out while pinned, only
        // dropped in place (set to `None`) after it panicked or completed.
        let this = unsafe { self.get_unchecked_mut() };
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(Err("future polled after it panicked".to_owned()));
        };
        // SAFETY: see above; `inner` lives inside the pinned `CatchPanic`.
        let inner = unsafe { Pin::new_unchecked(inner) };
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => {
                this.inner = None;
                Poll::Ready(Ok(output))
            }
            Err(payload) => {
                let message = panic_message(&*payload);
                // Dropping a future that panicked may panic again; contain that too.
                let _ = catch_unwind(AssertUnwindSafe(|| this.inner = None));
                Poll::Ready(Err(message))
            }
        }
    }
}

impl<F> Drop for CatchPanic<F> {
    fn drop(&mut self) {
        // The host drops a plugin's future early when a client goes away; a destructor that
        // panics then must not unwind across the FFI boundary (async-ffi would abort).
        let _ = catch_unwind(AssertUnwindSafe(|| self.inner = None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sdk::testing::block_on;

    #[test]
    fn a_panicking_future_becomes_an_error() {
        let result = block_on(CatchPanic::new(async {
            if true {
                panic!("boom {}", 7);
            }
            1
        }));
        assert_eq!(result.unwrap_err(), "boom 7");
        assert_eq!(block_on(CatchPanic::new(async { 5 })), Ok(5));
    }

    #[test]
    fn a_destructor_that_panics_is_contained() {
        struct PanicsOnDrop;
        impl Drop for PanicsOnDrop {
            fn drop(&mut self) {
                panic!("destructor panic");
            }
        }
        let guarded = CatchPanic::new(async {
            let _held = PanicsOnDrop;
            std::future::pending::<()>().await;
        });
        let mut guarded = Box::pin(guarded);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(guarded.as_mut().poll(&mut cx).is_pending());
        drop(guarded); // would unwind out of here without the Drop impl
    }
}
