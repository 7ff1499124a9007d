//! Who may see which case. Every case-related service (here and in other capabilities) asks
//! this module; a case the caller may not see is `NotFound`, never `Forbidden`.

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Query,
};
use uuid::Uuid;

use super::{
    domain::MemberRole,
    entity::{legal_case, member},
};
use crate::{
    AppState,
    audit::{NewEntry, Outcome},
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
    pub fn is_staff(&self, p: &Principal) -> bool {
        p.is_admin() || self.role.is_some_and(MemberRole::is_staff)
    }
    pub fn is_client(&self) -> bool {
        self.role == Some(MemberRole::Client)
    }
    /// Lead attorney or admin: may manage members.
    pub fn is_lead(&self, p: &Principal) -> bool {
        p.is_admin() || self.role == Some(MemberRole::LeadAttorney)
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

/// Load a case the caller may see, or `NotFound` (audited as a denial when the case exists).
pub async fn require<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    case_id: Uuid,
) -> Result<CaseAccess> {
    let Some(case) = legal_case::Entity::find_by_id(case_id).one(conn).await? else {
        return Err(Error::NotFound);
    };
    let role = membership(conn, case_id, p.user_id).await?;
    if role.is_none() && !p.is_admin() {
        state
            .audit
            .record(
                NewEntry::new("case.access", "case")
                    .by(p)
                    .resource(case_id)
                    .case(case_id)
                    .outcome(Outcome::Denied),
            )
            .await?;
        return Err(Error::NotFound);
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

/// `SELECT case_id FROM case_member WHERE user_id = ?`, to filter any table by case.
pub fn member_cases(user_id: Uuid) -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(member::Column::CaseId)
        .from(member::Entity)
        .and_where(member::Column::UserId.eq(user_id))
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
