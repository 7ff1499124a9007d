//! Integration tests: the real application on a real port with a fresh database per test.
//! `LFP_TEST_DB=sqlite|postgres` picks the backend (the test command runs both).

mod abuse;
mod appointments;
mod audit;
mod auth;
mod authz;
mod backup;
mod billing;
mod billing_adjustments;
mod billing_visibility;
mod browser;
mod cases;
mod cli;
mod documents;
mod faults;
mod health;
mod helpers;
mod live;
mod mail;
mod messages;
mod perf;
mod props;
mod s3;
mod users;
mod web;
mod web_client;
mod web_staff;
