//! People: accounts, roles, profiles, invitations and self-registration.

pub mod domain;
pub mod entity;
pub mod routes;
pub mod service;
