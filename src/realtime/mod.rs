//! Live events. Every change a person would want to see live writes an event row in the same
//! transaction as the change; delivery over WebSocket reads these rows (see issue "Live events").

pub mod entity;
pub mod hub;
pub mod routes;
pub mod socket;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use uuid::Uuid;

/// Who may receive an event. The case audiences and the named ones with a condition are checked
/// against the case's current members when the event is delivered and when it is replayed.
#[derive(Clone, Debug)]
pub enum Audience {
    /// Every member of the case (clients included).
    Case,
    /// Staff members of the case only.
    CaseStaff,
    /// Exactly these users, wherever they stand (an appointment's participants).
    Users(Vec<Uuid>),
    /// These users while they are still members of the event's case: a message's recipients,
    /// an invoice's client. Someone removed from the case stops getting them, in a replay of
    /// what they missed too.
    Members(Vec<Uuid>),
    /// These users while they may still read the case's privileged documents (attorneys on
    /// the case who are attorneys or admins in the firm, `Confidentiality::visible_to`): a
    /// privileged document's. A removed or demoted attorney stops getting them.
    Attorneys(Vec<Uuid>),
}

/// The people an event names, as the row's `user_ids` holds them, under the audience `users`:
/// a plain array (anyone named), `{"members": […]}` or `{"attorneys": […]}`. An instance of an
/// earlier version reads the array form only, so during a rolling upgrade it delivers the
/// conditional forms to nobody; a new audience name would have reached the whole case there.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Named {
    Anyone(Vec<Uuid>),
    Members { members: Vec<Uuid> },
    Attorneys { attorneys: Vec<Uuid> },
}

impl Named {
    /// The `user_ids` of a `users` row; nobody when it cannot be read.
    pub fn of(e: &entity::Model) -> Self {
        e.user_ids
            .as_deref()
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or(Named::Anyone(Vec::new()))
    }

    pub fn ids(&self) -> &[Uuid] {
        match self {
            Named::Anyone(ids)
            | Named::Members { members: ids }
            | Named::Attorneys { attorneys: ids } => ids,
        }
    }

    /// Whether delivery needs the case's members (`on_case` below).
    pub fn needs_membership(&self) -> bool {
        !matches!(self, Named::Anyone(_))
    }

    /// May `user` (of firm role `role`, of case role `on_case` on the event's case) get it now?
    pub fn admits(
        &self,
        user: Uuid,
        role: crate::users::domain::Role,
        on_case: Option<crate::cases::domain::MemberRole>,
    ) -> bool {
        if !self.ids().contains(&user) {
            return false;
        }
        match self {
            Named::Anyone(_) => true,
            Named::Members { .. } => on_case.is_some(),
            Named::Attorneys { .. } => {
                on_case.is_some()
                    && crate::documents::domain::Confidentiality::Privileged
                        .visible_to(role, on_case)
            }
        }
    }
}

pub struct NewEvent {
    pub kind: &'static str,
    pub case_id: Option<Uuid>,
    pub audience: Audience,
    pub data: serde_json::Value,
}

/// Append an event inside the caller's transaction; its id orders delivery.
pub async fn emit_in<C: ConnectionTrait>(conn: &C, e: NewEvent) -> Result<i64, sea_orm::DbErr> {
    let (audience, named) = match e.audience {
        Audience::Case => ("case", None),
        Audience::CaseStaff => ("case_staff", None),
        Audience::Users(ids) => ("users", Some(Named::Anyone(ids))),
        Audience::Members(members) => ("users", Some(Named::Members { members })),
        Audience::Attorneys(attorneys) => ("users", Some(Named::Attorneys { attorneys })),
    };
    debug_assert!(
        e.case_id.is_some() || named.as_ref().is_none_or(|n| !n.needs_membership()),
        "a condition on membership needs the event's case"
    );
    let users = named.map(|n| serde_json::to_string(&n).expect("uuids serialise"));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{cases::domain::MemberRole, users::domain::Role};

    #[test]
    fn conditional_audiences_are_nobody_to_an_earlier_version() {
        let id = Uuid::new_v4();
        for named in [
            Named::Members { members: vec![id] },
            Named::Attorneys {
                attorneys: vec![id],
            },
        ] {
            let stored = serde_json::to_string(&named).unwrap();
            // An earlier version read `user_ids` as a plain array, and nobody when it could not.
            assert!(
                serde_json::from_str::<Vec<Uuid>>(&stored).is_err(),
                "{stored}"
            );
            assert_eq!(serde_json::from_str::<Named>(&stored).unwrap(), named);
        }
        let anyone = serde_json::to_string(&Named::Anyone(vec![id])).unwrap();
        assert_eq!(serde_json::from_str::<Vec<Uuid>>(&anyone).unwrap(), [id]);
    }

    #[test]
    fn conditions_are_checked_against_the_case_now() {
        let (id, other) = (Uuid::new_v4(), Uuid::new_v4());
        let members = Named::Members { members: vec![id] };
        assert!(members.admits(id, Role::Client, Some(MemberRole::Client)));
        assert!(
            !members.admits(id, Role::Client, None),
            "removed from the case"
        );
        assert!(!members.admits(other, Role::Client, Some(MemberRole::Client)));
        let attorneys = Named::Attorneys {
            attorneys: vec![id],
        };
        assert!(attorneys.admits(id, Role::Attorney, Some(MemberRole::Attorney)));
        assert!(!attorneys.admits(id, Role::Paralegal, Some(MemberRole::Attorney)));
        assert!(!attorneys.admits(id, Role::Attorney, None));
        assert!(Named::Anyone(vec![id]).admits(id, Role::Client, None));
    }
}
