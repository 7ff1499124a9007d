//! Authentication and the acting principal. Every service function that touches data takes
//! a [`Principal`]; the extractors here are the only way a handler gets one.

pub mod entity;
pub mod password;
pub mod reset;
pub mod routes;
pub mod service;
pub mod throttle;
pub mod token;
pub mod totp;

use axum::{
    extract::FromRequestParts,
    http::{Method, header, request::Parts},
};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{
    AppState,
    audit::{NewEntry, Outcome},
    error::{AuthFailure, Error},
    http::{error::ApiError, extract::RequestMeta},
    users::domain::Role,
};

use service::SessionKey;

pub const SESSION_COOKIE: &str = "lfp_session";
pub const CSRF_COOKIE: &str = "lfp_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Who is acting, with the request facts the audit trail records.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_id: Uuid,
    pub role: Role,
    pub session_id: Option<Uuid>,
    pub meta: RequestMeta,
}

impl Principal {
    /// The operator at the command line: acts as an admin, audited without a user id.
    pub fn system() -> Self {
        Self {
            user_id: Uuid::nil(),
            role: Role::Admin,
            session_id: None,
            meta: RequestMeta::default(),
        }
    }
    pub fn actor_id(&self) -> Option<Uuid> {
        (!self.user_id.is_nil()).then_some(self.user_id)
    }
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    pub fn is_staff(&self) -> bool {
        self.role.is_staff()
    }
    /// Whether the caller is on a handful of cases (a client), so a search is cheapest driven
    /// from their own rows, checking each against the full-text index; staff may be on
    /// thousands, where the set of matches (or a walk in page order) is cheaper.
    pub fn sees_few_cases(&self) -> bool {
        self.role == Role::Client
    }
}

/// Where a cookie-authenticated unsafe request carries its CSRF token.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Csrf {
    /// In the `X-CSRF-Token` header (checked here, with the Origin).
    Header,
    /// In the body: the Origin is checked here, the token by [`PendingCsrf::confirm`].
    Deferred,
}

/// Resolve the caller from a bearer token or the session cookie (with CSRF checks).
async fn authenticate(state: &AppState, parts: &Parts) -> Result<Principal, Error> {
    authenticate_with(state, parts, Csrf::Header).await
}

async fn authenticate_with(
    state: &AppState,
    parts: &Parts,
    csrf: Csrf,
) -> Result<Principal, Error> {
    let meta = RequestMeta::from_parts(parts);
    let invalid = Error::Unauthorized(AuthFailure::InvalidToken);
    let bearer = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());

    let session = if let Some(token) = bearer {
        let claims = state
            .tokens
            .verify(token)
            .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?;
        let s = service::session_with_active_user(&state.db, SessionKey::Id(claims.sid))
            .await?
            .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?;
        if s.user_id != claims.sub {
            return Err(invalid);
        }
        s
    } else {
        let jar = axum_extra::extract::CookieJar::from_headers(&parts.headers);
        let cookie = jar
            .get(SESSION_COOKIE)
            .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?;
        let s = service::session_with_active_user(&state.db, SessionKey::Cookie(cookie.value()))
            .await?
            .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?;
        if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) {
            match csrf {
                Csrf::Header => check_csrf(state, parts, s.session_id)?,
                Csrf::Deferred if !origin_ok(state, parts) => return Err(csrf_refused()),
                Csrf::Deferred => {}
            }
        }
        s
    };
    let now = crate::db::now();
    if session.revoked_at.is_some() || session.expires_at <= now {
        return Err(invalid);
    }
    let role = Role::parse(&session.role).map_err(|e| anyhow::anyhow!("stored role: {e}"))?;
    // Record use at most once a minute, so reads do not turn into writes.
    if now - session.last_used_at > chrono::Duration::seconds(60) {
        service::touch_session(&state.db, session.session_id, now).await?;
    }
    Ok(Principal {
        user_id: session.user_id,
        role,
        session_id: Some(session.session_id),
        meta,
    })
}

/// Cookie-authenticated unsafe requests must come from our own origin and carry the
/// session's CSRF token in a header (a cross-site form can do neither).
fn check_csrf(state: &AppState, parts: &Parts, session_id: Uuid) -> Result<(), Error> {
    let token = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if origin_ok(state, parts) && token_ok(state, session_id, token) {
        Ok(())
    } else {
        Err(csrf_refused())
    }
}

fn origin_ok(state: &AppState, parts: &Parts) -> bool {
    let expected = state.config.public_url.origin().ascii_serialization();
    parts
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|o| o == expected)
}

fn token_ok(state: &AppState, session_id: Uuid, given: &str) -> bool {
    let expected = state.tokens.csrf_token(session_id);
    bool::from(given.as_bytes().ct_eq(expected.as_bytes()))
}

fn csrf_refused() -> Error {
    Error::Forbidden("Cross-site request refused (CSRF check failed).")
}

/// A signed-in multipart form (the upload form without JavaScript), whose CSRF token is a
/// body field: the Origin is checked on extraction, and the caller is only handed over by
/// [`Self::confirm`] with the token, which the handler reads from the first part, before
/// any file byte.
/// Pages are cookie sessions: the token is required whatever else the request carries.
pub struct PendingCsrf {
    principal: Principal,
}

impl PendingCsrf {
    pub fn confirm(self, state: &AppState, given: &str) -> Result<Principal, Error> {
        let ok = self
            .principal
            .session_id
            .is_some_and(|sid| token_ok(state, sid, given.trim()));
        if ok {
            Ok(self.principal)
        } else {
            Err(csrf_refused())
        }
    }
}

impl FromRequestParts<AppState> for PendingCsrf {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate_with(state, parts, Csrf::Deferred).await?;
        Ok(Self { principal })
    }
}

/// Any signed-in user.
pub struct AuthUser(pub Principal);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(Self(p.clone()));
        }
        let p = authenticate(state, parts).await?;
        parts.extensions.insert(p.clone());
        if let Some(slot) = parts.extensions.get::<DeniedSlot>() {
            *slot.0.lock().expect("slot lock") = Some(p.clone());
        }
        Ok(Self(p))
    }
}

/// Refuse a role that may never do this action: 403 (audited centrally, see [`DeniedSlot`]).
async fn require(
    state: &AppState,
    parts: &mut Parts,
    allowed: fn(Role) -> bool,
) -> Result<Principal, ApiError> {
    let AuthUser(p) = AuthUser::from_request_parts(parts, state).await?;
    if allowed(p.role) {
        return Ok(p);
    }
    Err(Error::Forbidden("Your role may not perform this action.").into())
}

/// Filled by [`AuthUser`] so the denial-auditing middleware knows who was refused.
#[derive(Clone, Default)]
pub struct DeniedSlot(pub std::sync::Arc<std::sync::Mutex<Option<Principal>>>);

/// Middleware: every 403, whichever layer produced it, becomes an `auth.denied` audit entry.
pub async fn audit_denials(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let slot = DeniedSlot::default();
    req.extensions_mut().insert(slot.clone());
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_default();
    let method = req.method().clone();
    let meta = RequestMeta::from_request(req.headers(), req.extensions());
    let res = next.run(req).await;
    if res.status() == axum::http::StatusCode::FORBIDDEN {
        let who = slot.0.lock().expect("slot lock").take();
        let mut entry = NewEntry::new("auth.denied", "route")
            .resource(format!("{method} {route}"))
            .outcome(Outcome::Denied);
        entry = match &who {
            Some(p) => entry.by(p),
            None => entry.meta(&meta),
        };
        if let Err(e) = state.audit.record(entry).await {
            tracing::error!(error = %e, "could not audit a denial");
        }
    }
    res
}

/// Admins, attorneys and paralegals.
pub struct StaffUser(pub Principal);

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(state, parts, Role::is_staff).await.map(Self)
    }
}

/// Admins only.
pub struct AdminUser(pub Principal);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        require(state, parts, |r| r == Role::Admin).await.map(Self)
    }
}
