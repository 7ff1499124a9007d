//! `GET /billing/summary` and the billing numbers on the dashboard.

use chrono::{Datelike, NaiveDate};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::Expr,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    domain::InvoiceStatus,
    entity::{invoice, payment},
    invoices::{client_scope, effective_status},
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

async fn scoped_invoices<C: ConnectionTrait>(
    conn: &C,
    p: &Principal,
) -> Result<Vec<invoice::Model>> {
    Ok(scoped(p)
        .order_by_desc(invoice::Column::CreatedAt)
        .order_by_desc(invoice::Column::Id)
        .limit(10_000)
        .all(conn)
        .await?)
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
    let rows = scoped_invoices(conn, p).await?;
    let today = state.config.today();
    let year_start = NaiveDate::from_ymd_opt(today.year(), 1, 1).expect("January 1st");
    let mut outstanding = 0;
    let mut overdue = 0;
    let mut aging = Aging::default();
    for i in &rows {
        let balance = i.total_cents - i.paid_cents;
        outstanding += balance;
        if effective_status(i, today) == InvoiceStatus::Overdue {
            overdue += balance;
        }
        let age = (today - i.issued_on).num_days();
        let bucket = match age {
            ..=30 => &mut aging.days_0_30_cents,
            31..=60 => &mut aging.days_31_60_cents,
            61..=90 => &mut aging.days_61_90_cents,
            _ => &mut aging.days_over_90_cents,
        };
        *bucket += balance;
    }
    let ids: Vec<Uuid> = rows.iter().map(|i| i.id).collect();
    let paid_this_year: i64 = if ids.is_empty() {
        0
    } else {
        let amounts: Vec<i64> = payment::Entity::find()
            .select_only()
            .column(payment::Column::AmountCents)
            .filter(payment::Column::InvoiceId.is_in(ids))
            .filter(
                payment::Column::CreatedAt
                    .gte(year_start.and_hms_opt(0, 0, 0).expect("midnight").and_utc()),
            )
            .into_tuple()
            .all(conn)
            .await?;
        amounts.into_iter().sum()
    };
    let client = !p.is_staff();
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
                .details(serde_json::json!({"invoices": rows.len()})),
        )
        .await?;
    Ok(out)
}
