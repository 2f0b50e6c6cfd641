//! The plugin lock file: which libraries may load, pinned by plugin id and SHA-256.
//!
//! `pixsim7 plugins lock` writes it from the libraries deployed; when the host is configured
//! with one (`[plugins] lock`, `PIXSIM7_PLUGINS_LOCK`, `--lock`), a library that is not pinned
//! there, or whose bytes hash differently, is refused. A pin follows the plugin id, not the
//! file name: a renamed file with the pinned bytes still loads.

use std::{
    collections::BTreeSet,
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The comment the lock file starts with.
const HEADER: &str = "# plugins.lock: written by `pixsim7 plugins lock`; the host refuses a \
                      library that is not pinned here or whose SHA-256 differs.\n";

/// One `[[plugin]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPlugin {
    /// The plugin id, from its manifest.
    pub id: String,
    /// The manifest version when the pin was written (informational).
    pub version: String,
    /// The library's file name in the plugin directory when the pin was written.
    pub file: String,
    /// The library's SHA-256, 64 lowercase hex digits.
    pub sha256: String,
}

/// The whole lock file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PluginLock {
    /// The pins, serialized under the key `plugin` as an array of tables.
    pub plugins: Vec<LockedPlugin>,
}

/// The file's shape.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LockFile {
    #[serde(default)]
    plugin: Vec<LockedPlugin>,
}

impl PluginLock {
    /// Reads and validates a lock file: each `sha256` is 64 hex digits (stored lowercase),
    /// no id and no file appears twice.
    pub fn read(path: &Path) -> anyhow::Result<PluginLock> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read plugin lock file {}", path.display()))?;
        let file: LockFile = toml::from_str(&text)
            .with_context(|| format!("invalid plugin lock file {}", path.display()))?;
        let mut plugins = file.plugin;
        let mut ids = BTreeSet::new();
        let mut files = BTreeSet::new();
        for entry in &mut plugins {
            let place = format!(
                "invalid plugin lock file {}: [[plugin]] {:?}",
                path.display(),
                entry.id
            );
            if entry.id.is_empty() {
                bail!("{place}: id must not be empty");
            }
            if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                bail!(
                    "{place}: sha256 must be 64 hex digits, found {:?}",
                    entry.sha256
                );
            }
            entry.sha256.make_ascii_lowercase();
            if entry.file.is_empty() || entry.file.contains(['/', '\\']) {
                bail!(
                    "{place}: file must be a file name in the plugin directory, found {:?}",
                    entry.file
                );
            }
            if !ids.insert(entry.id.clone()) {
                bail!("{place}: the id is pinned twice");
            }
            if !files.insert(entry.file.clone()) {
                bail!("{place}: file {:?} is pinned twice", entry.file);
            }
        }
        Ok(PluginLock { plugins })
    }

    /// The file's text: the header comment, then the entries sorted by id.
    pub fn to_toml(&self) -> String {
        let mut plugin = self.plugins.clone();
        plugin.sort_by(|a, b| a.id.cmp(&b.id));
        let body = toml::to_string(&LockFile { plugin })
            .expect("a list of string-only tables always serializes");
        format!("{HEADER}\n{body}")
    }

    /// Writes the file atomically: `.<name>.tmp` in the same directory, flushed, then
    /// renamed over `path`.
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let name = path
            .file_name()
            .with_context(|| format!("plugin lock file {} has no file name", path.display()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let temporary = dir.join(format!(".{}.tmp", name.to_string_lossy()));
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(self.to_toml().as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)?;
            // Make the rename itself durable; not every platform can open a directory.
            if let Ok(dir) = std::fs::File::open(&dir) {
                let _ = dir.sync_all();
            }
            Ok(())
        })();
        if let Err(error) = written {
            let _ = std::fs::remove_file(&temporary);
            return Err(error)
                .with_context(|| format!("cannot write plugin lock file {}", path.display()));
        }
        Ok(())
    }

    /// The pin for a plugin id.
    pub fn entry(&self, id: &str) -> Option<&LockedPlugin> {
        self.plugins.iter().find(|entry| entry.id == id)
    }

    /// The verdict for one library: Ok when pinned with this hash; Err(one-line reason)
    /// otherwise. Matches by plugin id; a file renamed since the pin was written is accepted
    /// when its hash is the pinned one.
    pub fn verdict(
        &self,
        lock_path: &Path,
        id: &str,
        file: &str,
        sha256: &str,
    ) -> Result<(), String> {
        let Some(entry) = self.entry(id) else {
            return Err(format!(
                "not pinned in {} (no entry for {id}): run `pixsim7 plugins lock` after \
                 deploying it, or remove it",
                lock_path.display()
            ));
        };
        if entry.sha256.eq_ignore_ascii_case(sha256) {
            return Ok(());
        }
        let pinned_file = if entry.file == file {
            String::new()
        } else {
            format!(" (for {})", entry.file)
        };
        Err(format!(
            "SHA-256 mismatch: {file} has {} but {} pins {}{pinned_file}",
            sha256.to_ascii_lowercase(),
            lock_path.display(),
            entry.sha256
        ))
    }
}

/// Lowercase hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;

    Sha256::digest(bytes)
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory under the system temp directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("pixsim7-lock-test-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn entry(id: &str, file: &str, bytes: &[u8]) -> LockedPlugin {
        LockedPlugin {
            id: id.into(),
            version: "1.2.0".into(),
            file: file.into(),
            sha256: sha256_hex(bytes),
        }
    }

    fn read_text(text: &str) -> anyhow::Result<PluginLock> {
        let dir = TempDir::new();
        let path = dir.0.join("plugins.lock");
        std::fs::write(&path, text).unwrap();
        PluginLock::read(&path)
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"test"),
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(sha256_hex(b"").len(), 64);
    }

    #[test]
    fn round_trip_sorted_by_id_with_the_header() {
        let dir = TempDir::new();
        let path = dir.0.join("plugins.lock");
        let lock = PluginLock {
            plugins: vec![
                entry("game-world", "libgame_world.so", b"w"),
                entry("dice-game", "libdice_game.so", b"d"),
            ],
        };
        lock.write(&path).unwrap();
        assert!(!dir.0.join(".plugins.lock.tmp").exists());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(HEADER), "{text}");
        assert!(
            text.find("dice-game").unwrap() < text.find("game-world").unwrap(),
            "{text}"
        );
        assert!(text.contains("[[plugin]]\nid = \"dice-game\""), "{text}");
        let read = PluginLock::read(&path).unwrap();
        assert_eq!(
            read.plugins,
            vec![lock.plugins[1].clone(), lock.plugins[0].clone()]
        );

        // Overwriting replaces the file.
        PluginLock::default().write(&path).unwrap();
        assert_eq!(PluginLock::read(&path).unwrap(), PluginLock::default());
    }

    #[test]
    fn verdicts() {
        let lock_path = Path::new("/etc/pixsim7/plugins.lock");
        let pinned = entry("dice-game", "libdice_game.so", b"pinned");
        let lock = PluginLock {
            plugins: vec![pinned.clone()],
        };
        let good = sha256_hex(b"pinned");
        let bad = sha256_hex(b"tampered");

        assert_eq!(
            lock.verdict(lock_path, "dice-game", "libdice_game.so", &good),
            Ok(())
        );
        assert_eq!(
            lock.verdict(
                lock_path,
                "dice-game",
                "libdice_game.so",
                &good.to_ascii_uppercase()
            ),
            Ok(())
        );
        // Renamed, same bytes.
        assert_eq!(
            lock.verdict(lock_path, "dice-game", "libdice.so", &good),
            Ok(())
        );

        assert_eq!(
            lock.verdict(lock_path, "game-world", "libgame_world.so", &good),
            Err(
                "not pinned in /etc/pixsim7/plugins.lock (no entry for game-world): run \
                 `pixsim7 plugins lock` after deploying it, or remove it"
                    .to_owned()
            )
        );
        assert_eq!(
            lock.verdict(lock_path, "dice-game", "libdice_game.so", &bad),
            Err(format!(
                "SHA-256 mismatch: libdice_game.so has {bad} but /etc/pixsim7/plugins.lock \
                 pins {good}"
            ))
        );
        assert_eq!(
            lock.verdict(lock_path, "dice-game", "libdice.so", &bad),
            Err(format!(
                "SHA-256 mismatch: libdice.so has {bad} but /etc/pixsim7/plugins.lock pins \
                 {good} (for libdice_game.so)"
            ))
        );
    }

    #[test]
    fn malformed_entries_are_refused() {
        let sha = sha256_hex(b"x");
        let one = |id: &str, file: &str, sha: &str| {
            format!("[[plugin]]\nid = \"{id}\"\nversion = \"1.0.0\"\nfile = \"{file}\"\nsha256 = \"{sha}\"\n")
        };

        let error = read_text(&one("a", "liba.so", "9f86d08")).unwrap_err();
        assert!(
            format!("{error:#}").contains("sha256 must be 64 hex digits, found \"9f86d08\""),
            "{error:#}"
        );
        assert!(format!("{error:#}").contains("plugins.lock"), "{error:#}");
        let not_hex = format!("{}z", &sha[..63]);
        assert!(read_text(&one("a", "liba.so", &not_hex)).is_err());

        let text = one("a", "liba.so", &sha) + &one("a", "libb.so", &sha256_hex(b"y"));
        let error = read_text(&text).unwrap_err();
        assert!(
            format!("{error:#}").contains("the id is pinned twice"),
            "{error:#}"
        );

        let text = one("a", "liba.so", &sha) + &one("b", "liba.so", &sha256_hex(b"y"));
        let error = read_text(&text).unwrap_err();
        assert!(
            format!("{error:#}").contains("file \"liba.so\" is pinned twice"),
            "{error:#}"
        );

        let error = read_text(&one("a", "../liba.so", &sha)).unwrap_err();
        assert!(
            format!("{error:#}").contains("must be a file name"),
            "{error:#}"
        );

        let error = read_text("[[plugin]]\nid = \"a\"\n").unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("invalid plugin lock file"), "{message}");
        assert!(message.contains("missing field"), "{message}");

        // Upper case hex is accepted and stored lower case.
        let lock = read_text(&one("a", "liba.so", &sha.to_ascii_uppercase())).unwrap();
        assert_eq!(lock.plugins[0].sha256, sha);
        // An empty file pins nothing.
        assert_eq!(read_text("").unwrap(), PluginLock::default());
    }
}
