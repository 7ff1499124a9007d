//! SQLite's full-text rows for messages (PostgreSQL keeps a generated tsvector column and
//! needs nothing here). Each row carries the message body and its audience: a token per
//! person the message was between (sender and recipients), so a search can ask FTS5 for
//! "this text, among my messages" and rank only those. The audience only narrows; whether a
//! row may be shown is still decided in SQL (hidden rows, current case membership).

use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use uuid::Uuid;

use crate::error::Result;

/// The audience token of a user: `u` and the id's 32 hex digits (what the migration computes
/// from the stored 16-byte id with `lower(hex(id))`).
pub fn token(user: Uuid) -> String {
    format!("u{}", user.simple())
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
            let audience = std::iter::once(e.sender)
                .chain(e.recipients.iter().copied())
                .map(token)
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

/// The FTS5 query for `text` written by `user`'s reader: every word a quoted prefix in the
/// body (no operators reach the engine), and the reader's audience token.
pub fn fts5_query(text: &str, user: Uuid) -> String {
    let words = text
        .split_whitespace()
        .take(12)
        .map(|w| format!("\"{}\"*", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ");
    format!("body : ({words}) AND audience : \"{}\"", token(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_user_text_quoted_and_adds_the_readers_token() {
        let u = Uuid::parse_str("01a2359f-f5fe-70a0-ace4-b3fe472ee1ac").unwrap();
        assert_eq!(token(u), "u01a2359ff5fe70a0ace4b3fe472ee1ac");
        assert_eq!(
            fts5_query("say \"hi\" OR audience:x", u),
            "body : (\"say\"* \"\"\"hi\"\"\"* \"OR\"* \"audience:x\"*) AND audience : \
             \"u01a2359ff5fe70a0ace4b3fe472ee1ac\""
        );
    }
}
