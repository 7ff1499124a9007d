//! Who each message is between, kept where the full-text index can use it. Every message
//! carries its audience: a token for the sender (`s…`) and one per recipient (`r…`), so a
//! search asks the index for "this text, among the messages I received" (or sent) and ranks
//! only those. SQLite keeps them in `message_fts` with the body; PostgreSQL in
//! `message.audience`, a tsvector indexed with the body's (`ix_message_search_audience`). The
//! audience only narrows; whether a row may be shown is still decided in SQL (hidden rows,
//! current case membership).

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::error::Result;

/// The audience token of a message's sender: `s` and the id's 32 hex digits (what the
/// migration computes from the stored 16-byte id with `lower(hex(id))`).
pub fn sender_token(user: Uuid) -> String {
    format!("s{}", user.simple())
}

/// The audience token of one of a message's recipients: `r` and the id's hex digits.
pub fn recipient_token(user: Uuid) -> String {
    format!("r{}", user.simple())
}

/// One message to index (its row is already written): its id and everyone it was between.
pub struct Entry<'a> {
    pub id: Uuid,
    pub sender: Uuid,
    pub recipients: &'a [Uuid],
}

/// Messages per statement: two values each, far below SQLite's 32,766 bound parameters.
const BATCH: usize = 2_000;

fn audience(e: &Entry<'_>) -> String {
    std::iter::once(sender_token(e.sender))
        .chain(e.recipients.iter().copied().map(recipient_token))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Index new messages' audience (and, on SQLite, their text), in the caller's transaction,
/// once their recipients are known.
pub async fn add<C: ConnectionTrait>(conn: &C, entries: &[Entry<'_>]) -> Result<()> {
    let backend = conn.get_database_backend();
    for chunk in entries.chunks(BATCH) {
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 2);
        let sql = match backend {
            DbBackend::Postgres => {
                // The tokens are exact lexemes (no parser, no dictionary).
                let mut sql = String::from(
                    "UPDATE message SET audience = array_to_tsvector(string_to_array(v.a, ' ')) \
                     FROM (VALUES ",
                );
                for (i, e) in chunk.iter().enumerate() {
                    let n = 2 * i;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!("(${}::uuid, ${}::text)", n + 1, n + 2));
                    values.extend([e.id.into(), audience(e).into()]);
                }
                sql.push_str(") AS v(id, a) WHERE message.id = v.id");
                sql
            }
            _ => {
                // The body is read from the message, and the row takes the message's rowid
                // (what a date-ordered search probes; migration `m20261205_000001`).
                let mut sql = String::from(
                    "INSERT INTO message_fts(rowid, body, audience, message_id) \
                     SELECT m.rowid, m.body, v.column2, m.id FROM (VALUES ",
                );
                for (i, e) in chunk.iter().enumerate() {
                    sql.push_str(if i == 0 { "(?, ?)" } else { ", (?, ?)" });
                    values.extend([e.id.into(), audience(e).into()]);
                }
                sql.push_str(") AS v JOIN message m ON m.id = v.column1");
                sql
            }
        };
        let written = conn
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
        // One row per message, each found by its id: a message not written yet would leave
        // its search row silently missing.
        if written != chunk.len() as u64 {
            return Err(anyhow::anyhow!(
                "indexed {written} of {} messages: a message row is missing",
                chunk.len()
            )
            .into());
        }
    }
    Ok(())
}

/// SQLite: every message's full-text row again, from its sources, in place of what is there
/// (`lawfirm-pro recount` and a restore when [`SQLITE_OUT_OF_STEP`] finds any; the migrations
/// keep their own frozen copies). Run in order, in one transaction where the caller has one.
pub const SQLITE_REBUILD: [&str; 2] = [
    "DELETE FROM message_fts",
    "INSERT INTO message_fts(rowid, body, audience, message_id)
    SELECT m.rowid, m.body,
           's' || lower(hex(m.sender_id)) || coalesce(' ' || (
               SELECT group_concat('r' || lower(hex(r.user_id)), ' ')
                 FROM message_recipient r WHERE r.message_id = m.id), ''),
           m.id
      FROM message m",
];

/// SQLite: full-text rows out of step with their messages (another message's rowid, or none).
pub const SQLITE_OUT_OF_STEP: &str = "SELECT
    (SELECT COUNT(*) FROM message_fts f WHERE NOT EXISTS (
        SELECT 1 FROM message m WHERE m.rowid = f.rowid AND m.id = f.message_id))
  + (SELECT COUNT(*) FROM message m WHERE NOT EXISTS (
        SELECT 1 FROM message_fts f WHERE f.rowid = m.rowid)) AS n";

/// PostgreSQL: the `tsquery` of one audience token (a lexeme of hex digits, quoted).
pub fn tsquery(token: &str) -> String {
    format!("'{token}'")
}

/// The FTS5 query for `text` (whole words in the body) among the messages that carry the
/// audience `token` ([`sender_token`] or [`recipient_token`] of the reader).
pub fn fts5_query(text: &str, token: &str) -> String {
    format!(
        "body : ({}) AND audience : \"{token}\"",
        crate::db::fts::words(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_user_text_quoted_and_adds_the_readers_token() {
        let u = Uuid::parse_str("01a2359f-f5fe-70a0-ace4-b3fe472ee1ac").unwrap();
        assert_eq!(sender_token(u), "s01a2359ff5fe70a0ace4b3fe472ee1ac");
        assert_eq!(recipient_token(u), "r01a2359ff5fe70a0ace4b3fe472ee1ac");
        assert_eq!(
            fts5_query("say \"hi\" OR audience:x", &recipient_token(u)),
            "body : (\"say\" \"\"\"hi\"\"\" \"OR\" \"audience:x\") AND audience : \
             \"r01a2359ff5fe70a0ace4b3fe472ee1ac\""
        );
    }
}
