//! SQLite: the full text of each case once per member, `case_member_fts`, keyed so that one
//! member's rows are one range of rowids (migration `m20261210_000002_member_case_search`).
//!
//! A member's case search walks their own cases in page order (`ix_case_member_updated` /
//! `_opened`) and keeps those that match. Asking `legal_case_fts` about each walked case costs
//! a probe of the firm-wide index (about 10 µs at 100,000 cases; a term common in the firm but
//! rare among the member's cases probes all of them: 27 ms for "contract garcia"), and the set
//! of the firm's matches costs per firm-wide match. Here the question is "which of *my*
//! memberships match", which FTS5 answers by seeking the member's rowid range: it costs per
//! match among the member's own cases, whatever the size of the firm.
//!
//! The key is `(app_user.rowid << 32) | case_member.rowid`. Both are implicit rowids, which
//! `VACUUM` may renumber: `lawfirm-pro backup` rebuilds the rows in its copy and `lawfirm-pro
//! recount` on a live database ([`SQLITE_REBUILD`]). Each row also carries its member's token
//! (`u` and the user id's hex digits), which the query requires: a row under a key that no
//! longer means what it did can hide a match of the caller's, never stand for another user's
//! case text. The rows only narrow the walk; whether a case is shown is still decided by the
//! caller's membership row it is joined through. PostgreSQL matches `legal_case.search` (GIN)
//! and needs none of this.

use sea_orm::{
    ColumnTrait,
    sea_query::{Expr, Query, SelectStatement, SimpleExpr},
};
use uuid::Uuid;

use super::entity::member;
use crate::db::fts;

/// Empty the index and fill it from every membership and its case.
pub const SQLITE_REBUILD: [&str; 3] = [
    "INSERT INTO case_member_fts(case_member_fts) VALUES ('delete-all')",
    "INSERT INTO case_member_fts(rowid, number, title, description, member)
       SELECT (u.rowid << 32) | m.rowid, c.number, c.title, c.description,
              'u' || lower(hex(m.user_id))
         FROM case_member m JOIN legal_case c ON c.id = m.case_id
         JOIN app_user u ON u.id = m.user_id",
    "INSERT INTO case_member_fts(case_member_fts) VALUES ('optimize')",
];

/// Rows of the index under a key no membership has, plus memberships without a row: what a
/// renumbering of rowids leaves behind.
pub const SQLITE_OUT_OF_STEP: &str = "SELECT
      (SELECT COUNT(*) FROM (SELECT rowid FROM case_member_fts
                             EXCEPT SELECT (u.rowid << 32) | m.rowid
                               FROM case_member m JOIN app_user u ON u.id = m.user_id))
    + (SELECT COUNT(*) FROM (SELECT (u.rowid << 32) | m.rowid
                               FROM case_member m JOIN app_user u ON u.id = m.user_id
                             EXCEPT SELECT rowid FROM case_member_fts)) AS n";

/// The FTS5 query: `text` in the case's columns, on a row of `user`'s.
pub fn fts5_query(text: &str, user: Uuid) -> String {
    format!(
        "{{number title description}} : ({}) AND member : \"u{}\"",
        fts::words(text),
        user.simple()
    )
}

/// Memberships of `user` whose case matches `text`, for a query joined to `case_member`
/// (FTS5 seeks the user's range of keys; each `rowid & 0xffffffff` is a `case_member` rowid).
pub fn sqlite_member_match(text: &str, user: Uuid) -> SimpleExpr {
    Expr::cust_with_values(
        "case_member.rowid IN (
           SELECT case_member_fts.rowid & 4294967295 FROM case_member_fts
            WHERE case_member_fts MATCH ?
              AND case_member_fts.rowid BETWEEN (SELECT rowid << 32 FROM app_user WHERE id = ?)
                  AND (SELECT (rowid << 32) | 4294967295 FROM app_user WHERE id = ?))",
        [
            sea_orm::Value::from(fts5_query(text, user)),
            user.into(),
            user.into(),
        ],
    )
}

/// The cases of `user`'s memberships whose text matches `text`: for a list that is not walked
/// through the memberships (sorted by number).
pub fn sqlite_member_cases(text: &str, user: Uuid) -> SelectStatement {
    Query::select()
        .column(member::Column::CaseId)
        .from(member::Entity)
        .and_where(member::Column::UserId.eq(user))
        .and_where(sqlite_member_match(text, user))
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_keeps_user_text_quoted_in_the_case_columns_and_adds_the_members_token() {
        let u = Uuid::parse_str("01a2359f-f5fe-70a0-ace4-b3fe472ee1ac").unwrap();
        assert_eq!(
            fts5_query("Smith \"v\" member:x", u),
            "{number title description} : (\"Smith\" \"\"\"v\"\"\" \"member:x\") AND \
             member : \"u01a2359ff5fe70a0ace4b3fe472ee1ac\""
        );
    }
}
