//! Each staff member's open deadlines in due order: `member_deadline`, one row per open
//! deadline and staff member of its case, keyed `(user_id, due_on, deadline_id)`.
//!
//! The staff dashboard's deadlines of the next 30 days probed every case the caller is on for
//! its deadlines in the window and sorted them all: for an attorney on 2,000 cases (scale 100)
//! 7 ms on SQLite and 12–16 ms on PostgreSQL (which read all 100,000 deadlines instead), four
//! times the 500-case attorney's. The window is now one range of the caller's own key, in
//! order, ended by the list's `LIMIT` however many cases and deadlines are behind it.
//!
//! Kept by triggers, in the statement that changes what it mirrors, so no write path can
//! forget it: a deadline added, moved, completed or reopened; a staff member added to or
//! removed from a case (a removed member's rows go with their membership). A deleted deadline
//! takes its rows with it (foreign key, `ON DELETE CASCADE`).

use super::{exec_all, exec_per_backend};
use sea_orm_migration::{
    prelude::*,
    schema::{date, uuid},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MemberDeadline {
    Table,
    UserId,
    DueOn,
    DeadlineId,
    CaseId,
}

/// The rows there should be: open deadlines × staff members of their case.
const BACKFILL: &str = "INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
     SELECT m.user_id, d.due_on, d.id, d.case_id
       FROM case_deadline d JOIN case_member m ON m.case_id = d.case_id
      WHERE d.completed_at IS NULL AND m.role <> 'client'";

const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER member_deadline_deadline_ai AFTER INSERT ON case_deadline
       WHEN NEW.completed_at IS NULL BEGIN
       INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
       SELECT m.user_id, NEW.due_on, NEW.id, NEW.case_id FROM case_member m
        WHERE m.case_id = NEW.case_id AND m.role <> 'client';
     END",
    "CREATE TRIGGER member_deadline_deadline_au AFTER UPDATE OF due_on, completed_at, case_id
       ON case_deadline BEGIN
       DELETE FROM member_deadline WHERE deadline_id = OLD.id;
       INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
       SELECT m.user_id, NEW.due_on, NEW.id, NEW.case_id FROM case_member m
        WHERE NEW.completed_at IS NULL AND m.case_id = NEW.case_id AND m.role <> 'client';
     END",
    "CREATE TRIGGER member_deadline_member_ai AFTER INSERT ON case_member
       WHEN NEW.role <> 'client' BEGIN
       INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
       SELECT NEW.user_id, d.due_on, d.id, d.case_id FROM case_deadline d
        WHERE d.case_id = NEW.case_id AND d.completed_at IS NULL;
     END",
    "CREATE TRIGGER member_deadline_member_ad AFTER DELETE ON case_member BEGIN
       DELETE FROM member_deadline WHERE case_id = OLD.case_id AND user_id = OLD.user_id;
     END",
    "CREATE TRIGGER member_deadline_member_au AFTER UPDATE OF role, case_id, user_id
       ON case_member BEGIN
       DELETE FROM member_deadline WHERE case_id = OLD.case_id AND user_id = OLD.user_id;
       INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
       SELECT NEW.user_id, d.due_on, d.id, d.case_id FROM case_deadline d
        WHERE NEW.role <> 'client' AND d.case_id = NEW.case_id AND d.completed_at IS NULL;
     END",
];

const POSTGRES_TRIGGERS: &[&str] = &[
    // PostgreSQL: a deadline and a membership of the same case written at once must not each
    // miss the other's uncommitted row (a member added would lack the deadline; one removed
    // would keep it), so both lock the case row first (held to commit; SQLite has one writer).
    "CREATE FUNCTION member_deadline_of_deadline() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       IF TG_OP = 'UPDATE' THEN
         PERFORM 1 FROM legal_case WHERE id = OLD.case_id FOR NO KEY UPDATE;
         DELETE FROM member_deadline WHERE deadline_id = OLD.id;
       END IF;
       IF NEW.completed_at IS NULL THEN
         INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
         SELECT m.user_id, NEW.due_on, NEW.id, NEW.case_id FROM case_member m
          WHERE m.case_id = NEW.case_id AND m.role <> 'client';
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER member_deadline_deadline_ai AFTER INSERT ON case_deadline
       FOR EACH ROW EXECUTE FUNCTION member_deadline_of_deadline()",
    "CREATE TRIGGER member_deadline_deadline_au AFTER UPDATE OF due_on, completed_at, case_id
       ON case_deadline
       FOR EACH ROW WHEN (OLD.due_on IS DISTINCT FROM NEW.due_on
                          OR OLD.completed_at IS DISTINCT FROM NEW.completed_at
                          OR OLD.case_id IS DISTINCT FROM NEW.case_id)
       EXECUTE FUNCTION member_deadline_of_deadline()",
    "CREATE FUNCTION member_deadline_of_member() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'DELETE' THEN
         PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       END IF;
       IF TG_OP <> 'INSERT' THEN
         PERFORM 1 FROM legal_case WHERE id = OLD.case_id FOR NO KEY UPDATE;
         DELETE FROM member_deadline WHERE case_id = OLD.case_id AND user_id = OLD.user_id;
       END IF;
       IF TG_OP <> 'DELETE' AND NEW.role <> 'client' THEN
         INSERT INTO member_deadline (user_id, due_on, deadline_id, case_id)
         SELECT NEW.user_id, d.due_on, d.id, d.case_id FROM case_deadline d
          WHERE d.case_id = NEW.case_id AND d.completed_at IS NULL;
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER member_deadline_member_aid AFTER INSERT OR DELETE ON case_member
       FOR EACH ROW EXECUTE FUNCTION member_deadline_of_member()",
    "CREATE TRIGGER member_deadline_member_au AFTER UPDATE OF role, case_id, user_id
       ON case_member
       FOR EACH ROW WHEN (OLD.role IS DISTINCT FROM NEW.role
                          OR OLD.case_id IS DISTINCT FROM NEW.case_id
                          OR OLD.user_id IS DISTINCT FROM NEW.user_id)
       EXECUTE FUNCTION member_deadline_of_member()",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER member_deadline_member_au",
    "DROP TRIGGER member_deadline_member_ad",
    "DROP TRIGGER member_deadline_member_ai",
    "DROP TRIGGER member_deadline_deadline_au",
    "DROP TRIGGER member_deadline_deadline_ai",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER member_deadline_member_au ON case_member",
    "DROP TRIGGER member_deadline_member_aid ON case_member",
    "DROP FUNCTION member_deadline_of_member()",
    "DROP TRIGGER member_deadline_deadline_au ON case_deadline",
    "DROP TRIGGER member_deadline_deadline_ai ON case_deadline",
    "DROP FUNCTION member_deadline_of_deadline()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction: the backfill and the triggers land together, so no write between them
    /// goes unmirrored.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(MemberDeadline::Table)
                .col(uuid(MemberDeadline::UserId))
                .col(date(MemberDeadline::DueOn))
                .col(uuid(MemberDeadline::DeadlineId))
                .col(uuid(MemberDeadline::CaseId))
                .primary_key(
                    Index::create()
                        .name("pk_member_deadline")
                        .col(MemberDeadline::UserId)
                        .col(MemberDeadline::DueOn)
                        .col(MemberDeadline::DeadlineId),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_member_deadline_deadline")
                        .from(MemberDeadline::Table, MemberDeadline::DeadlineId)
                        .to(Alias::new("case_deadline"), Alias::new("id"))
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_member_deadline_user")
                        .from(MemberDeadline::Table, MemberDeadline::UserId)
                        .to(Alias::new("app_user"), Alias::new("id")),
                )
                .to_owned(),
        )
        .await?;
        exec_all(
            m,
            &[
                // What the triggers delete by: a deadline's rows, a membership's rows.
                "CREATE INDEX ix_member_deadline_deadline ON member_deadline (deadline_id)",
                "CREATE INDEX ix_member_deadline_member ON member_deadline (case_id, user_id)",
                BACKFILL,
            ],
        )
        .await?;
        exec_per_backend(m, SQLITE_TRIGGERS, POSTGRES_TRIGGERS).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, SQLITE_DOWN, POSTGRES_DOWN).await?;
        m.drop_table(Table::drop().table(MemberDeadline::Table).to_owned())
            .await
    }
}
