//! What the host learnt about each library file at an earlier start: its SHA-256 and its
//! descriptor section, keyed by the file's identity and change stamps, so an unchanged file
//! is not read, hashed and checked again at every start (as git's index spares re-hashing
//! unchanged files).
//!
//! A file counts as unchanged when its device, inode, size, modification time and status
//! change time (`ctime`, which the kernel sets on every write, rename into place, `chmod` or
//! `touch`, and which no unprivileged process can set back) are all the same as when it was
//! read. As in git, a file changed within the last [`RACY_WINDOW_NS`] when it is read is
//! not recorded: a write in the same clock tick after the read could leave its stamps
//! unchanged. The index lives in the private-copy directory (mode 0700), beside the copies it
//! describes, as `index.json`; it is written by a start that opened libraries, never by the
//! dry run. An unreadable or foreign index is ignored (everything is read afresh).

use std::{
    collections::BTreeMap,
    fs,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// The index file's name in the private-copy directory.
const INDEX_FILE: &str = "index.json";

/// The layout of the index file; another layout is ignored.
const INDEX_FORMAT: u32 = 1;

/// Files changed this recently (nanoseconds) when read are read again at the next start.
/// File times advance in clock ticks (at most 10 ms on Linux); a write after the read can
/// leave the stamps unchanged only if the file had changed within the same tick before it.
pub const RACY_WINDOW_NS: i128 = 100_000_000;

/// A file's identity and change stamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStamp {
    device: u64,
    inode: u64,
    size: u64,
    modified_ns: i128,
    changed_ns: i128,
}

impl FileStamp {
    /// The stamp of a file from its metadata (following symlinks). `None` where the
    /// platform has no inode numbers and change times (the file is then always read).
    #[cfg(unix)]
    pub fn of(metadata: &fs::Metadata) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let nanos =
            |seconds: i64, nanos: i64| i128::from(seconds) * 1_000_000_000 + i128::from(nanos);
        Some(FileStamp {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified_ns: nanos(metadata.mtime(), metadata.mtime_nsec()),
            changed_ns: nanos(metadata.ctime(), metadata.ctime_nsec()),
        })
    }

    /// See the unix version.
    #[cfg(not(unix))]
    pub fn of(_metadata: &fs::Metadata) -> Option<FileStamp> {
        None
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// What was learnt from one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KnownFile {
    /// The file's stamp when it was read.
    pub stamp: FileStamp,
    /// The SHA-256 of its content.
    pub sha256: String,
    /// Its descriptor section (JSON), which the file checks found.
    pub section: String,
}

#[derive(Default, Serialize, Deserialize)]
struct IndexFile {
    format: u32,
    files: BTreeMap<PathBuf, KnownFile>,
}

/// The index read at start-up, and the one this start will write.
#[derive(Default)]
pub struct FileIndex {
    known: BTreeMap<PathBuf, KnownFile>,
    seen: BTreeMap<PathBuf, KnownFile>,
}

impl FileIndex {
    /// Reads the index of the private-copy directory `dir`; an absent, unreadable or
    /// foreign one reads as empty.
    pub fn load(dir: &Path) -> FileIndex {
        let known = fs::read(dir.join(INDEX_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<IndexFile>(&bytes).ok())
            .filter(|index| index.format == INDEX_FORMAT)
            .map(|index| index.files)
            .unwrap_or_default();
        FileIndex {
            known,
            seen: BTreeMap::new(),
        }
    }

    /// What was learnt from the file at `path` (canonical) if it has not changed since.
    pub fn lookup(&self, path: &Path, stamp: FileStamp) -> Option<&KnownFile> {
        self.known.get(path).filter(|known| known.stamp == stamp)
    }

    /// Records what this start learnt (or confirmed) about a file, for [`FileIndex::save`],
    /// unless the file changed too recently to trust its stamps.
    pub fn record(&mut self, path: PathBuf, known: KnownFile) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as i128);
        if now - known.stamp.changed_ns > RACY_WINDOW_NS {
            self.seen.insert(path, known);
        }
    }

    /// Writes the files seen by this start as the index of `dir`, atomically. Failing to
    /// write it only costs the next start some reading, so the error is logged and dropped.
    pub fn save(&self, dir: &Path) {
        let index = IndexFile {
            format: INDEX_FORMAT,
            files: self.seen.clone(),
        };
        let temporary = dir.join(format!(".{INDEX_FILE}.{}.tmp", std::process::id()));
        let written = serde_json::to_vec(&index)
            .map_err(std::io::Error::other)
            .and_then(|bytes| fs::write(&temporary, bytes))
            .and_then(|()| fs::rename(&temporary, dir.join(INDEX_FILE)));
        if let Err(error) = written {
            let _ = fs::remove_file(&temporary);
            tracing::debug!(dir = %dir.display(), %error, "could not write the plugin file index");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unchanged_file_is_known_and_a_replaced_or_recent_one_is_not() {
        let dir = std::env::temp_dir().join(format!("pixsim7-index-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("libx.so");
        fs::write(&file, b"library").unwrap();
        let stamp = FileStamp::of(&fs::metadata(&file).unwrap()).unwrap();
        let known = KnownFile {
            stamp,
            sha256: "aa".into(),
            section: "{}".into(),
        };
        // Just written: too recent to be trusted by its stamps.
        let mut index = FileIndex::load(&dir);
        index.record(file.clone(), known.clone());
        index.save(&dir);
        assert!(FileIndex::load(&dir).lookup(&file, stamp).is_none());

        // As if read long after it was written.
        let settled = KnownFile {
            stamp: FileStamp {
                changed_ns: stamp.changed_ns - 2 * RACY_WINDOW_NS,
                ..stamp
            },
            ..known
        };
        let mut index = FileIndex::load(&dir);
        index.record(file.clone(), settled.clone());
        index.save(&dir);
        let next = FileIndex::load(&dir);
        assert_eq!(next.lookup(&file, settled.stamp), Some(&settled));
        // Replaced by a rename (what an atomic deploy does): another inode.
        let fresh = dir.join(".libx.so.new");
        fs::write(&fresh, b"library").unwrap();
        fs::rename(&fresh, &file).unwrap();
        let replaced = FileStamp::of(&fs::metadata(&file).unwrap()).unwrap();
        assert!(next.lookup(&file, replaced).is_none());
        fs::remove_dir_all(&dir).unwrap();
    }
}
