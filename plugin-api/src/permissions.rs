//! The permission vocabulary: what a plugin may ask the host to do, in the game's own words.
//! A manifest naming anything else fails validation with the closest known name.

/// Every permission the host grants, with what it allows.
pub const KNOWN_PERMISSIONS: &[(&str, &str)] = &[
    ("world:read", "read worlds and their world time"),
    ("world:write", "create worlds and advance world time"),
    ("session:read", "read game sessions"),
    ("session:write", "create and update game sessions"),
    (
        "npc:read",
        "read NPCs, their expressions, schedules and presence",
    ),
    (
        "npc:write",
        "create NPCs and replace their expressions and schedules",
    ),
    ("location:read", "read locations and their hotspots"),
    (
        "location:write",
        "create locations and replace their hotspots",
    ),
    (
        "db:read",
        "read the plugin's own tables (and the caller views) with SQL",
    ),
    (
        "db:write",
        "change rows of the plugin's own tables with SQL",
    ),
    (
        "system:read",
        "see every user's worlds and sessions when acting outside a request (audited)",
    ),
    (
        "system:write",
        "change every user's worlds and sessions when acting outside a request (audited)",
    ),
    ("log:emit", "write log lines into the host's log"),
    ("event:emit", "emit events to other plugins"),
    (
        "event:subscribe",
        "receive the events named in the manifest's subscriptions",
    ),
    (
        "auth:issue",
        "mint access tokens for users (the sign-in plugin)",
    ),
    (
        "auth:throttle",
        "count sign-in attempts against the host's login throttle (the sign-in plugin)",
    ),
];

/// Whether `name` is a known permission.
pub fn is_known(name: &str) -> bool {
    KNOWN_PERMISSIONS.iter().any(|(known, _)| *known == name)
}

/// The known permission closest to `name` (by edit distance), if any is close enough to be
/// a likely typo.
pub fn closest(name: &str) -> Option<&'static str> {
    KNOWN_PERMISSIONS
        .iter()
        .map(|(known, _)| (edit_distance(name, known), *known))
        .filter(|(distance, _)| *distance <= 3)
        .min()
        .map(|(_, known)| known)
}

/// Levenshtein distance between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_suggest_the_intended_permission() {
        assert_eq!(closest("sesion:write"), Some("session:write"));
        assert_eq!(closest("npc:wrte"), Some("npc:write"));
        assert_eq!(closest("launch:missiles"), None);
        assert!(is_known("log:emit"));
        assert!(!is_known("log:emits"));
    }
}
