//! The login throttle: failed sign-ins counted per username and per client address in
//! token buckets ([`gcra`]), enforced by the host through the services `auth.login_attempt`
//! and `auth.login_succeeded` the sign-in plugin calls.
//!
//! An attempt takes one token from its username's bucket and one from its address's before
//! the password is checked (a failure counted in advance, so that parallel guesses cannot all
//! pass before the first failure lands); a correct password gives both back, so sign-ins
//! that succeed never count. An attempt finding either bucket empty is refused (the plugin
//! answers 429 with `Retry-After`) without its password being checked, even if it is the
//! right one: that is what stops guessing. Unknown usernames are counted like known ones,
//! so the throttle reveals nothing about which exist. Every refusal is a WARN line on the
//! audit target and a count in [`LoginThrottle::throttled_counts`].

pub mod gcra;
pub mod settings;

use std::{
    hash::BuildHasher,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex,
    },
    time::{Duration, Instant},
};

use plugin_api::{
    abi::{ServiceError, ServiceErrorKind},
    game::calls::{LoginAttempt, LoginRefusal, LoginVerdict},
};

use crate::{
    client_address::{canonical, mask},
    game::service_error,
    plugins::services::AUDIT_TARGET,
    request_context::RequestState,
};
use gcra::{Buckets, Nanos};
pub use settings::{LoginThrottleSettings, LoginThrottleTable};

/// IPv6 clients are counted per /64: one subscriber usually holds a whole /64, and would
/// otherwise get a fresh bucket for every one of its 2^64 addresses.
const IPV6_PREFIX: u8 = 64;

/// The longest username a log line repeats (attempted usernames are whatever clients send).
const LOGGED_USERNAME_CHARS: usize = 64;

/// What ran out: the username's bucket or the client address's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Too many failed sign-ins of this username (from anywhere).
    Username,
    /// Too many failed sign-ins from this client address (for any usernames).
    Address,
}

impl Scope {
    /// `"username"` or `"address"`, as in the audit line, the service answer and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Username => "username",
            Scope::Address => "address",
        }
    }
}

/// A refused attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The scope with the longer wait (both may be empty).
    pub scope: Scope,
    /// How long until an attempt can be made again.
    pub retry_after: Duration,
}

impl Refusal {
    /// The wait in whole seconds, rounded up, at least 1 (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_nanos().div_ceil(1_000_000_000).max(1) as u64
    }
}

/// Where the throttle's time comes from: monotonic time in production, a hand-moved clock in
/// tests (so refills are tested without waiting).
pub trait Clock: Send + Sync {
    /// Time since some fixed origin.
    fn elapsed(&self) -> Duration;
}

/// Monotonic time since the throttle was made.
struct MonotonicClock(Instant);

impl Clock for MonotonicClock {
    fn elapsed(&self) -> Duration {
        self.0.elapsed()
    }
}

/// Both scopes' buckets, behind one lock so an attempt checks and takes from both at once.
struct State {
    /// Keyed by a hash of the username (keyed with this process's random SipHash keys), so an
    /// entry costs the same however long the name a client sent.
    usernames: Buckets<u64>,
    addresses: Buckets<IpAddr>,
}

/// The host's login throttle (one per process, shared by every plugin's services).
pub struct LoginThrottle {
    settings: LoginThrottleSettings,
    clock: Box<dyn Clock>,
    state: Mutex<State>,
    username_hasher: std::collections::hash_map::RandomState,
    refused_by_username: AtomicU64,
    refused_by_address: AtomicU64,
}

impl LoginThrottle {
    /// A throttle with these settings, on monotonic time.
    pub fn new(settings: LoginThrottleSettings) -> LoginThrottle {
        LoginThrottle::with_clock(settings, Box::new(MonotonicClock(Instant::now())))
    }

    /// A throttle on the given clock.
    pub fn with_clock(settings: LoginThrottleSettings, clock: Box<dyn Clock>) -> LoginThrottle {
        let buckets = |bucket: settings::BucketSettings| {
            (
                bucket.burst,
                u64::try_from(bucket.refill.as_nanos()).unwrap_or(u64::MAX),
            )
        };
        let (username_burst, username_interval) = buckets(settings.username);
        let (address_burst, address_interval) = buckets(settings.address);
        let state = State {
            usernames: Buckets::new(username_burst, username_interval, settings.max_tracked_keys),
            addresses: Buckets::new(address_burst, address_interval, settings.max_tracked_keys),
        };
        LoginThrottle {
            clock,
            state: Mutex::new(state),
            username_hasher: std::collections::hash_map::RandomState::new(),
            refused_by_username: AtomicU64::new(0),
            refused_by_address: AtomicU64::new(0),
            settings,
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &LoginThrottleSettings {
        &self.settings
    }

    /// Attempts refused so far, by the scope that refused them: `(username, address)`. Each
    /// refusal counts once, under the scope with the longer wait. For
    /// `pixsim7_login_throttled_total{scope}`.
    pub fn throttled_counts(&self) -> (u64, u64) {
        (
            self.refused_by_username.load(Ordering::Relaxed),
            self.refused_by_address.load(Ordering::Relaxed),
        )
    }

    /// Before a password is checked: refused, or allowed with one token taken from the
    /// username's bucket and from the address's (when the address is known).
    pub fn attempt(&self, username: &str, address: Option<IpAddr>) -> Result<(), Refusal> {
        if !self.settings.enabled {
            return Ok(());
        }
        let now = self.now();
        let username_key = self.username_hasher.hash_one(username);
        let address_key = address.map(address_key);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let username_wait = state.usernames.wait(&username_key, now);
        let address_wait = address_key.map_or(0, |key| state.addresses.wait(&key, now));
        if username_wait == 0 && address_wait == 0 {
            state.usernames.take(username_key, now);
            if let Some(key) = address_key {
                state.addresses.take(key, now);
            }
            return Ok(());
        }
        drop(state);
        let (scope, wait, counter) = if address_wait > username_wait {
            (Scope::Address, address_wait, &self.refused_by_address)
        } else {
            (Scope::Username, username_wait, &self.refused_by_username)
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::metrics()
            .login_throttled
            .get_or_create(&crate::metrics::ScopeLabels {
                scope: scope.as_str(),
            })
            .inc();
        Err(Refusal {
            scope,
            retry_after: Duration::from_nanos(wait),
        })
    }

    /// After a correct password: gives back the tokens [`LoginThrottle::attempt`] took.
    pub fn succeeded(&self, username: &str, address: Option<IpAddr>) {
        if !self.settings.enabled {
            return;
        }
        let now = self.now();
        let username_key = self.username_hasher.hash_one(username);
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.usernames.give_back(&username_key, now);
        if let Some(key) = address.map(address_key) {
            state.addresses.give_back(&key, now);
        }
    }

    /// The service `auth.login_attempt` for plugin `plugin` handling `request`: the verdict,
    /// and on a refusal the audit line.
    pub fn serve_attempt(
        &self,
        plugin: &str,
        request: Option<&RequestState>,
        payload: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let (call, request) = read_call("auth.login_attempt", request, payload)?;
        let address = request.client.resolve(&self.settings.trusted_proxies);
        let verdict = match self.attempt(&call.username, address) {
            Ok(()) => LoginVerdict { refused: None },
            Err(refusal) => {
                let retry_after_secs = refusal.retry_after_secs();
                let username = loggable(&call.username);
                let client_address = address.map(|a| a.to_string());
                let from = client_address.as_deref().unwrap_or("an unknown address");
                let scope = refusal.scope.as_str();
                tracing::warn!(
                    target: AUDIT_TARGET,
                    plugin,
                    operation = "auth.login_attempt",
                    outcome = "throttled",
                    request_id = request.request_id(),
                    username = %username,
                    client_address,
                    scope,
                    retry_after_secs,
                    "sign-in attempt for {username:?} from {from} refused: too many failed \
                     sign-ins for this {scope}; retry after {retry_after_secs} s"
                );
                LoginVerdict {
                    refused: Some(LoginRefusal {
                        scope: scope.to_owned(),
                        retry_after_secs,
                    }),
                }
            }
        };
        Ok(serde_json::to_vec(&verdict).expect("a verdict serializes"))
    }

    /// The service `auth.login_succeeded`.
    pub fn serve_succeeded(
        &self,
        request: Option<&RequestState>,
        payload: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let (call, request) = read_call("auth.login_succeeded", request, payload)?;
        let address = request.client.resolve(&self.settings.trusted_proxies);
        self.succeeded(&call.username, address);
        Ok(b"null".to_vec())
    }

    fn now(&self) -> Nanos {
        u64::try_from(self.clock.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The payload of a throttle call, and the request it must come with (the client address is
/// the host's to know, never the plugin's to say).
fn read_call<'r>(
    operation: &str,
    request: Option<&'r RequestState>,
    payload: &[u8],
) -> Result<(LoginAttempt, &'r RequestState), ServiceError> {
    let call: LoginAttempt = serde_json::from_slice(payload)
        .map_err(|e| service_error(ServiceErrorKind::BadCall, format!("invalid payload: {e}")))?;
    let request = request.ok_or_else(|| {
        service_error(
            ServiceErrorKind::BadCall,
            format!("{operation} is about a request: call it through the request's host handle"),
        )
    })?;
    Ok((call, request))
}

/// The bucket an address counts in: IPv4 as it is, IPv6 by its /64.
fn address_key(address: IpAddr) -> IpAddr {
    match canonical(address) {
        v6 @ IpAddr::V6(_) => mask(v6, IPV6_PREFIX).expect("64 bits fit an IPv6 address"),
        v4 => v4,
    }
}

/// A username for a log line: at most [`LOGGED_USERNAME_CHARS`] characters.
fn loggable(username: &str) -> String {
    match username.char_indices().nth(LOGGED_USERNAME_CHARS) {
        Some((end, _)) => format!("{}…", &username[..end]),
        None => username.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{settings::BucketSettings, *};

    /// A clock the test moves by hand.
    #[derive(Clone, Default)]
    struct HandClock(Arc<AtomicU64>);

    impl HandClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
        }
    }

    impl Clock for HandClock {
        fn elapsed(&self) -> Duration {
            Duration::from_nanos(self.0.load(Ordering::SeqCst))
        }
    }

    fn throttle(username_burst: u32, address_burst: u32) -> (LoginThrottle, HandClock) {
        let clock = HandClock::default();
        let settings = LoginThrottleSettings {
            username: BucketSettings {
                burst: username_burst,
                refill: Duration::from_secs(60),
            },
            address: BucketSettings {
                burst: address_burst,
                refill: Duration::from_secs(10),
            },
            ..LoginThrottleSettings::default()
        };
        (
            LoginThrottle::with_clock(settings, Box::new(clock.clone())),
            clock,
        )
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    /// A failed sign-in as the auth plugin makes it: an attempt, and no success after it.
    fn fail(throttle: &LoginThrottle, username: &str, address: Option<IpAddr>) {
        throttle
            .attempt(username, address)
            .expect("not throttled yet");
    }

    #[test]
    fn failures_empty_the_username_bucket_and_time_refills_it() {
        let (throttle, clock) = throttle(3, 100);
        let here = ip("203.0.113.7");
        for _ in 0..3 {
            fail(&throttle, "alice", here);
        }
        let refusal = throttle.attempt("alice", here).unwrap_err();
        assert_eq!(refusal.scope, Scope::Username);
        assert_eq!(refusal.retry_after_secs(), 60);
        // Refused attempts are not failures: they change nothing.
        let again = throttle.attempt("alice", ip("198.51.100.1")).unwrap_err();
        assert_eq!(again, refusal, "the username counts from every address");
        clock.advance(Duration::from_millis(59_001));
        assert_eq!(
            throttle
                .attempt("alice", here)
                .unwrap_err()
                .retry_after_secs(),
            1,
            "rounded up"
        );
        clock.advance(Duration::from_millis(999));
        throttle
            .attempt("alice", here)
            .expect("one token came back");
        assert!(throttle.attempt("alice", here).is_err(), "and only one");
        clock.advance(Duration::from_secs(180));
        for _ in 0..3 {
            fail(&throttle, "alice", here);
        }
        assert_eq!(throttle.throttled_counts(), (4, 0));
    }

    #[test]
    fn correct_sign_ins_never_count() {
        let (throttle, _clock) = throttle(2, 3);
        let here = ip("203.0.113.7");
        for _ in 0..100 {
            throttle.attempt("alice", here).unwrap();
            throttle.succeeded("alice", here);
        }
        fail(&throttle, "alice", here);
        fail(&throttle, "alice", here);
        assert!(throttle.attempt("alice", here).is_err());
        assert_eq!(throttle.throttled_counts(), (1, 0));
    }

    #[test]
    fn the_address_bucket_counts_every_username_and_addresses_are_separate() {
        let (throttle, clock) = throttle(100, 3);
        let here = ip("203.0.113.7");
        fail(&throttle, "alice", here);
        fail(&throttle, "bob", here);
        fail(&throttle, "no-such-user", here);
        let refusal = throttle.attempt("carol", here).unwrap_err();
        assert_eq!(refusal.scope, Scope::Address);
        assert_eq!(refusal.retry_after_secs(), 10);
        throttle.attempt("carol", ip("203.0.113.8")).unwrap();
        // IPv6 addresses count per /64; an IPv4 address written as IPv6 is that address.
        for _ in 0..3 {
            fail(&throttle, "dave", ip("2001:db8:1:2::1"));
        }
        assert!(throttle
            .attempt("erin", ip("2001:db8:1:2:ffff::9"))
            .is_err());
        throttle.attempt("erin", ip("2001:db8:1:3::1")).unwrap();
        assert!(throttle.attempt("erin", ip("::ffff:203.0.113.7")).is_err());
        // No address known (no peer): only the username counts.
        throttle.attempt("frank", None).unwrap();
        assert_eq!(throttle.throttled_counts(), (0, 3));
        clock.advance(Duration::from_secs(10));
        throttle.attempt("carol", here).expect("refilled");
    }

    #[test]
    fn an_attempt_refused_by_one_scope_takes_from_neither() {
        let (throttle, _clock) = throttle(1, 2);
        let here = ip("203.0.113.7");
        fail(&throttle, "alice", here);
        assert_eq!(
            throttle.attempt("alice", here).unwrap_err().scope,
            Scope::Username
        );
        // The address lost one token to alice's failure, none to her refusal.
        fail(&throttle, "bob", here);
        assert_eq!(
            throttle.attempt("carol", here).unwrap_err().scope,
            Scope::Address
        );
        // Both empty: the longer wait decides (the username's 60 s over the address's 10 s).
        assert_eq!(
            throttle.attempt("alice", here).unwrap_err().scope,
            Scope::Username
        );
    }

    #[test]
    fn disabled_throttles_nothing() {
        let clock = HandClock::default();
        let throttle = LoginThrottle::with_clock(
            LoginThrottleSettings {
                enabled: false,
                ..LoginThrottleSettings::default()
            },
            Box::new(clock),
        );
        for _ in 0..1000 {
            throttle.attempt("alice", ip("203.0.113.7")).unwrap();
        }
        assert_eq!(throttle.throttled_counts(), (0, 0));
    }

    #[test]
    fn long_usernames_are_shortened_in_logs() {
        assert_eq!(loggable("alice"), "alice");
        let long = "ä".repeat(100);
        let logged = loggable(&long);
        assert_eq!(logged.chars().count(), LOGGED_USERNAME_CHARS + 1);
        assert!(logged.ends_with('…'));
    }
}
