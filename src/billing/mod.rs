//! Billing: time and expenses, invoices with exact integer arithmetic, payments, trust
//! accounting, LEDES 1998B export, PDF invoices, online card payments and their webhook.

pub mod adjustments;
pub mod checkout;
pub mod domain;
pub mod entity;
pub mod export;
pub mod invoices;
pub mod ledes;
pub mod money;
pub mod payments;
pub mod pdf;
pub mod reconcile;
pub mod routes;
pub mod summary;
pub mod time;

use sea_orm::{DbBackend, Statement, Value};

use crate::error::Validator;

/// A statement written with `?` placeholders, numbered `$n` for PostgreSQL.
pub(crate) fn stmt(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DbBackend::Postgres => {
            let mut out = String::with_capacity(sql.len() + 8);
            let mut n = 0;
            for c in sql.chars() {
                if c == '?' {
                    n += 1;
                    out.push_str(&format!("${n}"));
                } else {
                    out.push(c);
                }
            }
            out
        }
        _ => sql.to_owned(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// A required one-line-or-more description: trimmed, 1..=max characters, no control
/// characters other than newlines.
pub(crate) fn check_description(
    v: &mut Validator,
    field: &str,
    s: &str,
    max: usize,
) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        v.push(field, "is required");
        None
    } else if t.chars().count() > max || t.chars().any(|c| c.is_control() && c != '\n') {
        v.push(
            field,
            format!("must be at most {max} characters without control characters"),
        );
        None
    } else {
        Some(t.to_string())
    }
}

/// An optional free-text reference (cheque number, wire id).
pub(crate) fn check_reference(v: &mut Validator, s: Option<&str>) -> Option<String> {
    let t = s.map(str::trim).filter(|s| !s.is_empty())?;
    if t.chars().count() > 200 || t.chars().any(char::is_control) {
        v.push(
            "reference",
            "must be at most 200 characters without control characters",
        );
        return None;
    }
    Some(t.to_string())
}

/// Largest amount accepted in one field: far above any real bill, far below `i64` overflow
/// when summed over a few thousand lines.
pub const MAX_AMOUNT_CENTS: i64 = 100_000_000_000;
