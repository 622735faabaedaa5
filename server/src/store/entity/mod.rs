//! sea-orm entities, one module per table, mirroring the migrations in `veldwerk-migrations`.
//!
//! Relations are left out on purpose: the store writes its joins as explicit `IN` queries, which
//! read the same on SQLite and PostgreSQL and keep each query's cost visible.

pub mod announcement;
pub mod announcement_recipient;
pub mod cohort;
pub mod cohort_assignment;
pub mod cohort_day;
pub mod cohort_member;
pub mod console_session;
pub mod delivery;
pub mod device;
pub mod device_link_code;
pub mod invite;
pub mod notification;
pub mod organisation;
pub mod programme;
pub mod programme_assignment;
pub mod programme_day;
pub mod provider;
pub mod push_device;
pub mod refresh_token;
pub mod user;
