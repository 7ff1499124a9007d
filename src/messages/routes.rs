//! HTTP handlers for messages. Each parses, calls one service function, maps the result.

use axum::{Json, extract::State, http::StatusCode};
use serde::Deserialize;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    query::{self, CaseMessagesFilter, InboxFilter, MessageStats, UnreadCount},
    service::{self, MessageView, NewMessage},
};
use crate::{
    AppState,
    auth::AuthUser,
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery},
        pagination::Page,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(case_messages, send_message))
        .routes(routes!(inbox))
        .routes(routes!(unread_count))
        .routes(routes!(message_stats))
        .routes(routes!(get_message, delete_message))
        .routes(routes!(mark_read))
        .routes(routes!(mark_read_bulk))
        .routes(routes!(bulk_delete))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// A list of message ids (at most 500) for bulk actions.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIds {
    pub ids: Vec<Uuid>,
}

#[utoipa::path(post, path = "/cases/{id}/messages", tag = "messages", params(("id" = Uuid, Path)), request_body = NewMessage,
    responses((status = 201, body = MessageView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)), security(("bearer" = [])))]
async fn send_message(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(m): ApiJson<NewMessage>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(service::send(&s, &p, id, m).await?),
    ))
}

#[utoipa::path(get, path = "/cases/{id}/messages", tag = "messages", params(("id" = Uuid, Path), CaseMessagesFilter),
    responses((status = 200, body = Page<MessageView>), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn case_messages(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(f): ApiQuery<CaseMessagesFilter>,
) -> ApiResult<Page<MessageView>> {
    Ok(Json(query::case_messages(&s, &p, id, f).await?))
}

#[utoipa::path(get, path = "/messages", tag = "messages", params(InboxFilter),
    responses((status = 200, body = Page<MessageView>), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn inbox(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(f): ApiQuery<InboxFilter>,
) -> ApiResult<Page<MessageView>> {
    Ok(Json(query::inbox(&s, &p, f).await?))
}

#[utoipa::path(get, path = "/messages/unread-count", tag = "messages",
    responses((status = 200, body = UnreadCount)), security(("bearer" = [])))]
async fn unread_count(State(s): State<AppState>, AuthUser(p): AuthUser) -> ApiResult<UnreadCount> {
    Ok(Json(query::unread_count(&s, &p).await?))
}

#[utoipa::path(get, path = "/messages/stats", tag = "messages",
    responses((status = 200, body = MessageStats)), security(("bearer" = [])))]
async fn message_stats(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
) -> ApiResult<MessageStats> {
    Ok(Json(query::stats(&s, &p).await?))
}

#[utoipa::path(get, path = "/messages/{id}", tag = "messages", params(("id" = Uuid, Path)),
    responses((status = 200, body = MessageView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_message(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<MessageView> {
    Ok(Json(service::get(&s, &p, id).await?))
}

#[utoipa::path(delete, path = "/messages/{id}", tag = "messages", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_message(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    service::hide(&s, &p, &[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/messages/{id}/read", tag = "messages", params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn mark_read(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, ApiError> {
    service::mark_read(&s, &p, &[id]).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/messages/read", tag = "messages", request_body = MessageIds,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn mark_read_bulk(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<MessageIds>,
) -> Result<StatusCode, ApiError> {
    service::mark_read(&s, &p, &b.ids).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/messages/bulk-delete", tag = "messages", request_body = MessageIds,
    responses((status = 204), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn bulk_delete(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(b): ApiJson<MessageIds>,
) -> Result<StatusCode, ApiError> {
    service::hide(&s, &p, &b.ids).await?;
    Ok(StatusCode::NO_CONTENT)
}
