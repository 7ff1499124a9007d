//! HTTP handlers for reading and verifying the audit trail.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::service::{self, AuditEntry, AuditFilter, VerifyReport};
use crate::{
    AppState,
    auth::{AdminUser, AuthUser},
    http::{
        error::{ApiError, Problem},
        extract::ApiQuery,
        pagination::{Limit, Page, PageParams},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(verify))
        .routes(routes!(my_activity))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    pub actor_id: Option<Uuid>,
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    /// Only entries about this case.
    pub case_id: Option<Uuid>,
    pub outcome: Option<String>,
    /// RFC 3339, inclusive.
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339, exclusive.
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let limit = Limit::parse(q.limit)?;
    let f = AuditFilter {
        actor_id: q.actor_id,
        action: q.action,
        resource_type: q.resource_type,
        resource_id: q.resource_id,
        case_id: q.case_id,
        outcome: q.outcome,
        from: q.from,
        to: q.to,
    };
    Ok(Json(
        service::list(&s.db, &s.audit, &p, f, limit, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(get, path = "/audit/verify", tag = "audit",
    responses((status = 200, body = VerifyReport), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn verify(
    State(s): State<AppState>,
    AdminUser(p): AdminUser,
) -> Result<Json<VerifyReport>, ApiError> {
    Ok(Json(service::verify(&s.db, &s.audit, &p).await?))
}

#[utoipa::path(get, path = "/me/activity", tag = "me", params(PageParams),
    responses((status = 200, body = Page<AuditEntry>)), security(("bearer" = [])))]
async fn my_activity(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Json<Page<AuditEntry>>, ApiError> {
    let limit = Limit::parse(q.limit)?;
    Ok(Json(
        service::my_activity(&s.db, &s.audit, &p, limit, q.cursor.as_deref()).await?,
    ))
}
