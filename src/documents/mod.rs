//! Documents on cases: streamed, type-checked, encrypted uploads with versions, confidentiality
//! (`shared | internal | privileged`), legal holds, soft delete with retention, search and
//! statistics. Bytes live in `crate::storage`; rows and rules live here.

pub mod content;
pub mod domain;
pub mod entity;
pub mod jobs;
pub mod keys;
pub mod routes;
pub mod service;
pub mod upload;
