//! `GET /billing/summary` and the billing numbers on the dashboard.

use chrono::{Datelike, Duration, NaiveDate};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
    sea_query::{Alias, CaseStatement, Expr, ExprTrait, Func, SimpleExpr},
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    domain::InvoiceStatus,
    entity::{invoice, payment},
    invoices::{client_scope, effective_status, status_condition},
    money::Currency,
    payments::trust_balance_of,
};
use crate::{
    AppState,
    audit::NewEntry,
    auth::Principal,
    cases::{access, domain::MemberRole, entity::member},
    error::Result,
};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvoiceSummary {
    pub id: Uuid,
    pub number: String,
    pub case_id: Uuid,
    pub status: InvoiceStatus,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub total_cents: i64,
    pub balance_cents: i64,
}

#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Aging {
    pub days_0_30_cents: i64,
    pub days_31_60_cents: i64,
    pub days_61_90_cents: i64,
    pub days_over_90_cents: i64,
}

/// Clients get their own position; staff get receivables aging over their cases.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BillingSummary {
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    /// Unpaid balance of sent invoices.
    pub outstanding_cents: i64,
    pub overdue_cents: i64,
    /// Clients: what they paid this calendar year. Staff: collected this year on their cases.
    pub paid_this_year_cents: i64,
    /// Clients only: their trust balance over all their cases.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_balance_cents: Option<i64>,
    /// Clients only: their invoices (newest first, at most 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub invoices: Option<Vec<InvoiceSummary>>,
    /// Staff only: open balances by days since the invoice date.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aging: Option<Aging>,
}

/// Invoices (not drafts, not void) on the cases a staff member bills on; for a client, those
/// they may see ([`client_scope`]: addressed to them, not a co-client's).
fn scoped(p: &Principal) -> sea_orm::Select<invoice::Entity> {
    let q = invoice::Entity::find().filter(invoice::Column::Status.is_in([
        InvoiceStatus::Sent.as_str(),
        InvoiceStatus::PartiallyPaid.as_str(),
        InvoiceStatus::Paid.as_str(),
    ]));
    if p.is_admin() {
        q
    } else if p.is_staff() {
        let mut sub = access::member_cases(p.user_id);
        sub.and_where(member::Column::Role.ne(MemberRole::Client.as_str()));
        q.filter(invoice::Column::CaseId.in_subquery(sub))
    } else {
        q.filter(client_scope(p))
    }
}

/// The caller's newest visible invoices (a client's summary lists 50).
async fn newest_invoices<C: ConnectionTrait>(
    conn: &C,
    p: &Principal,
    n: u64,
) -> Result<Vec<invoice::Model>> {
    Ok(scoped(p)
        .order_by_desc(invoice::Column::CreatedAt)
        .order_by_desc(invoice::Column::Id)
        .limit(n)
        .all(conn)
        .await?)
}

/// `SUM(when ? balance : 0)` as a BIGINT on both backends (PostgreSQL sums bigints as numeric).
fn balance_sum(when: Option<Condition>) -> SimpleExpr {
    let balance = Expr::col((invoice::Entity, invoice::Column::TotalCents))
        .sub(Expr::col((invoice::Entity, invoice::Column::PaidCents)));
    let term: SimpleExpr = match when {
        Some(c) => CaseStatement::new().case(c, balance).finally(0).into(),
        None => balance,
    };
    Func::cast_as(
        Func::coalesce([SimpleExpr::from(Func::sum(term)), Expr::val(0)]),
        Alias::new("BIGINT"),
    )
    .into()
}

/// One row of sums over every visible invoice, whatever their number.
#[derive(Debug, FromQueryResult)]
struct Totals {
    invoices: i64,
    outstanding: i64,
    overdue: i64,
    days_0_30: i64,
    days_31_60: i64,
    days_61_90: i64,
    days_over_90: i64,
}

async fn totals<C: ConnectionTrait>(conn: &C, p: &Principal, today: NaiveDate) -> Result<Totals> {
    let issued = |from_days: i64, to_days: Option<i64>| {
        // Age in days since issued_on within [from_days, to_days]: issued_on between
        // today - to_days and today - from_days (no lower end for the oldest bucket).
        let mut c = Condition::all();
        if from_days > 0 {
            c = c.add(invoice::Column::IssuedOn.lte(today - Duration::days(from_days)));
        }
        if let Some(t) = to_days {
            c = c.add(invoice::Column::IssuedOn.gte(today - Duration::days(t)));
        }
        Some(c)
    };
    Ok(scoped(p)
        .select_only()
        .column_as(
            SimpleExpr::from(Func::cast_as(
                Func::count(Expr::col((invoice::Entity, invoice::Column::Id))),
                Alias::new("BIGINT"),
            )),
            "invoices",
        )
        .column_as(balance_sum(None), "outstanding")
        .column_as(
            balance_sum(Some(status_condition(InvoiceStatus::Overdue, today))),
            "overdue",
        )
        // A date in the future (age below 0) counts as new, as `..=30` did.
        .column_as(
            balance_sum(Some(
                Condition::all().add(invoice::Column::IssuedOn.gte(today - Duration::days(30))),
            )),
            "days_0_30",
        )
        .column_as(balance_sum(issued(31, Some(60))), "days_31_60")
        .column_as(balance_sum(issued(61, Some(90))), "days_61_90")
        .column_as(balance_sum(issued(91, None)), "days_over_90")
        .into_model::<Totals>()
        .one(conn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("an aggregate returned no row"))?)
}

/// Outstanding balance over the caller's visible sent invoices (dashboard): summed by the
/// database, not by loading every invoice row.
pub async fn outstanding_cents<C: ConnectionTrait>(conn: &C, p: &Principal) -> Result<i64> {
    // PostgreSQL sums bigints as numeric: cast back (SQLite keeps an integer either way).
    let sum: Option<Option<i64>> = scoped(p)
        .select_only()
        .column_as(
            Expr::cust("CAST(SUM(invoice.total_cents - invoice.paid_cents) AS BIGINT)"),
            "balance",
        )
        .into_tuple()
        .one(conn)
        .await?;
    Ok(sum.flatten().unwrap_or(0))
}

pub async fn summary(state: &AppState, p: &Principal) -> Result<BillingSummary> {
    let conn = state.db.conn();
    let today = state.config.today();
    let client = !p.is_staff();
    let t = totals(conn, p, today).await?;
    let rows = if client {
        newest_invoices(conn, p, 50).await?
    } else {
        Vec::new()
    };
    let year_start = state
        .config
        .start_of(NaiveDate::from_ymd_opt(today.year(), 1, 1).expect("January 1st"));
    // Payments this (firm) year on the visible invoices, summed by the database.
    let paid_this_year: Option<Option<i64>> = payment::Entity::find()
        .select_only()
        .column_as(
            SimpleExpr::from(Func::cast_as(
                Func::sum(Expr::col((payment::Entity, payment::Column::AmountCents))),
                Alias::new("BIGINT"),
            )),
            "paid",
        )
        .filter(
            payment::Column::InvoiceId.in_subquery(QueryTrait::into_query(
                scoped(p).select_only().column(invoice::Column::Id),
            )),
        )
        .filter(payment::Column::CreatedAt.gte(year_start))
        .into_tuple()
        .one(conn)
        .await?;
    let paid_this_year = paid_this_year.flatten().unwrap_or(0);
    let aging = Aging {
        days_0_30_cents: t.days_0_30,
        days_31_60_cents: t.days_31_60,
        days_61_90_cents: t.days_61_90,
        days_over_90_cents: t.days_over_90,
    };
    let (outstanding, overdue) = (t.outstanding, t.overdue);
    let out = BillingSummary {
        currency: state.config.billing.currency,
        outstanding_cents: outstanding,
        overdue_cents: overdue,
        paid_this_year_cents: paid_this_year,
        trust_balance_cents: if client {
            Some(trust_balance_of(conn, p.user_id).await?)
        } else {
            None
        },
        invoices: client.then(|| {
            rows.iter()
                .take(50)
                .map(|i| InvoiceSummary {
                    id: i.id,
                    number: i.number.clone(),
                    case_id: i.case_id,
                    status: effective_status(i, today),
                    issued_on: i.issued_on,
                    due_on: i.due_on,
                    total_cents: i.total_cents,
                    balance_cents: i.total_cents - i.paid_cents,
                })
                .collect()
        }),
        aging: (!client).then_some(aging),
    };
    state
        .audit
        .record(
            NewEntry::new("billing.summary", "invoice")
                .by(p)
                .details(serde_json::json!({"invoices": t.invoices})),
        )
        .await?;
    Ok(out)
}
