//! SQLite: the full text of each case once per member, keyed by member and tagged with the
//! member's token (`crate::cases::search_index`), so a member's case search reads the matches
//! among their own cases instead of probing the firm's index case by case. Four triggers keep
//! it: a membership added, removed (also by the cascade of a deleted case) or moved, and a
//! case's number, title or description changed. The table deletes and replaces by rowid
//! (`contentless_delete`, SQLite 3.43 or later; the server bundles its own SQLite).
//! PostgreSQL: nothing to do.

use super::exec_per_backend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The key of a membership row `m` (`NEW` or `OLD`) in `case_member_fts`. Rows are written
/// with `INSERT OR REPLACE`: a key left behind by renumbered rowids is overwritten, not
/// merged with.
macro_rules! key {
    ($m:literal) => {
        concat!(
            "((SELECT rowid FROM app_user WHERE id = ",
            $m,
            ".user_id) << 32) | ",
            $m,
            ".rowid"
        )
    };
}

/// The row of the new membership `NEW`, with its case's text and its member's token.
macro_rules! insert_new {
    () => {
        concat!(
            "INSERT OR REPLACE INTO case_member_fts(rowid, number, title, description, member)
               SELECT ",
            key!("NEW"),
            ", c.number, c.title, c.description, 'u' || lower(hex(NEW.user_id))
               FROM legal_case c WHERE c.id = NEW.case_id;"
        )
    };
}

const UP: &[&str] = &[
    "CREATE VIRTUAL TABLE case_member_fts USING fts5(number, title, description, member,
       content='', contentless_delete=1, tokenize='unicode61 remove_diacritics 2')",
    "INSERT INTO case_member_fts(rowid, number, title, description, member)
       SELECT (u.rowid << 32) | m.rowid, c.number, c.title, c.description,
              'u' || lower(hex(m.user_id))
         FROM case_member m JOIN legal_case c ON c.id = m.case_id
         JOIN app_user u ON u.id = m.user_id",
    "INSERT INTO case_member_fts(case_member_fts) VALUES ('optimize')",
    concat!(
        "CREATE TRIGGER case_member_search_ai AFTER INSERT ON case_member BEGIN ",
        insert_new!(),
        " END"
    ),
    concat!(
        "CREATE TRIGGER case_member_search_ad AFTER DELETE ON case_member BEGIN
           DELETE FROM case_member_fts WHERE rowid = ",
        key!("OLD"),
        ";
         END"
    ),
    concat!(
        "CREATE TRIGGER case_member_search_au AFTER UPDATE OF case_id, user_id ON case_member
         WHEN OLD.case_id IS NOT NEW.case_id OR OLD.user_id IS NOT NEW.user_id BEGIN
           DELETE FROM case_member_fts WHERE rowid = ",
        key!("OLD"),
        ";
           ",
        insert_new!(),
        " END"
    ),
    "CREATE TRIGGER legal_case_member_search_au
       AFTER UPDATE OF number, title, description ON legal_case
       WHEN OLD.number IS NOT NEW.number OR OLD.title IS NOT NEW.title
         OR OLD.description IS NOT NEW.description BEGIN
       INSERT OR REPLACE INTO case_member_fts(rowid, number, title, description, member)
         SELECT ((SELECT rowid FROM app_user u WHERE u.id = m.user_id) << 32) | m.rowid,
                NEW.number, NEW.title, NEW.description, 'u' || lower(hex(m.user_id))
           FROM case_member m WHERE m.case_id = NEW.id;
     END",
];

const DOWN: &[&str] = &[
    "DROP TRIGGER legal_case_member_search_au",
    "DROP TRIGGER case_member_search_au",
    "DROP TRIGGER case_member_search_ad",
    "DROP TRIGGER case_member_search_ai",
    "DROP TABLE case_member_fts",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, UP, &[]).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, DOWN, &[]).await
    }
}
