//! The PixSim7 plugin SDK: what a plugin author writes against — the [`Plugin`] trait, the
//! route table, requests and responses, the host services, and the game's data model. The
//! binary interface underneath is the separate, stable `plugin-abi` crate ([`abi`]).
//!
//! A complete plugin:
//!
//! ```no_run
//! use plugin_api::prelude::*;
//!
//! #[derive(Default)]
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     const MANIFEST: PluginManifest = PluginManifest::new("hello", "Hello", "1.0.0");
//!     const ROUTES: &'static [Route<Self>] =
//!         &[Route::get("/hello/{name}", "Greets someone", greet).public()];
//! }
//!
//! async fn greet(_: &Hello, request: Request<'_>) -> Result<Json<String>, ApiError> {
//!     Ok(Json(format!("hello, {}", request.param("name")?)))
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! This crate may grow freely (new host operations, new optional fields in the game model):
//! a library built against it depends only on the ABI version of its `plugin-abi`, which the
//! host checks when it loads the library (docs/abi.md).

pub mod db;
pub mod events;
pub mod game;
pub mod manifest;
pub mod permissions;
pub mod route;
pub mod sdk;

/// The binary interface (the `plugin-abi` crate), which has its own version: see
/// docs/abi.md.
pub use plugin_abi as abi;

pub use log;
pub use manifest::{Dependency, EventDelivery, Manifest, ManifestErrors};
pub use route::{Access, Method, Migration, PluginDescriptor, RouteSpec, SectionDescriptor};
pub use sdk::{
    declaration::{PluginManifest, Route},
    error::{ApiError, PluginError},
    host::{Host, ServiceError},
    plugin::{Event, Handler, LoadContext, Plugin},
    request::{Caller, Request},
    response::{IntoResponse, Json, Response},
    testing::descriptor_of,
};
pub use serde_json;
pub use serde_json::{json, Map, Value};

/// Everything a plugin crate usually needs: `use plugin_api::prelude::*;`.
pub mod prelude {
    pub use crate::{
        db::{Rows, SqlValue},
        export_plugin, json, log, params, ApiError, Event, Host, IntoResponse, Json, LoadContext,
        Map, Method, Migration, Plugin, PluginError, PluginManifest, Request, Response, Route,
        ServiceError, Value,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Items `export_plugin!` expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::sdk::export::{
        root_module, DefaultProbe, ExportedPlugin, ViaDefault, ViaNothing,
    };
    pub use crate::sdk::section::{descriptor_section, descriptor_section_len};
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}
