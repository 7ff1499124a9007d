//! Who may see which case. Every case-related service (here and in other capabilities) asks
//! this module; a case the caller may not see is `NotFound`, never `Forbidden`.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QueryResult, QuerySelect,
    sea_query::{Expr, ExprTrait, IntoColumnRef, Query, SimpleExpr},
};
use uuid::Uuid;

use super::{
    domain::MemberRole,
    entity::{legal_case, member},
};
use crate::{
    AppState,
    audit::NewEntry,
    auth::Principal,
    error::{Error, Result},
};

/// A case the caller may see, and what they are on it.
#[derive(Clone, Debug)]
pub struct CaseAccess {
    pub case: legal_case::Model,
    /// `None` for an admin who is not a member (admin access is audited as such).
    pub role: Option<MemberRole>,
}

impl CaseAccess {
    /// Staff on the case *and* staff in the firm: a demoted account loses case powers at once.
    pub fn is_staff(&self, p: &Principal) -> bool {
        p.is_admin() || (p.is_staff() && self.role.is_some_and(MemberRole::is_staff))
    }
    /// Lead attorney or admin: may manage members.
    pub fn is_lead(&self, p: &Principal) -> bool {
        p.is_admin()
            || (p.role == crate::users::domain::Role::Attorney
                && self.role == Some(MemberRole::LeadAttorney))
    }
    pub fn admin_access(&self, p: &Principal) -> bool {
        p.is_admin() && self.role.is_none()
    }
}

pub async fn membership<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    user_id: Uuid,
) -> Result<Option<MemberRole>> {
    let m = member::Entity::find_by_id((case_id, user_id))
        .one(conn)
        .await?;
    Ok(m.and_then(|m| MemberRole::parse(&m.role).ok()))
}

/// The column [`require`] reads the caller's role into.
const ROLE: &str = "caller_role";

/// The role of `user` on the outer row's case (`legal_case.id`), or NULL: a primary-key probe.
fn role_of(user: Uuid) -> SimpleExpr {
    let q = Query::select()
        .column(member::Column::Role)
        .from(member::Entity)
        .and_where(
            Expr::col((member::Entity, member::Column::CaseId))
                .equals((legal_case::Entity, legal_case::Column::Id)),
        )
        .and_where(member::Column::UserId.eq(user))
        .to_owned();
    SimpleExpr::SubQuery(None, Box::new(q.into()))
}

/// A case and the caller's role on it, read together.
struct CaseWithRole {
    case: legal_case::Model,
    role: Option<String>,
}

impl FromQueryResult for CaseWithRole {
    fn from_query_result(row: &QueryResult, pre: &str) -> std::result::Result<Self, DbErr> {
        Ok(Self {
            case: legal_case::Model::from_query_result(row, pre)?,
            role: row.try_get(pre, ROLE)?,
        })
    }
}

/// Load a case the caller may see, or `NotFound` (audited as a denial when the case exists).
/// One statement: the case with the caller's role on it (every case-scoped request starts
/// here, so a second round trip for the membership would cost each of them).
pub async fn require<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    case_id: Uuid,
) -> Result<CaseAccess> {
    let Some(CaseWithRole { case, role }) = legal_case::Entity::find_by_id(case_id)
        .column_as(role_of(p.user_id), ROLE)
        .into_model::<CaseWithRole>()
        .one(conn)
        .await?
    else {
        return Err(Error::NotFound);
    };
    let role = role.and_then(|r| MemberRole::parse(&r).ok());
    if role.is_none() && !p.is_admin() {
        return Err(state.audit.deny_hidden(
            p,
            NewEntry::new("case.access", "case")
                .resource(case_id)
                .case(case_id),
        ));
    }
    Ok(CaseAccess { case, role })
}

/// As [`require`], and the caller must be staff on the case (admins count): clients get 403.
pub async fn require_staff<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    case_id: Uuid,
) -> Result<CaseAccess> {
    let a = require(state, conn, p, case_id).await?;
    if !a.is_staff(p) {
        return Err(Error::Forbidden(
            "Only the legal team of this case may do this.",
        ));
    }
    Ok(a)
}

/// A condition limiting `legal_case.id` to the caller's cases (`None`: admins see all).
pub fn visible_condition(p: &Principal) -> Option<sea_orm::Condition> {
    if p.is_admin() {
        return None;
    }
    Some(sea_orm::Condition::all().add(legal_case::Column::Id.in_subquery(member_cases(p.user_id))))
}

/// One of the membership counters summed over the rows selected, as a `BIGINT` on both
/// backends (PostgreSQL's `SUM` of a `bigint` is `numeric`).
pub fn member_sum(column: member::Mirror) -> SimpleExpr {
    let column = sea_orm::Iden::to_string(&column);
    Expr::cust(format!("CAST(SUM(case_member.{column}) AS BIGINT)"))
}

/// `SELECT case_id FROM case_member WHERE user_id = ?`, to filter any table by case.
pub fn member_cases(user_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(member::Column::CaseId)
        .from(member::Entity)
        .and_where(member::Column::UserId.eq(user_id))
        .to_owned()
}

/// `EXISTS` the user's membership of the case in `case_col` of the outer row: one probe of the
/// key `(case_id, user_id)` per row. For pages walked in an index's order and cut by a
/// `LIMIT`, where `IN (`[`member_cases`]`)` would first collect every case the user is on
/// (2,000 for an attorney of the scale-100 firm) however few rows the page needs.
///
/// `LIMIT 1 OFFSET 0` keeps PostgreSQL from turning the probe into a semi-join (it does not
/// pull up an `EXISTS` with an offset): it guesses that few of an attorney's 10,000 received
/// messages are in their cases, hash-joins them all with the 2,000 memberships and sorts
/// (2.8 ms at scale 100) instead of walking the inbox index until the page is full (0.4 ms).
/// SQLite evaluates it per row either way, and wants a `LIMIT` before an `OFFSET`.
pub fn is_member_of(user_id: Uuid, case_col: impl IntoColumnRef) -> SimpleExpr {
    Expr::exists(member_row(user_id, case_col))
}

/// [`is_member_of`] on the legal team: any role but client.
pub fn is_staff_member_of(user_id: Uuid, case_col: impl IntoColumnRef) -> SimpleExpr {
    Expr::exists(
        member_row(user_id, case_col)
            .and_where(member::Column::Role.ne(MemberRole::Client.as_str()))
            .to_owned(),
    )
}

fn member_row(user_id: Uuid, case_col: impl IntoColumnRef) -> sea_orm::sea_query::SelectStatement {
    use sea_orm::sea_query::ExprTrait;
    Query::select()
        .expr(Expr::val(1))
        .from(member::Entity)
        .and_where(Expr::col((member::Entity, member::Column::CaseId)).equals(case_col))
        .and_where(member::Column::UserId.eq(user_id))
        .limit(1)
        .offset(0)
        .to_owned()
}

/// [`member_cases`] where the user's role on the case is one of `roles`.
pub fn member_cases_as(user_id: Uuid, roles: &[MemberRole]) -> sea_orm::sea_query::SelectStatement {
    member_cases(user_id)
        .and_where(member::Column::Role.is_in(roles.iter().map(|r| r.as_str())))
        .to_owned()
}

/// Ids of the cases a user is a member of (for scoping other capabilities' lists).
pub async fn case_ids_of<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    staff_only: bool,
) -> Result<Vec<Uuid>> {
    let mut q = member::Entity::find()
        .select_only()
        .column(member::Column::CaseId)
        .filter(member::Column::UserId.eq(user_id));
    if staff_only {
        q = q.filter(member::Column::Role.ne(MemberRole::Client.as_str()));
    }
    Ok(q.into_tuple().all(conn).await?)
}

/// Current members of a case with their roles (live delivery recomputes this per event).
pub async fn members_of<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
) -> Result<Vec<(Uuid, MemberRole)>> {
    let rows: Vec<(Uuid, String)> = member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .column(member::Column::Role)
        .filter(member::Column::CaseId.eq(case_id))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(u, r)| MemberRole::parse(&r).ok().map(|r| (u, r)))
        .collect())
}

/// The client a case's invoices are addressed to: its earliest-added client member, ties (the
/// clients named when the case was opened share one `added_at`) broken by the lower user id,
/// so the choice never depends on the order the database returns rows in. `None` without one.
pub async fn first_client_of<C: ConnectionTrait>(conn: &C, case_id: Uuid) -> Result<Option<Uuid>> {
    Ok(member::Entity::find()
        .select_only()
        .column(member::Column::UserId)
        .filter(member::Column::CaseId.eq(case_id))
        .filter(member::Column::Role.eq(MemberRole::Client.as_str()))
        .order_by_asc(member::Column::AddedAt)
        .order_by_asc(member::Column::UserId)
        .into_tuple()
        .one(conn)
        .await?)
}

/// All of a user's memberships, case → role (for replaying missed events).
pub async fn memberships_of<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
) -> Result<std::collections::HashMap<Uuid, MemberRole>> {
    let rows: Vec<(Uuid, String)> = member::Entity::find()
        .select_only()
        .column(member::Column::CaseId)
        .column(member::Column::Role)
        .filter(member::Column::UserId.eq(user_id))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(c, r)| MemberRole::parse(&r).ok().map(|r| (c, r)))
        .collect())
}
