//! The client-facing and account pages of the portal: messages inbox, documents, invoices,
//! profile (name, time zone, password, two-step verification, sessions), forgotten password
//! and invitation acceptance; plus the firm's branding (name and logo) every page shows.
//! Handlers call the same service functions as the API; the services decide who sees what.

use std::collections::HashMap;

use askama::Template;
use axum::{
    Router,
    extract::{Path, Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
    routing::{get, post},
};
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use super::pages::{
    PageError, PageQuery, PageUser, Viewer, day, form_user, money, parse_id, read_form, render,
    render_status, same_origin, signed_in,
};
use crate::{
    AppState,
    auth::{Principal, service as auth},
    error::Error,
    http::{extract::RequestMeta, pagination::Limit},
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/messages", get(messages_page))
        .route("/documents", get(documents_page))
        .route("/invoices", get(invoices_page))
        .route("/profile", get(profile_page).post(profile_submit))
        .route("/profile/password", post(password_submit))
        .route("/profile/totp/setup", post(totp_setup))
        .route("/profile/totp/enable", post(totp_enable))
        .route("/profile/totp/disable", post(totp_disable))
        .route("/profile/sessions/{id}/revoke", post(session_revoke))
        .route(
            "/profile/sessions/revoke-others",
            post(sessions_revoke_others),
        )
        .route(
            "/cases/{id}/documents/upload",
            post(upload_submit).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/forgot", get(forgot_form).post(forgot_submit))
        .merge(token_pages())
        .route("/static/logo", get(logo))
}

/// Pages whose URL carries a secret (`?token=`): the browser must not send it on in a
/// `Referer`, not even to our own stylesheet (proxies log those).
fn token_pages() -> Router<AppState> {
    Router::new()
        .route("/reset", get(reset_form).post(reset_submit))
        .route("/invitation", get(invitation_form).post(invitation_submit))
        .layer(tower_http::set_header::SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            axum::http::HeaderValue::from_static("no-referrer"),
        ))
}

// ---------------------------------------------------------------------------------------
// Branding and the current page, for the layout.

/// What the layout shows on every page without each page's struct carrying it.
#[derive(Clone)]
struct PageContext {
    firm_name: String,
    logo: bool,
    path: String,
    /// How numbers are written for this reader (from `Accept-Language`).
    locale: num_format::Locale,
}

tokio::task_local! {
    static PAGE: PageContext;
}

/// Middleware around the portal's pages: makes the firm's name, whether it has a logo, and
/// the request path available to the templates while the page renders (per application, so
/// differently configured apps in one process do not mix).
pub async fn page_context(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let ctx = PageContext {
        firm_name: state.config.billing.firm_name.clone(),
        logo: state.config.firm_logo.is_some(),
        path: req.uri().path().to_owned(),
        locale: locale_of(req.headers()),
    };
    PAGE.scope(ctx, next.run(req)).await
}

/// The first language of `Accept-Language` whose number format we know (a regional tag
/// falls back to its language: `de-DE` → `de`); English otherwise. Preference order is the
/// header's order, which browsers already sort by weight.
fn locale_of(headers: &axum::http::HeaderMap) -> num_format::Locale {
    use num_format::Locale;
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .into_iter()
        .flat_map(|s| s.split(','))
        .filter_map(|part| part.split(';').next().map(str::trim))
        .filter(|tag| !tag.is_empty() && *tag != "*")
        .take(8)
        .find_map(|tag| {
            Locale::from_name(tag)
                .ok()
                .or_else(|| Locale::from_name(tag.split('-').next()?).ok())
        })
        .unwrap_or(Locale::en)
}

/// The reader's number format while a page renders (English outside a page).
pub fn page_locale() -> num_format::Locale {
    PAGE.try_with(|c| c.locale)
        .unwrap_or(num_format::Locale::en)
}

/// The firm's name for headers and titles.
pub fn firm_name() -> String {
    PAGE.try_with(|c| c.firm_name.clone())
        .unwrap_or_else(|_| "Law Firm Pro".to_owned())
}

/// Whether `LFP_FIRM_LOGO` is set (the header then shows `/static/logo`).
pub fn has_logo() -> bool {
    PAGE.try_with(|c| c.logo).unwrap_or(false)
}

/// `aria-current="page"` belongs on the navigation link of the section being shown.
pub fn nav_current(section: &str) -> bool {
    PAGE.try_with(|c| {
        let p = c.path.as_str();
        match section {
            "dashboard" => p == "/",
            "matters" => p.starts_with("/cases/"),
            other => p == format!("/{other}") || p.starts_with(&format!("/{other}/")),
        }
    })
    .unwrap_or(false)
}

async fn logo(State(state): State<AppState>) -> Response {
    let Some(l) = &state.config.firm_logo else {
        return StatusCode::NOT_FOUND.into_response();
    };
    (
        [
            (header::CONTENT_TYPE, l.content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            // An SVG opened on its own must not run anything.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; sandbox",
            ),
        ],
        l.bytes.clone(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------
// Shared bits.

/// A list page's query: search text, a cursor, and the unread filter (messages).
#[derive(Deserialize, Default)]
pub struct ListQuery {
    q: Option<String>,
    cursor: Option<String>,
    unread: Option<String>,
    done: Option<String>,
    /// `sent` for the messages the caller wrote; anything else is the received box.
    #[serde(rename = "box")]
    box_: Option<String>,
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Readable text of a validation error (for lines on the page, not a whole error page).
fn why(e: &Error) -> Option<String> {
    match e {
        Error::Validation(errs) => Some(
            errs.iter()
                .map(|f| format!("{} {}.", field_label(&f.field), f.message))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Error::Forbidden(m) => Some((*m).to_owned()),
        Error::Conflict(m) => Some(m.clone()),
        Error::Malformed(m) => Some((*m).to_owned()),
        Error::RateLimited { retry_after_secs } => Some(format!(
            "Too many attempts. Please wait {retry_after_secs} seconds and try again."
        )),
        _ => None,
    }
}

fn field_label(f: &str) -> String {
    match f {
        "q" => "The search".into(),
        "cursor" => "The page link".into(),
        "new_password" | "password" => "The new password".into(),
        "timezone" => "The time zone".into(),
        "code" => "The code".into(),
        "name" => "The name".into(),
        "phone" => "The phone number".into(),
        other => {
            let mut s = other.replace('_', " ");
            if let Some(c) = s.get(0..1) {
                s.replace_range(0..1, &c.to_uppercase());
            }
            s
        }
    }
}

fn status_of(e: &Error) -> StatusCode {
    match e {
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

/// Number and title of the cases rows belong to, in one query.
async fn case_labels(
    state: &AppState,
    p: &Principal,
    ids: impl Iterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>, PageError> {
    let mut ids: Vec<Uuid> = ids.collect();
    ids.sort();
    ids.dedup();
    Ok(crate::cases::service::labels_of(state, p, &ids)
        .await?
        .into_iter()
        .map(|(id, (n, t))| (id, format!("{n} {t}")))
        .collect())
}

// ---------------------------------------------------------------------------------------
// Messages inbox.

pub struct InboxRow {
    pub id: Uuid,
    pub case_id: Uuid,
    pub case: String,
    pub sender: String,
    pub when: String,
    pub excerpt: String,
    pub unread: bool,
}

#[derive(Template)]
#[template(path = "client_messages.html")]
struct MessagesPage {
    user: Option<Viewer>,
    q: String,
    /// The sent box instead of the received one.
    sent: bool,
    unread_only: bool,
    rows: Vec<InboxRow>,
    older: Option<String>,
    error: Option<String>,
    first_page: bool,
}

async fn messages_page(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(f): PageQuery<ListQuery>,
) -> Result<Response, PageError> {
    let v = Viewer::load(&state, &p).await?;
    let q = f.q.clone().unwrap_or_default();
    let sent = f.box_.as_deref() == Some("sent");
    // "Unread" is about messages received: the sent box ignores it.
    let unread_only = !sent && f.unread.as_deref().is_some_and(|u| u == "1" || u == "true");
    let mut page = MessagesPage {
        user: None,
        q: q.clone(),
        sent,
        unread_only,
        rows: Vec::new(),
        older: None,
        error: None,
        first_page: f.cursor.is_none(),
    };
    let result = crate::messages::query::inbox(
        &state,
        &p,
        crate::messages::query::InboxFilter {
            box_: sent.then(|| "sent".to_owned()),
            unread: Some(unread_only),
            q: Some(q.clone()).filter(|s| !s.trim().is_empty()),
            limit: Some(25),
            cursor: f.cursor.clone(),
            ..Default::default()
        },
    )
    .await;
    let list = match result {
        Ok(l) => l,
        Err(e) => match why(&e) {
            Some(w) => {
                page.error = Some(w);
                let status = status_of(&e);
                page.user = Some(v);
                return Ok(render_status(status, &page));
            }
            None => return Err(e.into()),
        },
    };
    let labels = case_labels(&state, &p, list.items.iter().map(|m| m.case_id)).await?;
    let senders: Vec<Uuid> = list.items.iter().map(|m| m.sender_id).collect();
    let names = crate::users::service::names_of(state.db.conn(), &senders).await?;
    page.rows = list
        .items
        .iter()
        .map(|m| {
            let mut excerpt: String = m.body.chars().take(200).collect();
            if m.body.chars().count() > 200 {
                excerpt.push('…');
            }
            InboxRow {
                id: m.id,
                case_id: m.case_id,
                case: labels.get(&m.case_id).cloned().unwrap_or_default(),
                sender: names
                    .get(&m.sender_id)
                    .map(|(n, _)| n.clone())
                    .unwrap_or_else(|| "Former member".into()),
                when: v.at(m.created_at),
                excerpt,
                unread: m.sender_id != p.user_id && m.read_at.is_none(),
            }
        })
        .collect();
    page.older = list.next_cursor.map(|c| {
        let mut url = format!("/messages?cursor={}", enc(&c));
        if !q.trim().is_empty() {
            url.push_str(&format!("&q={}", enc(&q)));
        }
        if unread_only {
            url.push_str("&unread=1");
        }
        if sent {
            url.push_str("&box=sent");
        }
        url
    });
    page.user = Some(v);
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------
// Documents.

pub struct DocumentRow {
    pub id: Uuid,
    pub case_id: Uuid,
    pub case: String,
    pub title: String,
    pub filename: String,
    pub size: String,
    pub when: String,
}

#[derive(Template)]
#[template(path = "client_documents.html")]
struct DocumentsPage {
    user: Option<Viewer>,
    q: String,
    rows: Vec<DocumentRow>,
    older: Option<String>,
    error: Option<String>,
    first_page: bool,
}

fn size_text(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} bytes"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

async fn documents_page(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(f): PageQuery<ListQuery>,
) -> Result<Response, PageError> {
    let v = Viewer::load(&state, &p).await?;
    let q = f.q.clone().unwrap_or_default();
    let mut page = DocumentsPage {
        user: None,
        q: q.clone(),
        rows: Vec::new(),
        older: None,
        error: None,
        first_page: f.cursor.is_none(),
    };
    let result = crate::documents::service::list_visible(
        &state,
        &p,
        crate::documents::service::SearchParams {
            q: Some(q.clone()).filter(|s| !s.trim().is_empty()),
            limit: Some(25),
            cursor: f.cursor.clone(),
        },
    )
    .await;
    let list = match result {
        Ok(l) => l,
        Err(e) => match why(&e) {
            Some(w) => {
                page.error = Some(w);
                let status = status_of(&e);
                page.user = Some(v);
                return Ok(render_status(status, &page));
            }
            None => return Err(e.into()),
        },
    };
    let labels = case_labels(&state, &p, list.items.iter().map(|d| d.case_id)).await?;
    page.rows = list
        .items
        .iter()
        .map(|d| DocumentRow {
            id: d.id,
            case_id: d.case_id,
            case: labels.get(&d.case_id).cloned().unwrap_or_default(),
            title: d.title.clone(),
            filename: d.filename.clone(),
            size: size_text(d.size),
            when: v.at(d.created_at),
        })
        .collect();
    page.older = list.next_cursor.map(|c| {
        let mut url = format!("/documents?cursor={}", enc(&c));
        if !q.trim().is_empty() {
            url.push_str(&format!("&q={}", enc(&q)));
        }
        url
    });
    page.user = Some(v);
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------
// Invoices.

pub struct InvoiceListRow {
    pub id: Uuid,
    pub number: String,
    pub case_id: Uuid,
    pub case: String,
    pub status: String,
    pub due: String,
    pub total: String,
    pub balance: String,
}

#[derive(Template)]
#[template(path = "client_invoices.html")]
struct InvoicesPage {
    user: Option<Viewer>,
    staff: bool,
    rows: Vec<InvoiceListRow>,
    trust: Option<String>,
    older: Option<String>,
    first_page: bool,
}

async fn invoices_page(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(f): PageQuery<ListQuery>,
) -> Result<Response, PageError> {
    let v = Viewer::load(&state, &p).await?;
    let list = crate::billing::invoices::list_invoices(
        &state,
        &p,
        crate::billing::invoices::InvoiceFilter {
            limit: Some(25),
            cursor: f.cursor.clone(),
            ..Default::default()
        },
    )
    .await?;
    // Clients see their own trust balance (as `GET /trust/ledger` shows it to them).
    let trust = if p.is_staff() {
        None
    } else {
        let l = crate::billing::payments::ledger(
            &state,
            &p,
            crate::billing::payments::LedgerFilter {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await?;
        Some(money(l.balance_cents, l.currency.code()))
    };
    let labels = case_labels(&state, &p, list.items.iter().map(|i| i.case_id)).await?;
    let page = InvoicesPage {
        staff: p.is_staff(),
        rows: list
            .items
            .iter()
            .map(|i| InvoiceListRow {
                id: i.id,
                number: i.number.clone(),
                case_id: i.case_id,
                case: labels.get(&i.case_id).cloned().unwrap_or_default(),
                status: i.status.to_string().replace('_', " "),
                due: day(i.due_on),
                total: money(i.total_cents, i.currency.code()),
                balance: money(i.balance_cents, i.currency.code()),
            })
            .collect(),
        trust,
        older: list
            .next_cursor
            .map(|c| format!("/invoices?cursor={}", enc(&c))),
        first_page: f.cursor.is_none(),
        user: Some(v),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------
// Profile: name and time zone, password, two-step verification, sessions.

pub struct SessionRow {
    pub id: Uuid,
    pub device: String,
    pub ip: String,
    pub started: String,
    pub last_used: String,
    pub current: bool,
}

/// A freshly started 2FA setup: the QR code (inline SVG markup) and the secret for typing.
pub struct TotpPending {
    pub qr_svg: String,
    pub secret: String,
}

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage {
    user: Option<Viewer>,
    csrf: String,
    name: String,
    email: String,
    timezone: String,
    zones: Vec<&'static str>,
    totp_enabled: bool,
    totp: Option<TotpPending>,
    sessions: Vec<SessionRow>,
    others: usize,
    done: Option<String>,
    /// Which form the error belongs to (`profile`, `password`, `totp`, `sessions`).
    error_for: String,
    error: Option<String>,
}

#[derive(Default)]
struct ProfileNotice {
    done: Option<String>,
    error_for: &'static str,
    error: Option<String>,
    totp: Option<TotpPending>,
    /// What the person typed into the profile form (kept when it was refused).
    name: Option<String>,
    timezone: Option<String>,
}

async fn profile_render(
    state: &AppState,
    p: &Principal,
    status: StatusCode,
    n: ProfileNotice,
) -> Result<Response, PageError> {
    let v = Viewer::load(state, p).await?;
    let me = crate::users::service::find_active(&state.db, p.user_id)
        .await?
        .ok_or(PageError::SignIn(None))?;
    let sessions = auth::list_sessions(&state.db, p, Limit::parse(Some(100))?, None).await?;
    let sessions: Vec<SessionRow> = sessions
        .items
        .into_iter()
        .map(|s| SessionRow {
            id: s.id,
            device: s
                .device
                .map(|d| d.chars().take(120).collect())
                .unwrap_or_else(|| "Unknown device".into()),
            ip: s.ip.unwrap_or_default(),
            started: v.at(s.created_at),
            last_used: v.at(s.last_used_at),
            current: s.current,
        })
        .collect();
    let page = ProfilePage {
        csrf: v.csrf.clone(),
        name: n.name.unwrap_or(me.name),
        email: me.email,
        timezone: n.timezone.unwrap_or(me.timezone),
        zones: chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect(),
        totp_enabled: me.totp_enabled,
        totp: n.totp,
        others: sessions.iter().filter(|s| !s.current).count(),
        sessions,
        done: n.done,
        error_for: n.error_for.to_owned(),
        error: n.error,
        user: Some(v),
    };
    Ok(render_status(status, &page))
}

async fn profile_page(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    PageQuery(f): PageQuery<ListQuery>,
) -> Result<Response, PageError> {
    // Only known confirmations: the query string is never echoed into the page.
    let done = match f.done.as_deref() {
        Some("profile") => Some("Your profile was saved."),
        Some("password") => Some("Your password was changed. Your other sessions were signed out."),
        Some("totp-on") => Some("Two-step verification is on. Sign-ins now ask for a code."),
        Some("totp-off") => Some("Two-step verification is off."),
        Some("revoked") => Some("That session was signed out."),
        Some("revoked-others") => Some("All your other sessions were signed out."),
        _ => None,
    };
    profile_render(
        &state,
        &p,
        StatusCode::OK,
        ProfileNotice {
            done: done.map(str::to_owned),
            ..Default::default()
        },
    )
    .await
}

/// A form on the profile page failed in a way the person can fix: show why, next to it.
async fn profile_failed(
    state: &AppState,
    p: &Principal,
    e: Error,
    error_for: &'static str,
    mut n: ProfileNotice,
) -> Result<Response, PageError> {
    let Some(w) = why(&e) else {
        return Err(e.into());
    };
    n.error_for = error_for;
    n.error = Some(w);
    profile_render(state, p, status_of(&e), n).await
}

/// A form field as typed: passwords and codes are not trimmed here (unlike `work::field`).
fn field(form: &HashMap<String, String>, k: &str) -> String {
    form.get(k).cloned().unwrap_or_default()
}

async fn profile_submit(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    let patch = crate::users::service::MePatch {
        name: Some(field(&form, "name")),
        phone: None,
        timezone: Some(field(&form, "timezone")),
    };
    match crate::users::service::update_me(&state, &p, patch).await {
        Ok(_) => Ok(Redirect::to("/profile?done=profile").into_response()),
        Err(e) => {
            let n = ProfileNotice {
                name: Some(field(&form, "name")),
                timezone: Some(field(&form, "timezone")),
                ..Default::default()
            };
            profile_failed(&state, &p, e, "profile", n).await
        }
    }
}

async fn password_submit(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    let new = field(&form, "new_password");
    if new != field(&form, "new_password_again") {
        let e = Error::invalid("new_password", "and its repetition differ");
        return profile_failed(&state, &p, e, "password", ProfileNotice::default()).await;
    }
    match auth::change_password(
        &state,
        &p,
        SecretString::from(field(&form, "current_password")),
        SecretString::from(new),
    )
    .await
    {
        Ok(()) => Ok(Redirect::to("/profile?done=password").into_response()),
        Err(e) => profile_failed(&state, &p, e, "password", ProfileNotice::default()).await,
    }
}

/// The otpauth URL as a QR code, as SVG markup to put into the page (an image, not script,
/// so the strict CSP allows it).
fn qr_svg(url: &str) -> Option<String> {
    let code = qrcode::QrCode::new(url.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    let start = svg.find("<svg")?;
    Some(svg[start..].replacen(
        "<svg ",
        r#"<svg role="img" aria-label="QR code for your authenticator app" class="qr" "#,
        1,
    ))
}

async fn totp_setup(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    let current = SecretString::from(form.get("current_password").cloned().unwrap_or_default());
    match auth::totp_setup_confirmed(&state, &p, &current).await {
        Ok(s) => {
            let qr = qr_svg(&s.otpauth_url).ok_or_else(|| {
                Error::Internal(anyhow::anyhow!("otpauth URL too long for a QR code"))
            })?;
            profile_render(
                &state,
                &p,
                StatusCode::OK,
                ProfileNotice {
                    totp: Some(TotpPending {
                        qr_svg: qr,
                        secret: s.secret,
                    }),
                    ..Default::default()
                },
            )
            .await
        }
        Err(e) => profile_failed(&state, &p, e, "totp", ProfileNotice::default()).await,
    }
}

async fn totp_toggle(state: AppState, req: Request, enable: bool) -> Result<Response, PageError> {
    let (p, form) = form_user(&state, req).await?;
    let code: String = field(&form, "code")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    match auth::totp_toggle(&state, &p, &code, enable).await {
        Ok(()) => Ok(Redirect::to(if enable {
            "/profile?done=totp-on"
        } else {
            "/profile?done=totp-off"
        })
        .into_response()),
        Err(e) => profile_failed(&state, &p, e, "totp", ProfileNotice::default()).await,
    }
}

async fn totp_enable(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    totp_toggle(state, req, true).await
}

async fn totp_disable(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    totp_toggle(state, req, false).await
}

async fn session_revoke(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, _) = form_user(&state, req).await?;
    auth::revoke_session(&state, &p, id).await?;
    if Some(id) == p.session_id {
        // Signing out this very session: the cookies are dead now; drop them and start again.
        let mut res = Redirect::to("/login").into_response();
        for name in [crate::auth::SESSION_COOKIE, crate::auth::CSRF_COOKIE] {
            let gone = axum_extra::extract::cookie::Cookie::build((name, ""))
                .path("/")
                .max_age(time::Duration::ZERO)
                .build();
            if let Ok(v) = axum::http::HeaderValue::from_str(&gone.to_string()) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
        return Ok(res);
    }
    Ok(Redirect::to("/profile?done=revoked").into_response())
}

async fn sessions_revoke_others(
    State(state): State<AppState>,
    req: Request,
) -> Result<Response, PageError> {
    let (p, _) = form_user(&state, req).await?;
    // The same service as `DELETE /me/sessions/{id}`, once per other session (each audited).
    let mut cursor = None;
    loop {
        let page =
            auth::list_sessions(&state.db, &p, Limit::parse(Some(100))?, cursor.as_deref()).await?;
        for s in page.items.iter().filter(|s| !s.current) {
            auth::revoke_session(&state, &p, s.id).await?;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    Ok(Redirect::to("/profile?done=revoked-others").into_response())
}

// ---------------------------------------------------------------------------------------
// Forgotten password.

#[derive(Template)]
#[template(path = "forgot.html")]
struct ForgotPage {
    user: Option<Viewer>,
    sent: bool,
    email: String,
    error: Option<String>,
}

async fn forgot_form() -> Response {
    render(&ForgotPage {
        user: None,
        sent: false,
        email: String::new(),
        error: None,
    })
}

async fn forgot_submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    req: Request,
) -> Result<Response, PageError> {
    let headers = req.headers().clone();
    let form = read_form(req.into_body()).await?;
    let email = field(&form, "email").trim().to_owned();
    let mut page = ForgotPage {
        user: None,
        sent: false,
        email: email.clone(),
        error: None,
    };
    if !same_origin(&state, &headers) {
        page.error = Some("This form has expired. Please reload the page and try again.".into());
        return Ok(render_status(StatusCode::FORBIDDEN, &page));
    }
    if email.is_empty() {
        page.error = Some("Please enter the email address you sign in with.".into());
        return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    match crate::auth::reset::request_reset(&state, &meta, &email).await {
        // The same answer whether or not the address has an account.
        Ok(()) => {
            page.sent = true;
            Ok(render(&page))
        }
        Err(e) => match why(&e) {
            Some(w) => {
                page.error = Some(w);
                Ok(render_status(status_of(&e), &page))
            }
            None => Err(e.into()),
        },
    }
}

#[derive(Template)]
#[template(path = "reset.html")]
struct ResetPage {
    user: Option<Viewer>,
    token: String,
    /// The link is unknown, expired or used: no form, a way to ask for a new one instead.
    dead: bool,
    error: Option<String>,
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn reset_form(
    State(state): State<AppState>,
    PageQuery(q): PageQuery<TokenQuery>,
) -> Result<Response, PageError> {
    let token = q.token.unwrap_or_default();
    let dead = match crate::auth::reset::check_token(&state, &token).await {
        Ok(_) => false,
        Err(Error::NotFound) => true,
        Err(e) => return Err(e.into()),
    };
    let page = ResetPage {
        user: None,
        token: if dead { String::new() } else { token },
        dead,
        error: None,
    };
    Ok(render_status(
        if dead {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::OK
        },
        &page,
    ))
}

async fn reset_submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    req: Request,
) -> Result<Response, PageError> {
    let headers = req.headers().clone();
    let form = read_form(req.into_body()).await?;
    let token = field(&form, "token");
    let mut page = ResetPage {
        user: None,
        token: token.clone(),
        dead: false,
        error: None,
    };
    if !same_origin(&state, &headers) {
        page.error = Some("This form has expired. Please reload the page and try again.".into());
        return Ok(render_status(StatusCode::FORBIDDEN, &page));
    }
    let password = field(&form, "password");
    if password != field(&form, "password_again") {
        page.error = Some("The two passwords differ. Please type the same one twice.".into());
        return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    match crate::auth::reset::reset_password(&state, &meta, &token, SecretString::from(password))
        .await
    {
        Ok(()) => Ok(Redirect::to("/login?done=reset").into_response()),
        Err(Error::NotFound) => {
            page.dead = true;
            page.token.clear();
            Ok(render_status(StatusCode::NOT_FOUND, &page))
        }
        Err(e) => match why(&e) {
            Some(w) => {
                page.error = Some(w);
                Ok(render_status(status_of(&e), &page))
            }
            None => Err(e.into()),
        },
    }
}

// ---------------------------------------------------------------------------------------
// Accepting an invitation.

#[derive(Template)]
#[template(path = "invitation.html")]
struct InvitationPage {
    user: Option<Viewer>,
    token: String,
    name: String,
    timezone: String,
    zones: Vec<&'static str>,
    dead: bool,
    error: Option<String>,
}

fn invitation_page(token: String) -> InvitationPage {
    InvitationPage {
        user: None,
        token,
        name: String::new(),
        timezone: "UTC".into(),
        zones: chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect(),
        dead: false,
        error: None,
    }
}

async fn invitation_form(
    State(state): State<AppState>,
    PageQuery(q): PageQuery<TokenQuery>,
) -> Result<Response, PageError> {
    let token = q.token.unwrap_or_default();
    let mut page = invitation_page(token.trim().to_owned());
    if page.token.is_empty()
        || !crate::users::service::invitation_is_open(&state, &page.token).await?
    {
        page.dead = true;
        page.token.clear();
        return Ok(render_status(StatusCode::NOT_FOUND, &page));
    }
    Ok(render(&page))
}

async fn invitation_submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    req: Request,
) -> Result<Response, PageError> {
    let headers = req.headers().clone();
    let form = read_form(req.into_body()).await?;
    let mut page = invitation_page(field(&form, "token"));
    page.name = field(&form, "name");
    page.timezone = field(&form, "timezone");
    if !same_origin(&state, &headers) {
        page.error = Some("This form has expired. Please reload the page and try again.".into());
        return Ok(render_status(StatusCode::FORBIDDEN, &page));
    }
    let password = field(&form, "password");
    if password != field(&form, "password_again") {
        page.error = Some("The two passwords differ. Please type the same one twice.".into());
        return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let tz = crate::users::domain::TimeZoneName::parse(&page.timezone);
    if tz.is_err() {
        page.error = Some("Please choose a time zone from the list.".into());
        return Ok(render_status(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let accepted = crate::users::service::accept_invitation(
        &state,
        &meta,
        crate::users::service::AcceptInvitation {
            token: page.token.clone(),
            email: None,
            name: page.name.clone(),
            password: password.clone(),
        },
    )
    .await;
    let user = match accepted {
        Ok(u) => u,
        Err(Error::NotFound) => {
            page.dead = true;
            return Ok(render_status(StatusCode::NOT_FOUND, &page));
        }
        Err(e) => match why(&e) {
            Some(w) => {
                page.error = Some(w);
                return Ok(render_status(status_of(&e), &page));
            }
            None => return Err(e.into()),
        },
    };
    // Signed in at once with the password just chosen, then the chosen time zone is saved.
    let issued = auth::login(
        &state,
        &meta,
        auth::LoginInput {
            email: user.email.clone(),
            password: SecretString::from(password),
            totp_code: None,
            cookie: true,
        },
    )
    .await;
    let Ok(issued) = issued else {
        return Ok(Redirect::to("/login?done=invited").into_response());
    };
    let p = Principal {
        user_id: issued.user.id,
        role: issued.user.role,
        session_id: Some(issued.session_id),
        meta: meta.clone(),
    };
    crate::users::service::update_me(
        &state,
        &p,
        crate::users::service::MePatch {
            timezone: Some(page.timezone.clone()),
            ..Default::default()
        },
    )
    .await?;
    Ok(signed_in(&state, &issued, "/"))
}

// ---------------------------------------------------------------------------------------
// Uploading without JavaScript.

fn form_expired() -> PageError {
    PageError::Service(Error::Forbidden(
        "This form has expired. Reload the page and try again.",
    ))
}

/// The matter page's upload form when JavaScript is off (with it, portal.js posts to the
/// API with a progress bar). The CSRF token must be the form's first part, so it is checked
/// before a byte of the file is read; the file streams into the store like an API upload.
async fn upload_submit(
    State(state): State<AppState>,
    Path(id): Path<String>,
    pending: Result<crate::auth::PendingCsrf, crate::http::error::ApiError>,
    mp: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, PageError> {
    use crate::documents::{routes as docs, service as documents};
    let id = parse_id(&id)?;
    let pending = pending.map_err(|e| match e.status() {
        StatusCode::FORBIDDEN => form_expired(),
        _ => PageError::SignIn(None),
    })?;
    let mut mp = mp.map_err(|_| Error::invalid("file", "send the form as multipart/form-data"))?;
    let token = match mp.next_field().await {
        Ok(Some(f)) if f.name() == Some("csrf") => docs::text_field(f, "csrf").await?,
        _ => String::new(),
    };
    let p = pending
        .confirm(&state, &token)
        .map_err(|_| form_expired())?;
    documents::precheck_upload(&state, &p, id, None).await?;
    let (title, confidentiality, file) = docs::read_form(&state, &mut mp, |c| {
        let (s, p) = (state.clone(), p.clone());
        async move { documents::precheck_upload(&s, &p, id, c.as_deref()).await }
    })
    .await?;
    let file = file.ok_or_else(|| Error::invalid("file", "choose a file to upload"))?;
    documents::create_document(
        &state,
        &p,
        id,
        documents::NewDocument {
            title: title.filter(|t| !t.trim().is_empty()),
            confidentiality,
            file,
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/cases/{id}#documents")).into_response())
}
