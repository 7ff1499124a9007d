//! HTTP handlers for the user directory, administration and invitations.

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::service::{
    self, InvitationCreated, InvitationInput, NewUser, UserFilter, UserPatch, UserView,
};
use crate::{
    AppState,
    auth::{AdminUser, AuthUser, StaffUser},
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery},
        pagination::Page,
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(create_invitation))
}

#[utoipa::path(get, path = "/users", tag = "users", params(UserFilter),
    responses((status = 200, body = Page<UserView>), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_users(
    State(s): State<AppState>,
    StaffUser(p): StaffUser,
    ApiQuery(f): ApiQuery<UserFilter>,
) -> Result<Json<Page<UserView>>, ApiError> {
    Ok(Json(service::list_users(&s, &p, f).await?))
}

#[utoipa::path(post, path = "/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserView), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_user(
    State(s): State<AppState>,
    AdminUser(p): AdminUser,
    ApiJson(u): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(service::create_user(&s, &p, u).await?),
    ))
}

#[utoipa::path(get, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)),
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_user(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(service::get_user(&s, &p, id).await?))
}

#[utoipa::path(patch, path = "/users/{id}", tag = "users", params(("id" = Uuid, Path)), request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_user(
    State(s): State<AppState>,
    AdminUser(p): AdminUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<UserPatch>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(service::update_user(&s, &p, id, patch).await?))
}

#[utoipa::path(post, path = "/invitations", tag = "users", request_body = InvitationInput,
    responses((status = 201, body = InvitationCreated), (status = 403, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_invitation(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(i): ApiJson<InvitationInput>,
) -> Result<(StatusCode, Json<InvitationCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(service::create_invitation(&s, &p, i).await?),
    ))
}
