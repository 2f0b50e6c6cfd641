//! `[login_throttle]`: how many failed sign-ins a username and a client address may have
//! before sign-ins are refused, how fast that allowance comes back, and which reverse
//! proxies' `X-Forwarded-For` to believe.

use std::time::Duration;

use serde::Deserialize;

use crate::client_address::TrustedProxies;

/// Default `username_burst`: failed sign-ins of one username before it is refused.
pub const DEFAULT_USERNAME_BURST: u32 = 10;
/// Default `username_refill_secs`: after that, one more attempt every two minutes.
pub const DEFAULT_USERNAME_REFILL_SECS: u64 = 120;
/// Default `address_burst`: failed sign-ins from one address (any usernames).
pub const DEFAULT_ADDRESS_BURST: u32 = 50;
/// Default `address_refill_secs`.
pub const DEFAULT_ADDRESS_REFILL_SECS: u64 = 30;
/// Default `max_tracked_keys`: usernames (and, apart, addresses) remembered at once.
pub const DEFAULT_MAX_TRACKED_KEYS: usize = 100_000;

/// The `[login_throttle]` table as written in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginThrottleTable {
    enabled: Option<bool>,
    username_burst: Option<u32>,
    username_refill_secs: Option<u64>,
    address_burst: Option<u32>,
    address_refill_secs: Option<u64>,
    trusted_proxies: Option<Vec<String>>,
    max_tracked_keys: Option<usize>,
}

/// One scope's buckets: `burst` failures at once, then one more per `refill`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketSettings {
    /// Failed sign-ins allowed in a row.
    pub burst: u32,
    /// Time for one allowed failure to come back.
    pub refill: Duration,
}

/// The resolved `[login_throttle]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginThrottleSettings {
    /// Whether sign-ins are throttled at all (`enabled`, default true).
    pub enabled: bool,
    /// Per username (`username_burst`, `username_refill_secs`).
    pub username: BucketSettings,
    /// Per client address (`address_burst`, `address_refill_secs`); IPv6 addresses count
    /// per /64, the block one subscriber usually holds.
    pub address: BucketSettings,
    /// Proxies whose `X-Forwarded-For` names the client (`trusted_proxies`, default none).
    pub trusted_proxies: TrustedProxies,
    /// Keys kept per scope (`max_tracked_keys`).
    pub max_tracked_keys: usize,
}

impl Default for LoginThrottleSettings {
    fn default() -> Self {
        LoginThrottleSettings {
            enabled: true,
            username: BucketSettings {
                burst: DEFAULT_USERNAME_BURST,
                refill: Duration::from_secs(DEFAULT_USERNAME_REFILL_SECS),
            },
            address: BucketSettings {
                burst: DEFAULT_ADDRESS_BURST,
                refill: Duration::from_secs(DEFAULT_ADDRESS_REFILL_SECS),
            },
            trusted_proxies: TrustedProxies::default(),
            max_tracked_keys: DEFAULT_MAX_TRACKED_KEYS,
        }
    }
}

impl LoginThrottleSettings {
    /// The settings from the file's table (defaults where it says nothing), checked; the
    /// error names the key, the accepted range and the value found.
    pub fn from_table(table: LoginThrottleTable) -> Result<LoginThrottleSettings, String> {
        let defaults = LoginThrottleSettings::default();
        let burst = |key: &str, value: Option<u32>, default: u32| match value {
            None => Ok(default),
            Some(burst) if (1..=10_000).contains(&burst) => Ok(burst),
            Some(other) => Err(format!(
                "[login_throttle] {key} must be between 1 and 10000, got {other}"
            )),
        };
        let refill = |key: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(secs) if (1..=86_400).contains(&secs) => Ok(Duration::from_secs(secs)),
            Some(other) => Err(format!(
                "[login_throttle] {key} must be between 1 and 86400 (a day), got {other}"
            )),
        };
        let max_tracked_keys = match table.max_tracked_keys {
            None => defaults.max_tracked_keys,
            Some(keys) if (1000..=10_000_000).contains(&keys) => keys,
            Some(other) => {
                return Err(format!(
                "[login_throttle] max_tracked_keys must be between 1000 and 10000000, got {other}"
            ))
            }
        };
        let trusted_proxies = TrustedProxies::parse(&table.trusted_proxies.unwrap_or_default())
            .map_err(|error| format!("[login_throttle] trusted_proxies: {error}"))?;
        Ok(LoginThrottleSettings {
            enabled: table.enabled.unwrap_or(defaults.enabled),
            username: BucketSettings {
                burst: burst(
                    "username_burst",
                    table.username_burst,
                    defaults.username.burst,
                )?,
                refill: refill(
                    "username_refill_secs",
                    table.username_refill_secs,
                    defaults.username.refill,
                )?,
            },
            address: BucketSettings {
                burst: burst("address_burst", table.address_burst, defaults.address.burst)?,
                refill: refill(
                    "address_refill_secs",
                    table.address_refill_secs,
                    defaults.address.refill,
                )?,
            },
            trusted_proxies,
            max_tracked_keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<LoginThrottleSettings, String> {
        let table: LoginThrottleTable = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        LoginThrottleSettings::from_table(table)
    }

    #[test]
    fn defaults_and_overrides() {
        assert_eq!(settings("").unwrap(), LoginThrottleSettings::default());
        let custom = settings(
            "enabled = false\nusername_burst = 3\nusername_refill_secs = 600\n\
             address_burst = 20\naddress_refill_secs = 5\ntrusted_proxies = [\"10.0.0.0/8\"]\n\
             max_tracked_keys = 5000\n",
        )
        .unwrap();
        assert!(!custom.enabled);
        assert_eq!(custom.username.burst, 3);
        assert_eq!(custom.username.refill, Duration::from_secs(600));
        assert_eq!(custom.address.burst, 20);
        assert_eq!(custom.address.refill, Duration::from_secs(5));
        assert!(custom.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert_eq!(custom.max_tracked_keys, 5000);
    }

    #[test]
    fn mistakes_are_named() {
        for (text, expected) in [
            (
                "username_burst = 0",
                "[login_throttle] username_burst must be between 1 and 10000, got 0",
            ),
            (
                "address_refill_secs = 0",
                "[login_throttle] address_refill_secs must be between 1 and 86400 (a day), got 0",
            ),
            (
                "max_tracked_keys = 10",
                "[login_throttle] max_tracked_keys must be between 1000 and 10000000, got 10",
            ),
            (
                "trusted_proxies = [\"10.0.0.0/40\"]",
                "[login_throttle] trusted_proxies: \"10.0.0.0/40\" has prefix length",
            ),
            ("usernme_burst = 3", "unknown field `usernme_burst`"),
        ] {
            let error = settings(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
