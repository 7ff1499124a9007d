//! Appointments: attorneys' weekly availability and busy blocks, free slots, booking without
//! double booking, iCalendar export and feeds, and reminders.

pub mod calendar;
pub mod domain;
pub mod entity;
pub mod reminders;
pub mod routes;
pub mod service;
