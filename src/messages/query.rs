//! Reading many messages: the inbox and sent box, a case's messages and threads, full-text
//! search (newest first, or ranked by relevance), unread counts and statistics. Every query is
//! limited to the caller's own sender or recipient rows in cases they are on now
//! ([`visible_condition`] for sets, [`visible_row_condition`] and `access::is_member_of` for
//! pages walked row by row), so no path can show a message to someone it is not for.

use std::collections::{BTreeMap, HashMap, HashSet};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, Order, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
    sea_query::{Alias, Expr, ExprTrait, Query, SelectStatement, SimpleExpr},
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{
    entity::{message, recipient},
    search_index,
    service::{MessageView, views},
};
use crate::{
    AppState,
    audit::NewEntry,
    auth::Principal,
    cases::{access, domain::MemberRole, entity::member},
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, after_in_range, decode_cursor, encode_cursor},
};

/// `SELECT message_id FROM message_recipient WHERE user_id = ? AND deleted_at IS NULL`.
fn received_by(user: Uuid, unread_only: bool) -> SelectStatement {
    let mut q = Query::select();
    q.column(recipient::Column::MessageId)
        .from(recipient::Entity)
        .and_where(recipient::Column::UserId.eq(user))
        .and_where(recipient::Column::DeletedAt.is_null());
    if unread_only {
        q.and_where(recipient::Column::ReadAt.is_null());
    }
    q.to_owned()
}

/// `EXISTS` the caller's visible recipient row of the outer `message` row: a probe of the key
/// `(message_id, user_id)` per row already narrowed down by an index.
fn received_row(user: Uuid, unread_only: bool) -> SelectStatement {
    let mut q = Query::select();
    q.expr(Expr::val(1))
        .from(recipient::Entity)
        .and_where(
            Expr::col((recipient::Entity, recipient::Column::MessageId))
                .equals((message::Entity, message::Column::Id)),
        )
        .and_where(recipient::Column::UserId.eq(user))
        .and_where(recipient::Column::DeletedAt.is_null());
    if unread_only {
        q.and_where(recipient::Column::ReadAt.is_null());
    }
    q.to_owned()
}

/// Every message ever addressed to `user`, hidden or not (statistics).
fn addressed_to(user: Uuid) -> SelectStatement {
    Query::select()
        .column(recipient::Column::MessageId)
        .from(recipient::Entity)
        .and_where(recipient::Column::UserId.eq(user))
        .to_owned()
}

fn sent_by(user: Uuid) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(message::Column::SenderId.eq(user))
        .add(message::Column::SenderDeletedAt.is_null())
}

/// [`sent_by`] as a check of rows found otherwise (a search's few matches): on SQLite the
/// sender's index would walk every message they ever sent instead, probing each against the
/// matches; a unary `+` keeps the column off the index.
fn sent_by_checked(backend: DbBackend, user: Uuid) -> sea_orm::Condition {
    match backend {
        DbBackend::Postgres => sent_by(user),
        _ => sea_orm::Condition::all()
            .add(Expr::cust_with_values(
                "+\"message\".\"sender_id\" = ?",
                [user],
            ))
            .add(message::Column::SenderDeletedAt.is_null()),
    }
}

/// For aggregates over all of the user's messages: the set of their cases, built once.
fn in_my_cases(user: Uuid) -> SimpleExpr {
    message::Column::CaseId.in_subquery(access::member_cases(user))
}

/// For pages walked in an index's order: a probe of the user's membership per row visited.
fn in_my_case_row(user: Uuid) -> SimpleExpr {
    access::is_member_of(user, (message::Entity, message::Column::CaseId))
}

/// Messages `user` may see: sent or received, not hidden, in a case they are on *now*.
pub fn visible_condition(user: Uuid) -> sea_orm::Condition {
    sea_orm::Condition::all().add(in_my_cases(user)).add(
        sea_orm::Condition::any()
            .add(sent_by(user))
            .add(message::Column::Id.in_subquery(received_by(user, false))),
    )
}

/// [`visible_condition`] for rows already narrowed down by an index (one case's messages, the
/// replies to a page of messages): the "received" half is a correlated `EXISTS` probing the
/// recipient key `(message_id, user_id)` once per row, instead of an `IN` over every message
/// the user ever received (tens of thousands for an attorney, built on every call).
pub fn visible_row_condition(user: Uuid) -> sea_orm::Condition {
    sea_orm::Condition::all().add(in_my_case_row(user)).add(
        sea_orm::Condition::any()
            .add(sent_by(user))
            .add(Expr::exists(received_row(user, false))),
    )
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct InboxFilter {
    /// `received` (default) or `sent`.
    #[serde(rename = "box")]
    #[param(rename = "box")]
    pub box_: Option<String>,
    /// Only messages the caller has not read (received box only).
    pub unread: Option<bool>,
    pub case_id: Option<Uuid>,
    /// Full text over the bodies (every word, whole words): newest first, like the box itself.
    pub q: Option<String>,
    /// With `q`: `newest` (default: every match) or `relevance` (best match first, among the
    /// newest 250 matches of the box searched after its other filters; older matches are
    /// found newest first or by narrowing the search).
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CaseMessagesFilter {
    /// Only the replies to this message.
    pub thread: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Keyset position: `(created_at, id)` newest first, or `(score, id)` when ranking.
#[derive(Serialize, Deserialize)]
struct Cursor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s: Option<Score>,
    id: Uuid,
}

/// A relevance score carried exactly, as the bits of the `f64`: a JSON number may parse back
/// one unit in the last place off, and the keyset compares scores for equality (ties are
/// common), so a page would repeat or skip the rows tied with the cursor's.
#[derive(Clone, Copy, Serialize, Deserialize)]
#[serde(transparent)]
struct Score(u64);

impl From<f64> for Score {
    fn from(s: f64) -> Self {
        Self(s.to_bits())
    }
}

impl From<Score> for f64 {
    fn from(s: Score) -> Self {
        f64::from_bits(s.0)
    }
}

/// The search text, checked.
fn search_text(v: &mut Validator, q: Option<&str>) -> Option<String> {
    let t = q.map(str::trim).filter(|s| !s.is_empty())?;
    if t.chars().count() > 200 || t.chars().any(char::is_control) {
        v.push(
            "q",
            "must be at most 200 characters, without control characters",
        );
        return None;
    }
    Some(t.to_owned())
}

/// SQLite's relevance of a matching `message_fts` row: BM25's term-frequency saturation and
/// length normalisation (k1 = 1.2, b = 0.75, against a typical body of 400 characters)
/// without its inverse document frequency. FTS5's `bm25()` computes that frequency by
/// reading every match of each query term in the whole firm, once per query: a cost that
/// grows with the firm rather than with the caller's matches (a client's search took 9.7 ms
/// on the scale-100 firm against 2.5 ms at scale 1), and a score that shifts as other
/// people's messages arrive. Every result holds every term, so the frequency only weighed
/// terms against each other. The term count is what `highlight()` inserts: one marker per
/// matched token of the body (`t`, all query words together, saturated once rather than per
/// word); `n` is the body's length in characters.
const SQLITE_SCORE: &str = "t * 2.2 / (t + 1.2 * (0.25 + 0.75 * n / 400.0))";

/// A search whose first short walk did not fill the page ([`page_searched`]), with at least
/// this many matches among the caller's messages of the box searched, is walked in date order,
/// each message probed (at most [`WALK_ROWS`] of them); one with fewer is read as the set of
/// its matches and sorted. A walk reaches a page of `k` matches
/// after about `k × box / matches` messages and the set holds fewer than this many, so either
/// way a page costs a few hundred rows however large the box (the two balance near
/// √(k × box): 460 for 21 of 10,000).
const COMMON_MATCHES: u64 = 500;

/// A search ranked by relevance scores the newest this many matches of the box searched
/// (after its filters) and returns the best of them: a bounded cost per page, where scoring
/// every match cost O(matches) (41 ms for an attorney's 2,947 matches on the scale-100 SQLite
/// firm). Older matches are found by the newest-first search, which reads them all (ADR 0013).
pub const RANKED_WINDOW: u64 = 250;

/// A full-text search on one backend by one reader: the match and a relevance score (higher
/// is better).
#[derive(Clone)]
struct Search {
    backend: DbBackend,
    text: String,
    /// The reader's audience token for the box searched (sender or recipient).
    audience: String,
    /// SQLite: only matches with a rowid in this range can be probed (a walk's messages'),
    /// so the list of matches is read for this range of the index alone ([`Walk::page`]).
    rowids: Option<(i64, i64)>,
}

impl Search {
    fn ts_query(&self) -> SimpleExpr {
        Expr::cust_with_values("websearch_to_tsquery('simple', $1)", [self.text.clone()])
    }

    /// The newest [`RANKED_WINDOW`] matches among the messages `filter` keeps (the box
    /// searched, the caller's current cases, the case asked for), newest first, with what
    /// [`Self::window_score`] scores them by; the ranking reads the window as `w`. Newest by
    /// the order the index delivers them: SQLite's rowids (the order messages were sent, as
    /// `message_fts` is aligned with `message`: migration `m20261205_000001`), PostgreSQL's
    /// `(created_at, id)`. Only these rows are scored, so a ranked page costs the same
    /// whether the box holds 500 matches or 50,000 (ADR 0013).
    fn window(&self, filter: sea_orm::Condition) -> SelectStatement {
        let mut q = Query::select();
        q.expr_as(
            Expr::col((message::Entity, message::Column::Id)),
            Alias::new("id"),
        );
        match self.backend {
            DbBackend::Postgres => {
                // The GIN index finds every match of the reader's in any order; sorted newest
                // first behind a fence (`OFFSET 0`, so the planner cannot merge the box's
                // filter into it), the filter then runs row by row in that order and stops
                // with the window full. As a scalar sub-select it stays a per-row check: left
                // as plain `EXISTS`, the planner joins the recipient and membership rows of
                // every match first (2,947 probes for the scale-100 firm's busiest attorney,
                // over half of the statement). The subquery keeps the name `message`, so
                // the filter's columns mean the same rows. The tsvector, not its score: scored
                // in the outer query, after the `LIMIT`.
                use message::Column as M;
                let matches = Query::select()
                    .columns([
                        M::Id,
                        M::CaseId,
                        M::SenderId,
                        M::SenderDeletedAt,
                        M::CreatedAt,
                    ])
                    .expr_as(Expr::cust("message.search"), Alias::new("search"))
                    .from(message::Entity)
                    .and_where(self.matches("message"))
                    .order_by(M::CreatedAt, Order::Desc)
                    .order_by(M::Id, Order::Desc)
                    .offset(0)
                    .to_owned();
                let per_row = Query::select().expr(SimpleExpr::from(filter)).to_owned();
                q.expr_as(Expr::cust("message.search"), Alias::new("search"))
                    .from_subquery(matches, message::Entity)
                    .and_where(SimpleExpr::from(per_row))
                    .order_by((message::Entity, M::CreatedAt), Order::Desc)
                    .order_by((message::Entity, M::Id), Order::Desc);
            }
            _ => {
                // FTS5 hands its matches over in descending rowid order (no sort): the walk
                // stops at the window's last row; only the rows it keeps call `highlight()`.
                // `CROSS JOIN` keeps that order of the loops: with an index on `message` for a
                // filter (`case_id`), SQLite could otherwise loop over the case's messages and
                // run a full-text query for each (the plan that hung the scale-10 bench).
                q.expr_as(
                    Expr::cust(
                        "length(highlight(message_fts, 0, char(1), '')) \
                         - length(message_fts.body)",
                    ),
                    Alias::new("t"),
                )
                .expr_as(Expr::cust("length(message_fts.body)"), Alias::new("n"))
                .from(Alias::new("message_fts"))
                // (sea-query drops the `ON` of a cross join: the link is in the `WHERE`.)
                .cross_join(message::Entity)
                .and_where(Expr::cust("message.rowid = message_fts.rowid"))
                .and_where(Expr::cust_with_values(
                    "message_fts MATCH ?",
                    [search_index::fts5_query(&self.text, &self.audience)],
                ))
                .cond_where(filter)
                .order_by_expr(Expr::cust("message_fts.rowid"), Order::Desc);
            }
        }
        q.limit(RANKED_WINDOW).to_owned()
    }

    /// The relevance of a row of [`Self::window`] (higher is better). PostgreSQL: `ts_rank`
    /// of the stored tsvector; SQLite: [`SQLITE_SCORE`]. Either is a function of the message
    /// alone, so the pages of a ranked search stay in order while other messages arrive.
    fn window_score(&self) -> SimpleExpr {
        match self.backend {
            DbBackend::Postgres => {
                Expr::cust_with_exprs("ts_rank(w.search, $1)::float8", [self.ts_query()])
            }
            _ => Expr::cust(SQLITE_SCORE),
        }
    }

    /// `table` (`message` or an alias of it) matches the text and carries the reader's token.
    /// SQLite: its rowid is among the matches' (aligned with `message_fts`, migration
    /// `m20261205_000001`), a list FTS5 reads from its index alone and SQLite builds once per
    /// statement; PostgreSQL: the row's own tsvectors.
    fn matches(&self, table: &str) -> SimpleExpr {
        match self.backend {
            DbBackend::Postgres => Expr::cust_with_values(
                format!(
                    "({table}.search @@ websearch_to_tsquery('simple', $1) \
                     AND {table}.audience @@ $2::tsquery)"
                ),
                [self.text.clone(), search_index::tsquery(&self.audience)],
            ),
            _ => {
                let mut values = vec![sea_orm::Value::from(search_index::fts5_query(
                    &self.text,
                    &self.audience,
                ))];
                // FTS5 seeks each term's list to the range and stops at its end.
                let range = match self.rowids {
                    Some((lo, hi)) => {
                        values.extend([lo.into(), hi.into()]);
                        " AND rowid >= ? AND rowid <= ?"
                    }
                    None => "",
                };
                Expr::cust_with_values(
                    format!(
                        "{table}.rowid IN (SELECT rowid FROM message_fts \
                         WHERE message_fts MATCH ?{range})"
                    ),
                    values,
                )
            }
        }
    }

    /// Probe the message of each row walked (`message_id` of the outer row) for a match: a
    /// key lookup, never a join the planner could turn into reading every match first. On
    /// SQLite that is a lookup in the list of the reader's matches, built once per statement
    /// ([`Self::matches`]; within the walk's range of rowids, [`Walk::page`]): a full-text
    /// query per row probed instead cost about 22 µs a row on the scale-100 firm and 43 µs on
    /// the scale-1 one, so a short walk paid 4.5 ms where the list took 0.4 ms at scale 1
    /// (docs/benchmarks.md, round 18).
    fn probe(&self, message_id: impl sea_orm::sea_query::IntoColumnRef) -> SimpleExpr {
        Expr::exists(
            Query::select()
                .expr(Expr::val(1))
                .from_as(message::Entity, Alias::new("m"))
                .and_where(Expr::col((Alias::new("m"), message::Column::Id)).equals(message_id))
                .and_where(self.matches("m"))
                .limit(1)
                .offset(0)
                .to_owned(),
        )
    }

    /// Does the caller have at least [`COMMON_MATCHES`] matches in the box searched? Reads at
    /// most that many entries of the index.
    async fn is_common<C: ConnectionTrait>(&self, conn: &C) -> Result<bool> {
        // SQLite counts index entries alone; PostgreSQL's GIN scan checks the rows it finds.
        let hits = match self.backend {
            DbBackend::Postgres => Query::select()
                .expr(Expr::val(1))
                .from(message::Entity)
                .and_where(self.matches("message"))
                .limit(COMMON_MATCHES)
                .to_owned(),
            _ => Query::select()
                .expr(Expr::val(1))
                .from(Alias::new("message_fts"))
                .and_where(Expr::cust_with_values(
                    "message_fts MATCH ?",
                    [search_index::fts5_query(&self.text, &self.audience)],
                ))
                .limit(COMMON_MATCHES)
                .to_owned(),
        };
        let q = Query::select()
            .expr_as(Expr::cust("COUNT(*)"), Alias::new("n"))
            .from_subquery(hits, Alias::new("hits"))
            .to_owned();
        let n: i64 = match conn.query_one_raw(self.backend.build(&q)).await? {
            Some(row) => row.try_get("", "n")?,
            None => 0,
        };
        Ok(n as u64 >= COMMON_MATCHES)
    }
}

/// The rows a newest-first page is read from, in keyset order `(created_at, id)`: the values
/// are the same either way (a recipient row copies its message's `created_at`); what differs
/// is which index delivers rows in that order so the `LIMIT` ends the scan.
#[derive(Clone)]
enum Rows {
    /// Messages: one case's (`ix_message_case_created`) or the sender's
    /// (`ix_message_sender_created`).
    Messages(Select<message::Entity>),
    /// The caller's own recipient rows, across all their cases (`ix_message_recipient_inbox_page`
    /// / `_unread_page`). The page of message ids is read from the index alone, then only those
    /// messages are fetched: however far off the planner's estimate of the case filter is, it
    /// never joins every received message to sort them.
    Received(Select<recipient::Entity>),
}

/// Rows a search walk may visit before it falls back to the set of matches. A page of `k`
/// matches needs about `k / density` rows; 1,000 rows fill a page of 21 down to a density of
/// 2 %, and a walk that a count of at least [`COMMON_MATCHES`] started sees 5 % in a box of
/// 10,000 on average.
const WALK_ROWS: u64 = 1_000;

/// Rows of the box the first, short walk of a search probes per row of the page asked for
/// ([`page_searched`]): a page fills within them when at least one message in five matches.
const FIRST_WALK_PER_ROW: u64 = 5;

/// A search walk in date order and the index range it walks.
struct Walk {
    /// The box's rows, each checked like a row of the box; the probe is added per walk.
    rows: Rows,
    /// The box's own rows in walk order with only what its index holds (no probe): what the
    /// walk's length is counted in.
    span: Rows,
}

impl Walk {
    /// The key of the last of `rows` rows the walk may visit after the cursor, or `None` when
    /// fewer are left (then the walk is the whole rest of the box). One index range, read to
    /// an offset.
    async fn end<C: ConnectionTrait>(
        &self,
        conn: &C,
        cursor: Option<&Cursor>,
        rows: u64,
    ) -> Result<Option<(DateTime<Utc>, Uuid)>> {
        match self.span_after(cursor)? {
            Rows::Received(q) => {
                let key = (
                    recipient::Column::MessageCreatedAt,
                    recipient::Column::MessageId,
                );
                key_at_walk_end(conn, q, key, rows).await
            }
            Rows::Messages(q) => {
                let key = (message::Column::CreatedAt, message::Column::Id);
                key_at_walk_end(conn, q, key, rows).await
            }
        }
    }

    /// The box's own rows after the cursor (all of them on a first page).
    fn span_after(&self, cursor: Option<&Cursor>) -> Result<Rows> {
        match cursor {
            Some(c) => self.span.clone().after(c),
            None => Ok(self.span.clone()),
        }
    }

    /// The page of a walk of at most `rows` rows after the cursor, each probed for a match;
    /// `None` if it did not fill the page and the box goes on.
    async fn page<C: ConnectionTrait>(
        &self,
        conn: &C,
        search: &Search,
        rows: u64,
        limit: Limit,
        cursor: Option<&Cursor>,
    ) -> Result<Option<Fetched>> {
        let end = self.end(conn, cursor, rows).await?;
        // SQLite probes each message in the list of the reader's matches: read only the part
        // of it the walk can meet, between the least and greatest rowid of the messages walked.
        // A live firm's rowids follow the order messages are written, so that is about the
        // walk's own matches, not every match of the reader since the first (2,876 for
        // "settlement" on the scale-100 firm); out of order, it is the whole list as before.
        let rowids = match search.backend {
            DbBackend::Postgres => None,
            _ => {
                self.span_after(cursor)?
                    .within(end)
                    .rowid_range(conn)
                    .await?
            }
        };
        let search = Search {
            rowids,
            ..search.clone()
        };
        let walked = self.rows.clone().matching(&search).within(end);
        let fetched = fetch(conn, walked, limit, cursor).await?;
        Ok((end.is_none() || fetched.0.len() as u64 > limit.get()).then_some(fetched))
    }
}

/// The `(sort, id)` key of the `rows`th row of `q`, newest first.
async fn key_at_walk_end<E: EntityTrait, C: ConnectionTrait>(
    conn: &C,
    q: Select<E>,
    (sort, id): (E::Column, E::Column),
    rows: u64,
) -> Result<Option<(DateTime<Utc>, Uuid)>> {
    Ok(q.select_only()
        .column(sort)
        .column(id)
        .order_by_desc(sort)
        .order_by_desc(id)
        .offset(rows - 1)
        .limit(1)
        .into_tuple()
        .one(conn)
        .await?)
}

impl Rows {
    /// The `(created_at, id)` key columns of these rows.
    fn key(&self) -> (Expr, Expr) {
        match self {
            Self::Messages(_) => (
                Expr::col((message::Entity, message::Column::CreatedAt)),
                Expr::col((message::Entity, message::Column::Id)),
            ),
            Self::Received(_) => (
                Expr::col((recipient::Entity, recipient::Column::MessageCreatedAt)),
                Expr::col((recipient::Entity, recipient::Column::MessageId)),
            ),
        }
    }

    fn filter(self, c: impl sea_orm::sea_query::IntoCondition) -> Self {
        match self {
            Self::Messages(q) => Self::Messages(q.filter(c)),
            Self::Received(q) => Self::Received(q.filter(c)),
        }
    }

    /// Only the rows after the cursor, newest first.
    fn after(self, c: &Cursor) -> Result<Self> {
        let t =
            c.t.ok_or_else(|| Error::invalid("cursor", "is not a cursor this server issued"))?;
        let (sort, id) = self.key();
        Ok(self.filter(after_in_range(sort, id, t, c.id, true)))
    }

    /// Only the rows of the walk up to and including its end `(at, last)`, bounding the same
    /// index range as the cursor does from the other side; all of them without an end.
    fn within(self, end: Option<(DateTime<Utc>, Uuid)>) -> Self {
        let Some((at, last)) = end else { return self };
        let (sort, id) = self.key();
        self.filter(
            sea_orm::Condition::all()
                .add(sort.clone().gte(at))
                .add(sea_orm::Condition::any().add(sort.gt(at)).add(id.gte(last))),
        )
    }

    /// SQLite: the least and greatest rowid of these rows' messages (`None` when there are no
    /// rows). Each message is found by its key, so this costs a lookup per row.
    async fn rowid_range<C: ConnectionTrait>(self, conn: &C) -> Result<Option<(i64, i64)>> {
        let q = match self {
            Self::Messages(q) => q.select_only(),
            Self::Received(q) => message::Entity::find().select_only().filter(
                message::Column::Id.in_subquery(
                    q.select_only()
                        .column(recipient::Column::MessageId)
                        .into_query(),
                ),
            ),
        };
        let range: Option<(Option<i64>, Option<i64>)> = q
            .column_as(Expr::cust("MIN(\"message\".rowid)"), "lo")
            .column_as(Expr::cust("MAX(\"message\".rowid)"), "hi")
            .into_tuple()
            .one(conn)
            .await?;
        Ok(match range {
            Some((Some(lo), Some(hi))) => Some((lo, hi)),
            _ => None,
        })
    }

    /// Only the rows whose message matches `search`, probed one by one in the walk's order.
    fn matching(self, search: &Search) -> Self {
        let probe = match &self {
            Self::Messages(_) => search.probe((message::Entity, message::Column::Id)),
            Self::Received(_) => search.probe((recipient::Entity, recipient::Column::MessageId)),
        };
        self.filter(probe)
    }
}

/// `ids`' messages, in that order.
async fn in_order<C: ConnectionTrait>(conn: &C, ids: &[Uuid]) -> Result<Vec<message::Model>> {
    let mut by_id: HashMap<Uuid, message::Model> = message::Entity::find()
        .filter(message::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(|m| (m.id, m))
        .collect();
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// Messages of one page and their relevance scores (none in date order).
type Fetched = (Vec<message::Model>, Vec<Option<f64>>);

/// One page of `rows`, newest first.
async fn page<C: ConnectionTrait>(
    conn: &C,
    viewer: Uuid,
    rows: Rows,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<MessageView>> {
    let cursor: Option<Cursor> = decode_cursor(cursor)?;
    let fetched = fetch(conn, rows, limit, cursor.as_ref()).await?;
    finish(conn, viewer, fetched, limit).await
}

/// One page of a search ranked by relevance: the best of the newest [`RANKED_WINDOW`]
/// matches among the messages `filter` keeps ([`Search::window`]).
async fn page_ranked<C: ConnectionTrait>(
    conn: &C,
    viewer: Uuid,
    s: &Search,
    filter: sea_orm::Condition,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<MessageView>> {
    let cursor: Option<Cursor> = decode_cursor(cursor)?;
    let w = Alias::new("w");
    let score = s.window_score();
    let mut q = Query::select();
    q.column((w.clone(), Alias::new("id")))
        .expr_as(score.clone(), Alias::new("score"))
        .from_subquery(s.window(filter), w.clone());
    if let Some(c) = cursor {
        let after: f64 =
            c.s.ok_or_else(|| Error::invalid("cursor", "is not a cursor this server issued"))?
                .into();
        // `(score, id)` after the cursor's, in `(score desc, id desc)` order.
        q.cond_where(
            sea_orm::Condition::any().add(score.clone().lt(after)).add(
                sea_orm::Condition::all()
                    .add(score.clone().eq(after))
                    .add(Expr::col((w.clone(), Alias::new("id"))).lt(c.id)),
            ),
        );
    }
    q.order_by_expr(score, Order::Desc)
        .order_by((w, Alias::new("id")), Order::Desc)
        .limit(limit.get() + 1);
    let mut ranked: Vec<(Uuid, f64)> = Vec::new();
    for row in conn.query_all_raw(s.backend.build(&q)).await? {
        ranked.push((row.try_get("", "id")?, row.try_get("", "score")?));
    }
    let ids: Vec<Uuid> = ranked.iter().map(|(id, _)| *id).collect();
    let scores: HashMap<Uuid, f64> = ranked.into_iter().collect();
    let rows = in_order(conn, &ids).await?;
    let keys = rows.iter().map(|m| scores.get(&m.id).copied()).collect();
    finish(conn, viewer, (rows, keys), limit).await
}

/// One page of a search, newest first, by the cheapest of three shapes that give the same page:
/// 1. a short walk of the box in date order, each row probed ([`FIRST_WALK_PER_ROW`] rows per
///    row of the page): enough when the matches are dense, as the words people look for in
///    their own messages mostly are, and then nothing is counted (on PostgreSQL the count
///    reads the term's posting list across the firm: 3.4 ms on the scale-100 firm);
/// 2. with fewer than [`COMMON_MATCHES`] matches, their set, sorted;
/// 3. otherwise a walk of at most [`WALK_ROWS`] rows, then the set if that did not fill the
///    page (the matches are further back, or filtered out by the box).
async fn page_searched<C: ConnectionTrait>(
    conn: &C,
    viewer: Uuid,
    walk: &Walk,
    search: &Search,
    set: Rows,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<MessageView>> {
    let cursor: Option<Cursor> = decode_cursor(cursor)?;
    let c = cursor.as_ref();
    let first = (limit.get() + 1) * FIRST_WALK_PER_ROW;
    let fetched = match walk.page(conn, search, first, limit, c).await? {
        Some(page) => page,
        None if !search.is_common(conn).await? => fetch(conn, set, limit, c).await?,
        None => match walk.page(conn, search, WALK_ROWS, limit, c).await? {
            Some(page) => page,
            None => fetch(conn, set, limit, c).await?,
        },
    };
    finish(conn, viewer, fetched, limit).await
}

/// One page's rows (`limit + 1` of them when there are more) after the cursor, newest first.
async fn fetch<C: ConnectionTrait>(
    conn: &C,
    rows: Rows,
    limit: Limit,
    cursor: Option<&Cursor>,
) -> Result<Fetched> {
    let rows = match cursor {
        Some(c) => rows.after(c)?,
        None => rows,
    };
    let n = limit.get() + 1;
    let rows = match rows {
        Rows::Messages(q) => {
            q.order_by_desc(message::Column::CreatedAt)
                .order_by_desc(message::Column::Id)
                .limit(n)
                .all(conn)
                .await?
        }
        Rows::Received(q) => {
            let ids: Vec<Uuid> = q
                .select_only()
                .column(recipient::Column::MessageId)
                .order_by_desc(recipient::Column::MessageCreatedAt)
                .order_by_desc(recipient::Column::MessageId)
                .limit(n)
                .into_tuple()
                .all(conn)
                .await?;
            in_order(conn, &ids).await?
        }
    };
    let keys = vec![None; rows.len()];
    Ok((rows, keys))
}

/// The page of `fetched` rows: at most `limit`, a cursor when there were more, their views.
async fn finish<C: ConnectionTrait>(
    conn: &C,
    viewer: Uuid,
    (mut rows, key): Fetched,
    limit: Limit,
) -> Result<Page<MessageView>> {
    let more = rows.len() as u64 > limit.get();
    rows.truncate(limit.get() as usize);
    let next_cursor = if more {
        rows.last().map(|m| {
            let s = key[rows.len() - 1];
            encode_cursor(&Cursor {
                t: s.is_none().then_some(m.created_at),
                s: s.map(Score::from),
                id: m.id,
            })
        })
    } else {
        None
    };
    Ok(Page {
        items: views(conn, viewer, rows).await?,
        next_cursor,
    })
}

async fn audit_list(
    state: &AppState,
    p: &Principal,
    case_id: Option<Uuid>,
    page: &Page<MessageView>,
) -> Result<()> {
    let mut e = NewEntry::new("message.list", "message")
        .by(p)
        .details(serde_json::json!({
            "count": page.items.len(),
            "message_ids": page.items.iter().map(|m| m.id).collect::<Vec<_>>(),
        }));
    if let Some(c) = case_id {
        e = e.case(c);
    }
    state.audit.record(e).await
}

/// `GET /messages`: the caller's received (or `box=sent`) messages across their cases.
pub async fn inbox(state: &AppState, p: &Principal, f: InboxFilter) -> Result<Page<MessageView>> {
    let limit = Limit::parse(f.limit)?;
    let mut v = Validator::default();
    let sent = match f.box_.as_deref().unwrap_or("received") {
        "received" => false,
        "sent" => true,
        _ => {
            v.push("box", "must be received or sent");
            false
        }
    };
    let unread = f.unread.unwrap_or(false);
    if sent && unread {
        v.push("unread", "applies to received messages only");
    }
    let text = search_text(&mut v, f.q.as_deref());
    let relevance = match f.sort.as_deref() {
        None | Some("newest") => false,
        Some("relevance") => true,
        Some(_) => {
            v.push("sort", "must be newest or relevance");
            false
        }
    };
    if relevance && text.is_none() {
        v.push("sort", "relevance orders a search: give q");
    }
    v.finish()?;
    let conn = state.db.conn();
    if let Some(c) = f.case_id {
        access::require(state, conn, p, c).await?;
    }
    let me = p.user_id;
    let in_case = |q: Select<message::Entity>| match f.case_id {
        // One case: its own index on `message` bounds the walk better than the inbox's.
        Some(c) => q.filter(message::Column::CaseId.eq(c)),
        None => q,
    };
    // The full-text match holds only messages carrying the caller's token for the box searched.
    let search = text.map(|text| Search {
        backend: state.db.backend(),
        rowids: None,
        text,
        audience: if sent {
            search_index::sender_token(me)
        } else {
            search_index::recipient_token(me)
        },
    });
    // The box in its own index order with only what its index holds: what a search walk's
    // length is counted in.
    let span = if sent {
        Rows::Messages(in_case(
            message::Entity::find().filter(message::Column::SenderId.eq(me)),
        ))
    } else if let Some(c) = f.case_id {
        // One case: its own index on `message` bounds the walk better than the inbox's.
        Rows::Messages(message::Entity::find().filter(message::Column::CaseId.eq(c)))
    } else {
        // One recipient row per message at most (the key is `(message_id, user_id)`).
        let mut q = recipient::Entity::find()
            .filter(recipient::Column::UserId.eq(me))
            .filter(recipient::Column::DeletedAt.is_null());
        if unread {
            q = q.filter(recipient::Column::ReadAt.is_null());
        }
        Rows::Received(q)
    };
    // ... and each row checked: in a case the caller is on now, theirs and not hidden.
    let walk = match span.clone() {
        Rows::Received(q) => Rows::Received(q.filter(access::is_member_of(
            me,
            (recipient::Entity, recipient::Column::CaseId),
        ))),
        Rows::Messages(q) => {
            let q = q.filter(in_my_case_row(me));
            Rows::Messages(if sent {
                q.filter(message::Column::SenderDeletedAt.is_null())
            } else {
                // Each of the case's messages probes the caller's recipient row.
                q.filter(Expr::exists(received_row(me, unread)))
            })
        }
    };
    // A match in the box searched, checked row by row: theirs and not hidden, in the case
    // asked for.
    let in_box = |search: &Search| {
        let c = if sent {
            sent_by_checked(search.backend, me)
        } else {
            sea_orm::Condition::all().add(Expr::exists(received_row(me, unread)))
        };
        match f.case_id {
            Some(id) => c.add(message::Column::CaseId.eq(id)),
            None => c,
        }
    };
    // A search's matches as a set, each checked like a row of the box, then sorted.
    let set = |search: &Search| {
        Rows::Messages(
            message::Entity::find()
                .filter(in_my_case_row(me))
                .filter(search.matches("message"))
                .filter(in_box(search)),
        )
    };
    let cursor = f.cursor.as_deref();
    let out = match search {
        Some(search) if relevance => {
            let filter = sea_orm::Condition::all()
                .add(in_my_case_row(me))
                .add(in_box(&search));
            page_ranked(conn, me, &search, filter, limit, cursor).await?
        }
        Some(search) => {
            let walk = Walk { rows: walk, span };
            page_searched(conn, me, &walk, &search, set(&search), limit, cursor).await?
        }
        None => page(conn, me, walk, limit, cursor).await?,
    };
    audit_list(state, p, f.case_id, &out).await?;
    Ok(out)
}

/// `GET /cases/{id}/messages` (members): what the caller sent or received there, newest first.
pub async fn case_messages(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    f: CaseMessagesFilter,
) -> Result<Page<MessageView>> {
    let limit = Limit::parse(f.limit)?;
    let conn = state.db.conn();
    access::require(state, conn, p, case_id).await?;
    let mut q = message::Entity::find()
        .filter(message::Column::CaseId.eq(case_id))
        .filter(visible_row_condition(p.user_id));
    if let Some(t) = f.thread {
        q = q.filter(message::Column::ParentId.eq(t));
    }
    let out = page(
        conn,
        p.user_id,
        Rows::Messages(q),
        limit,
        f.cursor.as_deref(),
    )
    .await?;
    audit_list(state, p, Some(case_id), &out).await?;
    Ok(out)
}

/// The page of `limit` messages of a case's thread (newest first) that shows `shown`, and
/// whether it is an earlier page than the newest: the newest page when `shown` is among its
/// newest `limit` messages, else the page whose newest message it is. A message the caller may
/// not see there (another case's, hidden, never theirs) gives the newest page, as if not asked
/// for. Locating it reads two small index ranges, unaudited (nothing of them is shown); the
/// page is read and audited as [`case_messages`] does.
pub async fn case_messages_showing(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    shown: Uuid,
    limit: i64,
) -> Result<(Page<MessageView>, bool)> {
    let page_size = Limit::parse(Some(limit))?;
    let conn = state.db.conn();
    let thread = || {
        message::Entity::find()
            .select_only()
            .filter(message::Column::CaseId.eq(case_id))
            .filter(visible_row_condition(p.user_id))
    };
    let at: Option<DateTime<Utc>> = thread()
        .column(message::Column::CreatedAt)
        .filter(message::Column::Id.eq(shown))
        .into_tuple()
        .one(conn)
        .await?;
    let mut cursor = None;
    if let Some(t) = at {
        let (sort, id) = (
            Expr::col((message::Entity, message::Column::CreatedAt)),
            Expr::col((message::Entity, message::Column::Id)),
        );
        let newer: Vec<Uuid> = thread()
            .column(message::Column::Id)
            .filter(after_in_range(sort, id, t, shown, false))
            .limit(page_size.get())
            .into_tuple()
            .all(conn)
            .await?;
        if newer.len() as u64 >= page_size.get() {
            // The key just newer than `shown`'s (same time, next id): the page starts with it.
            cursor = Some(encode_cursor(&Cursor {
                t: Some(t),
                s: None,
                id: Uuid::from_u128(shown.as_u128().saturating_add(1)),
            }));
        }
    }
    let earlier = cursor.is_some();
    let f = CaseMessagesFilter {
        limit: Some(limit),
        cursor,
        ..Default::default()
    };
    Ok((case_messages(state, p, case_id, f).await?, earlier))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UnreadCount {
    pub total: i64,
    /// Case id → unread messages; cases without unread messages are left out.
    #[schema(value_type = BTreeMap<Uuid, i64>)]
    pub by_case: Box<RawValue>,
}

/// Unread, not hidden, in cases the user is on now: the total and case → count. The counters
/// of the user's membership rows (kept by triggers), only the rows that have any: one range of
/// `ix_case_member_unread`, however many messages and cases are behind it.
///
/// The counters come back in one row, written out as the JSON object directly: an attorney of
/// a large firm has unread messages in over a thousand cases, and one row per case (on SQLite a
/// hand-over between sqlx's connection thread and the request each), or a JSON array decoded
/// into a map and encoded again, cost more than the index range (docs/benchmarks.md, rounds
/// 17 and 18). Each case is one record of its id's 16 bytes (PostgreSQL `uuid_send`, SQLite's
/// blob as stored) followed by its count's digits, records joined by commas: no UUID is
/// spelled out in SQL and parsed back (round 23: spelling them out in hex was most of SQLite's
/// time for this query), and id and count travel together in one aggregate.
async fn unread_by_case<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<UnreadCount> {
    let records = match conn.get_database_backend() {
        DbBackend::Postgres => {
            "string_agg(uuid_send(case_member.case_id) \
             || convert_to(case_member.unread_messages::text, 'UTF8'), ','::bytea)"
        }
        // `||` and `group_concat` keep a blob's bytes as they are; the cast keeps them a blob.
        _ => "CAST(group_concat(case_member.case_id || case_member.unread_messages, ',') AS BLOB)",
    };
    let row: Option<(Option<i64>, Option<Vec<u8>>)> = with_unread(user)
        .column_as(access::member_sum(member::Mirror::UnreadMessages), "total")
        .column_as(Expr::cust(records), "records")
        .into_tuple()
        .one(conn)
        .await?;
    // Over no rows the sum and the records are NULL.
    let (total, records) = row.unwrap_or_default();
    Ok(UnreadCount {
        total: total.unwrap_or(0),
        by_case: case_counts(&records.unwrap_or_default()).context("unread counters")?,
    })
}

/// `<16-byte case id><count digits>` records joined by commas (the id is read by its length,
/// so its bytes may be anything) as the JSON object `{"<hyphenated case id>": count, …}`.
fn case_counts(records: &[u8]) -> anyhow::Result<Box<RawValue>> {
    use std::fmt::Write;
    let mut out = String::with_capacity(records.len() * 2 + 2);
    out.push('{');
    let mut buf = Uuid::encode_buffer();
    let mut rest = records;
    while !rest.is_empty() {
        anyhow::ensure!(rest.len() > 16, "a record of {} bytes", rest.len());
        let (case, tail) = rest.split_at(16);
        let end = tail.iter().position(|b| *b == b',');
        let digits = &tail[..end.unwrap_or(tail.len())];
        anyhow::ensure!(
            !digits.is_empty() && digits.iter().all(u8::is_ascii_digit),
            "a count that is not a number"
        );
        let n: i64 = std::str::from_utf8(digits)?.parse()?;
        rest = match end {
            // A separator must have a record after it.
            Some(e) => Some(&tail[e + 1..])
                .filter(|r| !r.is_empty())
                .context("a separator at the end")?,
            None => &[],
        };
        if out.len() > 1 {
            out.push(',');
        }
        let case = Uuid::from_slice(case)?;
        write!(out, "\"{}\":{n}", case.hyphenated().encode_lower(&mut buf))?;
    }
    out.push('}');
    Ok(RawValue::from_string(out)?)
}

/// The user's membership rows with unread messages (`ix_case_member_unread`), no columns yet.
fn with_unread(user: Uuid) -> Select<member::Entity> {
    member::Entity::find()
        .select_only()
        .filter(member::Column::UserId.eq(user))
        // Literally the partial index's condition (a bound `> ?` would not match it).
        .filter(Expr::cust("case_member.unread_messages > 0"))
}

/// Total unread messages of a user (the dashboard's `unread_messages`): the sum of the same
/// counters, from the index alone.
pub async fn unread_total<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<i64> {
    let n: Option<Option<i64>> = with_unread(user)
        .column_as(access::member_sum(member::Mirror::UnreadMessages), "n")
        .into_tuple()
        .one(conn)
        .await?;
    Ok(n.flatten().unwrap_or(0))
}

/// `GET /messages/unread-count`.
pub async fn unread_count(state: &AppState, p: &Principal) -> Result<UnreadCount> {
    unread_by_case(state.db.conn(), p.user_id).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseResponseTime {
    pub median_seconds: f64,
    pub samples: usize,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageStats {
    /// Messages the caller sent (and still sees).
    pub sent: i64,
    /// Messages the caller received (and still sees).
    pub received: i64,
    pub unread: i64,
    /// Median seconds from a client's message to the first reply from the firm addressed to
    /// that client, over the caller's cases (admins: every case; clients: their own messages),
    /// for client messages of the last 365 days.
    pub median_response_seconds: Option<f64>,
    /// The same per case (cases with at least one answered client message).
    pub response_by_case: BTreeMap<Uuid, CaseResponseTime>,
}

/// Response times look back this far (bounds the work for a large firm's admin).
pub const RESPONSE_WINDOW_DAYS: i64 = 365;

fn median(xs: &mut [f64]) -> Option<f64> {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => None,
        n if n % 2 == 1 => Some(xs[n / 2]),
        n => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// First-response samples: per case and client, the wait from the first unanswered message of
/// the client until the first staff message addressed to them. `msgs` in time order.
fn response_samples(
    msgs: &[(Uuid, Uuid, Uuid, String, DateTime<Utc>)],
    recipients: &HashMap<Uuid, HashSet<Uuid>>,
    only_client: Option<Uuid>,
) -> BTreeMap<Uuid, Vec<f64>> {
    let mut waiting: HashMap<(Uuid, Uuid), DateTime<Utc>> = HashMap::new();
    let mut out: BTreeMap<Uuid, Vec<f64>> = BTreeMap::new();
    for (id, case_id, sender, role, at) in msgs {
        let is_client = MemberRole::parse(role).is_ok_and(|r| r == MemberRole::Client);
        if is_client {
            if only_client.is_none_or(|c| c == *sender) {
                waiting.entry((*case_id, *sender)).or_insert(*at);
            }
        } else if let Some(to) = recipients.get(id) {
            for client in to {
                if let Some(since) = waiting.remove(&(*case_id, *client)) {
                    out.entry(*case_id)
                        .or_default()
                        .push((*at - since).num_milliseconds() as f64 / 1000.0);
                }
            }
        }
    }
    out
}

/// `GET /messages/stats`: over the caller's current cases only.
pub async fn stats(state: &AppState, p: &Principal) -> Result<MessageStats> {
    let conn = state.db.conn();
    let me = p.user_id;
    let sent: i64 = message::Entity::find()
        .filter(in_my_cases(me))
        .filter(sent_by(me))
        .count(conn)
        .await? as i64;
    let received: i64 = recipient::Entity::find()
        .filter(recipient::Column::UserId.eq(me))
        .filter(recipient::Column::DeletedAt.is_null())
        .filter(recipient::Column::CaseId.in_subquery(access::member_cases(me)))
        .count(conn)
        .await? as i64;
    let unread = unread_total(conn, me).await?;

    // Response times look at the whole conversation of each case the caller is on (staff)
    // or at the caller's own messages (clients): timestamps and roles only, never bodies.
    let mut cases = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column(message::Column::CaseId)
        .column(message::Column::SenderId)
        .column(message::Column::SenderRole)
        .column(message::Column::CreatedAt)
        .filter(
            message::Column::CreatedAt
                .gte(Utc::now() - chrono::Duration::days(RESPONSE_WINDOW_DAYS)),
        );
    // Admins see every case, so their response times are the firm's.
    if !p.is_admin() {
        cases = cases.filter(in_my_cases(me));
    }
    let client_view = !p.is_staff();
    if client_view {
        // The caller's messages and the staff messages addressed to the caller.
        cases = cases.filter(
            sea_orm::Condition::any()
                .add(message::Column::SenderId.eq(me))
                .add(message::Column::Id.in_subquery(addressed_to(me))),
        );
    }
    let msgs: Vec<(Uuid, Uuid, Uuid, String, DateTime<Utc>)> = cases
        .order_by_asc(message::Column::CreatedAt)
        .order_by_asc(message::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    let staff_ids: Vec<Uuid> = msgs
        .iter()
        .filter(|m| MemberRole::parse(&m.3).is_ok_and(MemberRole::is_staff))
        .map(|m| m.0)
        .collect();
    let mut recipients: HashMap<Uuid, HashSet<Uuid>> = HashMap::new();
    for chunk in staff_ids.chunks(1000) {
        let rows: Vec<(Uuid, Uuid)> = recipient::Entity::find()
            .select_only()
            .column(recipient::Column::MessageId)
            .column(recipient::Column::UserId)
            .filter(recipient::Column::MessageId.is_in(chunk.to_vec()))
            .into_tuple()
            .all(conn)
            .await?;
        for (m, u) in rows {
            recipients.entry(m).or_default().insert(u);
        }
    }
    let samples = response_samples(&msgs, &recipients, client_view.then_some(me));
    let mut all: Vec<f64> = samples.values().flatten().copied().collect();
    let response_by_case = samples
        .into_iter()
        .filter_map(|(c, mut xs)| {
            let n = xs.len();
            median(&mut xs).map(|m| {
                (
                    c,
                    CaseResponseTime {
                        median_seconds: m,
                        samples: n,
                    },
                )
            })
        })
        .collect();
    state
        .audit
        .record(NewEntry::new("message.stats", "message").by(p))
        .await?;
    Ok(MessageStats {
        sent,
        received,
        unread,
        median_response_seconds: median(&mut all),
        response_by_case,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn unread_counters_become_an_object_keyed_by_hyphenated_case_ids() {
        assert_eq!(case_counts(&[]).unwrap().get(), "{}");
        let a = Uuid::now_v7();
        // An id whose bytes hold the separator and digits: it is read by its length.
        let b = Uuid::from_bytes(*b",12,3,,,4,5,6,7,");
        let record = |id: &Uuid, n: &str| [id.as_bytes().as_slice(), n.as_bytes()].concat();
        let records = [record(&a, "3"), record(&b, "12")].join(&b',');
        let object: BTreeMap<Uuid, i64> =
            serde_json::from_str(case_counts(&records).unwrap().get()).unwrap();
        assert_eq!(object, BTreeMap::from([(a, 3), (b, 12)]));
        assert!(
            case_counts(&records)
                .unwrap()
                .get()
                .contains(&format!("\"{a}\":3"))
        );
        // A torn id, a missing or non-numeric count, a dangling separator: an error, never a
        // made-up pair.
        let torn = &records[..10];
        let no_count = a.as_bytes().to_vec();
        let not_a_number = record(&a, "x1");
        let signed = record(&a, "+1");
        let dangling = [record(&a, "3").as_slice(), b","].concat();
        let empty_record = [record(&a, "3").as_slice(), b",,"].concat();
        for bad in [
            torn,
            &no_count,
            &not_a_number,
            &signed,
            &dangling,
            &empty_record,
        ] {
            assert!(case_counts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_ranked_cursor_carries_its_score_exactly() {
        // Scores as SQLite computes them (and a few awkward doubles): each must come back
        // bit for bit, since the next page compares scores for equality. (As JSON numbers,
        // about one in five of these parsed back a unit in the last place off.)
        let mut scores: Vec<f64> = vec![
            0.1 + 0.2,
            1.0 / 3.0,
            5e-324,
            f64::MAX,
            2.2250738585072014e-308,
        ];
        for t in 1..40 {
            for n in (1..4000).step_by(7) {
                let (t, n) = (f64::from(t), f64::from(n));
                scores.push(t * 2.2 / (t + 1.2 * (0.25 + 0.75 * n / 400.0)));
            }
        }
        for s in scores {
            let raw = encode_cursor(&Cursor {
                t: None,
                s: Some(s.into()),
                id: Uuid::nil(),
            });
            let back: Cursor = decode_cursor(Some(&raw)).unwrap().unwrap();
            assert_eq!(f64::from(back.s.unwrap()).to_bits(), s.to_bits(), "{s:e}");
        }
    }

    #[test]
    fn response_time_runs_from_the_first_unanswered_client_message() {
        let (case, client, lawyer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let t0 = Utc::now();
        let m = |s: Uuid, role: &str, mins: i64| {
            (
                Uuid::new_v4(),
                case,
                s,
                role.to_owned(),
                t0 + Duration::minutes(mins),
            )
        };
        let msgs = vec![
            m(client, "client", 0),
            m(client, "client", 5),
            m(lawyer, "lead_attorney", 60),
            m(lawyer, "lead_attorney", 70),
            m(client, "client", 100),
            m(lawyer, "attorney", 130),
        ];
        let mut to = HashMap::new();
        for x in &msgs {
            if x.2 == lawyer {
                to.insert(x.0, HashSet::from([client]));
            }
        }
        let s = response_samples(&msgs, &to, None);
        assert_eq!(s[&case], vec![3600.0, 1800.0]);
        let mut xs = s[&case].clone();
        assert_eq!(median(&mut xs), Some(2700.0));
        // A staff message not addressed to the client answers nothing.
        to.clear();
        assert!(response_samples(&msgs, &to, None).is_empty());
    }
}
