//! SQLite FTS5 queries from user text, shared by cases, documents and messages, and the
//! upkeep that keeps each index one b-tree. (PostgreSQL matches generated `tsvector` columns
//! with `plainto_tsquery` / `websearch_to_tsquery`.)

use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, Statement,
    sea_query::{Expr, SimpleExpr},
};

use super::Db;

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
/// costs more than probing the index along an ordered walk that stops after a page. (Used by
/// the staff's document search; a member's case search reads `case_member_fts` instead.)
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

/// SQLite's full-text indexes (FTS5): cases' and documents' with external content keyed by
/// their table's rowid, messages' with its own text under the message's rowid, and the
/// members' case search rows (contentless, keyed by user and membership rowids).
pub const SQLITE_INDEXES: [&str; 4] = [
    "legal_case_fts",
    "message_fts",
    "document_fts",
    "case_member_fts",
];

/// Pages (4 KiB) one merge step writes: about 20 ms of the write lock at a time.
const MERGE_PAGES: u32 = 200;

/// A b-tree of at least this many leaf pages (256 KiB) is worth merging into the others.
/// A few smaller ones cost a seek or two in pages already cached, and every merge rewrites the
/// index, so the upkeep waits until writes have built up a sizable second b-tree, or many
/// small ones ([`MANY_BTREES`]).
pub const SIZABLE_PAGES: i64 = 64;

/// More b-trees than this are merged however small they are: each is one more seek for every
/// probed row, and writes small enough to do little of FTS5's own merging leave up to 15 of
/// them. Measured at scale 100 after the load benchmark's writes: the attorney's case search
/// statement (then probing `legal_case_fts` per case walked) took 3.5 ms over 15 b-trees (one
/// of 289 leaf pages, 14 of one page) and 1.1–1.6 ms over one (docs/benchmarks.md, round 16).
pub const MANY_BTREES: i64 = 8;

/// Steps one pass may take per index: a pass that writers keep feeding still ends.
const MAX_STEPS: u32 = 2_000;

/// How often the server looks at the indexes.
const UPKEEP_EVERY: Duration = Duration::from_secs(10 * 60);

/// One bounded step of merging `fts`'s b-trees toward a single one, in its own write
/// transaction. True when it merged something (another step may follow).
///
/// Every write adds a small b-tree that FTS5 merges only once four share a level, so a busy
/// index keeps several; each is one more index seek per probed row. At scale 100 the case
/// search walking an attorney's cases took 0.67 ms over four b-trees and 0.44 ms over one
/// (as at scale 1). FTS5's `merge` with a negative page count merges across levels, down to
/// one; it did work when it changed two or more rows (FTS5 documentation, "merge").
async fn sqlite_merge_step(db: &Db, fts: &'static str) -> Result<bool, DbErr> {
    let txn = db.begin_write().await?;
    let before = total_changes(&*txn).await?;
    txn.execute_unprepared(&format!(
        "INSERT INTO {fts}({fts}, rank) VALUES('merge', -{MERGE_PAGES})"
    ))
    .await?;
    let after = total_changes(&*txn).await?;
    txn.commit().await?;
    Ok(after - before >= 2)
}

async fn total_changes<C: ConnectionTrait>(conn: &C) -> Result<i64, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT total_changes() AS n",
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("total_changes()".into()))?;
    row.try_get("", "n")
}

/// B-trees of `fts`: all of them, and those with at least `min_pages` leaf pages (`_idx`
/// keeps a row per leaf page), in one pass over `_idx`.
async fn btrees(db: &Db, fts: &str, min_pages: i64) -> Result<(i64, i64), DbErr> {
    let row = db
        .conn()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            format!(
                "SELECT COUNT(*) AS n, COALESCE(SUM(pages >= ?), 0) AS sizable \
                 FROM (SELECT COUNT(*) AS pages FROM {fts}_idx GROUP BY segid)"
            ),
            [min_pages.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("{fts}_idx")))?;
    Ok((row.try_get("", "n")?, row.try_get("", "sizable")?))
}

/// Merge each SQLite full-text index that has two or more b-trees of at least `min_pages`, or
/// more than [`MANY_BTREES`] of any size, down to one, a step at a time so writers get the
/// lock in between, until done, `stop()`, or [`MAX_STEPS`]. Returns the steps that did work
/// (0 on PostgreSQL, whose GIN indexes autovacuum keeps).
pub async fn merge_sizable(db: &Db, min_pages: i64, stop: impl Fn() -> bool) -> Result<u32, DbErr> {
    if db.backend() != DbBackend::Sqlite {
        return Ok(0);
    }
    let mut steps = 0;
    for fts in SQLITE_INDEXES {
        let (all, sizable) = btrees(db, fts, min_pages).await?;
        if sizable < 2 && all <= MANY_BTREES {
            continue;
        }
        let mut taken = 0;
        while taken < MAX_STEPS && !stop() && sqlite_merge_step(db, fts).await? {
            taken += 1;
            tokio::task::yield_now().await;
        }
        steps += taken;
    }
    Ok(steps)
}

/// Merge every SQLite full-text index down to one b-tree, however small its others (after a
/// bulk load: the scale generator).
pub async fn compact(db: &Db) -> Result<u32, DbErr> {
    merge_sizable(db, 1, || false).await
}

/// The server's index upkeep: [`merge_sizable`] with [`SIZABLE_PAGES`] a minute after start,
/// then every ten minutes, until shutdown (also between steps). Nothing on PostgreSQL.
pub fn spawn_upkeep(state: crate::AppState) -> tokio::task::JoinHandle<()> {
    let mut stop = state.shutdown.subscribe();
    tokio::spawn(async move {
        if state.db.backend() != DbBackend::Sqlite {
            return;
        }
        let mut wait = Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
            match merge_sizable(&state.db, SIZABLE_PAGES, || *state.shutdown.borrow()).await {
                Ok(0) => {}
                Ok(steps) => tracing::info!(steps, "full-text indexes merged"),
                Err(e) => {
                    tracing::warn!(error = %e, "full-text index merge failed; retrying later")
                }
            }
            wait = UPKEEP_EVERY;
        }
    })
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
