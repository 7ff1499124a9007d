//! SQLite's full-text rows for messages (PostgreSQL keeps a generated tsvector column and
//! needs nothing here). Each row carries the message body and its audience: a token for the
//! sender (`s…`) and one per recipient (`r…`), so a search can ask FTS5 for "this text, among
//! the messages I received" (or sent) and rank only those. The audience only narrows; whether
//! a row may be shown is still decided in SQL (hidden rows, current case membership).

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

/// One message to index: its id, body, and everyone it was between.
pub struct Entry<'a> {
    pub id: Uuid,
    pub body: &'a str,
    pub sender: Uuid,
    pub recipients: &'a [Uuid],
}

/// Rows per `INSERT`: three values each, far below SQLite's 32,766 bound parameters.
const BATCH: usize = 2_000;

/// Write the full-text rows of new messages, in the caller's transaction (no-op off SQLite).
pub async fn add<C: ConnectionTrait>(conn: &C, entries: &[Entry<'_>]) -> Result<()> {
    if conn.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    for chunk in entries.chunks(BATCH) {
        let mut sql = String::from("INSERT INTO message_fts(body, audience, message_id) VALUES ");
        let mut values: Vec<Value> = Vec::with_capacity(chunk.len() * 3);
        for (i, e) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            let audience = std::iter::once(sender_token(e.sender))
                .chain(e.recipients.iter().copied().map(recipient_token))
                .collect::<Vec<_>>()
                .join(" ");
            values.extend([e.body.into(), audience.into(), e.id.into()]);
        }
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
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
