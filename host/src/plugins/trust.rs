//! Who may have written the plugin libraries the host is about to run.
//!
//! As Vault does for its plugin directory: the plugin directory and each library in it must
//! be writable by nobody but their owner, and owned by the host's effective user or root;
//! a symlink in the directory may only point to a file inside it. Otherwise anyone able to
//! replace a file there could run code as the host. Every refusal is one line naming what
//! was expected and what was found. On non-unix targets there is nothing to check and every
//! check passes.

use std::path::{Path, PathBuf};

/// The remedy appended to a permission refusal.
const INSECURE_HINT: &str = "or set [plugins] allow_insecure_permissions = true for development";

/// A refusal without its development remedy, for the warning logged when the remedy is in
/// force.
pub fn without_hint(reason: &str) -> &str {
    reason
        .strip_suffix(INSECURE_HINT)
        .map_or(reason, |rest| rest.trim_end_matches([',', ' ']))
}

/// Refuses (returns Err with a one-line reason) a plugin directory that is writable by group
/// or others, or owned by a user other than the host's effective user or root.
#[cfg(unix)]
pub fn check_directory(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;

    let metadata = std::fs::metadata(dir)
        .map_err(|error| format!("cannot inspect plugin-dir {}: {error}", dir.display()))?;
    if !metadata.is_dir() {
        return Err(format!(
            "plugin-dir {} is not a directory (found {})",
            dir.display(),
            kind(&metadata.file_type())
        ));
    }
    judge_mode_and_owner(
        &format!("plugin-dir {}", dir.display()),
        dir,
        metadata.mode(),
        metadata.uid(),
        effective_uid(),
    )
}

/// Refuses (returns Err with a one-line reason) a plugin directory that is writable by group
/// or others, or owned by a user other than the host's effective user or root.
#[cfg(not(unix))]
pub fn check_directory(_dir: &Path) -> Result<(), String> {
    Ok(())
}

/// For one library path found in the plugin directory (the path as listed, possibly a
/// symlink): a symlink whose target (canonicalized, following every link) is outside the
/// canonicalized plugin directory is refused; the final file must be a regular file, not
/// writable by group or others, owned by the host's effective user or root. Returns the
/// canonical path of the file to read.
///
/// When the file lies in a subdirectory of the plugin directory (through a symlink), each
/// directory between the plugin directory and the file is held to the same rule as the
/// plugin directory, since whoever can write one of them can replace the file.
///
/// `allow_insecure` (`[plugins] allow_insecure_permissions`, for
/// development) turns the permission, owner and outside-symlink refusals into warnings,
/// returned beside the path. A file that is not a regular file (a FIFO, a device) is always
/// refused: reading one could block or never end.
#[cfg(unix)]
pub fn check_library(
    dir: &Path,
    path: &Path,
    allow_insecure: bool,
) -> Result<(PathBuf, Vec<String>), String> {
    use std::os::unix::fs::MetadataExt;

    let mut warnings = Vec::new();
    let mut tolerate = |outcome: Result<(), String>| match outcome {
        Err(reason) if allow_insecure => {
            warnings.push(reason);
            Ok(())
        }
        other => other,
    };

    let label = path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    );
    let listed = std::fs::symlink_metadata(path)
        .map_err(|error| format!("cannot inspect {label}: {error}"))?;
    let canonical_dir = std::fs::canonicalize(dir)
        .map_err(|error| format!("cannot resolve plugin-dir {}: {error}", dir.display()))?;
    let canonical = std::fs::canonicalize(path).map_err(|error| {
        if listed.file_type().is_symlink() {
            format!("{label} is a symlink that cannot be followed: {error}")
        } else {
            format!("cannot resolve {label}: {error}")
        }
    })?;
    if !canonical.starts_with(&canonical_dir) {
        tolerate(Err(if listed.file_type().is_symlink() {
            format!(
                "{label} is a symlink to {}, outside the plugin directory {}",
                canonical.display(),
                canonical_dir.display()
            )
        } else {
            format!(
                "{label} resolves to {}, outside the plugin directory {}",
                canonical.display(),
                canonical_dir.display()
            )
        }))?;
    }
    let euid = effective_uid();
    // Directories strictly between the plugin directory and the file.
    for between in canonical
        .ancestors()
        .skip(1)
        .take_while(|ancestor| *ancestor != canonical_dir)
    {
        let metadata = std::fs::metadata(between)
            .map_err(|error| format!("cannot inspect {}: {error}", between.display()))?;
        tolerate(judge_mode_and_owner(
            &format!("{label}'s directory {}", between.display()),
            between,
            metadata.mode(),
            metadata.uid(),
            euid,
        ))?;
    }
    let metadata = std::fs::metadata(&canonical)
        .map_err(|error| format!("cannot inspect {label}: {error}"))?;
    if !metadata.is_file() {
        return Err(format!(
            "{label} is {}, expected a regular file",
            kind(&metadata.file_type())
        ));
    }
    tolerate(judge_mode_and_owner(
        &label,
        &canonical,
        metadata.mode(),
        metadata.uid(),
        euid,
    ))?;
    Ok((canonical, warnings))
}

/// See the unix version: nothing to check here.
#[cfg(not(unix))]
pub fn check_library(
    _dir: &Path,
    path: &Path,
    _allow_insecure: bool,
) -> Result<(PathBuf, Vec<String>), String> {
    Ok((path.to_path_buf(), Vec::new()))
}

/// The host's effective user id.
#[cfg(unix)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid takes no arguments, touches no memory of ours and always succeeds.
    unsafe { libc::geteuid() }
}

/// The decision for one file or directory, apart from the file system: `label` names it in
/// the message, `path` is what the suggested `chmod`/`chown` acts on, `mode` and `uid` are
/// what its metadata says and `euid` is the host's effective user.
#[cfg(unix)]
fn judge_mode_and_owner(
    label: &str,
    path: &Path,
    mode: u32,
    uid: u32,
    euid: u32,
) -> Result<(), String> {
    let writable_by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => Some("group and others"),
        (true, false) => Some("group"),
        (false, true) => Some("others"),
        (false, false) => None,
    };
    if let Some(who) = writable_by {
        return Err(format!(
            "{label} is writable by {who} (mode {:04o}): it must not be writable by group or \
             others (chmod go-w {}), {INSECURE_HINT}",
            mode & 0o7777,
            path.display()
        ));
    }
    if uid != euid && uid != 0 {
        return Err(format!(
            "{label} is owned by uid {uid}, expected the host's user (uid {euid}) or root \
             (chown {euid} {}), {INSECURE_HINT}",
            path.display()
        ));
    }
    Ok(())
}

/// What a file that should have been something else is, for messages.
#[cfg(unix)]
fn kind(file_type: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;

    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_fifo() {
        "a named pipe"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_char_device() {
        "a character device"
    } else {
        "not a regular file"
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::{symlink, PermissionsExt};

    use super::*;

    /// A directory under the system temp directory, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> TempDir {
            static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = std::env::temp_dir().join(format!(
                "pixsim7-trust-test-{tag}-{}-{n}",
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            chmod(&path, 0o755);
            TempDir(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn file(&self, name: &str, mode: u32) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, b"not really a library").unwrap();
            chmod(&path, mode);
            path
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    fn assert_one_line(message: &str) {
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn a_directory_writable_by_others_is_refused() {
        let dir = TempDir::new("dir");
        chmod(dir.path(), 0o777);
        let error = check_directory(dir.path()).unwrap_err();
        assert!(
            error.contains("is writable by group and others (mode 0777)"),
            "{error}"
        );
        assert!(
            error.contains(&format!("chmod go-w {}", dir.path().display())),
            "{error}"
        );
        assert!(
            error.contains("allow_insecure_permissions = true"),
            "{error}"
        );
        assert_one_line(&error);

        chmod(dir.path(), 0o775);
        let error = check_directory(dir.path()).unwrap_err();
        assert!(error.contains("writable by group (mode 0775)"), "{error}");

        chmod(dir.path(), 0o755);
        assert_eq!(check_directory(dir.path()), Ok(()));
    }

    #[test]
    fn a_missing_directory_is_refused() {
        let dir = TempDir::new("missing");
        let error = check_directory(&dir.path().join("nope")).unwrap_err();
        assert!(error.starts_with("cannot inspect plugin-dir"), "{error}");
        assert_one_line(&error);
    }

    #[test]
    fn a_library_writable_by_others_is_refused() {
        let dir = TempDir::new("file");
        let path = dir.file("libx.so", 0o666);
        let error = check_library(dir.path(), &path, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert!(
            error.starts_with("libx.so is writable by group and others (mode 0666)"),
            "{error}"
        );
        assert_one_line(&error);

        chmod(&path, 0o644);
        let canonical = check_library(dir.path(), &path, false)
            .map(|(path, _)| path)
            .unwrap();
        assert_eq!(canonical, std::fs::canonicalize(&path).unwrap());
    }

    #[test]
    fn a_library_must_be_a_regular_file() {
        let dir = TempDir::new("notfile");
        let sub = dir.path().join("libdir.so");
        std::fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o755);
        let error = check_library(dir.path(), &sub, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert_eq!(error, "libdir.so is a directory, expected a regular file");
    }

    #[test]
    fn a_symlink_inside_the_directory_is_followed() {
        let dir = TempDir::new("inside");
        let target = dir.file("libreal.so", 0o644);
        let link = dir.path().join("libx.so");
        symlink("libreal.so", &link).unwrap();
        assert_eq!(
            check_library(dir.path(), &link, false)
                .map(|(path, _)| path)
                .unwrap(),
            std::fs::canonicalize(&target).unwrap()
        );

        // The target's own permissions are what count.
        chmod(&target, 0o664);
        let error = check_library(dir.path(), &link, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert!(error.starts_with("libx.so is writable by group"), "{error}");
    }

    #[test]
    fn a_symlink_outside_the_directory_is_refused() {
        let dir = TempDir::new("outside");
        let elsewhere = TempDir::new("elsewhere");
        let target = elsewhere.file("evil.so", 0o644);
        let link = dir.path().join("libx.so");
        symlink(&target, &link).unwrap();
        let error = check_library(dir.path(), &link, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert_eq!(
            error,
            format!(
                "libx.so is a symlink to {}, outside the plugin directory {}",
                std::fs::canonicalize(&target).unwrap().display(),
                std::fs::canonicalize(dir.path()).unwrap().display()
            )
        );

        // Through a chain of links, one of them inside the directory.
        let hop = dir.path().join("libhop.so");
        symlink("libx.so", &hop).unwrap();
        let error = check_library(dir.path(), &hop, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert!(error.starts_with("libhop.so is a symlink to "), "{error}");
        assert!(error.contains("outside the plugin directory"), "{error}");

        // A dangling link.
        let dangling = dir.path().join("libgone.so");
        symlink("nothing-here.so", &dangling).unwrap();
        let error = check_library(dir.path(), &dangling, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert!(
            error.starts_with("libgone.so is a symlink that cannot be followed"),
            "{error}"
        );
        assert_one_line(&error);
    }

    #[test]
    fn a_subdirectory_on_the_way_to_the_file_is_checked() {
        let dir = TempDir::new("subdir");
        let sub = dir.path().join("versions");
        std::fs::create_dir(&sub).unwrap();
        chmod(&sub, 0o777);
        std::fs::write(sub.join("libreal.so"), b"x").unwrap();
        chmod(&sub.join("libreal.so"), 0o644);
        let link = dir.path().join("libx.so");
        symlink("versions/libreal.so", &link).unwrap();
        let error = check_library(dir.path(), &link, false)
            .map(|(path, _)| path)
            .unwrap_err();
        assert!(error.starts_with("libx.so's directory "), "{error}");
        assert!(error.contains("writable by group and others"), "{error}");

        chmod(&sub, 0o755);
        assert!(check_library(dir.path(), &link, false)
            .map(|(path, _)| path)
            .is_ok());
    }

    #[test]
    fn the_owner_must_be_the_host_user_or_root() {
        let path = Path::new("/srv/p/libx.so");
        assert_eq!(
            judge_mode_and_owner("libx.so", path, 0o100644, 1000, 1000),
            Ok(())
        );
        assert_eq!(
            judge_mode_and_owner("libx.so", path, 0o100644, 0, 1000),
            Ok(())
        );
        assert_eq!(
            judge_mode_and_owner("libx.so", path, 0o100755, 0, 0),
            Ok(())
        );
        let error = judge_mode_and_owner("libx.so", path, 0o100644, 1001, 0).unwrap_err();
        assert!(
            error.starts_with(
                "libx.so is owned by uid 1001, expected the host's user (uid 0) or root"
            ),
            "{error}"
        );
        assert_one_line(&error);
        let error = judge_mode_and_owner("libx.so", path, 0o100644, 1001, 1000).unwrap_err();
        assert!(
            error.contains("expected the host's user (uid 1000) or root"),
            "{error}"
        );
    }

    #[test]
    fn the_mode_is_judged_before_the_owner_and_ignores_the_file_type_bits() {
        let path = Path::new("/srv/p");
        let error = judge_mode_and_owner("plugin-dir /srv/p", path, 0o40757, 1001, 0).unwrap_err();
        assert_eq!(
            error,
            "plugin-dir /srv/p is writable by others (mode 0757): it must not be writable by \
             group or others (chmod go-w /srv/p), or set [plugins] allow_insecure_permissions \
             = true for development"
        );
        // Sticky, setgid and read/execute bits for everyone are fine.
        assert_eq!(judge_mode_and_owner("d", path, 0o41755, 0, 0), Ok(()));
        assert_eq!(judge_mode_and_owner("d", path, 0o42755, 0, 0), Ok(()));
    }
}
