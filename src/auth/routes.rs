//! HTTP handlers for sign-in, tokens, the caller's own account, 2FA and sessions.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use axum_extra::extract::cookie::{Cookie, SameSite};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{AuthUser, CSRF_COOKIE, SESSION_COOKIE, service};
use crate::{
    AppState,
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery, RequestMeta},
        pagination::{Limit, Page, PageParams},
    },
    users::service::{self as users, AcceptInvitation, MePatch, Registration, UserView},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(accept_invitation))
        .routes(routes!(password_reset))
        .routes(routes!(password_reset_confirm))
        .routes(routes!(me, patch_me))
        .routes(routes!(change_password))
        .routes(routes!(totp_setup))
        .routes(routes!(totp_enable))
        .routes(routes!(totp_disable))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    pub email: String,
    #[schema(format = Password)]
    pub password: String,
    pub totp_code: Option<String>,
    /// Web pages: set an HttpOnly session cookie instead of returning tokens.
    #[serde(default)]
    pub cookie: bool,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub user: UserView,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CookieLoginResponse {
    pub user: UserView,
    /// Send back as `X-CSRF-Token` on every unsafe request (also in the `lfp_csrf` cookie).
    pub csrf_token: String,
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Registration,
    responses((status = 201, body = UserView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn register(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(r): ApiJson<Registration>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(users::register(&s, &meta, r).await?),
    ))
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem), (status = 429, body = Problem)))]
async fn login(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(r): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let cookie = r.cookie;
    let issued = service::login(
        &s,
        &meta,
        service::LoginInput {
            email: r.email,
            password: SecretString::from(r.password),
            totp_code: r.totp_code,
            cookie,
        },
    )
    .await?;
    if !cookie {
        return Ok(Json(TokenResponse {
            access_token: issued.access_token,
            token_type: "Bearer",
            expires_in: issued.expires_in,
            refresh_token: issued.secret,
            user: issued.user,
        })
        .into_response());
    }
    let secure = s.config.public_url.scheme() == "https";
    let csrf = s.tokens.csrf_token(issued.session_id);
    let session = Cookie::build((SESSION_COOKIE, issued.secret))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    let csrf_cookie = Cookie::build((CSRF_COOKIE, csrf.clone()))
        .secure(secure)
        .same_site(SameSite::Strict)
        .path("/")
        .build();
    let mut res = Json(CookieLoginResponse {
        user: issued.user,
        csrf_token: csrf,
    })
    .into_response();
    for c in [session, csrf_cookie] {
        res.headers_mut().append(
            header::SET_COOKIE,
            c.to_string().parse().expect("cookie header"),
        );
    }
    Ok(res)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = TokenResponse), (status = 401, body = Problem)))]
async fn refresh(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(r): ApiJson<RefreshRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let issued = service::refresh(&s, &meta, r.refresh_token.trim()).await?;
    Ok(Json(TokenResponse {
        access_token: issued.access_token,
        token_type: "Bearer",
        expires_in: issued.expires_in,
        refresh_token: issued.secret,
        user: issued.user,
    }))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
pub struct LogoutRequest {
    pub refresh_token: Option<String>,
}

#[utoipa::path(post, path = "/auth/logout", tag = "auth", request_body(content = LogoutRequest, description = "optional"),
    responses((status = 204), (status = 400, body = Problem), (status = 401, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn logout(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    body: Bytes,
) -> Result<Response, ApiError> {
    let req: LogoutRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LogoutRequest::default()
    } else {
        // As every JSON body: 400 when it is not JSON, 422 when a field has the wrong type.
        Json::<LogoutRequest>::from_bytes(&body)
            .map_err(crate::http::error::from_json_rejection)?
            .0
    };
    service::logout(&s, &p, req.refresh_token.as_deref()).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        let gone = Cookie::build((name, ""))
            .path("/")
            .max_age(time::Duration::ZERO)
            .build();
        res.headers_mut().append(
            header::SET_COOKIE,
            gone.to_string().parse().expect("cookie header"),
        );
    }
    Ok(res)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordResetRequest {
    pub email: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordResetConfirm {
    /// The `token` of the link in the reset mail.
    pub token: String,
    #[schema(format = Password)]
    pub password: String,
}

/// Mail a one-hour, single-use link to choose a new password (through the mail outbox).
/// The answer is the same whether or not the address has an account.
#[utoipa::path(post, path = "/auth/password-reset", tag = "auth", request_body = PasswordResetRequest,
    responses((status = 202, description = "Accepted; mailed if the address has an active account"),
        (status = 429, body = Problem)))]
async fn password_reset(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(r): ApiJson<PasswordResetRequest>,
) -> Result<StatusCode, ApiError> {
    super::reset::request_reset(&s, &meta, &r.email).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Set a new password with the mailed token; every session of the account ends.
/// An unknown, expired or already used token answers 404.
#[utoipa::path(post, path = "/auth/password-reset/confirm", tag = "auth", request_body = PasswordResetConfirm,
    responses((status = 204, description = "Password changed"), (status = 404, body = Problem),
        (status = 422, body = Problem)))]
async fn password_reset_confirm(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(r): ApiJson<PasswordResetConfirm>,
) -> Result<StatusCode, ApiError> {
    super::reset::reset_password(&s, &meta, &r.token, SecretString::from(r.password)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/auth/accept-invitation", tag = "auth", request_body = AcceptInvitation,
    responses((status = 201, body = UserView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)))]
async fn accept_invitation(
    State(s): State<AppState>,
    meta: RequestMeta,
    ApiJson(a): ApiJson<AcceptInvitation>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(users::accept_invitation(&s, &meta, a).await?),
    ))
}

#[utoipa::path(get, path = "/me", tag = "me", responses((status = 200, body = UserView), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn me(State(s): State<AppState>, AuthUser(p): AuthUser) -> Result<Json<UserView>, ApiError> {
    Ok(Json(users::get_user(&s, &p, p.user_id).await?))
}

#[utoipa::path(patch, path = "/me", tag = "me", request_body = MePatch,
    responses((status = 200, body = UserView), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn patch_me(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(m): ApiJson<MePatch>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(users::update_me(&s, &p, m).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordChange {
    #[schema(format = Password)]
    pub current_password: String,
    #[schema(format = Password)]
    pub new_password: String,
}

#[utoipa::path(post, path = "/me/password", tag = "me", request_body = PasswordChange,
    responses((status = 204), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn change_password(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(c): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    service::change_password(
        &s,
        &p,
        SecretString::from(c.current_password),
        SecretString::from(c.new_password),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/me/totp/setup", tag = "me",
    responses((status = 200, body = service::TotpSetup), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn totp_setup(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> Result<Json<service::TotpSetup>, ApiError> {
    Ok(Json(service::totp_setup(&s, &p).await?))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct TotpCode {
    pub code: String,
}

#[utoipa::path(post, path = "/me/totp/enable", tag = "me", request_body = TotpCode,
    responses((status = 200, body = UserView), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn totp_enable(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(c): ApiJson<TotpCode>,
) -> Result<Json<UserView>, ApiError> {
    service::totp_toggle(&s, &p, &c.code, true).await?;
    Ok(Json(users::get_user(&s, &p, p.user_id).await?))
}

#[utoipa::path(post, path = "/me/totp/disable", tag = "me", request_body = TotpCode,
    responses((status = 200, body = UserView), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn totp_disable(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(c): ApiJson<TotpCode>,
) -> Result<Json<UserView>, ApiError> {
    service::totp_toggle(&s, &p, &c.code, false).await?;
    Ok(Json(users::get_user(&s, &p, p.user_id).await?))
}

#[utoipa::path(get, path = "/me/sessions", tag = "me", params(PageParams),
    responses((status = 200, body = Page<service::SessionView>)), security(("bearer" = [])))]
async fn list_sessions(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Json<Page<service::SessionView>>, ApiError> {
    let limit = Limit::parse(q.limit)?;
    Ok(Json(
        service::list_sessions(&s.db, &p, limit, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(delete, path = "/me/sessions/{id}", tag = "me", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn revoke_session(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    service::revoke_session(&s, &p, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
