//! Availability, busy blocks, slots and appointments: the one place bookings change.
//!
//! No double booking is guaranteed by the database, not by a check before the insert: every
//! active appointment owns one `appointment_claim` row per participant per 5-minute bucket,
//! under a primary key on (user_id, bucket). Two overlapping bookings for the same person
//! cannot both commit on either backend (docs/adr/0003-no-double-booking.md).

use chrono::{DateTime, Datelike, Duration, Utc};
use chrono_tz::Tz;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    calendar,
    domain::{
        self, AppointmentStatus, GRID_MINUTES, MAX_DURATION_MINUTES, MAX_SLOT_RANGE_DAYS, Rule,
        Window,
    },
    entity::{appointment, availability, busy_block, claim, reminder},
};
use crate::{
    AppState,
    audit::{NewEntry, Outcome, service::append_in},
    auth::Principal,
    cases::{domain::MemberRole, entity::member},
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, decode_cursor, page_from},
    mail::{self, Attachment, NewMail},
    realtime::{self, Audience, NewEvent},
    users::{
        domain::{Role, UserStatus},
        entity::user,
    },
};

// ---------------------------------------------------------------------------------------
// Views

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AppointmentView {
    pub id: Uuid,
    pub attorney_id: Uuid,
    pub client_id: Option<Uuid>,
    pub case_id: Option<Uuid>,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub title: String,
    pub location: Option<String>,
    pub notes: Option<String>,
    pub status: AppointmentStatus,
    /// Bumped on every change (the iCalendar `SEQUENCE`).
    pub sequence: i32,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<appointment::Model> for AppointmentView {
    fn from(a: appointment::Model) -> Self {
        Self {
            id: a.id,
            attorney_id: a.attorney_id,
            client_id: a.client_id,
            case_id: a.case_id,
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            title: a.title,
            location: a.location,
            notes: a.notes,
            status: AppointmentStatus::parse(&a.status).unwrap_or(AppointmentStatus::Cancelled),
            sequence: a.sequence,
            created_by: a.created_by,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvailabilityDoc {
    /// IANA time zone the rules are written in, e.g. `America/New_York`.
    pub timezone: String,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct BusyView {
    pub id: Uuid,
    pub user_id: Uuid,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<busy_block::Model> for BusyView {
    fn from(b: busy_block::Model) -> Self {
        Self {
            id: b.id,
            user_id: b.user_id,
            starts_at: b.starts_at,
            ends_at: b.ends_at,
            reason: b.reason,
            created_at: b.created_at,
        }
    }
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Slot {
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
}

// ---------------------------------------------------------------------------------------
// Shared checks

fn is_participant(a: &appointment::Model, user_id: Uuid) -> bool {
    a.attorney_id == user_id || a.client_id == Some(user_id) || a.created_by == Some(user_id)
}

fn participants(a: &appointment::Model) -> Vec<Uuid> {
    let mut v = vec![a.attorney_id];
    v.extend(a.client_id);
    v
}

fn parse_time(v: &mut Validator, field: &str, raw: &str) -> Option<DateTime<Utc>> {
    // A bare date means midnight UTC (handy for ranges).
    let t = match chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d") {
        Ok(d) => Some(d.and_hms_opt(0, 0, 0).expect("midnight").and_utc()),
        Err(_) => DateTime::parse_from_rfc3339(raw)
            .ok()
            .map(|t| t.with_timezone(&Utc)),
    };
    let Some(t) = t else {
        v.push(
            field,
            "must be an RFC 3339 date-time like 2027-01-04T09:00:00Z",
        );
        return None;
    };
    // chrono reads years up to ±262,142, and a day's arithmetic near that edge overflows.
    if !(1900..=9999).contains(&t.year()) {
        v.push(field, "must be a date between the years 1900 and 9999");
        return None;
    }
    Some(t)
}

fn check_interval(
    v: &mut Validator,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut ok = true;
    if ends_at <= starts_at {
        v.push("ends_at", "must be after starts_at");
        ok = false;
    } else if ends_at - starts_at > Duration::minutes(MAX_DURATION_MINUTES) {
        v.push(
            "ends_at",
            format!("appointments last at most {MAX_DURATION_MINUTES} minutes"),
        );
        ok = false;
    }
    for (f, t) in [("starts_at", starts_at), ("ends_at", ends_at)] {
        if !domain::on_grid(t) {
            v.push(f, format!("must be on a {GRID_MINUTES}-minute boundary"));
            ok = false;
        }
    }
    ok.then_some((starts_at, ends_at))
}

fn check_text(
    v: &mut Validator,
    field: &str,
    s: &str,
    max: usize,
    required: bool,
) -> Option<String> {
    let t = s.trim();
    if required && t.is_empty() {
        v.push(field, "is required");
        None
    } else if t.chars().count() > max {
        v.push(field, format!("must be at most {max} characters"));
        None
    } else if max <= 300 && t.chars().any(char::is_control) {
        v.push(field, "must not contain control characters");
        None
    } else {
        Some(t.to_string())
    }
}

async fn load_user<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<user::Model>> {
    Ok(user::Entity::find_by_id(id).one(conn).await?)
}

fn active_role(u: &user::Model) -> Option<Role> {
    (u.status == UserStatus::Active.as_str())
        .then(|| Role::parse(&u.role).ok())
        .flatten()
}

/// Who may read or change a user's availability and busy blocks: the attorney, and admins.
/// Other staff get 403 (they may know the user); clients 404.
async fn require_calendar_owner(state: &AppState, p: &Principal, id: Uuid) -> Result<user::Model> {
    let u = load_user(state.db.conn(), id)
        .await?
        .ok_or(Error::NotFound)?;
    if p.is_admin() || p.user_id == id {
        if !matches!(active_role(&u), Some(Role::Attorney | Role::Admin)) {
            return Err(Error::invalid("id", "only attorneys have availability"));
        }
        return Ok(u);
    }
    if p.is_staff() {
        return Err(Error::Forbidden(
            "Only the attorney and admins manage an attorney's calendar.",
        ));
    }
    Err(state
        .audit
        .deny_hidden(p, NewEntry::new("calendar.access", "user").resource(id)))
}

/// Whether `attorney` is on the legal team of a case `client` belongs to (of `case_id` if given).
async fn attorney_serves_client<C: ConnectionTrait>(
    conn: &C,
    attorney: Uuid,
    client: Uuid,
    case_id: Option<Uuid>,
) -> Result<bool> {
    let client_cases = crate::cases::access::case_ids_of(conn, client, false).await?;
    let cases: Vec<Uuid> = match case_id {
        Some(c) if client_cases.contains(&c) => vec![c],
        Some(_) => return Ok(false),
        None => client_cases,
    };
    if cases.is_empty() {
        return Ok(false);
    }
    let n = member::Entity::find()
        .filter(member::Column::UserId.eq(attorney))
        .filter(member::Column::CaseId.is_in(cases))
        .filter(member::Column::Role.is_in([
            MemberRole::LeadAttorney.as_str(),
            MemberRole::Attorney.as_str(),
        ]))
        .count(conn)
        .await?;
    Ok(n > 0)
}

/// Whether `client` is a client of a case on which `staff` is on the legal team: the clients a
/// non-admin staff member may book (and so mail, and probe the busy times of).
async fn staff_serves_client<C: ConnectionTrait>(
    conn: &C,
    staff: Uuid,
    client: Uuid,
) -> Result<bool> {
    let n = member::Entity::find()
        .filter(member::Column::UserId.eq(client))
        .filter(member::Column::Role.eq(MemberRole::Client.as_str()))
        .filter(
            member::Column::CaseId.in_subquery(crate::cases::access::member_cases_as(
                staff,
                &[
                    MemberRole::LeadAttorney,
                    MemberRole::Attorney,
                    MemberRole::Paralegal,
                ],
            )),
        )
        .count(conn)
        .await?;
    Ok(n > 0)
}

async fn load_rules<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
) -> Result<Option<(Tz, Vec<Window>)>> {
    let Some(a) = availability::Entity::find_by_id(user_id).one(conn).await? else {
        return Ok(None);
    };
    let tz: Tz = a
        .timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("stored time zone {} is unknown", a.timezone))?;
    let rules: Vec<Rule> = serde_json::from_str(&a.rules).map_err(anyhow::Error::from)?;
    Ok(Some((
        tz,
        rules.iter().filter_map(|r| Window::parse(r).ok()).collect(),
    )))
}

/// Busy intervals of `users` overlapping `from..to`: active appointments and busy blocks.
async fn busy_intervals<C: ConnectionTrait>(
    conn: &C,
    users: &[Uuid],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    except: Option<Uuid>,
) -> Result<Vec<(DateTime<Utc>, DateTime<Utc>)>> {
    let mut q = appointment::Entity::find()
        .filter(
            Condition::any()
                .add(appointment::Column::AttorneyId.is_in(users.to_vec()))
                .add(appointment::Column::ClientId.is_in(users.to_vec())),
        )
        .filter(appointment::Column::Status.is_in([
            AppointmentStatus::Requested.as_str(),
            AppointmentStatus::Confirmed.as_str(),
        ]))
        .filter(appointment::Column::StartsAt.lt(to))
        .filter(appointment::Column::EndsAt.gt(from));
    if let Some(id) = except {
        q = q.filter(appointment::Column::Id.ne(id));
    }
    let mut out: Vec<_> = q
        .all(conn)
        .await?
        .into_iter()
        .map(|a| (a.starts_at, a.ends_at))
        .collect();
    out.extend(
        busy_block::Entity::find()
            .filter(busy_block::Column::UserId.is_in(users.to_vec()))
            .filter(busy_block::Column::StartsAt.lt(to))
            .filter(busy_block::Column::EndsAt.gt(from))
            .all(conn)
            .await?
            .into_iter()
            .map(|b| (b.starts_at, b.ends_at)),
    );
    Ok(out)
}

/// Clients may only take a free slot: inside the attorney's availability, clear of busy blocks.
/// (Overlap with other appointments is left to the claims, which also catch races.)
async fn require_free_slot<C: ConnectionTrait>(
    conn: &C,
    attorney: Uuid,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
) -> Result<()> {
    let conflict = || Error::Conflict("This time is not a free slot of the attorney.".into());
    let Some((tz, rules)) = load_rules(conn, attorney).await? else {
        return Err(conflict());
    };
    let windows = domain::windows_between(tz, &rules, starts_at, ends_at);
    if !domain::within_windows(&windows, starts_at, ends_at) {
        return Err(conflict());
    }
    let blocks = busy_block::Entity::find()
        .filter(busy_block::Column::UserId.eq(attorney))
        .filter(busy_block::Column::StartsAt.lt(ends_at))
        .filter(busy_block::Column::EndsAt.gt(starts_at))
        .count(conn)
        .await?;
    if blocks > 0 {
        return Err(conflict());
    }
    Ok(())
}

/// Take the 5-minute buckets of `a` for its attorney and client. A bucket someone already
/// holds is a unique violation: the booking overlaps → 409.
async fn claim_time<C: ConnectionTrait>(conn: &C, a: &appointment::Model) -> Result<()> {
    let mut rows = Vec::new();
    for user_id in participants(a) {
        for bucket in domain::buckets(a.starts_at, a.ends_at) {
            rows.push(claim::ActiveModel {
                user_id: Set(user_id),
                bucket: Set(bucket),
                appointment_id: Set(a.id),
            });
        }
    }
    match claim::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::db::is_unique_violation(&e) => Err(Error::Conflict(
            "This time overlaps another appointment of the attorney or the client.".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

async fn release_time<C: ConnectionTrait>(conn: &C, appointment_id: Uuid) -> Result<()> {
    claim::Entity::delete_many()
        .filter(claim::Column::AppointmentId.eq(appointment_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Live event and mail to both participants about `a`, inside the change's transaction.
pub(super) async fn announce<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    a: &appointment::Model,
    event: &'static str,
    mail_kind: Option<&'static str>,
    change: &str,
) -> Result<()> {
    let view = AppointmentView::from(a.clone());
    realtime::emit_in(
        conn,
        NewEvent {
            kind: event,
            case_id: a.case_id,
            audience: Audience::Users(participants(a)),
            data: serde_json::json!({"change": change, "appointment": view}),
        },
    )
    .await?;
    let Some(mail_kind) = mail_kind else {
        return Ok(());
    };
    let ics = calendar::render(std::slice::from_ref(a), &state.config.public_url);
    let users = user::Entity::find()
        .filter(user::Column::Id.is_in(participants(a)))
        .all(conn)
        .await?;
    for u in users {
        if u.status != UserStatus::Active.as_str() {
            continue;
        }
        let tz: Tz = u.timezone.parse().unwrap_or(chrono_tz::UTC);
        let when = format!(
            "{} – {} ({})",
            a.starts_at.with_timezone(&tz).format("%A %-d %B %Y, %H:%M"),
            a.ends_at.with_timezone(&tz).format("%H:%M"),
            tz.name()
        );
        let subject = match mail_kind {
            "appointment.cancelled" => "Appointment cancelled".to_string(),
            "appointment.changed" => "Appointment changed".to_string(),
            "appointment.reminder" => "Appointment reminder".to_string(),
            _ => "Appointment booked".to_string(),
        };
        let text = format!(
            "Hello {name},\n\n{subject}: {title}\nWhen: {when}\nStatus: {status}\n{location}\nDetails are in the portal: {url}\n",
            name = u.name,
            title = a.title,
            status = a.status,
            location = a
                .location
                .as_deref()
                .map(|l| format!("Where: {l}\n"))
                .unwrap_or_default(),
            url = state.config.public_url,
        );
        mail::enqueue_in(
            conn,
            NewMail {
                kind: mail_kind,
                to_address: u.email,
                to_user_id: Some(u.id),
                subject,
                text,
                attachments: vec![Attachment {
                    filename: "appointment.ics".into(),
                    content_type: "text/calendar; charset=utf-8".into(),
                    data: ics.clone().into_bytes(),
                }],
            },
        )
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Availability and busy blocks

/// `PUT /users/{id}/availability`.
pub async fn put_availability(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    doc: AvailabilityDoc,
) -> Result<AvailabilityDoc> {
    require_calendar_owner(state, p, id).await?;
    let mut v = Validator::default();
    let tz = v.check(
        "timezone",
        doc.timezone
            .parse::<Tz>()
            .map_err(|_| "must be an IANA time zone like America/New_York"),
    );
    if doc.rules.len() > 50 {
        v.push("rules", "at most 50 rules");
    }
    for (i, r) in doc.rules.iter().enumerate() {
        if let Err(m) = Window::parse(r) {
            v.push(&format!("rules[{i}]"), m);
        }
    }
    v.finish()?;
    let tz = tz.expect("checked");
    let txn = state.db.begin_write().await?;
    availability::Entity::delete_by_id(id).exec(&*txn).await?;
    availability::ActiveModel {
        user_id: Set(id),
        timezone: Set(tz.name().to_string()),
        rules: Set(serde_json::to_string(&doc.rules).map_err(anyhow::Error::from)?),
        updated_at: Set(crate::db::now()),
    }
    .insert(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("availability.update", "user")
                .by(p)
                .resource(id)
                .details(serde_json::json!({"timezone": tz.name(), "rules": doc.rules.len()})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(AvailabilityDoc {
        timezone: tz.name().to_string(),
        rules: doc.rules,
    })
}

/// `GET /users/{id}/availability`: no rules yet → the user's time zone and no rules.
pub async fn get_availability(
    state: &AppState,
    p: &Principal,
    id: Uuid,
) -> Result<AvailabilityDoc> {
    let u = require_calendar_owner(state, p, id).await?;
    let doc = match availability::Entity::find_by_id(id)
        .one(state.db.conn())
        .await?
    {
        Some(a) => AvailabilityDoc {
            timezone: a.timezone,
            rules: serde_json::from_str(&a.rules).map_err(anyhow::Error::from)?,
        },
        None => AvailabilityDoc {
            timezone: u.timezone,
            rules: Vec::new(),
        },
    };
    state
        .audit
        .record(
            NewEntry::new("availability.read", "user")
                .by(p)
                .resource(id),
        )
        .await?;
    Ok(doc)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBusy {
    pub starts_at: String,
    pub ends_at: String,
    /// e.g. "court", "vacation". Shown only to the attorney and admins.
    pub reason: Option<String>,
}

/// `POST /users/{id}/busy`: time off, court dates.
pub async fn add_busy(state: &AppState, p: &Principal, id: Uuid, b: NewBusy) -> Result<BusyView> {
    require_calendar_owner(state, p, id).await?;
    let mut v = Validator::default();
    let s = parse_time(&mut v, "starts_at", &b.starts_at);
    let e = parse_time(&mut v, "ends_at", &b.ends_at);
    if let (Some(s), Some(e)) = (s, e) {
        if e <= s {
            v.push("ends_at", "must be after starts_at");
        } else if e - s > Duration::days(366) {
            v.push("ends_at", "a busy block lasts at most a year");
        }
    }
    let reason = b
        .reason
        .as_deref()
        .and_then(|r| check_text(&mut v, "reason", r, 200, false))
        .filter(|r| !r.is_empty());
    v.finish()?;
    let t = crate::db::now();
    let txn = state.db.begin_write().await?;
    let m = busy_block::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(id),
        starts_at: Set(s.expect("checked")),
        ends_at: Set(e.expect("checked")),
        reason: Set(reason),
        created_by: Set(p.actor_id()),
        created_at: Set(t),
    }
    .insert(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("busy.create", "busy_block")
                .by(p)
                .resource(m.id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(m.into())
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct RangeParams {
    /// RFC 3339 date-time or `YYYY-MM-DD` (midnight UTC).
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TimeCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

/// `GET /users/{id}/busy?from&to`.
pub async fn list_busy(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    r: RangeParams,
) -> Result<Page<BusyView>> {
    require_calendar_owner(state, p, id).await?;
    let limit = Limit::parse(r.limit)?;
    let mut v = Validator::default();
    let from = r
        .from
        .as_deref()
        .and_then(|s| parse_time(&mut v, "from", s));
    let to = r.to.as_deref().and_then(|s| parse_time(&mut v, "to", s));
    v.finish()?;
    let cursor: Option<TimeCursor> = decode_cursor(r.cursor.as_deref())?;
    let mut q = busy_block::Entity::find().filter(busy_block::Column::UserId.eq(id));
    if let Some(f) = from {
        q = q.filter(busy_block::Column::EndsAt.gt(f));
    }
    if let Some(t) = to {
        q = q.filter(busy_block::Column::StartsAt.lt(t));
    }
    if let Some(c) = cursor {
        q = q.filter(
            Condition::any()
                .add(busy_block::Column::StartsAt.gt(c.at))
                .add(
                    Condition::all()
                        .add(busy_block::Column::StartsAt.eq(c.at))
                        .add(busy_block::Column::Id.gt(c.id)),
                ),
        );
    }
    let rows = q
        .order_by_asc(busy_block::Column::StartsAt)
        .order_by_asc(busy_block::Column::Id)
        .limit(limit.get() + 1)
        .all(state.db.conn())
        .await?;
    state
        .audit
        .record(NewEntry::new("busy.list", "user").by(p).resource(id))
        .await?;
    let page = crate::http::pagination::page_from(rows, limit, |b| TimeCursor {
        at: b.starts_at,
        id: b.id,
    });
    Ok(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    })
}

/// `DELETE /users/{id}/busy/{busy_id}`.
pub async fn delete_busy(state: &AppState, p: &Principal, id: Uuid, busy_id: Uuid) -> Result<()> {
    require_calendar_owner(state, p, id).await?;
    let txn = state.db.begin_write().await?;
    let n = busy_block::Entity::delete_many()
        .filter(busy_block::Column::Id.eq(busy_id))
        .filter(busy_block::Column::UserId.eq(id))
        .exec(&*txn)
        .await?
        .rows_affected;
    if n == 0 {
        return Err(Error::NotFound);
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("busy.delete", "busy_block")
                .by(p)
                .resource(busy_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Slots

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct SlotParams {
    /// RFC 3339 date-time or `YYYY-MM-DD` (midnight UTC).
    pub from: Option<String>,
    pub to: Option<String>,
    /// 5..720, a multiple of 5.
    pub duration_minutes: Option<i64>,
    /// 1..100, default 20.
    pub limit: Option<i64>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// `GET /users/{id}/slots`: free slots of an attorney. Clients see only attorneys on their
/// cases (others are 404); every slot is bookable by a client (minimum notice included) for
/// at least `SLOT_CHOOSING_MINUTES` after it is listed.
pub async fn slots(state: &AppState, p: &Principal, id: Uuid, q: SlotParams) -> Result<Page<Slot>> {
    let limit = Limit::parse(q.limit)?;
    let after: Option<DateTime<Utc>> = decode_cursor(q.cursor.as_deref())?;
    let all = free_slots_for(state, p, id, &q).await?;
    // A page of the range's slots, in time order: the cursor is the last one's start.
    let rest: Vec<Slot> = all
        .into_iter()
        .filter(|s| after.is_none_or(|a| s.starts_at > a))
        .take(limit.get() as usize + 1)
        .collect();
    Ok(page_from(rest, limit, |s| s.starts_at))
}

/// Every free slot of attorney `id` in the range `q` asks for (at most
/// [`MAX_SLOT_RANGE_DAYS`]), in time order; 404 for an attorney the caller may not book.
pub async fn free_slots_for(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    q: &SlotParams,
) -> Result<Vec<Slot>> {
    let mut v = Validator::default();
    let from = match q.from.as_deref() {
        Some(s) => parse_time(&mut v, "from", s),
        None => {
            v.push("from", "is required");
            None
        }
    };
    let to = match q.to.as_deref() {
        Some(s) => parse_time(&mut v, "to", s),
        None => {
            v.push("to", "is required");
            None
        }
    };
    let duration = match q.duration_minutes {
        Some(d) if (GRID_MINUTES..=MAX_DURATION_MINUTES).contains(&d) && d % GRID_MINUTES == 0 => {
            Some(Duration::minutes(d))
        }
        Some(_) => {
            v.push(
                "duration_minutes",
                format!("must be a multiple of {GRID_MINUTES} between {GRID_MINUTES} and {MAX_DURATION_MINUTES}"),
            );
            None
        }
        None => {
            v.push("duration_minutes", "is required");
            None
        }
    };
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            v.push("to", "must be after from");
        } else if t - f > Duration::days(MAX_SLOT_RANGE_DAYS) {
            v.push(
                "to",
                format!("the range spans at most {MAX_SLOT_RANGE_DAYS} days"),
            );
        }
    }
    v.finish()?;
    let (from, to, duration) = (
        from.expect("checked"),
        to.expect("checked"),
        duration.expect("checked"),
    );
    let conn = state.db.conn();
    let u = load_user(conn, id).await?.ok_or(Error::NotFound)?;
    if !matches!(active_role(&u), Some(Role::Attorney | Role::Admin)) {
        return Err(Error::NotFound);
    }
    if !p.is_staff() && !attorney_serves_client(conn, id, p.user_id, None).await? {
        return Err(state
            .audit
            .deny_hidden(p, NewEntry::new("slots.read", "user").resource(id)));
    }
    Ok(match load_rules(conn, id).await? {
        None => Vec::new(),
        Some((tz, rules)) => {
            let windows = domain::windows_between(tz, &rules, from, to);
            // A client's own appointments also make a slot useless to them.
            let mut whose = vec![id];
            if !p.is_staff() {
                whose.push(p.user_id);
            }
            let busy = busy_intervals(conn, &whose, from, to, None).await?;
            let earliest = crate::db::now()
                + Duration::minutes(
                    state.config.booking_min_notice_minutes + domain::SLOT_CHOOSING_MINUTES,
                );
            domain::free_slots(&windows, &busy, from, to, earliest, duration)
                .into_iter()
                .map(|(s, e)| Slot {
                    starts_at: s,
                    ends_at: e,
                })
                .collect()
        }
    })
}

// ---------------------------------------------------------------------------------------
// Appointments

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAppointment {
    pub attorney_id: Uuid,
    pub case_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub starts_at: String,
    pub ends_at: String,
    pub title: String,
    pub location: Option<String>,
    pub notes: Option<String>,
}

/// `POST /appointments`. Clients book free slots of attorneys on their cases, for themselves,
/// as `requested`; staff book any time (no overlap) as `confirmed`, but staff other than
/// admins only for clients of their cases, and on a case only with its legal team.
pub async fn create(state: &AppState, p: &Principal, n: NewAppointment) -> Result<AppointmentView> {
    state
        .limits
        .check(crate::limits::Action::Booking, &p.user_id.to_string())?;
    let mut v = Validator::default();
    let s = parse_time(&mut v, "starts_at", &n.starts_at);
    let e = parse_time(&mut v, "ends_at", &n.ends_at);
    let interval = match (s, e) {
        (Some(s), Some(e)) => check_interval(&mut v, s, e),
        _ => None,
    };
    let title = check_text(&mut v, "title", &n.title, 300, true);
    let location = n
        .location
        .as_deref()
        .and_then(|l| check_text(&mut v, "location", l, 300, false))
        .filter(|l| !l.is_empty());
    let notes = n
        .notes
        .as_deref()
        .and_then(|l| check_text(&mut v, "notes", l, 5000, false))
        .filter(|l| !l.is_empty());
    let now = crate::db::now();
    if let Some((s, _)) = interval {
        let notice = Duration::minutes(if p.is_staff() {
            0
        } else {
            state.config.booking_min_notice_minutes
        });
        if s < now + notice {
            v.push(
                "starts_at",
                format!("must be at least {} minutes from now", notice.num_minutes()),
            );
        }
    }
    if !p.is_staff() && n.client_id.is_some_and(|c| c != p.user_id) {
        return Err(Error::Forbidden(
            "Clients book appointments for themselves only.",
        ));
    }
    let conn = state.db.conn();
    let attorney = load_user(conn, n.attorney_id).await?;
    let attorney_ok = attorney
        .as_ref()
        .is_some_and(|u| matches!(active_role(u), Some(Role::Attorney | Role::Admin)));
    let (client_id, status) = if p.is_staff() {
        if !attorney_ok {
            v.push("attorney_id", "is not an active attorney");
        }
        if let Some(c) = n.client_id {
            // A booking mails the client an invitation and makes the caller a participant, and
            // its 409 tells when the client is busy: a client of none of the caller's cases
            // (or no one at all) does not exist for them, before anything else is checked.
            if !p.is_admin() && !staff_serves_client(conn, p.user_id, c).await? {
                state.audit.record(denied_booking(p, &n, c)).await?;
                return Err(Error::NotFound);
            }
            let ok = load_user(conn, c)
                .await?
                .is_some_and(|u| active_role(&u) == Some(Role::Client));
            if !ok {
                v.push("client_id", "is not an active client");
            }
        }
        (n.client_id, AppointmentStatus::Confirmed)
    } else {
        (Some(p.user_id), AppointmentStatus::Requested)
    };
    v.finish()?;
    let (starts_at, ends_at) = interval.expect("checked");
    if let Some(case_id) = n.case_id {
        // Invisible case → 404 for everyone. Staff book on it only as its legal team, for its
        // clients, with an attorney on its team (admins with any attorney).
        if p.is_staff() {
            crate::cases::access::require_staff(state, conn, p, case_id).await?;
            if let Some(c) = client_id
                && crate::cases::access::membership(conn, case_id, c).await?
                    != Some(MemberRole::Client)
            {
                return Err(Error::invalid("client_id", "is not a client of this case"));
            }
            if !p.is_admin()
                && !crate::cases::access::membership(conn, case_id, n.attorney_id)
                    .await?
                    .is_some_and(MemberRole::is_staff)
            {
                return Err(Error::invalid(
                    "attorney_id",
                    "is not on the legal team of this case",
                ));
            }
        } else {
            crate::cases::access::require(state, conn, p, case_id).await?;
        }
    }
    if !p.is_staff() {
        // An attorney who is not on the client's (given) case does not exist for them.
        if !attorney_ok
            || !attorney_serves_client(conn, n.attorney_id, p.user_id, n.case_id).await?
        {
            if attorney.is_some() {
                state
                    .audit
                    .record(denied_booking(p, &n, n.attorney_id))
                    .await?;
            }
            return Err(Error::NotFound);
        }
    }

    let txn = state.db.begin_write().await?;
    if !p.is_staff() {
        require_free_slot(&*txn, n.attorney_id, starts_at, ends_at).await?;
    }
    let a = appointment::ActiveModel {
        id: Set(Uuid::now_v7()),
        attorney_id: Set(n.attorney_id),
        client_id: Set(client_id),
        case_id: Set(n.case_id),
        starts_at: Set(starts_at),
        ends_at: Set(ends_at),
        title: Set(title.expect("checked")),
        location: Set(location),
        notes: Set(notes),
        status: Set(status.as_str().into()),
        sequence: Set(0),
        scheduled_at: Set(now),
        created_by: Set(p.actor_id()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&*txn)
    .await?;
    claim_time(&*txn, &a).await?;
    announce(
        state,
        &*txn,
        &a,
        "appointment.created",
        Some("appointment.booked"),
        "created",
    )
    .await?;
    append_in(&*txn, vec![audit_entry("appointment.create", p, &a)]).await?;
    txn.commit().await?;
    Ok(a.into())
}

/// A booking refused as 404 because of `whom` (a client or attorney the caller may not book).
fn denied_booking(p: &Principal, n: &NewAppointment, whom: Uuid) -> NewEntry {
    let mut e = NewEntry::new("appointment.create", "user")
        .by(p)
        .resource(whom)
        .outcome(Outcome::Denied)
        .details(serde_json::json!({
            "attorney_id": n.attorney_id, "client_id": n.client_id, "case_id": n.case_id,
        }));
    if let Some(c) = n.case_id {
        e = e.case(c);
    }
    e
}

fn audit_entry(action: &str, p: &Principal, a: &appointment::Model) -> NewEntry {
    let mut e = NewEntry::new(action, "appointment")
        .by(p)
        .resource(a.id)
        .details(serde_json::json!({
            "attorney_id": a.attorney_id, "client_id": a.client_id,
            "starts_at": a.starts_at, "ends_at": a.ends_at, "status": a.status,
        }));
    if let Some(c) = a.case_id {
        e = e.case(c);
    }
    e
}

/// An appointment the caller may see (participant, creator or admin), else 404 (and a denial
/// in the audit trail when it exists).
async fn require_visible<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<appointment::Model> {
    let Some(a) = appointment::Entity::find_by_id(id).one(conn).await? else {
        return Err(Error::NotFound);
    };
    if !p.is_admin() && !is_participant(&a, p.user_id) {
        let mut e = NewEntry::new("appointment.access", "appointment").resource(id);
        if let Some(c) = a.case_id {
            e = e.case(c);
        }
        return Err(state.audit.deny_hidden(p, e));
    }
    Ok(a)
}

/// `GET /appointments/{id}` (extension).
pub async fn get(state: &AppState, p: &Principal, id: Uuid) -> Result<AppointmentView> {
    let a = require_visible(state, state.db.conn(), p, id).await?;
    state
        .audit
        .record(audit_entry("appointment.read", p, &a))
        .await?;
    Ok(a.into())
}

/// `GET /appointments/{id}/ics`: one VEVENT.
pub async fn ics(state: &AppState, p: &Principal, id: Uuid) -> Result<String> {
    let a = require_visible(state, state.db.conn(), p, id).await?;
    state
        .audit
        .record(audit_entry("appointment.export", p, &a))
        .await?;
    Ok(calendar::render(&[a], &state.config.public_url))
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ListParams {
    /// Appointments ending after this (RFC 3339 or `YYYY-MM-DD`).
    pub from: Option<String>,
    /// Appointments starting before this.
    pub to: Option<String>,
    pub status: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// `GET /appointments`: the caller's own (attorney, client or creator), by start time.
pub async fn list(state: &AppState, p: &Principal, f: ListParams) -> Result<Page<AppointmentView>> {
    let limit = Limit::parse(f.limit)?;
    let mut v = Validator::default();
    let from = f
        .from
        .as_deref()
        .and_then(|s| parse_time(&mut v, "from", s));
    let to = f.to.as_deref().and_then(|s| parse_time(&mut v, "to", s));
    let status = f
        .status
        .as_deref()
        .and_then(|s| v.check("status", AppointmentStatus::parse(s)));
    v.finish()?;
    let cursor: Option<TimeCursor> = decode_cursor(f.cursor.as_deref())?;
    let mut q = appointment::Entity::find().filter(mine(p.user_id));
    if let Some(t) = from {
        q = q.filter(appointment::Column::EndsAt.gt(t));
    }
    if let Some(t) = to {
        q = q.filter(appointment::Column::StartsAt.lt(t));
    }
    if let Some(s) = status {
        q = q.filter(appointment::Column::Status.eq(s.as_str()));
    }
    if let Some(c) = cursor {
        q = q.filter(
            Condition::any()
                .add(appointment::Column::StartsAt.gt(c.at))
                .add(
                    Condition::all()
                        .add(appointment::Column::StartsAt.eq(c.at))
                        .add(appointment::Column::Id.gt(c.id)),
                ),
        );
    }
    let rows = q
        .order_by_asc(appointment::Column::StartsAt)
        .order_by_asc(appointment::Column::Id)
        .limit(limit.get() + 1)
        .all(state.db.conn())
        .await?;
    let page = crate::http::pagination::page_from(rows, limit, |a| TimeCursor {
        at: a.starts_at,
        id: a.id,
    });
    state
        .audit
        .record(
            NewEntry::new("appointment.list", "appointment")
                .by(p)
                .details(serde_json::json!({
                    "count": page.items.len(),
                    "appointment_ids": page.items.iter().map(|a| a.id).collect::<Vec<_>>(),
                })),
        )
        .await?;
    Ok(Page {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    })
}

fn mine(user_id: Uuid) -> Condition {
    Condition::any()
        .add(appointment::Column::AttorneyId.eq(user_id))
        .add(appointment::Column::ClientId.eq(user_id))
        .add(appointment::Column::CreatedBy.eq(user_id))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentPatch {
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    pub title: Option<String>,
    pub location: Option<String>,
    pub notes: Option<String>,
}

/// Clients may not change an appointment that starts within the minimum notice.
fn client_notice_ok(state: &AppState, p: &Principal, a: &appointment::Model) -> Result<()> {
    if !p.is_staff()
        && a.starts_at
            < crate::db::now() + Duration::minutes(state.config.booking_min_notice_minutes)
    {
        return Err(Error::Conflict(format!(
            "Appointments starting within {} minutes can only be changed by the firm.",
            state.config.booking_min_notice_minutes
        )));
    }
    Ok(())
}

fn require_active(a: &appointment::Model) -> Result<AppointmentStatus> {
    let s = AppointmentStatus::parse(&a.status).unwrap_or(AppointmentStatus::Cancelled);
    if !s.is_active() {
        return Err(Error::Conflict(format!("The appointment is {s}.")));
    }
    Ok(s)
}

/// `PATCH /appointments/{id}`: reschedule (conflicts checked again) or edit the details.
/// A client's reschedule goes back to `requested`.
pub async fn patch(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    patch: AppointmentPatch,
) -> Result<AppointmentView> {
    state
        .limits
        .check(crate::limits::Action::Booking, &p.user_id.to_string())?;
    let mut v = Validator::default();
    let s = patch
        .starts_at
        .as_deref()
        .and_then(|x| parse_time(&mut v, "starts_at", x));
    let e = patch
        .ends_at
        .as_deref()
        .and_then(|x| parse_time(&mut v, "ends_at", x));
    let title = patch
        .title
        .as_deref()
        .and_then(|t| check_text(&mut v, "title", t, 300, true));
    let location = patch
        .location
        .as_deref()
        .and_then(|l| check_text(&mut v, "location", l, 300, false));
    let notes = patch
        .notes
        .as_deref()
        .and_then(|l| check_text(&mut v, "notes", l, 5000, false));
    v.finish()?;
    let txn = state.db.begin_write().await?;
    let a = require_visible(state, &*txn, p, id).await?;
    require_active(&a)?;
    client_notice_ok(state, p, &a)?;
    if s.is_none() && e.is_none() && title.is_none() && location.is_none() && notes.is_none() {
        // Nothing to change: no new sequence, no mail.
        return Ok(a.into());
    }
    let starts_at = s.unwrap_or(a.starts_at);
    let ends_at = e.unwrap_or(a.ends_at);
    let moved = starts_at != a.starts_at || ends_at != a.ends_at;
    let now = crate::db::now();
    if moved {
        let mut v = Validator::default();
        check_interval(&mut v, starts_at, ends_at);
        let notice = if p.is_staff() {
            0
        } else {
            state.config.booking_min_notice_minutes
        };
        if starts_at < now + Duration::minutes(notice) {
            v.push(
                "starts_at",
                format!("must be at least {notice} minutes from now"),
            );
        }
        v.finish()?;
    }
    let mut m: appointment::ActiveModel = a.clone().into();
    if let Some(t) = title {
        m.title = Set(t);
    }
    if let Some(l) = location {
        m.location = Set(Some(l).filter(|l| !l.is_empty()));
    }
    if let Some(n) = notes {
        m.notes = Set(Some(n).filter(|n| !n.is_empty()));
    }
    if moved {
        if !p.is_staff() {
            require_free_slot(&*txn, a.attorney_id, starts_at, ends_at).await?;
            m.status = Set(AppointmentStatus::Requested.as_str().into());
        }
        m.starts_at = Set(starts_at);
        m.ends_at = Set(ends_at);
        m.scheduled_at = Set(now);
    }
    m.sequence = Set(a.sequence + 1);
    m.updated_at = Set(now);
    let updated = m.update(&*txn).await?;
    if moved {
        release_time(&*txn, id).await?;
        claim_time(&*txn, &updated).await?;
        // Reminders follow the new time.
        reminder::Entity::delete_many()
            .filter(reminder::Column::AppointmentId.eq(id))
            .exec(&*txn)
            .await?;
    }
    announce(
        state,
        &*txn,
        &updated,
        "appointment.updated",
        Some("appointment.changed"),
        if moved { "rescheduled" } else { "edited" },
    )
    .await?;
    append_in(&*txn, vec![audit_entry("appointment.update", p, &updated)]).await?;
    txn.commit().await?;
    Ok(updated.into())
}

/// `POST /appointments/{id}/cancel`: frees the time at once. Cancelling twice is a no-op.
pub async fn cancel(state: &AppState, p: &Principal, id: Uuid) -> Result<AppointmentView> {
    let txn = state.db.begin_write().await?;
    let a = require_visible(state, &*txn, p, id).await?;
    if a.status == AppointmentStatus::Cancelled.as_str() {
        return Ok(a.into());
    }
    require_active(&a)?;
    client_notice_ok(state, p, &a)?;
    let updated = set_status(&*txn, &a, AppointmentStatus::Cancelled).await?;
    release_time(&*txn, id).await?;
    announce(
        state,
        &*txn,
        &updated,
        "appointment.updated",
        Some("appointment.cancelled"),
        "cancelled",
    )
    .await?;
    append_in(&*txn, vec![audit_entry("appointment.cancel", p, &updated)]).await?;
    txn.commit().await?;
    Ok(updated.into())
}

/// `POST /appointments/{id}/confirm`: the firm accepts a requested appointment.
pub async fn confirm(state: &AppState, p: &Principal, id: Uuid) -> Result<AppointmentView> {
    let txn = state.db.begin_write().await?;
    let a = require_visible(state, &*txn, p, id).await?;
    if !p.is_staff() {
        return Err(Error::Forbidden("Only the firm confirms appointments."));
    }
    if require_active(&a)? == AppointmentStatus::Confirmed {
        return Ok(a.into());
    }
    let updated = set_status(&*txn, &a, AppointmentStatus::Confirmed).await?;
    announce(
        state,
        &*txn,
        &updated,
        "appointment.updated",
        Some("appointment.changed"),
        "confirmed",
    )
    .await?;
    append_in(&*txn, vec![audit_entry("appointment.confirm", p, &updated)]).await?;
    txn.commit().await?;
    Ok(updated.into())
}

/// `POST /appointments/{id}/complete` (extension): staff mark an appointment that has begun
/// as held. Completing twice answers 200 unchanged.
pub async fn complete(state: &AppState, p: &Principal, id: Uuid) -> Result<AppointmentView> {
    let txn = state.db.begin_write().await?;
    let a = require_visible(state, &*txn, p, id).await?;
    if !p.is_staff() {
        return Err(Error::Forbidden(
            "Only the firm marks appointments completed.",
        ));
    }
    if a.status == AppointmentStatus::Completed.as_str() {
        return Ok(a.into());
    }
    require_active(&a)?;
    if a.starts_at > crate::db::now() {
        return Err(Error::Conflict(
            "An appointment can be completed once it has begun.".into(),
        ));
    }
    let updated = set_status(&*txn, &a, AppointmentStatus::Completed).await?;
    announce(
        state,
        &*txn,
        &updated,
        "appointment.updated",
        None,
        "completed",
    )
    .await?;
    append_in(
        &*txn,
        vec![audit_entry("appointment.complete", p, &updated)],
    )
    .await?;
    txn.commit().await?;
    Ok(updated.into())
}

async fn set_status<C: ConnectionTrait>(
    conn: &C,
    a: &appointment::Model,
    s: AppointmentStatus,
) -> Result<appointment::Model> {
    let mut m: appointment::ActiveModel = a.clone().into();
    m.status = Set(s.as_str().into());
    m.sequence = Set(a.sequence + 1);
    m.updated_at = Set(crate::db::now());
    Ok(m.update(conn).await?)
}

/// Next active appointments of a user (dashboard), soonest first; `until` bounds the range.
pub async fn upcoming_for<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    from: DateTime<Utc>,
    until: Option<DateTime<Utc>>,
    limit: u64,
) -> Result<Vec<serde_json::Value>> {
    let mut q = appointment::Entity::find()
        .filter(mine(user_id))
        .filter(appointment::Column::EndsAt.gt(from))
        .filter(appointment::Column::Status.is_in([
            AppointmentStatus::Requested.as_str(),
            AppointmentStatus::Confirmed.as_str(),
        ]));
    if let Some(u) = until {
        q = q.filter(appointment::Column::StartsAt.lt(u));
    }
    let rows = q
        .order_by_asc(appointment::Column::StartsAt)
        .order_by_asc(appointment::Column::Id)
        .limit(limit)
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|a| serde_json::to_value(AppointmentView::from(a)).expect("view serialises"))
        .collect())
}
