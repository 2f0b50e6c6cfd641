//! The PixSim7 host: loads plugin libraries from the plugin directory, orders them by their
//! dependencies, runs their hooks, and serves their routes with actix-web.
//!
//! Code map: `config` (file/env/flags), `db/` (pool, migrations), `game/` (the game state
//! behind host services), `plugins/` (discovery, loading, ordering, hooks,
//! services), `routing` (the radix route table), `forward` (the request path), `admin` and
//! `openapi` (what the host says about itself), `pages` (`/docs`, `/admin`), `startup` (the serving pipeline), `listener` (the socket: bound, or inherited from the
//! supervisor), `report`
//! (`pixsim7 plugins`), `telemetry` (logging), `http_error` (error bodies), `http_server`
//! (the server and its connections), `metrics`, `readiness`, `in_flight`, `watchdog` and
//! `plugin_health` (what an operator watches), `login_throttle` and `client_address` (failed
//! sign-ins per username and client address).
//!
//! Invariant: only this crate knows actix and sqlx; plugins see only `plugin-api` types.

pub mod admin;
pub mod auth;
pub mod client_address;
pub mod config;
pub mod cors;
pub mod db;
pub mod events;
pub mod forward;
pub mod game;
pub mod http_error;
pub mod http_server;
pub mod in_flight;
pub mod listener;
pub mod login_throttle;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod plugin_health;
pub mod plugins;
pub mod readiness;
pub mod report;
pub mod request_context;
pub mod routing;
pub mod startup;
pub mod sync;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod watchdog;
