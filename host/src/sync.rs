//! Locks on the host's own bookkeeping (quarantine records, the watchdog's slots, requests in
//! flight, metrics scrapes): a panic while one was held must not turn every later request
//! into another panic, and none of that state is left half-written by a panic, so a poisoned
//! lock is simply taken.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, poisoned or not.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
