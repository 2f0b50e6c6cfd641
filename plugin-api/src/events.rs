//! Event topics: `namespace:name` (lower-case letters, digits, `_`, `-`, `.`), and the
//! subscription patterns that match them: an exact topic or `namespace:*`.

/// Namespaces only the host emits into.
pub const HOST_NAMESPACES: &[&str] = &["app", "plugin"];

fn valid_part(part: &str) -> bool {
    !part.is_empty()
        && part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'))
}

/// Checks a topic a plugin emits, e.g. `stealth:pickpocket`.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    match topic.split_once(':') {
        Some((namespace, name)) if valid_part(namespace) && valid_part(name) => Ok(()),
        _ => Err(format!(
            "topic {topic:?} must look like namespace:name (lower-case letters, digits, '_', '-', '.')"
        )),
    }
}

/// Checks a subscription: an exact topic or `namespace:*`.
pub fn validate_subscription(pattern: &str) -> Result<(), String> {
    match pattern.split_once(':') {
        Some((namespace, "*")) if valid_part(namespace) => Ok(()),
        _ => validate_topic(pattern).map_err(|_| {
            format!("subscription {pattern:?} must be a topic like stealth:pickpocket or a pattern like stealth:*")
        }),
    }
}

/// Whether `pattern` (valid per [`validate_subscription`]) matches `topic`.
pub fn matches(pattern: &str, topic: &str) -> bool {
    match pattern.strip_suffix(":*") {
        Some(namespace) => topic
            .strip_prefix(namespace)
            .is_some_and(|rest| rest.starts_with(':')),
        None => pattern == topic,
    }
}

/// Whether only the host may emit `topic`.
pub fn is_host_topic(topic: &str) -> bool {
    topic
        .split_once(':')
        .is_some_and(|(namespace, _)| HOST_NAMESPACES.contains(&namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_and_patterns() {
        assert!(validate_topic("stealth:pickpocket").is_ok());
        assert!(validate_topic("stealth").is_err());
        assert!(validate_topic("Stealth:x").is_err());
        assert!(validate_topic("a:*").is_err());
        assert!(validate_subscription("plugin:*").is_ok());
        assert!(validate_subscription("*").is_err());
        assert!(matches("plugin:*", "plugin:loaded"));
        assert!(!matches("plugin:*", "plugins:loaded"));
        assert!(matches("stealth:pickpocket", "stealth:pickpocket"));
        assert!(!matches("stealth:pickpocket", "stealth:pickpocket2"));
        assert!(is_host_topic("app:startup") && !is_host_topic("session:created"));
    }
}
