//! The host's private copies of the libraries it opens: `<data dir>/plugin-cache/<sha256>.so`,
//! in a directory only the host's user may enter (mode 0700).
//!
//! The host never maps a file in the plugin directory: replacing or deleting one there
//! (`cp new.so plugin-dir/`) changes nothing until the next restart. A copy is named by its
//! content's SHA-256 and written once, from bytes whose hash was verified (a temporary file
//! renamed into place, so a crash leaves no half copy under a final name); a later start
//! with the same library reuses it. The directory is trusted like the rest of the data
//! directory: a copy is verified when written, not at every start.
//!
//! Several instances may share a data directory: each holds a shared `flock` on
//! `plugin-cache/.lock` while it runs, and unused copies are removed only by a start that
//! can take the lock exclusively (no other instance running, or starting).

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use super::{discovery::LIBRARY_EXTENSION, lock::sha256_hex};

/// The directory of private copies under the data directory.
pub const CACHE_DIR_NAME: &str = "plugin-cache";

/// The private-copy directory, created (or tightened) to mode 0700.
pub struct PrivateCopies {
    dir: PathBuf,
    used: BTreeSet<PathBuf>,
    /// Holds the shared lock for as long as the process runs (see the module docs).
    lock: fs::File,
}

impl PrivateCopies {
    /// Opens (creating it if needed) `<data_dir>/plugin-cache`, refusing one owned by
    /// another user.
    pub fn open(data_dir: &Path) -> Result<PrivateCopies, String> {
        let dir = data_dir.join(CACHE_DIR_NAME);
        create_private_dir(&dir).map_err(|error| {
            format!(
                "cannot prepare the private plugin copies in {}: {error}",
                dir.display()
            )
        })?;
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
            .and_then(|file| flock(&file, Flock::Shared).map(|()| file))
            .map_err(|error| format!("cannot lock {}: {error}", dir.display()))?;
        Ok(PrivateCopies {
            dir,
            used: BTreeSet::new(),
            lock,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the private copy of the library at `source`, whose content had this
    /// SHA-256 and size when the host read it. An existing copy of that hash is reused;
    /// otherwise `source` is read again, its hash verified, and the copy written.
    pub fn copy_of(&mut self, sha256: &str, size: u64, source: &Path) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{sha256}.{LIBRARY_EXTENSION}"));
        self.used.insert(path.clone());
        match fs::metadata(&path) {
            // Named by its content's hash, written whole and renamed into place: a copy of
            // the right size is this library.
            Ok(meta) if meta.is_file() && meta.len() == size => return Ok(path),
            Ok(_) => fs::remove_file(&path).map_err(|error| {
                format!(
                    "cannot replace the damaged private copy {}: {error}",
                    path.display()
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
        let bytes = fs::read(source)
            .map_err(|error| format!("cannot read {}: {error}", source.display()))?;
        let now = sha256_hex(&bytes);
        if now != sha256 {
            return Err(format!(
                "{} changed while the host was starting (SHA-256 {sha256} when checked, {now} \
                 now); restart once it is in place",
                source.display()
            ));
        }
        let temporary = self.dir.join(format!(".{sha256}.{}.tmp", random_suffix()));
        let written = match write_read_only(&temporary, &bytes) {
            Ok(()) => fs::rename(&temporary, &path).inspect_err(|_| {
                let _ = fs::remove_file(&temporary);
            }),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => Err(error),
            Err(error) => {
                let _ = fs::remove_file(&temporary);
                Err(error)
            }
        };
        written.map_err(|error| {
            format!("cannot write the private copy {}: {error}", path.display())
        })?;
        Ok(path)
    }

    /// Deletes the copies this start did not use (libraries since removed or replaced) and
    /// leftover temporary files, when no other instance shares the directory; a copy
    /// another instance has open stays mapped in it, but is only removed when none runs.
    pub fn remove_unused(&self) {
        if flock(&self.lock, Flock::ExclusiveNow).is_err() {
            tracing::debug!(dir = %self.dir.display(), "another instance uses the private plugin copies: not pruning them");
            return;
        }
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                let stale_copy = path.extension().is_some_and(|e| e == LIBRARY_EXTENSION)
                    && !self.used.contains(&path);
                let leftover = name.starts_with('.') && name.ends_with(".tmp");
                if stale_copy || leftover {
                    match fs::remove_file(&path) {
                        Ok(()) => {
                            tracing::debug!(file = %path.display(), "removed an unused private plugin copy")
                        }
                        Err(error) => {
                            tracing::debug!(file = %path.display(), %error, "could not remove an unused private plugin copy")
                        }
                    }
                }
            }
        }
        if let Err(error) = flock(&self.lock, Flock::Shared) {
            tracing::warn!(dir = %self.dir.display(), %error, "could not return to a shared lock on the private plugin copies");
        }
    }
}

/// 16 random hex digits, so two instances never write the same temporary file.
fn random_suffix() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        return format!("{}-{:?}", std::process::id(), std::thread::current().id());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `flock` operations used here.
enum Flock {
    Shared,
    ExclusiveNow,
}

#[cfg(unix)]
fn flock(file: &fs::File, operation: Flock) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let operation = match operation {
        Flock::Shared => libc::LOCK_SH,
        Flock::ExclusiveNow => libc::LOCK_EX | libc::LOCK_NB,
    };
    // SAFETY: the descriptor belongs to `file`, which outlives the call.
    if unsafe { libc::flock(file.as_raw_fd(), operation) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(not(unix))]
fn flock(_file: &fs::File, _operation: Flock) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(error),
    }
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other("it exists and is not a directory"));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        return Err(io::Error::other(format!(
            "it is owned by uid {}, not by the host's user (uid {euid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o777 != 0o700 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn write_read_only(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o500);
    let mut file = options.open(path)?;
    io::Write::write_all(&mut file, bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_written_once_named_by_hash_and_unused_ones_are_removed() {
        let data = std::env::temp_dir().join(format!("pixsim7-copies-{}", std::process::id()));
        let _ = fs::remove_dir_all(&data);
        fs::create_dir_all(&data).unwrap();
        let source = data.join("libx.so");
        fs::write(&source, b"library").unwrap();
        let hash = sha256_hex(b"library");
        let mut copies = PrivateCopies::open(&data).unwrap();
        let first = copies.copy_of(&hash, 7, &source).unwrap();
        assert_eq!(fs::read(&first).unwrap(), b"library");
        assert_eq!(
            first.file_name().unwrap().to_string_lossy(),
            format!("{hash}.{LIBRARY_EXTENSION}")
        );
        // Reused, not rewritten, even once the source is gone.
        fs::remove_file(&source).unwrap();
        assert_eq!(copies.copy_of(&hash, 7, &source).unwrap(), first);
        // A source that changed since it was checked is refused.
        fs::write(&source, b"changed").unwrap();
        let error = copies
            .copy_of(&sha256_hex(b"checked"), 7, &source)
            .unwrap_err();
        assert!(
            error.contains("changed while the host was starting"),
            "{error}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(copies.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        drop(copies);
        let mut next_start = PrivateCopies::open(&data).unwrap();
        fs::write(&source, b"other").unwrap();
        let other = next_start
            .copy_of(&sha256_hex(b"other"), 5, &source)
            .unwrap();
        // While another instance holds the directory, nothing is pruned.
        let another = PrivateCopies::open(&data).unwrap();
        next_start.remove_unused();
        assert!(first.exists());
        drop(another);
        next_start.remove_unused();
        assert!(!first.exists());
        assert!(other.exists());
        fs::remove_dir_all(&data).unwrap();
    }
}
