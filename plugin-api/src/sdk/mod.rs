//! The author-facing SDK: implement [`Plugin`], declare routes, write `async fn` handlers
//! that take a [`Request`] and return JSON or an [`ApiError`], then `export_plugin!`.
//!
//! Guide: `plugin.rs` is what authors implement, with `declaration.rs` (the constant manifest
//! and route table, which `section.rs` writes into the library file); `request.rs`/`response.rs`/`error.rs` are
//! what handlers use (`validation.rs` checks their input as FastAPI does); `export.rs` is the generated glue (with `panic.rs` and `logging.rs`),
//! and `testing.rs` runs a plugin in-process for unit tests. Nothing in the SDK does I/O:
//! plugins reach the outside world only through host services.

pub mod declaration;
pub mod error;
pub mod export;
pub mod host;
mod logging;
pub mod panic;
pub mod plugin;
pub mod request;
pub mod response;
pub mod section;
pub mod testing;
pub mod validation;
