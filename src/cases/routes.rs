//! HTTP handlers for cases. Each parses, calls one service function, maps the result.

use axum::{Json, extract::State, http::StatusCode};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{
    conflicts::{self, ConflictCheck, ConflictResult},
    dashboard::{self, CaseStats, Dashboard, UpcomingDeadline},
    members::{self, DeadlineChange, NewDeadline, NewMember, NewParty, PartyView},
    service::{
        self, CaseFilter, CasePatch, CaseView, DeadlineView, MemberView, NewCase, NewTimelineEntry,
        StatusChange, TimelineEntry,
    },
};
use crate::{
    AppState,
    auth::AuthUser,
    http::{
        error::{ApiError, Problem},
        extract::{ApiJson, ApiPath, ApiQuery},
        pagination::{Limit, Page, PageParams},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cases, create_case))
        .routes(routes!(get_case, patch_case))
        .routes(routes!(change_status))
        .routes(routes!(timeline, add_timeline_entry))
        .routes(routes!(add_member))
        .routes(routes!(remove_member))
        .routes(routes!(list_deadlines, add_deadline))
        .routes(routes!(update_deadline))
        .routes(routes!(list_parties, add_party))
        .routes(routes!(remove_party))
        .routes(routes!(conflict_check))
        .routes(routes!(get_dashboard))
        .routes(routes!(upcoming_deadlines))
        .routes(routes!(case_stats))
}

type ApiResult<T> = Result<Json<T>, ApiError>;
type Created<T> = Result<(StatusCode, Json<T>), ApiError>;

#[utoipa::path(get, path = "/cases", tag = "cases", params(CaseFilter),
    responses((status = 200, body = Page<CaseView>), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_cases(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(f): ApiQuery<CaseFilter>,
) -> ApiResult<Page<CaseView>> {
    Ok(Json(service::list_cases(&s, &p, f).await?))
}

#[utoipa::path(post, path = "/cases", tag = "cases", request_body = NewCase,
    responses((status = 201, body = CaseView), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn create_case(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(c): ApiJson<NewCase>,
) -> Created<CaseView> {
    Ok((
        StatusCode::CREATED,
        Json(service::create_case(&s, &p, c).await?),
    ))
}

#[utoipa::path(get, path = "/cases/{id}", tag = "cases", params(("id" = Uuid, Path)),
    responses((status = 200, body = CaseView), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn get_case(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> ApiResult<CaseView> {
    Ok(Json(service::get_case(&s, &p, id).await?))
}

#[utoipa::path(patch, path = "/cases/{id}", tag = "cases", params(("id" = Uuid, Path)), request_body = CasePatch,
    responses((status = 200, body = CaseView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn patch_case(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(c): ApiJson<CasePatch>,
) -> ApiResult<CaseView> {
    Ok(Json(service::patch_case(&s, &p, id, c).await?))
}

#[utoipa::path(post, path = "/cases/{id}/status", tag = "cases", params(("id" = Uuid, Path)), request_body = StatusChange,
    responses((status = 200, body = CaseView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn change_status(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(c): ApiJson<StatusChange>,
) -> ApiResult<CaseView> {
    Ok(Json(service::change_status(&s, &p, id, c).await?))
}

#[utoipa::path(get, path = "/cases/{id}/timeline", tag = "cases", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<TimelineEntry>), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn timeline(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<TimelineEntry>> {
    Ok(Json(
        service::timeline(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/cases/{id}/timeline", tag = "cases", params(("id" = Uuid, Path)), request_body = NewTimelineEntry,
    responses((status = 201, body = TimelineEntry), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_timeline_entry(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(e): ApiJson<NewTimelineEntry>,
) -> Created<TimelineEntry> {
    Ok((
        StatusCode::CREATED,
        Json(service::add_entry(&s, &p, id, e).await?),
    ))
}

#[utoipa::path(post, path = "/cases/{id}/members", tag = "cases", params(("id" = Uuid, Path)), request_body = NewMember,
    responses((status = 201, body = MemberView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_member(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(m): ApiJson<NewMember>,
) -> Created<MemberView> {
    Ok((
        StatusCode::CREATED,
        Json(members::add_member(&s, &p, id, m).await?),
    ))
}

#[utoipa::path(delete, path = "/cases/{id}/members/{user_id}", tag = "cases", params(("id" = Uuid, Path), ("user_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem), (status = 409, body = Problem)), security(("bearer" = [])))]
async fn remove_member(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, user_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    members::remove_member(&s, &p, id, user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/cases/{id}/deadlines", tag = "cases", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<DeadlineView>), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_deadlines(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<DeadlineView>> {
    Ok(Json(
        members::list_deadlines(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/cases/{id}/deadlines", tag = "cases", params(("id" = Uuid, Path)), request_body = NewDeadline,
    responses((status = 201, body = DeadlineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_deadline(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(d): ApiJson<NewDeadline>,
) -> Created<DeadlineView> {
    Ok((
        StatusCode::CREATED,
        Json(members::add_deadline(&s, &p, id, d).await?),
    ))
}

#[utoipa::path(patch, path = "/cases/{id}/deadlines/{deadline_id}", tag = "cases", params(("id" = Uuid, Path), ("deadline_id" = Uuid, Path)), request_body = DeadlineChange,
    responses((status = 200, body = DeadlineView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn update_deadline(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, deadline_id)): ApiPath<(Uuid, Uuid)>,
    ApiJson(c): ApiJson<DeadlineChange>,
) -> ApiResult<DeadlineView> {
    Ok(Json(
        members::set_deadline_completed(&s, &p, id, deadline_id, c).await?,
    ))
}

#[utoipa::path(get, path = "/cases/{id}/parties", tag = "cases", params(("id" = Uuid, Path), PageParams),
    responses((status = 200, body = Page<PartyView>), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn list_parties(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<PageParams>,
) -> ApiResult<Page<PartyView>> {
    Ok(Json(
        members::list_parties(&s, &p, id, Limit::parse(q.limit)?, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(post, path = "/cases/{id}/parties", tag = "cases", params(("id" = Uuid, Path)), request_body = NewParty,
    responses((status = 201, body = PartyView), (status = 403, body = Problem), (status = 404, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn add_party(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(b): ApiJson<NewParty>,
) -> Created<PartyView> {
    Ok((
        StatusCode::CREATED,
        Json(members::add_party(&s, &p, id, b).await?),
    ))
}

#[utoipa::path(delete, path = "/cases/{id}/parties/{party_id}", tag = "cases", params(("id" = Uuid, Path), ("party_id" = Uuid, Path)),
    responses((status = 204), (status = 403, body = Problem), (status = 404, body = Problem)), security(("bearer" = [])))]
async fn remove_party(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiPath((id, party_id)): ApiPath<(Uuid, Uuid)>,
) -> Result<StatusCode, ApiError> {
    members::remove_party(&s, &p, id, party_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/conflict-checks", tag = "cases", request_body = ConflictCheck,
    responses((status = 200, body = ConflictResult), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn conflict_check(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiJson(c): ApiJson<ConflictCheck>,
) -> ApiResult<ConflictResult> {
    Ok(Json(conflicts::check(&s, &p, c).await?))
}

#[utoipa::path(get, path = "/dashboard", tag = "cases", responses((status = 200, body = Dashboard)), security(("bearer" = [])))]
async fn get_dashboard(State(s): State<AppState>, AuthUser(p): AuthUser) -> ApiResult<Dashboard> {
    Ok(Json(dashboard::dashboard(&s, &p).await?))
}

/// `GET /deadlines` query: the window and a page of it.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
struct DeadlineWindow {
    /// Days ahead of today, 0..=3660, default 30 (the dashboard's window).
    days: Option<i64>,
    /// 1..100, default 20.
    limit: Option<i64>,
    /// Opaque cursor from the previous page's `next_cursor` (or the dashboard's
    /// `deadlines_next_cursor`).
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/deadlines", tag = "cases", params(DeadlineWindow),
    responses((status = 200, body = Page<UpcomingDeadline>), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn upcoming_deadlines(
    State(s): State<AppState>,
    AuthUser(p): AuthUser,
    ApiQuery(q): ApiQuery<DeadlineWindow>,
) -> ApiResult<Page<UpcomingDeadline>> {
    let (days, limit) = (q.days.unwrap_or(30), Limit::parse(q.limit)?);
    Ok(Json(
        dashboard::deadline_page(&s, &p, days, limit, q.cursor.as_deref()).await?,
    ))
}

#[utoipa::path(get, path = "/stats/cases", tag = "cases", responses((status = 200, body = CaseStats), (status = 403, body = Problem)), security(("bearer" = [])))]
async fn case_stats(State(s): State<AppState>, AuthUser(p): AuthUser) -> ApiResult<CaseStats> {
    Ok(Json(dashboard::stats(&s, &p).await?))
}
