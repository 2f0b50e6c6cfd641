//! Opens one plugin library with abi_stable and reads its descriptor, turning every way that
//! can fail into a [`LoadError`] an operator can act on.
//!
//! Each file is loaded through `lib_header_from_path(..).init_root_module()`: abi_stable's
//! `RootModule::load_from_file` caches one library per root-module type and would hand every
//! plugin the first one. Libraries are never unloaded (abi_stable leaks them on purpose).

use std::{fmt, path::Path};

use abi_stable::library::{lib_header_from_path, LibraryError, RootModule};
use plugin_api::{
    abi::{FaultKind, PluginModule_Ref},
    PluginDescriptor,
};

/// A library whose root module passed abi_stable's version and layout checks.
#[derive(Clone, Copy)]
pub struct PluginLibrary {
    /// The root module: the plugin's entry points.
    pub module: PluginModule_Ref,
}

/// Why a file in the plugin directory could not be used as a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The dynamic loader refused the file (not a library, wrong architecture, ...).
    NotALibrary(String),
    /// A library, but it exports no PixSim7 root module.
    MissingRootModule,
    /// Built with an abi_stable whose header is incompatible with the host's.
    IncompatibleAbiStable(String),
    /// Built against an incompatible plugin-api version.
    IncompatibleApiVersion {
        /// The plugin-api version the host was built with.
        expected: String,
        /// The plugin-api version the library was built with.
        found: String,
    },
    /// The root module's type layout differs from the host's (a different plugin-api).
    AbiLayoutMismatch,
    /// The library's root-module constructor failed or panicked.
    RootModuleFailed(String),
    /// `describe` failed or panicked.
    DescribeFailed(String),
    /// The descriptor is not valid JSON of the expected shape.
    UnreadableDescriptor(String),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host_api = PluginModule_Ref::VERSION_STRINGS;
        match self {
            LoadError::NotALibrary(cause) => write!(f, "not a loadable library: {cause}"),
            LoadError::MissingRootModule => write!(
                f,
                "not a PixSim7 plugin: the library exports no plugin root module \
                 (build it with plugin_api::export_plugin!)"
            ),
            LoadError::IncompatibleAbiStable(cause) => write!(
                f,
                "built with an incompatible abi_stable ({cause}); rebuild it against plugin-api {host_api}"
            ),
            LoadError::IncompatibleApiVersion { expected, found } => write!(
                f,
                "built against plugin-api {found}, but this host needs plugin-api {expected} \
                 (same minor version); rebuild the plugin with `cargo xtask build-plugins`"
            ),
            LoadError::AbiLayoutMismatch => write!(
                f,
                "ABI layout mismatch: the library's plugin interface differs from this host's \
                 plugin-api {host_api}; rebuild the plugin (log level debug shows the full layout diff)"
            ),
            LoadError::RootModuleFailed(cause) => {
                write!(f, "the library's root module failed to initialize: {cause}")
            }
            LoadError::DescribeFailed(cause) => {
                write!(f, "the plugin could not describe itself: {cause}")
            }
            LoadError::UnreadableDescriptor(cause) => {
                write!(f, "the plugin's manifest could not be read: {cause}")
            }
        }
    }
}

impl std::error::Error for LoadError {}

/// Loads the library at `path` and reads its descriptor. The descriptor is not validated
/// here (see `PluginDescriptor::validate`).
pub fn load_plugin_library(path: &Path) -> Result<(PluginLibrary, PluginDescriptor), LoadError> {
    let module = lib_header_from_path(path)
        .and_then(|header| header.init_root_module::<PluginModule_Ref>())
        .map_err(|error| classify(path, error))?;
    let descriptor_json = match (module.describe())() {
        abi_stable::std_types::RResult::ROk(json) => json,
        abi_stable::std_types::RResult::RErr(fault) => {
            let kind = match fault.kind {
                FaultKind::Panic => "panicked: ",
                _ => "",
            };
            return Err(LoadError::DescribeFailed(format!(
                "{kind}{}",
                fault.message
            )));
        }
    };
    let descriptor = serde_json::from_str(&descriptor_json)
        .map_err(|error| LoadError::UnreadableDescriptor(error.to_string()))?;
    Ok((PluginLibrary { module }, descriptor))
}

fn classify(path: &Path, error: LibraryError) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::MissingRootModule,
        LibraryError::InvalidAbiHeader(header) => {
            LoadError::IncompatibleAbiStable(format!("{header:?}"))
        }
        LibraryError::IncompatibleVersionNumber {
            expected_version,
            actual_version,
            ..
        } => LoadError::IncompatibleApiVersion {
            expected: expected_version.to_string(),
            found: actual_version.to_string(),
        },
        LibraryError::AbiInstability(diff) => {
            // The diff can run to hundreds of lines: one line at warn (by the caller), the
            // whole of it here, at debug.
            tracing::debug!(file = %path.display(), "ABI layout diff:\n{diff}");
            LoadError::AbiLayoutMismatch
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => classify(path, first),
            None => LoadError::RootModuleFailed("unknown error".to_owned()),
        },
        other => LoadError::RootModuleFailed(other.to_string()),
    }
}
