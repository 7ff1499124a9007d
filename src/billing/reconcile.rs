//! Monthly three-way trust reconciliation (IOLTA): the bank statement balance an admin enters,
//! the trust journal (every entry up to the month's end) and the sum of the client ledgers
//! (each client/case account's balance at the month's end) must agree. Each run is stored,
//! so the firm keeps the monthly record bar rules ask for.

use chrono::{Datelike, Duration, NaiveDate};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{check_description, entity::reconciliation, money::Currency, stmt};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    error::{Error, Result, Validator},
    http::pagination::{Limit, Page, newest_by_id},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewReconciliation {
    /// The month reconciled, `YYYY-MM`; it must have ended.
    pub month: String,
    /// The trust bank account's balance on the statement at the month's end.
    pub bank_balance_cents: i64,
    pub note: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LedgerBalance {
    pub client_id: Uuid,
    pub case_id: Uuid,
    pub balance_cents: i64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReconciliationView {
    pub id: Uuid,
    pub month: String,
    /// Last day of the month (entries up to its end, UTC).
    pub period_end: NaiveDate,
    #[schema(value_type = String, example = "USD")]
    pub currency: Currency,
    pub bank_balance_cents: i64,
    /// Sum of every trust journal entry up to the period end.
    pub journal_balance_cents: i64,
    /// Sum of the client/case ledger balances at the period end.
    pub ledgers_total_cents: i64,
    /// `bank_balance_cents - journal_balance_cents`.
    pub bank_difference_cents: i64,
    /// `journal_balance_cents - ledgers_total_cents`.
    pub ledger_difference_cents: i64,
    /// All three agree.
    pub balanced: bool,
    pub note: Option<String>,
    pub created_by: Uuid,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Non-zero client ledgers at the period end (only in the answer to the POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledgers: Option<Vec<LedgerBalance>>,
}

fn view(r: reconciliation::Model, ledgers: Option<Vec<LedgerBalance>>) -> ReconciliationView {
    ReconciliationView {
        currency: Currency::parse(&r.currency).unwrap_or(Currency::USD),
        bank_difference_cents: r.bank_balance_cents.saturating_sub(r.journal_balance_cents),
        ledger_difference_cents: r
            .journal_balance_cents
            .saturating_sub(r.ledgers_total_cents),
        id: r.id,
        month: r.month,
        period_end: r.period_end,
        bank_balance_cents: r.bank_balance_cents,
        journal_balance_cents: r.journal_balance_cents,
        ledgers_total_cents: r.ledgers_total_cents,
        balanced: r.bank_balance_cents == r.journal_balance_cents
            && r.journal_balance_cents == r.ledgers_total_cents,
        note: r.note,
        created_by: r.created_by,
        created_at: r.created_at,
        ledgers,
    }
}

fn require_admin(p: &Principal) -> Result<()> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(Error::Forbidden("Only admins reconcile the trust account."))
    }
}

/// `YYYY-MM` → its first and last day.
pub fn parse_month(s: &str) -> std::result::Result<(NaiveDate, NaiveDate), String> {
    let bad = || "must be a month as YYYY-MM".to_string();
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return Err(bad());
    }
    let first = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").map_err(|_| bad())?;
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    }
    .ok_or_else(bad)?;
    Ok((first, next - Duration::days(1)))
}

/// Journal total and each account's balance as of `cutoff`: the end of the month's last
/// day in the firm's time zone, the same calendar that decides the month has ended.
async fn balances_at<C: ConnectionTrait>(
    conn: &C,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<(i64, Vec<LedgerBalance>)> {
    let backend = conn.get_database_backend();
    let journal = conn
        .query_one_raw(stmt(
            backend,
            "SELECT CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) AS total
             FROM trust_entry WHERE created_at < ?",
            vec![cutoff.into()],
        ))
        .await?
        .map(|r| r.try_get::<i64>("", "total"))
        .transpose()?
        .unwrap_or(0);
    // The last entry of each account before the cutoff carries its balance then.
    let rows = conn
        .query_all_raw(stmt(
            backend,
            "SELECT e.client_id, e.case_id, e.balance_after_cents FROM trust_entry e
             WHERE e.created_at < ? AND NOT EXISTS (
               SELECT 1 FROM trust_entry l
               WHERE l.client_id = e.client_id AND l.case_id = e.case_id AND l.created_at < ?
                 AND (l.created_at > e.created_at OR (l.created_at = e.created_at AND l.id > e.id)))
             ORDER BY e.client_id, e.case_id",
            vec![cutoff.into(), cutoff.into()],
        ))
        .await?;
    let mut ledgers = Vec::new();
    for r in rows {
        let balance_cents: i64 = r.try_get("", "balance_after_cents")?;
        if balance_cents != 0 {
            ledgers.push(LedgerBalance {
                client_id: r.try_get("", "client_id")?,
                case_id: r.try_get("", "case_id")?,
                balance_cents,
            });
        }
    }
    Ok((journal, ledgers))
}

/// `POST /trust/reconciliations` (admins): compute, store and answer the month's report.
pub async fn reconcile(
    state: &AppState,
    p: &Principal,
    input: NewReconciliation,
) -> Result<ReconciliationView> {
    require_admin(p)?;
    let mut v = Validator::default();
    let month = v.check("month", parse_month(input.month.trim()));
    // A range check, not abs(): i64::MIN has no absolute value.
    if !(-super::MAX_AMOUNT_CENTS..=super::MAX_AMOUNT_CENTS).contains(&input.bank_balance_cents) {
        v.push("bank_balance_cents", "is out of range");
    }
    let note = input
        .note
        .as_deref()
        .filter(|n| !n.trim().is_empty())
        .and_then(|n| check_description(&mut v, "note", n, 500));
    v.finish()?;
    let (_, period_end) = month.expect("checked");
    if period_end >= state.config.today() {
        return Err(Error::invalid(
            "month",
            "the month has not ended yet; reconcile it once the bank statement is in",
        ));
    }
    // The month has ended, so its entries no longer change: read them before taking the
    // write slot (SQLite has one) for the two inserts.
    let cutoff = state.config.start_of(period_end + Duration::days(1));
    let (journal, ledgers) = balances_at(state.db.conn(), cutoff).await?;
    let ledgers_total = ledgers
        .iter()
        .try_fold(0i64, |s, l| s.checked_add(l.balance_cents))
        .ok_or_else(|| anyhow::anyhow!("trust ledger total overflows"))?;
    let row = reconciliation::ActiveModel {
        id: Set(Uuid::now_v7()),
        month: Set(input.month.trim().to_string()),
        period_end: Set(period_end),
        bank_balance_cents: Set(input.bank_balance_cents),
        journal_balance_cents: Set(journal),
        ledgers_total_cents: Set(ledgers_total),
        currency: Set(state.config.billing.currency.code().into()),
        note: Set(note),
        created_by: Set(p.user_id),
        created_at: Set(crate::db::now()),
    };
    let txn = state.db.begin_write().await?;
    let row = row.insert(&*txn).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("trust.reconcile", "trust")
                .by(p)
                .resource(row.id)
                .details(serde_json::json!({
                    "month": row.month, "bank_balance_cents": row.bank_balance_cents,
                    "journal_balance_cents": journal, "ledgers_total_cents": ledgers_total,
                    "bank_difference_cents": row.bank_balance_cents.saturating_sub(journal),
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(view(row, Some(ledgers)))
}

/// `GET /trust/reconciliations` (admins): stored reports, newest first.
pub async fn list(
    state: &AppState,
    p: &Principal,
    limit: Limit,
    cursor: Option<&str>,
) -> Result<Page<ReconciliationView>> {
    require_admin(p)?;
    let page = newest_by_id(
        state.db.conn(),
        reconciliation::Entity::find(),
        reconciliation::Column::Id,
        |r| r.id,
        limit,
        cursor,
    )
    .await?;
    Ok(Page {
        items: page.items.into_iter().map(|r| view(r, None)).collect(),
        next_cursor: page.next_cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let (a, b) = parse_month("2024-02").unwrap();
        assert_eq!(
            (a.to_string(), b.to_string()),
            ("2024-02-01".into(), "2024-02-29".into())
        );
        let (_, b) = parse_month("2026-12").unwrap();
        assert_eq!(b.to_string(), "2026-12-31");
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-01-05"] {
            assert!(parse_month(bad).is_err(), "{bad}");
        }
    }
}
