//! Veldwerk: the backend of the *leertraject Urban Professional* app.
//!
//! Layers, with imports pointing one way: [`api`] (HTTP, poem-openapi) calls [`service`] (use
//! cases and authorisation, no HTTP types), which calls [`store`] (sea-orm queries on SQLite or
//! PostgreSQL). [`startup`] wires them into a server that `main` and the tests run.

pub mod api;
pub mod config;
pub mod console;
pub mod http_server;
pub mod jobs;
pub mod metrics;
pub mod push;
pub mod service;
pub mod startup;
pub mod store;
pub mod telemetry;

pub use config::Config;
pub use startup::Application;
