//! Documents: versions (each with its object key and wrapped data key), uploads in flight,
//! case-wide legal holds, and full-text search over title, file name and text content.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Document {
    Table,
    Id,
    CaseId,
    Title,
    Filename,
    ContentType,
    Size,
    Sha256,
    Version,
    Confidentiality,
    UploadedBy,
    LegalHold,
    SearchText,
    DeletedAt,
    DeletedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum DocumentVersion {
    Table,
    Id,
    DocumentId,
    Version,
    ObjectKey,
    Filename,
    ContentType,
    Size,
    Sha256,
    WrappedKey,
    NoncePrefix,
    UploadedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DocumentUpload {
    Table,
    ObjectKey,
    StartedAt,
}

#[derive(DeriveIden)]
enum DocumentCaseHold {
    Table,
    CaseId,
    SetBy,
    SetAt,
}

#[derive(DeriveIden)]
enum LegalCase {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum AppUser {
    Table,
    Id,
}

fn idx(name: &str, table: impl IntoIden + 'static, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(table);
    for c in cols {
        i.col(Alias::new(*c));
    }
    i.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Document::Table)
                .col(pk_uuid(Document::Id))
                .col(uuid(Document::CaseId))
                .col(string_len(Document::Title, 300))
                .col(string_len(Document::Filename, 255))
                .col(string_len(Document::ContentType, 100))
                .col(big_integer(Document::Size))
                .col(string_len(Document::Sha256, 64))
                .col(integer(Document::Version))
                .col(string_len(Document::Confidentiality, 16))
                .col(uuid(Document::UploadedBy))
                .col(boolean(Document::LegalHold))
                .col(text(Document::SearchText))
                .col(timestamp_with_time_zone_null(Document::DeletedAt))
                .col(uuid_null(Document::DeletedBy))
                .col(timestamp_with_time_zone(Document::CreatedAt))
                .col(timestamp_with_time_zone(Document::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_document_case")
                        .from(Document::Table, Document::CaseId)
                        .to(LegalCase::Table, LegalCase::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_document_uploaded_by")
                        .from(Document::Table, Document::UploadedBy)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_document_case", &["case_id", "id"][..]),
            (
                "ix_document_case_type",
                &["case_id", "content_type", "id"][..],
            ),
            (
                "ix_document_case_conf",
                &["case_id", "confidentiality", "id"][..],
            ),
            ("ix_document_deleted", &["deleted_at"][..]),
            ("ix_document_uploaded_by", &["uploaded_by"][..]),
            ("ix_document_created", &["created_at", "id"][..]),
        ] {
            m.create_index(idx(name, Document::Table, cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(DocumentVersion::Table)
                .col(pk_uuid(DocumentVersion::Id))
                .col(uuid(DocumentVersion::DocumentId))
                .col(integer(DocumentVersion::Version))
                .col(string_len(DocumentVersion::ObjectKey, 100))
                .col(string_len(DocumentVersion::Filename, 255))
                .col(string_len(DocumentVersion::ContentType, 100))
                .col(big_integer(DocumentVersion::Size))
                .col(string_len(DocumentVersion::Sha256, 64))
                .col(blob(DocumentVersion::WrappedKey))
                .col(blob(DocumentVersion::NoncePrefix))
                .col(uuid(DocumentVersion::UploadedBy))
                .col(timestamp_with_time_zone(DocumentVersion::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_document_version_document")
                        .from(DocumentVersion::Table, DocumentVersion::DocumentId)
                        .to(Document::Table, Document::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_document_version_uploaded_by")
                        .from(DocumentVersion::Table, DocumentVersion::UploadedBy)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            idx(
                "uq_document_version",
                DocumentVersion::Table,
                &["document_id", "version"],
            )
            .unique()
            .to_owned(),
        )
        .await?;
        m.create_index(
            idx(
                "uq_document_version_object",
                DocumentVersion::Table,
                &["object_key"],
            )
            .unique()
            .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_document_version_uploaded_by",
            DocumentVersion::Table,
            &["uploaded_by"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(DocumentUpload::Table)
                .col(string_len(DocumentUpload::ObjectKey, 100).primary_key())
                .col(timestamp_with_time_zone(DocumentUpload::StartedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_document_upload_started",
            DocumentUpload::Table,
            &["started_at"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(DocumentCaseHold::Table)
                .col(uuid(DocumentCaseHold::CaseId).primary_key())
                .col(uuid_null(DocumentCaseHold::SetBy))
                .col(timestamp_with_time_zone(DocumentCaseHold::SetAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_document_case_hold_case")
                        .from(DocumentCaseHold::Table, DocumentCaseHold::CaseId)
                        .to(LegalCase::Table, LegalCase::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        // Full text over title, file name and the head of text content.
        let conn = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE document ADD COLUMN search tsvector GENERATED ALWAYS AS (
                       to_tsvector('simple', title || ' ' || filename || ' ' || search_text)) STORED;
                     CREATE INDEX ix_document_search ON document USING GIN (search);",
                )
                .await?;
            }
            _ => {
                for sql in [
                    "CREATE VIRTUAL TABLE document_fts USING fts5(title, filename, search_text,
                       content='document', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
                    "CREATE TRIGGER document_fts_ai AFTER INSERT ON document BEGIN
                       INSERT INTO document_fts(rowid, title, filename, search_text)
                       VALUES (new.rowid, new.title, new.filename, new.search_text); END",
                    "CREATE TRIGGER document_fts_ad AFTER DELETE ON document BEGIN
                       INSERT INTO document_fts(document_fts, rowid, title, filename, search_text)
                       VALUES ('delete', old.rowid, old.title, old.filename, old.search_text); END",
                    "CREATE TRIGGER document_fts_au AFTER UPDATE ON document BEGIN
                       INSERT INTO document_fts(document_fts, rowid, title, filename, search_text)
                       VALUES ('delete', old.rowid, old.title, old.filename, old.search_text);
                       INSERT INTO document_fts(rowid, title, filename, search_text)
                       VALUES (new.rowid, new.title, new.filename, new.search_text); END",
                ] {
                    conn.execute_unprepared(sql).await?;
                }
            }
        }
        Ok(())
    }
}
