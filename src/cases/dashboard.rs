//! The first screen (`GET /dashboard`) and case statistics (`GET /stats/cases`).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::{
    ColumnTrait, EntityTrait, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait},
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    access,
    domain::{CasePhase, CaseStatus, DeadlineKind},
    entity::{deadline, legal_case, member, member_deadline},
    service::{in_member_order, through_memberships},
};
use crate::{
    AppState,
    audit::NewEntry,
    auth::Principal,
    error::Error,
    error::Result,
    http::pagination::{Limit, Page, decode_cursor, page_from},
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseSummary {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub status: CaseStatus,
    pub phase: CasePhase,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UpcomingDeadline {
    pub id: Uuid,
    pub case_id: Uuid,
    pub case_number: String,
    pub title: String,
    pub due_on: NaiveDate,
    pub kind: DeadlineKind,
}

/// One call for the first screen. Fields of capabilities still to come (messages,
/// appointments, invoices, documents) are present with empty values until they land.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dashboard {
    pub cases: Vec<CaseSummary>,
    pub unread_messages: i64,
    #[schema(value_type = Vec<Object>)]
    pub upcoming_appointments: Vec<serde_json::Value>,
    pub outstanding_balance_cents: i64,
    pub currency: String,
    #[schema(value_type = Vec<Object>)]
    pub recent_documents: Vec<serde_json::Value>,
    /// Staff only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cases_by_status: Option<BTreeMap<String, i64>>,
    /// The first [`DASHBOARD_DEADLINES`] (50) open deadlines due in the next 30 days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadlines_next_30_days: Option<Vec<UpcomingDeadline>>,
    /// Staff: null when `deadlines_next_30_days` is all of them, else the cursor that
    /// continues it at `GET /deadlines?days=30&cursor=`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub deadlines_next_cursor: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub todays_appointments: Option<Vec<serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unbilled_minutes: Option<i64>,
}

fn visible() -> impl Fn(&Principal) -> sea_orm::Select<legal_case::Entity> {
    |p| {
        let mut q = legal_case::Entity::find();
        if let Some(c) = access::visible_condition(p) {
            q = q.filter(c);
        }
        q
    }
}

async fn count_by(
    state: &AppState,
    p: &Principal,
    col: legal_case::Column,
) -> Result<BTreeMap<String, i64>> {
    let rows: Vec<(Option<String>, i64)> = visible()(p)
        .select_only()
        .column(col)
        .column_as(Expr::col(legal_case::Column::Id).count(), "n")
        .group_by(col)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    Ok(keyed(rows))
}

fn keyed(rows: Vec<(Option<String>, i64)>) -> BTreeMap<String, i64> {
    rows.into_iter()
        .map(|(k, n)| (k.unwrap_or_else(|| "none".into()), n))
        .collect()
}

/// Visible cases by status. A member's are counted from their membership rows' copy of the
/// status (`ix_case_member_status`, the index alone), not from thousands of case rows.
async fn count_by_status(state: &AppState, p: &Principal) -> Result<BTreeMap<String, i64>> {
    if p.is_admin() {
        return count_by(state, p, legal_case::Column::Status).await;
    }
    let status = Expr::col((member::Entity, member::Mirror::CaseStatus));
    let rows: Vec<(Option<String>, i64)> = member::Entity::find()
        .select_only()
        .column_as(status.clone(), "status")
        .column_as(Expr::cust("COUNT(*)"), "n")
        .filter(member::Column::UserId.eq(p.user_id))
        .group_by(status)
        .into_tuple()
        .all(state.db.conn())
        .await?;
    Ok(keyed(rows))
}

/// How many of the next 30 days' deadlines the dashboard shows; `deadlines_next_cursor`
/// continues the list at `GET /deadlines?days=30`. A summary, so its cost does not follow
/// how busy the caller's month is (an attorney on 2,000 cases has 600 and more).
pub const DASHBOARD_DEADLINES: Limit = Limit::new(50);

/// The widest window `GET /deadlines` accepts, in days (`/staff/deadlines` offers up to 365).
pub const MAX_DEADLINE_DAYS: i64 = 3660;

/// `GET /deadlines` (staff): the caller's open deadlines (admins: every case's) due from today
/// through `days` ahead (0..=[`MAX_DEADLINE_DAYS`], else 422), soonest first, one keyset page
/// at a time. Audited as a read of every case the page shows.
pub async fn deadline_page(
    state: &AppState,
    p: &Principal,
    days: i64,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<UpcomingDeadline>> {
    if !(0..=MAX_DEADLINE_DAYS).contains(&days) {
        return Err(Error::invalid(
            "days",
            format!("must be between 0 and {MAX_DEADLINE_DAYS}"),
        ));
    }
    let after: Option<(NaiveDate, Uuid)> = decode_cursor(cursor)?;
    let page = upcoming_deadlines(state, p, days, after, limit).await?;
    audit_list(state, p, days, &page.items).await?;
    Ok(page)
}

async fn audit_list(
    state: &AppState,
    p: &Principal,
    days: i64,
    rows: &[UpcomingDeadline],
) -> Result<()> {
    let mut cases: Vec<Uuid> = rows.iter().map(|r| r.case_id).collect();
    cases.sort_unstable();
    cases.dedup();
    state
        .audit
        .record(
            NewEntry::new("case.deadlines_list", "case")
                .by(p)
                .details(serde_json::json!({
                    "days": days,
                    "deadlines": rows.len(),
                    "case_ids": cases,
                    "admin_access": p.is_admin(),
                })),
        )
        .await
}

/// Deadlines of the caller's cases (admins: every case) due from today through `days` ahead,
/// soonest first, after the `(due_on, id)` key `after`: a page of at most `limit`, and the
/// cursor after it when more follow. Staff only.
async fn upcoming_deadlines(
    state: &AppState,
    p: &Principal,
    days: i64,
    after: Option<(NaiveDate, Uuid)>,
    limit: Limit,
) -> Result<Page<UpcomingDeadline>> {
    if !p.is_staff() {
        return Err(Error::Forbidden(
            "Only the firm's staff have a deadline list.",
        ));
    }
    let today = state.config.today();
    let to = today + Duration::days(days);
    // From the cursor's day on (a closed range of the index either way), past its id that day:
    // `due > d OR id > i` is the keyset condition only because `from` bounds `due >= d`.
    let from = after.map_or(today, |(due, _)| Ord::max(due, today));
    let past = |due: Expr, id: Expr| match after {
        Some((d, i)) => sea_orm::Condition::any().add(due.gt(d)).add(id.gt(i)),
        None => sea_orm::Condition::all(),
    };
    // Each row with the date it is listed under: the deadline's own, or its mirror row's.
    let rows: Vec<(Uuid, Uuid, String, String, NaiveDate, String, NaiveDate)> = if p.is_admin() {
        let q = deadline::Entity::find()
            .filter(deadline::Column::CompletedAt.is_null())
            .filter(deadline::Column::DueOn.between(from, to))
            .filter(past(
                Expr::col((deadline::Entity, deadline::Column::DueOn)),
                Expr::col((deadline::Entity, deadline::Column::Id)),
            ));
        with_case_number(q)
            .column_as(deadline::Column::DueOn, "listed_on")
            .order_by_asc(deadline::Column::DueOn)
            .order_by_asc(deadline::Column::Id)
            .limit(limit.get() + 1)
            .into_tuple()
            .all(state.db.conn())
            .await?
    } else {
        // The caller's own open deadlines in due order (kept by triggers): one range of their
        // key that the `LIMIT` ends, however many cases they are on. Each row shown is checked
        // against its source (still open, caller still on the legal team, same date): a mirror
        // row must never show more than the deadline table would. The date is compared here,
        // not in SQL: PostgreSQL estimates `deadline.due_on = member_deadline.due_on` as
        // matching one row in thousands, expects two rows in all, and then joins and sorts
        // all 666 of an attorney's month (13 ms) instead of reading 51 in key order (1.3 ms).
        let mut q = member_deadline::Entity::find()
            .filter(member_deadline::Column::UserId.eq(p.user_id))
            .filter(member_deadline::Column::DueOn.between(from, to))
            .filter(past(
                Expr::col((member_deadline::Entity, member_deadline::Column::DueOn)),
                Expr::col((member_deadline::Entity, member_deadline::Column::DeadlineId)),
            ))
            .filter(deadline::Column::CompletedAt.is_null())
            .filter(access::is_staff_member_of(
                p.user_id,
                (deadline::Entity, deadline::Column::CaseId),
            ));
        QueryTrait::query(&mut q).join(
            JoinType::InnerJoin,
            deadline::Entity,
            Expr::col((deadline::Entity, deadline::Column::Id))
                .equals((member_deadline::Entity, member_deadline::Column::DeadlineId)),
        );
        with_case_number(q)
            .column_as(member_deadline::Column::DueOn, "listed_on")
            .order_by_asc(member_deadline::Column::DueOn)
            .order_by_asc(member_deadline::Column::DeadlineId)
            .limit(limit.get() + 1)
            .into_tuple()
            .all(state.db.conn())
            .await?
    };
    // Whether more follow, and where, is decided on the rows as listed (the key order), before
    // any is left out: a row left out must not end the list.
    let page = page_from(rows, limit, |r| (r.6, r.0));
    let listed = page.items.len();
    let items: Vec<UpcomingDeadline> = page
        .items
        .into_iter()
        .filter(|r| r.4 == r.6)
        .map(
            |(id, case_id, case_number, title, due_on, kind, _)| UpcomingDeadline {
                id,
                case_id,
                case_number,
                title,
                due_on,
                kind: DeadlineKind::parse(&kind).unwrap_or(DeadlineKind::Internal),
            },
        )
        .collect();
    if items.len() < listed {
        tracing::warn!(
            rows = listed - items.len(),
            "member_deadline rows out of step with their deadlines; run `lawfirm-pro recount`"
        );
    }
    Ok(Page {
        items,
        next_cursor: page.next_cursor,
    })
}

/// A deadline query's columns for [`UpcomingDeadline`], the case number joined in the same
/// statement (one probe of the case's key per deadline).
fn with_case_number<E: EntityTrait>(mut q: sea_orm::Select<E>) -> sea_orm::Select<E> {
    QueryTrait::query(&mut q).join(
        JoinType::InnerJoin,
        legal_case::Entity,
        Expr::col((legal_case::Entity, legal_case::Column::Id))
            .equals((deadline::Entity, deadline::Column::CaseId)),
    );
    q.select_only()
        .column(deadline::Column::Id)
        .column(deadline::Column::CaseId)
        .column(legal_case::Column::Number)
        .column(deadline::Column::Title)
        .column(deadline::Column::DueOn)
        .column(deadline::Column::Kind)
}

pub async fn dashboard(state: &AppState, p: &Principal) -> Result<Dashboard> {
    // The most recently changed: a member's from their membership rows in that order
    // (`ix_case_member_updated`), the LIMIT ends the walk however many cases they are on.
    let cases = if p.is_admin() {
        legal_case::Entity::find()
            .order_by_desc(legal_case::Column::UpdatedAt)
            .order_by_desc(legal_case::Column::Id)
    } else {
        in_member_order(
            through_memberships(legal_case::Entity::find(), p.user_id),
            member::Mirror::CaseUpdatedAt,
            true,
        )
    }
    .limit(50)
    .all(state.db.conn())
    .await?;
    let summaries: Vec<CaseSummary> = cases
        .into_iter()
        .map(|c| CaseSummary {
            id: c.id,
            number: c.number,
            title: c.title,
            status: CaseStatus::parse(&c.status).unwrap_or(CaseStatus::Open),
            phase: CasePhase::parse(&c.phase).unwrap_or(CasePhase::Intake),
            updated_at: c.updated_at,
        })
        .collect();
    let entry = NewEntry::new("dashboard.read", "dashboard")
        .by(p)
        .details(serde_json::json!({"cases": summaries.len()}));
    // The parts are independent reads: each on its own pooled connection at once, so the
    // answer waits for the slowest of them rather than for their sum.
    let rest = async {
        let conn = state.db.conn();
        let now = Utc::now();
        // Today in the firm's time zone.
        let today = state.config.today();
        let start = state.config.start_of(today);
        let end = state.config.start_of(today + Duration::days(1));
        let staff = async {
            if !p.is_staff() {
                return Ok(None);
            }
            let (by_status, deadlines, todays, unbilled) = tokio::try_join!(
                count_by_status(state, p),
                upcoming_deadlines(state, p, 30, None, DASHBOARD_DEADLINES),
                crate::appointments::service::upcoming_for(conn, p.user_id, start, Some(end), 50,),
                crate::billing::time::unbilled_minutes(conn, (!p.is_admin()).then_some(p.user_id)),
            )?;
            Ok::<_, crate::error::Error>(Some((by_status, deadlines, todays, unbilled)))
        };
        let (unread, upcoming, outstanding, recent, staff) = tokio::try_join!(
            crate::messages::query::unread_total(conn, p.user_id),
            crate::appointments::service::upcoming_for(conn, p.user_id, now, None, 5),
            crate::billing::summary::outstanding_cents(conn, p),
            crate::documents::service::recent_for_dashboard(state, p),
            staff,
        )?;
        let mut d = Dashboard {
            cases: summaries,
            unread_messages: unread,
            upcoming_appointments: upcoming,
            outstanding_balance_cents: outstanding,
            currency: state.config.billing.currency.code().into(),
            recent_documents: recent,
            cases_by_status: None,
            deadlines_next_30_days: None,
            deadlines_next_cursor: None,
            todays_appointments: None,
            unbilled_minutes: None,
        };
        if let Some((by_status, deadlines, todays, unbilled)) = staff {
            d.cases_by_status = Some(by_status);
            d.deadlines_next_cursor = Some(deadlines.next_cursor);
            d.deadlines_next_30_days = Some(deadlines.items);
            d.todays_appointments = Some(todays);
            d.unbilled_minutes = Some(unbilled);
        }
        Ok::<_, crate::error::Error>(d)
    };
    state.audit.while_reading(entry, rest).await
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MonthCount {
    /// `YYYY-MM`.
    pub month: String,
    pub opened: i64,
    pub closed: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CaseStats {
    pub total: i64,
    pub by_status: BTreeMap<String, i64>,
    pub by_phase: BTreeMap<String, i64>,
    pub by_practice_area: BTreeMap<String, i64>,
    /// The last 12 months, oldest first.
    pub per_month: Vec<MonthCount>,
    /// Median days from opening to closing, over closed cases.
    pub median_days_open: Option<f64>,
}

/// `GET /stats/cases` (staff): over the cases the caller may see.
pub async fn stats(state: &AppState, p: &Principal) -> Result<CaseStats> {
    if !p.is_staff() {
        return Err(crate::error::Error::Forbidden(
            "Only staff may read case statistics.",
        ));
    }
    let by_status = count_by_status(state, p).await?;
    let by_phase = count_by(state, p, legal_case::Column::Phase).await?;
    let by_practice_area = count_by(state, p, legal_case::Column::PracticeArea).await?;
    let total = by_status.values().sum();
    // Months of the firm's calendar (LFP_TIMEZONE), as every other "today" of the portal.
    let tz = state.config.timezone;
    let month_of = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m").to_string();
    let today = state.config.today();
    let start = NaiveDate::from_ymd_opt(today.year(), today.month(), 1).expect("first of month")
        - chrono::Months::new(11);
    let start_ts = state.config.start_of(start);
    let mut months: BTreeMap<String, (i64, i64)> = (0..12)
        .map(|i| {
            (
                (start + chrono::Months::new(i)).format("%Y-%m").to_string(),
                (0, 0),
            )
        })
        .collect();
    let opened: Vec<DateTime<Utc>> = visible()(p)
        .select_only()
        .column(legal_case::Column::OpenedAt)
        .filter(legal_case::Column::OpenedAt.gte(start_ts))
        .into_tuple()
        .all(state.db.conn())
        .await?;
    for t in opened {
        if let Some(m) = months.get_mut(&month_of(t)) {
            m.0 += 1;
        }
    }
    let closed: Vec<(DateTime<Utc>, Option<DateTime<Utc>>)> = visible()(p)
        .select_only()
        .column(legal_case::Column::OpenedAt)
        .column(legal_case::Column::ClosedAt)
        .filter(legal_case::Column::ClosedAt.is_not_null())
        .into_tuple()
        .all(state.db.conn())
        .await?;
    let mut durations: Vec<f64> = Vec::with_capacity(closed.len());
    for (o, c) in closed {
        let Some(c) = c else { continue };
        durations.push((c - o).num_seconds() as f64 / 86_400.0);
        if let Some(m) = months.get_mut(&month_of(c)) {
            m.1 += 1;
        }
    }
    durations.sort_by(f64::total_cmp);
    let median_days_open = match durations.len() {
        0 => None,
        n if n % 2 == 1 => Some(durations[n / 2]),
        n => Some((durations[n / 2 - 1] + durations[n / 2]) / 2.0),
    }
    .map(|d| (d * 10.0).round() / 10.0);
    state
        .audit
        .record(NewEntry::new("stats.read", "case").by(p))
        .await?;
    Ok(CaseStats {
        total,
        by_status,
        by_phase,
        by_practice_area,
        per_month: months
            .into_iter()
            .map(|(month, (opened, closed))| MonthCount {
                month,
                opened,
                closed,
            })
            .collect(),
        median_days_open,
    })
}
