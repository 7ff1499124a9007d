//! SQLite: the full-text triggers re-index a case or a document only when an indexed column
//! is written. Before, every update did (a status change, a touched `updated_at`), and each
//! such write left one more small b-tree in the index that every probed row then searched
//! (docs/benchmarks.md, round 16). PostgreSQL's generated `tsvector` columns need nothing.

use super::exec_per_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The indexes: table, full-text table, indexed columns.
const INDEXES: [(&str, &str, &str); 2] = [
    ("legal_case", "legal_case_fts", "number, title, description"),
    ("document", "document_fts", "title, filename, search_text"),
];

/// Statements that replace each update trigger: firing on writes of the indexed columns only
/// (`narrow`), or on every update (as created before).
fn replace_triggers(narrow: bool) -> Vec<String> {
    let mut out = Vec::new();
    for (table, fts, cols) in INDEXES {
        let of = if narrow {
            format!("OF {cols} ")
        } else {
            String::new()
        };
        let old: Vec<String> = cols.split(", ").map(|c| format!("old.{c}")).collect();
        let new: Vec<String> = cols.split(", ").map(|c| format!("new.{c}")).collect();
        out.push(format!("DROP TRIGGER IF EXISTS {fts}_au"));
        out.push(format!(
            "CREATE TRIGGER {fts}_au AFTER UPDATE {of}ON {table} BEGIN
               INSERT INTO {fts}({fts}, rowid, {cols}) VALUES ('delete', old.rowid, {});
               INSERT INTO {fts}(rowid, {cols}) VALUES (new.rowid, {});
             END",
            old.join(", "),
            new.join(", ")
        ));
    }
    out
}

async fn run(m: &SchemaManager<'_>, narrow: bool) -> Result<(), DbErr> {
    let sql = replace_triggers(narrow);
    let sql: Vec<&str> = sql.iter().map(String::as_str).collect();
    exec_per_backend(m, &sql, &[]).await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction, so every statement runs on one connection (see
    /// `m20261202_000010_message_search_audience`) and no write ever finds a trigger missing.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, true).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, false).await
    }
}
