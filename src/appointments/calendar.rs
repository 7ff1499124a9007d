//! iCalendar output: one event per appointment (`GET /appointments/{id}/ics`, mail
//! attachments) and the secret per-user feed (`GET /calendar/feed/{token}.ics`).
//!
//! The `icalendar` crate folds lines at 75 octets, ends them with CRLF and escapes `\ , ; \n`
//! in text values; it does not touch `\r`, so text is normalised before it goes in.

use chrono::{Duration, Utc};
use icalendar::{Calendar, Component, Event, EventLike, EventStatus};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    domain::AppointmentStatus,
    entity::{appointment, calendar_feed},
};
use crate::{
    AppState,
    audit::{NewEntry, service::append_in},
    auth::Principal,
    crypto::{random_token, token_hash},
    error::{Error, Result},
    users::{domain::UserStatus, entity::user},
};

/// Text for a property: no carriage returns, no other control characters but newlines.
fn clean(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .filter(|c| *c == '\n' || !c.is_control())
        .collect()
}

/// A stable UID: the appointment id at the portal's host, the same in every export.
pub fn uid(id: Uuid, public_url: &url::Url) -> String {
    format!(
        "{id}@{}",
        public_url.host_str().unwrap_or("lawfirm-pro.invalid")
    )
}

fn event(a: &appointment::Model, public_url: &url::Url) -> Event {
    let status = match AppointmentStatus::parse(&a.status) {
        Ok(AppointmentStatus::Requested) => EventStatus::Tentative,
        Ok(AppointmentStatus::Cancelled) | Err(_) => EventStatus::Cancelled,
        Ok(AppointmentStatus::Confirmed | AppointmentStatus::Completed) => EventStatus::Confirmed,
    };
    let mut e = Event::new();
    e.uid(&uid(a.id, public_url))
        .timestamp(a.updated_at)
        .starts(a.starts_at)
        .ends(a.ends_at)
        .summary(&clean(&a.title))
        .sequence(u32::try_from(a.sequence).unwrap_or(0))
        .status(status)
        .add_property("CREATED", a.created_at.format("%Y%m%dT%H%M%SZ").to_string())
        .add_property(
            "LAST-MODIFIED",
            a.updated_at.format("%Y%m%dT%H%M%SZ").to_string(),
        );
    if let Some(l) = &a.location {
        e.location(&clean(l));
    }
    // Notes stay out: the feed URL is a bearer secret that may end up in other software.
    e.done()
}

/// A VCALENDAR with one VEVENT per appointment, times in UTC.
pub fn render(appointments: &[appointment::Model], public_url: &url::Url) -> String {
    let mut cal = Calendar::new();
    cal.name("Law Firm Pro");
    cal.append_property(icalendar::Property::new("METHOD", "PUBLISH"));
    for a in appointments {
        cal.push(event(a, public_url));
    }
    cal.done().to_string()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedToken {
    /// Absolute URL of the secret feed; anyone holding it can read the calendar.
    pub url: String,
}

/// `POST /calendar/feed-token`: a new secret feed URL; the previous one stops working.
pub async fn rotate_feed_token(state: &AppState, p: &Principal) -> Result<FeedToken> {
    let token = random_token();
    let txn = state.db.begin_write().await?;
    calendar_feed::Entity::delete_by_id(p.user_id)
        .exec(&*txn)
        .await?;
    calendar_feed::ActiveModel {
        user_id: Set(p.user_id),
        token_hash: Set(token_hash(&token)),
        created_at: Set(crate::db::now()),
    }
    .insert(&*txn)
    .await?;
    append_in(
        &*txn,
        vec![
            NewEntry::new("calendar.feed_rotate", "user")
                .by(p)
                .resource(p.user_id),
        ],
    )
    .await?;
    txn.commit().await?;
    Ok(FeedToken {
        url: feed_url(&state.config.public_url, &token)?,
    })
}

/// The feed's address under the public URL, keeping any path prefix (`https://firm.example/portal`
/// → `…/portal/calendar/feed/…`): `Url::join` drops it for an absolute path, and drops the
/// last segment of a base that does not end in a slash.
fn feed_url(public_url: &url::Url, token: &str) -> Result<String> {
    let mut base = public_url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    let url = base
        .join(&format!("calendar/feed/{token}.ics"))
        .map_err(anyhow::Error::from)?;
    Ok(url.to_string())
}

/// At most this many appointments of a feed from now on, and this many before now.
const FEED_AHEAD: u64 = 1500;
const FEED_BEHIND: u64 = 500;

/// `GET /calendar/feed/{token}.ics`: the holder's appointments from 90 days back, by start.
/// Unknown, rotated or disabled → 404.
pub async fn feed(state: &AppState, token: &str) -> Result<String> {
    let conn = state.db.conn();
    let Some(f) = calendar_feed::Entity::find()
        .filter(calendar_feed::Column::TokenHash.eq(token_hash(token)))
        .one(conn)
        .await?
    else {
        return Err(Error::NotFound);
    };
    let active = user::Entity::find_by_id(f.user_id)
        .one(conn)
        .await?
        .is_some_and(|u| u.status == UserStatus::Active.as_str());
    if !active {
        return Err(Error::NotFound);
    }
    // The nearest ones when there are too many: the next FEED_AHEAD from now, and the last
    // FEED_BEHIND of the past 90 days (so calendars still show what was cancelled lately).
    let now = Utc::now();
    let theirs = || {
        appointment::Entity::find().filter(
            Condition::any()
                .add(appointment::Column::AttorneyId.eq(f.user_id))
                .add(appointment::Column::ClientId.eq(f.user_id))
                .add(appointment::Column::CreatedBy.eq(f.user_id)),
        )
    };
    let mut rows = theirs()
        .filter(appointment::Column::EndsAt.gt(now - Duration::days(90)))
        .filter(appointment::Column::StartsAt.lt(now))
        .order_by_desc(appointment::Column::StartsAt)
        .order_by_desc(appointment::Column::Id)
        .limit(FEED_BEHIND)
        .all(conn)
        .await?;
    rows.reverse();
    rows.extend(
        theirs()
            .filter(appointment::Column::StartsAt.gte(now))
            .order_by_asc(appointment::Column::StartsAt)
            .order_by_asc(appointment::Column::Id)
            .limit(FEED_AHEAD)
            .all(conn)
            .await?,
    );
    state.audit.record_detached(
        NewEntry::new("calendar.feed_read", "user")
            .actor(Some(f.user_id))
            .resource(f.user_id)
            .details(serde_json::json!({"count": rows.len()})),
    );
    Ok(render(&rows, &state.config.public_url))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_urls_keep_the_path_of_the_public_url() {
        for (base, want) in [
            (
                "https://firm.example",
                "https://firm.example/calendar/feed/t.ics",
            ),
            (
                "https://firm.example/",
                "https://firm.example/calendar/feed/t.ics",
            ),
            (
                "https://firm.example/portal",
                "https://firm.example/portal/calendar/feed/t.ics",
            ),
            (
                "https://firm.example/portal/",
                "https://firm.example/portal/calendar/feed/t.ics",
            ),
            (
                "https://firm.example/a/b/",
                "https://firm.example/a/b/calendar/feed/t.ics",
            ),
        ] {
            let u = url::Url::parse(base).unwrap();
            assert_eq!(feed_url(&u, "t").unwrap(), want, "{base}");
        }
    }

    #[test]
    fn lines_are_folded_crlf_and_text_escaped() {
        let t = chrono::DateTime::parse_from_rfc3339("2027-01-04T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = appointment::Model {
            id: Uuid::nil(),
            attorney_id: Uuid::nil(),
            client_id: None,
            case_id: None,
            starts_at: t,
            ends_at: t + Duration::minutes(30),
            title: format!(
                "Deposition; prep, with \\ notes\r\nsecond line {}",
                "x".repeat(100)
            ),
            location: Some("Room 1, 2nd floor".into()),
            notes: Some("secret".into()),
            status: "cancelled".into(),
            sequence: 3,
            scheduled_at: t,
            created_by: None,
            created_at: t,
            updated_at: t,
        };
        let out = render(
            &[a],
            &url::Url::parse("https://portal.example.com").unwrap(),
        );
        assert!(out.starts_with("BEGIN:VCALENDAR\r\n"), "{out}");
        assert!(out.ends_with("END:VCALENDAR\r\n"));
        assert!(
            !out.replace("\r\n", "").contains('\n'),
            "bare LF in {out:?}"
        );
        assert!(
            !out.replace("\r\n", "").contains('\r'),
            "bare CR in {out:?}"
        );
        for line in out.split("\r\n") {
            assert!(line.len() <= 75, "line over 75 octets: {line}");
        }
        let unfolded = out.replace("\r\n ", "");
        assert!(unfolded.contains(r"SUMMARY:Deposition\; prep\, with \\ notes\nsecond line"));
        assert!(unfolded.contains(r"LOCATION:Room 1\, 2nd floor"));
        assert!(unfolded.contains("UID:00000000-0000-0000-0000-000000000000@portal.example.com"));
        assert!(unfolded.contains("DTSTART:20270104T140000Z"));
        assert!(unfolded.contains("STATUS:CANCELLED"));
        assert!(unfolded.contains("SEQUENCE:3"));
        assert!(!unfolded.contains("secret"));
    }
}
