//! Live events. Every change a person would want to see live writes an event row in the same
//! transaction as the change; delivery over WebSocket reads these rows (see issue "Live events").

pub mod entity;
pub mod hub;
pub mod routes;
pub mod socket;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use uuid::Uuid;

/// Who may receive an event. Every audience tied to a case is checked against the case's
/// current members when it is delivered and when it is replayed; `Users` alone is not.
#[derive(Clone, Debug)]
pub enum Audience {
    /// Every member of the case (clients included).
    Case,
    /// Staff members of the case only.
    CaseStaff,
    /// Exactly these users, wherever they stand (an appointment's participants).
    Users(Vec<Uuid>),
    /// These users while they are still members of the event's case: a message's recipients,
    /// an invoice's client, a privileged document's attorneys. Someone removed from the case
    /// stops getting them, in a replay of what they missed too.
    Members(Vec<Uuid>),
}

pub struct NewEvent {
    pub kind: &'static str,
    pub case_id: Option<Uuid>,
    pub audience: Audience,
    pub data: serde_json::Value,
}

/// Append an event inside the caller's transaction; its id orders delivery.
pub async fn emit_in<C: ConnectionTrait>(conn: &C, e: NewEvent) -> Result<i64, sea_orm::DbErr> {
    let (audience, users) = match &e.audience {
        Audience::Case => ("case", None),
        Audience::CaseStaff => ("case_staff", None),
        Audience::Users(ids) => (
            "users",
            Some(serde_json::to_string(ids).expect("uuids serialise")),
        ),
        Audience::Members(ids) => {
            debug_assert!(e.case_id.is_some(), "a members audience needs its case");
            (
                "members",
                Some(serde_json::to_string(ids).expect("uuids serialise")),
            )
        }
    };
    let m = entity::ActiveModel {
        kind: Set(e.kind.into()),
        case_id: Set(e.case_id),
        audience: Set(audience.into()),
        user_ids: Set(users),
        data: Set(e.data.to_string()),
        created_at: Set(crate::db::now()),
        ..Default::default()
    }
    .insert(conn)
    .await?;
    if conn.get_database_backend() == sea_orm::DbBackend::Postgres {
        // Delivered to every instance's listener only if (and when) the transaction commits.
        conn.execute_raw(sea_orm::Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [hub::PG_CHANNEL.into(), m.id.to_string().into()],
        ))
        .await?;
    }
    Ok(m.id)
}
