//! Finds the plugin libraries in the plugin directory, in a deterministic order.

use std::{
    io,
    path::{Path, PathBuf},
};

/// The file extension of shared libraries on this platform (`so`, `dylib` or `dll`).
pub const LIBRARY_EXTENSION: &str = std::env::consts::DLL_EXTENSION;

/// The library files in `dir`, sorted by file name (byte order), so the same directory
/// gives the same order on every run and every file system. Hidden files (starting with
/// `.`, such as the temporary files of an atomic copy) and subdirectories are ignored.
pub fn scan_plugin_dir(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut libraries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let is_library = path.extension().is_some_and(|ext| ext == LIBRARY_EXTENSION);
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // `is_file` follows symlinks, so a link to a library in a build folder counts.
        if is_library && !hidden && path.is_file() {
            libraries.push(path);
        }
    }
    libraries.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(libraries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_library_files_in_name_order() {
        let dir = std::env::temp_dir().join(format!("pixsim7-scan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join(format!("sub.{LIBRARY_EXTENSION}"))).unwrap();
        for name in ["b", "a", "c.txt", ".hidden"] {
            let file = if name.contains('.') && !name.starts_with('.') {
                name.to_owned()
            } else {
                format!("{name}.{LIBRARY_EXTENSION}")
            };
            std::fs::write(dir.join(file), b"x").unwrap();
        }
        let found: Vec<String> = scan_plugin_dir(&dir)
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            found,
            vec![
                format!("a.{LIBRARY_EXTENSION}"),
                format!("b.{LIBRARY_EXTENSION}")
            ]
        );
    }
}
