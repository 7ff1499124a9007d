//! Payments and trust accounting. Every payment goes through [`apply_payment_in`], a
//! conditional UPDATE that can never push `paid_cents` past the total; trust transfers
//! decrement the (client, case) balance conditionally in the same transaction, so neither
//! concurrency nor retries can overdraw a trust account.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QuerySelect,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    MAX_AMOUNT_CENTS, check_reference,
    domain::{InvoiceStatus, PaymentMethod, TrustKind},
    entity::{invoice, payment, trust_account, trust_entry},
    invoices::{self, InvoiceView},
    money::Currency,
    stmt,
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    cases::{access, domain::MemberRole},
    error::{Error, Result, Validator},
    http::pagination::{Limit, newest_by_id},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    pub amount_cents: i64,
    /// `check|wire|card|cash|trust` (`trust` moves money out of the client's trust account).
    pub method: String,
    pub reference: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct PaymentView {
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub amount_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub method: PaymentMethod,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The invoice after the payment.
    pub invoice: InvoiceView,
}

/// Why a payment could not be applied.
pub enum Refused {
    /// Not sent, already paid, or void.
    NotOpen(String),
    /// More than the balance.
    Overpayment { balance_cents: i64 },
}

impl From<Refused> for Error {
    fn from(r: Refused) -> Self {
        match r {
            Refused::NotOpen(s) => Error::Conflict(format!(
                "An invoice that is {s} does not take payments (it must be sent and unpaid)."
            )),
            Refused::Overpayment { balance_cents } => Error::invalid(
                "amount_cents",
                format!("exceeds the balance due of {balance_cents} cents"),
            ),
        }
    }
}

/// Apply a payment inside the caller's transaction: conditional on the invoice being open and
/// the amount fitting the balance, then the payment row, the audit entry and the live event.
#[allow(clippy::too_many_arguments)]
pub async fn apply_payment_in<C: ConnectionTrait>(
    conn: &C,
    invoice_id: Uuid,
    amount_cents: i64,
    method: PaymentMethod,
    reference: Option<String>,
    actor: Option<&Principal>,
) -> Result<std::result::Result<(payment::Model, invoice::Model), Refused>> {
    let t = crate::db::now();
    let res = conn
        .execute_raw(stmt(
            conn.get_database_backend(),
            "UPDATE invoice SET paid_cents = paid_cents + ?,
                status = CASE WHEN paid_cents + ? = total_cents THEN 'paid' ELSE 'partially_paid' END,
                updated_at = ?
             WHERE id = ? AND status IN ('sent', 'partially_paid') AND paid_cents + ? <= total_cents",
            vec![
                amount_cents.into(),
                amount_cents.into(),
                t.into(),
                invoice_id.into(),
                amount_cents.into(),
            ],
        ))
        .await?;
    let inv = invoice::Entity::find_by_id(invoice_id)
        .one(conn)
        .await?
        .ok_or(Error::NotFound)?;
    if res.rows_affected() == 0 {
        let open = [
            InvoiceStatus::Sent.as_str(),
            InvoiceStatus::PartiallyPaid.as_str(),
        ];
        return Ok(Err(if open.contains(&inv.status.as_str()) {
            Refused::Overpayment {
                balance_cents: inv.total_cents - inv.paid_cents,
            }
        } else {
            Refused::NotOpen(inv.status.clone())
        }));
    }
    let pay = payment::ActiveModel {
        id: Set(Uuid::now_v7()),
        invoice_id: Set(invoice_id),
        amount_cents: Set(amount_cents),
        currency: Set(inv.currency.clone()),
        method: Set(method.as_str().into()),
        reference: Set(reference),
        recorded_by: Set(actor.and_then(Principal::actor_id)),
        created_at: Set(t),
    }
    .insert(conn)
    .await?;
    let mut e = NewEntry::new("payment.record", "invoice")
        .resource(invoice_id)
        .case(inv.case_id)
        .details(serde_json::json!({
            "payment_id": pay.id, "amount_cents": amount_cents, "method": method.as_str(),
        }));
    if let Some(p) = actor {
        e = e.by(p);
    }
    append_in(conn, vec![e]).await?;
    invoices::emit_to_viewers(
        conn,
        &inv,
        "payment.received",
        serde_json::json!({
            "invoice_id": inv.id, "number": inv.number, "amount_cents": amount_cents,
            "currency": inv.currency, "balance_cents": inv.total_cents - inv.paid_cents,
            "status": inv.status,
        }),
    )
    .await?;
    Ok(Ok((pay, inv)))
}

fn payment_view(
    pay: payment::Model,
    inv: invoice::Model,
    parts: invoices::Parts,
    today: chrono::NaiveDate,
) -> PaymentView {
    PaymentView {
        id: pay.id,
        invoice_id: pay.invoice_id,
        amount_cents: pay.amount_cents,
        currency: Currency::parse(&pay.currency).unwrap_or(Currency::USD),
        method: PaymentMethod::parse(&pay.method).unwrap_or(PaymentMethod::Check),
        reference: pay.reference,
        created_at: pay.created_at,
        invoice: invoices::view(inv, parts, today),
    }
}

fn check_amount(v: &mut Validator, amount: i64) {
    if !(1..=MAX_AMOUNT_CENTS).contains(&amount) {
        v.push(
            "amount_cents",
            format!("must be between 1 and {MAX_AMOUNT_CENTS}"),
        );
    }
}

/// `POST /invoices/{id}/payments` (staff of the case).
pub async fn record_payment(
    state: &AppState,
    p: &Principal,
    invoice_id: Uuid,
    input: NewPayment,
) -> Result<PaymentView> {
    let mut v = Validator::default();
    check_amount(&mut v, input.amount_cents);
    let method = v.check("method", PaymentMethod::parse(&input.method));
    let reference = check_reference(&mut v, input.reference.as_deref());
    v.finish()?;
    let method = method.expect("checked");
    let txn = state.db.begin_write().await?;
    let a = invoices::require(state, &*txn, p, invoice_id).await?;
    if !a.staff {
        return Err(Error::Forbidden("Only the legal team records payments."));
    }
    let (pay, inv) = if method == PaymentMethod::Trust {
        let client_id = a.invoice.client_id.ok_or_else(|| {
            Error::invalid("method", "the invoice has no client with a trust account")
        })?;
        let (pay, inv, _) = transfer_in(
            &*txn,
            p,
            client_id,
            a.invoice.case_id,
            invoice_id,
            input.amount_cents,
            reference,
        )
        .await?;
        (pay, inv)
    } else {
        apply_payment_in(
            &*txn,
            invoice_id,
            input.amount_cents,
            method,
            reference,
            Some(p),
        )
        .await??
    };
    let parts = invoices::parts_of(&*txn, invoice_id).await?;
    txn.commit().await?;
    Ok(payment_view(pay, inv, parts, state.config.today()))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeposit {
    pub client_id: Uuid,
    pub case_id: Uuid,
    pub amount_cents: i64,
    pub reference: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTransfer {
    pub case_id: Uuid,
    pub invoice_id: Uuid,
    pub amount_cents: i64,
    pub reference: Option<String>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct TrustEntryView {
    pub id: Uuid,
    pub client_id: Uuid,
    pub case_id: Uuid,
    pub kind: TrustKind,
    /// Positive for deposits, negative for transfers out.
    pub amount_cents: i64,
    /// The (client, case) balance right after this entry.
    pub balance_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub invoice_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub reference: Option<String>,
    pub created_at: DateTime<Utc>,
}

fn trust_view(e: trust_entry::Model, currency: Currency) -> TrustEntryView {
    TrustEntryView {
        id: e.id,
        client_id: e.client_id,
        case_id: e.case_id,
        kind: TrustKind::parse(&e.kind).unwrap_or(TrustKind::Deposit),
        amount_cents: e.amount_cents,
        balance_cents: e.balance_after_cents,
        currency,
        invoice_id: e.invoice_id,
        payment_id: e.payment_id,
        reference: e.reference,
        created_at: e.created_at,
    }
}

#[allow(clippy::too_many_arguments)]
async fn ledger_entry<C: ConnectionTrait>(
    conn: &C,
    p: &Principal,
    client_id: Uuid,
    case_id: Uuid,
    kind: TrustKind,
    amount: i64,
    balance_after: i64,
    invoice_id: Option<Uuid>,
    payment_id: Option<Uuid>,
    reference: Option<String>,
) -> Result<trust_entry::Model> {
    Ok(trust_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        client_id: Set(client_id),
        case_id: Set(case_id),
        kind: Set(kind.as_str().into()),
        amount_cents: Set(amount),
        balance_after_cents: Set(balance_after),
        invoice_id: Set(invoice_id),
        payment_id: Set(payment_id),
        reference: Set(reference),
        created_by: Set(p.actor_id()),
        created_at: Set(crate::db::now()),
    }
    .insert(conn)
    .await?)
}

/// `POST /trust/deposits` (staff of the case): money received into trust for a client.
pub async fn deposit(state: &AppState, p: &Principal, input: NewDeposit) -> Result<TrustEntryView> {
    let NewDeposit {
        client_id,
        case_id,
        amount_cents,
        reference,
    } = input;
    client_movement(
        state,
        p,
        (client_id, case_id),
        amount_cents,
        reference,
        TrustKind::Deposit,
    )
    .await
}

/// Money into (deposit) or back out to the client (refund) of one client/case trust account:
/// staff of the case, for a client of the case; a refund the balance does not cover → 409.
async fn client_movement(
    state: &AppState,
    p: &Principal,
    (client_id, case_id): (Uuid, Uuid),
    amount_cents: i64,
    reference: Option<String>,
    kind: TrustKind,
) -> Result<TrustEntryView> {
    let mut v = Validator::default();
    check_amount(&mut v, amount_cents);
    let reference = check_reference(&mut v, reference.as_deref());
    v.finish()?;
    let txn = state.db.begin_write().await?;
    let a = access::require_staff(state, &*txn, p, case_id).await?;
    // Money leaving trust for the client is an attorney's decision: paralegals may record
    // deposits, but only an attorney of the case (or an admin) returns money.
    let attorney_on_case = p.role == crate::users::domain::Role::Attorney
        && a.role.is_some_and(MemberRole::is_attorney);
    if kind == TrustKind::Refund && !(p.is_admin() || attorney_on_case) {
        return Err(Error::Forbidden(
            "Only an attorney of the case or an admin may refund trust money.",
        ));
    }
    if access::membership(&*txn, case_id, client_id).await? != Some(MemberRole::Client) {
        return Err(Error::invalid("client_id", "is not a client on this case"));
    }
    let (balance, signed) = match kind {
        TrustKind::Deposit => (
            credit_in(&*txn, client_id, case_id, amount_cents).await?,
            amount_cents,
        ),
        // Money out of the account; refused (409) when the balance does not cover it.
        TrustKind::Refund | TrustKind::Transfer => (
            debit_in(&*txn, client_id, case_id, amount_cents).await?,
            -amount_cents,
        ),
    };
    let e = ledger_entry(
        &*txn, p, client_id, case_id, kind, signed, balance, None, None, reference,
    )
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new(&format!("trust.{kind}"), "trust")
                .by(p)
                .resource(e.id)
                .case(case_id)
                .details(serde_json::json!({
                    "client_id": client_id, "amount_cents": amount_cents, "balance_cents": balance,
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(trust_view(e, state.config.billing.currency))
}

/// Add `amount` to a client's trust balance on a case (opening the account on first use).
async fn credit_in<C: ConnectionTrait>(
    conn: &C,
    client_id: Uuid,
    case_id: Uuid,
    amount: i64,
) -> Result<i64> {
    let row = conn
        .query_one_raw(stmt(
            conn.get_database_backend(),
            "INSERT INTO trust_account (client_id, case_id, balance_cents, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (client_id, case_id) DO UPDATE
             SET balance_cents = trust_account.balance_cents + excluded.balance_cents, updated_at = excluded.updated_at
             RETURNING balance_cents",
            vec![client_id.into(), case_id.into(), amount.into(), crate::db::now().into()],
        ))
        .await?
        .ok_or_else(|| anyhow::anyhow!("trust deposit returned nothing"))?;
    Ok(row.try_get("", "balance_cents")?)
}

/// Take `amount` out of a client's trust balance on a case, or refuse (409) when the balance
/// does not cover it. Returns the balance after.
async fn debit_in<C: ConnectionTrait>(
    conn: &C,
    client_id: Uuid,
    case_id: Uuid,
    amount: i64,
) -> Result<i64> {
    // Conditional decrement: the row lock (PostgreSQL) or the single writer (SQLite) makes the
    // check and the change one step, so concurrent debits never overdraw.
    let row = conn
        .query_one_raw(stmt(
            conn.get_database_backend(),
            "UPDATE trust_account SET balance_cents = balance_cents - ?, updated_at = ?
             WHERE client_id = ? AND case_id = ? AND balance_cents >= ?
             RETURNING balance_cents",
            vec![
                amount.into(),
                crate::db::now().into(),
                client_id.into(),
                case_id.into(),
                amount.into(),
            ],
        ))
        .await?;
    let Some(row) = row else {
        return Err(Error::Conflict(
            "The client's trust balance on this case does not cover this amount.".into(),
        ));
    };
    Ok(row.try_get("", "balance_cents")?)
}

/// Move money from a client's trust balance on a case to an invoice, atomically.
#[allow(clippy::too_many_arguments)]
async fn transfer_in<C: ConnectionTrait>(
    conn: &C,
    p: &Principal,
    client_id: Uuid,
    case_id: Uuid,
    invoice_id: Uuid,
    amount: i64,
    reference: Option<String>,
) -> Result<(payment::Model, invoice::Model, trust_entry::Model)> {
    let balance = debit_in(conn, client_id, case_id, amount).await?;
    let (pay, inv) = apply_payment_in(
        conn,
        invoice_id,
        amount,
        PaymentMethod::Trust,
        reference.clone(),
        Some(p),
    )
    .await??;
    let e = ledger_entry(
        conn,
        p,
        client_id,
        case_id,
        TrustKind::Transfer,
        -amount,
        balance,
        Some(invoice_id),
        Some(pay.id),
        reference,
    )
    .await?;
    append_in(
        conn,
        vec![
            NewEntry::new("trust.transfer", "trust")
                .by(p)
                .resource(e.id)
                .case(case_id)
                .details(serde_json::json!({
                    "client_id": client_id, "invoice_id": invoice_id, "amount_cents": amount, "balance_cents": balance,
                })),
        ],
    )
    .await?;
    Ok((pay, inv, e))
}

/// `POST /trust/transfers` (staff of the case): pay an invoice of the case from trust.
pub async fn transfer(
    state: &AppState,
    p: &Principal,
    input: NewTransfer,
) -> Result<TrustEntryView> {
    let mut v = Validator::default();
    check_amount(&mut v, input.amount_cents);
    let reference = check_reference(&mut v, input.reference.as_deref());
    v.finish()?;
    let txn = state.db.begin_write().await?;
    access::require_staff(state, &*txn, p, input.case_id).await?;
    let inv = invoice::Entity::find_by_id(input.invoice_id)
        .one(&*txn)
        .await?
        .filter(|i| i.case_id == input.case_id)
        .ok_or_else(|| Error::invalid("invoice_id", "is not an invoice of this case"))?;
    let client_id = inv
        .client_id
        .ok_or_else(|| Error::invalid("invoice_id", "the invoice has no client"))?;
    let (_, _, e) = transfer_in(
        &*txn,
        p,
        client_id,
        input.case_id,
        input.invoice_id,
        input.amount_cents,
        reference,
    )
    .await?;
    txn.commit().await?;
    Ok(trust_view(e, state.config.billing.currency))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRefund {
    pub client_id: Uuid,
    pub case_id: Uuid,
    pub amount_cents: i64,
    /// Check number or wire reference of the money returned.
    pub reference: Option<String>,
}

/// `POST /trust/refunds` (attorneys of the case, admins): return unused trust money to the
/// client. Paralegals of the case get 403.
pub async fn refund(state: &AppState, p: &Principal, input: NewRefund) -> Result<TrustEntryView> {
    client_movement(
        state,
        p,
        (input.client_id, input.case_id),
        input.amount_cents,
        input.reference,
        TrustKind::Refund,
    )
    .await
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct LedgerFilter {
    pub client_id: Option<Uuid>,
    pub case_id: Option<Uuid>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ledger {
    pub items: Vec<TrustEntryView>,
    pub next_cursor: Option<String>,
    /// Sum of the balances the filter covers.
    pub balance_cents: i64,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
}

/// `GET /trust/ledger`: staff see their cases' ledgers (admins all); clients only their own.
pub async fn ledger(state: &AppState, p: &Principal, f: LedgerFilter) -> Result<Ledger> {
    let limit = Limit::parse(f.limit)?;
    let conn = state.db.conn();
    let mut entries = Condition::all();
    let mut accounts = Condition::all();
    if !p.is_staff() {
        if f.client_id.is_some_and(|c| c != p.user_id) {
            return Err(Error::NotFound);
        }
        entries = entries.add(trust_entry::Column::ClientId.eq(p.user_id));
        accounts = accounts.add(trust_account::Column::ClientId.eq(p.user_id));
    } else if !p.is_admin() {
        let mut sub = access::member_cases(p.user_id);
        sub.and_where(crate::cases::entity::member::Column::Role.ne(MemberRole::Client.as_str()));
        entries = entries.add(trust_entry::Column::CaseId.in_subquery(sub.clone()));
        accounts = accounts.add(trust_account::Column::CaseId.in_subquery(sub));
    }
    if let Some(case_id) = f.case_id {
        if p.is_staff() {
            access::require_staff(state, conn, p, case_id).await?;
        }
        entries = entries.add(trust_entry::Column::CaseId.eq(case_id));
        accounts = accounts.add(trust_account::Column::CaseId.eq(case_id));
    }
    if let Some(client_id) = f.client_id {
        entries = entries.add(trust_entry::Column::ClientId.eq(client_id));
        accounts = accounts.add(trust_account::Column::ClientId.eq(client_id));
    }
    let balance: Option<i64> = trust_account::Entity::find()
        .select_only()
        .column_as(sum_balance(), "b")
        .filter(accounts)
        .into_tuple()
        .one(conn)
        .await?;
    let page = newest_by_id(
        conn,
        trust_entry::Entity::find().filter(entries),
        trust_entry::Column::Id,
        |r| r.id,
        limit,
        f.cursor.as_deref(),
    )
    .await?;
    state
        .audit
        .record(
            NewEntry::new("trust.ledger", "trust")
                .by(p)
                .details(serde_json::json!({
                    "client_id": f.client_id, "case_id": f.case_id, "count": page.items.len(),
                })),
        )
        .await?;
    let currency = state.config.billing.currency;
    Ok(Ledger {
        items: page
            .items
            .into_iter()
            .map(|e| trust_view(e, currency))
            .collect(),
        next_cursor: page.next_cursor,
        balance_cents: balance.unwrap_or(0),
        currency,
    })
}

/// A client's trust balance over all their cases (for the billing summary).
pub async fn trust_balance_of<C: ConnectionTrait>(conn: &C, client_id: Uuid) -> Result<i64> {
    let b: Option<i64> = trust_account::Entity::find()
        .select_only()
        .column_as(sum_balance(), "b")
        .filter(trust_account::Column::ClientId.eq(client_id))
        .into_tuple()
        .one(conn)
        .await?;
    Ok(b.unwrap_or(0))
}

/// `SUM` of a BIGINT is NUMERIC on PostgreSQL: cast back so both backends give an i64.
fn sum_balance() -> sea_orm::sea_query::SimpleExpr {
    sea_orm::sea_query::Expr::cust("CAST(COALESCE(SUM(trust_account.balance_cents), 0) AS BIGINT)")
}
