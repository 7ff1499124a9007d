//! Time entries, expenses and hourly rates: what the legal team records on a case before it
//! is invoiced. Entries on a non-void invoice are locked (edits answer 409).

use chrono::{DateTime, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
    sea_query::{Expr, OnConflict},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    MAX_AMOUNT_CENTS, check_description,
    domain::{CodeKind, UtbmsCode},
    entity::{case_rate, expense, time_entry, user_rate},
    money::{Currency, fee_cents},
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    cases::access,
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, newest_by_id},
    users,
};

/// Highest hourly rate accepted: $100,000.00 an hour.
const MAX_RATE_CENTS: i64 = 10_000_000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTimeEntry {
    pub work_date: NaiveDate,
    pub minutes: i64,
    /// Per hour; when absent the case override, then the timekeeper's default rate applies.
    pub rate_cents: Option<i64>,
    pub description: String,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    /// Default `true`.
    pub billable: Option<bool>,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeEntryPatch {
    pub work_date: Option<NaiveDate>,
    pub minutes: Option<i64>,
    pub rate_cents: Option<i64>,
    pub description: Option<String>,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    pub billable: Option<bool>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TimeEntryView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub timekeeper_id: Uuid,
    pub work_date: NaiveDate,
    pub minutes: i32,
    pub rate_cents: i64,
    /// `round_half_up(minutes × rate_cents / 60)`.
    pub amount_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub description: String,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    pub billable: bool,
    pub invoice_id: Option<Uuid>,
    /// On a non-void invoice: edits and deletion answer 409.
    pub locked: bool,
    pub created_at: DateTime<Utc>,
}

fn entry_view(t: time_entry::Model, currency: Currency) -> TimeEntryView {
    TimeEntryView {
        id: t.id,
        case_id: t.case_id,
        timekeeper_id: t.timekeeper_id,
        work_date: t.work_date,
        minutes: t.minutes,
        rate_cents: t.rate_cents,
        amount_cents: fee_cents(t.minutes as i64, t.rate_cents).unwrap_or(0),
        currency,
        description: t.description,
        task_code: t.task_code,
        activity_code: t.activity_code,
        billable: t.billable,
        locked: t.invoice_id.is_some(),
        invoice_id: t.invoice_id,
        created_at: t.created_at,
    }
}

fn check_minutes(v: &mut Validator, m: i64) -> Option<i32> {
    if (1..=1440).contains(&m) {
        Some(m as i32)
    } else {
        v.push("minutes", "must be between 1 and 1440");
        None
    }
}

fn check_rate(v: &mut Validator, r: i64) -> Option<i64> {
    if (0..=MAX_RATE_CENTS).contains(&r) {
        Some(r)
    } else {
        v.push(
            "rate_cents",
            format!("must be between 0 and {MAX_RATE_CENTS}"),
        );
        None
    }
}

fn check_code(v: &mut Validator, field: &str, kind: CodeKind, raw: Option<&str>) -> Option<String> {
    let raw = raw.map(str::trim).filter(|s| !s.is_empty())?;
    v.check(field, UtbmsCode::parse(kind, raw))
        .map(UtbmsCode::into_string)
}

/// Explicit rate > case override > timekeeper default; none of them → 422.
async fn resolve_rate<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    user_id: Uuid,
    explicit: Option<i64>,
) -> Result<i64> {
    if let Some(r) = explicit {
        return Ok(r);
    }
    if let Some(r) = case_rate::Entity::find_by_id((case_id, user_id))
        .one(conn)
        .await?
    {
        return Ok(r.rate_cents);
    }
    if let Some(r) = user_rate::Entity::find_by_id(user_id).one(conn).await? {
        return Ok(r.rate_cents);
    }
    Err(Error::invalid(
        "rate_cents",
        "no rate: give rate_cents, or set a case rate or the timekeeper's default rate",
    ))
}

/// `POST /cases/{id}/time-entries` (staff members; the caller is the timekeeper).
pub async fn create_time_entry(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewTimeEntry,
) -> Result<TimeEntryView> {
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let mut v = Validator::default();
    let minutes = check_minutes(&mut v, input.minutes);
    let explicit = input.rate_cents.and_then(|r| check_rate(&mut v, r));
    let description = check_description(&mut v, "description", &input.description, 2000);
    let task_code = check_code(
        &mut v,
        "task_code",
        CodeKind::Task,
        input.task_code.as_deref(),
    );
    let activity_code = check_code(
        &mut v,
        "activity_code",
        CodeKind::Activity,
        input.activity_code.as_deref(),
    );
    v.finish()?;
    let rate = resolve_rate(&*txn, case_id, p.user_id, explicit).await?;
    let t = crate::db::now();
    let row = time_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case_id),
        timekeeper_id: Set(p.user_id),
        work_date: Set(input.work_date),
        minutes: Set(minutes.expect("checked")),
        rate_cents: Set(rate),
        description: Set(description.expect("checked")),
        task_code: Set(task_code),
        activity_code: Set(activity_code),
        billable: Set(input.billable.unwrap_or(true)),
        invoice_id: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("time_entry.create", "time_entry")
                .by(p)
                .resource(row.id)
                .case(case_id)
                .details(serde_json::json!({"minutes": row.minutes, "rate_cents": row.rate_cents})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(entry_view(row, state.config.billing.currency))
}

/// `GET /cases/{id}/time-entries` (staff members), newest first.
pub async fn list_time_entries(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<TimeEntryView>> {
    access::require_staff(state, state.db.conn(), p, case_id).await?;
    let page = newest_by_id(
        state.db.conn(),
        time_entry::Entity::find().filter(time_entry::Column::CaseId.eq(case_id)),
        time_entry::Column::Id,
        |r| r.id,
        limit,
        cursor,
    )
    .await?;
    let currency = state.config.billing.currency;
    state
        .audit
        .record(
            NewEntry::new("time_entry.list", "time_entry")
                .by(p)
                .case(case_id)
                .details(serde_json::json!({"count": page.items.len()})),
        )
        .await?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|t| entry_view(t, currency))
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// Load an entry the caller may change: staff on its case (404 for anyone who cannot see
/// it) who recorded it, or the case's lead attorney, or an admin (others on the legal team
/// 403: a paralegal does not rewrite an attorney's minutes or rate).
async fn entry_to_change<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<time_entry::Model> {
    let t = time_entry::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(Error::NotFound)?;
    let a = access::require_staff(state, conn, p, t.case_id).await?;
    if t.timekeeper_id != p.user_id && !a.is_lead(p) {
        return Err(Error::Forbidden(
            "Only whoever recorded the time, the case's lead attorney or an admin may change it.",
        ));
    }
    Ok(t)
}

fn locked() -> Error {
    Error::Conflict("The entry is on an invoice; void the invoice to change it.".into())
}

/// `PATCH /time-entries/{id}` (its timekeeper, the lead attorney, admins); 409 once invoiced.
pub async fn patch_time_entry(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    patch: TimeEntryPatch,
) -> Result<TimeEntryView> {
    let txn = state.db.begin_write().await?;
    let cur = entry_to_change(state, &*txn, p, id).await?;
    if cur.invoice_id.is_some() {
        return Err(locked());
    }
    let mut v = Validator::default();
    let mut am = time_entry::ActiveModel {
        id: Set(id),
        ..Default::default()
    };
    if let Some(m) = patch.minutes.and_then(|m| check_minutes(&mut v, m)) {
        am.minutes = Set(m);
    }
    if let Some(r) = patch.rate_cents.and_then(|r| check_rate(&mut v, r)) {
        am.rate_cents = Set(r);
    }
    if let Some(d) = patch
        .description
        .as_deref()
        .and_then(|d| check_description(&mut v, "description", d, 2000))
    {
        am.description = Set(d);
    }
    if let Some(raw) = patch.task_code.as_deref() {
        am.task_code = Set(check_code(&mut v, "task_code", CodeKind::Task, Some(raw)));
    }
    if let Some(raw) = patch.activity_code.as_deref() {
        am.activity_code = Set(check_code(
            &mut v,
            "activity_code",
            CodeKind::Activity,
            Some(raw),
        ));
    }
    if let Some(d) = patch.work_date {
        am.work_date = Set(d);
    }
    if let Some(b) = patch.billable {
        am.billable = Set(b);
    }
    v.finish()?;
    am.updated_at = Set(crate::db::now());
    // Conditional on still being unbilled: an invoice taking it concurrently wins, we 409.
    let res = time_entry::Entity::update_many()
        .set(am)
        .filter(time_entry::Column::Id.eq(id))
        .filter(time_entry::Column::InvoiceId.is_null())
        .exec(&*txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(locked());
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("time_entry.update", "time_entry")
                .by(p)
                .resource(id)
                .case(cur.case_id),
        ],
    )
    .await?;
    let row = time_entry::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    txn.commit().await?;
    Ok(entry_view(row, state.config.billing.currency))
}

/// `DELETE /time-entries/{id}` (staff members); 409 once invoiced.
pub async fn delete_time_entry(state: &AppState, p: &Principal, id: Uuid) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let cur = entry_to_change(state, &*txn, p, id).await?;
    let res = time_entry::Entity::delete_many()
        .filter(time_entry::Column::Id.eq(id))
        .filter(time_entry::Column::InvoiceId.is_null())
        .exec(&*txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(locked());
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("time_entry.delete", "time_entry")
                .by(p)
                .resource(id)
                .case(cur.case_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewExpense {
    pub incurred_on: NaiveDate,
    pub amount_cents: i64,
    pub description: String,
    pub expense_code: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ExpenseView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub incurred_on: NaiveDate,
    pub amount_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub description: String,
    pub expense_code: Option<String>,
    pub created_by: Uuid,
    pub invoice_id: Option<Uuid>,
    pub locked: bool,
    pub created_at: DateTime<Utc>,
}

fn expense_view(e: expense::Model, currency: Currency) -> ExpenseView {
    ExpenseView {
        id: e.id,
        case_id: e.case_id,
        incurred_on: e.incurred_on,
        amount_cents: e.amount_cents,
        currency,
        description: e.description,
        expense_code: e.expense_code,
        created_by: e.created_by,
        locked: e.invoice_id.is_some(),
        invoice_id: e.invoice_id,
        created_at: e.created_at,
    }
}

/// `POST /cases/{id}/expenses` (staff members).
pub async fn create_expense(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewExpense,
) -> Result<ExpenseView> {
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, case_id).await?;
    let mut v = Validator::default();
    if !(1..=MAX_AMOUNT_CENTS).contains(&input.amount_cents) {
        v.push(
            "amount_cents",
            format!("must be between 1 and {MAX_AMOUNT_CENTS}"),
        );
    }
    let description = check_description(&mut v, "description", &input.description, 2000);
    let code = check_code(
        &mut v,
        "expense_code",
        CodeKind::Expense,
        input.expense_code.as_deref(),
    );
    v.finish()?;
    let t = crate::db::now();
    let row = expense::ActiveModel {
        id: Set(Uuid::now_v7()),
        case_id: Set(case_id),
        incurred_on: Set(input.incurred_on),
        amount_cents: Set(input.amount_cents),
        description: Set(description.expect("checked")),
        expense_code: Set(code),
        created_by: Set(p.user_id),
        invoice_id: Set(None),
        created_at: Set(t),
        updated_at: Set(t),
    }
    .insert(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("expense.create", "expense")
                .by(p)
                .resource(row.id)
                .case(case_id)
                .details(serde_json::json!({"amount_cents": row.amount_cents})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(expense_view(row, state.config.billing.currency))
}

/// `GET /cases/{id}/expenses` (staff members), newest first.
pub async fn list_expenses(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<ExpenseView>> {
    access::require_staff(state, state.db.conn(), p, case_id).await?;
    let page = newest_by_id(
        state.db.conn(),
        expense::Entity::find().filter(expense::Column::CaseId.eq(case_id)),
        expense::Column::Id,
        |r| r.id,
        limit,
        cursor,
    )
    .await?;
    let currency = state.config.billing.currency;
    state
        .audit
        .record(
            NewEntry::new("expense.list", "expense")
                .by(p)
                .case(case_id)
                .details(serde_json::json!({"count": page.items.len()})),
        )
        .await?;
    Ok(Page {
        items: page
            .items
            .into_iter()
            .map(|e| expense_view(e, currency))
            .collect(),
        next_cursor: page.next_cursor,
    })
}

/// `DELETE /expenses/{id}` (staff members); 409 once invoiced.
pub async fn delete_expense(state: &AppState, p: &Principal, id: Uuid) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let e = expense::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    access::require_staff(state, &*txn, p, e.case_id).await?;
    let res = expense::Entity::delete_many()
        .filter(expense::Column::Id.eq(id))
        .filter(expense::Column::InvoiceId.is_null())
        .exec(&*txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(locked());
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("expense.delete", "expense")
                .by(p)
                .resource(id)
                .case(e.case_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateInput {
    pub rate_cents: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RateView {
    pub user_id: Uuid,
    pub case_id: Option<Uuid>,
    pub rate_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
}

/// `PUT /users/{id}/rate` (admin): a timekeeper's default hourly rate.
pub async fn set_user_rate(
    state: &AppState,
    p: &Principal,
    user_id: Uuid,
    input: RateInput,
) -> Result<RateView> {
    if !p.is_admin() {
        return Err(Error::Forbidden("Only admins set default rates."));
    }
    let mut v = Validator::default();
    let rate = check_rate(&mut v, input.rate_cents);
    v.finish()?;
    let rate = rate.expect("checked");
    let txn = state.db.begin_write().await?;
    match users::service::names_of(&*txn, &[user_id])
        .await?
        .get(&user_id)
    {
        Some((_, role)) if role.is_staff() => {}
        Some(_) => return Err(Error::invalid("user_id", "clients are not timekeepers")),
        None => return Err(Error::NotFound),
    }
    user_rate::Entity::insert(user_rate::ActiveModel {
        user_id: Set(user_id),
        rate_cents: Set(rate),
        updated_at: Set(crate::db::now()),
    })
    .on_conflict(
        OnConflict::column(user_rate::Column::UserId)
            .update_columns([user_rate::Column::RateCents, user_rate::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("rate.update", "user")
                .by(p)
                .resource(user_id)
                .details(serde_json::json!({"rate_cents": rate})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(RateView {
        user_id,
        case_id: None,
        rate_cents: rate,
        currency: state.config.billing.currency,
    })
}

/// `PUT /cases/{id}/rates/{user_id}` (lead attorney, admin): a rate for one case.
pub async fn set_case_rate(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    user_id: Uuid,
    input: RateInput,
) -> Result<RateView> {
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    if !a.is_lead(p) {
        return Err(Error::Forbidden(
            "Only the lead attorney or an admin sets case rates.",
        ));
    }
    let mut v = Validator::default();
    let rate = check_rate(&mut v, input.rate_cents);
    match access::membership(&*txn, case_id, user_id).await? {
        Some(r) if r.is_staff() => {}
        _ => v.push("user_id", "is not on the legal team of this case"),
    }
    v.finish()?;
    let rate = rate.expect("checked");
    case_rate::Entity::insert(case_rate::ActiveModel {
        case_id: Set(case_id),
        user_id: Set(user_id),
        rate_cents: Set(rate),
        updated_at: Set(crate::db::now()),
    })
    .on_conflict(
        OnConflict::columns([case_rate::Column::CaseId, case_rate::Column::UserId])
            .update_columns([case_rate::Column::RateCents, case_rate::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("rate.update", "case")
                .by(p)
                .resource(case_id)
                .case(case_id)
                .details(serde_json::json!({"user_id": user_id, "rate_cents": rate})),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(RateView {
        user_id,
        case_id: Some(case_id),
        rate_cents: rate,
        currency: state.config.billing.currency,
    })
}

/// Unbilled billable minutes on the cases where `staff` is on the legal team (`None`: every
/// case), for dashboards. A staff member's are the per-case counters on their membership rows
/// (kept by triggers), one range of `ix_case_member_unbilled` instead of every time entry of
/// every case they are on.
pub async fn unbilled_minutes<C: ConnectionTrait>(conn: &C, staff: Option<Uuid>) -> Result<i64> {
    use crate::cases::{access, domain::MemberRole, entity::member};
    if let Some(user) = staff {
        let m: Option<Option<i64>> = member::Entity::find()
            .select_only()
            .column_as(access::member_sum(member::Mirror::CaseUnbilledMinutes), "m")
            .filter(member::Column::UserId.eq(user))
            .filter(member::Column::Role.ne(MemberRole::Client.as_str()))
            .into_tuple()
            .one(conn)
            .await?;
        return Ok(m.flatten().unwrap_or(0));
    }
    let q = time_entry::Entity::find()
        .select_only()
        .column_as(time_entry::Column::Minutes.sum(), "m")
        // Literally the partial index's condition (a bound `billable = ?` would not match it).
        .filter(time_entry::Column::InvoiceId.is_null())
        .filter(Expr::col((
            time_entry::Entity,
            time_entry::Column::Billable,
        )));
    let m: Option<Option<i64>> = q.into_tuple().one(conn).await?;
    Ok(m.flatten().unwrap_or(0))
}
