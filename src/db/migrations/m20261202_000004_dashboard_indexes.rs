//! Indexes for the staff dashboard at scale, whose sums and lists are driven by the caller's
//! membership rows (one index range per case, so the cost follows the caller's own cases,
//! not the firm's size):
//! - `ix_document_live_case`: live documents of a case by confidentiality, newest id last
//!   (the dashboard's recent documents, joined to the membership row that decides the level);
//! - `ix_document_deleted` is replaced by the partial `ix_document_deleted_at` (`WHERE
//!   deleted_at IS NOT NULL`, a new name: on SQLite a pooled connection may still hold the old
//!   schema and refuse to re-create a name just dropped on another one): the retention
//!   sweep only asks for deleted documents, and the full index on a column that is NULL for
//!   almost every row made SQLite (no statistics) answer `deleted_at IS NULL` by walking
//!   every live document of the firm through it;
//! - `ix_time_entry_unbilled_sum`: unbilled billable minutes of a case from the index alone
//!   (partial: small enough that PostgreSQL probes it per case instead of scanning every time
//!   entry of the firm; queries must say `invoice_id IS NULL AND billable` literally).
//!
//! The partial indexes repeat the columns of their condition (`deleted_at`, `invoice_id`,
//! `billable`): SQLite counts an index as covering only when it holds every column the query
//! names, and equal equality columns make it prefer this index over `ix_time_entry_unbilled`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction on every backend, so every statement runs on one connection: SQLite
    /// checks a DDL name against the connection's cached schema, and a pooled connection that
    /// had not yet seen a `DROP` refused the `CREATE` of the same name ("already exists",
    /// intermittently in CI). The migration and its record also land together or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        // The same SQL on both backends.
        for sql in [
            "CREATE INDEX ix_document_live_case ON document
               (case_id, confidentiality, id, deleted_at) WHERE deleted_at IS NULL",
            "DROP INDEX ix_document_deleted",
            "CREATE INDEX ix_document_deleted_at ON document (deleted_at)
               WHERE deleted_at IS NOT NULL",
            "CREATE INDEX ix_time_entry_unbilled_sum ON time_entry
               (case_id, invoice_id, billable, minutes) WHERE invoice_id IS NULL AND billable",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let conn = m.get_connection();
        for sql in [
            "DROP INDEX ix_time_entry_unbilled_sum",
            "DROP INDEX ix_document_deleted_at",
            "CREATE INDEX ix_document_deleted ON document (deleted_at)",
            "DROP INDEX ix_document_live_case",
        ] {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
