//! Server-rendered pages. Handlers are thin: they resolve the principal from the session
//! cookie, call the same service functions as the API, and turn the result into a template.

use std::collections::HashMap;

use askama::Template;
use axum::{
    body::Body,
    extract::{FromRequestParts, Path, Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{Html, IntoResponse, Redirect, Response},
};
use axum_extra::extract::cookie::{Cookie, SameSite};
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use secrecy::SecretString;
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    AppState,
    auth::{AuthUser, CSRF_COOKIE, CSRF_HEADER, Principal, SESSION_COOKIE, service as auth},
    cases::domain::CasePhase,
    error::{AuthFailure, Error},
    http::{extract::RequestMeta, pagination::Limit},
};

/// Largest form body the pages accept (a message is at most 20,000 characters).
const MAX_FORM_BYTES: usize = 256 * 1024;

// ---------------------------------------------------------------------------------------
// Who is looking, and how errors look.

/// The signed-in user as the layout shows them.
pub struct Viewer {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub csrf: String,
    /// Unread messages, for the navigation (one query per page).
    pub unread: i64,
    pub(super) tz: Tz,
}

impl Viewer {
    pub(super) async fn load(state: &AppState, p: &Principal) -> Result<Self, PageError> {
        let (name, timezone) = crate::users::service::name_and_zone_of_active(&state.db, p.user_id)
            .await?
            .ok_or(PageError::SignIn(None))?;
        Ok(Self {
            id: p.user_id,
            name,
            role: p.role.as_str().to_owned(),
            csrf: p
                .session_id
                .map(|s| state.tokens.csrf_token(s))
                .unwrap_or_default(),
            unread: crate::messages::query::unread_total(state.db.conn(), p.user_id).await?,
            // An unknown zone (should not happen: it is validated on write) falls back to UTC.
            tz: timezone.parse().unwrap_or(Tz::UTC),
        })
    }

    /// A timestamp in the viewer's own time zone.
    pub(super) fn at(&self, t: DateTime<Utc>) -> String {
        t.with_timezone(&self.tz)
            .format("%a %-d %b %Y, %H:%M %Z")
            .to_string()
    }

    fn at_str(&self, rfc3339: Option<&str>) -> String {
        rfc3339
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| self.at(t.with_timezone(&Utc)))
            .unwrap_or_default()
    }
}

pub(super) fn day(d: NaiveDate) -> String {
    d.format("%a %-d %b %Y").to_string()
}

/// An amount in minor units as people read it: the currency's own number of decimals
/// (JPY 0, KWD and BHD 3, most 2, from the ISO 4217 table the billing module keeps; 2 for a
/// code it does not know), digits grouped and separated as the reader's language does
/// (`Accept-Language`, see [`super::client::page_locale`]; English by default):
/// `-1,234,567.89 USD`, `1,200 JPY`, in German `1.234,56 EUR`.
pub fn money(cents: i64, code: &str) -> String {
    money_in(cents, code, super::client::page_locale())
}

pub fn money_in(cents: i64, code: &str, locale: num_format::Locale) -> String {
    use num_format::ToFormattedString;
    let exp = crate::billing::money::Currency::parse(code)
        .map(|c| u32::from(c.exponent()))
        .unwrap_or(2);
    let sign = if cents < 0 { locale.minus_sign() } else { "" };
    let c = cents.unsigned_abs();
    let unit = 10u64.pow(exp);
    let whole = (c / unit).to_formatted_string(&locale);
    if exp == 0 {
        format!("{sign}{whole} {code}")
    } else {
        let frac = c % unit;
        let dec = locale.decimal();
        format!(
            "{sign}{whole}{dec}{frac:0width$} {code}",
            width = exp as usize
        )
    }
}

/// Why a page could not be shown.
pub enum PageError {
    /// Not signed in (or the session ended): go to the sign-in page, then come back.
    SignIn(Option<String>),
    /// The address has a query parameter the page cannot read (`?days=abc`): 400.
    BadAddress,
    Service(Error),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unauthorized(_) => Self::SignIn(None),
            e => Self::Service(e),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    user: Option<Viewer>,
    heading: &'a str,
    detail: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let e = match self {
            PageError::SignIn(next) => {
                return Redirect::to(&login_url(next.as_deref())).into_response();
            }
            PageError::BadAddress => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Could not read the address",
                    "The address has a parameter this page cannot read.".to_owned(),
                );
            }
            PageError::Service(e) => e,
        };
        let status = match &e {
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Malformed(_) => StatusCode::BAD_REQUEST,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::StorageFull(_) => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let (heading, detail) = match &e {
            Error::NotFound => (
                "Not found",
                "This page does not exist, or you do not have access to it.".to_owned(),
            ),
            Error::Forbidden(why) => ("Not allowed", (*why).to_owned()),
            Error::Validation(errs) => (
                "Please check your input",
                errs.iter()
                    .map(|f| format!("{}: {}", f.field, f.message))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
            Error::RateLimited { retry_after_secs } => (
                "Too many attempts",
                format!("Please wait {retry_after_secs} seconds and try again."),
            ),
            Error::Conflict(why) => ("Conflict", why.clone()),
            Error::Malformed(why) => ("Could not read the form", (*why).to_owned()),
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "page: database unavailable");
                (
                    "Temporarily unavailable",
                    "The portal cannot reach its database right now. Please try again in a minute."
                        .to_owned(),
                )
            }
            Error::StorageFull(_) => (
                "Storage is full",
                "The firm's document storage is full. Nothing was saved; please tell the firm."
                    .to_owned(),
            ),
            other => {
                tracing::error!(error = %other, "page failed");
                (
                    "Something went wrong",
                    "An unexpected error occurred. Please try again in a moment.".to_owned(),
                )
            }
        };
        error_page(status, heading, detail)
    }
}

/// The portal's error page (no signed-in header: the viewer may not be known).
fn error_page(status: StatusCode, heading: &'static str, detail: String) -> Response {
    render_status(
        status,
        &ErrorPage {
            user: None,
            heading,
            detail,
        },
    )
}

pub(super) fn render_status(status: StatusCode, t: &impl Template) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "Internal error").into_response()
        }
    }
}

pub(super) fn render(t: &impl Template) -> Response {
    render_status(StatusCode::OK, t)
}

/// `next` must stay on this site: a path, never `//host` or a scheme.
pub(super) fn safe_next(next: Option<&str>) -> &str {
    match next {
        // Browsers drop tabs and newlines from URLs, so `/\t/evil` would become `//evil`.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace()) =>
        {
            n
        }
        _ => "/",
    }
}

fn login_url(next: Option<&str>) -> String {
    match next.filter(|n| *n != "/") {
        Some(n) => format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        ),
        None => "/login".to_owned(),
    }
}

/// A signed-in page request (GET): the principal from the session cookie, or a redirect to
/// the sign-in page that comes back here afterwards.
pub struct PageUser(pub Principal);

impl FromRequestParts<AppState> for PageUser {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let next = parts.uri.path_and_query().map(|p| p.as_str().to_owned());
        match AuthUser::from_request_parts(parts, state).await {
            Ok(AuthUser(p)) => Ok(Self(p)),
            Err(_) => Err(PageError::SignIn(next)),
        }
    }
}

/// A page's query string: one it cannot read (`?days=abc`) is the page's own 400, not
/// axum's plain-text rejection.
pub struct PageQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for PageQuery<T> {
    type Rejection = PageError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PageError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(q)) => Ok(Self(q)),
            Err(_) => Err(PageError::BadAddress),
        }
    }
}

/// A signed-in form post: the form's `csrf` field plays the role of the `X-CSRF-Token`
/// header, so the auth module's own check (same Origin + the session's token) applies.
pub(super) async fn form_user(
    state: &AppState,
    req: Request,
) -> Result<(Principal, HashMap<String, String>), PageError> {
    let (mut parts, body) = req.into_parts();
    let form = parse_form(body).await?;
    if let Some(v) = form.get("csrf").and_then(|c| HeaderValue::from_str(c).ok()) {
        parts.headers.insert(CSRF_HEADER, v);
    }
    // Who is asking comes before what is wrong with the form: a stranger learns nothing
    // from a field's error, only that they must sign in.
    match AuthUser::from_request_parts(&mut parts, state).await {
        Ok(AuthUser(p)) => Ok((p, refuse_nul(form)?)),
        Err(e) if e.status() == StatusCode::FORBIDDEN => Err(PageError::Service(Error::Forbidden(
            "This form has expired. Reload the page and try again.",
        ))),
        Err(_) => Err(PageError::SignIn(None)),
    }
}

pub(super) async fn read_form(body: Body) -> Result<HashMap<String, String>, PageError> {
    refuse_nul(parse_form(body).await?)
}

async fn parse_form(body: Body) -> Result<HashMap<String, String>, PageError> {
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| Error::TooLarge("The form is too large.".into()))?;
    Ok(url::form_urlencoded::parse(&bytes).into_owned().collect())
}

/// PostgreSQL cannot store a NUL in text; refuse it here rather than fail at the insert.
fn refuse_nul(form: HashMap<String, String>) -> Result<HashMap<String, String>, PageError> {
    if let Some(k) = form
        .iter()
        .filter(|(_, v)| v.contains('\0'))
        .map(|(k, _)| k)
        .min()
    {
        return Err(Error::invalid(k.clone(), "must not contain NUL characters").into());
    }
    Ok(form)
}

/// The sign-in form has no session yet: it must at least come from our own origin.
pub(super) fn same_origin(state: &AppState, headers: &HeaderMap) -> bool {
    let expected = state.config.public_url.origin().ascii_serialization();
    headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == expected)
}

// ---------------------------------------------------------------------------------------
// Sign in and out.

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    user: Option<Viewer>,
    notice: Option<String>,
    error: Option<String>,
    next: String,
    email: String,
    /// The TOTP step: the signed pending-login ticket (the password is not sent back).
    ticket: String,
    totp_step: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    done: Option<String>,
}

pub async fn login_form(PageQuery(q): PageQuery<NextQuery>) -> Response {
    // Only known confirmations: the query string is never echoed into the page.
    let notice = match q.done.as_deref() {
        Some("reset") => Some("Your password was changed. Sign in with the new one.".to_owned()),
        Some("invited") => {
            Some("Your account is ready. Sign in with your new password.".to_owned())
        }
        _ => None,
    };
    render(&LoginPage {
        user: None,
        notice,
        error: None,
        next: safe_next(q.next.as_deref()).to_owned(),
        email: String::new(),
        ticket: String::new(),
        totp_step: false,
    })
}

pub async fn login_submit(
    State(state): State<AppState>,
    meta: RequestMeta,
    req: Request,
) -> Result<Response, PageError> {
    let headers = req.headers().clone();
    let form = read_form(req.into_body()).await?;
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let next = safe_next(form.get("next").map(String::as_str)).to_owned();
    let mut page = LoginPage {
        user: None,
        notice: None,
        error: None,
        next: next.clone(),
        email: field("email"),
        ticket: String::new(),
        totp_step: false,
    };
    if !same_origin(&state, &headers) {
        page.error = Some("This form has expired. Please sign in again.".into());
        return Ok(render_status(StatusCode::FORBIDDEN, &page));
    }
    let totp_code = form
        .get("totp_code")
        .filter(|c| !c.trim().is_empty())
        .cloned();
    let ticket = form.get("ticket").filter(|t| !t.is_empty()).cloned();
    let result = match (&ticket, &totp_code) {
        // Second step: the signed pending-login ticket stands for the accepted password.
        (Some(t), Some(code)) => auth::login_with_ticket(&state, &meta, t, code).await,
        (Some(_), None) => Err(Error::Unauthorized(AuthFailure::TotpRequired)),
        (None, _) => {
            auth::login(
                &state,
                &meta,
                auth::LoginInput {
                    email: field("email"),
                    password: SecretString::from(field("password")),
                    totp_code: totp_code.clone(),
                    cookie: true,
                },
            )
            .await
        }
    };
    let issued = match result {
        Ok(i) => i,
        Err(Error::Unauthorized(why @ (AuthFailure::TotpRequired | AuthFailure::InvalidTotp))) => {
            // The TOTP step: the page carries a short-lived signed ticket, never the password.
            page.ticket = match ticket {
                Some(t) => t,
                None => {
                    let Some(user) =
                        crate::users::service::find_by_email(&state.db, &field("email")).await?
                    else {
                        return Err(Error::Unauthorized(AuthFailure::InvalidCredentials).into());
                    };
                    auth::pending_login_ticket(&state, &user)?
                }
            };
            page.totp_step = true;
            if matches!(why, AuthFailure::InvalidTotp) || totp_code.is_some() {
                page.error = Some("That code is not valid. Try the current one.".into());
            }
            return Ok(render_status(
                if page.error.is_some() {
                    StatusCode::UNAUTHORIZED
                } else {
                    StatusCode::OK
                },
                &page,
            ));
        }
        Err(Error::Unauthorized(_)) if ticket.is_some() => {
            page.error = Some(
                "The sign-in took too long. Please enter your email and password again.".into(),
            );
            return Ok(render_status(StatusCode::UNAUTHORIZED, &page));
        }
        Err(Error::Unauthorized(_)) => {
            page.error = Some("The email or password is not correct.".into());
            return Ok(render_status(StatusCode::UNAUTHORIZED, &page));
        }
        Err(Error::RateLimited { retry_after_secs }) => {
            page.error = Some(format!(
                "Too many attempts. Please wait {retry_after_secs} seconds and try again."
            ));
            return Ok(render_status(StatusCode::TOO_MANY_REQUESTS, &page));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(signed_in(&state, &issued, &next))
}

/// After a successful sign-in: the session and CSRF cookies, and on to `next`.
pub(super) fn signed_in(state: &AppState, issued: &auth::Issued, next: &str) -> Response {
    let secure = state.config.public_url.scheme() == "https";
    let csrf = state.tokens.csrf_token(issued.session_id);
    let session = Cookie::build((SESSION_COOKIE, issued.secret.clone()))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    let csrf_cookie = Cookie::build((CSRF_COOKIE, csrf))
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    let mut res = Redirect::to(next).into_response();
    for c in [session, csrf_cookie] {
        if let Ok(v) = HeaderValue::from_str(&c.to_string()) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    res
}

pub async fn logout(State(state): State<AppState>, req: Request) -> Result<Response, PageError> {
    let (p, _) = form_user(&state, req).await?;
    auth::logout(&state, &p, None).await?;
    let mut res = Redirect::to("/login").into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let gone = Cookie::build((name, ""))
            .path("/")
            .max_age(time::Duration::ZERO)
            .build();
        if let Ok(v) = HeaderValue::from_str(&gone.to_string()) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------
// Dashboard.

pub struct CaseRow {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub status: String,
    pub phase: String,
    pub phase_step: usize,
    pub phase_max: usize,
}

pub struct DocRow {
    pub id: String,
    pub case_id: String,
    pub title: String,
    pub filename: String,
    pub when: String,
    /// Who sees it, for the legal team's lists ("shared", "internal", "privileged").
    pub confidentiality: String,
}

pub struct DeadlineRow {
    pub case_id: Uuid,
    pub case_number: String,
    pub title: String,
    pub when: String,
    pub kind: String,
}

fn phase_progress(phase: CasePhase) -> (usize, usize) {
    let all = CasePhase::ALL;
    let step = all.iter().position(|p| *p == phase).unwrap_or(0) + 1;
    (step, all.len())
}

fn appointment_line(v: &Viewer, a: &serde_json::Value) -> String {
    let title = a["title"].as_str().unwrap_or("Appointment");
    format!("{} — {}", v.at_str(a["starts_at"].as_str()), title)
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct DashboardPage {
    user: Option<Viewer>,
    name: String,
    staff: bool,
    cases: Vec<CaseRow>,
    unread: i64,
    next_appointment: Option<String>,
    balance: String,
    documents: Vec<DocRow>,
    deadlines: Vec<DeadlineRow>,
    /// More deadlines fall in the next 30 days than the dashboard shows.
    more_deadlines: bool,
    today: Vec<String>,
}

pub async fn dashboard(
    State(state): State<AppState>,
    PageUser(p): PageUser,
) -> Result<Response, PageError> {
    let v = Viewer::load(&state, &p).await?;
    let d = crate::cases::dashboard::dashboard(&state, &p).await?;
    let page = DashboardPage {
        name: v.name.clone(),
        staff: p.is_staff(),
        cases: d
            .cases
            .iter()
            .map(|c| {
                let (phase_step, phase_max) = phase_progress(c.phase);
                CaseRow {
                    id: c.id,
                    number: c.number.clone(),
                    title: c.title.clone(),
                    status: c.status.to_string(),
                    phase: c.phase.to_string(),
                    phase_step,
                    phase_max,
                }
            })
            .collect(),
        unread: d.unread_messages,
        next_appointment: d
            .upcoming_appointments
            .first()
            .map(|a| appointment_line(&v, a)),
        balance: money(d.outstanding_balance_cents, &d.currency),
        documents: d
            .recent_documents
            .iter()
            .map(|x| DocRow {
                id: x["id"].as_str().unwrap_or_default().to_owned(),
                case_id: x["case_id"].as_str().unwrap_or_default().to_owned(),
                title: x["title"].as_str().unwrap_or_default().to_owned(),
                filename: String::new(),
                confidentiality: x["confidentiality"].as_str().unwrap_or_default().to_owned(),
                when: v.at_str(x["created_at"].as_str()),
            })
            .collect(),
        more_deadlines: matches!(d.deadlines_next_cursor, Some(Some(_))),
        deadlines: d
            .deadlines_next_30_days
            .unwrap_or_default()
            .into_iter()
            .map(|x| DeadlineRow {
                case_id: x.case_id,
                case_number: x.case_number,
                title: x.title,
                when: day(x.due_on),
                kind: x.kind.to_string(),
            })
            .collect(),
        today: d
            .todays_appointments
            .unwrap_or_default()
            .iter()
            .map(|a| appointment_line(&v, a))
            .collect(),
        user: Some(v),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------------------------------
// One matter.

pub struct CaseSummary {
    pub id: Uuid,
    pub number: String,
    pub title: String,
    pub description: String,
    pub status: String,
    pub phase: String,
    pub phase_step: usize,
    pub phase_max: usize,
    pub opened: String,
    pub next_deadline: Option<String>,
    pub members: String,
}

pub struct MessageRow {
    pub id: Uuid,
    pub sender: String,
    pub when: String,
    pub body: String,
    /// On the viewer's own messages: who has read it ("Sent" until someone has).
    pub receipt: Option<String>,
}

pub struct TimelineRow {
    pub when: String,
    pub text: String,
}

pub struct InvoiceRow {
    pub id: Uuid,
    pub number: String,
    pub status: String,
    pub due: String,
    pub balance: String,
}

/// A one-off line at the top of the matter page (after a form), or next to the composer.
#[derive(Default)]
pub struct Notice {
    pub message_error: Option<String>,
    pub error: Option<String>,
    pub done: Option<String>,
}

impl Notice {
    pub fn error(why: impl Into<String>) -> Self {
        Self {
            error: Some(why.into()),
            ..Self::default()
        }
    }
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    user: Option<Viewer>,
    csrf: String,
    staff: bool,
    /// May file privileged documents here (an attorney on the case, or an admin).
    attorney: bool,
    c: CaseSummary,
    phases: Vec<String>,
    notice: Notice,
    today: String,
    messages: Vec<MessageRow>,
    /// The cursor of the messages before those shown, if any: only what is shown is marked
    /// read, so older unread messages are reached page by page.
    older_messages: Option<String>,
    /// An earlier page of the thread is shown (a link back to the newest).
    showing_older: bool,
    timeline: Vec<TimelineRow>,
    documents: Vec<DocRow>,
    invoices: Vec<InvoiceRow>,
}

pub(super) fn parse_id(raw: &str) -> Result<Uuid, PageError> {
    // A malformed id is just a page that does not exist.
    Uuid::parse_str(raw).map_err(|_| PageError::Service(Error::NotFound))
}

/// The matter page after a form that failed: the reason on top, status 422.
pub(super) async fn case_page_with(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    notice: Notice,
) -> Result<Response, PageError> {
    let failed = notice.error.is_some() || notice.message_error.is_some();
    let mut res = case_page(state, p, id, notice, true, Thread::Newest).await?;
    if failed {
        *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(res)
}

/// Which page of a matter's thread the matter page shows.
enum Thread<'a> {
    /// The newest 50 messages.
    Newest,
    /// An earlier page (the cursor of the page after it).
    Older(&'a str),
    /// The page that shows this message (a link from the inbox or a search): the newest page
    /// when it is there, else the page whose newest message it is.
    With(Uuid),
}

/// `seen`: someone is looking at the page (not a live refresh of a hidden tab), so the thread
/// shown counts as read.
async fn case_page(
    state: &AppState,
    p: &Principal,
    id: Uuid,
    notice: Notice,
    seen: bool,
    thread: Thread<'_>,
) -> Result<Response, PageError> {
    let v = Viewer::load(state, p).await?;
    let case = crate::cases::service::get_case(state, p, id).await?;
    let page_size = Limit::parse(Some(50))?;
    let timeline = crate::cases::service::timeline(state, p, id, page_size, None).await?;
    use crate::messages::query::{CaseMessagesFilter, case_messages, case_messages_showing};
    let page_of = |cursor: Option<String>| CaseMessagesFilter {
        limit: Some(50),
        cursor,
        ..Default::default()
    };
    let (messages, showing_older) = match thread {
        Thread::Newest => (case_messages(state, p, id, page_of(None)).await?, false),
        Thread::Older(c) => {
            let page = case_messages(state, p, id, page_of(Some(c.to_owned())))
                .await
                .map_err(|e| match e {
                    // Only the cursor can be invalid here: an address the page cannot read.
                    Error::Validation(_) => PageError::BadAddress,
                    e => e.into(),
                })?;
            (page, true)
        }
        Thread::With(m) => case_messages_showing(state, p, id, m, 50).await?,
    };
    let documents = crate::documents::service::list_case_documents(
        state,
        p,
        id,
        crate::documents::service::DocumentFilter {
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let invoices = crate::billing::invoices::list_invoices(
        state,
        p,
        crate::billing::invoices::InvoiceFilter {
            case_id: Some(id),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    // Showing the thread is reading it.
    if seen {
        crate::messages::service::read_shown(state, p, &messages.items).await?;
    }
    let people: Vec<Uuid> = messages
        .items
        .iter()
        .flat_map(|m| std::iter::once(m.sender_id).chain(m.read_by.iter().map(|r| r.user_id)))
        .collect();
    let names = crate::users::service::names_of(state.db.conn(), &people).await?;
    let name_of = |id: &Uuid| {
        names
            .get(id)
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| "Former member".into())
    };
    let (phase_step, phase_max) = phase_progress(case.phase);
    let summary = CaseSummary {
        id: case.id,
        number: case.number.clone(),
        title: case.title.clone(),
        description: case.description.clone(),
        status: case.status.to_string(),
        phase: case.phase.to_string(),
        phase_step,
        phase_max,
        opened: v.at(case.opened_at),
        next_deadline: case
            .next_deadline
            .as_ref()
            .map(|d| format!("{} — {}", day(d.due_on), d.title)),
        members: case
            .members
            .iter()
            .map(|m| format!("{} ({})", m.name, m.role))
            .collect::<Vec<_>>()
            .join(", "),
    };
    // As the services decide (`CaseAccess::is_staff`, `Confidentiality::visible_to`): the
    // legal team's controls show where they work. A staff account that is a client on this
    // matter (a firm member who is also a client) gets the client's page.
    let on_case = case
        .members
        .iter()
        .find(|m| m.user_id == p.user_id)
        .map(|m| m.role);
    let staff = p.is_admin() || (p.is_staff() && on_case.is_some_and(|r| r.is_staff()));
    let attorney =
        crate::documents::domain::Confidentiality::Privileged.visible_to(p.role, on_case);
    let page = CasePage {
        csrf: v.csrf.clone(),
        staff,
        attorney,
        c: summary,
        phases: CasePhase::ALL.iter().map(|p| p.to_string()).collect(),
        notice,
        today: Utc::now().with_timezone(&v.tz).date_naive().to_string(),
        older_messages: messages.next_cursor.clone(),
        showing_older,
        // Oldest first reads like a conversation.
        messages: messages
            .items
            .iter()
            .rev()
            .map(|m| MessageRow {
                id: m.id,
                sender: name_of(&m.sender_id),
                when: v.at(m.created_at),
                body: m.body.clone(),
                receipt: (m.sender_id == p.user_id).then(|| {
                    if m.read_by.is_empty() {
                        "Sent".to_owned()
                    } else {
                        let who: Vec<String> =
                            m.read_by.iter().map(|r| name_of(&r.user_id)).collect();
                        format!("Read by {}", who.join(", "))
                    }
                }),
            })
            .collect(),
        timeline: timeline
            .items
            .iter()
            .map(|t| {
                let mut text = t.kind.to_string().replace('_', " ");
                if let (Some(from), Some(to)) = (&t.from, &t.to) {
                    text.push_str(&format!(": {from} → {to}"));
                } else if let Some(to) = &t.to {
                    text.push_str(&format!(": {to}"));
                }
                if let Some(n) = &t.note {
                    text.push_str(&format!(" — {n}"));
                }
                TimelineRow {
                    when: v.at(t.at),
                    text,
                }
            })
            .collect(),
        documents: documents
            .items
            .iter()
            .map(|d| DocRow {
                id: d.id.to_string(),
                case_id: d.case_id.to_string(),
                title: d.title.clone(),
                filename: d.filename.clone(),
                when: v.at(d.created_at),
                confidentiality: d.confidentiality.to_string(),
            })
            .collect(),
        invoices: invoices
            .items
            .iter()
            .map(|i| InvoiceRow {
                id: i.id,
                number: i.number.clone(),
                status: i.status.to_string().replace('_', " "),
                due: day(i.due_on),
                balance: money(i.balance_cents, i.currency.code()),
            })
            .collect(),
        user: Some(v),
    };
    Ok(render(&page))
}

#[derive(Deserialize)]
pub struct CaseQuery {
    done: Option<String>,
    /// An earlier page of the thread (`next_cursor` of the page after it).
    older: Option<String>,
    /// The page of the thread that shows this message.
    message: Option<String>,
}

pub async fn case_view(
    State(state): State<AppState>,
    PageUser(p): PageUser,
    Path(id): Path<String>,
    PageQuery(q): PageQuery<CaseQuery>,
    headers: axum::http::HeaderMap,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    // Only known confirmations: the query string is never echoed into the page.
    let done = match q.done.as_deref() {
        Some("time") => Some("Time recorded. It goes on the next invoice.".to_owned()),
        _ => None,
    };
    // live.js refreshes the page for every new message; from a tab nobody is looking at that
    // must not send read receipts (it says so with this header).
    let seen = headers
        .get("x-portal-refresh")
        .is_none_or(|v| v.as_bytes() != b"hidden");
    case_page(
        &state,
        &p,
        id,
        Notice {
            done,
            ..Notice::default()
        },
        seen,
        match (
            q.older.as_deref().filter(|c| !c.is_empty()),
            q.message.filter(|m| !m.is_empty()),
        ) {
            (Some(c), _) => Thread::Older(c),
            (None, Some(m)) => {
                Thread::With(Uuid::parse_str(&m).map_err(|_| PageError::BadAddress)?)
            }
            (None, None) => Thread::Newest,
        },
    )
    .await
}

pub async fn send_message(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    let input = crate::messages::service::NewMessage {
        body: form.get("body").cloned().unwrap_or_default(),
        recipient_ids: None,
        attachment_ids: None,
        parent_id: None,
    };
    match crate::messages::service::send(&state, &p, id, input).await {
        Ok(_) => Ok(Redirect::to(&format!("/cases/{id}#messages")).into_response()),
        // A bad body: show the matter again with the reason next to the composer.
        Err(Error::Validation(errs)) => {
            let why = errs
                .iter()
                .map(|f| format!("Message {}.", f.message))
                .collect::<Vec<_>>()
                .join(" ");
            case_page_with(
                &state,
                &p,
                id,
                Notice {
                    message_error: Some(why),
                    ..Notice::default()
                },
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn change_phase(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, PageError> {
    let id = parse_id(&id)?;
    let (p, form) = form_user(&state, req).await?;
    crate::cases::service::change_status(
        &state,
        &p,
        id,
        crate::cases::service::StatusChange {
            phase: form.get("phase").cloned(),
            ..Default::default()
        },
    )
    .await?;
    Ok(Redirect::to(&format!("/cases/{id}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::{money_in, safe_next};
    use num_format::Locale;

    #[test]
    fn money_follows_the_readers_number_format() {
        assert_eq!(money_in(123_456, "EUR", Locale::en), "1,234.56 EUR");
        assert_eq!(money_in(123_456, "EUR", Locale::de), "1.234,56 EUR");
        assert_eq!(money_in(-5, "EUR", Locale::de), "-0,05 EUR");
        assert_eq!(money_in(1_234_567, "KWD", Locale::de), "1.234,567 KWD");
        assert_eq!(money_in(1_200, "JPY", Locale::de), "1.200 JPY");
        // Indian grouping: lakhs and crores.
        assert_eq!(
            money_in(123_456_789, "INR", Locale::en_IN),
            "12,34,567.89 INR"
        );
    }

    #[test]
    fn next_stays_on_this_site() {
        for ok in ["/", "/cases/1", "/messages?q=a%20b"] {
            assert_eq!(safe_next(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /evil.example",
            "https://evil.example",
            "evil",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/");
    }
}
