//! The PixSim7 host: loads plugin libraries from the plugin directory, orders them by their
//! dependencies, runs their hooks, and serves their routes with actix-web.
//!
//! Code map: `config` (file/env/flags), `db/` (pool, migrations), `game/` (the game state
//! behind host services), `plugins/` (discovery, loading, ordering, hooks,
//! services), `routing` (the radix route table), `forward` (the request path), `admin` and
//! `openapi` (what the host says about itself), `startup` (the serving pipeline), `listener` (the
//! socket: bound, or inherited from the supervisor), `report`
//! (`pixsim7 plugins`), `telemetry` (logging), `http_error` (error bodies).
//!
//! Invariant: only this crate knows actix and sqlx; plugins see only `plugin-api` types.

pub mod admin;
pub mod auth;
pub mod config;
pub mod cors;
pub mod db;
pub mod events;
pub mod forward;
pub mod game;
pub mod http_error;
pub mod listener;
pub mod openapi;
pub mod plugins;
pub mod report;
pub mod request_context;
pub mod routing;
pub mod startup;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
