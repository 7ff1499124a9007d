//! `POST /ws-ticket` and `GET /ws`: authenticate, then hand the socket to [`super::socket::run`].

use axum::{
    Json,
    extract::{FromRequestParts, Request, State, ws::WebSocketUpgrade},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::Duration;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{hub::Refused, socket};
use crate::{
    AppState,
    auth::{AuthUser, Principal, SESSION_COOKIE},
    crypto::{random_token, token_hash},
    error::{AuthFailure, Error},
    http::{
        error::{ApiError, Problem},
        extract::RequestMeta,
    },
    users::domain::Role,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ws_ticket))
        .routes(routes!(ws))
}

pub mod ticket {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ws_ticket")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub token_hash: String,
        pub user_id: Uuid,
        pub session_id: Uuid,
        pub expires_at: DateTimeUtc,
        pub used_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub const TICKET_TTL_SECS: i64 = 30;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Ticket {
    /// Pass as `/api/v1/ws?ticket=…` within 30 seconds; it works once.
    pub ticket: String,
    pub expires_in: i64,
}

#[utoipa::path(post, path = "/ws-ticket", tag = "live",
    responses((status = 201, body = Ticket), (status = 401, body = Problem)), security(("bearer" = [])))]
async fn ws_ticket(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> Result<(StatusCode, Json<Ticket>), ApiError> {
    let token = random_token();
    let txn = s.db.begin_write().await?;
    // Housekeeping: tickets are useless a minute after issue.
    ticket::Entity::delete_many()
        .filter(ticket::Column::ExpiresAt.lt(crate::db::now() - Duration::minutes(1)))
        .exec(&*txn)
        .await?;
    ticket::ActiveModel {
        token_hash: Set(token_hash(&token)),
        user_id: Set(p.user_id),
        session_id: Set(p
            .session_id
            .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?),
        expires_at: Set(crate::db::now() + Duration::seconds(TICKET_TTL_SECS)),
        used_at: Set(None),
    }
    .insert(&*txn)
    .await?;
    txn.commit().await?;
    Ok((
        StatusCode::CREATED,
        Json(Ticket {
            ticket: token,
            expires_in: TICKET_TTL_SECS,
        }),
    ))
}

/// Spend a ticket (once, before expiry) and return who it was for.
async fn redeem(s: &AppState, raw: &str, meta: RequestMeta) -> Result<Principal, Error> {
    let invalid = Error::Unauthorized(AuthFailure::InvalidToken);
    let hash = token_hash(raw);
    let txn = s.db.begin_write().await?;
    let claimed = ticket::Entity::update_many()
        .col_expr(ticket::Column::UsedAt, Expr::value(crate::db::now()))
        .filter(ticket::Column::TokenHash.eq(hash.clone()))
        .filter(ticket::Column::UsedAt.is_null())
        .filter(ticket::Column::ExpiresAt.gt(crate::db::now()))
        .exec(&*txn)
        .await?
        .rows_affected
        == 1;
    let row = ticket::Entity::find_by_id(hash).one(&*txn).await?;
    txn.commit().await?;
    let Some(t) = row.filter(|_| claimed) else {
        return Err(invalid);
    };
    let sess = crate::auth::service::find_session(&s.db, t.session_id)
        .await?
        .ok_or(Error::Unauthorized(AuthFailure::InvalidToken))?;
    if sess.revoked_at.is_some() || sess.expires_at <= crate::db::now() {
        return Err(invalid);
    }
    let user = crate::users::service::find_active(&s.db, t.user_id)
        .await?
        .ok_or(invalid)?;
    let role = Role::parse(&user.role).map_err(|e| anyhow::anyhow!("stored role: {e}"))?;
    Ok(Principal {
        user_id: user.id,
        role,
        session_id: Some(sess.id),
        meta,
    })
}

#[utoipa::path(get, path = "/ws", tag = "live",
    params(("ticket" = Option<String>, Query, description = "single-use ticket from POST /ws-ticket")),
    description = "WebSocket upgrade. Authenticate with `?ticket=` (from `POST /ws-ticket`), the page's session cookie (same Origin only) or a bearer header. Server frames: `{id,type,case_id,at,data}`; client frames: `{type:resume,after}`, `{type:subscribe|unsubscribe,case_id}`, `{type:ping}`.",
    responses((status = 101, description = "Switching protocols"), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 429, body = Problem)))]
async fn ws(State(s): State<AppState>, req: Request) -> Result<Response, ApiError> {
    let (mut parts, _) = req.into_parts();
    let meta = RequestMeta::from_parts(&parts);
    let ticket = parts.uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ticket")
            .map(|(_, v)| v.into_owned())
    });
    let not_upgrade = |r: axum::extract::ws::rejection::WebSocketUpgradeRejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Not a WebSocket upgrade: {}", r.body_text()),
        )
    };
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &s).await;
    let p = match ticket {
        // A single-use ticket is spent only on a request that can become a socket.
        Some(t) => {
            if let Err(r) = upgrade {
                return Err(not_upgrade(r));
            }
            redeem(&s, &t, meta).await?
        }
        None => {
            let bearer = parts.headers.contains_key(header::AUTHORIZATION);
            let cookie = axum_extra::extract::CookieJar::from_headers(&parts.headers)
                .get(SESSION_COOKIE)
                .is_some();
            // A cookie rides along on cross-site upgrades: only our own pages may use it.
            if cookie && !bearer {
                let expected = s.config.public_url.origin().ascii_serialization();
                let origin_ok = parts
                    .headers
                    .get(header::ORIGIN)
                    .and_then(|v| v.to_str().ok())
                    == Some(expected.as_str());
                if !origin_ok {
                    return Err(Error::Forbidden("Cross-site WebSocket refused.").into());
                }
            }
            AuthUser::from_request_parts(&mut parts, &s).await?.0
        }
    };
    let upgrade = upgrade.map_err(not_upgrade)?;
    let (conn_id, rx, cases) = s
        .hub
        .register(p.user_id, p.role, p.meta.ip.clone())
        .map_err(|r| {
            ApiError::from(Error::RateLimited {
                retry_after_secs: 30,
            })
            .with_detail(match r {
                Refused::TooManyForUser => "Too many live connections for this account.",
                Refused::TooManyForIp => "Too many live connections from this address.",
            })
        })?;
    let state = s.clone();
    let user_id: Uuid = p.user_id;
    Ok(upgrade
        .max_message_size(64 * 1024)
        // Frames are small JSON: tungstenite's 128 KiB default read buffer per socket would
        // dominate memory at thousands of connections.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(4 * 1024)
        .max_write_buffer_size(1024 * 1024)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = futures::StreamExt::split(socket);
            let shutdown = state.shutdown.subscribe();
            let hub = state.hub.clone();
            socket::run(
                sink,
                stream,
                socket::Connection {
                    state,
                    user_id,
                    role: p.role,
                    session_id: p.session_id,
                    rx,
                    cases,
                    shutdown,
                },
            )
            .await;
            hub.unregister(user_id, conn_id);
        })
        .into_response())
}
