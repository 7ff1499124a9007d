//! Cases (`legal_case`), yearly numbering, members, timeline, deadlines, parties, the event
//! log for live delivery, and full-text search over cases on each backend.

use sea_orm_migration::{prelude::*, schema::*, sea_orm::DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum LegalCase {
    Table,
    Id,
    Number,
    Year,
    Seq,
    Title,
    Description,
    PracticeArea,
    Priority,
    Status,
    Phase,
    OpenedAt,
    ClosedAt,
    StatuteOfLimitations,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum CaseNumberSeq {
    Table,
    Year,
    Last,
}

#[derive(DeriveIden)]
enum CaseMember {
    Table,
    CaseId,
    UserId,
    Role,
    AddedAt,
}

#[derive(DeriveIden)]
enum CaseTimeline {
    Table,
    Id,
    CaseId,
    Kind,
    FromValue,
    ToValue,
    Note,
    ActorId,
    At,
    ClientVisible,
}

#[derive(DeriveIden)]
enum CaseDeadline {
    Table,
    Id,
    CaseId,
    Title,
    DueOn,
    Kind,
    CreatedBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum CaseParty {
    Table,
    Id,
    CaseId,
    Name,
    NormalizedName,
    Kind,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Event {
    Table,
    Id,
    Kind,
    CaseId,
    Audience,
    UserIds,
    Data,
    CreatedAt,
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

fn fk_case(
    name: &str,
    from: impl IntoIden + 'static,
    col: impl IntoIden + 'static,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(from, col)
        .to(LegalCase::Table, LegalCase::Id)
        .on_delete(ForeignKeyAction::Cascade)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(LegalCase::Table)
                .col(pk_uuid(LegalCase::Id))
                .col(string_len(LegalCase::Number, 16))
                .col(integer(LegalCase::Year))
                .col(integer(LegalCase::Seq))
                .col(string_len(LegalCase::Title, 300))
                .col(text(LegalCase::Description))
                .col(string_len_null(LegalCase::PracticeArea, 100))
                .col(string_len(LegalCase::Priority, 16))
                .col(string_len(LegalCase::Status, 16))
                .col(string_len(LegalCase::Phase, 16))
                .col(timestamp_with_time_zone(LegalCase::OpenedAt))
                .col(timestamp_with_time_zone_null(LegalCase::ClosedAt))
                .col(date_null(LegalCase::StatuteOfLimitations))
                .col(uuid(LegalCase::CreatedBy))
                .col(timestamp_with_time_zone(LegalCase::CreatedAt))
                .col(timestamp_with_time_zone(LegalCase::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_legal_case_created_by")
                        .from(LegalCase::Table, LegalCase::CreatedBy)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            idx("uq_legal_case_number", LegalCase::Table, &["number"])
                .unique()
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_legal_case_updated", &["updated_at", "id"][..]),
            ("ix_legal_case_opened", &["opened_at", "id"][..]),
            ("ix_legal_case_status", &["status", "updated_at", "id"][..]),
            ("ix_legal_case_phase", &["phase", "updated_at", "id"][..]),
            (
                "ix_legal_case_priority",
                &["priority", "updated_at", "id"][..],
            ),
            (
                "ix_legal_case_practice_area",
                &["practice_area", "updated_at", "id"][..],
            ),
            ("ix_legal_case_created_by", &["created_by"][..]),
        ] {
            m.create_index(idx(name, LegalCase::Table, cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(CaseNumberSeq::Table)
                .col(integer(CaseNumberSeq::Year).primary_key())
                .col(integer(CaseNumberSeq::Last))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(CaseMember::Table)
                .col(uuid(CaseMember::CaseId))
                .col(uuid(CaseMember::UserId))
                .col(string_len(CaseMember::Role, 16))
                .col(timestamp_with_time_zone(CaseMember::AddedAt))
                .primary_key(
                    Index::create()
                        .name("pk_case_member")
                        .col(CaseMember::CaseId)
                        .col(CaseMember::UserId),
                )
                .foreign_key(&mut fk_case(
                    "fk_case_member_case",
                    CaseMember::Table,
                    CaseMember::CaseId,
                ))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_case_member_user")
                        .from(CaseMember::Table, CaseMember::UserId)
                        .to(AppUser::Table, AppUser::Id),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_case_member_user",
            CaseMember::Table,
            &["user_id", "role", "case_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(CaseTimeline::Table)
                .col(pk_uuid(CaseTimeline::Id))
                .col(uuid(CaseTimeline::CaseId))
                .col(string_len(CaseTimeline::Kind, 16))
                .col(string_len_null(CaseTimeline::FromValue, 32))
                .col(string_len_null(CaseTimeline::ToValue, 32))
                .col(text_null(CaseTimeline::Note))
                .col(uuid_null(CaseTimeline::ActorId))
                .col(timestamp_with_time_zone(CaseTimeline::At))
                .col(boolean(CaseTimeline::ClientVisible))
                .foreign_key(&mut fk_case(
                    "fk_case_timeline_case",
                    CaseTimeline::Table,
                    CaseTimeline::CaseId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_case_timeline_case",
            CaseTimeline::Table,
            &["case_id", "id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(CaseDeadline::Table)
                .col(pk_uuid(CaseDeadline::Id))
                .col(uuid(CaseDeadline::CaseId))
                .col(string_len(CaseDeadline::Title, 300))
                .col(date(CaseDeadline::DueOn))
                .col(string_len(CaseDeadline::Kind, 32))
                .col(uuid_null(CaseDeadline::CreatedBy))
                .col(timestamp_with_time_zone(CaseDeadline::CreatedAt))
                .foreign_key(&mut fk_case(
                    "fk_case_deadline_case",
                    CaseDeadline::Table,
                    CaseDeadline::CaseId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_case_deadline_case",
            CaseDeadline::Table,
            &["case_id", "due_on", "id"],
        ))
        .await?;
        m.create_index(idx(
            "ix_case_deadline_due",
            CaseDeadline::Table,
            &["due_on", "id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(CaseParty::Table)
                .col(pk_uuid(CaseParty::Id))
                .col(uuid(CaseParty::CaseId))
                .col(string_len(CaseParty::Name, 300))
                .col(string_len(CaseParty::NormalizedName, 300))
                .col(string_len(CaseParty::Kind, 32))
                .col(timestamp_with_time_zone(CaseParty::CreatedAt))
                .foreign_key(&mut fk_case(
                    "fk_case_party_case",
                    CaseParty::Table,
                    CaseParty::CaseId,
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_case_party_case",
            CaseParty::Table,
            &["case_id", "id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(Event::Table)
                .col(big_pk_auto(Event::Id))
                .col(string_len(Event::Kind, 32))
                .col(uuid_null(Event::CaseId))
                .col(string_len(Event::Audience, 16))
                .col(text_null(Event::UserIds))
                .col(text(Event::Data))
                .col(timestamp_with_time_zone(Event::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(idx("ix_event_case", Event::Table, &["case_id", "id"]))
            .await?;

        // Full text over number, title and description: FTS5 on SQLite, tsvector on PostgreSQL.
        let conn = m.get_connection();
        match m.get_database_backend() {
            DbBackend::Postgres => {
                conn.execute_unprepared(
                    "ALTER TABLE legal_case ADD COLUMN search tsvector GENERATED ALWAYS AS (
                       to_tsvector('simple', number || ' ' || title || ' ' || description)) STORED;
                     CREATE INDEX ix_legal_case_search ON legal_case USING GIN (search);",
                )
                .await?;
            }
            _ => {
                for sql in [
                    "CREATE VIRTUAL TABLE legal_case_fts USING fts5(number, title, description,
                       content='legal_case', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2')",
                    "CREATE TRIGGER legal_case_fts_ai AFTER INSERT ON legal_case BEGIN
                       INSERT INTO legal_case_fts(rowid, number, title, description)
                       VALUES (new.rowid, new.number, new.title, new.description); END",
                    "CREATE TRIGGER legal_case_fts_ad AFTER DELETE ON legal_case BEGIN
                       INSERT INTO legal_case_fts(legal_case_fts, rowid, number, title, description)
                       VALUES ('delete', old.rowid, old.number, old.title, old.description); END",
                    "CREATE TRIGGER legal_case_fts_au AFTER UPDATE ON legal_case BEGIN
                       INSERT INTO legal_case_fts(legal_case_fts, rowid, number, title, description)
                       VALUES ('delete', old.rowid, old.number, old.title, old.description);
                       INSERT INTO legal_case_fts(rowid, number, title, description)
                       VALUES (new.rowid, new.number, new.title, new.description); END",
                ] {
                    conn.execute_unprepared(sql).await?;
                }
            }
        }
        Ok(())
    }
}
