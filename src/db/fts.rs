//! SQLite FTS5 queries from user text, shared by cases, documents and messages. (PostgreSQL
//! matches generated `tsvector` columns with `plainto_tsquery` / `websearch_to_tsquery`.)

use sea_orm::{
    ConnectionTrait, DbBackend, Statement,
    sea_query::{Expr, SimpleExpr},
};

/// Up to 12 words of user text as an FTS5 query: each a quoted whole word, all required.
/// Quoting keeps every operator out of the engine. Whole words, as PostgreSQL matches them:
/// a prefix (`"word"*`) makes FTS5 merge the doclists of every term with that prefix, across
/// the whole firm, before it can intersect or look up anything.
pub fn words(q: &str) -> String {
    q.split_whitespace()
        .take(12)
        .map(|w| format!("\"{}\"", w.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Rows of `table` whose external-content FTS5 index `fts` (keyed by the table's rowid)
/// matches `text`. Two shapes with opposite costs:
/// - `narrow` (the caller sees few rows, e.g. a client's handful of cases): probe the index
///   for each candidate row (`EXISTS … rowid = …`), which costs per visible row and nothing
///   per firm-wide match;
/// - otherwise: the set of every matching rowid, built once (`IN (SELECT rowid …)`), which
///   costs per firm-wide match but not per visible row (staff see thousands of rows).
pub fn sqlite_match(table: &str, fts: &str, text: &str, narrow: bool) -> SimpleExpr {
    let sql = if narrow {
        format!("EXISTS (SELECT 1 FROM {fts} WHERE {fts}.rowid = {table}.rowid AND {fts} MATCH ?)")
    } else {
        format!("{table}.rowid IN (SELECT rowid FROM {fts} WHERE {fts} MATCH ?)")
    };
    Expr::cust_with_values(sql, [words(text)])
}

/// Matches at which a term counts as common: beyond this, a set of every matching rowid
/// costs more than probing the index along an ordered walk that stops after a page.
pub const COMMON_MATCHES: i64 = 1_000;

/// Does `text` match at least [`COMMON_MATCHES`] rows of `fts`? Reads at most that many
/// rowids from the index (well under a millisecond), whatever the size of the firm.
pub async fn sqlite_is_common<C: ConnectionTrait>(
    conn: &C,
    fts: &str,
    text: &str,
) -> Result<bool, sea_orm::DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "SELECT COUNT(*) AS n FROM (SELECT 1 FROM {fts} WHERE {fts} MATCH ? LIMIT {COMMON_MATCHES})"
            ),
            [words(text).into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "n"))
        .transpose()?
        .unwrap_or(0)
        >= COMMON_MATCHES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_text_cannot_inject_operators() {
        assert_eq!(words("smith OR \"x"), "\"smith\" \"OR\" \"\"\"x\"");
        assert_eq!(words("lease NEAR x"), "\"lease\" \"NEAR\" \"x\"");
        assert_eq!(words("   "), "");
        assert_eq!(words(&"w ".repeat(20)).matches('"').count(), 24);
    }
}
