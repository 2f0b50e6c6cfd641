//! The PixSim7 plugin API: the ABI contract between the host and plugin libraries
//! ([`abi`]), the manifest and route table a plugin declares, and the SDK plugin authors
//! write against.
//!
//! A complete plugin:
//!
//! ```no_run
//! use plugin_api::prelude::*;
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn manifest() -> Manifest {
//!         Manifest::new("hello", "Hello", env!("CARGO_PKG_VERSION"))
//!     }
//!     fn routes(routes: &mut Routes<Self>) {
//!         routes.get("/hello/{name}", "Greets someone", greet);
//!     }
//!     async fn on_load(_: LoadContext) -> Result<Self, PluginError> {
//!         Ok(Hello)
//!     }
//! }
//!
//! async fn greet(_: &Hello, request: Request) -> Result<Json<String>, ApiError> {
//!     Ok(Json(format!("hello, {}", request.param("name")?)))
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! This crate's version is the ABI version: the host refuses libraries built against an
//! incompatible one (for 0.x, another minor version).

pub mod abi;
pub mod db;
pub mod events;
pub mod game;
pub mod manifest;
pub mod permissions;
pub mod route;
pub mod sdk;

pub use log;
pub use manifest::{Dependency, EventDelivery, Manifest, ManifestErrors};
pub use route::{Access, Method, Migration, PluginDescriptor, RouteSpec};
pub use sdk::{
    error::{ApiError, PluginError},
    host::{Host, ServiceError},
    plugin::{Event, Handler, LoadContext, Plugin, Routes},
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
        Manifest, Map, Method, Migration, Plugin, PluginError, Request, Response, Routes,
        ServiceError, Value,
    };
    pub use schemars::JsonSchema;
    pub use serde::{Deserialize, Serialize};
}

/// Items `export_plugin!` expands to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::sdk::export::root_module;
    pub use abi_stable::library::{
        __call_root_module_loader, CheckTypeLayout, LibHeader, RootModuleResult,
    };
}
