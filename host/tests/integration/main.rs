//! Integration tests: the real `pixsim7` binary over real plugin libraries built from the
//! workspace (`cargo xtask test` builds them first). One test binary, one module per area.

mod abi_compat;
mod auth_and_ownership;
mod databases;
mod event_outbox;
mod harness;

mod cli_plugins;
mod events_and_permissions;
mod game_flow;
mod http_forwarding;
mod library_image;
mod lifecycle_hooks;
mod loader_trust;
mod login_throttling;
mod metrics_and_readiness;
mod migrations_cli;
mod openapi_contract;
mod pages_in_browser;
mod plugin_data;
mod plugin_loading;
mod scaffold;
mod socket_handover;
mod startup_failures;
mod timeouts_and_watchdog;
mod unit_of_work;
