//! Cases (matters): numbering, members, status and phase, timeline, deadlines, parties,
//! conflict checks, dashboards. `access` is how every capability decides who sees a case.

pub mod access;
pub mod conflicts;
pub mod dashboard;
pub mod domain;
pub mod entity;
pub mod members;
pub mod routes;
pub mod search_index;
pub mod service;
