//! Outgoing email. Every capability that mails someone calls [`enqueue_in`] inside the
//! transaction of the change that causes the mail, so a mail exists if and only if the change
//! committed. A background worker delivers the outbox over SMTP (at-least-once; the row id is
//! the stable `Message-ID`, so a resend after a crash is recognisably the same message).
//!
//! Confidentiality: mail never carries privileged content (message bodies, document
//! contents); it tells the recipient that something is waiting and links to the portal.

pub mod entity;
pub mod routes;
pub mod worker;

use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A small file attached to a mail (e.g. an `.ics` invitation). Kept in the outbox row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    #[serde(with = "b64")]
    pub data: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

/// One email to one recipient.
#[derive(Clone, Debug)]
pub struct NewMail {
    /// What the mail is about, e.g. `invitation`, `message.created`, `appointment.booked`.
    pub kind: &'static str,
    pub to_address: String,
    pub to_user_id: Option<Uuid>,
    pub subject: String,
    /// Plain text only; never privileged content.
    pub text: String,
    pub attachments: Vec<Attachment>,
}

pub const STATUS_PENDING: &str = "pending";
pub const STATUS_SENT: &str = "sent";
pub const STATUS_FAILED: &str = "failed";

/// Queue a mail inside the caller's transaction; returns its id (the Message-ID's local part).
pub async fn enqueue_in<C: ConnectionTrait>(
    conn: &C,
    mail: NewMail,
) -> Result<Uuid, sea_orm::DbErr> {
    let now = crate::db::now();
    let attachments = if mail.attachments.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&mail.attachments).expect("attachments serialise"))
    };
    let id = Uuid::now_v7();
    entity::ActiveModel {
        id: Set(id),
        kind: Set(mail.kind.into()),
        to_address: Set(mail.to_address),
        to_user_id: Set(mail.to_user_id),
        subject: Set(mail.subject),
        body_text: Set(mail.text),
        attachments: Set(attachments),
        status: Set(STATUS_PENDING.into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        locked_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
    }
    .insert(conn)
    .await?;
    Ok(id)
}

/// Decode the attachments stored with an outbox row.
pub fn attachments_of(row: &entity::Model) -> Vec<Attachment> {
    row.attachments
        .as_deref()
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default()
}

/// The stable `Message-ID` of an outbox row, e.g. `<0193…@portal.example.com>`.
pub fn message_id(id: Uuid, public_url: &url::Url) -> String {
    let host = public_url.host_str().unwrap_or("lawfirm-pro.invalid");
    format!("<{id}@{host}>")
}
