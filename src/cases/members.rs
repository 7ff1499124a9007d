//! Case members, deadlines and parties.

use chrono::NaiveDate;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    access,
    conflicts::normalize_name,
    domain::{DeadlineKind, MemberRole, PartyKind},
    entity::{deadline, member, party},
    service::{DeadlineView, MemberView, touch},
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, decode_cursor, page_from},
    realtime::Audience,
    users::{self, domain::Role},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    pub user_id: Uuid,
    /// `attorney`, `paralegal` or `client`; must fit the user's own role.
    pub role: String,
}

/// `POST /cases/{id}/members` (lead attorney, admin).
pub async fn add_member(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    m: NewMember,
) -> Result<MemberView> {
    // Access first: an outsider learns nothing from validation messages.
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    if !a.is_lead(p) {
        return Err(Error::Forbidden(
            "Only the lead attorney or an admin may manage members.",
        ));
    }
    let role = MemberRole::parse(&m.role).map_err(|e| Error::invalid("role", e))?;
    if role == MemberRole::LeadAttorney {
        return Err(Error::invalid(
            "role",
            "a case has one lead attorney, its creator",
        ));
    }
    let roles = users::service::active_roles(&*txn, &[m.user_id]).await?;
    let fits = matches!(
        (roles.get(&m.user_id), role),
        (Some(Role::Client), MemberRole::Client)
            | (Some(Role::Paralegal), MemberRole::Paralegal)
            | (
                Some(Role::Attorney | Role::Admin),
                MemberRole::Attorney | MemberRole::Paralegal
            )
    );
    if !fits {
        return Err(Error::invalid(
            "user_id",
            format!("is not an active user who can be a {role} on a case"),
        ));
    }
    if access::membership(&*txn, case_id, m.user_id)
        .await?
        .is_some()
    {
        return Err(Error::Conflict(
            "That person is already a member of the case.".into(),
        ));
    }
    insert_member(
        &*txn,
        case_id,
        m.user_id,
        role,
        NewEntry::new("case.member_add", "case").by(p),
        serde_json::json!({}),
    )
    .await?;
    let name = users::service::names_of(&*txn, &[m.user_id])
        .await?
        .remove(&m.user_id)
        .map(|(n, _)| n)
        .unwrap_or_default();
    txn.commit().await?;
    Ok(MemberView {
        user_id: m.user_id,
        name,
        role,
    })
}

/// Lock a case's row for the rest of `conn`'s transaction (marking it changed, as adding a
/// member does anyway), before anything appends to the audit trail.
pub(crate) async fn lock_case<C: ConnectionTrait>(conn: &C, case_id: Uuid) -> Result<()> {
    touch(conn, case_id).await
}

/// Put `user_id` on the case as `role` in `conn`'s transaction, once the caller has checked
/// who may: the row, the live event, the case's change time, and `entry` (its actor already
/// set) as the audit of it, with `details` added to its own.
pub(crate) async fn insert_member<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    user_id: Uuid,
    role: MemberRole,
    entry: NewEntry,
    mut details: serde_json::Value,
) -> Result<()> {
    member::ActiveModel {
        case_id: Set(case_id),
        user_id: Set(user_id),
        role: Set(role.as_str().into()),
        added_at: Set(crate::db::now()),
    }
    .insert(conn)
    .await?;
    super::service::case_updated(
        conn,
        case_id,
        Audience::Case,
        serde_json::json!({"change": "member_added", "user_id": user_id, "role": role}),
    )
    .await?;
    // Also what keeps the new row's copies of the case exact on PostgreSQL: its insert trigger
    // reads the case unlocked, and the touch copies every column again under the row lock.
    touch(conn, case_id).await?;
    details["user_id"] = serde_json::json!(user_id);
    details["role"] = serde_json::json!(role);
    append_in(
        conn,
        vec![entry.resource(case_id).case(case_id).details(details)],
    )
    .await?;
    Ok(())
}

/// `DELETE /cases/{id}/members/{user_id}` (lead attorney, admin). The lead attorney stays.
pub async fn remove_member(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    user_id: Uuid,
) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    if !a.is_lead(p) {
        return Err(Error::Forbidden(
            "Only the lead attorney or an admin may manage members.",
        ));
    }
    match access::membership(&*txn, case_id, user_id).await? {
        None => return Err(Error::NotFound),
        Some(MemberRole::LeadAttorney) => {
            return Err(Error::Conflict(
                "The lead attorney cannot be removed.".into(),
            ));
        }
        Some(_) => {}
    }
    // The case row first, then its membership rows (as every write to a case's deadlines,
    // time, documents or members takes them): deleting the row first and then locking the case
    // in its trigger deadlocks with a deadline added at the same moment on PostgreSQL.
    touch(&*txn, case_id).await?;
    member::Entity::delete_by_id((case_id, user_id))
        .exec(&*txn)
        .await?;
    super::service::case_updated(
        &*txn,
        case_id,
        Audience::Case,
        serde_json::json!({"change": "member_removed", "user_id": user_id}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.member_remove", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({"user_id": user_id})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeadline {
    pub title: String,
    pub due_on: NaiveDate,
    pub kind: String,
}

/// `POST /cases/{id}/deadlines` (staff members).
pub async fn add_deadline(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    d: NewDeadline,
) -> Result<DeadlineView> {
    let mut v = Validator::default();
    let title = d.title.trim();
    if title.is_empty() || title.chars().count() > 300 {
        v.push("title", "is required (at most 300 characters)");
    }
    let kind = v.check("kind", DeadlineKind::parse(&d.kind));
    v.finish()?;
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let row = deadline::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case_id),
        title: Set(title.into()),
        due_on: Set(d.due_on),
        kind: Set(kind.expect("checked").as_str().into()),
        created_by: Set(p.actor_id()),
        created_at: Set(crate::db::now()),
        ..Default::default()
    }
    .insert(&*txn)
    .await?;
    super::service::case_updated(
        &*txn,
        case_id,
        Audience::CaseStaff,
        serde_json::json!({"change": "deadline_added", "deadline_id": row.id}),
    )
    .await?;
    touch(&*txn, case_id).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.deadline_add", "case")
                .by(p)
                .resource(case_id)
                .case(case_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

/// `GET /cases/{id}/deadlines` (staff members), soonest first.
pub async fn list_deadlines(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<DeadlineView>> {
    let a = access::require_staff(state, state.db.conn(), p, case_id).await?;
    let after: Option<(NaiveDate, Uuid)> = decode_cursor(cursor)?;
    let mut q = deadline::Entity::find().filter(deadline::Column::CaseId.eq(case_id));
    if let Some((due, id)) = after {
        q = q.filter(
            sea_orm::Condition::any()
                .add(deadline::Column::DueOn.gt(due))
                .add(
                    sea_orm::Condition::all()
                        .add(deadline::Column::DueOn.eq(due))
                        .add(deadline::Column::Id.gt(id)),
                ),
        );
    }
    let read = async {
        Ok(q.order_by_asc(deadline::Column::DueOn)
            .order_by_asc(deadline::Column::Id)
            .limit(limit.get() + 1)
            .all(state.db.conn())
            .await?)
    };
    let rows = state
        .audit
        .while_reading(
            super::service::read_entry(p, &a, "case.deadlines_read"),
            read,
        )
        .await?;
    let items: Vec<DeadlineView> = rows.into_iter().map(Into::into).collect();
    Ok(page_from(items, limit, |d: &DeadlineView| (d.due_on, d.id)))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeadlineChange {
    /// `true` marks the deadline done, `false` reopens it.
    pub completed: bool,
}

/// `PATCH /cases/{id}/deadlines/{deadline_id}` (staff members): mark a deadline done or
/// reopen it. Setting what is already set changes nothing and records nothing.
pub async fn set_deadline_completed(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    deadline_id: Uuid,
    change: DeadlineChange,
) -> Result<DeadlineView> {
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let row = deadline::Entity::find_by_id(deadline_id)
        .filter(deadline::Column::CaseId.eq(case_id))
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    if row.completed_at.is_some() == change.completed {
        return Ok(row.into());
    }
    let mut am: deadline::ActiveModel = row.into();
    let (done_at, done_by, what) = if change.completed {
        (Some(crate::db::now()), p.actor_id(), "completed")
    } else {
        (None, None, "reopened")
    };
    am.completed_at = Set(done_at);
    am.completed_by = Set(done_by);
    let row = am.update(&*txn).await?;
    super::service::case_updated(
        &*txn,
        case_id,
        Audience::CaseStaff,
        serde_json::json!({"change": format!("deadline_{what}"), "deadline_id": row.id}),
    )
    .await?;
    touch(&*txn, case_id).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new(&format!("case.deadline_{what}"), "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({"deadline_id": row.id})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartyView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub name: String,
    pub kind: PartyKind,
}

impl From<party::Model> for PartyView {
    fn from(m: party::Model) -> Self {
        Self {
            id: m.id,
            case_id: m.case_id,
            name: m.name,
            kind: PartyKind::parse(&m.kind).unwrap_or(PartyKind::Related),
        }
    }
}

#[derive(Clone, Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewParty {
    pub name: String,
    pub kind: String,
}

/// A party's name and kind, checked (errors under `field.name` / `field.kind`).
pub(super) fn check_party(
    v: &mut Validator,
    field: &str,
    input: &NewParty,
) -> Option<(String, PartyKind)> {
    let name = input.name.trim();
    let mut ok = true;
    if name.is_empty() || name.chars().count() > 300 || name.chars().any(char::is_control) {
        v.push(
            &format!("{field}name"),
            "is required (at most 300 characters)",
        );
        ok = false;
    }
    let kind = v.check(&format!("{field}kind"), PartyKind::parse(&input.kind));
    Some((name.to_owned(), kind?)).filter(|_| ok)
}

/// `POST /cases/{id}/parties` (staff members).
pub async fn add_party(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewParty,
) -> Result<PartyView> {
    let mut v = Validator::default();
    let checked = check_party(&mut v, "", &input);
    v.finish()?;
    let (name, kind) = checked.expect("checked");
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let row = party::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case_id),
        normalized_name: Set(normalize_name(&name)),
        name: Set(name),
        kind: Set(kind.as_str().into()),
        created_at: Set(crate::db::now()),
    }
    .insert(&*txn)
    .await?;
    touch(&*txn, case_id).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.party_add", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({"party_id": row.id})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

/// `DELETE /cases/{id}/parties/{party_id}` (staff members): a party recorded by mistake.
/// The audit trail keeps its name, so a past conflict check can still be explained.
pub async fn remove_party(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    party_id: Uuid,
) -> Result<()> {
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let row = party::Entity::find_by_id(party_id)
        .one(&*txn)
        .await?
        .filter(|r| r.case_id == case_id)
        .ok_or(Error::NotFound)?;
    party::Entity::delete_by_id(party_id).exec(&*txn).await?;
    touch(&*txn, case_id).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.party_remove", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({
                    "party_id": party_id, "name": row.name, "kind": row.kind,
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// `GET /cases/{id}/parties` (staff members).
pub async fn list_parties(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<PartyView>> {
    let a = access::require_staff(state, state.db.conn(), p, case_id).await?;
    let after: Option<Uuid> = decode_cursor(cursor)?;
    let mut q = party::Entity::find().filter(party::Column::CaseId.eq(case_id));
    if let Some(a) = after {
        q = q.filter(party::Column::Id.gt(a));
    }
    let read = async {
        Ok(q.order_by_asc(party::Column::Id)
            .limit(limit.get() + 1)
            .all(state.db.conn())
            .await?)
    };
    let rows = state
        .audit
        .while_reading(super::service::read_entry(p, &a, "case.parties_read"), read)
        .await?;
    let items: Vec<PartyView> = rows.into_iter().map(Into::into).collect();
    Ok(page_from(items, limit, |x: &PartyView| x.id))
}
