//! Integration tests of the HTTP API. One binary (faster to link), one module per area. Each
//! scenario runs on SQLite and on PostgreSQL (see `veldwerk_tests::db_test!`).

mod accounts;
mod announcements;
mod attachments;
mod cohorts;
mod connections;
mod console;
mod database;
mod errors;
mod fixtures;
mod hardening;
mod health;
mod invites;
mod isolation;
mod loadgen;
mod openapi;
mod privacy;
mod progress;
mod protocol_doc;
mod push;
mod replicas;
mod rxdb;
mod stored_json;
mod sync;
mod sync_edges;
mod sync_faults;
mod sync_model;
mod texts;
mod tus;
mod typescript_client;
mod upload_faults;
mod watermelon;
