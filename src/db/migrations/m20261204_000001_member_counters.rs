//! Per-membership counters for the first screen: a member's unread messages in the case and the
//! case's unbilled billable minutes, on the `case_member` row.
//!
//! The unread count and the staff dashboard's unbilled minutes summed every one of the caller's
//! unread recipient rows and time entries, probing each of their cases: for an attorney on
//! 2,000 cases (scale 100) 4.2 ms and 5.6 ms of SQL, four times the 500-case attorney's. They
//! now read one index range of the caller's membership rows (`ix_case_member_unread`, only rows
//! with unread messages; `ix_case_member_unbilled`), whatever the volume behind them.
//!
//! The counters are kept by triggers, in the statement that changes what they count, so no
//! write path (sending, reading, hiding, purging, time entries, invoicing) can forget them or
//! leave them half-updated: a recipient row counts while it is neither read nor hidden, a time
//! entry while it is billable and not on an invoice. A new membership row counts what is
//! already there (a member removed and added again finds their old unread messages).

use super::{exec_all, exec_per_backend};
use sea_orm_migration::{prelude::*, schema::big_integer};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CaseMember {
    Table,
    UnreadMessages,
    CaseUnbilledMinutes,
}

/// What a member's counters are, from the rows they count (backfill, new membership rows).
const UNREAD_OF_MEMBER: &str = "(SELECT COUNT(*) FROM message_recipient r
       WHERE r.user_id = case_member.user_id AND r.case_id = case_member.case_id
         AND r.deleted_at IS NULL AND r.read_at IS NULL)";
const UNBILLED_OF_CASE: &str = "(SELECT COALESCE(SUM(t.minutes), 0) FROM time_entry t
       WHERE t.case_id = case_member.case_id AND t.invoice_id IS NULL AND t.billable)";

const INDEXES: &[&str] = &[
    "CREATE INDEX ix_case_member_unread ON case_member (user_id, case_id, unread_messages)
       WHERE unread_messages > 0",
    "CREATE INDEX ix_case_member_unbilled ON case_member (user_id, role, case_unbilled_minutes)",
];

const SQLITE_TRIGGERS: &[&str] = &[
    "CREATE TRIGGER case_member_counters_ai AFTER INSERT ON case_member BEGIN
       UPDATE case_member SET
         unread_messages = (SELECT COUNT(*) FROM message_recipient r
           WHERE r.user_id = NEW.user_id AND r.case_id = NEW.case_id
             AND r.deleted_at IS NULL AND r.read_at IS NULL),
         case_unbilled_minutes = (SELECT COALESCE(SUM(t.minutes), 0) FROM time_entry t
           WHERE t.case_id = NEW.case_id AND t.invoice_id IS NULL AND t.billable)
       WHERE case_id = NEW.case_id AND user_id = NEW.user_id;
     END",
    "CREATE TRIGGER message_recipient_unread_ai AFTER INSERT ON message_recipient
       WHEN NEW.read_at IS NULL AND NEW.deleted_at IS NULL BEGIN
       UPDATE case_member SET unread_messages = unread_messages + 1
       WHERE case_id = NEW.case_id AND user_id = NEW.user_id;
     END",
    "CREATE TRIGGER message_recipient_unread_ad AFTER DELETE ON message_recipient
       WHEN OLD.read_at IS NULL AND OLD.deleted_at IS NULL BEGIN
       UPDATE case_member SET unread_messages = unread_messages - 1
       WHERE case_id = OLD.case_id AND user_id = OLD.user_id;
     END",
    "CREATE TRIGGER message_recipient_unread_au AFTER UPDATE OF read_at, deleted_at, case_id, user_id
       ON message_recipient
       WHEN (OLD.read_at IS NULL AND OLD.deleted_at IS NULL)
              IS NOT (NEW.read_at IS NULL AND NEW.deleted_at IS NULL)
            OR OLD.case_id IS NOT NEW.case_id OR OLD.user_id IS NOT NEW.user_id BEGIN
       UPDATE case_member SET unread_messages = unread_messages - 1
       WHERE OLD.read_at IS NULL AND OLD.deleted_at IS NULL
         AND case_id = OLD.case_id AND user_id = OLD.user_id;
       UPDATE case_member SET unread_messages = unread_messages + 1
       WHERE NEW.read_at IS NULL AND NEW.deleted_at IS NULL
         AND case_id = NEW.case_id AND user_id = NEW.user_id;
     END",
    "CREATE TRIGGER time_entry_unbilled_ai AFTER INSERT ON time_entry
       WHEN NEW.invoice_id IS NULL AND NEW.billable BEGIN
       UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes + NEW.minutes
       WHERE case_id = NEW.case_id;
     END",
    "CREATE TRIGGER time_entry_unbilled_ad AFTER DELETE ON time_entry
       WHEN OLD.invoice_id IS NULL AND OLD.billable BEGIN
       UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes - OLD.minutes
       WHERE case_id = OLD.case_id;
     END",
    "CREATE TRIGGER time_entry_unbilled_au AFTER UPDATE OF invoice_id, billable, minutes, case_id
       ON time_entry BEGIN
       UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes - OLD.minutes
       WHERE OLD.invoice_id IS NULL AND OLD.billable AND case_id = OLD.case_id;
       UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes + NEW.minutes
       WHERE NEW.invoice_id IS NULL AND NEW.billable AND case_id = NEW.case_id;
     END",
];

const POSTGRES_TRIGGERS: &[&str] = &[
    // PostgreSQL only (SQLite has one writer): a new member and a new time entry of the same
    // case must not each miss the other's uncommitted row, so whatever writes a case's
    // counters or reads them into a new membership first locks the case row (the lock a case
    // update takes; held to commit). Messages need no lock: only committed members receive.
    "CREATE FUNCTION case_member_counters_fill() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       SELECT COUNT(*) INTO NEW.unread_messages FROM message_recipient r
        WHERE r.user_id = NEW.user_id AND r.case_id = NEW.case_id
          AND r.deleted_at IS NULL AND r.read_at IS NULL;
       SELECT COALESCE(SUM(t.minutes), 0) INTO NEW.case_unbilled_minutes FROM time_entry t
        WHERE t.case_id = NEW.case_id AND t.invoice_id IS NULL AND t.billable;
       RETURN NEW;
     END $$",
    "CREATE TRIGGER case_member_counters_bi BEFORE INSERT ON case_member
       FOR EACH ROW EXECUTE FUNCTION case_member_counters_fill()",
    // Row triggers: a bulk `UPDATE ... SET read_at` changes each member's row once per message
    // read, in the statement's own transaction.
    "CREATE FUNCTION message_recipient_unread_count() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'INSERT' AND OLD.read_at IS NULL AND OLD.deleted_at IS NULL THEN
         UPDATE case_member SET unread_messages = unread_messages - 1
          WHERE case_id = OLD.case_id AND user_id = OLD.user_id;
       END IF;
       IF TG_OP <> 'DELETE' AND NEW.read_at IS NULL AND NEW.deleted_at IS NULL THEN
         UPDATE case_member SET unread_messages = unread_messages + 1
          WHERE case_id = NEW.case_id AND user_id = NEW.user_id;
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER message_recipient_unread_aid AFTER INSERT OR DELETE ON message_recipient
       FOR EACH ROW EXECUTE FUNCTION message_recipient_unread_count()",
    "CREATE TRIGGER message_recipient_unread_au AFTER UPDATE OF read_at, deleted_at, case_id, user_id
       ON message_recipient
       FOR EACH ROW WHEN ((OLD.read_at IS NULL AND OLD.deleted_at IS NULL)
                            IS DISTINCT FROM (NEW.read_at IS NULL AND NEW.deleted_at IS NULL)
                          OR OLD.case_id IS DISTINCT FROM NEW.case_id
                          OR OLD.user_id IS DISTINCT FROM NEW.user_id)
       EXECUTE FUNCTION message_recipient_unread_count()",
    "CREATE FUNCTION time_entry_unbilled_sum() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
       IF TG_OP <> 'INSERT' THEN
         PERFORM 1 FROM legal_case WHERE id = OLD.case_id FOR NO KEY UPDATE;
       END IF;
       IF TG_OP <> 'DELETE' THEN
         PERFORM 1 FROM legal_case WHERE id = NEW.case_id FOR NO KEY UPDATE;
       END IF;
       IF TG_OP <> 'INSERT' AND OLD.invoice_id IS NULL AND OLD.billable THEN
         UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes - OLD.minutes
          WHERE case_id = OLD.case_id;
       END IF;
       IF TG_OP <> 'DELETE' AND NEW.invoice_id IS NULL AND NEW.billable THEN
         UPDATE case_member SET case_unbilled_minutes = case_unbilled_minutes + NEW.minutes
          WHERE case_id = NEW.case_id;
       END IF;
       RETURN NULL;
     END $$",
    "CREATE TRIGGER time_entry_unbilled_aid AFTER INSERT OR DELETE ON time_entry
       FOR EACH ROW EXECUTE FUNCTION time_entry_unbilled_sum()",
    "CREATE TRIGGER time_entry_unbilled_au AFTER UPDATE OF invoice_id, billable, minutes, case_id
       ON time_entry
       FOR EACH ROW WHEN (OLD.invoice_id IS DISTINCT FROM NEW.invoice_id
                          OR OLD.billable IS DISTINCT FROM NEW.billable
                          OR OLD.minutes IS DISTINCT FROM NEW.minutes
                          OR OLD.case_id IS DISTINCT FROM NEW.case_id)
       EXECUTE FUNCTION time_entry_unbilled_sum()",
];

const SQLITE_DOWN: &[&str] = &[
    "DROP TRIGGER time_entry_unbilled_au",
    "DROP TRIGGER time_entry_unbilled_ad",
    "DROP TRIGGER time_entry_unbilled_ai",
    "DROP TRIGGER message_recipient_unread_au",
    "DROP TRIGGER message_recipient_unread_ad",
    "DROP TRIGGER message_recipient_unread_ai",
    "DROP TRIGGER case_member_counters_ai",
];

const POSTGRES_DOWN: &[&str] = &[
    "DROP TRIGGER time_entry_unbilled_au ON time_entry",
    "DROP TRIGGER time_entry_unbilled_aid ON time_entry",
    "DROP FUNCTION time_entry_unbilled_sum()",
    "DROP TRIGGER message_recipient_unread_au ON message_recipient",
    "DROP TRIGGER message_recipient_unread_aid ON message_recipient",
    "DROP FUNCTION message_recipient_unread_count()",
    "DROP TRIGGER case_member_counters_bi ON case_member",
    "DROP FUNCTION case_member_counters_fill()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// One transaction: the backfill and the triggers land together, so no write between them
    /// goes uncounted.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for col in [
            big_integer(CaseMember::UnreadMessages).default(0),
            big_integer(CaseMember::CaseUnbilledMinutes).default(0),
        ] {
            m.alter_table(
                Table::alter()
                    .table(CaseMember::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        let backfill = format!(
            "UPDATE case_member SET unread_messages = {UNREAD_OF_MEMBER},
                                    case_unbilled_minutes = {UNBILLED_OF_CASE}"
        );
        exec_all(m, &[&backfill]).await?;
        exec_all(m, INDEXES).await?;
        exec_per_backend(m, SQLITE_TRIGGERS, POSTGRES_TRIGGERS).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        exec_per_backend(m, SQLITE_DOWN, POSTGRES_DOWN).await?;
        exec_all(
            m,
            &[
                "DROP INDEX ix_case_member_unbilled",
                "DROP INDEX ix_case_member_unread",
            ],
        )
        .await?;
        for col in [CaseMember::CaseUnbilledMinutes, CaseMember::UnreadMessages] {
            m.alter_table(
                Table::alter()
                    .table(CaseMember::Table)
                    .drop_column(col)
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
