//! Everything about plugin libraries: finding them (`discovery`), opening them (`library`),
//! ordering them (`resolve`), recording what happened to each (`registry`), running their
//! hooks (`lifecycle`) and the services they may call (`services`).
//!
//! Invariant: nothing here lets a plugin's failure escape as a host failure; each one ends
//! as a state and a reason on that plugin's record (and one log line).

pub mod discovery;
pub mod library;
pub mod lifecycle;
pub mod registry;
pub mod resolve;
pub mod services;

pub use registry::{PluginRecord, PluginRegistry, PluginState};
