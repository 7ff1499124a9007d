//! Discounts and surcharges on a draft invoice: a fixed amount or a percentage of its fee or
//! expense lines, applied before tax. Totals are recomputed from the stored lines and
//! adjustments in the same transaction, so they always add up.

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    MAX_AMOUNT_CENTS, check_description,
    domain::{AdjustmentKind, AdjustmentTarget, InvoiceStatus, LineKind},
    entity::{adjustment, invoice},
    invoices::{InvoiceView, Parts, parts_of, require_issuer, totals, view},
    money::apply_bps,
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    error::{Error, Result, Validator},
};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAdjustment {
    /// `discount` lowers the invoice, `surcharge` raises it.
    pub kind: String,
    /// `fees` or `expenses`: which lines it adjusts (LEDES `IF` / `IE`).
    pub applies_to: String,
    pub description: String,
    /// A fixed amount (positive); give this or `percent_bps`, not both.
    pub amount_cents: Option<i64>,
    /// A percentage of the lines it applies to, in basis points (1..=10000; 1000 = 10%).
    pub percent_bps: Option<i32>,
}

/// What a valid request asks for.
struct Checked {
    kind: AdjustmentKind,
    target: AdjustmentTarget,
    description: String,
    amount: Amount,
}

enum Amount {
    Fixed(i64),
    Percent(u32),
}

fn check(input: &NewAdjustment) -> Result<Checked> {
    let mut v = Validator::default();
    let kind = v.check("kind", AdjustmentKind::parse(&input.kind));
    let target = v.check("applies_to", AdjustmentTarget::parse(&input.applies_to));
    let description = check_description(&mut v, "description", &input.description, 500);
    let amount = match (input.amount_cents, input.percent_bps) {
        (Some(a), None) if (1..=MAX_AMOUNT_CENTS).contains(&a) => Some(Amount::Fixed(a)),
        (Some(_), None) => {
            v.push(
                "amount_cents",
                format!("must be between 1 and {MAX_AMOUNT_CENTS}"),
            );
            None
        }
        (None, Some(b)) if (1..=10_000).contains(&b) => Some(Amount::Percent(b as u32)),
        (None, Some(_)) => {
            v.push(
                "percent_bps",
                "must be between 1 and 10000 (basis points: 1000 = 10%)",
            );
            None
        }
        _ => {
            v.push(
                "amount_cents",
                "give either amount_cents or percent_bps, not both and not neither",
            );
            None
        }
    };
    v.finish()?;
    Ok(Checked {
        kind: kind.expect("checked"),
        target: target.expect("checked"),
        description: description.expect("checked"),
        amount: amount.expect("checked"),
    })
}

fn line_kind(t: AdjustmentTarget) -> LineKind {
    match t {
        AdjustmentTarget::Fees => LineKind::Fee,
        AdjustmentTarget::Expenses => LineKind::Expense,
    }
}

/// What a group (the fee or the expense lines) comes to after its adjustments.
fn group_total(parts: &Parts, target: AdjustmentTarget) -> i64 {
    let kind = line_kind(target);
    let lines: i64 = parts
        .lines
        .iter()
        .filter(|l| LineKind::parse(&l.kind).ok() == Some(kind))
        .map(|l| l.amount_cents)
        .sum();
    let adjusted: i64 = parts
        .adjustments
        .iter()
        .filter(|x| AdjustmentTarget::parse(&x.applies_to).ok() == Some(target))
        .map(|x| x.amount_cents)
        .sum();
    lines + adjusted
}

/// Discounts never take a group below zero: LEDES and the client both read them as
/// reductions of what was billed. Checked on every change, removals included.
fn require_non_negative(parts: &Parts, target: AdjustmentTarget) -> Result<()> {
    if group_total(parts, target) < 0 {
        return Err(Error::invalid(
            "amount_cents",
            format!(
                "the discounts would exceed the {} billed on this invoice",
                target.as_str()
            ),
        ));
    }
    Ok(())
}

/// Store the totals `parts` come to (the same arithmetic as a new draft).
async fn recompute<C: ConnectionTrait>(
    conn: &C,
    inv: &invoice::Model,
    parts: &Parts,
) -> Result<invoice::Model> {
    let t = totals(
        parts.lines.iter().map(|l| l.amount_cents),
        parts.adjustments.iter().map(|a| a.amount_cents),
        inv.tax_rate_bps.max(0) as u32,
    )
    .ok_or_else(|| Error::invalid("amount_cents", "the invoice total is too large"))?;
    let mut am: invoice::ActiveModel = inv.clone().into();
    am.subtotal_cents = Set(t.subtotal_cents);
    am.adjustment_cents = Set(t.adjustment_cents);
    am.tax_cents = Set(t.tax_cents);
    am.total_cents = Set(t.total_cents);
    am.updated_at = Set(crate::db::now());
    Ok(am.update(conn).await?)
}

/// Drafts only: once sent, the client has seen the amount.
fn require_draft(inv: &invoice::Model) -> Result<()> {
    if inv.status != InvoiceStatus::Draft.as_str() {
        return Err(Error::Conflict(
            "Only a draft invoice can be adjusted; void it and draft a new one.".into(),
        ));
    }
    Ok(())
}

/// `POST /invoices/{id}/adjustments` (attorneys and admins of the case, drafts only).
pub async fn add(
    state: &AppState,
    p: &Principal,
    invoice_id: Uuid,
    input: NewAdjustment,
) -> Result<InvoiceView> {
    let txn = state.db.begin_write().await?;
    let a = require_issuer(state, &*txn, p, invoice_id).await?;
    let c = check(&input)?;
    require_draft(&a.invoice)?;
    let mut parts = parts_of(&*txn, invoice_id).await?;
    let kind = line_kind(c.target);
    let base: i64 = parts
        .lines
        .iter()
        .filter(|l| LineKind::parse(&l.kind).ok() == Some(kind))
        .map(|l| l.amount_cents)
        .sum();
    if base == 0 {
        return Err(Error::invalid(
            "applies_to",
            format!("the invoice has no {} to adjust", c.target.as_str()),
        ));
    }
    let (magnitude, percent_bps) = match c.amount {
        Amount::Fixed(v) => (v, None),
        Amount::Percent(b) => (
            apply_bps(base, b)
                .ok_or_else(|| Error::invalid("percent_bps", "the adjustment is too large"))?,
            Some(b as i32),
        ),
    };
    let signed = match c.kind {
        AdjustmentKind::Discount => -magnitude,
        AdjustmentKind::Surcharge => magnitude,
    };
    let row = adjustment::Model {
        id: Uuid::now_v7(),
        invoice_id,
        applies_to: c.target.as_str().into(),
        description: c.description,
        percent_bps,
        amount_cents: signed,
        created_by: p.user_id,
        created_at: crate::db::now(),
    };
    parts.adjustments.push(row.clone());
    require_non_negative(&parts, c.target)?;
    adjustment::ActiveModel::from(row.clone())
        .insert(&*txn)
        .await?;
    let inv = recompute(&*txn, &a.invoice, &parts).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("invoice.adjust", "invoice")
                .by(p)
                .resource(invoice_id)
                .case(inv.case_id)
                .details(serde_json::json!({
                    "adjustment_id": row.id, "applies_to": row.applies_to,
                    "amount_cents": signed, "percent_bps": percent_bps, "total_cents": inv.total_cents,
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(view(inv, parts, state.config.today()))
}

/// `DELETE /invoices/{id}/adjustments/{adjustment_id}` (drafts only).
pub async fn remove(
    state: &AppState,
    p: &Principal,
    invoice_id: Uuid,
    adjustment_id: Uuid,
) -> Result<()> {
    let txn = state.db.begin_write().await?;
    let a = require_issuer(state, &*txn, p, invoice_id).await?;
    require_draft(&a.invoice)?;
    let mut parts = parts_of(&*txn, invoice_id).await?;
    let at = parts
        .adjustments
        .iter()
        .position(|x| x.id == adjustment_id)
        .ok_or(Error::NotFound)?;
    let gone = parts.adjustments.remove(at);
    // Removing a surcharge may leave an earlier discount larger than the lines.
    require_non_negative(
        &parts,
        AdjustmentTarget::parse(&gone.applies_to).unwrap_or(AdjustmentTarget::Fees),
    )?;
    adjustment::Entity::delete_by_id(adjustment_id)
        .exec(&*txn)
        .await?;
    let inv = recompute(&*txn, &a.invoice, &parts).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("invoice.adjustment_delete", "invoice")
                .by(p)
                .resource(invoice_id)
                .case(inv.case_id)
                .details(serde_json::json!({
                    "adjustment_id": adjustment_id, "total_cents": inv.total_cents,
                })),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(())
}
