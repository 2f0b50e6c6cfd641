//! Everything about plugin libraries: finding them (`discovery`), judging the files before
//! anything opens them (`trust` for permissions, `image` for the format, `lock` for pins),
//! opening private copies of them (`private_copy`, `library`), ordering them (`resolve`),
//! recording what happened to each (`registry`), running their hooks (`lifecycle`) and the
//! services they may call (`services`).
//!
//! Invariants: nothing here lets a plugin's failure escape as a host failure; each one ends
//! as a state and a reason on that plugin's record (and one log line). No code of a library
//! runs before it passed every check and will load, and the host only ever opens its own
//! private copy of a library, never the file in the plugin directory.

pub mod discovery;
pub mod file_index;
pub mod image;
pub mod library;
pub mod lifecycle;
pub mod lock;
pub mod private_copy;
pub mod registry;
pub mod resolve;
pub mod services;
pub mod trust;

pub use registry::{PluginRecord, PluginRegistry, PluginState};
