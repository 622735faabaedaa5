//! # The Veldwerk sync protocol, version 1
//!
//! Participants record interviews, feedback exercises, assignment work, their harvest and their
//! profile on phones that are often offline. Each device keeps a local copy of what it may see
//! and an *outbox* of mutations; when a connection is there it **pushes** the outbox and
//! **pulls** what changed since its cursor. This crate is the protocol's specification and its
//! pure parts: the wire types ([`wire`]), the hybrid logical clock ([`hlc`]), the field-level
//! merge ([`merge`]), the collections and their validation ([`schema`]), cursors
//! ([`cursor`]) and the translations to RxDB's replication contract ([`rxdb`]) and to
//! WatermelonDB's sync contract ([`watermelon`]). It does no I/O.
//! `PROTOCOL.md` beside this crate explains the flow for app developers, with examples the
//! server's tests check.
//!
//! ## Guarantees
//! - **Nothing is lost or duplicated.** Every mutation has a client-chosen id; the server applies
//!   it at most once and answers a replay with the first result. A push is one transaction: after
//!   a crash either all of it was applied or none of it.
//! - **Edits merge predictably.** Each field keeps the value with the latest [`hlc::Hlc`]; ties
//!   cannot happen between different writes because the clock ends in the device id. The server
//!   bounds clocks to its own time plus a small skew, so a phone with a wrong date cannot win
//!   every future conflict. A value that loses to a concurrent edit is kept in the record's
//!   `conflicts` for its owner.
//! - **Every device converges.** Merge is commutative, associative and idempotent, and pulls
//!   return every change in the caller's scope exactly in server version order, so devices that
//!   pulled to the same cursor hold the same records.

pub mod cursor;
pub mod hlc;
pub mod merge;
pub mod rxdb;
pub mod schema;
pub mod watermelon;
pub mod wire;

pub use hlc::{Clock, Hlc};
pub use wire::*;
