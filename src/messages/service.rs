//! Sending, reading one message, marking read and hiding: the rules of who may see a message
//! and what each change writes (rows, live event, mail notice, audit entry) in one transaction.
//!
//! A message is visible to a person who is *currently* a member of its case and is its sender
//! or one of its recipients, and has not hidden it. Everything else is 404.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QuerySelect, Statement,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    entity::{attachment, mail_notice, message, recipient},
    search_index,
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    cases::access,
    error::{Error, Result, Validator},
    mail::{self, NewMail},
    realtime::{self, Audience, NewEvent},
    users,
};

pub const MAX_BODY_CHARS: usize = 20_000;
pub const MAX_RECIPIENTS: usize = 200;
pub const MAX_ATTACHMENTS: usize = 20;
/// Bulk read and bulk delete take at most this many ids.
pub const MAX_BULK: usize = 500;
/// Messages one person may send per minute (all cases together).
pub const SENDS_PER_MINUTE: u64 = 30;
/// At most one "new message" mail per recipient and case in this span.
pub const MAIL_COALESCE_MINUTES: i64 = 15;

/// A message body: trimmed, not empty, at most [`MAX_BODY_CHARS`], no control characters
/// other than line breaks and tabs (PostgreSQL text cannot even hold NUL).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub fn parse(raw: &str) -> std::result::Result<Self, String> {
        let t = raw.trim();
        if t.is_empty() {
            return Err("is required".into());
        }
        if t.chars().count() > MAX_BODY_CHARS {
            return Err(format!("must be at most {MAX_BODY_CHARS} characters"));
        }
        if t.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            return Err("must not contain control characters".into());
        }
        Ok(Self(t.to_owned()))
    }
    pub fn into_inner(self) -> String {
        self.0
    }
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMessage {
    /// Plain text, at most 20,000 characters.
    pub body: String,
    /// Current members of the case; default: every other member.
    pub recipient_ids: Option<Vec<Uuid>>,
    /// Documents of the same case that every recipient may see.
    pub attachment_ids: Option<Vec<Uuid>>,
    /// The message this one answers (same case, visible to the sender).
    pub parent_id: Option<Uuid>,
}

#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ReadReceipt {
    pub user_id: Uuid,
    pub read_at: DateTime<Utc>,
}

/// A message as the API shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: Uuid,
    pub case_id: Uuid,
    pub sender_id: Uuid,
    pub recipient_ids: Vec<Uuid>,
    pub body: String,
    pub parent_id: Option<Uuid>,
    pub attachment_ids: Vec<Uuid>,
    pub created_at: DateTime<Utc>,
    /// The sender sees every recipient who has read it; a recipient sees only their own entry.
    pub read_by: Vec<ReadReceipt>,
    /// When the caller read it (`null`: unread, or the caller is the sender).
    pub read_at: Option<DateTime<Utc>>,
    /// Replies to this message that the caller can see (`GET /cases/{id}/messages?thread=`).
    pub reply_count: i64,
}

/// Whether `user` may see `m` now, given their cases and their recipient row.
fn visible(
    user: Uuid,
    m: &message::Model,
    my_cases: &HashSet<Uuid>,
    my_row: Option<&recipient::Model>,
) -> bool {
    my_cases.contains(&m.case_id)
        && ((m.sender_id == user && m.sender_deleted_at.is_none())
            || my_row.is_some_and(|r| r.deleted_at.is_none()))
}

async fn my_cases<C: ConnectionTrait>(conn: &C, user: Uuid) -> Result<HashSet<Uuid>> {
    Ok(access::case_ids_of(conn, user, false)
        .await?
        .into_iter()
        .collect())
}

/// Load one message if `user` may see it, with their recipient row.
async fn load_visible<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    id: Uuid,
) -> Result<(message::Model, Option<recipient::Model>)> {
    let Some(m) = message::Entity::find_by_id(id).one(conn).await? else {
        return Err(Error::NotFound);
    };
    let row = recipient::Entity::find_by_id((id, p.user_id))
        .one(conn)
        .await?;
    let member = access::membership(conn, m.case_id, p.user_id)
        .await?
        .is_some();
    let cases: HashSet<Uuid> = if member {
        [m.case_id].into()
    } else {
        HashSet::new()
    };
    if !visible(p.user_id, &m, &cases, row.as_ref()) {
        return Err(deny(state, p, &m));
    }
    Ok((m, row))
}

/// An attempt on a message that exists but is not the caller's: audited, and 404.
fn deny(state: &AppState, p: &Principal, m: &message::Model) -> Error {
    state.audit.deny_hidden(
        p,
        NewEntry::new("message.access", "message")
            .resource(m.id)
            .case(m.case_id),
    )
}

/// A recipient of a message and when they read it.
struct Receipt {
    user_id: Uuid,
    read_at: Option<DateTime<Utc>>,
}

/// Shape many messages for `viewer` in a fixed number of queries.
pub(super) async fn views<C: ConnectionTrait>(
    conn: &C,
    viewer: Uuid,
    msgs: Vec<message::Model>,
) -> Result<Vec<MessageView>> {
    if msgs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = msgs.iter().map(|m| m.id).collect();
    // Only the columns a view shows: whole rows cost more to decode than the query to run.
    let rows: Vec<(Uuid, Uuid, Option<DateTime<Utc>>)> = recipient::Entity::find()
        .select_only()
        .column(recipient::Column::MessageId)
        .column(recipient::Column::UserId)
        .column(recipient::Column::ReadAt)
        .filter(recipient::Column::MessageId.is_in(ids.clone()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut by_msg: HashMap<Uuid, Vec<Receipt>> = HashMap::new();
    for (message_id, user_id, read_at) in rows {
        by_msg
            .entry(message_id)
            .or_default()
            .push(Receipt { user_id, read_at });
    }
    let atts: Vec<(Uuid, Uuid)> = attachment::Entity::find()
        .select_only()
        .column(attachment::Column::MessageId)
        .column(attachment::Column::DocumentId)
        .filter(attachment::Column::MessageId.is_in(ids.clone()))
        .into_tuple()
        .all(conn)
        .await?;
    let mut att_by: HashMap<Uuid, Vec<Uuid>> = HashMap::new();
    for (m, d) in atts {
        att_by.entry(m).or_default().push(d);
    }
    let replies: HashMap<Uuid, i64> = message::Entity::find()
        .select_only()
        .column(message::Column::ParentId)
        .column_as(Expr::col(message::Column::Id).count(), "n")
        .filter(message::Column::ParentId.is_in(ids))
        .filter(super::query::visible_row_condition(viewer))
        .group_by(message::Column::ParentId)
        .into_tuple::<(Option<Uuid>, i64)>()
        .all(conn)
        .await?
        .into_iter()
        .filter_map(|(p, n)| p.map(|p| (p, n)))
        .collect();
    Ok(msgs
        .into_iter()
        .map(|m| {
            let mut rs = by_msg.remove(&m.id).unwrap_or_default();
            rs.sort_by_key(|r| r.user_id);
            let is_sender = m.sender_id == viewer;
            let read_at = rs
                .iter()
                .find(|r| r.user_id == viewer)
                .and_then(|r| r.read_at);
            let read_by = rs
                .iter()
                .filter(|r| is_sender || r.user_id == viewer)
                .filter_map(|r| {
                    r.read_at.map(|t| ReadReceipt {
                        user_id: r.user_id,
                        read_at: t,
                    })
                })
                .collect();
            let mut attachment_ids = att_by.remove(&m.id).unwrap_or_default();
            attachment_ids.sort();
            MessageView {
                id: m.id,
                case_id: m.case_id,
                sender_id: m.sender_id,
                recipient_ids: rs.iter().map(|r| r.user_id).collect(),
                body: m.body,
                parent_id: m.parent_id,
                attachment_ids,
                created_at: m.created_at,
                read_by,
                read_at,
                reply_count: replies.get(&m.id).copied().unwrap_or(0),
            }
        })
        .collect())
}

/// The one gate for attachments: every attached id must be a live document of this case that
/// the sender and every recipient may see (a client must never be handed a link to an
/// internal or privileged file). Anything else is refused as a whole with 422.
async fn check_attachments<C: ConnectionTrait>(
    conn: &C,
    case_id: Uuid,
    sender: Uuid,
    recipients: &[Uuid],
    attachment_ids: &[Uuid],
) -> Result<()> {
    if attachment_ids.is_empty() {
        return Ok(());
    }
    let members: Vec<_> = crate::cases::access::members_of(conn, case_id)
        .await?
        .into_iter()
        .filter(|(u, _)| *u == sender || recipients.contains(u))
        .collect();
    // With their firm role, as reading decides: an account demoted to client that is still on
    // the case as an attorney sees only what clients see (inactive: the same).
    let ids: Vec<Uuid> = members.iter().map(|(u, _)| *u).collect();
    let firm = crate::users::service::active_roles(conn, &ids).await?;
    let viewers: Vec<_> = members
        .into_iter()
        .map(|(u, r)| {
            let role = firm
                .get(&u)
                .copied()
                .unwrap_or(crate::users::domain::Role::Client);
            (u, role, r)
        })
        .collect();
    if !crate::documents::service::visible_to_all(conn, case_id, attachment_ids, &viewers).await? {
        return Err(Error::invalid(
            "attachment_ids",
            "every attachment must be a document of this case that all recipients may see",
        ));
    }
    Ok(())
}

/// Refuse a send beyond [`SENDS_PER_MINUTE`], counting the sender's messages of the last
/// minute in the database (every instance sees the same count). On PostgreSQL a per-user
/// advisory lock makes concurrent sends of one person count one after the other; SQLite has
/// one writer at a time anyway.
async fn check_rate<C: ConnectionTrait>(conn: &C, user: Uuid, now: DateTime<Utc>) -> Result<()> {
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            [format!("message.send:{user}").into()],
        ))
        .await?;
    }
    let since = now - Duration::minutes(1);
    let recent: Vec<DateTime<Utc>> = message::Entity::find()
        .select_only()
        .column(message::Column::CreatedAt)
        .filter(message::Column::SenderId.eq(user))
        .filter(message::Column::CreatedAt.gt(since))
        .into_tuple()
        .all(conn)
        .await?;
    if recent.len() as u64 >= SENDS_PER_MINUTE {
        let oldest = recent.iter().min().copied().unwrap_or(now);
        let wait = (oldest + Duration::minutes(1) - now).num_seconds() + 1;
        return Err(Error::RateLimited {
            retry_after_secs: wait.clamp(1, 60) as u64,
        });
    }
    Ok(())
}

/// Mail recipients who have no open socket here, at most once per case per
/// [`MAIL_COALESCE_MINUTES`]. The mail says only that a message waits in case N, with a link:
/// never the body, never the case title.
async fn notify_offline<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    case_id: Uuid,
    case_number: &str,
    recipients: &[Uuid],
    now: DateTime<Utc>,
) -> Result<()> {
    let offline: Vec<Uuid> = recipients
        .iter()
        .copied()
        .filter(|u| !state.hub.is_connected(*u))
        .collect();
    if offline.is_empty() {
        return Ok(());
    }
    // Make sure each (user, case) row exists, then lock them: concurrent sends on PostgreSQL
    // see one another's notice instead of both mailing.
    mail_notice::Entity::insert_many(offline.iter().map(|u| mail_notice::ActiveModel {
        user_id: Set(*u),
        case_id: Set(case_id),
        last_sent_at: Set(DateTime::<Utc>::UNIX_EPOCH),
    }))
    .on_conflict(
        OnConflict::columns([mail_notice::Column::UserId, mail_notice::Column::CaseId])
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    let mut q = mail_notice::Entity::find()
        .filter(mail_notice::Column::CaseId.eq(case_id))
        .filter(mail_notice::Column::UserId.is_in(offline.clone()));
    if conn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    let cutoff = now - Duration::minutes(MAIL_COALESCE_MINUTES);
    let due: Vec<Uuid> = q
        .all(conn)
        .await?
        .into_iter()
        .filter(|n| n.last_sent_at <= cutoff)
        .map(|n| n.user_id)
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    mail_notice::Entity::update_many()
        .col_expr(mail_notice::Column::LastSentAt, Expr::value(now))
        .filter(mail_notice::Column::CaseId.eq(case_id))
        .filter(mail_notice::Column::UserId.is_in(due.clone()))
        .exec(conn)
        .await?;
    let emails = users::service::active_emails_of(conn, &due).await?;
    // The portal's address as configured (it may live under a path prefix).
    let link = &state.config.public_url;
    for u in due {
        let Some(addr) = emails.get(&u) else { continue };
        mail::enqueue_in(
            conn,
            NewMail {
                kind: "message.created",
                to_address: addr.clone(),
                to_user_id: Some(u),
                subject: format!("New message in case {case_number}"),
                text: format!(
                    "You have a new message in case {case_number}.\n\n\
                     Sign in to the portal to read it: {link}\n\n\
                     For your confidentiality, messages are never sent by email."
                ),
                attachments: vec![],
            },
        )
        .await?;
    }
    Ok(())
}

/// `POST /cases/{id}/messages` (members).
pub async fn send(
    state: &AppState,
    p: &Principal,
    case_id: Uuid,
    input: NewMessage,
) -> Result<MessageView> {
    let mut v = Validator::default();
    let body = v.check("body", MessageBody::parse(&input.body));
    let mut wanted = input.recipient_ids.clone();
    if let Some(w) = wanted.as_mut() {
        w.sort();
        w.dedup();
        // Writing to oneself is not a recipient; the sender has the message anyway.
        w.retain(|u| *u != p.user_id);
        if w.is_empty() {
            v.push(
                "recipient_ids",
                "name at least one other member, or leave it out for all",
            );
        } else if w.len() > MAX_RECIPIENTS {
            v.push(
                "recipient_ids",
                format!("at most {MAX_RECIPIENTS} recipients"),
            );
        }
    }
    let mut attachment_ids = input.attachment_ids.clone().unwrap_or_default();
    attachment_ids.sort();
    attachment_ids.dedup();
    if attachment_ids.len() > MAX_ATTACHMENTS {
        v.push(
            "attachment_ids",
            format!("at most {MAX_ATTACHMENTS} attachments"),
        );
    }
    v.finish()?;
    let body = body.expect("checked").into_inner();

    let txn = state.db.begin_write().await?;
    let a = access::require(state, &*txn, p, case_id).await?;
    let Some(sender_role) = a.role else {
        return Err(Error::Forbidden(
            "Only members of the case may write messages in it.",
        ));
    };
    let now = crate::db::now();
    check_rate(&*txn, p.user_id, now).await?;
    let members: HashSet<Uuid> = access::members_of(&*txn, case_id)
        .await?
        .into_iter()
        .map(|(u, _)| u)
        .collect();
    let recipients: Vec<Uuid> = match wanted {
        Some(w) => {
            let mut v = Validator::default();
            for u in w.iter().filter(|u| !members.contains(u)) {
                v.push("recipient_ids", format!("{u} is not a member of this case"));
            }
            v.finish()?;
            w
        }
        None => {
            let mut all: Vec<Uuid> = members
                .iter()
                .copied()
                .filter(|u| *u != p.user_id)
                .collect();
            all.sort();
            if all.is_empty() {
                return Err(Error::invalid(
                    "recipient_ids",
                    "nobody else is on this case yet",
                ));
            }
            all
        }
    };
    if let Some(parent) = input.parent_id {
        let unknown = || Error::invalid("parent_id", "unknown message");
        let m = message::Entity::find_by_id(parent)
            .one(&*txn)
            .await?
            .ok_or_else(unknown)?;
        let row = recipient::Entity::find_by_id((parent, p.user_id))
            .one(&*txn)
            .await?;
        if m.case_id != case_id || !visible(p.user_id, &m, &[case_id].into(), row.as_ref()) {
            return Err(unknown());
        }
    }
    check_attachments(&*txn, case_id, p.user_id, &recipients, &attachment_ids).await?;

    let id = Uuid::now_v7();
    let m = message::ActiveModel {
        id: Set(id),
        case_id: Set(case_id),
        sender_id: Set(p.user_id),
        sender_role: Set(sender_role.as_str().into()),
        parent_id: Set(input.parent_id),
        body: Set(body.clone()),
        created_at: Set(now),
        sender_deleted_at: Set(None),
    };
    message::Entity::insert(m)
        .exec_without_returning(&*txn)
        .await?;
    recipient::Entity::insert_many(recipients.iter().map(|u| recipient::ActiveModel {
        message_id: Set(id),
        user_id: Set(*u),
        case_id: Set(case_id),
        delivered_at: Set(now),
        read_at: Set(None),
        deleted_at: Set(None),
        message_created_at: Set(now),
    }))
    .exec_without_returning(&*txn)
    .await?;
    search_index::add(
        &*txn,
        &[search_index::Entry {
            id,
            sender: p.user_id,
            recipients: &recipients,
        }],
    )
    .await?;
    if !attachment_ids.is_empty() {
        attachment::Entity::insert_many(attachment_ids.iter().map(|d| attachment::ActiveModel {
            message_id: Set(id),
            document_id: Set(*d),
        }))
        .exec_without_returning(&*txn)
        .await?;
    }
    // Recipients may be a subset of the case: the event names its audience exactly.
    let mut audience = recipients.clone();
    audience.push(p.user_id);
    realtime::emit_in(
        &*txn,
        NewEvent {
            kind: "message.created",
            case_id: Some(case_id),
            audience: Audience::Members(audience),
            data: serde_json::json!({
                "message_id": id, "sender_id": p.user_id, "parent_id": input.parent_id,
            }),
        },
    )
    .await?;
    notify_offline(state, &*txn, case_id, &a.case.number, &recipients, now).await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("message.send", "message")
                .by(p)
                .resource(id)
                .case(case_id)
                .details(serde_json::json!({
                    "recipients": recipients.len(),
                    "parent_id": input.parent_id,
                    "attachments": attachment_ids.len(),
                })),
        ],
    )
    .await?;
    let saved = message::Entity::find_by_id(id)
        .one(&*txn)
        .await?
        .ok_or_else(|| anyhow::anyhow!("message vanished inside its transaction"))?;
    let out = views(&*txn, p.user_id, vec![saved]).await?.remove(0);
    txn.commit().await?;
    Ok(out)
}

/// `GET /messages/{id}` (sender, recipients). Audited as a read.
pub async fn get(state: &AppState, p: &Principal, id: Uuid) -> Result<MessageView> {
    let conn = state.db.conn();
    let (m, _) = load_visible(state, conn, p, id).await?;
    let case_id = m.case_id;
    let out = views(conn, p.user_id, vec![m]).await?.remove(0);
    state
        .audit
        .record(
            NewEntry::new("message.view", "message")
                .by(p)
                .resource(id)
                .case(case_id),
        )
        .await?;
    Ok(out)
}

/// Validate a bulk id list: 1..=[`MAX_BULK`] ids, duplicates ignored.
pub fn bulk_ids(ids: &[Uuid]) -> Result<Vec<Uuid>> {
    if ids.is_empty() {
        return Err(Error::invalid("ids", "give at least one id"));
    }
    if ids.len() > MAX_BULK {
        return Err(Error::invalid("ids", format!("at most {MAX_BULK} ids")));
    }
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// Load all `ids` the caller may see, or `NotFound` for the whole request.
async fn load_all_visible<C: ConnectionTrait>(
    state: &AppState,
    conn: &C,
    p: &Principal,
    ids: &[Uuid],
) -> Result<(Vec<message::Model>, HashMap<Uuid, recipient::Model>)> {
    let msgs = message::Entity::find()
        .filter(message::Column::Id.is_in(ids.to_vec()))
        .all(conn)
        .await?;
    let rows: HashMap<Uuid, recipient::Model> = recipient::Entity::find()
        .filter(recipient::Column::UserId.eq(p.user_id))
        .filter(recipient::Column::MessageId.is_in(ids.to_vec()))
        .all(conn)
        .await?
        .into_iter()
        .map(|r| (r.message_id, r))
        .collect();
    let cases = my_cases(conn, p.user_id).await?;
    if msgs.len() != ids.len() {
        return Err(Error::NotFound);
    }
    if let Some(m) = msgs
        .iter()
        .find(|m| !visible(p.user_id, m, &cases, rows.get(&m.id)))
    {
        return Err(deny(state, p, m));
    }
    Ok((msgs, rows))
}

/// `POST /messages/{id}/read` and `POST /messages/read` (recipients): all or nothing. The
/// first `read_at` stays; the senders of newly read messages get `message.read` live.
/// Marking one's own sent message is accepted and changes nothing.
pub async fn mark_read(state: &AppState, p: &Principal, ids: &[Uuid]) -> Result<()> {
    let ids = bulk_ids(ids)?;
    let txn = state.db.begin_write().await?;
    let (msgs, rows) = load_all_visible(state, &*txn, p, &ids).await?;
    let unread: Vec<Uuid> = rows
        .values()
        .filter(|r| r.read_at.is_none())
        .map(|r| r.message_id)
        .collect();
    let now = crate::db::now();
    let mut newly: HashSet<Uuid> = HashSet::new();
    if !unread.is_empty() {
        // `read_at IS NULL` in the update itself: a concurrent marking cannot move the first time.
        let updated = recipient::Entity::update_many()
            .col_expr(recipient::Column::ReadAt, Expr::value(now))
            .filter(recipient::Column::UserId.eq(p.user_id))
            .filter(recipient::Column::MessageId.is_in(unread))
            .filter(recipient::Column::ReadAt.is_null())
            .exec_with_returning(&*txn)
            .await?;
        newly.extend(updated.into_iter().map(|r| r.message_id));
    }
    // One event per (case, sender), only to senders still on the case.
    let mut by_sender: BTreeMap<(Uuid, Uuid), Vec<Uuid>> = BTreeMap::new();
    for m in msgs.iter().filter(|m| newly.contains(&m.id)) {
        by_sender
            .entry((m.case_id, m.sender_id))
            .or_default()
            .push(m.id);
    }
    for ((case_id, sender), message_ids) in by_sender {
        if access::membership(&*txn, case_id, sender).await?.is_none() {
            continue;
        }
        realtime::emit_in(
            &*txn,
            NewEvent {
                kind: "message.read",
                case_id: Some(case_id),
                audience: Audience::Members(vec![sender]),
                data: serde_json::json!({
                    "message_ids": message_ids, "user_id": p.user_id, "read_at": now,
                }),
            },
        )
        .await?;
    }
    append_in(
        &*txn,
        msgs.iter()
            .map(|m| {
                NewEntry::new("message.read", "message")
                    .by(p)
                    .resource(m.id)
                    .case(m.case_id)
                    .details(serde_json::json!({"first_read": newly.contains(&m.id)}))
            })
            .collect(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Messages shown to their reader are read: those of `shown` addressed to `p` and not read yet
/// are marked read (the senders see the receipt live). Only the reader's own recipient rows:
/// `read_at` is empty for staff who merely see a thread, which would write on every view.
pub async fn read_shown(state: &AppState, p: &Principal, shown: &[MessageView]) -> Result<()> {
    let unread: Vec<Uuid> = shown
        .iter()
        .filter(|m| m.recipient_ids.contains(&p.user_id) && m.read_at.is_none())
        .map(|m| m.id)
        .collect();
    if unread.is_empty() {
        return Ok(());
    }
    mark_read(state, p, &unread).await
}

/// `DELETE /messages/{id}` and `POST /messages/bulk-delete` (sender or recipient): hides the
/// messages from the caller only, all or nothing. The rows stay for the audit trail.
pub async fn hide(state: &AppState, p: &Principal, ids: &[Uuid]) -> Result<()> {
    let ids = bulk_ids(ids)?;
    let txn = state.db.begin_write().await?;
    let (msgs, _) = load_all_visible(state, &*txn, p, &ids).await?;
    let now = crate::db::now();
    let (sent, received): (Vec<&message::Model>, Vec<&message::Model>) =
        msgs.iter().partition(|m| m.sender_id == p.user_id);
    if !sent.is_empty() {
        message::Entity::update_many()
            .col_expr(message::Column::SenderDeletedAt, Expr::value(now))
            .filter(message::Column::Id.is_in(sent.iter().map(|m| m.id)))
            .exec(&*txn)
            .await?;
    }
    if !received.is_empty() {
        recipient::Entity::update_many()
            .col_expr(recipient::Column::DeletedAt, Expr::value(now))
            .filter(recipient::Column::UserId.eq(p.user_id))
            .filter(recipient::Column::MessageId.is_in(received.iter().map(|m| m.id)))
            .exec(&*txn)
            .await?;
    }
    append_in(
        &*txn,
        msgs.iter()
            .map(|m| {
                NewEntry::new("message.delete", "message")
                    .by(p)
                    .resource(m.id)
                    .case(m.case_id)
                    .details(serde_json::json!({"as": if m.sender_id == p.user_id { "sender" } else { "recipient" }}))
            })
            .collect(),
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_trimmed_bounded_and_printable() {
        assert_eq!(MessageBody::parse("  hi \n").unwrap().into_inner(), "hi");
        assert!(MessageBody::parse(" \n\t ").is_err());
        assert!(MessageBody::parse("a\0b").is_err());
        assert!(MessageBody::parse("line one\nline two\ttab").is_ok());
        assert!(MessageBody::parse(&"é".repeat(MAX_BODY_CHARS)).is_ok());
        assert!(MessageBody::parse(&"é".repeat(MAX_BODY_CHARS + 1)).is_err());
    }

    #[test]
    fn bulk_lists_are_bounded() {
        assert!(bulk_ids(&[]).is_err());
        let many: Vec<Uuid> = (0..=MAX_BULK).map(|_| Uuid::new_v4()).collect();
        assert!(bulk_ids(&many).is_err());
        assert_eq!(bulk_ids(&many[..MAX_BULK]).unwrap().len(), MAX_BULK);
        let one = Uuid::new_v4();
        assert_eq!(bulk_ids(&[one, one]).unwrap(), vec![one]);
    }
}
