//! Staff pages: managing a matter (details, status, members, parties with a conflict check,
//! deadlines, expenses), trust ledgers and payments, an attorney's availability, users and
//! invitations, the audit trail and trust reconciliation. Handlers translate forms and call
//! the same service functions as the API, so the outcome for the same action is the same:
//! 404 for what the caller may not see, 403 for a role that may see but not act.

use std::collections::HashMap;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Request, State},
    http::StatusCode,
    response::Response,
    routing::{get, post},
};
use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::{
    pages::{
        PageError, PageQuery, PageUser, Viewer, day, form_user, money, parse_id, render,
        render_status,
    },
    work::{ConflictRow, field, readable, see_other},
};
use crate::{
    AppState,
    auth::Principal,
    billing::{invoices, money::Currency, payments, reconcile, time as billing_time},
    cases::{
        conflicts,
        domain::{CasePhase, CaseStatus, DeadlineKind, MemberRole, PartyKind},
        members,
        service::{self as cases, CaseView},
    },
    error::Error,
    http::pagination::Limit,
    users::domain::Role,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/staff", get(hub))
        .route("/staff/deadlines", get(deadlines_page))
        .route("/cases/{id}/manage", get(manage_view))
        .route("/cases/{id}/manage/details", post(save_details))
        .route("/cases/{id}/manage/status", post(save_status))
        .route("/cases/{id}/manage/members", post(add_member))
        .route(
            "/cases/{id}/manage/members/{user_id}/remove",
            post(remove_member),
        )
        .route("/cases/{id}/manage/parties", post(add_party))
        .route(
            "/cases/{id}/manage/parties/{party_id}/remove",
            post(remove_party),
        )
        .route("/cases/{id}/manage/deadlines", post(add_deadline))
        .route(
            "/cases/{id}/manage/deadlines/{deadline_id}",
            post(complete_deadline),
        )
        .route("/cases/{id}/manage/expenses", post(add_expense))
        .route("/cases/{id}/manage/trust", get(trust_view))
        .route("/cases/{id}/manage/trust/{kind}", post(trust_submit))
        .route(
            "/staff/invoices/{id}/payment",
            get(payment_view).post(payment_submit),
        )
        .route(
            "/staff/availability",
            get(availability_view).post(availability_submit),
        )
        .route("/staff/availability/busy", post(busy_add))
        .route(
            "/staff/availability/busy/{busy_id}/remove",
            post(busy_remove),
        )
        .route("/staff/users", get(users_view))
        .route("/staff/users/{id}/status", post(user_status))
        .route("/staff/invitations", post(invite))
        .route("/staff/audit", get(audit_view))
        .route("/staff/audit/verify", post(audit_verify))
        .route(
            "/staff/reconciliations",
            get(reconciliations_view).post(reconcile_submit),
        )
}

// ---------------------------------------------------------------------------------------
// Small helpers.

fn opt(form: &HashMap<String, String>, k: &str) -> Option<String> {
    Some(field(form, k)).filter(|v| !v.is_empty())
}

fn forbidden(why: &'static str) -> PageError {
    PageError::Service(Error::Forbidden(why))
}

/// Staff pages are for the firm's staff: a client gets 403 (they may be signed in, but their
/// role never acts here).
fn require_staff(p: &Principal) -> Result<(), PageError> {
    if p.is_staff() {
        Ok(())
    } else {
        Err(forbidden("These pages are for the firm's staff."))
    }
}

/// A matter the caller may see (404 otherwise) and acts on as staff (a client of it: 403).
async fn staff_case(state: &AppState, p: &Principal, id: Uuid) -> Result<CaseView, PageError> {
    let case = cases::get_case(state, p, id).await?;
    if !p.is_staff() {
        return Err(forbidden("Only the legal team of this case may do this."));
    }
    Ok(case)
}

/// `12.50`, `1,234.5` or `40` in the firm currency → minor units.
fn amount_of(raw: &str, cur: Currency) -> Option<i64> {
    let s: String = raw.chars().filter(|c| *c != ',' && *c != ' ').collect();
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    let exp = usize::from(cur.exponent());
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > exp || whole.len() > 15 {
        return None;
    }
    let scale = 10i64.pow(u32::from(cur.exponent()));
    let mut f = frac.to_owned();
    while f.len() < exp {
        f.push('0');
    }
    let frac_v: i64 = if f.is_empty() { 0 } else { f.parse().ok()? };
    whole
        .parse::<i64>()
        .ok()?
        .checked_mul(scale)?
        .checked_add(frac_v)
}

fn money_of(cents: i64, cur: Currency) -> String {
    money(cents, cur.code())
}

/// Only known confirmations are shown: the query string is never echoed into the page.
#[derive(Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
}

fn done_text(key: Option<&str>) -> Option<String> {
    Some(
        match key? {
            "details" => "Details saved.",
            "status" => "Status updated.",
            "member_added" => "Member added.",
            "member_removed" => "Member removed.",
            "party_removed" => "Party removed.",
            "deadline" => "Deadline added.",
            "deadline_done" => "Deadline marked done.",
            "deadline_reopened" => "Deadline reopened.",
            "expense" => "Expense recorded. It goes on the next invoice.",
            "deposit" => "Deposit recorded.",
            "transfer" => "Transfer to the invoice recorded.",
            "refund" => "Refund recorded.",
            "payment" => "Payment recorded.",
            "availability" => "Weekly availability saved.",
            "busy_added" => "Time off added.",
            "busy_removed" => "Time off removed.",
            "user" => "User updated.",
            _ => return None,
        }
        .to_owned(),
    )
}

// ---------------------------------------------------------------------------------------
// The hub and the deadline list.

#[derive(Template)]
#[template(path = "staff_hub.html")]
struct HubPage {
    user: Option<Viewer>,
    admin: bool,
    attorney: bool,
}

pub async fn hub(
    State(state): State<AppState>,
    PageUser(p): PageUser,
) -> Result<Response, PageError> {
    require_staff(&p)?;
    let v = Viewer::load(&state, &p).await?;
    Ok(render(&HubPage {
        user: Some(v),
        admin: p.is_admin(),
        attorney: matches!(p.role, Role::Attorney | Role::Admin),
    }))
}

pub struct DeadlineRow {
    pub case_id: Uuid,
    pub case_number: String,
    pub title: String,
    pub when: String,
    pub kind: String,
}

#[derive(Template)]
#[template(path = "staff_deadlines.html")]
struct DeadlinesPage {
    user: Option<Viewer>,
    days: i64,
    rows: Vec<DeadlineRow>,
    /// The next page's cursor (URL-safe base64).
    next: Option<String>,
}

#[derive(Deserialize)]
pub struct DaysQuery {
    days: Option<i64>,
    cursor: Option<String>,
}

pub async fn deadlines_page(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(q): PageQuery<DaysQuery>,
) -> Result<Response, PageError> {
    let days = q.days.unwrap_or(90).clamp(1, 365);
    let page = crate::cases::dashboard::deadline_page(
        &state,
        &p,
        days,
        crate::http::pagination::Limit::MAX,
        q.cursor.as_deref(),
    )
    .await?;
    let rows = page.items;
    let v = Viewer::load(&state, &p).await?;
    Ok(render(&DeadlinesPage {
        user: Some(v),
        days,
        rows: rows
            .into_iter()
            .map(|d| DeadlineRow {
                case_id: d.case_id,
                case_number: d.case_number,
                title: d.title,
                when: day(d.due_on),
                kind: d.kind.to_string().replace('_', " "),
            })
            .collect(),
        next: page.next_cursor,
    }))
}

// ---------------------------------------------------------------------------------------
// Managing one matter.

pub struct MemberRow {
    pub user_id: Uuid,
    pub name: String,
    pub role: String,
    pub removable: bool,
}

pub struct Choice {
    pub id: Uuid,
    pub label: String,
}

pub struct PartyRow {
    pub id: Uuid,
    pub name: String,
    pub kind: String,
}

pub struct CaseDeadlineRow {
    pub id: Uuid,
    pub title: String,
    pub when: String,
    pub kind: String,
    /// When it was marked done, in the viewer's zone; `None` while open.
    pub done: Option<String>,
}

pub struct ExpenseRow {
    pub date: String,
    pub description: String,
    pub amount: String,
    pub billed: bool,
}

pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub status: String,
    pub balance: String,
    pub open: bool,
}

/// The conflict check run when a party was added.
pub struct PartyHits {
    pub name: String,
    pub rows: Vec<ConflictRow>,
}

#[derive(Default)]
struct Flash {
    done: Option<String>,
    error: Option<String>,
    hits: Option<PartyHits>,
}

impl Flash {
    fn error(why: impl Into<String>) -> Self {
        Self {
            error: Some(why.into()),
            ..Self::default()
        }
    }
}

#[derive(Template)]
#[template(path = "staff_manage.html")]
struct ManagePage {
    user: Option<Viewer>,
    csrf: String,
    id: Uuid,
    number: String,
    title: String,
    description: String,
    status: String,
    phase: String,
    statuses: Vec<&'static str>,
    phases: Vec<&'static str>,
    can_manage_members: bool,
    members: Vec<MemberRow>,
    candidates: Vec<Choice>,
    parties: Vec<PartyRow>,
    /// (value, label)
    party_kinds: Vec<(&'static str, String)>,
    deadline_kinds: Vec<(&'static str, String)>,
    deadlines: Vec<CaseDeadlineRow>,
    expenses: Vec<ExpenseRow>,
    invoices: Vec<InvoiceRow>,
    today: String,
    done: Option<String>,
    error: Option<String>,
    hits: Option<PartyHits>,
}

async fn manage_page(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    flash: Flash,
) -> Result<Response, PageError> {
    let case = staff_case(state, p, id).await?;
    let v = Viewer::load(state, p).await?;
    let page = Limit::parse(Some(100))?;
    let deadlines = members::list_deadlines(state, p, id, page, None).await?;
    let parties = members::list_parties(state, p, id, page, None).await?;
    let expenses = billing_time::list_expenses(state, p, id, page, None).await?;
    let invoices = invoices::list_invoices(
        state,
        p,
        invoices::InvoiceFilter {
            case_id: Some(id),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let can_manage_members = p.is_admin()
        || (p.role == Role::Attorney
            && case
                .members
                .iter()
                .any(|m| m.user_id == p.user_id && m.role == MemberRole::LeadAttorney));
    let candidates = if can_manage_members {
        let users = crate::users::service::list_users(
            state,
            p,
            crate::users::service::UserFilter {
                status: Some("active".into()),
                limit: Some(100),
                ..Default::default()
            },
        )
        .await?;
        users
            .items
            .into_iter()
            .filter(|u| !case.members.iter().any(|m| m.user_id == u.id))
            .map(|u| Choice {
                id: u.id,
                label: format!("{} ({}, {})", u.name, u.role, u.email),
            })
            .collect()
    } else {
        Vec::new()
    };
    let cur = state.config.billing.currency;
    let failed = flash.error.is_some();
    let page = ManagePage {
        csrf: v.csrf.clone(),
        id,
        number: case.number.clone(),
        title: case.title.clone(),
        description: case.description.clone(),
        status: case.status.to_string(),
        phase: case.phase.to_string(),
        statuses: CaseStatus::ALL.iter().map(|s| s.as_str()).collect(),
        phases: CasePhase::ALL.iter().map(|s| s.as_str()).collect(),
        can_manage_members,
        members: case
            .members
            .iter()
            .map(|m| MemberRow {
                user_id: m.user_id,
                name: m.name.clone(),
                role: m.role.to_string().replace('_', " "),
                removable: can_manage_members && m.role != MemberRole::LeadAttorney,
            })
            .collect(),
        candidates,
        parties: parties
            .items
            .into_iter()
            .map(|x| PartyRow {
                id: x.id,
                name: x.name,
                kind: x.kind.to_string().replace('_', " "),
            })
            .collect(),
        party_kinds: PartyKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.as_str().replace('_', " ")))
            .collect(),
        deadline_kinds: DeadlineKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.as_str().replace('_', " ")))
            .collect(),
        deadlines: deadlines
            .items
            .into_iter()
            .map(|d| CaseDeadlineRow {
                id: d.id,
                title: d.title,
                when: day(d.due_on),
                kind: d.kind.to_string().replace('_', " "),
                done: d.completed_at.map(|t| v.at(t)),
            })
            .collect(),
        expenses: expenses
            .items
            .into_iter()
            .map(|e| ExpenseRow {
                date: day(e.incurred_on),
                description: e.description,
                amount: money_of(e.amount_cents, cur),
                billed: e.invoice_id.is_some(),
            })
            .collect(),
        invoices: invoices
            .items
            .into_iter()
            .map(|i| InvoiceRow {
                id: i.id,
                number: i.number,
                status: i.status.to_string().replace('_', " "),
                balance: money_of(i.balance_cents, i.currency),
                open: i.status.is_open() && i.balance_cents > 0,
            })
            .collect(),
        today: Utc::now().with_timezone(&v.tz).date_naive().to_string(),
        done: flash.done,
        error: flash.error,
        hits: flash.hits,
        user: Some(v),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(status, &page))
}

pub async fn manage_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<DoneQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let flash = Flash {
        done: done_text(q.done.as_deref()),
        ..Flash::default()
    };
    manage_page(&state, &p, id, flash).await
}

/// After a manage form: back to the page with a confirmation, or the page again with the
/// readable reason (422); 403/404 and unexpected errors become error pages.
async fn after_manage<T>(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    what: &str,
    done: &str,
    r: crate::error::Result<T>,
) -> Result<Response, PageError> {
    match r {
        Ok(_) => Ok(see_other(&format!("/cases/{id}/manage?done={done}"))),
        Err(e) => match readable(&e) {
            Some(why) => manage_page(state, p, id, Flash::error(format!("{what} {why}"))).await,
            None => Err(e.into()),
        },
    }
}

pub async fn save_details(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let r = cases::patch_case(
        &state,
        &p,
        id,
        cases::CasePatch {
            title: Some(field(&form, "title")),
            description: Some(field(&form, "description")),
            ..Default::default()
        },
    )
    .await;
    after_manage(&state, &p, id, "Details not saved.", "details", r).await
}

pub async fn save_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    // Only what changed: the service refuses a "change" to the current value.
    let case = cases::get_case(&state, &p, id).await?;
    let status = opt(&form, "status").filter(|s| *s != case.status.as_str());
    let phase = opt(&form, "phase").filter(|s| *s != case.phase.as_str());
    if status.is_none() && phase.is_none() {
        return manage_page(
            &state,
            &p,
            id,
            Flash::error("Status not updated. Choose a different status or phase."),
        )
        .await;
    }
    let r = cases::change_status(
        &state,
        &p,
        id,
        cases::StatusChange {
            status,
            phase,
            note: opt(&form, "note"),
            client_visible: Some(form.contains_key("client_visible")),
        },
    )
    .await;
    after_manage(&state, &p, id, "Status not updated.", "status", r).await
}

pub async fn add_member(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let Ok(user_id) = Uuid::parse_str(&field(&form, "user_id")) else {
        // Access first (404/403 as the service would answer), then the readable complaint.
        staff_case(&state, &p, id).await?;
        return manage_page(
            &state,
            &p,
            id,
            Flash::error("Member not added. Choose a person."),
        )
        .await;
    };
    let r = members::add_member(
        &state,
        &p,
        id,
        members::NewMember {
            user_id,
            role: field(&form, "role"),
        },
    )
    .await;
    after_manage(&state, &p, id, "Member not added.", "member_added", r).await
}

pub async fn remove_member(
    State(state): State<AppState>,
    Path((id, user_id)): Path<(String, String)>,
    req: Request,
) -> Result<Response, PageError> {
    let (id, user_id) = (parse_id(&id)?, parse_id(&user_id)?);
    let (p, _) = form_user(&state, req).await?;
    let r = members::remove_member(&state, &p, id, user_id).await;
    after_manage(&state, &p, id, "Member not removed.", "member_removed", r).await
}

/// Runs the conflict check on the name first (so the new party does not find itself), records
/// the party, and shows what the check found.
pub async fn add_party(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    // Sight and role before anything else: an outsider learns nothing from the check.
    staff_case(&state, &p, id).await?;
    let name = field(&form, "name");
    let input = members::NewParty {
        name: name.clone(),
        kind: field(&form, "kind"),
    };
    let check = if name.is_empty() {
        None
    } else {
        match conflicts::check(
            &state,
            &p,
            conflicts::ConflictCheck {
                names: vec![name.clone()],
            },
        )
        .await
        {
            Ok(r) => Some(r.matches),
            Err(e) => match readable(&e) {
                Some(why) => {
                    return manage_page(
                        &state,
                        &p,
                        id,
                        Flash::error(format!("Party not added. {why}")),
                    )
                    .await;
                }
                None => return Err(e.into()),
            },
        }
    };
    match members::add_party(&state, &p, id, input).await {
        Ok(party) => {
            let rows = check
                .unwrap_or_default()
                .into_iter()
                .map(|m| ConflictRow {
                    query: m.query,
                    name: m.name,
                    role: m.role.replace('_', " "),
                    case_number: m.case_number.unwrap_or_else(|| "—".into()),
                    similarity: format!("{:.0}%", m.similarity * 100.0),
                })
                .collect();
            let flash = Flash {
                done: Some("Party recorded. The conflict check for the name is below.".into()),
                hits: Some(PartyHits {
                    name: party.name,
                    rows,
                }),
                ..Flash::default()
            };
            manage_page(&state, &p, id, flash).await
        }
        Err(e) => match readable(&e) {
            Some(why) => {
                manage_page(
                    &state,
                    &p,
                    id,
                    Flash::error(format!("Party not added. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn remove_party(
    State(state): State<AppState>,
    Path((id, party_id)): Path<(String, String)>,
    req: Request,
) -> Result<Response, PageError> {
    let (id, party_id) = (parse_id(&id)?, parse_id(&party_id)?);
    let (p, _) = form_user(&state, req).await?;
    let r = members::remove_party(&state, &p, id, party_id).await;
    after_manage(&state, &p, id, "Party not removed.", "party_removed", r).await
}

pub async fn add_deadline(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let Ok(due_on) = NaiveDate::parse_from_str(&field(&form, "due_on"), "%Y-%m-%d") else {
        staff_case(&state, &p, id).await?;
        return manage_page(
            &state,
            &p,
            id,
            Flash::error("Deadline not added. Enter the due date (YYYY-MM-DD)."),
        )
        .await;
    };
    let r = members::add_deadline(
        &state,
        &p,
        id,
        members::NewDeadline {
            title: field(&form, "title"),
            due_on,
            kind: field(&form, "kind"),
        },
    )
    .await;
    after_manage(&state, &p, id, "Deadline not added.", "deadline", r).await
}

/// Mark a deadline done (`completed=yes`) or reopen it (anything else).
pub async fn complete_deadline(
    State(state): State<AppState>,
    Path((id, deadline_id)): Path<(String, String)>,
    req: Request,
) -> Result<Response, PageError> {
    let (id, deadline_id) = (parse_id(&id)?, parse_id(&deadline_id)?);
    let (p, form) = form_user(&state, req).await?;
    let completed = field(&form, "completed") == "yes";
    let r = members::set_deadline_completed(
        &state,
        &p,
        id,
        deadline_id,
        members::DeadlineChange { completed },
    )
    .await;
    let done = if completed {
        "deadline_done"
    } else {
        "deadline_reopened"
    };
    after_manage(&state, &p, id, "Deadline not changed.", done, r).await
}

pub async fn add_expense(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let cur = state.config.billing.currency;
    let incurred_on = NaiveDate::parse_from_str(&field(&form, "incurred_on"), "%Y-%m-%d");
    let amount = amount_of(&field(&form, "amount"), cur);
    let (Ok(incurred_on), Some(amount_cents)) = (incurred_on, amount) else {
        staff_case(&state, &p, id).await?;
        return manage_page(
            &state,
            &p,
            id,
            Flash::error("Expense not recorded. Enter the date and an amount like 25.00."),
        )
        .await;
    };
    let r = billing_time::create_expense(
        &state,
        &p,
        id,
        billing_time::NewExpense {
            incurred_on,
            amount_cents,
            description: field(&form, "description"),
            expense_code: opt(&form, "expense_code"),
        },
    )
    .await;
    after_manage(&state, &p, id, "Expense not recorded.", "expense", r).await
}

// ---------------------------------------------------------------------------------------
// Trust: one matter's ledger per client, deposits, transfers to invoices, refunds.

pub struct TrustRow {
    pub when: String,
    pub kind: String,
    pub amount: String,
    pub balance: String,
    pub reference: String,
}

#[derive(Template)]
#[template(path = "staff_trust.html")]
struct TrustPage {
    user: Option<Viewer>,
    csrf: String,
    id: Uuid,
    number: String,
    clients: Vec<(Uuid, String, bool)>,
    client_id: Option<Uuid>,
    balance: String,
    rows: Vec<TrustRow>,
    open_invoices: Vec<Choice>,
    can_refund: bool,
    done: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct TrustQuery {
    client: Option<String>,
    done: Option<String>,
}

async fn trust_page(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    client: Option<Uuid>,
    done: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let case = staff_case(state, p, id).await?;
    let v = Viewer::load(state, p).await?;
    let clients: Vec<(Uuid, String)> = case
        .members
        .iter()
        .filter(|m| m.role == MemberRole::Client)
        .map(|m| (m.user_id, m.name.clone()))
        .collect();
    let chosen = client
        .filter(|c| clients.iter().any(|(id, _)| id == c))
        .or_else(|| clients.first().map(|(id, _)| *id));
    let ledger = payments::ledger(
        state,
        p,
        payments::LedgerFilter {
            client_id: chosen,
            case_id: Some(id),
            limit: Some(100),
            cursor: None,
        },
    )
    .await?;
    let open = invoices::list_invoices(
        state,
        p,
        invoices::InvoiceFilter {
            case_id: Some(id),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let cur = ledger.currency;
    let failed = error.is_some();
    let page = TrustPage {
        csrf: v.csrf.clone(),
        id,
        number: case.number.clone(),
        clients: clients
            .into_iter()
            .map(|(id, n)| (id, n, Some(id) == chosen))
            .collect(),
        client_id: chosen,
        balance: money_of(ledger.balance_cents, cur),
        rows: ledger
            .items
            .iter()
            .map(|e| TrustRow {
                when: v.at(e.created_at),
                kind: e.kind.to_string(),
                amount: money_of(e.amount_cents, cur),
                balance: money_of(e.balance_cents, cur),
                reference: e.reference.clone().unwrap_or_default(),
            })
            .collect(),
        open_invoices: open
            .items
            .into_iter()
            .filter(|i| i.status.is_open() && i.balance_cents > 0 && i.client_id == chosen)
            .map(|i| Choice {
                id: i.id,
                label: format!(
                    "{} — {} due",
                    i.number,
                    money_of(i.balance_cents, i.currency)
                ),
            })
            .collect(),
        can_refund: p.is_admin()
            || (p.role == Role::Attorney
                && case
                    .members
                    .iter()
                    .any(|m| m.user_id == p.user_id && m.role.is_attorney())),
        done,
        error,
        user: Some(v),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(status, &page))
}

pub async fn trust_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<TrustQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let client = q.client.as_deref().and_then(|c| Uuid::parse_str(c).ok());
    trust_page(&state, &p, id, client, done_text(q.done.as_deref()), None).await
}

pub async fn trust_submit(
    State(state): State<AppState>,
    Path((id, kind)): Path<(String, String)>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let client = Uuid::parse_str(&field(&form, "client_id")).ok();
    let cur = state.config.billing.currency;
    let Some(amount_cents) = amount_of(&field(&form, "amount"), cur) else {
        return trust_page(
            &state,
            &p,
            id,
            client,
            None,
            Some("Nothing recorded. Enter an amount like 250.00.".into()),
        )
        .await;
    };
    let reference = opt(&form, "reference");
    let missing = |what: &str| format!("Nothing recorded. Choose the {what}.");
    let r = match kind.as_str() {
        "deposit" | "refund" => {
            let Some(client_id) = client else {
                return trust_page(&state, &p, id, None, None, Some(missing("client"))).await;
            };
            if kind == "deposit" {
                payments::deposit(
                    &state,
                    &p,
                    payments::NewDeposit {
                        client_id,
                        case_id: id,
                        amount_cents,
                        reference,
                    },
                )
                .await
            } else {
                payments::refund(
                    &state,
                    &p,
                    payments::NewRefund {
                        client_id,
                        case_id: id,
                        amount_cents,
                        reference,
                    },
                )
                .await
            }
        }
        "transfer" => {
            let Ok(invoice_id) = Uuid::parse_str(&field(&form, "invoice_id")) else {
                return trust_page(&state, &p, id, client, None, Some(missing("invoice"))).await;
            };
            payments::transfer(
                &state,
                &p,
                payments::NewTransfer {
                    case_id: id,
                    invoice_id,
                    amount_cents,
                    reference,
                },
            )
            .await
        }
        _ => return Err(Error::NotFound.into()),
    };
    match r {
        Ok(e) => Ok(see_other(&format!(
            "/cases/{id}/manage/trust?client={}&done={kind}",
            e.client_id
        ))),
        Err(e) => match readable(&e) {
            Some(why) => {
                trust_page(
                    &state,
                    &p,
                    id,
                    client,
                    None,
                    Some(format!("Nothing recorded. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// A payment received by cheque or transfer.

#[derive(Template)]
#[template(path = "staff_payment.html")]
struct PaymentPage {
    user: Option<Viewer>,
    csrf: String,
    id: Uuid,
    case_id: Uuid,
    number: String,
    status: String,
    total: String,
    paid: String,
    balance: String,
    open: bool,
    done: Option<String>,
    error: Option<String>,
}

async fn payment_page(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    done: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let read = invoices::read_invoice(state, p, id).await?;
    let inv = read.view;
    if !read.legal_team {
        return Err(forbidden("Only the legal team records payments."));
    }
    let v = Viewer::load(state, p).await?;
    let failed = error.is_some();
    let page = PaymentPage {
        csrf: v.csrf.clone(),
        id,
        case_id: inv.case_id,
        number: inv.number.clone(),
        status: inv.status.to_string().replace('_', " "),
        total: money_of(inv.total_cents, inv.currency),
        paid: money_of(inv.paid_cents, inv.currency),
        balance: money_of(inv.balance_cents, inv.currency),
        open: inv.status.is_open() && inv.balance_cents > 0,
        done,
        error,
        user: Some(v),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(status, &page))
}

pub async fn payment_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<DoneQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    payment_page(&state, &p, id, done_text(q.done.as_deref()), None).await
}

pub async fn payment_submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let cur = state.config.billing.currency;
    let Some(amount_cents) = amount_of(&field(&form, "amount"), cur) else {
        return payment_page(
            &state,
            &p,
            id,
            None,
            Some("Payment not recorded. Enter the amount received, like 250.00.".into()),
        )
        .await;
    };
    let r = payments::record_payment(
        &state,
        &p,
        id,
        payments::NewPayment {
            amount_cents,
            method: field(&form, "method"),
            reference: opt(&form, "reference"),
        },
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!(
            "/staff/invoices/{id}/payment?done=payment"
        ))),
        Err(e) => match readable(&e) {
            Some(why) => {
                payment_page(
                    &state,
                    &p,
                    id,
                    None,
                    Some(format!("Payment not recorded. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// An attorney's weekly availability and time off.

pub struct DayRow {
    pub weekday: u8,
    pub name: &'static str,
    /// Two windows a day (e.g. morning and afternoon); empty strings for none.
    pub windows: [(String, String); 2],
}

pub struct BusyRow {
    pub id: Uuid,
    pub from: String,
    pub to: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "staff_availability.html")]
struct AvailabilityPage {
    user: Option<Viewer>,
    csrf: String,
    timezone: String,
    days: Vec<DayRow>,
    busy: Vec<BusyRow>,
    done: Option<String>,
    error: Option<String>,
}

const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Only attorneys (and admins) keep a calendar others book from.
fn require_attorney(p: &Principal) -> Result<(), PageError> {
    if !matches!(p.role, Role::Attorney | Role::Admin) {
        return Err(forbidden(
            "Only attorneys have availability. Ask the attorney or an admin.",
        ));
    }
    Ok(())
}

async fn availability_page(
    state: &AppState,
    p: &Principal,
    done: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    require_attorney(p)?;
    let doc = crate::appointments::service::get_availability(state, p, p.user_id).await?;
    let v = Viewer::load(state, p).await?;
    let today = state.config.today();
    let busy = crate::appointments::service::list_busy(
        state,
        p,
        p.user_id,
        crate::appointments::service::RangeParams {
            from: Some(today.to_string()),
            to: Some((today + Days::new(366)).to_string()),
            limit: Some(100),
            cursor: None,
        },
    )
    .await?;
    let days = (1u8..=7)
        .map(|d| {
            let mut w = doc.rules.iter().filter(|r| r.weekday == d);
            let mut next = || {
                w.next()
                    .map(|r| (r.start.clone(), r.end.clone()))
                    .unwrap_or_default()
            };
            DayRow {
                weekday: d,
                name: WEEKDAYS[usize::from(d - 1)],
                windows: [next(), next()],
            }
        })
        .collect();
    let failed = error.is_some();
    let page = AvailabilityPage {
        csrf: v.csrf.clone(),
        timezone: doc.timezone,
        days,
        busy: busy
            .items
            .into_iter()
            .map(|b| BusyRow {
                id: b.id,
                from: v.at(b.starts_at),
                to: v.at(b.ends_at),
                reason: b.reason.unwrap_or_default(),
            })
            .collect(),
        done,
        error,
        user: Some(v),
    };
    let status = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(status, &page))
}

pub async fn availability_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(q): PageQuery<DoneQuery>,
) -> Result<Response, PageError> {
    availability_page(&state, &p, done_text(q.done.as_deref()), None).await
}

pub async fn availability_submit(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    require_attorney(&p)?;
    let mut rules = Vec::new();
    for d in 1u8..=7 {
        for k in 0..2 {
            let start = field(&form, &format!("start_{d}_{k}"));
            let end = field(&form, &format!("end_{d}_{k}"));
            if start.is_empty() && end.is_empty() {
                continue;
            }
            rules.push(crate::appointments::domain::Rule {
                weekday: d,
                start,
                end,
            });
        }
    }
    let r = crate::appointments::service::put_availability(
        &state,
        &p,
        p.user_id,
        crate::appointments::service::AvailabilityDoc {
            timezone: field(&form, "timezone"),
            rules,
        },
    )
    .await;
    match r {
        Ok(_) => Ok(see_other("/staff/availability?done=availability")),
        Err(e) => match readable(&e) {
            Some(why) => {
                // `rules[3]` means little on a page: name the day instead.
                let why = why.replace("rules[", "window [");
                availability_page(
                    &state,
                    &p,
                    None,
                    Some(format!("Availability not saved. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

/// A `datetime-local` value in the viewer's zone → RFC 3339 UTC (empty when unreadable, which
/// the service reports as a readable validation error).
fn local_to_utc(v: &Viewer, raw: &str) -> String {
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M")
        .ok()
        .and_then(|t| v.tz.from_local_datetime(&t).earliest())
        .map(|t| t.with_timezone(&Utc).to_rfc3339())
        .unwrap_or_default()
}

pub async fn busy_add(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    require_attorney(&p)?;
    let v = Viewer::load(&state, &p).await?;
    let r = crate::appointments::service::add_busy(
        &state,
        &p,
        p.user_id,
        crate::appointments::service::NewBusy {
            starts_at: local_to_utc(&v, &field(&form, "starts_at")),
            ends_at: local_to_utc(&v, &field(&form, "ends_at")),
            reason: opt(&form, "reason"),
        },
    )
    .await;
    match r {
        Ok(_) => Ok(see_other("/staff/availability?done=busy_added")),
        Err(e) => match readable(&e) {
            Some(why) => {
                availability_page(&state, &p, None, Some(format!("Time off not added. {why}")))
                    .await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn busy_remove(
    State(state): State<AppState>,
    Path(busy_id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let busy_id = parse_id(&busy_id)?;
    let (p, _) = form_user(&state, req).await?;
    crate::appointments::service::delete_busy(&state, &p, p.user_id, busy_id).await?;
    Ok(see_other("/staff/availability?done=busy_removed"))
}

// ---------------------------------------------------------------------------------------
// Users and invitations (admins).

pub struct UserRow {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: String,
    pub status: String,
    pub active: bool,
    pub me: bool,
}

#[derive(Template)]
#[template(path = "staff_users.html")]
struct UsersPage {
    user: Option<Viewer>,
    csrf: String,
    q: String,
    role: String,
    status: String,
    roles: Vec<&'static str>,
    rows: Vec<UserRow>,
    next: Option<String>,
    done: Option<String>,
    error: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct UsersQuery {
    q: Option<String>,
    role: Option<String>,
    status: Option<String>,
    cursor: Option<String>,
    done: Option<String>,
}

fn require_admin(p: &Principal) -> Result<(), PageError> {
    if p.is_admin() {
        Ok(())
    } else {
        Err(forbidden("Only admins manage users and invitations."))
    }
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter().filter(|(_, v)| !v.is_empty()))
        .finish()
}

async fn users_page(
    state: &AppState,
    p: &Principal,
    q: UsersQuery,
    done: Option<String>,
    error: Option<String>,
) -> Result<Response, PageError> {
    require_admin(p)?;
    let v = Viewer::load(state, p).await?;
    let (text, role, status) = (
        q.q.unwrap_or_default(),
        q.role.unwrap_or_default(),
        q.status.unwrap_or_default(),
    );
    let page = crate::users::service::list_users(
        state,
        p,
        crate::users::service::UserFilter {
            q: Some(text.clone()).filter(|s| !s.is_empty()),
            role: Some(role.clone()).filter(|s| !s.is_empty()),
            status: Some(status.clone()).filter(|s| !s.is_empty()),
            limit: Some(50),
            cursor: q.cursor,
        },
    )
    .await?;
    let next = page.next_cursor.map(|c| {
        query_string(&[
            ("q", &text),
            ("role", &role),
            ("status", &status),
            ("cursor", &c),
        ])
    });
    let failed = error.is_some();
    let out = UsersPage {
        csrf: v.csrf.clone(),
        roles: ["admin", "attorney", "paralegal", "client"].to_vec(),
        rows: page
            .items
            .into_iter()
            .map(|u| UserRow {
                id: u.id,
                name: u.name,
                email: u.email,
                role: u.role.to_string(),
                active: u.status.as_str() == "active",
                status: u.status.as_str().to_owned(),
                me: u.id == p.user_id,
            })
            .collect(),
        q: text,
        role,
        status,
        next,
        done,
        error,
        user: Some(v),
    };
    let code = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(code, &out))
}

pub async fn users_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(q): PageQuery<UsersQuery>,
) -> Result<Response, PageError> {
    let done = done_text(q.done.as_deref());
    match users_page(&state, &p, q, done, None).await {
        // A filter the service cannot read (an unknown role): the list again, unfiltered.
        Err(PageError::Service(e @ Error::Validation(_))) => {
            let why = readable(&e).unwrap_or_default();
            users_page(&state, &p, UsersQuery::default(), None, Some(why)).await
        }
        other => other,
    }
}

pub async fn user_status(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let r = crate::users::service::update_user(
        &state,
        &p,
        id,
        crate::users::service::UserPatch {
            name: None,
            role: None,
            status: Some(field(&form, "status")),
        },
    )
    .await;
    match r {
        Ok(_) => Ok(see_other("/staff/users?done=user")),
        Err(e) => match readable(&e) {
            Some(why) => {
                users_page(
                    &state,
                    &p,
                    UsersQuery::default(),
                    None,
                    Some(format!("User not changed. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

/// Invitations go out as mail through the outbox (the service writes it in the same
/// transaction); the page never shows the link itself.
pub async fn invite(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    require_admin(&p)?;
    let email = field(&form, "email");
    let r = crate::users::service::create_invitation(
        &state,
        &p,
        crate::users::service::InvitationInput {
            email: email.clone(),
            role: field(&form, "role"),
            case_id: None,
        },
    )
    .await;
    match r {
        Ok(inv) => {
            let v = Viewer::load(&state, &p).await?;
            let done = format!(
                "Invitation mailed to {email}. The link works once, until {}.",
                v.at(inv.expires_at)
            );
            users_page(&state, &p, UsersQuery::default(), Some(done), None).await
        }
        Err(e) => match readable(&e) {
            Some(why) => {
                users_page(
                    &state,
                    &p,
                    UsersQuery::default(),
                    None,
                    Some(format!("No invitation sent. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// The audit trail.

pub struct AuditRow {
    pub id: i64,
    pub when: String,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub case_id: String,
    pub outcome: String,
    pub ip: String,
}

pub struct VerifyResult {
    pub ok: bool,
    pub checked: u64,
    pub first_bad: String,
}

#[derive(Template)]
#[template(path = "staff_audit.html")]
struct AuditPage {
    user: Option<Viewer>,
    csrf: String,
    admin: bool,
    actor: String,
    action: String,
    case_id: String,
    from: String,
    to: String,
    rows: Vec<AuditRow>,
    next: Option<String>,
    verify: Option<VerifyResult>,
    error: Option<String>,
}

#[derive(Default, Deserialize)]
pub struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    case_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

/// The filter form as the service's filter: an actor by email or id, dates (in the viewer's
/// zone) as a half-open UTC range. `Err` is a readable sentence.
async fn audit_filter(
    state: &AppState,
    v: &Viewer,
    q: &AuditQuery,
) -> Result<crate::audit::service::AuditFilter, String> {
    let text = |o: &Option<String>| {
        o.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let mut f = crate::audit::service::AuditFilter {
        action: text(&q.action),
        ..Default::default()
    };
    if let Some(a) = text(&q.actor) {
        f.actor_id = Some(match Uuid::parse_str(&a) {
            Ok(id) => id,
            Err(_) => crate::users::service::find_by_email(&state.db, &a)
                .await
                .ok()
                .flatten()
                .map(|u| u.id)
                .ok_or_else(|| format!("No user has the email {a}."))?,
        });
    }
    if let Some(c) = text(&q.case_id) {
        f.case_id =
            Some(Uuid::parse_str(&c).map_err(|_| "The matter is its id (a UUID).".to_owned())?);
    }
    let date = |s: Option<String>, what: &str| -> Result<Option<DateTime<Utc>>, String> {
        let Some(s) = s else { return Ok(None) };
        let d = NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map_err(|_| format!("The {what} date is YYYY-MM-DD."))?;
        let d = if what == "to" {
            d.succ_opt().unwrap_or(d)
        } else {
            d
        };
        Ok(d.and_hms_opt(0, 0, 0)
            .and_then(|t| v.tz.from_local_datetime(&t).earliest())
            .map(|t| t.with_timezone(&Utc)))
    };
    f.from = date(text(&q.from), "from")?;
    f.to = date(text(&q.to), "to")?;
    Ok(f)
}

async fn audit_page(
    state: &AppState,
    p: &Principal,
    q: AuditQuery,
    verify: Option<VerifyResult>,
) -> Result<Response, PageError> {
    // The service decides who reads the trail (admins; attorneys their cases; others 403).
    let v = Viewer::load(state, p).await?;
    let limit = Limit::parse(Some(50))?;
    let (filter, error) = match audit_filter(state, &v, &q).await {
        Ok(f) => (f, None),
        Err(why) => (crate::audit::service::AuditFilter::default(), Some(why)),
    };
    let cursor = if error.is_none() {
        q.cursor.as_deref()
    } else {
        None
    };
    let page =
        crate::audit::service::list(&state.db, &state.audit, p, filter, limit, cursor).await?;
    let actors: Vec<Uuid> = page.items.iter().filter_map(|e| e.actor_id).collect();
    let names = crate::users::service::names_of(state.db.conn(), &actors).await?;
    let s = |o: &Option<String>| o.clone().unwrap_or_default();
    let (actor, action, case_id, from, to) = (
        s(&q.actor),
        s(&q.action),
        s(&q.case_id),
        s(&q.from),
        s(&q.to),
    );
    let next = page
        .next_cursor
        .as_ref()
        .filter(|_| error.is_none())
        .map(|c| {
            query_string(&[
                ("actor", &actor),
                ("action", &action),
                ("case_id", &case_id),
                ("from", &from),
                ("to", &to),
                ("cursor", c),
            ])
        });
    let failed = error.is_some();
    let out = AuditPage {
        csrf: v.csrf.clone(),
        admin: p.is_admin(),
        rows: page
            .items
            .into_iter()
            .map(|e| AuditRow {
                id: e.id,
                when: v.at(e.at),
                actor: e
                    .actor_id
                    .map(|a| {
                        names
                            .get(&a)
                            .map(|(n, _)| n.clone())
                            .unwrap_or_else(|| a.to_string())
                    })
                    .unwrap_or_else(|| "system".into()),
                action: e.action,
                resource: format!("{} {}", e.resource_type, e.resource_id.unwrap_or_default()),
                case_id: e.case_id.map(|c| c.to_string()).unwrap_or_default(),
                outcome: e.outcome,
                ip: e.ip.unwrap_or_default(),
            })
            .collect(),
        actor,
        action,
        case_id,
        from,
        to,
        next,
        verify,
        error,
        user: Some(v),
    };
    let code = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(code, &out))
}

pub async fn audit_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(q): PageQuery<AuditQuery>,
) -> Result<Response, PageError> {
    audit_page(&state, &p, q, None).await
}

pub async fn audit_verify(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, _) = form_user(&state, req).await?;
    let r = crate::audit::service::verify(&state.db, &state.audit, &p).await?;
    let result = VerifyResult {
        ok: r.ok,
        checked: r.entries_checked,
        first_bad: r.first_bad_id.map(|i| i.to_string()).unwrap_or_default(),
    };
    audit_page(&state, &p, AuditQuery::default(), Some(result)).await
}

// ---------------------------------------------------------------------------------------
// Monthly trust reconciliation (admins).

pub struct ReconRow {
    pub month: String,
    pub bank: String,
    pub journal: String,
    pub ledgers: String,
    pub balanced: bool,
    pub note: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "staff_reconciliations.html")]
struct ReconPage {
    user: Option<Viewer>,
    csrf: String,
    last_month: String,
    rows: Vec<ReconRow>,
    result: Option<ReconRow>,
    error: Option<String>,
}

fn recon_row(v: &Viewer, r: &reconcile::ReconciliationView) -> ReconRow {
    ReconRow {
        month: r.month.clone(),
        bank: money_of(r.bank_balance_cents, r.currency),
        journal: money_of(r.journal_balance_cents, r.currency),
        ledgers: money_of(r.ledgers_total_cents, r.currency),
        balanced: r.balanced,
        note: r.note.clone().unwrap_or_default(),
        when: v.at(r.created_at),
    }
}

async fn recon_page(
    state: &AppState,
    p: &Principal,
    result: Option<reconcile::ReconciliationView>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let list = reconcile::list(state, p, Limit::parse(Some(50))?, None).await?;
    let v = Viewer::load(state, p).await?;
    let today = state.config.today();
    let last = today
        .with_day0(0)
        .and_then(|d| d.pred_opt())
        .unwrap_or(today);
    let failed = error.is_some();
    let page = ReconPage {
        csrf: v.csrf.clone(),
        last_month: last.format("%Y-%m").to_string(),
        rows: list.items.iter().map(|r| recon_row(&v, r)).collect(),
        result: result.as_ref().map(|r| recon_row(&v, r)),
        error,
        user: Some(v),
    };
    let code = if failed {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok(render_status(code, &page))
}

pub async fn reconciliations_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
) -> Result<Response, PageError> {
    recon_page(&state, &p, None, None).await
}

pub async fn reconcile_submit(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    let cur = state.config.billing.currency;
    let raw = field(&form, "bank_balance");
    let (neg, digits) = match raw.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, raw.as_str()),
    };
    let Some(bank) = amount_of(digits, cur).map(|c| if neg { -c } else { c }) else {
        return recon_page(
            &state,
            &p,
            None,
            Some("Not reconciled. Enter the bank statement's balance, like 12500.00.".into()),
        )
        .await;
    };
    let r = reconcile::reconcile(
        &state,
        &p,
        reconcile::NewReconciliation {
            month: field(&form, "month"),
            bank_balance_cents: bank,
            note: opt(&form, "note"),
        },
    )
    .await;
    match r {
        Ok(view) => recon_page(&state, &p, Some(view), None).await,
        Err(e) => match readable(&e) {
            Some(why) => recon_page(&state, &p, None, Some(format!("Not reconciled. {why}"))).await,
            None => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_in_minor_units() {
        let usd = Currency::USD;
        assert_eq!(amount_of("12.50", usd), Some(1250));
        assert_eq!(amount_of("1,234.5", usd), Some(123_450));
        assert_eq!(amount_of("40", usd), Some(4000));
        for bad in ["", "-1", "1.234", "abc", ".5", "1e5", "12.5.0"] {
            assert_eq!(amount_of(bad, usd), None, "{bad}");
        }
    }
}
