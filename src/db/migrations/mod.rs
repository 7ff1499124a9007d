//! Schema migrations, shared by SQLite and PostgreSQL. One migration per file; never edit
//! a migration that has shipped — add a new one.

use sea_orm_migration::prelude::*;

mod m20261125_000001_identity;
mod m20261125_000002_cases;
mod m20261125_000003_realtime;
mod m20261125_000004_mail_outbox;
mod m20261125_000005_documents;
mod m20261125_000006_messages;
mod m20261125_000007_appointments;
mod m20261125_000008_billing;
mod m20261202_000001_billing_adjustments;
mod m20261202_000002_inbox_keyset;
mod m20261202_000003_deadline_completion;
mod m20261202_000004_dashboard_indexes;
mod m20261202_000010_message_search_audience;
mod m20261203_000001_message_audience;
mod m20261203_000002_member_case_order;
mod m20261204_000001_member_counters;
mod m20261204_000002_member_deadlines;
mod m20261204_000003_member_last_document;
mod m20261205_000001_message_fts_rowid;
mod m20261206_000001_audit_chain_trigger;
mod m20261207_000001_audit_spool;
mod m20261208_000001_fts_update_triggers;
mod m20261209_000001_member_documents;
mod m20261210_000001_member_case_filters;
mod m20261210_000002_member_case_search;
mod m20261211_000001_upload_claim;

pub struct Migrator;

/// Run each statement in turn, on the migration's connection (its transaction, when it has
/// one).
async fn exec_all(m: &SchemaManager<'_>, sql: &[&str]) -> Result<(), DbErr> {
    let conn = m.get_connection();
    for s in sql {
        conn.execute_unprepared(s).await?;
    }
    Ok(())
}

/// [`exec_all`] of the statements written for the connection's backend.
async fn exec_per_backend(
    m: &SchemaManager<'_>,
    sqlite: &[&str],
    postgres: &[&str],
) -> Result<(), DbErr> {
    match m.get_database_backend() {
        sea_orm::DbBackend::Postgres => exec_all(m, postgres).await,
        _ => exec_all(m, sqlite).await,
    }
}

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity::Migration),
            Box::new(m20261125_000002_cases::Migration),
            Box::new(m20261125_000003_realtime::Migration),
            Box::new(m20261125_000004_mail_outbox::Migration),
            Box::new(m20261125_000006_messages::Migration),
            Box::new(m20261125_000007_appointments::Migration),
            Box::new(m20261125_000008_billing::Migration),
            Box::new(m20261125_000005_documents::Migration),
            Box::new(m20261202_000001_billing_adjustments::Migration),
            Box::new(m20261202_000002_inbox_keyset::Migration),
            Box::new(m20261202_000003_deadline_completion::Migration),
            Box::new(m20261202_000004_dashboard_indexes::Migration),
            Box::new(m20261202_000010_message_search_audience::Migration),
            Box::new(m20261203_000001_message_audience::Migration),
            Box::new(m20261203_000002_member_case_order::Migration),
            Box::new(m20261204_000001_member_counters::Migration),
            Box::new(m20261204_000002_member_deadlines::Migration),
            Box::new(m20261204_000003_member_last_document::Migration),
            Box::new(m20261205_000001_message_fts_rowid::Migration),
            Box::new(m20261206_000001_audit_chain_trigger::Migration),
            Box::new(m20261207_000001_audit_spool::Migration),
            Box::new(m20261208_000001_fts_update_triggers::Migration),
            Box::new(m20261209_000001_member_documents::Migration),
            Box::new(m20261210_000001_member_case_filters::Migration),
            Box::new(m20261210_000002_member_case_search::Migration),
            Box::new(m20261211_000001_upload_claim::Migration),
        ]
    }
}
