//! The host's private copies of the libraries it opens: `<data dir>/plugin-cache/<sha256>.so`,
//! in a directory only the host's user may enter (mode 0700).
//!
//! The host never maps a file in the plugin directory: replacing or deleting one there
//! (`cp new.so plugin-dir/`) changes nothing until the next restart. A copy is named by its
//! content's SHA-256 and written once (a temporary file renamed into place, so a crash
//! leaves no half copy under a final name); a later start with the same library reuses it.

use std::{
    collections::BTreeSet,
    fs, io,
    path::{Path, PathBuf},
};

use super::discovery::LIBRARY_EXTENSION;

/// The directory of private copies under the data directory.
pub const CACHE_DIR_NAME: &str = "plugin-cache";

/// The private-copy directory, created (or tightened) to mode 0700.
pub struct PrivateCopies {
    dir: PathBuf,
    used: BTreeSet<PathBuf>,
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
        Ok(PrivateCopies {
            dir,
            used: BTreeSet::new(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of the private copy of a library with these bytes and this SHA-256,
    /// writing it unless a copy of that hash is already there.
    pub fn copy_of(&mut self, sha256: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let path = self.dir.join(format!("{sha256}.{LIBRARY_EXTENSION}"));
        self.used.insert(path.clone());
        match fs::metadata(&path) {
            // The name is the content's hash and copies are renamed into place whole, so a
            // copy of the right size is this library.
            Ok(meta) if meta.is_file() && meta.len() == bytes.len() as u64 => return Ok(path),
            Ok(_) => fs::remove_file(&path).map_err(|error| {
                format!(
                    "cannot replace the damaged private copy {}: {error}",
                    path.display()
                )
            })?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
        }
        let temporary = self
            .dir
            .join(format!(".{sha256}.{}.tmp", std::process::id()));
        write_read_only(&temporary, bytes)
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(|error| {
                let _ = fs::remove_file(&temporary);
                format!("cannot write the private copy {}: {error}", path.display())
            })?;
        Ok(path)
    }

    /// Deletes the copies this start did not use (libraries since removed or replaced).
    /// A copy another running instance has open stays mapped in it; it only loses its name.
    pub fn remove_unused(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let stale_copy = path.extension().is_some_and(|e| e == LIBRARY_EXTENSION)
                && !self.used.contains(&path);
            if stale_copy {
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
        let mut copies = PrivateCopies::open(&data).unwrap();
        let first = copies.copy_of("aa", b"library").unwrap();
        assert_eq!(fs::read(&first).unwrap(), b"library");
        assert_eq!(
            first.file_name().unwrap().to_string_lossy(),
            format!("aa.{LIBRARY_EXTENSION}")
        );
        // Reused, not rewritten.
        assert_eq!(copies.copy_of("aa", b"library").unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(copies.dir()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let mut next_start = PrivateCopies::open(&data).unwrap();
        let other = next_start.copy_of("bb", b"other").unwrap();
        next_start.remove_unused();
        assert!(!first.exists());
        assert!(other.exists());
        fs::remove_dir_all(&data).unwrap();
    }
}
