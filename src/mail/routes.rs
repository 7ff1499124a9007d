//! `GET /admin/mail`: the outbox as admins see it (what waits, what failed and why).
//! Bodies stay out: they may carry invitation links.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{STATUS_FAILED, STATUS_PENDING, STATUS_SENT, entity, message_id};
use crate::{
    AppState,
    audit::NewEntry,
    auth::AdminUser,
    error::Error,
    http::{
        error::{ApiError, Problem},
        extract::ApiQuery,
        pagination::{Limit, Page, decode_cursor, page_from},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_mail))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MailView {
    pub id: Uuid,
    pub message_id: String,
    pub kind: String,
    pub to_address: String,
    pub to_user_id: Option<Uuid>,
    pub subject: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct MailFilter {
    pub status: Option<String>,
    pub kind: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct Cursor {
    at: DateTime<Utc>,
    id: Uuid,
}

#[utoipa::path(get, path = "/admin/mail", tag = "admin", params(MailFilter),
    responses((status = 200, body = Page<MailView>), (status = 403, body = Problem), (status = 422, body = Problem)), security(("bearer" = [])))]
async fn list_mail(
    State(s): State<AppState>,
    AdminUser(p): AdminUser,
    ApiQuery(f): ApiQuery<MailFilter>,
) -> Result<Json<Page<MailView>>, ApiError> {
    let limit = Limit::parse(f.limit)?;
    let mut q = entity::Entity::find();
    if let Some(st) = f.status.as_deref() {
        if ![STATUS_PENDING, STATUS_SENT, STATUS_FAILED].contains(&st) {
            return Err(Error::invalid("status", "must be pending, sent or failed").into());
        }
        q = q.filter(entity::Column::Status.eq(st));
    }
    if let Some(k) = f.kind.as_deref() {
        q = q.filter(entity::Column::Kind.eq(k));
    }
    if let Some(c) = decode_cursor::<Cursor>(f.cursor.as_deref())? {
        q = q.filter(
            Condition::any()
                .add(entity::Column::CreatedAt.lt(c.at))
                .add(
                    Condition::all()
                        .add(entity::Column::CreatedAt.eq(c.at))
                        .add(entity::Column::Id.lt(c.id)),
                ),
        );
    }
    let rows = q
        .order_by_desc(entity::Column::CreatedAt)
        .order_by_desc(entity::Column::Id)
        .limit(limit.get() + 1)
        .all(s.db.conn())
        .await
        .map_err(Error::from)?;
    let page = page_from(rows, limit, |r| Cursor {
        at: r.created_at,
        id: r.id,
    });
    s.audit
        .record(
            NewEntry::new("mail.list", "mail")
                .by(&p)
                .details(serde_json::json!({"count": page.items.len()})),
        )
        .await?;
    Ok(Json(Page {
        next_cursor: page.next_cursor,
        items: page
            .items
            .into_iter()
            .map(|r| MailView {
                message_id: message_id(r.id, &s.config.public_url),
                id: r.id,
                kind: r.kind,
                to_address: r.to_address,
                to_user_id: r.to_user_id,
                subject: r.subject,
                status: r.status,
                attempts: r.attempts,
                next_attempt_at: r.next_attempt_at,
                last_error: r.last_error,
                created_at: r.created_at,
                sent_at: r.sent_at,
            })
            .collect(),
    }))
}
