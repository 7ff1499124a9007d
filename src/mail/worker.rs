//! Delivers the outbox over SMTP. At-least-once: a row is claimed with a lease
//! (`locked_until`), sent, then marked sent; a worker that dies in between leaves the lease to
//! expire and another pass sends the same row again — with the same `Message-ID` and `Date`,
//! so receivers can tell it is one message. Several instances share the outbox: PostgreSQL
//! claims with `FOR UPDATE SKIP LOCKED`, SQLite's single writer serialises the claim.

use chrono::{DateTime, Duration, Utc};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Attachment as MailAttachment, Mailbox, MultiPart, SinglePart, header::ContentType},
};
use sea_orm::{
    ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait, LockBehavior, LockType},
};
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{STATUS_FAILED, STATUS_PENDING, STATUS_SENT, attachments_of, entity, message_id};
use crate::{AppState, error::Result};

/// How many mails one pass claims.
const BATCH: u64 = 20;

/// Retry delay after the `attempts`-th failure: 30 s doubling, at most 6 hours.
pub fn backoff(attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) - 1;
    Duration::seconds(30)
        .checked_mul(1 << exp)
        .unwrap_or(Duration::hours(6))
        .min(Duration::hours(6))
}

/// The `From` mailbox: configured, or `Law Firm Pro <no-reply@HOST>`.
pub fn from_mailbox(state: &AppState) -> anyhow::Result<Mailbox> {
    let raw = match &state.config.mail_from {
        Some(f) => f.clone(),
        None => format!(
            "Law Firm Pro <no-reply@{}>",
            state.config.public_url.host_str().unwrap_or("localhost")
        ),
    };
    Ok(raw.parse()?)
}

/// Run until shutdown. Without `LFP_SMTP_URL` it does nothing: mail waits in the outbox.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    let mut stop = state.shutdown.subscribe();
    tokio::spawn(async move {
        let Some(url) = state.config.smtp_url.clone() else {
            tracing::info!(
                "no LFP_SMTP_URL: mail stays in the outbox (see GET /api/v1/admin/mail)"
            );
            return;
        };
        let transport = match AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()) {
            Ok(b) => b.build(),
            Err(e) => {
                tracing::error!(error = %e, "LFP_SMTP_URL is unusable; mail stays in the outbox");
                return;
            }
        };
        let from = match from_mailbox(&state) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "mail From address is unusable");
                return;
            }
        };
        let committed = state.db.committed();
        loop {
            match run_once(&state, &transport, &from).await {
                // A full batch: there may be more waiting.
                Ok(n) if n as u64 >= BATCH => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "mail delivery pass failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(state.config.job_interval) => {}
                // New mail committed by this instance: deliver without waiting for the tick.
                _ = committed.notified() => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
    })
}

/// Pending, due, and not leased to a live worker.
fn due(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(entity::Column::Status.eq(STATUS_PENDING))
        .add(entity::Column::NextAttemptAt.lte(now))
        .add(
            sea_orm::Condition::any()
                .add(entity::Column::LockedUntil.is_null())
                .add(entity::Column::LockedUntil.lte(now)),
        )
}

/// Claim up to [`BATCH`] due rows for `lease`; returns them with `attempts` already counted.
pub async fn claim_due(
    state: &AppState,
    now: DateTime<Utc>,
    lease: std::time::Duration,
) -> Result<Vec<entity::Model>> {
    // A cheap read first: the writer slot (SQLite) is taken only when there is work.
    let any_due = entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .filter(due(now))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(state.db.conn())
        .await?;
    if any_due.is_none() {
        return Ok(Vec::new());
    }
    let txn = state.db.begin_write().await?;
    let mut q = entity::Entity::find()
        .select_only()
        .column(entity::Column::Id)
        .filter(due(now))
        .order_by_asc(entity::Column::NextAttemptAt)
        .order_by_asc(entity::Column::Id)
        .limit(BATCH);
    if state.db.backend() == DbBackend::Postgres {
        // Rows another instance is claiming right now are skipped, not waited for.
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let ids: Vec<Uuid> = q.into_tuple().all(&*txn).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let until = now + Duration::from_std(lease).unwrap_or(Duration::minutes(5));
    entity::Entity::update_many()
        .col_expr(entity::Column::LockedUntil, Expr::value(until))
        .col_expr(
            entity::Column::Attempts,
            Expr::col(entity::Column::Attempts).add(1),
        )
        .filter(entity::Column::Id.is_in(ids.clone()))
        .exec(&*txn)
        .await?;
    let rows = entity::Entity::find()
        .filter(entity::Column::Id.is_in(ids))
        .order_by_asc(entity::Column::NextAttemptAt)
        .all(&*txn)
        .await?;
    txn.commit().await?;
    Ok(rows)
}

/// The message for a row: same headers every time it is (re)sent.
pub fn build_message(
    row: &entity::Model,
    from: &Mailbox,
    public_url: &url::Url,
) -> anyhow::Result<Message> {
    let to: Mailbox = row.to_address.parse()?;
    let builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(row.subject.clone())
        .message_id(Some(message_id(row.id, public_url)))
        .date(std::time::SystemTime::from(row.created_at));
    let attachments = attachments_of(row);
    let msg = if attachments.is_empty() {
        builder
            .header(ContentType::TEXT_PLAIN)
            .body(row.body_text.clone())?
    } else {
        let mut mp = MultiPart::mixed().singlepart(SinglePart::plain(row.body_text.clone()));
        for a in attachments {
            let ct = ContentType::parse(&a.content_type)
                .unwrap_or(ContentType::parse("application/octet-stream")?);
            mp = mp.singlepart(MailAttachment::new(a.filename).body(a.data, ct));
        }
        builder.multipart(mp)?
    };
    Ok(msg)
}

/// One pass: claim, send, record the outcome of each. Returns how many were claimed.
pub async fn run_once(
    state: &AppState,
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
) -> Result<usize> {
    let rows = claim_due(state, crate::db::now(), state.config.mail_lease).await?;
    let n = rows.len();
    for row in rows {
        let outcome = match build_message(&row, from, &state.config.public_url) {
            Ok(msg) => transport
                .send(msg)
                .await
                .map(|_| ())
                .map_err(|e| (e.is_permanent(), e.to_string())),
            // A mail that cannot even be built never will be.
            Err(e) => Err((true, e.to_string())),
        };
        record_outcome(state, &row, outcome).await?;
    }
    Ok(n)
}

/// Mails whose body carries a working sign-in link (invitation, password reset).
const LINK_KINDS: [&str; 2] = ["invitation", "password_reset"];
const REDACTED: &str = "(removed after sending: this mail carried a one-time sign-in link)";

async fn record_outcome(
    state: &AppState,
    row: &entity::Model,
    outcome: std::result::Result<(), (bool, String)>,
) -> Result<()> {
    let now = crate::db::now();
    let mut u = entity::Entity::update_many()
        .col_expr(
            entity::Column::LockedUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(entity::Column::Id.eq(row.id));
    match outcome {
        Ok(()) => {
            tracing::info!(mail = %row.id, kind = %row.kind, "mail sent");
            u = u
                .col_expr(entity::Column::Status, Expr::value(STATUS_SENT))
                .col_expr(entity::Column::SentAt, Expr::value(now))
                .col_expr(entity::Column::LastError, Expr::value(None::<String>));
            // A sign-in link must not outlive its delivery in the database or its backups.
            if LINK_KINDS.contains(&row.kind.as_str()) {
                u = u.col_expr(entity::Column::BodyText, Expr::value(REDACTED));
            }
        }
        Err((permanent, err)) => {
            let err: String = err.chars().take(1000).collect();
            let give_up = permanent || row.attempts >= state.config.mail_max_attempts;
            tracing::warn!(mail = %row.id, attempts = row.attempts, give_up, error = %err, "mail not sent");
            u = u.col_expr(entity::Column::LastError, Expr::value(err));
            u = if give_up {
                u.col_expr(entity::Column::Status, Expr::value(STATUS_FAILED))
            } else {
                u.col_expr(
                    entity::Column::NextAttemptAt,
                    Expr::value(now + backoff(row.attempts)),
                )
            };
        }
    }
    let txn = state.db.begin_write().await?;
    u.exec(&*txn).await?;
    txn.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff(1), Duration::seconds(30));
        assert_eq!(backoff(2), Duration::seconds(60));
        assert_eq!(backoff(5), Duration::seconds(480));
        assert_eq!(backoff(30), Duration::hours(6));
        assert_eq!(backoff(0), Duration::seconds(30));
    }

    #[test]
    fn messages_carry_the_stable_id_and_attachments() {
        let t = crate::db::now();
        let id = Uuid::now_v7();
        let row = entity::Model {
            id,
            kind: "appointment.booked".into(),
            to_address: "client@example.com".into(),
            to_user_id: None,
            subject: "Appointment booked".into(),
            body_text: "Hello".into(),
            attachments: Some(
                serde_json::to_string(&[super::super::Attachment {
                    filename: "appointment.ics".into(),
                    content_type: "text/calendar; charset=utf-8".into(),
                    data: b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".to_vec(),
                }])
                .unwrap(),
            ),
            status: STATUS_PENDING.into(),
            attempts: 1,
            next_attempt_at: t,
            locked_until: None,
            last_error: None,
            created_at: t,
            sent_at: None,
        };
        let url = url::Url::parse("https://portal.example.com").unwrap();
        let from: Mailbox = "Firm <no-reply@portal.example.com>".parse().unwrap();
        let a = String::from_utf8(build_message(&row, &from, &url).unwrap().formatted()).unwrap();
        let b = String::from_utf8(build_message(&row, &from, &url).unwrap().formatted()).unwrap();
        let header = format!("Message-ID: <{id}@portal.example.com>");
        assert!(a.contains(&header), "{a}");
        assert!(b.contains(&header));
        assert!(a.contains("text/calendar"), "{a}");
        assert!(a.contains("appointment.ics"));
    }
}
