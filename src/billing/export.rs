//! Invoice documents: LEDES 1998B (with its pre-flight validator) and the PDF.

use uuid::Uuid;

use super::{
    domain::{AdjustmentTarget, LineKind},
    invoices::{self, InvoiceAccess, currency_of, effective_status, parts_of},
    ledes::{self, LedesInvoice, LedesLine, LedesProblem},
    money::Money,
    pdf::{self, PdfInvoice},
};
use crate::{
    AppState,
    auth::Principal,
    error::{Error, Result},
    users::{self, domain::Role},
};

/// A short, stable code for a person in LEDES id fields (20 characters at most).
fn short_id(id: Uuid) -> String {
    id.simple().to_string()[..20].to_ascii_uppercase()
}

fn classification(role: Role) -> &'static str {
    match role {
        Role::Admin => "PT",
        Role::Attorney => "AS",
        Role::Paralegal => "PL",
        Role::Client => "OT",
    }
}

async fn ledes_of(state: &AppState, a: &InvoiceAccess) -> Result<LedesInvoice> {
    let conn = state.db.conn();
    let parts = parts_of(conn, a.invoice.id).await?;
    let lines = parts.lines;
    let mut people: Vec<Uuid> = lines.iter().filter_map(|l| l.timekeeper_id).collect();
    people.extend(a.invoice.client_id);
    let names = users::service::names_of(conn, &people).await?;
    let inv = &a.invoice;
    let case = &a.case.case;
    let mut ledes_lines: Vec<LedesLine> = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| {
            let n = i as u32 + 1;
            match LineKind::parse(&l.kind) {
                Ok(LineKind::Expense) => LedesLine::expense(
                    n,
                    l.work_date,
                    l.amount_cents,
                    l.expense_code,
                    l.description,
                ),
                _ => {
                    let tk = l
                        .timekeeper_id
                        .and_then(|t| {
                            names.get(&t).map(|(name, role)| {
                                (
                                    short_id(t),
                                    ledes::surname_first(name),
                                    classification(*role).to_string(),
                                )
                            })
                        })
                        .unwrap_or_default();
                    LedesLine::fee(
                        n,
                        l.work_date,
                        l.minutes.unwrap_or(0) as i64,
                        l.rate_cents.unwrap_or(0),
                        l.amount_cents,
                        l.task_code,
                        l.activity_code,
                        tk,
                        l.description,
                    )
                }
            }
        })
        .collect();
    for adj in parts.adjustments {
        ledes_lines.push(LedesLine::invoice_adjustment(
            ledes_lines.len() as u32 + 1,
            inv.issued_on,
            AdjustmentTarget::parse(&adj.applies_to) != Ok(AdjustmentTarget::Expenses),
            adj.amount_cents,
            adj.description,
        ));
    }
    Ok(LedesInvoice {
        invoice_date: inv.issued_on,
        invoice_number: inv.number.clone(),
        client_id: inv.client_id.map(short_id).unwrap_or_default(),
        law_firm_matter_id: case.number.clone(),
        invoice_total: inv.total_cents,
        billing_start: inv.period_start,
        billing_end: inv.period_end,
        description: format!("Legal services: {}", case.title),
        law_firm_id: ledes::clean(&state.config.billing.firm_name, 20),
        client_matter_id: String::new(),
        currency: currency_of(inv),
        lines: ledes_lines,
    })
}

/// `GET /invoices/{id}/ledes/validate`: the problems an export would have (empty: none).
pub async fn ledes_problems(
    state: &AppState,
    p: &Principal,
    id: Uuid,
) -> Result<Vec<LedesProblem>> {
    let a = invoices::require(state, state.db.conn(), p, id).await?;
    Ok(ledes::validate(&ledes_of(state, &a).await?))
}

/// Why an export was refused: the validator's problems.
pub enum LedesError {
    Problems(Vec<LedesProblem>),
    Other(Error),
}

impl From<Error> for LedesError {
    fn from(e: Error) -> Self {
        LedesError::Other(e)
    }
}

/// `GET /invoices/{id}/ledes`: the file, or the problems that stop it (422).
pub async fn ledes_file(
    state: &AppState,
    p: &Principal,
    id: Uuid,
) -> std::result::Result<(String, String), LedesError> {
    let a = invoices::require(state, state.db.conn(), p, id).await?;
    let l = ledes_of(state, &a).await?;
    let problems = ledes::validate(&l);
    if !problems.is_empty() {
        return Err(LedesError::Problems(problems));
    }
    invoices::audit_read(state, p, &a, "invoice.ledes").await?;
    Ok((format!("{}.txt", a.invoice.number), ledes::render(&l)))
}

/// `GET /invoices/{id}/pdf`: rendered on the blocking pool.
pub async fn pdf_file(state: &AppState, p: &Principal, id: Uuid) -> Result<(String, Vec<u8>)> {
    let a = invoices::require(state, state.db.conn(), p, id).await?;
    let conn = state.db.conn();
    let inv = &a.invoice;
    let parts = parts_of(conn, inv.id).await?;
    let lines = parts.lines;
    let names =
        users::service::names_of(conn, &inv.client_id.into_iter().collect::<Vec<_>>()).await?;
    let currency = currency_of(inv);
    let m = |v: i64| Money::new(v, currency).display();
    let status = effective_status(inv, state.config.today());
    let link = state
        .config
        .public_url
        .join(&format!("invoices/{}", inv.id))
        .map(|u| u.to_string())
        .unwrap_or_default();
    let mut totals = vec![("Subtotal".to_string(), m(inv.subtotal_cents))];
    if inv.adjustment_cents != 0 {
        totals.push(("Adjustments".into(), m(inv.adjustment_cents)));
    }
    if inv.tax_cents != 0 {
        totals.push((
            format!(
                "Tax ({}%)",
                super::money::format_minor(inv.tax_rate_bps as i64, 2)
            ),
            m(inv.tax_cents),
        ));
    }
    totals.push(("Total".into(), m(inv.total_cents)));
    totals.push(("Paid".into(), m(inv.paid_cents)));
    totals.push(("Balance due".into(), m(inv.total_cents - inv.paid_cents)));
    let doc = PdfInvoice {
        firm_name: state.config.billing.firm_name.clone(),
        number: inv.number.clone(),
        status: status.as_str().into(),
        issued_on: inv.issued_on.to_string(),
        due_on: inv.due_on.to_string(),
        client: inv
            .client_id
            .and_then(|c| names.get(&c).map(|(n, _)| n.clone()))
            .unwrap_or_else(|| "-".into()),
        matter: format!("{} {}", a.case.case.number, a.case.case.title),
        lines: lines
            .into_iter()
            .map(|l| {
                let codes = [&l.task_code, &l.activity_code, &l.expense_code]
                    .into_iter()
                    .flatten()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" ");
                [
                    l.work_date.to_string(),
                    codes,
                    l.description,
                    l.minutes
                        .map(|mi| {
                            super::money::format_minor(
                                super::money::div_round_half_up(mi as i128 * 100, 60).unwrap_or(0),
                                2,
                            )
                        })
                        .unwrap_or_default(),
                    l.rate_cents.map(|r| currency.format(r)).unwrap_or_default(),
                    currency.format(l.amount_cents),
                ]
            })
            .chain(parts.adjustments.iter().map(|adj| {
                let what = if adj.amount_cents < 0 {
                    "Discount"
                } else {
                    "Surcharge"
                };
                let pct = adj
                    .percent_bps
                    .map(|b| format!(" {}%", super::money::format_minor(b as i64, 2)))
                    .unwrap_or_default();
                [
                    inv.issued_on.to_string(),
                    String::new(),
                    format!("{what}{pct} on {}: {}", adj.applies_to, adj.description),
                    String::new(),
                    String::new(),
                    currency.format(adj.amount_cents),
                ]
            }))
            .collect(),
        totals,
        payment_instructions: vec![
            format!(
                "Please pay {} by {}.",
                m(inv.total_cents - inv.paid_cents),
                inv.due_on
            ),
            format!("Pay online by card in your client portal: {link}"),
            format!(
                "Or by wire transfer or check, quoting invoice number {}.",
                inv.number
            ),
        ],
    };
    // Rendered while the audit entry commits; returned only when both are done.
    let render = async {
        Ok(tokio::task::spawn_blocking(move || pdf::render(&doc))
            .await
            .map_err(|e| anyhow::anyhow!("PDF rendering failed: {e}"))?)
    };
    let bytes = state
        .audit
        .while_reading(invoices::read_entry(p, &a, "invoice.pdf"), render)
        .await?;
    Ok((format!("{}.pdf", inv.number), bytes))
}
