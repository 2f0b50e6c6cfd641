//! Keyed token buckets, as the generic cell rate algorithm (GCRA) keeps them: one number per
//! key, the "theoretical arrival time" (TAT) at which its bucket is full again. A bucket of
//! `burst` tokens refilling one token per `interval` holds, at time `now`,
//! `burst - (TAT - now) / interval` tokens; a key whose TAT has passed has a full bucket and
//! need not be stored at all, which is what keeps memory bounded.
//!
//! Unlike `governor`'s keyed limiters (whose only operation is "take a token if there is
//! one"), these buckets can be asked without taking ([`Buckets::wait`]) and can take a token
//! back ([`Buckets::give_back`]): the login throttle needs both.

use std::{collections::HashMap, hash::Hash};

/// Nanoseconds since the throttle's clock started.
pub type Nanos = u64;

/// One bucket per key, all of the same size and refill rate, at most `max_keys` of them.
#[derive(Debug)]
pub struct Buckets<K> {
    /// Each key's TAT; keys with a full bucket are absent (or about to be pruned).
    full_at: HashMap<K, Nanos>,
    /// Time for one token to come back.
    interval: Nanos,
    /// `burst * interval`: how far ahead of now a TAT may be.
    tolerance: Nanos,
    /// The most keys kept; past it, full buckets are pruned, then the nearest to full.
    max_keys: usize,
}

impl<K: Hash + Eq> Buckets<K> {
    /// Buckets of `burst` tokens (at least 1), one coming back every `interval` nanoseconds.
    pub fn new(burst: u32, interval: Nanos, max_keys: usize) -> Buckets<K> {
        let interval = interval.max(1);
        Buckets {
            full_at: HashMap::new(),
            interval,
            tolerance: interval.saturating_mul(u64::from(burst.max(1))),
            max_keys: max_keys.max(1),
        }
    }

    /// How long until `key`'s bucket holds a token: 0 when it holds one now.
    pub fn wait(&self, key: &K, now: Nanos) -> Nanos {
        let full_at = self.full_at.get(key).copied().unwrap_or(now).max(now);
        // Taking a token moves the TAT one interval on; allowed while it stays within the
        // tolerance of now.
        (full_at + self.interval).saturating_sub(now.saturating_add(self.tolerance))
    }

    /// Takes a token from `key`'s bucket (call when [`Buckets::wait`] is 0).
    pub fn take(&mut self, key: K, now: Nanos) {
        if !self.full_at.contains_key(&key) && self.full_at.len() >= self.max_keys {
            self.make_room(now);
        }
        let full_at = self.full_at.entry(key).or_insert(now);
        *full_at = (*full_at).max(now) + self.interval;
    }

    /// Puts back a token taken from `key`'s bucket (a no-op when the bucket is full).
    pub fn give_back(&mut self, key: &K, now: Nanos) {
        if let Some(full_at) = self.full_at.get_mut(key) {
            *full_at = full_at.saturating_sub(self.interval);
            if *full_at <= now {
                self.full_at.remove(key);
            }
        }
    }

    /// How many keys are stored.
    pub fn tracked_keys(&self) -> usize {
        self.full_at.len()
    }

    /// Drops the keys whose buckets are full again (nothing is lost: an absent key is a full
    /// bucket); if that frees too little, also the eighth of the keys nearest to full, so a
    /// flood of new keys evicts its own kind (one failure each) before a key with many.
    fn make_room(&mut self, now: Nanos) {
        self.full_at.retain(|_, full_at| *full_at > now);
        if self.full_at.len() < self.max_keys {
            return;
        }
        let mut times: Vec<Nanos> = self.full_at.values().copied().collect();
        let cut = (self.max_keys / 8).max(1).min(times.len() - 1);
        let (_, threshold, _) = times.select_nth_unstable(cut);
        let threshold = *threshold;
        self.full_at.retain(|_, full_at| *full_at > threshold);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Nanos = 1_000_000_000;

    #[test]
    fn a_burst_then_one_token_per_interval() {
        let mut buckets = Buckets::new(3, 10 * SECOND, 100);
        for _ in 0..3 {
            assert_eq!(buckets.wait(&"alice", 0), 0);
            buckets.take("alice", 0);
        }
        assert_eq!(
            buckets.wait(&"alice", 0),
            10 * SECOND,
            "empty: a token in 10 s"
        );
        assert_eq!(buckets.wait(&"alice", 4 * SECOND), 6 * SECOND);
        assert_eq!(buckets.wait(&"bob", 0), 0, "keys are separate");
        assert_eq!(buckets.wait(&"alice", 10 * SECOND), 0, "refilled one");
        buckets.take("alice", 10 * SECOND);
        assert_eq!(buckets.wait(&"alice", 10 * SECOND), 10 * SECOND);
        assert_eq!(buckets.wait(&"alice", 40 * SECOND), 0);
        // After three intervals the bucket is full again: the key may go.
        buckets.take("bob", 40 * SECOND);
        assert_eq!(buckets.tracked_keys(), 2);
        buckets.take("carol", 41 * SECOND);
        assert_eq!(buckets.tracked_keys(), 3);
    }

    #[test]
    fn a_token_given_back_counts_as_never_taken() {
        let mut buckets = Buckets::new(2, SECOND, 100);
        buckets.take("alice", 0);
        buckets.give_back(&"alice", 0);
        assert_eq!(buckets.tracked_keys(), 0, "a full bucket is not stored");
        buckets.take("alice", 0);
        buckets.take("alice", 0);
        assert!(buckets.wait(&"alice", 0) > 0);
        buckets.give_back(&"alice", 0);
        assert_eq!(buckets.wait(&"alice", 0), 0);
        buckets.give_back(&"nobody", 0);
        assert_eq!(buckets.tracked_keys(), 1);
    }

    #[test]
    fn memory_stays_bounded_and_the_most_failed_keys_stay() {
        let mut buckets = Buckets::new(5, 60 * SECOND, 1000);
        // The victim: an empty bucket, a long way from full.
        for _ in 0..5 {
            buckets.take(u64::MAX, 0);
        }
        for key in 0..100_000u64 {
            buckets.take(key, key);
            assert!(buckets.tracked_keys() <= 1000);
        }
        assert!(
            buckets.wait(&u64::MAX, 100_000) > 0,
            "the victim's bucket is kept"
        );
        // An hour on, every old bucket is full again: those go first, and every new key stays.
        let later = 3600 * SECOND;
        for key in 300_000..301_000u64 {
            buckets.take(key, later);
        }
        assert_eq!(buckets.tracked_keys(), 1000);
        assert!((300_000..301_000u64).all(|key| buckets.full_at.contains_key(&key)));
    }
}
