//! Invoices: drafted from unbilled entries with exact integer arithmetic, numbered without
//! gaps, sent (live event + mail), voided (entries released). `overdue` is computed on read.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    domain::{AdjustmentKind, AdjustmentTarget, InvoiceStatus, LineKind, invoice_number},
    entity::{adjustment, expense, invoice, invoice_line, time_entry},
    money::{Currency, Money, apply_bps, fee_cents},
    stmt,
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    cases::{
        access::{self, CaseAccess},
        domain::MemberRole,
    },
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, decode_cursor, encode_cursor},
    realtime::{self, Audience, NewEvent},
    users::{self, domain::Role},
};

/// Days between issue and due date.
pub const PAYMENT_TERMS_DAYS: i64 = 30;

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct LineView {
    pub id: Uuid,
    pub kind: LineKind,
    pub work_date: NaiveDate,
    pub description: String,
    pub minutes: Option<i32>,
    pub rate_cents: Option<i64>,
    pub amount_cents: i64,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    pub expense_code: Option<String>,
    pub timekeeper_id: Option<Uuid>,
}

/// A discount or surcharge on an invoice's fees or expenses, before tax.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct AdjustmentView {
    pub id: Uuid,
    pub kind: AdjustmentKind,
    pub applies_to: AdjustmentTarget,
    pub description: String,
    /// The percentage it was given as, in basis points (1000 = 10%); absent for a fixed amount.
    pub percent_bps: Option<i32>,
    /// Signed: negative for a discount.
    pub amount_cents: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceView {
    pub id: Uuid,
    pub number: String,
    pub case_id: Uuid,
    pub client_id: Option<Uuid>,
    pub status: InvoiceStatus,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    /// Sum of the lines.
    pub subtotal_cents: i64,
    /// Sum of the adjustments (negative: discounts); tax is computed after them.
    pub adjustment_cents: i64,
    pub tax_cents: i64,
    /// `subtotal_cents + adjustment_cents + tax_cents`.
    pub total_cents: i64,
    pub paid_cents: i64,
    pub balance_cents: i64,
    pub period_start: Option<NaiveDate>,
    pub period_end: Option<NaiveDate>,
    pub sent_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub lines: Vec<LineView>,
    pub adjustments: Vec<AdjustmentView>,
}

/// The status a reader sees: open invoices past their due date are `overdue`.
pub fn effective_status(i: &invoice::Model, today: NaiveDate) -> InvoiceStatus {
    let s = InvoiceStatus::parse(&i.status).unwrap_or(InvoiceStatus::Draft);
    match s {
        InvoiceStatus::Sent | InvoiceStatus::PartiallyPaid if i.due_on < today => {
            InvoiceStatus::Overdue
        }
        s => s,
    }
}

pub fn currency_of(i: &invoice::Model) -> Currency {
    Currency::parse(&i.currency).unwrap_or(Currency::USD)
}

fn line_view(l: invoice_line::Model) -> LineView {
    LineView {
        id: l.id,
        kind: LineKind::parse(&l.kind).unwrap_or(LineKind::Fee),
        work_date: l.work_date,
        description: l.description,
        minutes: l.minutes,
        rate_cents: l.rate_cents,
        amount_cents: l.amount_cents,
        task_code: l.task_code,
        activity_code: l.activity_code,
        expense_code: l.expense_code,
        timekeeper_id: l.timekeeper_id,
    }
}

fn adjustment_view(a: adjustment::Model) -> AdjustmentView {
    AdjustmentView {
        kind: if a.amount_cents < 0 {
            AdjustmentKind::Discount
        } else {
            AdjustmentKind::Surcharge
        },
        applies_to: AdjustmentTarget::parse(&a.applies_to).unwrap_or(AdjustmentTarget::Fees),
        id: a.id,
        description: a.description,
        percent_bps: a.percent_bps,
        amount_cents: a.amount_cents,
        created_at: a.created_at,
    }
}

/// An invoice's lines and adjustments, in order.
#[derive(Clone, Debug, Default)]
pub struct Parts {
    pub lines: Vec<invoice_line::Model>,
    pub adjustments: Vec<adjustment::Model>,
}

/// `today` in the firm's time zone (`Config::today`) decides `overdue`.
pub fn view(i: invoice::Model, parts: Parts, today: NaiveDate) -> InvoiceView {
    InvoiceView {
        status: effective_status(&i, today),
        currency: currency_of(&i),
        balance_cents: i.total_cents - i.paid_cents,
        id: i.id,
        number: i.number,
        case_id: i.case_id,
        client_id: i.client_id,
        issued_on: i.issued_on,
        due_on: i.due_on,
        subtotal_cents: i.subtotal_cents,
        adjustment_cents: i.adjustment_cents,
        tax_cents: i.tax_cents,
        total_cents: i.total_cents,
        paid_cents: i.paid_cents,
        period_start: i.period_start,
        period_end: i.period_end,
        sent_at: i.sent_at,
        created_at: i.created_at,
        lines: parts.lines.into_iter().map(line_view).collect(),
        adjustments: parts.adjustments.into_iter().map(adjustment_view).collect(),
    }
}

pub async fn lines_of<C: ConnectionTrait>(
    conn: &C,
    invoice_id: Uuid,
) -> Result<Vec<invoice_line::Model>> {
    Ok(invoice_line::Entity::find()
        .filter(invoice_line::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(invoice_line::Column::Position)
        .all(conn)
        .await?)
}

pub async fn adjustments_of<C: ConnectionTrait>(
    conn: &C,
    invoice_id: Uuid,
) -> Result<Vec<adjustment::Model>> {
    Ok(adjustment::Entity::find()
        .filter(adjustment::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(adjustment::Column::Id)
        .all(conn)
        .await?)
}

pub async fn parts_of<C: ConnectionTrait>(conn: &C, invoice_id: Uuid) -> Result<Parts> {
    Ok(Parts {
        lines: lines_of(conn, invoice_id).await?,
        adjustments: adjustments_of(conn, invoice_id).await?,
    })
}

/// Views of many invoices with their lines and adjustments in two extra queries.
async fn views<C: ConnectionTrait>(
    conn: &C,
    rows: Vec<invoice::Model>,
    today: NaiveDate,
) -> Result<Vec<InvoiceView>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = rows.iter().map(|i| i.id).collect();
    let mut by_invoice: HashMap<Uuid, Parts> = HashMap::new();
    for l in invoice_line::Entity::find()
        .filter(invoice_line::Column::InvoiceId.is_in(ids.clone()))
        .order_by_asc(invoice_line::Column::Position)
        .all(conn)
        .await?
    {
        by_invoice.entry(l.invoice_id).or_default().lines.push(l);
    }
    for a in adjustment::Entity::find()
        .filter(adjustment::Column::InvoiceId.is_in(ids))
        .order_by_asc(adjustment::Column::Id)
        .all(conn)
        .await?
    {
        by_invoice
            .entry(a.invoice_id)
            .or_default()
            .adjustments
            .push(a);
    }
    Ok(rows
        .into_iter()
        .map(|i| {
            let parts = by_invoice.remove(&i.id).unwrap_or_default();
            view(i, parts, today)
        })
        .collect())
}

/// An invoice the caller may see and how: staff of its case (or admin) see everything; a
/// client sees it as [`client_may_see`] says. Anyone else: 404.
pub struct InvoiceAccess {
    pub invoice: invoice::Model,
    pub case: CaseAccess,
    pub staff: bool,
}

pub async fn require<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<InvoiceAccess> {
    let invoice = invoice::Entity::find_by_id(id)
        .one(conn)
        .await?
        .ok_or(Error::NotFound)?;
    let case = access::require(state, conn, p, invoice.case_id).await?;
    let staff = case.is_staff(p);
    if !staff && !client_may_see(p, &invoice, case.role) {
        return Err(state.audit.deny_hidden(
            p,
            NewEntry::new("invoice.access", "invoice")
                .resource(id)
                .case(invoice.case_id),
        ));
    }
    Ok(InvoiceAccess {
        invoice,
        case,
        staff,
    })
}

/// Whether a non-staff member of an invoice's case (with `role` there) may see it: a client of
/// the case to whom it is addressed (not a co-client on the same case), once it has been sent.
/// `sent_at` tells: it is set by sending and never cleared, so a draft voided before it was
/// sent stays invisible with all its lines. [`client_scope`] is the same rule for lists.
pub fn client_may_see(p: &Principal, i: &invoice::Model, role: Option<MemberRole>) -> bool {
    role == Some(MemberRole::Client) && i.client_id == Some(p.user_id) && i.sent_at.is_some()
}

/// [`client_may_see`] as a filter on `invoice`. `client_id = caller` leads `ix_invoice_client`
/// `(client_id, created_at, id)`: a client's invoices newest first are one index range; the
/// other two conditions are checked on those rows only.
pub(super) fn client_scope(p: &Principal) -> Condition {
    Condition::all()
        .add(invoice::Column::ClientId.eq(p.user_id))
        .add(invoice::Column::SentAt.is_not_null())
        .add(
            invoice::Column::CaseId
                .in_subquery(access::member_cases_as(p.user_id, &[MemberRole::Client])),
        )
}

/// Who may see an invoice's live events: the legal team of its case, and its client while
/// still a client of the case. Not `Audience::Case`: a co-client would hear of another
/// client's bill. Two events, as an audience is one of case, case staff or listed users.
pub(super) async fn emit_to_viewers<C: ConnectionTrait>(
    conn: &C,
    inv: &invoice::Model,
    kind: &'static str,
    data: serde_json::Value,
) -> Result<()> {
    realtime::emit_in(
        conn,
        NewEvent {
            kind,
            case_id: Some(inv.case_id),
            audience: Audience::CaseStaff,
            data: data.clone(),
        },
    )
    .await?;
    if let Some(client) = addressee(conn, inv).await? {
        realtime::emit_in(
            conn,
            NewEvent {
                kind,
                case_id: Some(inv.case_id),
                audience: Audience::Members(vec![client]),
                data,
            },
        )
        .await?;
    }
    Ok(())
}

/// The invoice's client while they are a client member of its case (mail and live events).
async fn addressee<C: ConnectionTrait>(conn: &C, inv: &invoice::Model) -> Result<Option<Uuid>> {
    let Some(client) = inv.client_id else {
        return Ok(None);
    };
    let role = access::membership(conn, inv.case_id, client).await?;
    Ok((role == Some(MemberRole::Client)).then_some(client))
}

fn may_issue(p: &Principal) -> Result<()> {
    if matches!(p.role, Role::Admin | Role::Attorney) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "Only attorneys and admins issue invoices.",
        ))
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvoice {
    pub case_id: Uuid,
    /// Include entries worked/incurred on or before this date (default: all unbilled).
    pub through: Option<NaiveDate>,
}

/// Next invoice number for `year`, allocated inside the creating transaction: the upsert
/// row-locks on PostgreSQL and SQLite serialises writers, so numbers are unique and gapless
/// (a rolled-back creation gives its number back).
async fn allocate_number<C: ConnectionTrait>(conn: &C, year: i32) -> Result<i32> {
    let row = conn
        .query_one_raw(stmt(
            conn.get_database_backend(),
            "INSERT INTO invoice_number_seq (year, last) VALUES (?, 1)
             ON CONFLICT (year) DO UPDATE SET last = invoice_number_seq.last + 1 RETURNING last",
            vec![year.into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("invoice number allocation returned nothing"))?;
    Ok(row.try_get::<i32>("", "last")?)
}

/// Lines and totals from entries; pure so the arithmetic is tested without a database.
pub struct Draft {
    pub lines: Vec<invoice_line::Model>,
    pub subtotal_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
}

pub fn draft_lines(
    invoice_id: Uuid,
    mut fees: Vec<time_entry::Model>,
    mut expenses: Vec<expense::Model>,
    tax_rate_bps: u32,
) -> Result<Draft> {
    fees.sort_by_key(|t| (t.work_date, t.id));
    expenses.sort_by_key(|e| (e.incurred_on, e.id));
    let overflow = || Error::invalid("through", "the invoice total is too large");
    let mut lines = Vec::with_capacity(fees.len() + expenses.len());
    let mut subtotal: i64 = 0;
    for t in fees {
        let amount = fee_cents(t.minutes as i64, t.rate_cents).ok_or_else(overflow)?;
        subtotal = subtotal.checked_add(amount).ok_or_else(overflow)?;
        lines.push(invoice_line::Model {
            id: Uuid::now_v7(),
            invoice_id,
            position: lines.len() as i32 + 1,
            kind: LineKind::Fee.as_str().into(),
            source_id: t.id,
            work_date: t.work_date,
            description: t.description,
            minutes: Some(t.minutes),
            rate_cents: Some(t.rate_cents),
            amount_cents: amount,
            task_code: t.task_code,
            activity_code: t.activity_code,
            expense_code: None,
            timekeeper_id: Some(t.timekeeper_id),
        });
    }
    for e in expenses {
        subtotal = subtotal.checked_add(e.amount_cents).ok_or_else(overflow)?;
        lines.push(invoice_line::Model {
            id: Uuid::now_v7(),
            invoice_id,
            position: lines.len() as i32 + 1,
            kind: LineKind::Expense.as_str().into(),
            source_id: e.id,
            work_date: e.incurred_on,
            description: e.description,
            minutes: None,
            rate_cents: None,
            amount_cents: e.amount_cents,
            task_code: None,
            activity_code: None,
            expense_code: e.expense_code,
            timekeeper_id: None,
        });
    }
    let t = totals([subtotal], [], tax_rate_bps).ok_or_else(overflow)?;
    Ok(Draft {
        lines,
        subtotal_cents: t.subtotal_cents,
        tax_cents: t.tax_cents,
        total_cents: t.total_cents,
    })
}

/// An invoice's totals from its line and adjustment amounts.
pub struct Totals {
    pub subtotal_cents: i64,
    pub adjustment_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
}

fn checked_sum(amounts: impl IntoIterator<Item = i64>) -> Option<i64> {
    amounts.into_iter().try_fold(0i64, |s, v| s.checked_add(v))
}

/// Subtotal = sum of lines; tax on (subtotal + adjustments), rounded half up; total = all
/// three. `None` on overflow.
pub fn totals(
    lines: impl IntoIterator<Item = i64>,
    adjustments: impl IntoIterator<Item = i64>,
    tax_rate_bps: u32,
) -> Option<Totals> {
    let subtotal_cents = checked_sum(lines)?;
    let adjustment_cents = checked_sum(adjustments)?;
    let taxable = subtotal_cents.checked_add(adjustment_cents)?;
    let tax_cents = apply_bps(taxable, tax_rate_bps)?;
    Some(Totals {
        subtotal_cents,
        adjustment_cents,
        tax_cents,
        total_cents: taxable.checked_add(tax_cents)?,
    })
}

/// `POST /invoices` (attorneys and admins on the case): a draft from unbilled entries.
pub async fn create_invoice(
    state: &AppState,
    p: &Principal,
    input: NewInvoice,
) -> Result<InvoiceView> {
    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, input.case_id).await?;
    may_issue(p)?;
    if !a.is_staff(p) {
        return Err(Error::Forbidden(
            "Only the legal team of this case may do this.",
        ));
    }
    let id = Uuid::now_v7();
    let through = input.through;
    // Claim the entries first: the conditional UPDATE row-locks them, so two concurrent
    // drafts never bill the same entry twice.
    let mut claim = time_entry::Entity::update_many()
        .col_expr(time_entry::Column::InvoiceId, Expr::value(id))
        .filter(time_entry::Column::CaseId.eq(input.case_id))
        .filter(time_entry::Column::InvoiceId.is_null())
        .filter(time_entry::Column::Billable.eq(true));
    if let Some(d) = through {
        claim = claim.filter(time_entry::Column::WorkDate.lte(d));
    }
    claim.exec(&*txn).await?;
    let mut claim = expense::Entity::update_many()
        .col_expr(expense::Column::InvoiceId, Expr::value(id))
        .filter(expense::Column::CaseId.eq(input.case_id))
        .filter(expense::Column::InvoiceId.is_null());
    if let Some(d) = through {
        claim = claim.filter(expense::Column::IncurredOn.lte(d));
    }
    claim.exec(&*txn).await?;
    let fees = time_entry::Entity::find()
        .filter(time_entry::Column::InvoiceId.eq(id))
        .all(&*txn)
        .await?;
    let expenses = expense::Entity::find()
        .filter(expense::Column::InvoiceId.eq(id))
        .all(&*txn)
        .await?;
    if fees.is_empty() && expenses.is_empty() {
        return Err(Error::invalid(
            "case_id",
            "there are no unbilled billable entries or expenses to invoice",
        ));
    }
    let draft = draft_lines(id, fees, expenses, state.config.billing.tax_rate_bps)?;
    let period_start = draft.lines.iter().map(|l| l.work_date).min();
    let period_end = draft.lines.iter().map(|l| l.work_date).max();
    let t = crate::db::now();
    // The firm's date: an invoice drafted or sent on a New York evening is not tomorrow's.
    let issued = state.config.today();
    let seq = allocate_number(&*txn, issued.year()).await?;
    // Addressed to the case's earliest-added client (only they will see it), fixed at drafting.
    let client_id = access::first_client_of(&*txn, input.case_id).await?;
    let inv = invoice::ActiveModel {
        id: Set(id),
        number: Set(invoice_number(issued.year(), seq)),
        year: Set(issued.year()),
        seq: Set(seq),
        case_id: Set(input.case_id),
        client_id: Set(client_id),
        status: Set(InvoiceStatus::Draft.as_str().into()),
        issued_on: Set(issued),
        due_on: Set(issued + Duration::days(PAYMENT_TERMS_DAYS)),
        currency: Set(state.config.billing.currency.code().into()),
        subtotal_cents: Set(draft.subtotal_cents),
        tax_cents: Set(draft.tax_cents),
        total_cents: Set(draft.total_cents),
        paid_cents: Set(0),
        period_start: Set(period_start),
        period_end: Set(period_end),
        created_by: Set(p.user_id),
        created_at: Set(t),
        updated_at: Set(t),
        sent_at: Set(None),
        voided_at: Set(None),
        adjustment_cents: Set(0),
        tax_rate_bps: Set(state.config.billing.tax_rate_bps as i32),
    }
    .insert(&*txn)
    .await?;
    // In batches: one statement binds every column of every line, and a case with thousands
    // of unbilled entries would pass SQLite's 32,766 (PostgreSQL's 65,535) bound parameters.
    let mut rows = draft
        .lines
        .iter()
        .cloned()
        .map(invoice_line::ActiveModel::from);
    for size in crate::audit::service::insert_sizes(draft.lines.len()) {
        invoice_line::Entity::insert_many(rows.by_ref().take(size))
            .exec_without_returning(&*txn)
            .await?;
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("invoice.create", "invoice")
                .by(p)
                .resource(id)
                .case(input.case_id)
                .details(serde_json::json!({
                    "number": inv.number, "total_cents": inv.total_cents, "lines": draft.lines.len()
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(view(
        inv,
        Parts {
            lines: draft.lines,
            adjustments: vec![],
        },
        issued,
    ))
}

/// `GET /invoices/{id}`.
pub async fn get_invoice(state: &AppState, p: &Principal, id: Uuid) -> Result<InvoiceView> {
    Ok(read_invoice(state, p, id).await?.view)
}

/// An invoice as its reader sees it, with what the reader may do with it (for pages).
pub struct InvoiceRead {
    pub view: InvoiceView,
    /// On the case's legal team (admin or staff on the case): records payments, never pays.
    pub legal_team: bool,
    /// May issue (send, void) it: an attorney or admin on the legal team.
    pub issuer: bool,
}

pub async fn read_invoice(state: &AppState, p: &Principal, id: Uuid) -> Result<InvoiceRead> {
    let a = require(state, state.db.conn(), p, id).await?;
    let parts = state
        .audit
        .while_reading(
            read_entry(p, &a, "invoice.read"),
            parts_of(state.db.conn(), id),
        )
        .await?;
    Ok(InvoiceRead {
        legal_team: a.staff,
        issuer: a.staff && may_issue(p).is_ok(),
        view: view(a.invoice, parts, state.config.today()),
    })
}

pub async fn audit_read(
    state: &AppState,
    p: &Principal,
    a: &InvoiceAccess,
    action: &str,
) -> Result<()> {
    state.audit.record(read_entry(p, a, action)).await
}

/// The audit entry of an authorised read of one invoice.
pub fn read_entry(p: &Principal, a: &InvoiceAccess, action: &str) -> NewEntry {
    let e = NewEntry::new(action, "invoice")
        .by(p)
        .resource(a.invoice.id)
        .case(a.invoice.case_id);
    if a.case.admin_access(p) {
        e.details(serde_json::json!({"admin_access": true}))
    } else {
        e
    }
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct InvoiceFilter {
    /// `draft|sent|partially_paid|paid|overdue|void` (clients never see drafts).
    pub status: Option<String>,
    pub case_id: Option<Uuid>,
    pub client_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct InvoiceCursor {
    at: DateTime<Utc>,
    id: Uuid,
}

/// The invoices a caller may list: staff those of the cases they are on the legal team of
/// (admins all), clients [`client_scope`].
fn case_scope(p: &Principal) -> Option<Condition> {
    if p.is_admin() {
        return None;
    }
    if !p.is_staff() {
        return Some(client_scope(p));
    }
    let mut sub = access::member_cases(p.user_id);
    sub.and_where(crate::cases::entity::member::Column::Role.ne(MemberRole::Client.as_str()));
    Some(Condition::all().add(invoice::Column::CaseId.in_subquery(sub)))
}

/// A filter on the stored status that yields `status` as readers see it.
pub fn status_condition(s: InvoiceStatus, today: NaiveDate) -> Condition {
    let open = [
        InvoiceStatus::Sent.as_str(),
        InvoiceStatus::PartiallyPaid.as_str(),
    ];
    match s {
        InvoiceStatus::Overdue => Condition::all()
            .add(invoice::Column::Status.is_in(open))
            .add(invoice::Column::DueOn.lt(today)),
        InvoiceStatus::Sent | InvoiceStatus::PartiallyPaid => Condition::all()
            .add(invoice::Column::Status.eq(s.as_str()))
            .add(invoice::Column::DueOn.gte(today)),
        s => Condition::all().add(invoice::Column::Status.eq(s.as_str())),
    }
}

/// `GET /invoices`: staff see their cases' invoices, clients the sent ones addressed to them;
/// newest first.
pub async fn list_invoices(
    state: &AppState,
    p: &Principal,
    f: InvoiceFilter,
) -> Result<Page<InvoiceView>> {
    let limit = Limit::parse(f.limit)?;
    let mut v = Validator::default();
    let status = f
        .status
        .as_deref()
        .and_then(|s| v.check("status", InvoiceStatus::parse(s)));
    v.finish()?;
    let cursor: Option<InvoiceCursor> = decode_cursor(f.cursor.as_deref())?;
    let mut q = invoice::Entity::find();
    if let Some(c) = case_scope(p) {
        q = q.filter(c);
    }
    if let Some(s) = status {
        q = q.filter(status_condition(s, state.config.today()));
    }
    if let Some(c) = f.case_id {
        q = q.filter(invoice::Column::CaseId.eq(c));
    }
    if let Some(c) = f.client_id {
        q = q.filter(invoice::Column::ClientId.eq(c));
    }
    if let Some(c) = cursor {
        q = q.filter(
            Condition::any()
                .add(invoice::Column::CreatedAt.lt(c.at))
                .add(
                    Condition::all()
                        .add(invoice::Column::CreatedAt.eq(c.at))
                        .add(invoice::Column::Id.lt(c.id)),
                ),
        );
    }
    let mut rows = q
        .order_by_desc(invoice::Column::CreatedAt)
        .order_by_desc(invoice::Column::Id)
        .limit(limit.get() + 1)
        .all(state.db.conn())
        .await?;
    let more = rows.len() as u64 > limit.get();
    rows.truncate(limit.get() as usize);
    let next_cursor = more
        .then(|| {
            rows.last().map(|i| {
                encode_cursor(&InvoiceCursor {
                    at: i.created_at,
                    id: i.id,
                })
            })
        })
        .flatten();
    state
        .audit
        .record(
            NewEntry::new("invoice.list", "invoice")
                .by(p)
                .details(serde_json::json!({
                    "count": rows.len(),
                    "invoice_ids": rows.iter().map(|i| i.id).collect::<Vec<_>>(),
                    "admin_access": p.is_admin(),
                })),
        )
        .await?;
    Ok(Page {
        items: views(state.db.conn(), rows, state.config.today()).await?,
        next_cursor,
    })
}

/// Load for an attorney/admin action (404 if invisible, 403 for other roles).
pub(super) async fn require_issuer<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<InvoiceAccess> {
    let a = require(state, conn, p, id).await?;
    may_issue(p)?;
    if !a.staff {
        return Err(Error::Forbidden(
            "Only the legal team of this case may do this.",
        ));
    }
    Ok(a)
}

/// `POST /invoices/{id}/send`: draft → sent; tells the client live and by mail.
pub async fn send_invoice(state: &AppState, p: &Principal, id: Uuid) -> Result<InvoiceView> {
    let txn = state.db.begin_write().await?;
    let a = require_issuer(state, &*txn, p, id).await?;
    if a.invoice.status != InvoiceStatus::Draft.as_str() {
        return Err(Error::Conflict("Only a draft invoice can be sent.".into()));
    }
    let t = crate::db::now();
    // The firm's date: an invoice drafted or sent on a New York evening is not tomorrow's.
    let issued = state.config.today();
    let due = issued + Duration::days(PAYMENT_TERMS_DAYS);
    let res = invoice::Entity::update_many()
        .col_expr(
            invoice::Column::Status,
            Expr::value(InvoiceStatus::Sent.as_str()),
        )
        .col_expr(invoice::Column::IssuedOn, Expr::value(issued))
        .col_expr(invoice::Column::DueOn, Expr::value(due))
        .col_expr(invoice::Column::SentAt, Expr::value(t))
        .col_expr(invoice::Column::UpdatedAt, Expr::value(t))
        .filter(invoice::Column::Id.eq(id))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft.as_str()))
        .exec(&*txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(Error::Conflict("Only a draft invoice can be sent.".into()));
    }
    let inv = invoice::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    let currency = currency_of(&inv);
    let balance = Money::new(inv.total_cents - inv.paid_cents, currency);
    emit_to_viewers(
        &*txn,
        &inv,
        "invoice.sent",
        serde_json::json!({
            "invoice_id": inv.id, "number": inv.number, "total_cents": inv.total_cents,
            "balance_cents": balance.amount_cents, "currency": currency, "due_on": inv.due_on,
        }),
    )
    .await?;
    // Mail its client (not every client of the case): the amount and a link, nothing privileged.
    let clients: Vec<Uuid> = addressee(&*txn, &inv).await?.into_iter().collect();
    let emails = users::service::active_emails_of(&*txn, &clients).await?;
    let link = state
        .config
        .public_url
        .join(&format!("invoices/{}", inv.id))
        .map(|u| u.to_string())
        .unwrap_or_else(|_| state.config.public_url.to_string());
    for uid in &clients {
        let Some(addr) = emails.get(uid) else {
            continue;
        };
        crate::mail::enqueue_in(
            &*txn,
            crate::mail::NewMail {
                kind: "invoice.sent",
                to_address: addr.clone(),
                to_user_id: Some(*uid),
                subject: format!(
                    "Invoice {} from {}",
                    inv.number, state.config.billing.firm_name
                ),
                text: format!(
                    "A new invoice is available in your client portal.\n\n\
                     Invoice: {}\nAmount due: {}\nDue on: {}\n\nView and pay it here: {}\n",
                    inv.number,
                    balance.display(),
                    inv.due_on,
                    link
                ),
                attachments: vec![],
            },
        )
        .await?;
    }
    append_in(
        &*txn,
        vec![
            NewEntry::new("invoice.send", "invoice")
                .by(p)
                .resource(id)
                .case(inv.case_id)
                .details(serde_json::json!({"number": inv.number, "mailed": emails.len()})),
        ],
    )
    .await?;
    let parts = parts_of(&*txn, id).await?;
    txn.commit().await?;
    Ok(view(inv, parts, state.config.today()))
}

/// `POST /invoices/{id}/void`: unpaid invoices only; the entries become unbilled again.
/// The number stays taken (voided invoices keep theirs, so numbering has no gaps).
pub async fn void_invoice(state: &AppState, p: &Principal, id: Uuid) -> Result<InvoiceView> {
    let txn = state.db.begin_write().await?;
    let a = require_issuer(state, &*txn, p, id).await?;
    let voidable = [InvoiceStatus::Draft.as_str(), InvoiceStatus::Sent.as_str()];
    let t = crate::db::now();
    let res = invoice::Entity::update_many()
        .col_expr(
            invoice::Column::Status,
            Expr::value(InvoiceStatus::Void.as_str()),
        )
        .col_expr(invoice::Column::VoidedAt, Expr::value(t))
        .col_expr(invoice::Column::UpdatedAt, Expr::value(t))
        .filter(invoice::Column::Id.eq(id))
        .filter(invoice::Column::Status.is_in(voidable))
        .filter(invoice::Column::PaidCents.eq(0))
        .exec(&*txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(Error::Conflict(format!(
            "An invoice that is {} cannot be voided (only unpaid drafts and sent invoices).",
            a.invoice.status
        )));
    }
    time_entry::Entity::update_many()
        .col_expr(
            time_entry::Column::InvoiceId,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(time_entry::Column::InvoiceId.eq(id))
        .exec(&*txn)
        .await?;
    expense::Entity::update_many()
        .col_expr(
            expense::Column::InvoiceId,
            Expr::value(Option::<Uuid>::None),
        )
        .filter(expense::Column::InvoiceId.eq(id))
        .exec(&*txn)
        .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("invoice.void", "invoice")
                .by(p)
                .resource(id)
                .case(a.invoice.case_id)
                .details(serde_json::json!({"number": a.invoice.number})),
        ],
    )
    .await?;
    let inv = invoice::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or(Error::NotFound)?;
    let parts = parts_of(&*txn, id).await?;
    txn.commit().await?;
    Ok(view(inv, parts, state.config.today()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(minutes: i32, rate: i64, day: u32) -> time_entry::Model {
        let t = crate::db::now();
        time_entry::Model {
            id: Uuid::now_v7(),
            case_id: Uuid::nil(),
            timekeeper_id: Uuid::nil(),
            work_date: NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            minutes,
            rate_cents: rate,
            description: "work".into(),
            task_code: None,
            activity_code: None,
            billable: true,
            invoice_id: None,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn totals_are_sums_of_rounded_lines() {
        // Each line 7 min × 12345 = 1440.25 → 1440; three lines 4320 (not round(4320.75)=4321).
        let d = draft_lines(
            Uuid::nil(),
            vec![entry(7, 12345, 3), entry(7, 12345, 1), entry(7, 12345, 2)],
            vec![],
            825,
        )
        .unwrap();
        assert_eq!(
            d.lines.iter().map(|l| l.amount_cents).collect::<Vec<_>>(),
            [1440; 3]
        );
        assert_eq!(d.subtotal_cents, 4320);
        assert_eq!(d.tax_cents, 356); // 356.4
        assert_eq!(d.total_cents, 4676);
        // Ordered by date.
        assert_eq!(d.lines[0].work_date.day(), 1);
        assert_eq!(d.lines[2].position, 3);
    }
}
