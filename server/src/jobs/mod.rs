//! Background jobs. Each is a loop around a public `run_once`, which tests call directly
//! instead of waiting for the loop.

pub mod attachments;
pub mod push;
pub mod retention;
pub mod tombstones;
