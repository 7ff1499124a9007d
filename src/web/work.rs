//! Staff and billing pages: opening a matter with a conflict check at intake, recording
//! time, generating and sending invoices, the invoice page with online payment, and booking
//! an appointment. Same rule as the other pages: the service functions decide, the handlers
//! only translate forms and results.

use std::collections::HashMap;

use askama::Template;
use axum::{
    extract::{Path, Request, State},
    http::StatusCode,
    response::{IntoResponse, Redirect, Response},
};
use chrono::{Days, NaiveDate};
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{
    PageError, PageQuery, PageUser, Viewer, day, form_user, money, parse_id, render, render_status,
};
use crate::{
    AppState,
    auth::Principal,
    billing::{domain::InvoiceStatus, invoices},
    cases::{conflicts, members},
    error::Error,
};

/// What a form field error looks like on a page: one readable sentence per field.
pub(super) fn readable(e: &Error) -> Option<String> {
    match e {
        Error::Validation(errs) => Some(
            errs.iter()
                .map(|f| format!("{}: {}.", f.field.replace('_', " "), f.message))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Error::Conflict(why) => Some(why.clone()),
        _ => None,
    }
}

/// A form field, trimmed (names, titles, amounts; never a password).
pub(super) fn field(form: &HashMap<String, String>, k: &str) -> String {
    form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default()
}

pub(super) fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
}

// ---------------------------------------------------------------------------------------
// A new matter, with the conflict check at intake.

pub struct ClientOption {
    pub id: Uuid,
    pub name: String,
    pub selected: bool,
}

pub struct ConflictRow {
    pub query: String,
    pub name: String,
    pub role: String,
    pub case_number: String,
    pub similarity: String,
}

#[derive(Template)]
#[template(path = "new_case.html")]
struct NewCasePage {
    user: Option<Viewer>,
    csrf: String,
    clients: Vec<ClientOption>,
    title: String,
    description: String,
    parties: String,
    error: Option<String>,
    /// Set once the check ran: the matches (possibly none) the attorney must review.
    conflicts: Option<Vec<ConflictRow>>,
    /// Signed digest of exactly those matches; the confirmation must carry it back.
    review_token: String,
}

async fn new_case_page(
    state: &AppState,
    p: &Principal,
    form: &HashMap<String, String>,
    error: Option<String>,
    conflicts: Option<Vec<ConflictRow>>,
    review_token: String,
) -> Result<NewCasePage, PageError> {
    // The service decides who may open a matter (attorneys and admins; others 403).
    let choices = crate::users::service::client_choices(state, p).await?;
    let v = Viewer::load(state, p).await?;
    let chosen = field(form, "client_id");
    let clients: Vec<ClientOption> = choices
        .into_iter()
        .map(|(id, name)| ClientOption {
            selected: id.to_string() == chosen,
            id,
            name,
        })
        .collect();
    Ok(NewCasePage {
        csrf: v.csrf.clone(),
        user: Some(v),
        clients,
        title: field(form, "title"),
        description: field(form, "description"),
        parties: field(form, "parties"),
        error,
        conflicts,
        review_token,
    })
}

pub async fn new_case_form(
    State(state): State<AppState>,
    PageUser(p): PageUser,
) -> Result<Response, PageError> {
    Ok(render(
        &new_case_page(&state, &p, &HashMap::new(), None, None, String::new()).await?,
    ))
}

fn party_names(raw: &str) -> Vec<String> {
    raw.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What the review token stands for: who looked, at which client and parties, and exactly
/// which matches the check showed. Any change (a new party, a new match elsewhere in the firm)
/// gives another token, so the attorney has to look again.
fn review_data(
    p: &Principal,
    client_id: Option<Uuid>,
    parties: &[String],
    matches: &[conflicts::ConflictMatch],
) -> Vec<u8> {
    let mut hits: Vec<(String, String, String, String, i64)> = matches
        .iter()
        .map(|m| {
            (
                m.query.clone(),
                m.name.clone(),
                m.case_number.clone().unwrap_or_default(),
                m.role.clone(),
                (m.similarity * 1000.0).round() as i64,
            )
        })
        .collect();
    hits.sort();
    let parties: Vec<String> = parties
        .iter()
        .map(|n| conflicts::normalize_name(n))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "user": p.user_id, "client": client_id, "parties": parties, "hits": hits,
    }))
    .unwrap_or_default()
}

const REVIEW_PURPOSE: &str = "new-case-conflict-review";

/// Every submit runs the conflict check over the client and the other parties. The matter is
/// opened only when the attorney confirmed the review *and* the signed token of the matches
/// they were shown still fits the matches found now; otherwise the (new) matches are shown
/// again. The matter and its parties are created in one transaction.
pub async fn new_case_submit(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    if !p.is_staff() {
        return Err(Error::NotFound.into());
    }
    let client_id = Uuid::parse_str(&field(&form, "client_id")).ok();
    let parties = party_names(&field(&form, "parties"));
    let mut names = parties.clone();
    if let Some(id) = client_id {
        let known = crate::users::service::names_of(state.db.conn(), &[id]).await?;
        names.extend(known.into_values().map(|(n, _)| n));
    }
    let matches = if names.is_empty() {
        Vec::new()
    } else {
        match conflicts::check(&state, &p, conflicts::ConflictCheck { names }).await {
            Ok(r) => r.matches,
            Err(e) => {
                let Some(why) = readable(&e) else {
                    return Err(e.into());
                };
                let page = new_case_page(&state, &p, &form, Some(why), None, String::new()).await?;
                return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
            }
        }
    };
    let data = review_data(&p, client_id, &parties, &matches);
    let token = state.tokens.form_mac(REVIEW_PURPOSE, &data);
    let rows: Vec<ConflictRow> = matches
        .into_iter()
        .map(|m| ConflictRow {
            query: m.query,
            name: m.name,
            role: m.role.replace('_', " "),
            case_number: m.case_number.unwrap_or_else(|| "—".into()),
            similarity: format!("{:.0}%", m.similarity * 100.0),
        })
        .collect();
    let confirmed = field(&form, "reviewed") == "yes";
    let seen = state
        .tokens
        .verify_form_mac(REVIEW_PURPOSE, &data, &field(&form, "review_token"));
    if !(confirmed && seen) {
        // First submit, or a confirmation of matches that are not the current ones.
        let (status, error) = if confirmed {
            (
                StatusCode::CONFLICT,
                Some(
                    "The conflict check changed since you reviewed it (or was not shown). \
                     Review the current result below, then confirm again."
                        .to_owned(),
                ),
            )
        } else {
            (StatusCode::OK, None)
        };
        let page = new_case_page(&state, &p, &form, error, Some(rows), token).await?;
        return Ok(render_status(status, &page));
    }
    let reviewed = rows.len();
    let description = Some(field(&form, "description")).filter(|d| !d.is_empty());
    let created = crate::cases::service::create_case(
        &state,
        &p,
        crate::cases::service::NewCase {
            title: field(&form, "title"),
            description,
            practice_area: None,
            client_ids: client_id.into_iter().collect(),
            staff_ids: Vec::new(),
            priority: None,
            statute_of_limitations: None,
            parties: parties
                .into_iter()
                .map(|name| members::NewParty {
                    name,
                    kind: "opposing_party".into(),
                })
                .collect(),
            reviewed_conflicts: Some(reviewed),
        },
    )
    .await;
    match created {
        Ok(case) => Ok(see_other(&format!("/cases/{}", case.id))),
        Err(e) => {
            let Some(why) = readable(&e) else {
                return Err(e.into());
            };
            let page = new_case_page(&state, &p, &form, Some(why), Some(rows), token).await?;
            Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Time and invoices from the matter page.

/// `hours` like `1.5` or `1:30`, or `minutes`: whole minutes. The error is a sentence for the
/// page.
pub(super) fn minutes_of(form: &HashMap<String, String>) -> Result<i64, &'static str> {
    const HOW: &str = "Time: enter the time worked, like 1.5 or 1:30.";
    let m = field(form, "minutes");
    if !m.is_empty() {
        return m.parse::<i64>().ok().filter(|m| *m >= 0).ok_or(HOW);
    }
    let h = field(form, "hours");
    if let Some((hh, mm)) = h.split_once(':') {
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(hh) || !digits(mm) || mm.len() > 2 {
            return Err(HOW);
        }
        let (hh, mm) = (
            hh.parse::<i64>().map_err(|_| HOW)?,
            mm.parse::<i64>().map_err(|_| HOW)?,
        );
        if mm >= 60 {
            return Err(
                "Time: the minutes after the colon must be below 60 (1:30 is an hour and a half).",
            );
        }
        return hh
            .checked_mul(60)
            .and_then(|x| x.checked_add(mm))
            .ok_or(HOW);
    }
    h.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0 && *x <= 1_000_000.0)
        .map(|x| (x * 60.0).round() as i64)
        .ok_or(HOW)
}

pub async fn record_time(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let minutes = match minutes_of(&form) {
        Ok(m) => m,
        Err(why) => {
            return super::pages::case_page_with(&state, &p, id, super::pages::Notice::error(why))
                .await;
        }
    };
    // An hourly rate like `250` or `250.50` (empty: the matter's or the timekeeper's rate).
    let rate = field(&form, "rate");
    let rate_cents = if rate.is_empty() {
        None
    } else {
        match rate.parse::<f64>() {
            Ok(r) if r.is_finite() && r >= 0.0 => Some((r * 100.0).round() as i64),
            _ => {
                return super::pages::case_page_with(
                    &state,
                    &p,
                    id,
                    super::pages::Notice::error("Time: the hourly rate is a number, like 250."),
                )
                .await;
            }
        }
    };
    let work_date = NaiveDate::parse_from_str(&field(&form, "work_date"), "%Y-%m-%d")
        .unwrap_or_else(|_| state.config.today());
    let r = crate::billing::time::create_time_entry(
        &state,
        &p,
        id,
        crate::billing::time::NewTimeEntry {
            work_date,
            minutes,
            rate_cents,
            description: field(&form, "description"),
            task_code: None,
            activity_code: None,
            billable: Some(form.contains_key("billable")),
        },
    )
    .await;
    match r {
        Ok(_) => Ok(see_other(&format!("/cases/{id}?done=time#billing"))),
        Err(e) => match readable(&e) {
            Some(why) => {
                super::pages::case_page_with(
                    &state,
                    &p,
                    id,
                    super::pages::Notice::error(format!("Time not recorded. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

pub async fn generate_invoice(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, _) = form_user(&state, req).await?;
    match invoices::create_invoice(
        &state,
        &p,
        invoices::NewInvoice {
            case_id: id,
            through: None,
        },
    )
    .await
    {
        Ok(inv) => Ok(see_other(&format!("/invoices/{}", inv.id))),
        Err(e) => match readable(&e) {
            Some(why) => {
                super::pages::case_page_with(
                    &state,
                    &p,
                    id,
                    super::pages::Notice::error(format!("No invoice generated. {why}")),
                )
                .await
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// One invoice: lines, totals, PDF, send (staff), pay online (client).

pub struct LineRow {
    pub date: String,
    pub description: String,
    pub quantity: String,
    pub amount: String,
}

#[derive(Template)]
#[template(path = "invoice.html")]
struct InvoicePage {
    user: Option<Viewer>,
    csrf: String,
    id: Uuid,
    case_id: Uuid,
    number: String,
    status: String,
    issued: String,
    due: String,
    subtotal: String,
    tax: String,
    total: String,
    paid: String,
    balance: String,
    lines: Vec<LineRow>,
    can_send: bool,
    can_pay: bool,
    notice: Option<String>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct InvoiceQuery {
    checkout: Option<String>,
}

async fn invoice_page(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    notice: Option<String>,
    error: Option<String>,
) -> Result<InvoicePage, PageError> {
    let v = Viewer::load(state, p).await?;
    let read = invoices::read_invoice(state, p, id).await?;
    let inv = &read.view;
    let code = inv.currency.code();
    let open = inv.status.is_open() && inv.balance_cents > 0;
    Ok(InvoicePage {
        csrf: v.csrf.clone(),
        id: inv.id,
        case_id: inv.case_id,
        number: inv.number.clone(),
        status: inv.status.to_string().replace('_', " "),
        issued: day(inv.issued_on),
        due: day(inv.due_on),
        subtotal: money(inv.subtotal_cents, code),
        tax: money(inv.tax_cents, code),
        total: money(inv.total_cents, code),
        paid: money(inv.paid_cents, code),
        balance: money(inv.balance_cents, code),
        lines: inv
            .lines
            .iter()
            .map(|l| LineRow {
                date: day(l.work_date),
                description: l.description.clone(),
                quantity: l
                    .minutes
                    .map(|m| format!("{}:{:02} h", m / 60, m % 60))
                    .unwrap_or_default(),
                amount: money(l.amount_cents, code),
            })
            .collect(),
        can_send: read.issuer && inv.status == InvoiceStatus::Draft,
        // The client pays; a firm member who is a client on this case is one here.
        can_pay: !read.legal_team && open,
        notice,
        error,
        user: Some(v),
    })
}

pub async fn invoice_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<InvoiceQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let notice = match q.checkout.as_deref() {
        Some("success") => Some(
            "Thank you. Your payment is being confirmed; this page updates by itself.".to_owned(),
        ),
        Some("cancel") => Some("The payment was cancelled. Nothing was charged.".to_owned()),
        _ => None,
    };
    Ok(render(&invoice_page(&state, &p, id, notice, None).await?))
}

pub async fn send_invoice(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, _) = form_user(&state, req).await?;
    match invoices::send_invoice(&state, &p, id).await {
        Ok(_) => Ok(see_other(&format!("/invoices/{id}"))),
        Err(e) => match readable(&e) {
            Some(why) => {
                let page = invoice_page(&state, &p, id, None, Some(why)).await?;
                Ok(render_status(StatusCode::CONFLICT, &page))
            }
            None => Err(e.into()),
        },
    }
}

#[derive(Template)]
#[template(path = "continue.html")]
struct ContinuePage {
    user: Option<Viewer>,
    url: String,
}

/// Without JavaScript: the processor's hosted page as a link (the strict CSP's `form-action
/// 'self'` would block a form redirect to another origin). With JavaScript, `portal.js` calls
/// `POST /api/v1/invoices/{id}/checkout` and navigates itself.
pub async fn pay_invoice(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, _) = form_user(&state, req).await?;
    match crate::billing::checkout::checkout(&state, &p, id).await {
        Ok(s) => {
            let v = Viewer::load(&state, &p).await?;
            Ok(render(&ContinuePage {
                user: Some(v),
                url: s.checkout_url,
            }))
        }
        Err(e) => match readable(&e) {
            Some(why) => {
                let page = invoice_page(&state, &p, id, None, Some(why)).await?;
                Ok(render_status(StatusCode::CONFLICT, &page))
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Booking an appointment from free slots, shown in the client's own time zone.

pub struct SlotDay {
    pub day: String,
    pub slots: Vec<SlotButton>,
}

pub struct SlotButton {
    pub starts_at: String,
    pub ends_at: String,
    pub label: String,
}

pub struct AttorneyOption {
    pub id: Uuid,
    pub name: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "book.html")]
struct BookPage {
    user: Option<Viewer>,
    csrf: String,
    case_id: Uuid,
    case_number: String,
    attorneys: Vec<AttorneyOption>,
    attorney_id: Option<Uuid>,
    tz: String,
    days: Vec<SlotDay>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct BookQuery {
    attorney: Option<String>,
}

async fn book_page(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    attorney: Option<Uuid>,
    error: Option<String>,
) -> Result<BookPage, PageError> {
    let v = Viewer::load(state, p).await?;
    let case = crate::cases::service::get_case(state, p, case_id).await?;
    let staff: Vec<_> = case
        .members
        .iter()
        .filter(|m| {
            use crate::cases::domain::MemberRole;
            matches!(m.role, MemberRole::LeadAttorney | MemberRole::Attorney)
        })
        .collect();
    let chosen = attorney
        .filter(|a| staff.iter().any(|m| m.user_id == *a))
        .or_else(|| staff.first().map(|m| m.user_id));
    let mut days: Vec<SlotDay> = Vec::new();
    if let Some(a) = chosen {
        let today = state.config.today();
        let slots = crate::appointments::service::free_slots_for(
            state,
            p,
            a,
            &crate::appointments::service::SlotParams {
                from: Some(today.to_string()),
                to: Some((today + Days::new(15)).to_string()),
                duration_minutes: Some(30),
                ..Default::default()
            },
        )
        .await?;
        for s in slots {
            let local = s.starts_at.with_timezone(&v.tz);
            let label_day = local.format("%A %-d %B %Y").to_string();
            let button = SlotButton {
                starts_at: s.starts_at.to_rfc3339(),
                ends_at: s.ends_at.to_rfc3339(),
                label: format!(
                    "{}–{}",
                    local.format("%H:%M"),
                    s.ends_at.with_timezone(&v.tz).format("%H:%M")
                ),
            };
            match days.last_mut() {
                Some(d) if d.day == label_day => d.slots.push(button),
                _ => days.push(SlotDay {
                    day: label_day,
                    slots: vec![button],
                }),
            }
        }
    }
    Ok(BookPage {
        csrf: v.csrf.clone(),
        case_id,
        case_number: case.number.clone(),
        attorneys: staff
            .iter()
            .map(|m| AttorneyOption {
                id: m.user_id,
                name: m.name.clone(),
                selected: Some(m.user_id) == chosen,
            })
            .collect(),
        attorney_id: chosen,
        tz: v.tz.name().to_owned(),
        days,
        error,
        user: Some(v),
    })
}

pub async fn book_form(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<BookQuery>,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let attorney = q.attorney.as_deref().and_then(|a| Uuid::parse_str(a).ok());
    Ok(render(&book_page(&state, &p, id, attorney, None).await?))
}

#[derive(Template)]
#[template(path = "booked.html")]
struct BookedPage {
    user: Option<Viewer>,
    id: Uuid,
    case_id: Uuid,
    title: String,
    when: String,
    status: String,
}

pub async fn book_submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let case_id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let attorney = Uuid::parse_str(&field(&form, "attorney_id")).ok();
    let Some(attorney_id) = attorney else {
        return Err(Error::NotFound.into());
    };
    let r = crate::appointments::service::create(
        &state,
        &p,
        crate::appointments::service::NewAppointment {
            attorney_id,
            case_id: Some(case_id),
            client_id: (!p.is_staff()).then_some(p.user_id),
            starts_at: field(&form, "starts_at"),
            ends_at: field(&form, "ends_at"),
            title: "Consultation".into(),
            location: None,
            notes: None,
        },
    )
    .await;
    match r {
        Ok(a) => {
            let v = Viewer::load(&state, &p).await?;
            Ok(render(&BookedPage {
                id: a.id,
                case_id,
                title: a.title.clone(),
                when: v.at(a.starts_at),
                status: a.status.to_string(),
                user: Some(v),
            }))
        }
        Err(e) => match readable(&e) {
            Some(why) => {
                let page = book_page(
                    &state,
                    &p,
                    case_id,
                    Some(attorney_id),
                    Some(format!(
                        "That time could not be booked. {why} Please pick another."
                    )),
                )
                .await?;
                Ok(render_status(StatusCode::CONFLICT, &page))
            }
            None => Err(e.into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hours(h: &str) -> Result<i64, &'static str> {
        minutes_of(&HashMap::from([("hours".to_owned(), h.to_owned())]))
    }

    #[test]
    fn minutes_of_reads_hours_and_colons() {
        assert_eq!(hours("1.5"), Ok(90));
        assert_eq!(hours("1:30"), Ok(90));
        assert_eq!(hours("0:05"), Ok(5));
        assert_eq!(hours("2:59"), Ok(179));
        assert_eq!(
            minutes_of(&HashMap::from([("minutes".to_owned(), "45".to_owned())])),
            Ok(45)
        );
    }

    #[test]
    fn minutes_of_refuses_minutes_of_sixty_and_more() {
        for bad in ["1:75", "1:60", "0:99", "1:600"] {
            let e = hours(bad).expect_err(bad);
            assert!(
                e.contains("below 60") || e.contains("like 1.5"),
                "{bad}: {e}"
            );
        }
        assert!(hours("1:75").unwrap_err().contains("below 60"));
    }

    #[test]
    fn minutes_of_refuses_garbage() {
        for bad in [
            "", "abc", "-1:30", "1:-5", ":30", "1:", "1:3x", "-2", "NaN", "inf", "1e300",
        ] {
            assert!(hours(bad).is_err(), "{bad}");
        }
        assert!(minutes_of(&HashMap::from([("minutes".to_owned(), "-5".to_owned())])).is_err());
    }
}
