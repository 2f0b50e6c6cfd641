//! Reads a plugin library's descriptor section (before anything opens the file) and opens
//! the library with abi_stable, turning every way that can fail into a [`LoadError`] an
//! operator can act on.
//!
//! Each file is loaded through `lib_header_from_path(..).init_root_module()`: abi_stable's
//! `RootModule::load_from_file` caches one library per root-module type and would hand every
//! plugin the first one. Libraries are never unloaded (abi_stable leaks them on purpose).

use std::{fmt, path::Path};

use abi_stable::{
    abi_stability::abi_checking::{
        check_layout_compatibility, AbiInstability, AbiInstabilityErrors,
    },
    library::{lib_header_from_path, LibHeader, LibraryError, RootModule},
    sabi_types::VersionNumber,
    type_layout::TLFieldOrFunction,
    StableAbi,
};
use plugin_api::{
    abi::{FaultKind, PluginModule_Ref, ABI_VERSION, DESCRIPTOR_SECTION},
    route::SECTION_FORMAT,
    PluginDescriptor, SectionDescriptor,
};

/// A library whose root module passed abi_stable's version and layout checks.
#[derive(Clone)]
pub struct PluginLibrary {
    /// The root module: the plugin's entry points.
    pub module: PluginModule_Ref,
    /// The plugin ABI version it was built against (this host's major, any minor).
    pub abi_version: String,
}

/// Why a file in the plugin directory could not be used as a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file failed the checks made before anything opens it (format, architecture,
    /// truncation, dynamic section), or the dynamic loader refused it.
    NotALibrary(String),
    /// A library without the descriptor section `export_plugin!` writes.
    MissingDescriptorSection,
    /// The descriptor section is there but is not a descriptor this host reads.
    UnreadableSection(String),
    /// The opened library describes itself differently from its descriptor section.
    SectionMismatch(String),
    /// A library, but it exports no PixSim7 root module.
    MissingRootModule,
    /// Built with an abi_stable whose header is incompatible with the host's.
    IncompatibleAbiStable(String),
    /// Built against a plugin ABI this host cannot load: from before plugin-abi existed
    /// (plugin-api 0.x), another major, or unreadable.
    IncompatibleAbiVersion {
        /// The library's plugin ABI version (for libraries from before the split, the
        /// plugin-api version they were built with).
        library: String,
        /// Which side to rebuild or upgrade.
        advice: VersionAdvice,
    },
    /// The root module's type layout differs from the host's although the ABI versions are
    /// compatible (a modified copy of plugin-abi).
    AbiLayoutMismatch {
        /// The library's plugin ABI version.
        library: String,
    },
    /// The library's root-module constructor failed or panicked.
    RootModuleFailed(String),
    /// `describe` failed or panicked.
    DescribeFailed(String),
    /// The descriptor is not valid JSON of the expected shape.
    UnreadableDescriptor(String),
}

/// What a library of an incompatible ABI version should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAdvice {
    /// Built before the ABI crate existed (plugin-api 0.7 or older): rebuild the plugin.
    RebuildPreSplit,
    /// An older major: rebuild the plugin against this host's major.
    RebuildOlderMajor,
    /// A newer major: upgrade the host (or build the plugin against this host's major).
    UpgradeHost,
    /// The version string does not parse.
    Unreadable,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host_api = PluginModule_Ref::VERSION_STRINGS;
        let host_major = host_api.version.split('.').next().unwrap_or_default();
        match self {
            LoadError::NotALibrary(cause) => write!(f, "not a loadable library: {cause}"),
            LoadError::MissingDescriptorSection => write!(
                f,
                "not a PixSim7 plugin of this host: the library has no descriptor section \
                 ({DESCRIPTOR_SECTION}), which plugin-api 0.9 (plugin ABI 1.2) and later write; \
                 rebuild the plugin with plugin-api 0.9 or later (export_plugin!)"
            ),
            LoadError::UnreadableSection(cause) => {
                write!(f, "the descriptor section ({DESCRIPTOR_SECTION}) is unreadable: {cause}")
            }
            LoadError::SectionMismatch(what) => write!(
                f,
                "the library, once opened, describes itself differently from its descriptor \
                 section ({what}): the file was altered after it was built; rebuild it"
            ),
            LoadError::MissingRootModule => write!(
                f,
                "not a PixSim7 plugin: the library exports no plugin root module \
                 (build it with plugin_api::export_plugin!)"
            ),
            LoadError::IncompatibleAbiStable(cause) => write!(
                f,
                "built with an incompatible abi_stable ({cause}); rebuild it against plugin-abi {host_api}"
            ),
            LoadError::IncompatibleAbiVersion { library, advice } => match advice {
                VersionAdvice::RebuildPreSplit => write!(
                    f,
                    "built against plugin-api {library}, from before the stable plugin ABI; this host \
                     loads plugin ABI {host_major}.x (it has {host_api}): rebuild the plugin with \
                     plugin-api 0.9 or later"
                ),
                VersionAdvice::RebuildOlderMajor => write!(
                    f,
                    "built against plugin ABI {library}, older than this host's plugin ABI \
                     {host_api}: rebuild the plugin against plugin-abi {host_major}.x"
                ),
                VersionAdvice::UpgradeHost => write!(
                    f,
                    "built against plugin ABI {library}, newer than this host's plugin ABI \
                     {host_api}: upgrade the host, or rebuild the plugin against plugin-abi {host_major}.x"
                ),
                VersionAdvice::Unreadable => write!(
                    f,
                    "built against an unreadable plugin ABI version {library:?}; this host has \
                     plugin ABI {host_api}: rebuild the plugin against plugin-abi {host_major}.x"
                ),
            },
            LoadError::AbiLayoutMismatch { library } => write!(
                f,
                "ABI layout mismatch: built against plugin ABI {library}, which this host ({host_api}) \
                 would load, but its interface types differ (a modified plugin-abi?); rebuild the \
                 plugin against a released plugin-abi {host_major}.x (log level debug shows the layout diff)"
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

/// Reads a library's descriptor section (the bytes the file checks found) and checks its
/// plugin ABI version. Nothing of the library runs.
pub fn read_section(bytes: Option<&[u8]>) -> Result<SectionDescriptor, LoadError> {
    let bytes = bytes.ok_or(LoadError::MissingDescriptorSection)?;
    #[derive(serde::Deserialize)]
    struct Versions {
        format: u8,
        abi_version: String,
    }
    // The versions first: a newer format may change everything else.
    let versions: Versions = serde_json::from_slice(bytes)
        .map_err(|error| LoadError::UnreadableSection(one_line(&error)))?;
    if versions.format != SECTION_FORMAT {
        return Err(LoadError::UnreadableSection(format!(
            "format {}, this host reads format {SECTION_FORMAT}",
            versions.format
        )));
    }
    check_abi_version(&versions.abi_version)?;
    serde_json::from_slice(bytes).map_err(|error| LoadError::UnreadableSection(one_line(&error)))
}

fn one_line(error: &dyn fmt::Display) -> String {
    error.to_string().replace('\n', " ")
}

/// Opens the library at `path` (the host's private copy of a file whose descriptor section
/// was `section`) and reads its live descriptor, which must say what the section says.
/// The descriptor is not validated here (see `PluginDescriptor::validate`).
pub fn load_plugin_library(
    path: &Path,
    section: &SectionDescriptor,
) -> Result<(PluginLibrary, PluginDescriptor), LoadError> {
    let header = lib_header_from_path(path).map_err(|error| classify(path, "", error))?;
    let library_version = header.version_strings().version.as_str().to_owned();
    check_abi_version(&library_version)?;
    if library_version != section.abi_version {
        return Err(LoadError::SectionMismatch(format!(
            "plugin ABI {library_version}, the section says {}",
            section.abi_version
        )));
    }
    let module = match header.init_root_module::<PluginModule_Ref>() {
        Ok(module) => module,
        Err(LibraryError::AbiInstability(diff)) if built_against_an_older_minor(header) => {
            load_older_minor(path, header, &library_version, diff)?
        }
        Err(error) => return Err(classify(path, &library_version, error)),
    };
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
    let descriptor: PluginDescriptor = serde_json::from_str(&descriptor_json)
        .map_err(|error| LoadError::UnreadableDescriptor(error.to_string()))?;
    if !section.describes_the_same_plugin_as(&descriptor) {
        return Err(LoadError::SectionMismatch(first_difference(
            section,
            &descriptor,
        )));
    }
    Ok((
        PluginLibrary {
            module,
            abi_version: library_version,
        },
        descriptor,
    ))
}

/// The first thing the live descriptor says differently from the section, with both values.
fn first_difference(section: &SectionDescriptor, live: &PluginDescriptor) -> String {
    let (Ok(serde_json::Value::Object(said)), Ok(serde_json::Value::Object(says))) = (
        serde_json::to_value(&section.manifest),
        serde_json::to_value(&live.manifest),
    ) else {
        return "its manifest differs".to_owned();
    };
    if let Some((field, value)) = said
        .iter()
        .find(|(field, value)| says.get(*field) != Some(value))
    {
        let now = says
            .get(field)
            .map_or("nothing".to_owned(), ToString::to_string);
        return format!("manifest {field}: the section says {value}, the library {now}");
    }
    let routes = |routes: &[plugin_api::RouteSpec]| {
        routes
            .iter()
            .map(|r| format!("{} {} ({:?}, {:?})", r.method, r.path, r.access, r.summary))
            .collect::<Vec<_>>()
    };
    let (said, says) = (routes(&section.routes), routes(&live.routes));
    match said.iter().zip(&says).position(|(a, b)| a != b) {
        Some(at) => format!(
            "route {at}: the section says {}, the library {}",
            said[at], says[at]
        ),
        None => format!(
            "the section lists {} routes, the library {}",
            said.len(),
            says.len()
        ),
    }
}

/// Whether this host loads a library of plugin ABI version `library`: the same major, any
/// minor. An older minor is the compatibility promise (prefix types carry what was
/// appended since); a newer one loads too, since a minor only appends methods with default
/// bodies and operations the host answers `NotSupported`.
pub fn check_abi_version(library: &str) -> Result<(), LoadError> {
    let host = VersionNumber::new(PluginModule_Ref::VERSION_STRINGS)
        .expect("the host's own ABI version parses");
    debug_assert_eq!(
        PluginModule_Ref::VERSION_STRINGS.version.as_str(),
        ABI_VERSION
    );
    let advice = match semver::Version::parse(library) {
        Err(_) => VersionAdvice::Unreadable,
        Ok(found) if found.major == u64::from(host.major) => return Ok(()),
        Ok(found) if found.major == 0 => VersionAdvice::RebuildPreSplit,
        Ok(found) if found.major < u64::from(host.major) => VersionAdvice::RebuildOlderMajor,
        Ok(_) => VersionAdvice::UpgradeHost,
    };
    Err(LoadError::IncompatibleAbiVersion {
        library: library.to_owned(),
        advice,
    })
}

/// Whether the library was built against an older minor of this host's ABI major.
fn built_against_an_older_minor(header: &LibHeader) -> bool {
    let host = VersionNumber::new(PluginModule_Ref::VERSION_STRINGS);
    let library = VersionNumber::new(header.version_strings());
    matches!((host, library), (Ok(host), Ok(library))
        if host.major == library.major && library.minor < host.minor)
}

/// Loads a library built against an older minor of the ABI, whose prefix types (the root
/// module, the host services' vtables) are shorter than this host's.
///
/// abi_stable's layout check holds the host to the library's version or older: a prefix
/// type the host knows with more fields than the library's is "too many fields". Here the
/// host is the newer side, so the layouts are compared again and the library is accepted
/// when every difference is exactly that — fields or methods appended to a prefix type, in
/// a minor release. Appended root-module fields are read through `Option` accessors, and
/// appended trait methods have default bodies (docs/abi.md), so the library never sees
/// what it lacks and the host never reads what the library does not have. Any other
/// difference is a mismatch, reported as abi_stable found it.
fn load_older_minor(
    path: &Path,
    header: &LibHeader,
    library_version: &str,
    diff: abi_stable::std_types::RBoxError,
) -> Result<PluginModule_Ref, LoadError> {
    let mismatch = |diff: &dyn fmt::Display| {
        tracing::debug!(file = %path.display(), "ABI layout diff:\n{diff}");
        LoadError::AbiLayoutMismatch {
            library: library_version.to_owned(),
        }
    };
    let Some(layout) = header.layout() else {
        return Err(mismatch(&diff));
    };
    match check_layout_compatibility(<PluginModule_Ref as StableAbi>::LAYOUT, layout) {
        Ok(()) => {}
        Err(errors) if only_appended_to_prefix_types(&errors) => {}
        Err(errors) => return Err(mismatch(&errors)),
    }
    tracing::debug!(
        file = %path.display(),
        "library built against plugin ABI {library_version}: loading it with this host's \
         appended prefix fields absent on its side"
    );
    // abi_stable's last step, merging prefix types into its global map, runs only for a
    // check without errors; it is skipped here, which no accessor relies on (a prefix
    // reference carries its own field count).
    // SAFETY: the layouts were compared above, and differ only in fields appended to
    // prefix types after their last prefix field, which both sides treat as optional.
    unsafe { header.init_root_module_with_unchecked_layout::<PluginModule_Ref>() }
        .map_err(|error| classify(path, library_version, error))
}

/// Whether every layout difference is a prefix type (module or vtable) that has more
/// fields on the host's side than on the library's.
fn only_appended_to_prefix_types(errors: &AbiInstabilityErrors) -> bool {
    // The checker also lists the types it walked through, with no error of their own.
    let mut found = errors
        .errors
        .iter()
        .filter(|error| !error.errs.is_empty())
        .peekable();
    found.peek().is_some()
        && found.all(|error| {
            let compared_is_prefix_type = match error.stack_trace.last() {
                Some(step) => match &step.expected {
                    TLFieldOrFunction::Field(field) => field.layout().is_prefix_kind(),
                    TLFieldOrFunction::Function(_) => false,
                },
                None => false,
            };
            compared_is_prefix_type
                && error.errs.iter().all(|instability| {
                    matches!(instability, AbiInstability::FieldCountMismatch(counts)
                        if counts.expected > counts.found)
                })
        })
}

fn classify(path: &Path, library_version: &str, error: LibraryError) -> LoadError {
    match error {
        LibraryError::OpenError { err, .. } => LoadError::NotALibrary(err.to_string()),
        LibraryError::GetSymbolError { .. } => LoadError::MissingRootModule,
        LibraryError::InvalidAbiHeader(header) => {
            LoadError::IncompatibleAbiStable(format!("{header:?}"))
        }
        // Checked before (`check_abi_version`); abi_stable's own check is a backstop.
        LibraryError::IncompatibleVersionNumber { actual_version, .. } => {
            LoadError::IncompatibleAbiVersion {
                library: actual_version.to_string(),
                advice: VersionAdvice::RebuildOlderMajor,
            }
        }
        LibraryError::AbiInstability(diff) => {
            // The diff can run to hundreds of lines: one line at warn (by the caller), the
            // whole of it here, at debug.
            tracing::debug!(file = %path.display(), "ABI layout diff:\n{diff}");
            LoadError::AbiLayoutMismatch {
                library: library_version.to_owned(),
            }
        }
        LibraryError::Many(errors) => match errors.into_iter().next() {
            Some(first) => classify(path, library_version, first),
            None => LoadError::RootModuleFailed("unknown error".to_owned()),
        },
        other => LoadError::RootModuleFailed(other.to_string()),
    }
}
