//! Each member's documents in id (creation) order: `member_document`, one row per document and
//! member of its case, keyed `(user_id, document_id)`.
//!
//! Staff's firm-wide document list and search (`/documents/search`, the web documents page)
//! walked the whole firm's documents newest first and kept those of the caller's cases: an
//! attorney on 2 % of the cases (scale 100) read 50 documents per one shown, 1,050 for a page
//! of 21 against 42 on the small firm, where the same attorney is on half the cases. The walk
//! is now the caller's own key range, so its length depends on how many of *their* documents
//! match, not on the size of the firm (docs/benchmarks.md, round 19).
//!
//! A driver only: which documents the caller may see (membership role against
//! confidentiality, not deleted) is still decided per row by the document query, so a stale
//! row can cost a probe but never show anything. Every member is mirrored, clients too (the
//! firm role, not the membership role, decides who reads it).
//!
//! Kept by triggers, in the statement that changes what it mirrors: a document filed or moved
//! to another case, a member added, moved or removed. A deleted document takes its rows with
//! it (foreign key, `ON DELETE CASCADE`), also when its case is deleted.

use super::{exec_all, exec_per_backend};
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// SQLite: the key is the table (`WITHOUT ROWID`), so the walk reads one b-tree.
const SQLITE_TABLE: &str = "CREATE TABLE member_document (
       user_id uuid_text NOT NULL,
       document_id uuid_text NOT NULL,
       CONSTRAINT pk_member_document PRIMARY KEY (user_id, document_id),
       CONSTRAINT fk_member_document_document FOREIGN KEY (document_id)
         REFERENCES document (id) ON DELETE CASCADE
     ) WITHOUT ROWID";

const POSTGRES_TABLE: &str = "CREATE TABLE member_document (
       user_id uuid NOT NULL,
       document_id uuid NOT NULL,
       CONSTRAINT pk_member_document PRIMARY KEY (user_id, document_id),
       CONSTRAINT fk_member_document_document FOREIGN KEY (document_id)
         REFERENCES document (id) ON DELETE CASCADE
     )";

/// The rows there should be: documents × members of their case.
const BACKFILL: &str = "INSERT INTO member_document (user_id, document_id)
     SELECT m.user_id, d.id FROM document d JOIN case_member m ON m.case_id = d.case_id";

const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER member_document_document_ai AFTER INSERT ON document BEGIN
       INSERT OR IGNORE INTO member_document (user_id, document_id)
       SELECT m.user_id, NEW.id FROM case_member m WHERE m.case_id = NEW.case_id;
     END",
    "CREATE TRIGGER member_document_document_au AFTER UPDATE OF case_id ON document
       WHEN OLD.case_id IS NOT NEW.case_id BEGIN
       DELETE FROM member_document WHERE document_id = OLD.id;
       INSERT OR IGNORE INTO member_document (user_id, document_id)
       SELECT m.user_id, NEW.id FROM case_member m WHERE m.case_id = NEW.case_id;
     END",
    "CREATE TRIGGER member_document_member_ai AFTER INSERT ON case_member BEGIN
       INSERT OR IGNORE INTO member_document (user_id, document_id)
       SELECT NEW.user_id, d.id FROM document d WHERE d.case_id = NEW.case_id;
     END",
    "CREATE TRIGGER member_document_member_ad AFTER DELETE ON case_member BEGIN
       DELETE FROM member_document WHERE user_id = OLD.user_id
          AND document_id IN (SELECT d.id FROM document d WHERE d.case_id = OLD.case_id);
     END",
    "CREATE TRIGGER member_document_member_au AFTER UPDATE OF case_id, user_id ON case_member
       WHEN OLD.case_id IS NOT NEW.case_id OR OLD.user_id IS NOT NEW.user_id BEGIN
       DELETE FROM member_document WHERE user_id = OLD.user_id
          AND document_id IN (SELECT d.id FROM document d WHERE d.case_id = OLD.case_id);
       INSERT OR IGNORE INTO member_document (user_id, document_id)
       SELECT NEW.user_id, d.id FROM document d WHERE d.case_id = NEW.case_id;
     END",
];

const POSTGRES_TRIGGERS: &[&str] = &[
    // PostgreSQL: a document and a membership of the same case written at once must not each
    // miss the other's uncommitted row (the new member would lack the new document), so both
    // lock the case row first (held to commit; SQLite has one writer).
    "CREATE FUNCTION member_document_of_document() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       IF TG_OP = 'UPDATE' THEN
         PERFORM 1 FROM legal_case WHERE id = OLD.case_id FOR NO KEY UPDATE;
         DELETE FROM member_document WHERE document_id = OLD.id;
       END IF;
       INSERT INTO member_document (user_id, document_id)
       SELECT m.user_id, NEW.id FROM case_member m WHERE m.case_id = NEW.case_id
       ON CONFLICT DO NOTHING;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER member_document_document_ai AFTER INSERT ON document
       FOR EACH ROW EXECUTE FUNCTION member_document_of_document()",
    "CREATE TRIGGER member_document_document_au AFTER UPDATE OF case_id ON document
       FOR EACH ROW WHEN (OLD.case_id IS DISTINCT FROM NEW.case_id)
       EXECUTE FUNCTION member_document_of_document()",
    "CREATE FUNCTION member_document_of_member() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'DELETE' THEN
         PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       END IF;
       IF TG_OP <> 'INSERT' THEN
         PERFORM 1 FROM legal_case WHERE id = OLD.case_id FOR NO KEY UPDATE;
         DELETE FROM member_document WHERE user_id = OLD.user_id
            AND document_id IN (SELECT d.id FROM document d WHERE d.case_id = OLD.case_id);
       END IF;
       IF TG_OP <> 'DELETE' THEN
         INSERT INTO member_document (user_id, document_id)
         SELECT NEW.user_id, d.id FROM document d WHERE d.case_id = NEW.case_id
         ON CONFLICT DO NOTHING;
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER member_document_member_aid AFTER INSERT OR DELETE ON case_member
       FOR EACH ROW EXECUTE FUNCTION member_document_of_member()",
    "CREATE TRIGGER member_document_member_au AFTER UPDATE OF case_id, user_id ON case_member
       FOR EACH ROW WHEN (OLD.case_id IS DISTINCT FROM NEW.case_id
                          OR OLD.user_id IS DISTINCT FROM NEW.user_id)
       EXECUTE FUNCTION member_document_of_member()",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER member_document_member_au",
    "DROP TRIGGER member_document_member_ad",
    "DROP TRIGGER member_document_member_ai",
    "DROP TRIGGER member_document_document_au",
    "DROP TRIGGER member_document_document_ai",
    "DROP TABLE member_document",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER member_document_member_au ON case_member",
    "DROP TRIGGER member_document_member_aid ON case_member",
    "DROP FUNCTION member_document_of_member()",
    "DROP TRIGGER member_document_document_au ON document",
    "DROP TRIGGER member_document_document_ai ON document",
    "DROP FUNCTION member_document_of_document()",
    "DROP TABLE member_document",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction: the backfill and the triggers land together, so no write between them
    /// goes unmirrored.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, &[SQLITE_TABLE], &[POSTGRES_TABLE]).await?;
        exec_all(
            m,
            &[
                // What a deleted document's cascade deletes by.
                "CREATE INDEX ix_member_document_document ON member_document (document_id)",
                BACKFILL,
            ],
        )
        .await?;
        exec_per_backend(m, SQLITE_TRIGGERS, POSTGRES_TRIGGERS).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, SQLITE_DOWN, POSTGRES_DOWN).await
    }
}
