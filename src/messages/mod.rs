//! Secure messaging between the people on a case: explicit recipients, per-person read state
//! and hiding, threads, full-text search, live events, mail notices and statistics.
//! `service` owns sending and changing state; `query` owns lists, search, counts and stats.

pub mod entity;
pub mod query;
pub mod routes;
pub mod search_index;
pub mod service;
