//! HTTP handlers for availability, slots, appointments and calendars. Thin: parse, call one
//! service function, map the result.

use axum::{
    Json,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    calendar::{self, FeedToken},
    service::{
        self, AppointmentPatch, AppointmentView, AvailabilityDoc, BusyView, ListParams,
        NewAppointment, NewBusy, RangeParams, Slot, SlotParams,
    },
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
        .routes(routes!(get_availability, put_availability))
        .routes(routes!(list_busy, add_busy))
        .routes(routes!(delete_busy))
        .routes(routes!(slots))
        .routes(routes!(list_appointments, create_appointment))
        .routes(routes!(get_appointment, patch_appointment))
        .routes(routes!(cancel_appointment))
        .routes(routes!(confirm_appointment))
        .routes(routes!(complete_appointment))
        .routes(routes!(appointment_ics))
        .routes(routes!(feed_token))
}

/// The feed lives outside `/api/v1`: calendar programs fetch it with no auth header.
pub fn feed_router() -> axum::Router<AppState> {
    axum::Router::new().route("/calendar/feed/{file}", axum::routing::get(feed))
}

type ApiResult<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

fn ics_response(body: String, filename: &str) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/calendar; charset=utf-8".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/users/{id}/availability", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, body = AvailabilityDoc), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_availability(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<AvailabilityDoc> {
    Ok(Json(service::get_availability(&s, &p, id).await?))
}

#[utoipa::path(put, path = "/users/{id}/availability", tag = "appointments", params(("id" = Uuid, Path)), request_body = AvailabilityDoc,
    responses((status = 200, body = AvailabilityDoc), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn put_availability(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(doc): ApiJson<AvailabilityDoc>,
) -> ApiResult<AvailabilityDoc> {
    Ok(Json(service::put_availability(&s, &p, id, doc).await?))
}

#[utoipa::path(get, path = "/users/{id}/busy", tag = "appointments", params(("id" = Uuid, Path), RangeParams),
    responses((status = 200, body = Page<BusyView>), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_busy(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<RangeParams>,
) -> ApiResult<Page<BusyView>> {
    Ok(Json(service::list_busy(&s, &p, id, q).await?))
}

#[utoipa::path(post, path = "/users/{id}/busy", tag = "appointments", params(("id" = Uuid, Path)), request_body = NewBusy,
    responses((status = 201, body = BusyView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_busy(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewBusy>,
) -> Created<BusyView> {
    Ok((
        StatusCode::CREATED,
        Json(service::add_busy(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(delete, path = "/users/{id}/busy/{busy_id}", tag = "appointments", params(("id" = Uuid, Path), ("busy_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn delete_busy(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, busy_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    service::delete_busy(&s, &p, id, busy_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/users/{id}/slots", tag = "appointments", params(("id" = Uuid, Path), SlotParams),
    responses((status = 200, body = Page<Slot>), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn slots(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<SlotParams>,
) -> ApiResult<Page<Slot>> {
    Ok(Json(service::slots(&s, &p, id, q).await?))
}

#[utoipa::path(get, path = "/appointments", tag = "appointments", params(ListParams),
    responses((status = 200, body = Page<AppointmentView>), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_appointments(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<ListParams>,
) -> ApiResult<Page<AppointmentView>> {
    Ok(Json(service::list(&s, &p, q).await?))
}

#[utoipa::path(post, path = "/appointments", tag = "appointments", request_body = NewAppointment,
    responses((status = 201, body = AppointmentView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(n): ApiJson<NewAppointment>,
) -> Created<AppointmentView> {
    Ok((StatusCode::CREATED, Json(service::create(&s, &p, n).await?)))
}

#[utoipa::path(get, path = "/appointments/{id}", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, body = AppointmentView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<AppointmentView> {
    Ok(Json(service::get(&s, &p, id).await?))
}

#[utoipa::path(patch, path = "/appointments/{id}", tag = "appointments", params(("id" = Uuid, Path)), request_body = AppointmentPatch,
    responses((status = 200, body = AppointmentView), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn patch_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<AppointmentPatch>,
) -> ApiResult<AppointmentView> {
    Ok(Json(service::patch(&s, &p, id, b).await?))
}

#[utoipa::path(post, path = "/appointments/{id}/cancel", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, body = AppointmentView), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn cancel_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<AppointmentView> {
    Ok(Json(service::cancel(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/appointments/{id}/confirm", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, body = AppointmentView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn confirm_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<AppointmentView> {
    Ok(Json(service::confirm(&s, &p, id).await?))
}

#[utoipa::path(post, path = "/appointments/{id}/complete", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, body = AppointmentView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn complete_appointment(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<AppointmentView> {
    Ok(Json(service::complete(&s, &p, id).await?))
}

#[utoipa::path(get, path = "/appointments/{id}/ics", tag = "appointments", params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn appointment_ics(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Response, ApiError> {
    let body = service::ics(&s, &p, id).await?;
    Ok(ics_response(body, "appointment.ics"))
}

#[utoipa::path(post, path = "/calendar/feed-token", tag = "appointments",
    responses((status = 201, body = FeedToken)), security(("bearer" = [])))]
async fn feed_token(State(s): State<AppState>, AuthUser(p): AuthUser) -> Created<FeedToken> {
    Ok((
        StatusCode::CREATED,
        Json(calendar::rotate_feed_token(&s, &p).await?),
    ))
}

async fn feed(State(s): State<AppState>, Path(file): Path<String>) -> Result<Response, ApiError> {
    let token = file
        .strip_suffix(".ics")
        .filter(|t| !t.is_empty() && t.len() <= 100)
        .ok_or(crate::error::Error::NotFound)?;
    Ok(ics_response(
        calendar::feed(&s, token).await?,
        "calendar.ics",
    ))
}
