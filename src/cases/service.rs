//! Creating, reading, listing and changing cases; the one place status and phase change.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, IdenStatic, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
    sea_query::{Expr, ExprTrait, JoinType, SimpleExpr},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    access::{self, CaseAccess},
    domain::{
        CasePhase, CaseStatus, DeadlineKind, MemberRole, PartyKind, Priority, TimelineKind,
        format_number,
    },
    entity::{deadline, legal_case, member, party, timeline},
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, after_in_range, decode_cursor, encode_cursor},
    realtime::{self, Audience, NewEvent},
    users::{self, domain::Role, entity::user},
};

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MemberView {
    pub user_id: Uuid,
    pub name: String,
    pub role: MemberRole,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct DeadlineView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub title: String,
    pub due_on: NaiveDate,
    pub kind: DeadlineKind,
    /// When it was marked done (null while open). Extension.
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<deadline::Model> for DeadlineView {
    fn from(d: deadline::Model) -> Self {
        Self {
            id: d.id,
            case_id: d.case_id,
            title: d.title,
            due_on: d.due_on,
            kind: DeadlineKind::parse(&d.kind).unwrap_or(DeadlineKind::Internal),
            completed_at: d.completed_at,
        }
    }
}

/// A case as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CaseView {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub description: String,
    pub practice_area: Option<String>,
    pub priority: Priority,
    pub status: CaseStatus,
    pub phase: CasePhase,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub statute_of_limitations: Option<NaiveDate>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub members: Vec<MemberView>,
    pub next_deadline: Option<DeadlineView>,
}

fn view(
    c: legal_case::Model,
    members: Vec<MemberView>,
    next_deadline: Option<DeadlineView>,
) -> CaseView {
    CaseView {
        id: c.id,
        number: c.number,
        title: c.title,
        description: c.description,
        practice_area: c.practice_area,
        priority: Priority::parse(&c.priority).unwrap_or(Priority::Normal),
        status: CaseStatus::parse(&c.status).unwrap_or(CaseStatus::Open),
        phase: CasePhase::parse(&c.phase).unwrap_or(CasePhase::Intake),
        opened_at: c.opened_at,
        closed_at: c.closed_at,
        statute_of_limitations: c.statute_of_limitations,
        created_at: c.created_at,
        updated_at: c.updated_at,
        members,
        next_deadline,
    }
}

/// Members (with their names) and next deadlines of many cases in two queries, whatever
/// their number. `client_view`: internal deadlines stay out of `next_deadline`.
async fn views<C: ConnectionTrait>(
    conn: &C,
    cases: Vec<legal_case::Model>,
    client_view: bool,
    today: NaiveDate,
) -> Result<Vec<CaseView>> {
    let ids: Vec<Uuid> = cases.iter().map(|c| c.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let members: Vec<(Uuid, Uuid, String, Option<String>)> = member::Entity::find()
        .select_only()
        .columns([
            member::Column::CaseId,
            member::Column::UserId,
            member::Column::Role,
        ])
        .column_as(Expr::col((user::Entity, user::Column::Name)), "name")
        .join(
            JoinType::LeftJoin,
            member::Entity::belongs_to(user::Entity)
                .from(member::Column::UserId)
                .to(user::Column::Id)
                .into(),
        )
        .filter(member::Column::CaseId.is_in(ids.clone()))
        .order_by_asc(member::Column::AddedAt)
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_case: HashMap<Uuid, Vec<MemberView>> = HashMap::new();
    for (case_id, user_id, role, name) in members {
        by_case.entry(case_id).or_default().push(MemberView {
            user_id,
            name: name.unwrap_or_default(),
            role: MemberRole::parse(&role).unwrap_or(MemberRole::Client),
        });
    }
    let mut upcoming = deadline::Entity::find()
        .filter(deadline::Column::CaseId.is_in(ids))
        .filter(deadline::Column::DueOn.gte(today))
        .filter(deadline::Column::CompletedAt.is_null());
    if client_view {
        upcoming = upcoming.filter(deadline::Column::Kind.ne(DeadlineKind::Internal.as_str()));
    }
    let upcoming = upcoming
        .order_by_asc(deadline::Column::DueOn)
        .order_by_asc(deadline::Column::Id)
        .all(conn)
        .await?;
    let mut next: HashMap<Uuid, DeadlineView> = HashMap::new();
    for d in upcoming {
        next.entry(d.case_id).or_insert_with(|| d.into());
    }
    Ok(cases
        .into_iter()
        .map(|c| {
            let id = c.id;
            view(c, by_case.remove(&id).unwrap_or_default(), next.remove(&id))
        })
        .collect())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCase {
    pub title: String,
    pub description: Option<String>,
    pub practice_area: Option<String>,
    #[serde(default)]
    pub client_ids: Vec<Uuid>,
    #[serde(default)]
    pub staff_ids: Vec<Uuid>,
    pub priority: Option<String>,
    pub statute_of_limitations: Option<NaiveDate>,
    /// Parties recorded with the case, in the same transaction (so a later conflict check
    /// finds them from the moment the case exists). At most 50.
    #[serde(default)]
    pub parties: Vec<super::members::NewParty>,
    /// How many conflict matches the attorney reviewed on the new-matter page before
    /// confirming. Never from JSON: for API callers the check runs here, over the parties.
    #[serde(skip)]
    pub reviewed_conflicts: Option<usize>,
}

fn check_title(v: &mut Validator, field: &str, s: &str) -> Option<String> {
    let t = s.trim();
    if t.is_empty() {
        v.push(field, "is required");
        None
    } else if t.chars().count() > 300 || t.chars().any(char::is_control) {
        v.push(
            field,
            "must be at most 300 characters without control characters",
        );
        None
    } else {
        Some(t.to_string())
    }
}

fn check_text(v: &mut Validator, field: &str, s: &str, max: usize) -> Option<String> {
    if s.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
        None
    } else {
        Some(s.trim().to_string())
    }
}

/// A practice area is a short label used as a filter and a dashboard key: lower case,
/// one line. Empty means "none".
fn check_practice_area(v: &mut Validator, s: &str) -> Option<String> {
    // Counted after lowering: some letters lower to two characters ('İ' to "i̇").
    let t = s.trim().to_lowercase();
    if t.chars().count() > 100 || t.chars().any(char::is_control) {
        v.push(
            "practice_area",
            "must be at most 100 characters without control characters",
        );
        None
    } else {
        Some(t)
    }
}

/// Next number for `year`, allocated inside the creating transaction: the upsert takes a row
/// lock on PostgreSQL (SQLite serialises writers), so concurrent creations never collide.
async fn allocate_number<C: ConnectionTrait>(conn: &C, year: i32) -> Result<i32> {
    let sql = match conn.get_database_backend() {
        DbBackend::Postgres => {
            "INSERT INTO case_number_seq (year, last) VALUES ($1, 1)
             ON CONFLICT (year) DO UPDATE SET last = case_number_seq.last + 1 RETURNING last"
        }
        _ => {
            "INSERT INTO case_number_seq (year, last) VALUES (?, 1)
             ON CONFLICT (year) DO UPDATE SET last = case_number_seq.last + 1 RETURNING last"
        }
    };
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            conn.get_database_backend(),
            sql,
            [year.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("case number allocation returned nothing"))?;
    Ok(row.try_get::<i32>("", "last")?)
}

/// `POST /cases` (admins and attorneys). The creator becomes lead attorney.
pub async fn create_case(state: &AppState, p: &Principal, input: NewCase) -> Result<CaseView> {
    if !matches!(p.role, Role::Admin | Role::Attorney) {
        return Err(Error::Forbidden(
            "Only attorneys and admins may open cases.",
        ));
    }
    let mut v = Validator::default();
    let title = check_title(&mut v, "title", &input.title);
    let description = check_text(
        &mut v,
        "description",
        input.description.as_deref().unwrap_or(""),
        20_000,
    );
    let practice_area = input
        .practice_area
        .as_deref()
        .and_then(|pa| check_practice_area(&mut v, pa))
        .filter(|pa| !pa.is_empty());
    let priority = v.check(
        "priority",
        Priority::parse(input.priority.as_deref().unwrap_or("normal")),
    );
    let mut wanted: Vec<Uuid> = input
        .client_ids
        .iter()
        .chain(input.staff_ids.iter())
        .copied()
        .collect();
    wanted.sort();
    wanted.dedup();
    if wanted.len() > 200 {
        v.push("client_ids", "at most 200 members at creation");
    }
    let roles = users::service::active_roles(state.db.conn(), &wanted).await?;
    for (field, ids, want_client) in [
        ("client_ids", &input.client_ids, true),
        ("staff_ids", &input.staff_ids, false),
    ] {
        for id in ids {
            match roles.get(id) {
                Some(r) if (*r == Role::Client) == want_client => {}
                _ => v.push(
                    field,
                    format!(
                        "{id} is not an active {}",
                        if want_client {
                            "client"
                        } else {
                            "staff member"
                        }
                    ),
                ),
            }
        }
    }
    if input.parties.len() > 50 {
        v.push("parties", "at most 50 parties at creation");
    }
    let parties: Vec<(String, PartyKind)> = input
        .parties
        .iter()
        .enumerate()
        .filter_map(|(i, party)| {
            super::members::check_party(&mut v, &format!("parties[{i}]."), party)
        })
        .collect();
    v.finish()?;
    let (title, description, priority) = (
        title.expect("checked"),
        description.expect("checked"),
        priority.expect("checked"),
    );

    // Intake runs a conflict check over the parties; the audit entry keeps its result. The
    // page has shown and confirmed one already; the API runs it here (before the write slot).
    let conflicts = match (parties.is_empty(), input.reviewed_conflicts) {
        (true, _) => None,
        (false, Some(n)) => Some((n, "reviewed")),
        (false, None) => {
            let names = parties.iter().map(|(n, _)| n.clone()).collect();
            let r = super::conflicts::check(state, p, super::conflicts::ConflictCheck { names })
                .await?;
            Some((r.matches.len(), "automatic"))
        }
    };

    let t = crate::db::now();
    // The firm's year, as invoices number theirs: a matter opened on New Year's Eve evening in
    // New York is numbered in the old year.
    let year = state.config.today().year();
    let txn = state.db.begin_write().await?;
    let seq = allocate_number(&*txn, year).await?;
    let id = Uuid::now_v7();
    let case = legal_case::ActiveModel {
        id: Set(id),
        number: Set(format_number(year, seq)),
        year: Set(year),
        seq: Set(seq),
        title: Set(title),
        description: Set(description),
        practice_area: Set(practice_area),
        priority: Set(priority.as_str().into()),
        status: Set(CaseStatus::Open.as_str().into()),
        phase: Set(CasePhase::Intake.as_str().into()),
        opened_at: Set(t),
        closed_at: Set(None),
        statute_of_limitations: Set(input.statute_of_limitations),
        created_by: Set(p.user_id),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(&*txn)
    .await?;
    let mut members = vec![(p.user_id, MemberRole::LeadAttorney)];
    for uid in input.client_ids.iter().chain(input.staff_ids.iter()) {
        if members.iter().any(|(m, _)| m == uid) {
            continue;
        }
        let role = match roles[uid] {
            Role::Client => MemberRole::Client,
            Role::Paralegal => MemberRole::Paralegal,
            Role::Attorney | Role::Admin => MemberRole::Attorney,
        };
        members.push((*uid, role));
    }
    let rows: Vec<member::ActiveModel> = members
        .iter()
        .map(|(uid, role)| member::ActiveModel {
            case_id: Set(id),
            user_id: Set(*uid),
            role: Set(role.as_str().into()),
            added_at: Set(t),
        })
        .collect();
    member::Entity::insert_many(rows)
        .exec_without_returning(&*txn)
        .await?;
    if let Some(sol) = input.statute_of_limitations {
        deadline::ActiveModel {
            id: Set(Uuid::now_v7()),
            case_id: Set(id),
            title: Set("Statute of limitations".into()),
            due_on: Set(sol),
            kind: Set(DeadlineKind::StatuteOfLimitations.as_str().into()),
            created_by: Set(p.actor_id()),
            created_at: Set(t),
            ..Default::default()
        }
        .insert(&*txn)
        .await?;
    }
    if !parties.is_empty() {
        let rows: Vec<party::ActiveModel> = parties
            .iter()
            .map(|(name, kind)| party::ActiveModel {
                id: Set(Uuid::now_v7()),
                case_id: Set(id),
                name: Set(name.clone()),
                normalized_name: Set(super::conflicts::normalize_name(name)),
                kind: Set(kind.as_str().into()),
                created_at: Set(t),
            })
            .collect();
        party::Entity::insert_many(rows)
            .exec_without_returning(&*txn)
            .await?;
    }
    add_timeline(
        &*txn,
        id,
        TimelineKind::Created,
        None,
        Some(CaseStatus::Open.as_str()),
        None,
        p,
        true,
    )
    .await?;
    case_updated(
        &*txn,
        id,
        Audience::Case,
        serde_json::json!({"change": "created", "number": case.number}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.create", "case")
                .by(p)
                .resource(id)
                .case(id)
                .details(serde_json::json!({
                    "number": case.number, "members": members.len(), "parties": parties.len(),
                    "conflict_matches": conflicts.map(|c| c.0),
                    "conflict_check": conflicts.map(|c| c.1),
                })),
        ],
    )
    .await?;
    let out = views(&*txn, vec![case], false, state.config.today())
        .await?
        .remove(0);
    txn.commit().await?;
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn add_timeline<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    kind: TimelineKind,
    from: Option<&str>,
    to: Option<&str>,
    note: Option<&str>,
    p: &Principal,
    client_visible: bool,
) -> Result<timeline::Model> {
    Ok(timeline::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case_id),
        kind: Set(kind.as_str().into()),
        from_value: Set(from.map(Into::into)),
        to_value: Set(to.map(Into::into)),
        note: Set(note.map(Into::into)),
        actor_id: Set(p.actor_id()),
        at: Set(crate::db::now()),
        client_visible: Set(client_visible),
    }
    .insert(conn)
    .await?)
}

/// The audit entry of an authorised read of one case (for [`AuditWriter::while_reading`]).
///
/// [`AuditWriter::while_reading`]: crate::audit::AuditWriter::while_reading
pub(super) fn read_entry(p: &Principal, a: &CaseAccess, action: &str) -> NewEntry {
    let e = NewEntry::new(action, "case")
        .by(p)
        .resource(a.case.id)
        .case(a.case.id);
    if a.admin_access(p) {
        e.details(serde_json::json!({"admin_access": true}))
    } else {
        e
    }
}

/// `GET /cases/{id}`.
pub async fn get_case(state: &AppState, p: &Principal, id: Uuid) -> Result<CaseView> {
    let a = access::require(state, state.db.conn(), p, id).await?;
    let client_view = !a.is_staff(p);
    let mut out = state
        .audit
        .while_reading(
            read_entry(p, &a, "case.read"),
            views(
                state.db.conn(),
                vec![a.case.clone()],
                client_view,
                state.config.today(),
            ),
        )
        .await?;
    Ok(out.remove(0))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct CaseFilter {
    pub status: Option<String>,
    pub phase: Option<String>,
    pub practice_area: Option<String>,
    pub client_id: Option<Uuid>,
    pub attorney_id: Option<Uuid>,
    pub priority: Option<String>,
    /// Full text over number, title and description.
    pub q: Option<String>,
    pub opened_from: Option<NaiveDate>,
    pub opened_to: Option<NaiveDate>,
    /// `opened_at`, `updated_at` or `number`; prefix `-` for descending. Default `-updated_at`.
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum SortKey {
    OpenedAt,
    UpdatedAt,
    Number,
}

/// Keyset position: the sort value of the last row (as text) and its id.
#[derive(Serialize, Deserialize)]
struct CaseCursor {
    v: String,
    id: Uuid,
}

/// `(year, seq)` of a case number `YYYY-NNNN…` (a cursor's sort value).
fn parse_number_key(v: &str) -> Option<(i32, i32)> {
    let (year, seq) = v.split_once('-')?;
    Some((year.parse().ok()?, seq.parse().ok()?))
}

/// Rows strictly after `values` in the order of `cols` (lexicographic; descending if `desc`).
fn keyset_after(
    cols: &[legal_case::Column],
    values: &[sea_orm::Value],
    desc: bool,
) -> sea_orm::Condition {
    let (col, value) = (cols[0], values[0].clone());
    let beyond = if desc {
        col.lt(value.clone())
    } else {
        col.gt(value.clone())
    };
    let mut any = sea_orm::Condition::any().add(beyond);
    if cols.len() > 1 {
        any = any.add(
            sea_orm::Condition::all()
                .add(col.eq(value))
                .add(keyset_after(&cols[1..], &values[1..], desc)),
        );
    }
    any
}

/// The cases `user` is on, joined to their membership row (one per case), so a query can
/// be driven by that row's indexes. This is the visibility condition for a non-admin.
pub(super) fn through_memberships(
    mut q: sea_orm::Select<legal_case::Entity>,
    user: Uuid,
) -> sea_orm::Select<legal_case::Entity> {
    QueryTrait::query(&mut q).join(
        JoinType::InnerJoin,
        member::Entity,
        sea_orm::Condition::all()
            .add(
                Expr::col((member::Entity, member::Column::CaseId))
                    .equals((legal_case::Entity, legal_case::Column::Id)),
            )
            .add(Expr::col((member::Entity, member::Column::UserId)).eq(user)),
    );
    q
}

/// The membership row's copy of a case sort key, and its case id: the keyset of a member's
/// list.
fn member_key(col: member::Mirror) -> (Expr, Expr) {
    (
        Expr::col((member::Entity, col)),
        Expr::col((member::Entity, member::Column::CaseId)),
    )
}

/// Order a query joined by [`through_memberships`] by the membership row's copy of a case
/// sort key, then case id: the order of `ix_case_member_updated` / `_opened`.
pub(super) fn in_member_order(
    q: sea_orm::Select<legal_case::Entity>,
    col: member::Mirror,
    desc: bool,
) -> sea_orm::Select<legal_case::Entity> {
    let order = if desc {
        sea_orm::Order::Desc
    } else {
        sea_orm::Order::Asc
    };
    let (sort, id) = member_key(col);
    q.order_by(sort, order.clone()).order_by(id, order)
}

/// Order by the case's own sort key, `(key…, id)`, after the cursor.
fn order_by_case_key(
    mut q: sea_orm::Select<legal_case::Entity>,
    key: SortKey,
    desc: bool,
    cursor: Option<&CaseCursor>,
) -> Result<sea_orm::Select<legal_case::Entity>> {
    // Numbers sort as numbers, by `(year, seq)`: their text ("2026-9999" > "2026-10000") does
    // not once a year passes 9,999 cases. The cursor still carries the number as text.
    let cols: Vec<legal_case::Column> = match key {
        SortKey::OpenedAt => vec![legal_case::Column::OpenedAt],
        SortKey::UpdatedAt => vec![legal_case::Column::UpdatedAt],
        SortKey::Number => vec![legal_case::Column::Year, legal_case::Column::Seq],
    };
    if let Some(c) = cursor {
        let bad = || Error::invalid("cursor", "is not a cursor this server issued");
        let mut values: Vec<sea_orm::Value> = match key {
            SortKey::Number => {
                let (year, seq) = parse_number_key(&c.v).ok_or_else(bad)?;
                vec![year.into(), seq.into()]
            }
            _ => vec![
                DateTime::parse_from_rfc3339(&c.v)
                    .map_err(|_| bad())?
                    .with_timezone(&Utc)
                    .into(),
            ],
        };
        values.push(c.id.into());
        let mut keys = cols.clone();
        keys.push(legal_case::Column::Id);
        q = q.filter(keyset_after(&keys, &values, desc));
    }
    let order = if desc {
        sea_orm::Order::Desc
    } else {
        sea_orm::Order::Asc
    };
    for col in &cols {
        q = q.order_by(*col, order.clone());
    }
    Ok(q.order_by(legal_case::Column::Id, order))
}

/// `+"table"."column" op ?`: SQLite cannot use an index for the comparison (its planner has no
/// statistics and would pick an index on the column over the membership walk).
fn unindexed(table: &str, column: &str, op: &str, v: impl Into<sea_orm::Value>) -> SimpleExpr {
    Expr::cust_with_values(format!("+\"{table}\".\"{column}\" {op} ?"), [v.into()])
}

/// `GET /cases`: only visible cases, filtered, sorted, keyset-paginated.
pub async fn list_cases(state: &AppState, p: &Principal, f: CaseFilter) -> Result<Page<CaseView>> {
    let limit = Limit::parse(f.limit)?;
    let mut v = Validator::default();
    let status = f
        .status
        .as_deref()
        .and_then(|s| v.check("status", CaseStatus::parse(s)));
    let phase = f
        .phase
        .as_deref()
        .and_then(|s| v.check("phase", CasePhase::parse(s)));
    let priority = f
        .priority
        .as_deref()
        .and_then(|s| v.check("priority", Priority::parse(s)));
    let raw_sort = f.sort.as_deref().unwrap_or("-updated_at");
    let (desc, key) = match raw_sort.strip_prefix('-') {
        Some(k) => (true, k),
        None => (false, raw_sort),
    };
    let key = match key {
        "opened_at" => Some(SortKey::OpenedAt),
        "updated_at" => Some(SortKey::UpdatedAt),
        "number" => Some(SortKey::Number),
        _ => {
            v.push(
                "sort",
                "must be opened_at, updated_at or number, optionally prefixed with -",
            );
            None
        }
    };
    let q_text = f.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if q_text.is_some_and(|q| q.chars().count() > 200 || q.chars().any(char::is_control)) {
        v.push(
            "q",
            "must be at most 200 characters, without control characters",
        );
    }
    v.finish()?;
    let key = key.expect("checked");
    let cursor: Option<CaseCursor> = decode_cursor(f.cursor.as_deref())?;

    let mut q = legal_case::Entity::find();
    // A member's list sorted by a time is read from their own membership rows, which carry
    // their case's sort keys (`ix_case_member_updated` / `_opened`, kept by triggers): one
    // index range in page order, however many cases they are on. An admin sees every case
    // through the case's own index.
    let member_order = match key {
        _ if p.is_admin() => None,
        SortKey::UpdatedAt => Some(member::Mirror::CaseUpdatedAt),
        SortKey::OpenedAt => Some(member::Mirror::CaseOpenedAt),
        SortKey::Number => None,
    };
    match member_order {
        Some(_) => q = through_memberships(q, p.user_id),
        None => {
            if let Some(c) = access::visible_condition(p) {
                q = q.filter(c);
            }
        }
    }
    // A member's walk in page order tests status, phase and priority on the membership
    // index it walks (copies kept by triggers), reading only the case rows it returns. On
    // SQLite (no statistics) `+` keeps each test off any other index: the planner would take
    // `(user_id, case_status)` or the case's status index and sort, or walk every open case of
    // the firm checking membership (9.6 ms for a client at 100,000 cases against 3.2 ms at
    // 1,000). Sorted by number, a client's few cases are tested on their own rows.
    let sqlite = state.db.backend() == DbBackend::Sqlite;
    let by_members = (member_order.is_some() || p.sees_few_cases()) && sqlite;
    let equals = |col: legal_case::Column, copy: member::Mirror, v: String| -> SimpleExpr {
        match (member_order.is_some(), by_members) {
            (true, true) => unindexed("case_member", &sea_orm::Iden::to_string(&copy), "=", v),
            (true, false) => Expr::col((member::Entity, copy)).eq(v),
            (false, true) => unindexed("legal_case", col.as_str(), "=", v),
            (false, false) => col.eq(v),
        }
    };
    if let Some(s) = status {
        q = q.filter(equals(
            legal_case::Column::Status,
            member::Mirror::CaseStatus,
            s.as_str().into(),
        ));
    }
    if let Some(s) = phase {
        q = q.filter(equals(
            legal_case::Column::Phase,
            member::Mirror::CasePhase,
            s.as_str().into(),
        ));
    }
    if let Some(s) = priority {
        q = q.filter(equals(
            legal_case::Column::Priority,
            member::Mirror::CasePriority,
            s.as_str().into(),
        ));
    }
    if let Some(pa) = f
        .practice_area
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let pa = pa.to_lowercase();
        q = q.filter(if by_members {
            unindexed("legal_case", "practice_area", "=", pa)
        } else {
            legal_case::Column::PracticeArea.eq(pa)
        });
    }
    if let Some(uid) = f.client_id {
        q = q.filter(
            legal_case::Column::Id.in_subquery(access::member_cases_as(uid, &[MemberRole::Client])),
        );
    }
    if let Some(uid) = f.attorney_id {
        q = q.filter(legal_case::Column::Id.in_subquery(access::member_cases_as(
            uid,
            &[MemberRole::LeadAttorney, MemberRole::Attorney],
        )));
    }
    // Opening dates: on the membership copy when walking memberships (a seek of the walked
    // index when it is the opening-date one; `+` keeps SQLite from sorting the range of the
    // other), else on the case.
    let opened = |at: DateTime<Utc>, after: bool| -> SimpleExpr {
        let op = if after { ">=" } else { "<" };
        match member_order {
            Some(member::Mirror::CaseUpdatedAt) if sqlite => {
                unindexed("case_member", "case_opened_at", op, at)
            }
            Some(_) => {
                let col = Expr::col((member::Entity, member::Mirror::CaseOpenedAt));
                if after { col.gte(at) } else { col.lt(at) }
            }
            None if after => legal_case::Column::OpenedAt.gte(at),
            None => legal_case::Column::OpenedAt.lt(at),
        }
    };
    // Days of the firm's calendar (LFP_TIMEZONE), from their first instant.
    if let Some(d) = f.opened_from {
        q = q.filter(opened(state.config.start_of(d), true));
    }
    if let Some(d) = f.opened_to {
        let end = state.config.start_of(d.succ_opt().unwrap_or(d));
        q = q.filter(opened(end, false));
    }
    if let Some(text) = q_text {
        q = match state.db.backend() {
            DbBackend::Postgres => q.filter(Expr::cust_with_values(
                "(legal_case.search @@ plainto_tsquery('simple', $1) OR legal_case.number = $2)",
                [text.to_owned(), text.to_owned()],
            )),
            // A member walking their own cases in page order keeps those of their memberships
            // that match, which their own range of `case_member_fts` lists (cost per match
            // among their cases, not per case walked nor per firm-wide match).
            _ if member_order.is_some() => {
                q.filter(super::search_index::sqlite_member_match(text, p.user_id))
            }
            // Sorted by number, a member's matches are still read from their own rows: the
            // set of them, at most one per case they are on.
            _ if !p.is_admin() => q.filter(
                legal_case::Column::Id
                    .in_subquery(super::search_index::sqlite_member_cases(text, p.user_id)),
            ),
            // An admin sees every case: the set of the firm's matches.
            _ => q.filter(crate::db::fts::sqlite_match(
                "legal_case",
                "legal_case_fts",
                text,
                false,
            )),
        };
    }
    if let Some(col) = member_order {
        if let Some(c) = cursor {
            let at = DateTime::parse_from_rfc3339(&c.v)
                .map_err(|_| Error::invalid("cursor", "is not a cursor this server issued"))?
                .with_timezone(&Utc);
            let (sort, id) = member_key(col);
            q = q.filter(after_in_range(sort, id, at, c.id, desc));
        }
        q = in_member_order(q, col, desc);
    } else {
        q = order_by_case_key(q, key, desc, cursor.as_ref())?;
    }
    let rows = q.limit(limit.get() + 1).all(state.db.conn()).await?;
    let more = rows.len() as u64 > limit.get();
    let mut rows = rows;
    rows.truncate(limit.get() as usize);
    let next_cursor = if more {
        rows.last().map(|c| {
            let v = match key {
                SortKey::OpenedAt => c.opened_at.to_rfc3339(),
                SortKey::UpdatedAt => c.updated_at.to_rfc3339(),
                SortKey::Number => c.number.clone(),
            };
            encode_cursor(&CaseCursor { v, id: c.id })
        })
    } else {
        None
    };
    state
        .audit
        .record(
            NewEntry::new("case.list", "case")
                .by(p)
                // Which cases were shown, so an admin's reads are traceable case by case.
                .details(serde_json::json!({
                    "count": rows.len(),
                    "case_ids": rows.iter().map(|c| c.id).collect::<Vec<_>>(),
                    "admin_access": p.is_admin(),
                })),
        )
        .await?;
    Ok(Page {
        items: views(state.db.conn(), rows, !p.is_staff(), state.config.today()).await?,
        next_cursor,
    })
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CasePatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub practice_area: Option<String>,
    pub priority: Option<String>,
    pub statute_of_limitations: Option<NaiveDate>,
}

/// `PATCH /cases/{id}` (staff members). Status and phase change only through [`change_status`].
pub async fn patch_case(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    patch: CasePatch,
) -> Result<CaseView> {
    let mut v = Validator::default();
    let title = patch
        .title
        .as_deref()
        .and_then(|t| check_title(&mut v, "title", t));
    let description = patch
        .description
        .as_deref()
        .and_then(|d| check_text(&mut v, "description", d, 20_000));
    let practice_area = patch
        .practice_area
        .as_deref()
        .and_then(|pa| check_practice_area(&mut v, pa));
    let priority = patch
        .priority
        .as_deref()
        .and_then(|s| v.check("priority", Priority::parse(s)));
    v.finish()?;
    let txn = state.db.begin_write().await?;
    let a = access::require_staff(state, &*txn, p, id).await?;
    let mut am: legal_case::ActiveModel = a.case.clone().into();
    let mut changed = Vec::new();
    if let Some(t) = title {
        am.title = Set(t);
        changed.push("title");
    }
    if let Some(d) = description {
        am.description = Set(d);
        changed.push("description");
    }
    if let Some(pa) = practice_area {
        am.practice_area = Set(Some(pa).filter(|s| !s.is_empty()));
        changed.push("practice_area");
    }
    if let Some(pr) = priority {
        am.priority = Set(pr.as_str().into());
        changed.push("priority");
    }
    if let Some(sol) = patch.statute_of_limitations {
        am.statute_of_limitations = Set(Some(sol));
        changed.push("statute_of_limitations");
        // The limitation date is also a deadline: move it (or create it), never leave the old one.
        let moved = deadline::Entity::update_many()
            .col_expr(deadline::Column::DueOn, Expr::value(sol))
            .filter(deadline::Column::CaseId.eq(id))
            .filter(deadline::Column::Kind.eq(DeadlineKind::StatuteOfLimitations.as_str()))
            .exec(&*txn)
            .await?
            .rows_affected;
        if moved == 0 {
            deadline::ActiveModel {
                id: Set(Uuid::now_v7()),
                case_id: Set(id),
                title: Set("Statute of limitations".into()),
                due_on: Set(sol),
                kind: Set(DeadlineKind::StatuteOfLimitations.as_str().into()),
                created_by: Set(p.actor_id()),
                created_at: Set(crate::db::now()),
                ..Default::default()
            }
            .insert(&*txn)
            .await?;
        }
    }
    am.updated_at = Set(crate::db::now());
    let case = am.update(&*txn).await?;
    case_updated(
        &*txn,
        id,
        Audience::Case,
        serde_json::json!({"change": "details", "fields": changed}),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.update", "case")
                .by(p)
                .resource(id)
                .case(id)
                .details(serde_json::json!({"fields": changed})),
        ],
    )
    .await?;
    let out = views(&*txn, vec![case], false, state.config.today())
        .await?
        .remove(0);
    txn.commit().await?;
    Ok(out)
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub status: Option<String>,
    pub phase: Option<String>,
    pub note: Option<String>,
    /// Whether clients see the timeline entry (default true).
    pub client_visible: Option<bool>,
}

/// `POST /cases/{id}/status`: the only way status and phase change. Validates the transition,
/// writes timeline entries, an event and the audit entry in one transaction.
pub async fn change_status(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    c: StatusChange,
) -> Result<CaseView> {
    let mut v = Validator::default();
    let to_status = c
        .status
        .as_deref()
        .and_then(|s| v.check("status", CaseStatus::parse(s)));
    let to_phase = c
        .phase
        .as_deref()
        .and_then(|s| v.check("phase", CasePhase::parse(s)));
    let note = c
        .note
        .as_deref()
        .and_then(|n| check_text(&mut v, "note", n, 5_000))
        .filter(|n| !n.is_empty());
    if c.status.is_none() && c.phase.is_none() {
        v.push("status", "give a new status, a new phase, or both");
    }
    v.finish()?;
    let client_visible = c.client_visible.unwrap_or(true);
    let txn = state.db.begin_write().await?;
    let a = access::require_staff(state, &*txn, p, id).await?;
    let from_status =
        CaseStatus::parse(&a.case.status).map_err(|e| anyhow::anyhow!("stored status: {e}"))?;
    let from_phase =
        CasePhase::parse(&a.case.phase).map_err(|e| anyhow::anyhow!("stored phase: {e}"))?;
    let mut status = from_status;
    let mut phase = from_phase;
    if let Some(s) = to_status.filter(|s| *s != from_status) {
        if !from_status.can_become(s) {
            return Err(Error::Conflict(format!(
                "A case that is {from_status} cannot become {s}."
            )));
        }
        status = s;
        if s == CaseStatus::Closed {
            phase = CasePhase::Closed;
        } else if from_status == CaseStatus::Closed && s == CaseStatus::Open {
            // Reopening starts again at intake unless the request names a phase.
            phase = CasePhase::Intake;
        }
    }
    if let Some(ph) = to_phase {
        if !status.is_active() {
            return Err(Error::Conflict(
                "Reopen the case before changing its phase.".into(),
            ));
        }
        if ph == CasePhase::Closed {
            return Err(Error::Conflict(
                "A case reaches the closed phase by being closed.".into(),
            ));
        }
        phase = ph;
    }
    if status == from_status && phase == from_phase {
        return Err(Error::Conflict(
            "The case already has that status and phase.".into(),
        ));
    }
    let t = crate::db::now();
    let mut am: legal_case::ActiveModel = a.case.clone().into();
    am.status = Set(status.as_str().into());
    am.phase = Set(phase.as_str().into());
    if status != from_status {
        am.closed_at = Set(if status.is_active() {
            None
        } else {
            a.case.closed_at.or(Some(t))
        });
        add_timeline(
            &*txn,
            id,
            TimelineKind::Status,
            Some(from_status.as_str()),
            Some(status.as_str()),
            note.as_deref(),
            p,
            client_visible,
        )
        .await?;
    }
    if phase != from_phase {
        let n = if status == from_status {
            note.as_deref()
        } else {
            None
        };
        add_timeline(
            &*txn,
            id,
            TimelineKind::Phase,
            Some(from_phase.as_str()),
            Some(phase.as_str()),
            n,
            p,
            client_visible,
        )
        .await?;
    }
    am.updated_at = Set(t);
    let case = am.update(&*txn).await?;
    case_updated(
        &*txn,
        id,
        if client_visible {
            Audience::Case
        } else {
            Audience::CaseStaff
        },
        serde_json::json!({
            "change": "status", "status": status, "phase": phase,
            "from_status": from_status, "from_phase": from_phase,
        }),
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.status_change", "case")
                .by(p)
                .resource(id)
                .case(id)
                .details(serde_json::json!({
                    "status": [from_status, status], "phase": [from_phase, phase]
                })),
        ],
    )
    .await?;
    let out = views(&*txn, vec![case], false, state.config.today())
        .await?
        .remove(0);
    txn.commit().await?;
    Ok(out)
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TimelineEntry {
    pub id: Uuid,
    pub kind: TimelineKind,
    pub from: Option<String>,
    pub to: Option<String>,
    pub note: Option<String>,
    pub actor_id: Option<Uuid>,
    pub at: DateTime<Utc>,
    pub client_visible: bool,
}

impl From<timeline::Model> for TimelineEntry {
    fn from(t: timeline::Model) -> Self {
        Self {
            id: t.id,
            kind: TimelineKind::parse(&t.kind).unwrap_or(TimelineKind::Note),
            from: t.from_value,
            to: t.to_value,
            note: t.note,
            actor_id: t.actor_id,
            at: t.at,
            client_visible: t.client_visible,
        }
    }
}

/// `GET /cases/{id}/timeline`, newest first. Clients see client-visible entries only.
pub async fn timeline(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<TimelineEntry>> {
    let a = access::require(state, state.db.conn(), p, id).await?;
    let after: Option<Uuid> = decode_cursor(cursor)?;
    let mut q = timeline::Entity::find().filter(timeline::Column::CaseId.eq(id));
    if !a.is_staff(p) {
        q = q.filter(timeline::Column::ClientVisible.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(timeline::Column::Id.lt(after));
    }
    let read = async {
        Ok(q.order_by_desc(timeline::Column::Id)
            .limit(limit.get() + 1)
            .all(state.db.conn())
            .await?)
    };
    let rows = state
        .audit
        .while_reading(read_entry(p, &a, "case.timeline_read"), read)
        .await?;
    let items: Vec<TimelineEntry> = rows.into_iter().map(Into::into).collect();
    Ok(crate::http::pagination::page_from(
        items,
        limit,
        |e: &TimelineEntry| e.id,
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTimelineEntry {
    /// `note` or `milestone`.
    pub kind: String,
    pub note: String,
    #[serde(default)]
    pub client_visible: bool,
}

/// `POST /cases/{id}/timeline`: staff add notes and milestones (internal unless marked).
pub async fn add_entry(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    e: NewTimelineEntry,
) -> Result<TimelineEntry> {
    let mut v = Validator::default();
    let kind = v.check("kind", TimelineKind::parse(&e.kind));
    if kind.is_some_and(|k| !matches!(k, TimelineKind::Note | TimelineKind::Milestone)) {
        v.push("kind", "must be note or milestone");
    }
    let note = check_text(&mut v, "note", &e.note, 5_000).filter(|n| !n.is_empty());
    if note.is_none() {
        v.push("note", "is required");
    }
    v.finish()?;
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, id).await?;
    let row = add_timeline(
        &*txn,
        id,
        kind.expect("checked"),
        None,
        None,
        note.as_deref(),
        p,
        e.client_visible,
    )
    .await?;
    case_updated(
        &*txn,
        id,
        if e.client_visible {
            Audience::Case
        } else {
            Audience::CaseStaff
        },
        serde_json::json!({"change": "timeline", "entry_id": row.id}),
    )
    .await?;
    touch(&*txn, id).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("case.timeline_add", "case")
                .by(p)
                .resource(id)
                .case(id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(row.into())
}

/// The one way a case announces a change live: a `case.updated` event row in the caller's
/// transaction, for everyone on the case or only its staff.
pub(super) async fn case_updated<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    audience: Audience,
    data: serde_json::Value,
) -> Result<()> {
    realtime::emit_in(
        conn,
        NewEvent {
            kind: "case.updated",
            case_id: Some(case_id),
            audience,
            data,
        },
    )
    .await?;
    Ok(())
}

/// Mark a case as changed now (sorting by `updated_at`).
pub(super) async fn touch<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<()> {
    legal_case::Entity::update_many()
        .col_expr(legal_case::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(legal_case::Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Number and title of the given cases, for labelling rows of other lists (messages,
/// documents, invoices) in one query; cases the caller may not see are left out.
pub async fn labels_of(
    state: &AppState,
    p: &Principal,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, (String, String)>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = legal_case::Entity::find().filter(legal_case::Column::Id.is_in(ids.to_vec()));
    if let Some(c) = access::visible_condition(p) {
        q = q.filter(c);
    }
    Ok(q.all(state.db.conn())
        .await?
        .into_iter()
        .map(|c| (c.id, (c.number, c.title)))
        .collect())
}
